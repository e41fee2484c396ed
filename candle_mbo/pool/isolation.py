"""Isolation without reload: a long-lived runner subprocess per worker, supervised.

The subprocess imports the user's model once and then runs task after task. If a run segfaults, calls
``os._exit``, is killed by the OOM killer, or passes its timeout (the supervisor kills it: SIGTERM, then
SIGKILL after a grace period, also when SIGTERM is ignored), only the subprocess dies: the run is
recorded as ``crashed`` or ``timeout`` and a fresh runner is started for the next task.

What a run starts dies with it. The runner leads its own process group, which everything a run starts
joins (``os.system``, ``subprocess.Popen``, data-loader children), and a timeout or a crash kills that
whole group. A tiny watchdog process, forked by the runner before the model is imported, kills the group
when the runner dies for any reason, so that a kill -9 of the job leaves no process behind either
(the runner itself dies with its worker through ``PR_SET_PDEATHSIG``). Only a child that leaves the
group on purpose (``setsid``, a daemon) escapes.

A death is seen from the process, not from the pipe: the supervisor waits on a pidfd of the runner as
well as on its pipe, because a child the run forked may hold the pipe open after the runner died. The
runner's own pipe descriptors are close-on-exec, so programs the model runs never inherit them.

Wire protocol on two pipes (length-prefixed pickles)::

    supervisor -> runner   ("run", task) | ("runs", [task, ...])   one task, or a chunk of short ones, in order
    supervisor -> runner   ("describe", None) | ("stop", None)
    runner -> supervisor   ("ready", info) | ("error", message)     the model is imported (or cannot be)
    runner -> supervisor   ("described", description)
    runner -> supervisor   ("epoch", report)      an epoch report of the run in progress (candle_mbo.epochs)
    supervisor -> runner   ("answer", answer)     the dispatcher's answer to a report that waits for one
    runner -> supervisor   ("result", record)     one per run as it finishes (so a crash or timeout inside
                                                  a chunk costs only the run it hit; the rest of the chunk
                                                  goes to a fresh runner)

A report waits for its answer only when the dispatcher answers reports (``await_answers``: early
discarding), and never longer than ``ANSWER_TIMEOUT_S``; answers match reports by run id and sequence
number, so a late answer is dropped.
"""

import collections
import contextlib
import ctypes
import os
import pickle
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

from .runner import Runner, _one_line, write_run_result
from ..status import CRASHED, TIMEOUT

_HEADER = struct.Struct("!I")
KILL_GRACE_S = 2.0
# A runner that dies is restarted for the next task; after this many failed starts in a row (with a
# pause of 1, 2, ... s between them) the worker retires (see RunnerRetired).
RESTART_ATTEMPTS = 3
# The longest a runner may take to import the model (TensorFlow on a slow shared file system takes
# minutes; a hung import -- a locked file, a stuck driver -- takes for ever), and the longest the probe may
# take in all (the import and initialize_parameters()). CANDLE_MBO_LOAD_TIMEOUT (s) overrides it.
LOAD_TIMEOUT_S = float(os.environ.get("CANDLE_MBO_LOAD_TIMEOUT", 1800))
# Variables that would make a runner (or a model that imports mpi4py) join the parent's MPI job.
_MPI_ENV_PREFIXES = ("OMPI_COMM_WORLD", "OMPI_MCA_ess", "OMPI_MCA_orte", "OMPI_MCA_pmix", "PMIX_", "PMI_")
_PR_SET_PDEATHSIG = 1
# The longest a run waits for the dispatcher's answer to an epoch report before it trains on.
ANSWER_TIMEOUT_S = float(os.environ.get("CANDLE_MBO_ANSWER_TIMEOUT", 60))


class RunnerStartError(RuntimeError):
    """The runner subprocess could not load the model."""


class RunnerRetired(RuntimeError):
    """The runner could not be restarted ``RESTART_ATTEMPTS`` times; ``unrun`` are the tasks it never ran."""

    def __init__(self, reason, unrun):
        super().__init__(reason)
        self.unrun = list(unrun)


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


