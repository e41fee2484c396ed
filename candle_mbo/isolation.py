"""Isolation without reload: a long-lived runner subprocess per worker, supervised.

The subprocess imports the user's model once and then runs task after task. If a run segfaults, calls
``os._exit``, is killed by the OOM killer, or passes its timeout (the supervisor kills it: SIGTERM, then
SIGKILL after a grace period, also when SIGTERM is ignored), only the subprocess dies: the run is
recorded as ``crashed`` or ``timeout`` and a fresh runner is started for the next task.

Wire protocol on two pipes (length-prefixed pickles), supervisor -> runner: ``("run", task)``,
``("runs", [task, ...])`` (a chunk of short runs, run in order) or ``("stop", None)``; runner ->
supervisor: ``("ready", info)``, ``("error", message)`` when the model cannot be loaded, and one
``("result", record)`` per run as it finishes (so a crash or timeout inside a chunk costs only the run
it hit; the rest of the chunk goes to the fresh runner). The runner's own stdout/stderr (outside runs)
go to a log file; during a run they go to the run's model.log (or, with --no-run-dirs, stay there).
"""

import collections
import contextlib
import ctypes
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import time

from .runner import Runner, _one_line, write_run_result
from .status import CRASHED, TIMEOUT

_HEADER = struct.Struct("!I")
KILL_GRACE_S = 2.0
# Variables that would make a runner (or a model that imports mpi4py) join the parent's MPI job.
_MPI_ENV_PREFIXES = ("OMPI_COMM_WORLD", "OMPI_MCA_ess", "OMPI_MCA_orte", "OMPI_MCA_pmix", "PMIX_", "PMI_")


class RunnerStartError(RuntimeError):
    """The runner subprocess could not load the model."""


def send_message(fd, message):
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    data = memoryview(_HEADER.pack(len(payload)) + payload)
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _read_exact(fd, size):
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def receive_message(fd):
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size))
    return pickle.loads(_read_exact(fd, size))


def _die_with_parent():
    """Ask Linux to SIGKILL this process when its parent dies (a kill -9 of the job leaves no orphans)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def _apply_memory_limit(megabytes):
    if megabytes:
        import resource

        limit = int(megabytes) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def runner_main(read_fd, write_fd, parent_pid):
    """Entry point of the runner subprocess (see the module docstring for the protocol)."""
    _die_with_parent()
    if os.getppid() != parent_pid:
        os._exit(1)  # the parent died before prctl took effect
    config = receive_message(read_fd)
    _apply_memory_limit(config.get("memory_limit_mb"))
    try:
        runner = Runner.from_config(config, fd_capture=True)
    except Exception as exc:  # noqa: BLE001 - reported to the supervisor as a message
        send_message(write_fd, ("error", str(exc)))
        return 1
    send_message(write_fd, ("ready", {"pid": os.getpid()}))
    while True:
        try:
            kind, payload = receive_message(read_fd)
        except EOFError:
            return 0
        if kind == "stop":
            return 0
        if kind == "run":
            send_message(write_fd, ("result", runner.run(payload)))
        elif kind == "runs":
            for task in payload:
                send_message(write_fd, ("result", runner.run(task)))
        elif kind == "describe":
            try:
                send_message(write_fd, ("described", runner.describe()))
            except BaseException as exc:  # noqa: BLE001 - reported as bad input by the caller
                send_message(write_fd, ("error", "initialize_parameters() of %s failed: %s"
                                        % (config["model"], _one_line(exc))))


def child_environment(extra=None):
    """The parent's environment without MPI launcher variables, plus ``extra``.

    candle_mbo's own folder is put first on PYTHONPATH so that the child imports this same copy.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(_MPI_ENV_PREFIXES)}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ written next to the user's model
    env.update(extra or {})
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = [package_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != package_root]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


