"""A worker rank: runs the tasks its dispatcher sends, in a resident runner, and keeps listening meanwhile.

Protocol with the dispatcher (pickled tuples; the dispatcher's side is :mod:`candle_mbo.pool.policy`; the
``hello`` that precedes it is :func:`candle_mbo.pool.ranks.follower`'s)::

    dispatcher -> worker  ("init", settings)          runner settings and this worker's environment
    worker -> dispatcher  ("ready", info) | ("error", message)   the model is imported (or cannot be)
    dispatcher -> worker  ("run", task) | ("runs", [task, ...])  one task, or a chunk of short ones
    worker -> dispatcher  ("result", record) | ("results", [record, ...])   one reply per task message
    worker -> dispatcher  ("epochs", [report, ...])   epoch reports of the run in progress, as they come
                                                      (always before that run's result)
    dispatcher -> worker  ("answer", answer)          the answer to a report that waits for one: passed on
                                                      to the run ({"run_id", "seq", "stop", "reason"})
    dispatcher -> worker  ("revoke", [run_id, ...])   give back queued tasks not started yet
    worker -> dispatcher  ("revoked", [run_id, ...])  the ones it gave back (maybe none)
    worker -> dispatcher  ("retire", {"reason", "unrun"})   the runner cannot be restarted: the worker
                                                      stops taking work and gives back what it did not run
    dispatcher -> worker  ("stop", {"now": bool})     end; with now, kill the runs in progress first
    worker -> dispatcher  ("stopped", {"interrupted": [run_id, ...]})
    worker -> dispatcher  ("alive", None)             nothing else said for HEARTBEAT_S while it has work
    worker -> dispatcher  ("signal", {"signum"})      it received a stop signal (once, at once)
    worker -> dispatcher  ("left", {"interrupted", "reason"})   it leaves on its own, having killed these

Every message about a run names a run the dispatcher gave this worker; the dispatcher ignores (and logs)
one about a run the worker does not hold (see :mod:`candle_mbo.pool.policy`). A worker with work in
flight never stays silent: it says ``alive`` every ``HEARTBEAT_S`` (from a thread while an in-process run
blocks its loop), so that the dispatcher can tell a busy worker from a gone or hung one.

A worker that cannot load the model, or retires, stays in its loop (idle, asleep) until the stop: every
rank leaves together, so MPI_Finalize never waits on a rank that left early. While a run goes on, the
worker waits on the runner (a kernel sleep on its pipe and pidfd) in slices, checking for messages
between them; it never blocks in MPI.

Signals: SIGTERM, SIGINT and SIGUSR1 are the dispatcher's business (it decides about a grace period and
sends the stop). A worker reports the first one it gets at once (``signal``: a scheduler may signal the
workers and not rank 0), so that the dispatcher stops the whole job; a worker that still hears nothing
from it for ``grace + 10`` s kills its runs, says which (``left``) and leaves; a second signal kills its
runs and exits.
"""

import collections
import contextlib
import logging
import os
import signal
import threading
import time

from .isolation import LOAD_TIMEOUT_S, IsolatedRunner, RunnerRetired
from ..status import FAILED, TIMEOUT
from .transport import Backoff

log = logging.getLogger("candle_mbo.worker")

