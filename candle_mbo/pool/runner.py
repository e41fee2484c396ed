"""The runner: one parameter set in, one result out.

It knows nothing about MPI, mlrMBO or UPF. The same code runs inside an isolated runner subprocess, in
a worker rank directly (``--isolation none``), and in tests.

Per run it creates ``<run_dir>/`` with ``params.json`` (exactly what ``run()`` received), ``model.log``
(the run's stdout and stderr) and ``result.json`` (status, objective, duration, history as lists).
A run that runs again (an interrupted run, on resume) appends to its model.log: every attempt opens
with a line ``[candle_mbo] attempt N of run ID, started TIME on HOST (pid P)``.
"""

import ast
import contextlib
import importlib
import importlib.util
import inspect
import io
import json
import math
import os
import socket
import sys
import tempfile
import threading
import time
import traceback

from .. import epochs
from ..candle_api import _benchmark
from .._fileio import write_json_atomic, write_json_fast
from ..status import CRASHED, FAILED, OK, PRUNED, TIMEOUT  # noqa: F401 - re-exported for callers
from . import candle_lib_hooks
from .objective import REDUCTIONS, explain_missing, find_objective, objective_from, read_tail  # noqa: F401

WORKDIRS = ("run", "model")
ATTEMPT_HEADER = "[candle_mbo] attempt"


class ModelError(Exception):
    """The model cannot be used at all (missing file, syntax error, no run()): bad input, exit 2."""


def _syntax_error_message(path, exc):
    line = (exc.text or "").strip()
    return "%s:%s: syntax error: %s%s" % (path, exc.lineno, exc.msg, (" in %r" % line) if line else "")


def is_model_path(spec):
    """True when a ``--model`` value names a file (a .py or a path), False for an importable module's name."""
    return spec.endswith(".py") or os.sep in spec or "/" in spec


def model_file(spec):
    """The file a ``--model`` value stands for: the path itself, or the importable module's file (None when
    it cannot be found). Imports nothing but the module's parent packages."""
    if is_model_path(spec):
        return os.path.abspath(spec)
    try:
        found = importlib.util.find_spec(spec)
    except (ImportError, ValueError):
        return None
    return os.path.abspath(found.origin) if found is not None and found.origin else None


def check_model_source(spec):
    """Cheap checks that need no import: the file exists and compiles. Returns the resolved spec."""
    if is_model_path(spec):
        path = os.path.abspath(spec)
        if not os.path.exists(path):
            raise ModelError("model file not found: %s" % spec)
        if os.path.isdir(path):
            raise ModelError("model %s is a directory; give the benchmark's .py file" % spec)
        try:
            with open(path, "rb") as handle:
                source = handle.read()
            ast.parse(source, filename=path)
        except SyntaxError as exc:
            raise ModelError(_syntax_error_message(path, exc)) from None
        except (OSError, ValueError) as exc:
            raise ModelError("cannot read model file %s: %s" % (path, exc)) from None
        return path
    if importlib.util.find_spec(spec.split(".")[0]) is None:
        raise ModelError("model %s is neither a .py file nor an importable module" % spec)
    return spec


