"""The one dispatch loop of both workflows: tasks from a source, through the journal, to the pool, and back.

::

    source (UPF lines | optimizer) --new tasks--> journal ("dispatched") --> pool --> workers
          ^                                                                          |
          +-------- finished records <-- journal (record) <-- progress, best.json <--+
          +-------- epoch reports ------ journal ("epoch") <-- progress <------------+ (while runs train)
          +-------- "stop"? (source.reported) ---------------> pool --> the run's worker

Order of a resumed job: the tasks the journal holds as dispatched but unfinished run first, under their
own run ids and parameters; then the source's new tasks. A task is journaled before any worker can see
it, and a result before anything else learns of it (progress, best.json, the optimizer). Epoch reports are
journaled as they arrive (one write per batch); the source may answer a report with "stop" (early
discarding lives with the search, see ``Source.reported``), which the pool delivers to the run.

Each start of a task message on a worker is journaled (``started``); the jobs in which a run started are
its attempts. On resume, a task that started in ``max_attempts`` jobs without finishing (each of them ended
while it ran: it took its worker down, or the job was killed or hit its walltime) is recorded ``crashed``
instead of being run again, and the source goes on.

The loop also owns the job's end:
- **fail fast**: when the first ``max_failures`` runs of this job all failed (none succeeded) and planned
  work is left, the source stops, running runs finish, and the job ends with ``EXIT_FAILING`` and one line
  naming the common error (when every planned run has a result, failed ones included, the job completed);
- **signals**: SIGINT, SIGTERM and SIGUSR1 (to rank 0, or reported by a worker that got it) stop
  dispatching at once: nothing is sent after the signal, and tasks the source hands out after it (it may
  have been computing them in R) are neither journaled nor run. SIGTERM and SIGUSR1 first let running runs
  finish for up to ``grace`` seconds; then what is still running is killed and journaled as interrupted,
  one line says how to continue, and the exit code is 128 + the signal's number. A second signal to this
  process ends the job at once (everything journaled so far stays valid). Under Open MPI's mpiexec, Ctrl-C
  reaches the ranks as SIGTERM (and mpiexec itself exits 1), so the line names the signal with its usual
  causes;
- **liveness**: a worker with work in flight that stays silent past the pool's deadline may be hung or
  gone, and may still run its task: the loop journals what is unfinished, says how to continue, stops the
  other workers and raises RankLost (the job then ends every rank at once).
"""

import collections
import logging
import math
import os
import shutil
import signal
import sys
import threading
import time

from . import journal
from .._fileio import write_json_atomic
from .._trace import phase
from ..errors import RankLost
from ..pool.policy import PoolError
from ..status import CRASHED, OK, PRUNED

log = logging.getLogger("candle_mbo")

EXIT_FAILING = 3
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
GRACE_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
_FAULT = os.environ.get("CANDLE_MBO_INJECT_FAULT", "")
_CAUSES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "Ctrl-C or the scheduler",
           signal.SIGUSR1: "the scheduler, before the walltime"}


def stopped_by(signum):
    """``stopped by SIGTERM (Ctrl-C or the scheduler)``: the signal rank 0 got and what usually sends it."""
    cause = _CAUSES.get(signum)
    return "stopped by %s%s" % (signal.Signals(signum).name, " (%s)" % cause if cause else "")


class Task:
    """A task a source hands to the loop: run id, parameters for run(), and the source's journal fields."""

    __slots__ = ("run_id", "params", "fields", "rerun")

    def __init__(self, run_id, params, fields=None, rerun=False):
        self.run_id = run_id
        self.params = params
        self.fields = fields or {}
        self.rerun = rerun