# Longest wait on a run before looking at the dispatcher's messages again: the waits grow from a
# microsecond (runs that end at once) to this, so a long run costs a worker 4 wake-ups a second, and a
# stop or revoke is seen within a quarter of a second.
BUSY_SLICE_S = 0.25
# A worker with work in flight says something at least this often (CANDLE_MBO_HEARTBEAT, seconds); the
# dispatcher takes one silent for ten times as long as gone or hung (see Pool.SILENCE_S).
HEARTBEAT_S = float(os.environ.get("CANDLE_MBO_HEARTBEAT", 30))
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class InProcessExecutor:
    """``--isolation none``: the worker runs the model itself (fastest; a crash ends the job).

    The timeout is enforced with SIGALRM, which interrupts Python code only: a run stuck in C code
    or ignoring exceptions cannot be stopped. Use the default isolation when that matters. Runs are
    synchronous: messages that arrive during a run are read after it (an answer to an epoch report is
    waited for by ``reporter``).
    """

    def __init__(self, config, env, fd_capture, timeout, heartbeat=None, reporter=None):
        from .runner import Runner

        os.environ.update(env)
        main = threading.current_thread() is threading.main_thread()
        try:
            with _alarm(LOAD_TIMEOUT_S if main else None):  # the load is bounded as a runner's is
                self.runner = Runner.from_config(config, fd_capture=fd_capture, reporter=reporter)
        except BaseException as exc:
            if isinstance(exc, _RunTimeout) or isinstance(exc.__cause__, _RunTimeout):
                raise RuntimeError("importing %s did not finish within %g s (a hung import?)"
                                   % (config["model"], LOAD_TIMEOUT_S)) from None
            raise
        self.timeout = timeout if timeout and timeout > 0 else None
        self.use_alarm = self.timeout and main
        if self.timeout and not self.use_alarm:
            log.warning("warning: --timeout is not enforced with --isolation none without mpiexec (the local "
                        "worker is a thread); use the default isolation to enforce it")
        self.heartbeat = heartbeat  # called every HEARTBEAT_S from a thread while a run blocks the worker
        self._tasks = []

    @property
    def busy(self):
        return bool(self._tasks)

    def submit(self, tasks):
        self._tasks = list(tasks)

    def poll(self, timeout=0.0):
        tasks, self._tasks = self._tasks, []
        with _beating(self.heartbeat):
            return [self.run(task) for task in tasks]

    def run(self, task):
        if not self.use_alarm:
            return self.runner.run(task)
        try:
            with _alarm(self.timeout):
                record = self.runner.run(task)
        except _RunTimeout:
            record = {"run_id": str(task["run_id"]), "status": TIMEOUT, "objective": None,
                      "error": "stopped after %g s (--timeout)" % self.timeout}
        if record.get("status") == FAILED and "_RunTimeout" in str(record.get("error")):
            record["status"] = TIMEOUT
            record["error"] = "stopped after %g s (--timeout)" % self.timeout
        return record

    def cancel(self):
        tasks, self._tasks = self._tasks, []
        return tasks

    def take_reports(self):
        return []  # sent by the reporter as they happen

    def answer(self, answer):
        pass  # the reporter waits for its answers itself

    def close(self):
        pass


class _RunTimeout(BaseException):
    """Raised into a run by SIGALRM (a BaseException so that user code's `except Exception` lets it by)."""


@contextlib.contextmanager
def _alarm(seconds):
    """Raise _RunTimeout into this (main) thread after ``seconds`` (None: no limit)."""
    if not seconds:
        yield
        return

    def expire(signum, frame):
        raise _RunTimeout()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _beating(heartbeat):
    """Call ``heartbeat()`` every HEARTBEAT_S from a daemon thread while the block runs (None: nothing)."""
    if heartbeat is None:
        yield
        return
    done = threading.Event()

    def beat():
        while not done.wait(HEARTBEAT_S):
            heartbeat()

    thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def make_executor(settings, rank, in_process_link, heartbeat=None, waiting=None, reporter=None):
    """The executor of this worker: an isolated runner (default) or the model in this process. Either keeps
    the worker heard while it blocks: the in-process one calls ``heartbeat`` every HEARTBEAT_S from a thread
    during a run, the isolated one calls ``waiting`` about once a second while a restarted runner loads. The
    epoch reports of a run in this process leave through ``reporter``."""
    config = dict(settings["runner"])
    env = settings.get("env") or {}
    log_dir = settings.get("log_dir")
    isolated = settings.get("isolation", "process") != "none"
    log_path = os.path.join(log_dir, "runner-%d.log" % rank) if log_dir else None
    if not settings.get("run_dirs", True):
        # --no-run-dirs: one scratch folder per worker is every run's output_dir; run output goes to the
        # runner's log (isolated) or to logs/worker-<rank>.log (in-process)
        if settings.get("scratch_dir"):
            config["scratch_dir"] = os.path.join(settings["scratch_dir"], "worker-%d" % rank)
        if not isolated and log_dir:
            config["run_log"] = os.path.join(log_dir, "worker-%d.log" % rank)
    if not isolated:
        return InProcessExecutor(config, env, fd_capture=not in_process_link, timeout=settings.get("timeout"),
                                 heartbeat=heartbeat, reporter=reporter)
    executor = IsolatedRunner(config, env=env, log_path=log_path, timeout=settings.get("timeout"))
    executor.ensure_started()
    executor.on_wait = waiting
    return executor