def load_model(spec):
    """Import the user's module from a .py path (its folder goes on sys.path) or a module name.

    Imported once per process: a second call with the same spec returns the module already loaded.
    """
    spec = check_model_source(spec)
    if spec.endswith(".py") and os.path.isabs(spec):
        folder = os.path.dirname(spec)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        name = os.path.splitext(os.path.basename(spec))[0]
        existing = sys.modules.get(name)
        if existing is not None and os.path.abspath(getattr(existing, "__file__", "") or "") == spec:
            module = existing
        else:
            module_spec = importlib.util.spec_from_file_location(name, spec)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            saved_argv, saved_bytecode = sys.argv, sys.dont_write_bytecode
            sys.argv = [spec]
            sys.dont_write_bytecode = True  # no __pycache__ written next to the user's model
            try:
                module_spec.loader.exec_module(module)
            except SyntaxError as exc:
                del sys.modules[name]
                raise ModelError(_syntax_error_message(exc.filename or spec, exc)) from None
            except BaseException as exc:  # noqa: BLE001 - any failure of user code at import is bad input
                del sys.modules[name]
                raise ModelError("importing %s failed: %s" % (spec, _one_line(exc))) from exc
            finally:
                sys.argv, sys.dont_write_bytecode = saved_argv, saved_bytecode
    else:
        try:
            module = importlib.import_module(spec)
        except BaseException as exc:  # noqa: BLE001
            raise ModelError("importing %s failed: %s" % (spec, _one_line(exc))) from exc
    missing = [fn for fn in ("initialize_parameters", "run") if not callable(getattr(module, fn, None))]
    if missing:
        raise ModelError("model %s defines no %s(); a CANDLE benchmark needs initialize_parameters() and run(params)"
                         % (spec, " and no ".join(missing)))
    return module


def _one_line(exc):
    text = "%s: %s" % (type(exc).__name__, exc) if str(exc) else type(exc).__name__
    return " ".join(text.split())[:500]


def _plain(value):
    """A JSON-friendly copy: numpy/torch scalars to floats, arrays to lists, types to their names."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if isinstance(value, type):
        return value.__name__
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if hasattr(value, "item"):
        try:
            return _plain(value.item())
        except (TypeError, ValueError):
            pass
    if hasattr(value, "__float__"):
        try:
            return _plain(float(value))
        except (TypeError, ValueError):
            pass
    return repr(value)


def plain_params(params):
    """Parameters as JSON-friendly values (what params.json records)."""
    return {str(k): _plain(v) for k, v in params.items()}


def _flush_streams():
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _redirect_fds(path):
    """Point file descriptors 1 and 2 at ``path`` (appending), after flushing Python's streams."""
    _flush_streams()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


class _ThreadRouter:
    """A stand-in for sys.stdout/sys.stderr that sends each thread's writes where that thread points them.

    A run inside a process that has other work (the local worker thread beside the dispatcher, with
    ``--isolation none``) must capture its own output without capturing the dispatcher's: swapping the
    process-wide streams would send a fatal error of the dispatcher into the run's model.log. Threads
    with no target of their own (including the threads a run starts) write to the original stream.
    """

    def __init__(self, original):
        self.original = original
        self.local = threading.local()

    def _target(self):
        return getattr(self.local, "target", None) or self.original

    def write(self, text):
        return self._target().write(text)

    def flush(self):
        return self._target().flush()

    def __getattr__(self, name):
        return getattr(self._target(), name)


def _unrouted(stream):
    return stream.original if isinstance(stream, _ThreadRouter) else stream


def _routers():
    """Install (once) the thread routers in place of sys.stdout and sys.stderr; return them."""
    routers = []
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if not isinstance(stream, _ThreadRouter):
            stream = _ThreadRouter(stream)
            setattr(sys, name, stream)
        routers.append(stream)
    return routers


@contextlib.contextmanager
def _thread_output(target):
    """Send this thread's prints to ``target`` while the block runs (see _ThreadRouter)."""
    routers = _routers()
    saved = [getattr(r.local, "target", None) for r in routers]
    for router in routers:
        router.local.target = target
    try:
        yield target
    finally:
        for router, previous in zip(routers, saved):
            router.local.target = previous


class _OutputCapture:
    """Sends stdout/stderr to a run's model.log while the run lasts.

    In a dedicated runner process (``fd_level``) the file descriptors 1 and 2 themselves are pointed
    at the log, so output of C/C++ code (TensorFlow, CUDA) is captured too; the original descriptors
    are saved once and restored after each run. Elsewhere (a thread of a process with its own output)
    only this thread's Python-level writes are routed to the log (see _ThreadRouter).
    """

    def __init__(self, fd_level):
        self.fd_level = fd_level
        self._saved_fds = (os.dup(1), os.dup(2)) if fd_level else None

    @contextlib.contextmanager
    def to(self, log_path):
        if self.fd_level:
            saved = (sys.stdout, sys.stderr)
            _redirect_fds(log_path)
            try:
                yield sys.stderr
            finally:
                _flush_streams()
                sys.stdout, sys.stderr = saved
                os.dup2(self._saved_fds[0], 1)
                os.dup2(self._saved_fds[1], 2)
            return
        with open(log_path, "a", buffering=1, encoding="utf-8", errors="replace") as log, _thread_output(log):
            yield log