class Source:
    """Where tasks come from. The loop calls, in this order: ``resume(replay)`` once, then repeatedly
    ``take(view)`` for new tasks and ``finished(record, task)`` for each result; ``exhausted()`` says no
    task will come any more (with nothing of the source's still pending; always true once stopped);
    ``stop()`` asks it to hand out no more; ``cancelled(run_ids)`` names tasks the loop dropped before
    they ran (journaled ones run first on resume); ``planned_left()`` says how many planned tasks it has
    not handed out yet (None: unknown); ``reported(report, task)`` sees each epoch report of a running task
    and may return an answer ``{"stop": True, "reason": ...}`` to end that run early; ``close()`` at the
    end, whatever happened.

    ``view`` tells the source about the pool: ``idle`` workers, ``running`` tasks, ``queued`` tasks,
    ``workers``, ``finished`` records in the experiment, and ``now`` (the dispatcher's clock, in seconds).
    """

    def resume(self, replay):
        """Learn the finished records; return the unfinished dispatched entries as Tasks, to run first."""
        return []

    def take(self, view):
        return []

    def finished(self, record, task):
        pass

    def exhausted(self):
        raise NotImplementedError

    def stop(self):
        pass

    def cancelled(self, run_ids):
        pass

    def reported(self, report, task):
        """An epoch report of a running task; return ``{"stop": True, "reason": str}`` to stop that run."""
        return None

    def planned_left(self):
        return None

    def wait_s(self):
        """How long the loop may wait for results before asking the source again."""
        return 1.0

    def close(self):
        pass


class View:
    __slots__ = ("idle", "running", "queued", "workers", "finished", "now")


