"""Small helpers that CANDLE benchmark code calls (``candle.str2bool`` and friends).

None of these import a deep-learning framework at module import time: the package must import on a
machine without TensorFlow or torch, and a worker must not pay for frameworks the model does not use.
"""

import argparse
import hashlib
import os
import random
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile

_TRUE = ("yes", "true", "t", "y", "1")
_FALSE = ("no", "false", "f", "n", "0")


def str2bool(value):
    """Read a boolean the way CANDLE does: yes/true/t/y/1 and no/false/f/n/0, any case.

    ``type=bool`` in argparse turns every non-empty string into True and ``store_true`` cannot be undone
    from a defaults file, hence this type.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise argparse.ArgumentTypeError(
        "boolean value expected (one of %s), got %r" % ("/".join(_TRUE + _FALSE), value)
    )


class ArgumentStruct:
    """A parameter dict seen as an object: ``args = ArgumentStruct(**params); args.epochs``."""

    def __init__(self, **entries):
        self.__dict__.update(entries)

    def __repr__(self):
        return "ArgumentStruct(%s)" % ", ".join("%s=%r" % kv for kv in sorted(self.__dict__.items()))


def verify_path(path):
    """Create the folder that will hold ``path`` (a file path) if it does not exist yet."""
    folder = os.path.dirname(str(path))
    if folder:
        os.makedirs(folder, exist_ok=True)


def data_dir():
    """Where downloaded data is cached: ``$CANDLE_DATA_DIR``, or the current directory when unset."""
    return os.environ.get("CANDLE_DATA_DIR") or os.getcwd()


def _md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _unpack(archive, into):
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                target = os.path.realpath(os.path.join(into, member.name))
                if not target.startswith(os.path.realpath(into) + os.sep) and target != os.path.realpath(into):
                    raise ValueError("refusing to unpack %s: member %r leaves %s" % (archive, member.name, into))
            tar.extractall(into)
        return True
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zipped:
            for name in zipped.namelist():
                target = os.path.realpath(os.path.join(into, name))
                if not target.startswith(os.path.realpath(into) + os.sep):
                    raise ValueError("refusing to unpack %s: member %r leaves %s" % (archive, name, into))
            zipped.extractall(into)
        return True
    return False


def get_file(fname, origin, unpack=False, md5_hash=None, cache_subdir="common", datadir=None, untar=False):
    """Return the local path of ``fname``, downloading it from ``origin`` into the cache if missing.

    The cache is ``<datadir or CANDLE_DATA_DIR or cwd>/<cache_subdir>/``. A file already there is used
    without any network access (so clusters without internet work once the data is staged). With
    ``unpack``/``untar`` the archive is extracted next to it and the extracted path is returned.
    Offline, the error says where to put the file by hand.
    """
    unpack = unpack or untar
    base = datadir or data_dir()
    folder = os.path.join(base, cache_subdir) if cache_subdir else base
    os.makedirs(folder, exist_ok=True)
    fpath = os.path.join(folder, fname)
    untar_target = None
    if unpack:
        stem = fname
        for suffix in (".tar.gz", ".tgz", ".tar.bz2", ".tar", ".zip"):
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        untar_target = os.path.join(folder, stem)
        if os.path.exists(untar_target):
            return untar_target

    if os.path.exists(fpath) and md5_hash and _md5(fpath) != md5_hash:
        print("get_file: %s fails its md5 check; downloading it again" % fpath, file=sys.stderr)
        os.remove(fpath)
    if not os.path.exists(fpath):
        partial = fpath + ".part"
        try:
            with urllib.request.urlopen(origin, timeout=60) as response, open(partial, "wb") as out:
                shutil.copyfileobj(response, out)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            if os.path.exists(partial):
                os.remove(partial)
            reason = getattr(exc, "reason", exc)
            raise OSError(
                "could not download %s (%s); to work offline, place the file at %s" % (origin, reason, fpath)
            ) from None
        os.replace(partial, fpath)
        if md5_hash and _md5(fpath) != md5_hash:
            os.remove(fpath)
            raise OSError("downloaded %s does not match md5 %s; removed it" % (origin, md5_hash))
    if unpack:
        if not _unpack(fpath, folder):
            raise OSError("%s is neither a tar nor a zip archive; cannot unpack it" % fpath)
        return untar_target if os.path.exists(untar_target) else folder
    return fpath


def fetch_file(link, subdir, unpack=False, md5_hash=None, untar=False):
    """Download ``link`` into ``<CANDLE_DATA_DIR>/<subdir>/`` unless cached; return the local path."""
    return get_file(os.path.basename(link), origin=link, unpack=unpack or untar, md5_hash=md5_hash,
                    cache_subdir=subdir)


def set_seed(seed):
    """Seed Python's ``random``, numpy, and torch / TensorFlow when the model has imported them.

    Frameworks are seeded only if already imported: importing TensorFlow into a PyTorch model (or the
    reverse) only to seed it would cost seconds and memory in every run.
    """
    seed = int(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    if "numpy" in sys.modules or _importable("numpy"):
        import numpy

        numpy.random.seed(seed % (2 ** 32))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(seed)
    tf = sys.modules.get("tensorflow")
    if tf is not None and hasattr(tf, "random"):
        tf.random.set_seed(seed)


def _importable(name):
    import importlib.util

    return importlib.util.find_spec(name) is not None


def keras_default_config():
    """Keras' default optimizer and initializer constants, as CANDLE benchmarks expect them."""
    return {
        "decay_lr": 0.0,
        "epsilon": 1e-8,
        "rho": 0.9,
        "momentum_sgd": 0.0,
        "nesterov_sgd": False,
        "beta_1": 0.9,
        "beta_2": 0.999,
        "decay_schedule_lr": 0.004,
        "minval_uniform": -0.05,
        "maxval_uniform": 0.05,
        "mean_normal": 0.0,
        "stddev_normal": 0.05,
    }


def _thread_count(name):
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        count = int(value)
    except ValueError:
        return None
    return count if count > 0 else None


def set_parallelism_threads():
    """Apply NUM_INTRA_THREADS / NUM_INTER_THREADS (set per worker by candle_mbo) to the framework in use.

    TensorFlow 2 through ``tf.config.threading`` and torch through ``set_num_threads`` (intra-op only),
    each only when the model has imported it; a no-op otherwise or when the variables are unset. Safe to
    call in every run of a resident runner.
    """
    intra = _thread_count("NUM_INTRA_THREADS")
    inter = _thread_count("NUM_INTER_THREADS")
    tf = sys.modules.get("tensorflow")
    if tf is not None and hasattr(tf, "config"):
        try:
            if intra:
                tf.config.threading.set_intra_op_parallelism_threads(intra)
            if inter:
                tf.config.threading.set_inter_op_parallelism_threads(inter)
        except RuntimeError:
            pass  # TensorFlow refuses once its runtime has started; the environment variables still apply
    torch = sys.modules.get("torch")
    if torch is not None and intra and torch.get_num_threads() != intra:
        # Only the intra-op pool: torch aborts the whole process (not an exception) when the inter-op
        # pool is resized after any parallel work, which a resident runner cannot rule out.
        torch.set_num_threads(intra)