class Runner:
    """Runs parameter sets through a CANDLE benchmark module imported once.

    ``objective``/``reduction`` say which metric is the objective and which of its values counts;
    ``require_objective`` turns a run that yields none into a failure (HPO needs a number; UPF does not).
    Where the objective is found is :mod:`candle_mbo.pool.objective`'s business (``objective_file`` and
    ``objective_regex`` are two of its sources). ``default_model`` names a defaults file to use instead of
    the benchmark's own. ``fd_capture`` redirects the process' file descriptors 1 and 2 into each run's
    model.log (right in a dedicated runner process, wrong in a process that has other output to keep).
    ``workdir``: ``run`` (each run executes in its own folder) or ``model`` (in the model file's folder,
    for benchmarks that open paths relative to it). ``reporter``: how the run's epoch reports leave this
    process (``send(report, wait)``, see :mod:`candle_mbo.epochs`); ``await_answers``: whether the
    dispatcher answers them (early discarding).
    """

    def __init__(self, model, objective="val_loss", reduction="last", require_objective=False,
                 default_model=None, experiment_id="EXP000", fd_capture=False, scratch_dir=None, run_log=None,
                 objective_file=None, objective_regex=None, workdir="run", reporter=None, await_answers=False,
                 output_log=None):
        if reduction not in REDUCTIONS:
            raise ValueError("unknown reduction %r; choose one of %s" % (reduction, ", ".join(REDUCTIONS)))
        if workdir not in WORKDIRS:
            raise ValueError("unknown workdir %r; choose one of %s" % (workdir, ", ".join(WORKDIRS)))
        self.model_spec = model
        self.module = load_model(model)
        self.objective = objective
        self.reduction = reduction
        self.require_objective = require_objective
        self.default_model = os.path.abspath(default_model) if default_model else None
        self.experiment_id = experiment_id
        self.fd_capture = fd_capture
        self._capture = _OutputCapture(fd_capture)
        self.scratch_dir = os.path.abspath(scratch_dir or os.path.join(tempfile.gettempdir(), "candle-mbo-scratch"))
        self.run_log = run_log
        self.output_log = output_log or run_log  # where a run's output goes without a run folder
        self.objective_file = objective_file
        self.objective_regex = objective_regex
        self.workdir = workdir
        self.reporter = reporter
        self.await_answers = bool(await_answers and reporter is not None)
        self._shared_log = None
        self._host = socket.gethostname()
        self._accepts_default_model = _accepts_keyword(self.module.initialize_parameters, "default_model")

    @classmethod
    def from_config(cls, config, fd_capture=False, reporter=None):
        """A Runner from the settings the master sends to workers (see job.runner_config)."""
        return cls(config["model"], objective=config["objective"], reduction=config["reduction"],
                   require_objective=config["require_objective"], default_model=config.get("default_model"),
                   experiment_id=config.get("experiment_id", "EXP000"), fd_capture=fd_capture,
                   scratch_dir=config.get("scratch_dir"), run_log=config.get("run_log"),
                   objective_file=config.get("objective_file"), objective_regex=config.get("objective_regex"),
                   workdir=config.get("workdir") or "run", reporter=reporter,
                   await_answers=config.get("await_answers", False), output_log=config.get("output_log"))

    @property
    def model_dir(self):
        """The folder of the model's file (where ``--workdir model`` runs it)."""
        path = getattr(self.module, "__file__", None)
        return os.path.dirname(os.path.abspath(path)) if path else os.getcwd()

    def describe(self):
        """The benchmark's resolved default parameters and definitions, without running it."""
        with tempfile.TemporaryDirectory(prefix="candle-mbo-probe-") as scratch, _quiet(), \
                _benchmark.run_context({"output_dir": scratch}, config_file=self.default_model) as context:
            saved_argv, sys.argv = sys.argv, [self._argv0()]
            try:
                params = self._initialize()
            finally:
                sys.argv = saved_argv
        if isinstance(params, dict):
            params.pop("output_dir", None)
        definitions = context.get("definitions") or {}
        return {
            "params": plain_params(params if isinstance(params, dict) else {}),
            "definitions": {name: _describe_definition(d) for name, d in definitions.items()},
            "model_files": self.model_files(),
            "defaults_file": context.get("config_file_read"),
        }

    def model_files(self):
        """The Python files of the model's own folder that are loaded now (the model and its sibling imports)."""
        path = getattr(self.module, "__file__", None)
        if not path:
            return []
        folder = os.path.dirname(os.path.abspath(path)) + os.sep
        files = {os.path.abspath(path)}
        for module in list(sys.modules.values()):
            name = getattr(module, "__file__", None)
            if name and name.endswith(".py") and os.path.abspath(name).startswith(folder):
                files.add(os.path.abspath(name))
        return sorted(files)

    def _argv0(self):
        return getattr(self.module, "__file__", None) or self.model_spec

    def _initialize(self):
        if self._accepts_default_model and self.default_model:
            return self.module.initialize_parameters(default_model=self.default_model)
        return self.module.initialize_parameters()

    def run(self, task):
        """Run one task ``{"run_id", "params", "run_dir"}``; return the result record (never raises).

        With a ``run_dir`` the run gets its folder (params.json, model.log, result.json). With
        ``run_dir`` None (``--no-run-dirs``) nothing is created per run: the history goes into the
        record, output to the shared run log, and output_dir is this runner's scratch folder.
        """
        run_id = str(task["run_id"])
        run_dir = task.get("run_dir")
        attempt = None
        if run_dir:
            attempt = 1
            log_path = os.path.join(run_dir, "model.log")
            try:
                os.mkdir(run_dir)
            except FileExistsError:  # a rerun (resume): the other files are written over, the log goes on
                attempt = earlier_attempts(log_path) + 1
            except FileNotFoundError:
                os.makedirs(run_dir, exist_ok=True)
            output = self._capture.to(log_path)
        else:
            log_path = self.output_log
            output = self._shared_output(run_id)
        started = time.time()
        record = {"run_id": run_id, "status": FAILED, "objective": None, "started": started}
        with output as log:
            if attempt is not None:
                log.write("%s %d of run %s, started %s on %s (pid %d)\n" % (
                    ATTEMPT_HEADER, attempt, run_id, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
                    self._host, os.getpid()))
                log.flush()
            where = _OutputPlace(log_path, log)
            history, extra = self._execute(task, run_id, run_dir, record, log, where)
        finished = time.time()
        record.update(finished=finished, duration_s=round(finished - started, 6))
        if history:
            record["metrics"] = {k: v[-1] for k, v in history.items()
                                 if v and isinstance(v[-1], (int, float)) and math.isfinite(v[-1])}
        if run_dir:
            write_run_result(run_dir, record, history, extra)
        else:
            if history is not None:
                record["history"] = _plain(history)
            if extra is not None:
                record["infer_scores"] = _plain(extra)
        return record

    def _execute(self, task, run_id, run_dir, record, log, where):
        """Resolve the parameters as CANDLE does, call run(), find the objective (into ``record``)."""
        history = extra = None
        output_dir = run_dir or self.scratch_dir
        overrides = dict(task.get("params") or {})
        overrides.update(output_dir=output_dir, run_id=run_id, experiment_id=self.experiment_id)
        saved_argv, saved_cwd = sys.argv, os.getcwd()
        channel = None
        try:
            sys.argv = [self._argv0()]
            os.chdir(self.model_dir if self.workdir == "model" else output_dir)
            with _benchmark.run_context(overrides, config_file=self.default_model) as context:
                params = self._initialize()
                if not isinstance(params, dict):
                    raise TypeError("initialize_parameters() returned %s, not a dict" % type(params).__name__)
                definitions = context.get("definitions") or {}
                for name, value in overrides.items():
                    params[name] = _benchmark.coerce_value(
                        definitions.get(name) or _implied_definition(name, params.get(name)), value,
                        "run parameter ")
            if run_dir:
                write_json_fast(os.path.join(run_dir, "params.json"), plain_params(params))
            candle_lib_hooks.install()
            pruned = False
            with epochs.open_channel(run_id, self.objective, self.reporter, self.await_answers) as channel:
                try:
                    returned = self.module.run(params)
                except epochs.RunPruned:
                    returned, pruned = None, True
            pruned = pruned or channel.stop is not None
            curve = channel.curve()
            sources = dict(output_dir=output_dir, started=record["started"], scores_file=self.objective_file,
                           curve=curve, output=where.text, regex=self.objective_regex)
            objective, source, history, extra = find_objective(returned, self.objective, self.reduction, **sources)
            if objective is None and self.require_objective and not pruned:
                raise ValueError(explain_missing(self.objective, **sources))
            record["status"] = PRUNED if pruned else OK
            record["objective"] = objective
            if source is not None:
                record["objective_source"] = source
        except BaseException as exc:  # noqa: BLE001 - a failed run is data, never a crash of the runner
            if isinstance(exc, KeyboardInterrupt):
                raise
            record["error"] = _one_line(exc) + _path_hint(exc, self)
            if isinstance(exc, SystemExit):
                record["error"] = "the model called sys.exit(%s)" % (exc.code,)
            traceback.print_exc(file=log)
        finally:
            sys.argv = saved_argv
            with contextlib.suppress(OSError):
                os.chdir(saved_cwd)
        if channel is not None and channel.reports:
            if history is None:
                history = channel.curve()  # the learning curve of a run that returned none
            record["epochs"] = channel.last_epoch
        elif history and history.get(self.objective):
            record["epochs"] = len(history[self.objective])
        return history, extra

    @contextlib.contextmanager
    def _shared_output(self, run_id):
        """Output of a run without a folder: to ``run_log`` (or wherever this process writes), after a
        header line naming the run. Costs no system call per run beyond the writes themselves."""
        if self._shared_log is None:
            os.makedirs(self.scratch_dir, exist_ok=True)
            if self.run_log and self.fd_capture:
                _redirect_fds(self.run_log)  # for good: this process only runs runs
                self._shared_log = False
            elif self.run_log:
                self._shared_log = open(self.run_log, "a", encoding="utf-8", errors="replace")
            else:
                self._shared_log = False
        target = self._shared_log or _unrouted(sys.stdout)
        with _thread_output(target):
            try:
                target.write("[candle_mbo] run %s\n" % run_id)
                yield target
            finally:
                _flush_streams()