class Dispatcher:
    """Runs a source's tasks on a pool into an experiment (see the module docstring)."""

    def __init__(self, source, pool, experiment, progress, settings, clock=time.time):
        self.source = source
        self.pool = pool
        self.experiment = experiment
        self.progress = progress
        self.maximize = bool(settings.get("maximize"))
        self.max_failures = settings.get("max_failures")
        self.grace = float(settings.get("grace") or 0)
        self.run_dirs = not settings.get("no_run_dirs")
        self.resume_command = settings.get("resume_command")
        self.max_attempts = settings.get("max_attempts")
        self.inputs_version = settings.get("inputs_version") or 1
        self.job = settings.get("job") or 1  # this job's number in the experiment (1, then one per resume)
        self.attempts = dict(experiment.replay.attempts)  # run_id -> jobs it started in, this one included
        self._started_here = set()
        self.clock = clock  # a simulation passes its virtual clock
        self.tasks = {}  # run_id -> Task, dispatched and not finished
        self.start = time.time()
        self.finished_here = []
        self.succeeded = False  # a run of this job succeeded: fail fast is off for good
        self.best = None
        self.failing = None  # the fail-fast message, once it fired
        self.signal = None  # (signum, time) of the first stop signal (to this process or a worker)
        self._signalled_here = False
        self._grace_started = False
        self._said = False
        self._recording = None  # the run whose record is being stored (_record)
        self.unstarted = []  # tasks taken back from the pool in a grace period: interrupted before they ran
        self.stops = {}  # run_id -> the answer that stopped it (merged into its record)
        self.fidelity = settings.get("fidelity") or "epochs"
        self.planned_default = settings.get("planned_epochs")  # the benchmark's default for the fidelity
        for record in experiment.records:
            self._track_best(record)

    # -- the loop ----------------------------------------------------------------------------------
    def run(self):
        """Dispatch until the source is exhausted (or the job stops); return the exit code."""
        main = threading.current_thread() is threading.main_thread()
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS} if main else {}
        phase("dispatch")
        self.pool.on_start = self._started
        try:
            for task in self.source.resume(self.experiment.replay):
                task.rerun = True
                attempts = self.attempts.get(task.run_id, 0)
                if self.max_attempts and attempts >= self.max_attempts:
                    self._give_up(task, attempts)
                else:
                    self._submit([task])
            while True:
                if self.signal is not None and self._signal_ends():
                    return self._interrupt()
                if self.pool.n_workers == 0:
                    raise PoolError("no worker can run the model (see the errors above)")
                if self.failing is None and self.signal is None:
                    tasks = self.source.take(self._view())
                    if self.signal is None:
                        self._submit(tasks)
                    else:  # the signal came while the source computed them: neither journaled nor run
                        self.source.cancelled([t.run_id for t in tasks])
                if self.source.exhausted() and not self.tasks:
                    break
                results = self.pool.poll(timeout=min(self.source.wait_s(), 0.25))
                self._on_reports(self.pool.take_reports())  # first: a worker sends a run's reports before its result
                for result in results:
                    self._record(result)
                self._watch_workers()  # after a poll: what the workers said while this loop was busy is read
                self.progress.tick()
            return EXIT_FAILING if self.failing else 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _view(self):
        view = View()
        view.idle = self.pool.idle_workers()
        view.running = len(self.pool.tasks)
        view.queued = len(self.pool.queue)
        view.workers = self.pool.n_workers
        view.finished = len(self.experiment.records)
        view.now = self.clock()
        return view

    def _submit(self, tasks):
        """Journal the tasks (one write), then hand them to the pool (which sends nothing after a signal).

        They count as unfinished before the write, so that the line a signal prints at any moment counts
        every task journaled."""
        if not tasks:
            return
        for task in tasks:
            self.tasks[task.run_id] = task
        self.experiment.append_events([journal.dispatched(t.run_id, t.params, **t.fields)
                                       for t in tasks if not t.rerun])
        for task in tasks:
            self.pool.submit({"run_id": task.run_id, "params": task.params,
                              "run_dir": self.experiment.run_dir(task.run_id) if self.run_dirs else None})

    def _on_reports(self, reports):
        """Journal the epoch reports (one write), show them, and answer those that wait for an answer."""
        if not reports:
            return
        self.experiment.append_events([journal.epoch(r) for r in reports])
        for report in reports:
            task = self.tasks.get(report["run_id"])
            if task is None:
                answer = None  # its result is in already (or it was dropped): nothing to decide
            else:
                self.progress.epoch(report["run_id"], report["epoch"], self._planned(task))
                answer = self.source.reported(report, task) if self.signal is None else None
            if answer and answer.get("stop"):
                self.stops[report["run_id"]] = answer
            if report.get("wait"):
                self.pool.answer(report, answer or {"stop": False})

    def _planned(self, task):
        """How many epochs a task is to train (its fidelity parameter, else the benchmark's default)."""
        value = task.params.get(self.fidelity, self.planned_default)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    def _started(self, rank, run_ids):
        """The pool starts a task message on worker ``rank``: journal it (this job is an attempt of each run)."""
        for run_id in run_ids:
            if run_id not in self._started_here:
                self._started_here.add(run_id)
                self.attempts[run_id] = self.attempts.get(run_id, 0) + 1
        self.experiment.append_events([journal.started(run_ids, rank, self.job, self.inputs_version)])

    def _record(self, result):
        """Store a finished run (durably, first), then tell everyone else.

        After a stop signal only ``ok`` (and ``pruned``) results count: a run that failed or died then may have
        been hit by the job's own signal (a scheduler sends it to every process of the job), so it stays unfinished,
        journaled as interrupted, and runs again first on resume.
        """
        if self.signal is not None and result.get("status") not in (OK, PRUNED):
            return
        run_id = result["run_id"]
        result["attempt"] = self.attempts.get(run_id)
        self._recording = run_id  # unfinished until its record is in (see _say_interrupted)
        try:
            record = self._store(result, self.tasks.get(run_id))
            self.tasks.pop(run_id, None)
        finally:
            self._recording = None
        self.finished_here.append(record)
        self.succeeded = self.succeeded or record.get("status") in (OK, PRUNED)
        self._check_failing()
        if _FAULT.startswith("master-after:") and len(self.experiment.records) >= int(_FAULT.split(":")[1]):
            raise RuntimeError("injected master fault after %d results (CANDLE_MBO_INJECT_FAULT)"
                               % len(self.experiment.records))

    def _store(self, result, task):
        """Journal a finished run first, then the progress line, best.json and the source; return the record."""
        record = finish_record(result, task)
        stop = self.stops.pop(record["run_id"], None)
        if stop is not None and record.get("status") == PRUNED:
            record["pruned"] = {k: v for k, v in stop.items() if k != "stop"}
        self.experiment.append(record)
        self.progress.update(record)
        self._track_best(record)
        if task is not None:
            self.source.finished(record, task)
        return record

    def _give_up(self, task, attempts):
        """A resumed task that started in ``attempts`` jobs and never finished: recorded crashed, not run again
        (it is not this job's failure, so fail fast does not count it)."""
        error = ("was running when %d jobs ended and never finished (it took its worker down, or the job was "
                 "killed or reached its walltime, each time); not run again (--max-attempts %d; --timeout "
                 "bounds a run)" % (attempts, self.max_attempts))
        log.warning("warning: run %s %s", task.run_id, error)
        result = {"run_id": task.run_id, "status": CRASHED, "objective": None, "error": error, "attempt": attempts}
        run_dir = self.experiment.run_dir(task.run_id) if self.run_dirs else None
        if run_dir and os.path.isdir(run_dir):
            write_json_atomic(os.path.join(run_dir, "result.json"), result)
        self._store(result, task)

    # -- best, fail fast ---------------------------------------------------------------------------
    def _track_best(self, record):
        value = objective_value(record)
        if value is None:
            return
        best = self.best
        if best is None or (value > best["objective"] if self.maximize else value < best["objective"]):
            self.best = {"run_id": record["run_id"], "objective": value, "params": record.get("params", {})}
            write_json_atomic(self.experiment.file("best.json"), self.best)

    def _check_failing(self):
        """Fail fast: the first ``max_failures`` runs of this job all failed, none succeeded, and planned work
        is left undone (a job whose every planned run is running or has a result ends normally, failed runs
        being results)."""
        limit = self.max_failures
        if not limit or self.failing is not None or self.succeeded or len(self.finished_here) < limit:
            return
        if not self.pool.queue and self.source.planned_left() == 0:
            return
        done = len(self.finished_here)
        errors = collections.Counter(_error_kind(r) for r in self.finished_here)
        common, count = errors.most_common(1)[0]
        example = next(r for r in self.finished_here if _error_kind(r) == common)
        where = ("%s/runs/%s/model.log" % (self.experiment.path, example["run_id"]) if self.run_dirs
                 else "%s/logs/" % self.experiment.path)
        self.failing = ("every run so far failed (%d run%s%s): %s; see %s. Stopped early, the running runs "
                        "finish (--max-failures %d; 0 turns this off)"
                        % (done, "" if done == 1 else "s", "" if count == done else ", %d like this" % count,
                           common, where, limit))
        print("error: %s" % self.failing, file=sys.stderr, flush=True)
        self._drop_queued()

    def _drop_queued(self):
        """Stop the source and take back what the pool has not sent: it stays journaled, to run first on resume."""
        self.source.stop()
        dropped = [task["run_id"] for task in self.pool.cancel_queued()]
        for run_id in dropped:
            self.tasks.pop(run_id, None)
        self.source.cancelled(dropped)
        return dropped

    # -- signals, liveness --------------------------------------------------------------------------
    def _on_signal(self, signum, frame):
        if self._signalled_here:
            os._exit(128 + signum)
        self._signalled_here = True
        if self.signal is None:
            self._stop_signal(signum)

    def _stop_signal(self, signum):
        """The job got a stop signal (this process, or a worker that reported it): send nothing more."""
        self.signal = (signum, time.monotonic())
        self.pool.hold()
        if signum not in GRACE_SIGNALS or not self.grace:
            # Said at once (also from a handler): the loop may be held up (a slow file system, R) past
            # the launcher's SIGKILL, and the journal already lets the resume rerun what did not finish.
            self._say_interrupted(signum)

    def _watch_workers(self):
        """A stop signal a worker reported stops the job; a silent worker ends it (see the module docstring)."""
        if self.signal is None and self.pool.worker_signal is not None:
            signum, rank = self.pool.worker_signal
            log.warning("worker %d received %s (rank 0 did not): the job stops", rank, signal.Signals(signum).name)
            self._stop_signal(signum)
        silent = self.pool.silent_workers()
        if silent:
            self._lose(silent)

    def _lose(self, silent):
        """Journal the unfinished tasks, stop the other workers and raise RankLost naming the silent ones."""
        self.pool.hold()
        now = time.monotonic()
        who = "; ".join("worker %d on %s said nothing for %.0f s while it ran %s"
                        % (w.rank, w.info.get("host", "?"), now - w.last_word,
                           ", ".join(i for ids in w.messages for i in ids)) for w in silent)
        unfinished = self._journal_unfinished(reason="a worker went silent", exit_code=1)
        self._stop_workers_now()
        raise RankLost("%s (hung, or gone: it may still run it, and a run must not run twice); the job stops: "
                       "%d finished, %d interrupted (they run again first); continue with: %s"
                       % (who, len(self.experiment.records), len(unfinished), self.resume_command))

    def _say_interrupted(self, signum):
        """The one line that tells how to continue (once; a raw write, safe while a print is in progress)."""
        if self._said:
            return
        self._said = True
        # Said from a signal handler, maybe while a record is being stored: that run stays a task until its
        # record is in the experiment's records, and counts once, as finished from then on.
        records = self.experiment.records
        unfinished = set(self.tasks) | set(self.unstarted)
        if self._recording is not None and records and records[-1].get("run_id") == self._recording:
            unfinished.discard(self._recording)
        line = ("%s: %d finished, %d interrupted (they run again first); continue with: %s\n"
                % (stopped_by(signum), len(records), len(unfinished), self.resume_command))
        try:
            os.write(1, line.encode("utf-8", "replace"))
        except OSError:
            pass

    def _signal_ends(self):
        """After a stop signal: True at once, or (SIGTERM/SIGUSR1 with --grace) once the running runs
        finished or the grace period is over. Queued tasks never start."""
        signum, since = self.signal
        if signum not in GRACE_SIGNALS or not self.grace:
            return True
        if not self._grace_started:
            self._grace_started = True
            self.unstarted += self._drop_queued()
            log.info("%s: no new runs; waiting up to %g s for %d running run%s (--grace)",
                     signal.Signals(signum).name, self.grace, len(self.pool.tasks),
                     "" if len(self.pool.tasks) == 1 else "s")
        return not self.pool.tasks or time.monotonic() - since >= self.grace

    def _interrupt(self):
        """Kill what still runs, journal it as interrupted, say how to continue; return 128 + signal."""
        signum = self.signal[0]
        self._journal_unfinished(signal_name=signal.Signals(signum).name, exit_code=128 + signum)
        sys.stdout.flush()
        self._say_interrupted(signum)
        self._stop_workers_now()
        return 128 + signum

    def _journal_unfinished(self, **why):
        """Stop the source, record what arrived, journal the unfinished tasks as interrupted (``why``: the
        signal's name or a reason), fsync; return their run ids."""
        self.source.stop()
        results = self.pool.poll(timeout=0)
        self._on_reports(self.pool.take_reports())
        for result in results:
            self._record(result)
        unfinished = sorted(set(self.tasks) | set(self.unstarted))
        running = {run_id: {"worker": rank, "started": since} for run_id, (rank, since) in self.pool.running().items()}
        self.experiment.append_events([journal.interrupted(unfinished, running=running, **why)])
        self.experiment.sync()
        return unfinished

    def _stop_workers_now(self):
        """Stop every worker, killing its runs; one that finished ok in the last moment is recorded (a record
        beats "interrupted")."""
        for record in self.pool.interrupt():
            if record.get("status") == OK:
                self.experiment.append(finish_record(record, self.tasks.pop(record["run_id"], None)))


