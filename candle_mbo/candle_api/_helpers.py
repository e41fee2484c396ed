"""Small helpers that CANDLE benchmark code calls (``candle.str2bool`` and friends).

None of these import a deep-learning framework at module import time: the package must import on a
machine without TensorFlow or torch, and a worker must not pay for frameworks the model does not use.
"""

import argparse
import hashlib
import logging
import os
import random
import shutil
import sys
import tempfile

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


def set_up_logger(logfile, logger, verbose=False, fmt_line="[%(asctime)s %(process)d] %(message)s",
                  fmt_date="%Y-%m-%d %H:%M:%S"):
    """Send ``logger``'s records to ``logfile`` (all levels) and to stdout (INFO, or DEBUG if ``verbose``).

    candle_lib's behaviour, with one fix for resident runners, where a benchmark calls this once per
    run in the same process: handlers added by an earlier call for the same logger are closed and
    replaced, so a run's log lines never land in an earlier run's file or print twice.
    """
    verify_path(logfile)
    for handler in list(logger.handlers):
        if getattr(handler, "_candle_set_up_logger", False):
            logger.removeHandler(handler)
            handler.close()
    to_file = logging.FileHandler(logfile)
    to_file.setFormatter(logging.Formatter(fmt_line, datefmt=fmt_date))
    to_file.setLevel(logging.DEBUG)
    to_stdout = logging.StreamHandler(sys.stdout)
    to_stdout.setFormatter(logging.Formatter(""))
    to_stdout.setLevel(logging.DEBUG if verbose else logging.INFO)
    for handler in (to_file, to_stdout):
        handler._candle_set_up_logger = True
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)


def data_dir():
    """Where downloaded data is cached: ``$CANDLE_DATA_DIR``, or the current directory when unset."""
    return os.environ.get("CANDLE_DATA_DIR") or os.getcwd()


def _md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def validate_file(fpath, md5_hash):
    """True when the file at ``fpath`` has the MD5 digest ``md5_hash`` (candle_lib's API)."""
    return _md5(fpath) == str(md5_hash)


def _unpack(archive, into):
    import tarfile
    import zipfile

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


_AUTO_UNPACK = (".tar.gz", ".tgz", ".zip")  # candle_lib unpacks these whatever ``unpack`` says


def get_file(fname, origin, unpack=False, md5_hash=None, cache_subdir="common", datadir=None, untar=False):
    """Return the local path of ``fname``, downloading it from ``origin`` into the cache if missing.

    The cache is ``<datadir or CANDLE_DATA_DIR or cwd>/<cache_subdir>/``. A file already there is used
    without any network access (so clusters without internet work once the data is staged). With
    ``unpack``/``untar``, and for names ending in .tar.gz, .tgz or .zip (as candle_lib does), the archive
    is extracted next to it and the extracted path is returned.
    Offline, the error says where to put the file by hand.

    Several workers may ask for the same file at once (one data folder per job): a lock on the cache folder
    (nothing is left beside the data) lets one download and unpack while the others wait, and both the
    download and the unpacked folder are made privately and renamed into place, so nobody ever reads half a
    file or half a folder.
    """
    unpack = unpack or untar or fname.endswith(_AUTO_UNPACK)
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
            return untar_target  # whole: an unpacked folder only appears once complete (see _unpack_beside)
    elif os.path.exists(fpath) and not md5_hash:
        return fpath

    with _exclusive(folder):
        if untar_target and os.path.exists(untar_target):
            return untar_target  # another worker unpacked it while we waited
        if os.path.exists(fpath) and md5_hash and _md5(fpath) != md5_hash:
            print("get_file: %s fails its md5 check; downloading it again" % fpath, file=sys.stderr)
            os.remove(fpath)
        if not os.path.exists(fpath):
            _download(origin, fpath, md5_hash)
        if unpack:
            _unpack_beside(fpath, folder)
            return untar_target if os.path.exists(untar_target) else folder
    return fpath