class _Signals:
    """A worker's view of stop signals (installed only in a worker that is the main thread of its process)."""

    def __init__(self):
        self.first = None  # (signal number, time) of the first signal
        self.executor = None

    def install(self, earlier=None):
        """Handle stop signals from now on; ``earlier``: a (signal, time) this rank saw before its role."""
        self.first = earlier
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        if self.first is None:
            self.first = (signum, time.monotonic())
            return
        if self.executor is not None:  # a second signal: end at once
            self.executor.cancel()
        os._exit(128 + signum)


class _WorkerState:
    """One worker rank's loop state: its executor, the task messages queued behind the current one."""

    def __init__(self, link, master, info):
        self.link = link
        self.master = master
        self.rank = link.rank
        self.in_process = getattr(link, "in_process", False)
        self.backoff = Backoff()
        self.busy_backoff = Backoff(slow_max=BUSY_SLICE_S)  # waits on a run in progress
        self.host = info["host"]
        self.signals = _Signals()
        self.executor = None
        self.queued = collections.deque()  # task messages received and not started: lists of tasks
        self.current = None  # [kind, records so far] of the task message in progress
        self.grace = 0.0
        self.stopped = False
        self.last_sent = time.monotonic()
        self.signal_reported = False
        self.deferred = collections.deque()  # messages that came while an in-process run waited for an answer

    def send(self, message):
        self.link.send(self.master, message)
        self.last_sent = time.monotonic()

    def _alive(self):
        self.send(("alive", None))

    def _alive_if_due(self):
        if time.monotonic() - self.last_sent >= HEARTBEAT_S:
            self._alive()

    def start(self, settings, early_signal=None):
        """Install the signal handlers and load the model; tell the dispatcher how that went.

        ``early_signal``: the (signal, time) this rank noted before it had a role (see ranks.follower)."""
        if not self.in_process and threading.current_thread() is threading.main_thread():
            self.signals.install(early_signal)
        self.grace = float(settings.get("grace") or 0)
        try:
            self.executor = make_executor(settings, self.rank, self.in_process, heartbeat=self._alive,
                                          waiting=self._alive_if_due, reporter=self._report_in_process)
        except Exception as exc:  # noqa: BLE001 - the dispatcher decides what a broken worker means
            self.send(("error", "%s (rank %d on %s)" % (exc, self.rank, self.host)))
        else:
            self.send(("ready", {"host": self.host, "pid": os.getpid()}))
        self.signals.executor = self.executor

    def _report_in_process(self, report, wait):
        """The epoch channel of a run in this very process (``--isolation none``): send the report, and wait
        for its answer when one is due, keeping any other message for after the run."""
        self.send(("epochs", [report]))
        if not wait:
            return None
        from .isolation import ANSWER_TIMEOUT_S

        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        backoff = Backoff()
        while time.monotonic() < deadline:
            received = self.link.wait(deadline - time.monotonic(), backoff, source=self.master)
            if received is None:
                break
            kind, payload = received[1]
            if kind == "answer" and payload.get("run_id") == report["run_id"] and payload.get("seq") == report["seq"]:
                return payload
            if kind != "answer":
                self.deferred.append(received[1])
        return None

    def handle(self, message):
        kind, payload = message
        self.backoff.reset()
        if kind == "answer":
            if self.executor is not None:
                self.executor.answer(payload)
            self.busy_backoff.reset()  # the run may be waiting for it: look at it again soon
        elif kind in ("run", "runs"):
            self.queued.append([payload] if kind == "run" else list(payload))
        elif kind == "revoke":
            wanted = set(payload)
            given = [t["run_id"] for tasks in self.queued for t in tasks if t["run_id"] in wanted]
            kept = ([t for t in tasks if t["run_id"] not in wanted] for tasks in self.queued)
            self.queued = collections.deque(tasks for tasks in kept if tasks)
            self.send(("revoked", given))
        elif kind == "stop":
            interrupted = []
            if payload and payload.get("now") and self.executor is not None:
                interrupted = [t["run_id"] for t in self.executor.cancel()]
            interrupted += self._queued_ids()
            self.send(("stopped", {"interrupted": interrupted}))
            self.stopped = True

    def _queued_ids(self):
        return [t["run_id"] for tasks in self.queued for t in tasks]

    def retire(self, reason, unrun=()):
        """Give back every task not run and stop taking work (the dispatcher requeues them elsewhere)."""
        if self.current and self.current[1]:
            self.send(("results", self.current[1]))
        self.send(("retire", {"reason": "%s (rank %d on %s)" % (reason, self.rank, self.host),
                              "unrun": [t["run_id"] for t in unrun] + self._queued_ids()}))
        self.queued.clear()
        self.current = None
        if self.executor is not None:
            self.executor.close()
        self.executor = self.signals.executor = None

    def step(self):
        """One turn of the loop: a message, progress of the run, the next task, or a short sleep."""
        if self.deferred:
            self.handle(self.deferred.popleft())
            return
        received = self.link.poll(self.master)
        if received is not None:
            self.handle(received[1])
            return
        now = time.monotonic()
        if self.signals.first is not None:
            signum, since = self.signals.first
            if not self.signal_reported:
                self.signal_reported = True
                self.send(("signal", {"signum": int(signum)}))
            if now - since > self.grace + 10:
                self._leave("no word from the dispatcher %d s after %s (rank %d on %s)"
                            % (now - since, signal.Signals(signum).name, self.rank, self.host))
                return
        if self.current is not None or self.queued:
            self._alive_if_due()
        executor = self.executor
        if executor is not None and executor.busy:
            try:
                records = executor.poll(timeout=max(self.busy_backoff.next_delay(), 0.001))
            except RunnerRetired as exc:
                self.retire(str(exc), exc.unrun)
                return
            reports = executor.take_reports()
            if reports:  # before the run's result: the journal keeps a run's curve ahead of its record
                self.send(("epochs", reports))
                self.busy_backoff.reset()  # an answer may be due: look for it again soon
            if records:
                for record in records:
                    record["worker"], record["host"] = self.rank, self.host
                self.current[1].extend(records)
                self.backoff.reset()
                self.busy_backoff.reset()
            if not executor.busy:
                kind, done = self.current
                self.send(("result", done[0]) if kind == "run" else ("results", done))
                self.current = None
            return
        if self.queued:
            if executor is None:
                self.retire("no runner (the model could not be loaded)")
                return
            tasks = self.queued.popleft()
            self.busy_backoff.reset()
            self.current = ["run" if len(tasks) == 1 else "runs", []]
            try:
                executor.submit(tasks)
            except RunnerRetired as exc:
                self.current = None
                self.retire(str(exc), exc.unrun)
            return
        received = self.link.wait(self.backoff.next_delay(), self.backoff, source=self.master)
        if received is not None:
            self.handle(received[1])

    def _leave(self, reason):
        """Leave on our own: kill the runs, tell the dispatcher which (never silently), stop the loop. Records
        of the current task message that finished are sent first."""
        if self.current and self.current[1]:
            self.send(("results", self.current[1]))
        interrupted = [t["run_id"] for t in self.executor.cancel()] if self.executor is not None else []
        interrupted += self._queued_ids()
        self.queued.clear()
        self.current = None
        log.warning("worker %d: %s; leaving", self.rank, reason)
        self.send(("left", {"interrupted": interrupted, "reason": reason}))
        self.stopped = True


def worker_loop(link, settings, info, master=0, early_signal=None):
    """A worker's life after its ``init``: run tasks from the dispatcher until told to stop; returns 0.

    ``early_signal``: a stop signal (signal, time) the rank received before it became a worker."""
    state = _WorkerState(link, master, info)
    state.start(settings, early_signal)
    while not state.stopped:
        state.step()
    if state.executor is not None:
        state.executor.close()
    return 0