class IsolatedRunner:
    """Supervises one runner subprocess; ``run(task)`` always returns a record, whatever the model does.

    ``config`` holds the Runner's settings (model, objective, reduction, require_objective,
    default_model, experiment_id, memory_limit_mb); ``env`` is added to the subprocess environment
    (thread counts, CUDA_VISIBLE_DEVICES); ``log_path`` receives the runner's output outside runs.
    """

    def __init__(self, config, env=None, log_path=None, timeout=None):
        self.config = dict(config)
        self.env = child_environment(env)
        self.log_path = log_path
        self.timeout = timeout if timeout and timeout > 0 else None
        self.process = None
        self._to_child = self._from_child = None
        self.restarts = 0

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self):
        """Start the subprocess and send it its settings; ``wait_ready`` waits for the import."""
        parent_read, child_write = os.pipe()
        child_read, parent_write = os.pipe()
        code = ("import sys; from candle_mbo.isolation import runner_main; "
                "sys.exit(runner_main(%d, %d, %d))" % (child_read, child_write, os.getpid()))
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", code], pass_fds=(child_read, child_write), stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, env=self.env, start_new_session=True, close_fds=True)
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
            os.close(child_read)
            os.close(child_write)
        self._to_child, self._from_child = parent_write, parent_read
        send_message(self._to_child, self.config)

    def wait_ready(self):
        """Block until the model is imported; raise RunnerStartError with the reason if it is not."""
        try:
            kind, payload = receive_message(self._from_child)
        except EOFError:
            code = self._reap()
            raise RunnerStartError("the runner process died while importing the model (%s); see %s"
                                   % (describe_exit(code), self.log_path)) from None
        if kind == "error":
            self._reap()
            raise RunnerStartError(payload)
        return payload

    def ensure_started(self):
        if self.process is None:
            self.start()
            self.wait_ready()

    def close(self):
        """Stop the subprocess (politely, then by force)."""
        if self.process is None:
            return
        with contextlib.suppress(OSError):
            send_message(self._to_child, ("stop", None))
        try:
            self.process.wait(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            self._kill()
        self._reap()

    # -- running -------------------------------------------------------------------------------
    def run(self, task):
        """Run one task in the subprocess and return its record; restart the runner after a death."""
        return self.run_many([task])[0]

    def run_many(self, tasks):
        """Run tasks in order, sent in one message; return their records (one each, whatever happens).

        Each run's timeout counts from the previous run's result. After a death the remaining tasks go
        to a fresh runner.
        """
        records = []
        pending = collections.deque(tasks)
        while pending:
            self.ensure_started()
            started = time.time()
            with contextlib.suppress(BrokenPipeError):  # a dead runner: the reply loop sees it
                send_message(self._to_child, ("run", pending[0]) if len(pending) == 1 else ("runs", list(pending)))
            while pending:
                try:
                    reply = self._wait_reply(started)
                except (EOFError, BrokenPipeError):
                    reply = None
                if reply is not None and reply[0] == "result":
                    records.append(reply[1])
                    pending.popleft()
                    started = time.time()
                    continue
                records.append(self._lost_run(pending.popleft(), started, timed_out=reply == "timeout"))
                break
        return records

    def _lost_run(self, task, started, timed_out):
        """The record of a run whose runner died or was killed at its timeout; reaps the runner."""
        code = self._reap()
        finished = time.time()
        record = {"run_id": str(task["run_id"]), "status": TIMEOUT if timed_out else CRASHED, "objective": None,
                  "started": started, "finished": finished, "duration_s": round(finished - started, 6)}
        if timed_out:
            record["error"] = "killed after %.0f s (--timeout %g)" % (finished - started, self.timeout)
        else:
            record["error"] = "the runner process died: %s" % describe_exit(code)
        run_dir = task.get("run_dir")
        if run_dir:
            os.makedirs(run_dir, exist_ok=True)
            with contextlib.suppress(OSError), open(os.path.join(run_dir, "model.log"), "a") as log:
                log.write("\n[candle_mbo] %s\n" % record["error"])
            write_run_result(run_dir, record, atomic=True)
        elif self.log_path:  # --no-run-dirs: the run's output went to the runner's log
            with contextlib.suppress(OSError), open(self.log_path, "a") as log:
                log.write("\n[candle_mbo] run %s: %s\n" % (record["run_id"], record["error"]))
        self.restarts += 1
        return record

    def _wait_reply(self, started):
        poller = select.poll()
        poller.register(self._from_child, select.POLLIN | select.POLLHUP | select.POLLERR)
        while True:
            if self.timeout is None:
                wait_ms = None
            else:
                remaining = self.timeout - (time.time() - started)
                if remaining <= 0:
                    self._kill()
                    return "timeout"
                wait_ms = max(1, int(remaining * 1000))
            try:
                events = poller.poll(wait_ms)
            except InterruptedError:
                continue
            if events:
                return receive_message(self._from_child)

    def _kill(self):
        """SIGTERM the runner's process group, then SIGKILL it after a grace period."""
        if self.process is None:
            return
        for sig, grace in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # leftovers of the group (data loaders, ...)

    def _reap(self):
        code = None
        if self.process is not None:
            try:
                code = self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._kill()
                code = self.process.wait()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        for fd in (self._to_child, self._from_child):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.process = None
        self._to_child = self._from_child = None
        return code


def probe_model(config, log_path=None):
    """Import the model in a throwaway runner and return its ``describe()`` (defaults, definitions).

    This is how the master checks a model before anything runs, without loading the model (and its
    framework) into the master process. Raises RunnerStartError with a one-line reason.
    """
    runner = IsolatedRunner(config, log_path=log_path)
    runner.start()
    try:
        runner.wait_ready()
        send_message(runner._to_child, ("describe", None))
        try:
            kind, payload = receive_message(runner._from_child)
        except EOFError:
            raise RunnerStartError("the model's process died in initialize_parameters() (%s)"
                                   % describe_exit(runner._reap())) from None
        if kind != "described":
            raise RunnerStartError(payload)
        return payload
    finally:
        runner.close()


def describe_exit(code):
    """'killed by SIGSEGV', 'exit code 3', ... for a subprocess return code."""
    if code is None:
        return "unknown exit"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "signal %d" % -code
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return "killed by %s%s" % (name, hint)
    return "exit code %d" % code