def _set_death_signal(sig):
    """Ask Linux to send ``sig`` to this process when its parent dies."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


def _start_watchdog(runner_pid):
    """Fork the process that kills the runner's process group once the runner is gone.

    Forked before the model is imported (a small copy of this interpreter); it holds no pipe and waits
    for its parent's death signal. The group is the runner's (the runner leads it), so the kill reaches
    everything the runs started that did not leave the group.
    """
    pid = os.fork()
    if pid:
        return pid
    try:
        for fd in range(3, 256):  # the runner's pipes and anything else it holds
            with contextlib.suppress(OSError):
                os.close(fd)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # only its parent's death (or SIGKILL) ends the watchdog
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
        _set_death_signal(signal.SIGUSR2)
        if os.getppid() == runner_pid:
            signal.sigwait({signal.SIGUSR2})
        with contextlib.suppress(OSError):
            os.killpg(os.getpgid(0), signal.SIGKILL)  # the group, this watchdog last
    finally:
        os._exit(0)


def _apply_memory_limit(megabytes):
    if megabytes:
        import resource

        limit = int(megabytes) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def runner_main(read_fd, write_fd, parent_pid):
    """Entry point of the runner subprocess (see the module docstring for the protocol)."""
    _set_death_signal(signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)  # the parent died before prctl took effect
    for sig in (signal.SIGINT, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)  # a job's stop signals are the dispatcher's to act on (a scheduler
        # may send them to every process of the job); SIGTERM keeps its meaning: the timeout's first warning
    os.set_inheritable(read_fd, False)  # programs the model runs never hold our pipes
    os.set_inheritable(write_fd, False)
    _start_watchdog(os.getpid())
    config = receive_message(read_fd)
    _apply_memory_limit(config.get("memory_limit_mb"))
    try:
        runner = Runner.from_config(config, fd_capture=True, reporter=_PipeReporter(read_fd, write_fd))
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
        if kind == "answer":
            continue  # to a report of a run that has ended meanwhile
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


class _PipeReporter:
    """The runner's end of the epoch channel: a report goes up the pipe; an answer, if one is awaited, comes
    down it (see the module docstring)."""

    def __init__(self, read_fd, write_fd):
        self.read_fd = read_fd
        self.write_fd = write_fd

    def __call__(self, report, wait):
        send_message(self.write_fd, ("epoch", report))
        if not wait:
            return None
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while True:
            ready, _, _ = select.select([self.read_fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                print("[candle_mbo] no answer to the report of epoch %s within %g s; training goes on"
                      % (report["epoch"], ANSWER_TIMEOUT_S), file=sys.stderr, flush=True)
                return None
            kind, payload = receive_message(self.read_fd)
            if kind == "stop":
                os._exit(0)  # the worker is closing this runner
            if kind == "answer" and payload.get("run_id") == report["run_id"] and payload.get("seq") == report["seq"]:
                return payload


def child_environment(extra=None):
    """The parent's environment without MPI launcher variables, plus ``extra``.

    candle_mbo's own folder is put first on PYTHONPATH so that the child imports this same copy.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(_MPI_ENV_PREFIXES)}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ written next to the user's model
    env.update(extra or {})
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    paths = [package_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != package_root]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