def earlier_attempts(log_path):
    """How many attempts a run's model.log already holds: its attempt lines, or 1 for a log without any."""
    marker = ("\n" + ATTEMPT_HEADER + " ").encode()
    count, tail, seen_any = 0, b"\n", False
    try:
        with open(log_path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                seen_any = True
                text = tail + block
                count += text.count(marker)
                tail = text[-len(marker) + 1:]
    except OSError:
        return 0
    return max(count, 1) if seen_any else 0


def write_run_result(run_dir, record, history=None, extra=None, atomic=False):
    """Write ``result.json`` for a run.

    The runner writes it directly (a runner killed mid-write is a crashed run, whose result.json the
    supervisor then rewrites ``atomic``-ally): per-run files are on the hot path of short runs.
    """
    result = dict(record)
    if history is not None:
        result["history"] = _plain(history)
    if extra is not None:
        result["infer_scores"] = _plain(extra)
    (write_json_atomic if atomic else write_json_fast)(os.path.join(run_dir, "result.json"), result)


class _OutputPlace:
    """Where a run's output goes, so that its text can be read back for ``--objective-regex`` (only then)."""

    def __init__(self, path, stream):
        self.path = path
        self.stream = stream
        self.offset = _size(path)

    def text(self):
        _flush_streams()
        with contextlib.suppress(Exception):
            self.stream.flush()
        return read_tail(self.path, self.offset) if self.path else ""


def _size(path):
    try:
        return os.path.getsize(path) if path else 0
    except OSError:
        return 0


def _path_hint(exc, runner):
    """For a file not found under a relative path: the folder it was resolved against, and what to try."""
    name = getattr(exc, "filename", None)
    if not isinstance(exc, OSError) or not name or os.path.isabs(os.fsdecode(name)):
        return ""
    here = os.getcwd()
    if runner.workdir == "run":
        return (" (the relative path %r was resolved against the run folder %s; a benchmark that opens files "
                "relative to its own folder needs --workdir model)" % (os.fsdecode(name), here))
    return " (the relative path %r was resolved against the model's folder %s)" % (os.fsdecode(name), here)


def _implied_definition(name, current):
    """Coercion rule for a parameter the benchmark does not declare: follow its current value's type."""
    if isinstance(current, list):
        return {"name": name, "default": current}
    if isinstance(current, bool):
        return {"name": name, "type": _benchmark.str2bool}
    if isinstance(current, (int, float)) and not isinstance(current, bool):
        return {"name": name, "type": type(current)}
    return None


def _describe_definition(definition):
    out = {}
    for key in ("type", "nargs", "choices", "action", "default"):
        if key in definition:
            value = definition[key]
            if key == "type":
                value = getattr(value, "__name__", str(value))
            out[key] = _plain(value)
    return out


_TYPES_BY_NAME = {"int": int, "float": float, "str": str, "str2bool": _benchmark.str2bool, "bool": _benchmark.str2bool}


def described_definition(name, described, current=None):
    """The coercion rule for ``name`` from the probe's JSON description (the mirror of ``_describe_definition``);
    a parameter the benchmark does not declare follows its ``current`` value's type, as a run does."""
    if not described:
        return _implied_definition(name, current)
    definition = {"name": name}
    for key in ("nargs", "choices", "action", "default"):
        if key in described:
            definition[key] = described[key]
    if "type" in described:
        definition["type"] = _TYPES_BY_NAME.get(described["type"])
    return definition


def check_run_values(params, description, where=""):
    """Raise ParameterError (a ValueError) for the first value in ``params`` a run would refuse: one that does
    not convert to the type its definition declares, or is not among its ``choices``. ``description`` is what
    ``describe()`` returns; ``where`` prefixes the message."""
    definitions = description.get("definitions") or {}
    defaults = description.get("params") or {}
    for name, value in params.items():
        definition = described_definition(name, definitions.get(name), defaults.get(name))
        converted = _benchmark.coerce_value(definition, value, where)
        choices = (definition or {}).get("choices")
        if choices and converted is not None:
            items = converted if isinstance(converted, list) else [converted]
            wrong = [item for item in items if item not in choices]
            if wrong:
                raise _benchmark.ParameterError("%s%s = %r is not one of the choices %s"
                                                % (where, name, value, ", ".join(map(repr, choices))))


def _accepts_keyword(function, name):
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


@contextlib.contextmanager
def _quiet():
    saved = (sys.stdout, sys.stderr)
    sys.stdout = sys.stderr = io.StringIO()
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def dumps_record(record):
    """One results.jsonl line (no NaN: non-finite floats are written as strings).

    Records are plain already in the common case, so the C encoder does it in one pass; only a record
    holding something else (a numpy value, NaN in a history) is made plain first.
    """
    try:
        return json.dumps(record, allow_nan=False)
    except (TypeError, ValueError):
        return json.dumps(_plain(record), allow_nan=False)