def _error_kind(record):
    error = " ".join(str(record.get("error") or record.get("status")).split())
    return error if len(error) <= 200 else error[:200].rsplit(" ", 1)[0] + " ..."


_FIRST_FIELDS = ("run_id", "status", "objective", "duration_s", "worker", "host", "started", "finished")


def finish_record(result, task=None):
    """Turn a pool result into the record stored in the journal (task -> params, fields ordered)."""
    pool_task = result.pop("task", None) or {}
    ordered = {key: result.pop(key, None) for key in _FIRST_FIELDS}
    if task is not None:
        for key in ("iteration", "prop_type", "line"):
            if key in task.fields:
                ordered[key] = task.fields[key]
        if "step" in task.fields:
            ordered["iteration"] = task.fields["step"]
    ordered.update(result)
    ordered["params"] = task.params if task is not None else pool_task.get("params", {})
    if task is not None and "x" in task.fields:
        ordered["x"] = task.fields["x"]
        if task.fields.get("info"):
            ordered["proposal"] = task.fields["info"]
    return ordered


def objective_value(record):
    """The objective of an ok run as a finite float, None for anything else (what optimizers learn from)."""
    value = record.get("objective")
    if record.get("status") == OK and isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def resume_command(entry, output, size):
    """The exact command that continues this experiment, as this job was started: with the launcher and its
    rank count when ``size`` (the ranks the launcher started) is more than 1, without one otherwise."""
    python = sys.executable
    if shutil.which(os.path.basename(python)) == python:
        python = os.path.basename(python)
    command = "%s -m %s --output %s --resume" % (python, entry, _quote(os.path.abspath(output)))
    if size > 1:
        launcher = "srun" if "SLURM_STEP_ID" in os.environ and "OMPI_COMM_WORLD_SIZE" not in os.environ else "mpiexec"
        command = "%s -n %d %s" % (launcher, size, command)
    return command


def _quote(text):
    import shlex

    return shlex.quote(text)