class IsolatedRunner:
    """Supervises one runner subprocess; every task handed to it comes back as exactly one record.

    ``config`` holds the Runner's settings (model, objective, reduction, require_objective,
    default_model, experiment_id, memory_limit_mb); ``env`` is added to the subprocess environment
    (thread counts, CUDA_VISIBLE_DEVICES); ``log_path`` receives the runner's output outside runs.

    Non-blocking use (a worker that keeps listening to its master): ``submit(tasks)`` when idle, then
    ``poll(timeout)`` returns the records finished meanwhile; ``cancel()`` kills the runs in progress.
    ``run(task)`` and ``run_many(tasks)`` are the blocking forms.
    """

    def __init__(self, config, env=None, log_path=None, timeout=None):
        self.config = dict(config)
        if log_path and not self.config.get("output_log"):
            self.config["output_log"] = log_path  # where runs without a folder print (--objective-regex reads it)
        self.env = child_environment(env)
        self.log_path = log_path
        self.timeout = timeout if timeout and timeout > 0 else None
        self.process = None
        self._to_child = self._from_child = self._pidfd = None
        self._pending = collections.deque()  # tasks submitted and not finished, the first one running
        self._run_started = None
        self.restarts = 0
        self.reports = []  # epoch reports received and not yet taken (take_reports)
        self.on_wait = None  # called about once a second while a (re)started runner loads the model

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self):
        """Start the subprocess and send it its settings; ``wait_ready`` waits for the import."""
        parent_read, child_write = os.pipe()
        child_read, parent_write = os.pipe()
        code = ("import sys; from candle_mbo.pool.isolation import runner_main; "
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
        try:
            self._pidfd = os.pidfd_open(self.process.pid)
        except (AttributeError, OSError):
            self._pidfd = None  # an old kernel: deaths are also checked every second (see _wait)
        send_message(self._to_child, self.config)

    def wait_ready(self, timeout=None):
        """Wait until the model is imported; raise RunnerStartError with the reason if it is not, or if it
        takes longer than ``timeout`` s (default LOAD_TIMEOUT_S: a hung import must not hold work for ever)."""
        timeout = LOAD_TIMEOUT_S if timeout is None else timeout
        poller = select.poll()
        poller.register(self._from_child, select.POLLIN | select.POLLHUP | select.POLLERR)
        deadline = time.monotonic() + timeout
        while not poller.poll(max(0, int(min(deadline - time.monotonic(), 1.0) * 1000))):
            if self.on_wait is not None:
                self.on_wait()
            if time.monotonic() >= deadline:
                self._kill()
                self._reap()
                raise RunnerStartError("the model did not finish loading within %d s (a hung import?)%s"
                                       % (timeout, "; see %s" % self.log_path if self.log_path else ""))
            if self.process.poll() is not None:
                break
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

    def ensure_started(self, attempts=1):
        """Start the runner if none runs; retry ``attempts`` times (pausing 1, 2, ... s) before giving up."""
        for attempt in range(attempts):
            if self.process is not None:
                return
            try:
                self.start()
                self.wait_ready()
                return
            except RunnerStartError:
                if attempt == attempts - 1:
                    raise
                time.sleep(attempt + 1)

    def close(self):
        """Stop the subprocess (politely, then by force); its process group goes with it."""
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
    @property
    def busy(self):
        return bool(self._pending)

    def submit(self, tasks):
        """Hand ``tasks`` to the runner, to run in order (only when not busy)."""
        assert not self._pending, "submit() while busy"
        self._pending.extend(tasks)
        self._send_pending()

    def _send_pending(self):
        try:
            self.ensure_started(attempts=RESTART_ATTEMPTS if self.restarts else 1)
        except RunnerStartError as exc:
            unrun = list(self._pending)
            self._pending.clear()
            raise RunnerRetired("the runner could not be restarted (%d attempts): %s" % (RESTART_ATTEMPTS, exc),
                                unrun) from None
        self._run_started = time.time()
        message = ("run", self._pending[0]) if len(self._pending) == 1 else ("runs", list(self._pending))
        with contextlib.suppress(BrokenPipeError):  # a dead runner: poll sees it
            send_message(self._to_child, message)

    def take_reports(self):
        """The epoch reports received since the last call (to forward to the dispatcher)."""
        reports, self.reports = self.reports, []
        return reports

    def answer(self, answer):
        """Pass the dispatcher's answer to an epoch report on to the run (dropped if the runner is gone)."""
        if self.process is not None and self._pending and self._pending[0]["run_id"] == answer.get("run_id"):
            with contextlib.suppress(OSError):
                send_message(self._to_child, ("answer", answer))

    def poll(self, timeout=0.0):
        """Records of the tasks that finished within ``timeout`` s (returns as soon as one did, or as soon as
        an epoch report arrived: see ``take_reports``).

        A run past its timeout is killed and recorded as ``timeout``; a dead runner's current run is
        ``crashed``. The tasks after it go to a fresh runner, started by the next call (so that records
        already finished are returned first); RunnerRetired when none can be started.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        records = []
        while self._pending:
            if self.process is None:
                if records:
                    break
                self._send_pending()
            event, record = self._wait(0.0 if records or self.reports else deadline - time.monotonic())
            if event == "epoch":
                self.reports.append(record)
                continue
            if event == "result":
                self._pending.popleft()
                records.append(record)
                self._run_started = time.time()
            elif event in ("died", "timeout"):
                records.append(self._lost_run(self._pending.popleft(), timed_out=event == "timeout"))
            elif records or self.reports or time.monotonic() >= deadline:
                break
        return records

    def _wait(self, timeout):
        """Wait up to ``timeout`` s for news of the current run: ``("result", record)``, ``("epoch", report)``,
        ``("died", None)``, ``("timeout", None)`` (the runner was killed) or ``(None, None)``."""
        poller = select.poll()
        poller.register(self._from_child, select.POLLIN | select.POLLHUP | select.POLLERR)
        if self._pidfd is not None:
            poller.register(self._pidfd, select.POLLIN)
        limit = timeout
        if self.timeout is not None:
            limit = min(limit, self.timeout - (time.time() - self._run_started))
        if self._pidfd is None:
            limit = min(limit, 1.0)  # no pidfd: look at the process at least once a second
        try:
            events = dict(poller.poll(max(0, int(limit * 1000))))
        except InterruptedError:
            events = {}
        pipe = events.get(self._from_child, 0)
        if pipe & select.POLLIN:  # results written before a death are read first
            try:
                kind, payload = receive_message(self._from_child)
            except EOFError:
                return "died", None
            return (kind, payload) if kind in ("result", "epoch") else (None, None)
        if pipe or self._pidfd in events or (self._pidfd is None and self.process.poll() is not None):
            return "died", None
        if self.timeout is not None and time.time() - self._run_started >= self.timeout:
            self._kill()
            return "timeout", None
        return None, None

    def cancel(self):
        """Kill the runs in progress now (the job is being interrupted); return the tasks that did not finish."""
        unfinished = list(self._pending)
        self._pending.clear()
        if self.process is not None:
            self._kill()
            self._reap()
        return unfinished

    def run(self, task):
        """Run one task in the subprocess and return its record; restart the runner after a death."""
        return self.run_many([task])[0]

    def run_many(self, tasks):
        """Run tasks in order (sent in one message) and return their records, one each, in order."""
        self.submit(tasks)
        records = []
        while self.busy:
            records += self.poll(timeout=3600.0)
            self.reports.clear()  # nobody to forward them to
        return records

    def _lost_run(self, task, timed_out):
        """The record of a run whose runner died or was killed at its timeout; reaps the runner."""
        code = self._reap()
        finished = time.time()
        started = self._run_started or finished
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
        for fd in (self._to_child, self._from_child, self._pidfd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.process = None
        self._to_child = self._from_child = self._pidfd = None
        return code


def probe_model(config, log_path=None):
    """Import the model in a throwaway runner and return its ``describe()`` (defaults, definitions).

    This is how the master checks a model before anything runs, without loading the model (and its
    framework) into the master process. Raises RunnerStartError with a one-line reason, also when the
    whole of it (the import and initialize_parameters()) takes longer than LOAD_TIMEOUT_S.
    """
    deadline = time.monotonic() + LOAD_TIMEOUT_S
    scratch = None
    env = {}
    if not os.environ.get("CANDLE_DATA_DIR"):  # candle_lib needs one; the probe must write nothing that stays
        scratch = tempfile.mkdtemp(prefix="candle-mbo-probe-data-")
        env["CANDLE_DATA_DIR"] = scratch
    runner = IsolatedRunner(config, env=env, log_path=log_path)
    runner.start()
    try:
        runner.wait_ready()
        send_message(runner._to_child, ("describe", None))
        if not select.select([runner._from_child], [], [], max(0.0, deadline - time.monotonic()))[0]:
            raise RunnerStartError("initialize_parameters() of %s did not return within %g s (a hung call?); "
                                   "CANDLE_MBO_LOAD_TIMEOUT sets the limit" % (config["model"], LOAD_TIMEOUT_S))
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
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


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