def _unpack_beside(archive, folder):
    """Unpack ``archive`` into ``folder``: first into a private temporary folder there, then each top-level
    entry renamed into place (an entry that is already there, unpacked or staged by hand, is kept)."""
    scratch = tempfile.mkdtemp(prefix=".%s.unpack-" % os.path.basename(archive), dir=folder)
    try:
        if not _unpack(archive, scratch):
            raise OSError("%s is neither a tar nor a zip archive; cannot unpack it" % archive)
        for name in os.listdir(scratch):
            destination = os.path.join(folder, name)
            if not (os.path.isdir(destination) and os.path.isdir(os.path.join(scratch, name))):
                os.replace(os.path.join(scratch, name), destination)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _download(origin, fpath, md5_hash):
    import urllib.error
    import urllib.request

    partial = "%s.part-%d" % (fpath, os.getpid())
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
    if md5_hash and _md5(partial) != md5_hash:
        os.remove(partial)
        raise OSError("downloaded %s does not match md5 %s; removed it" % (origin, md5_hash))
    os.replace(partial, fpath)


class _exclusive:
    """An advisory lock (flock) on the folder ``path`` itself, so that no lock file is left among the data;
    a no-op where the file system does not support locks."""

    def __init__(self, path):
        self.path = path
        self.fd = None

    def __enter__(self):
        try:
            import fcntl

            self.fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except (ImportError, OSError):
            if self.fd is not None:
                os.close(self.fd)
            self.fd = None
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock


def fetch_file(link, subdir, unpack=False, md5_hash=None, untar=False):
    """Download ``link`` into ``<CANDLE_DATA_DIR>/<subdir>/`` unless cached; return the local path.

    With ``CANDLE_DATA_DIR`` unset the current directory stands in (candle_lib refuses); candle_mbo's
    workers set it to one folder per experiment, so a download happens once per job, not per run.
    """
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


_CLR_KEYS = ("clr_mode", "clr_base_lr", "clr_max_lr", "clr_gamma")


def clr_check_args(args):
    """True when ``args`` holds every cyclic-learning-rate setting (clr_mode, clr_base_lr, clr_max_lr,
    clr_gamma)."""
    return all(key in args for key in _CLR_KEYS)


def clr_set_args(args):
    """The keyword arguments of ``clr_callback`` from ``args`` (mode None when incomplete).

    A complete setting turns off ``warmup_lr`` and ``reduce_lr`` in ``args``, which conflict with it.
    """
    if clr_check_args(args) and args["clr_mode"] is not None:
        for key in ("warmup_lr", "reduce_lr"):
            if args.get(key) is True:
                print("cyclic learning rate: %s conflicts with it, set to False" % key)
                args[key] = False
        return {"mode": args["clr_mode"], "base_lr": args["clr_base_lr"], "max_lr": args["clr_max_lr"],
                "gamma": args["clr_gamma"]}
    print("incomplete cyclic learning rate settings: running without")
    return {"mode": None, "base_lr": 0.1, "max_lr": 0.1, "gamma": 0.1}


def set_default_data_dir(experiment_dir):
    """Give a job one data folder: set ``CANDLE_DATA_DIR`` to ``<experiment_dir>/data`` unless the user set it.

    Called by candle_mbo in every process of a workflow before models run (runner subprocesses inherit
    the environment), so that every run of a benchmark has the same ``data_dir``
    (``$CANDLE_DATA_DIR/<model_name>/Data``) and downloads (``fetch_file``/``get_file``) land there once
    instead of once per run folder. Returns the folder in effect (created if needed).
    """
    folder = os.environ.get("CANDLE_DATA_DIR")
    if not folder:
        folder = os.path.join(os.path.abspath(str(experiment_dir)), "data")
        os.environ["CANDLE_DATA_DIR"] = folder
    os.makedirs(folder, exist_ok=True)
    return folder
