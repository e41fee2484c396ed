"""The dispatch policy: which worker gets which task, and when; results come back as they finish.

The pool knows nothing about mlrMBO, UPF or the journal. A task is ``{"run_id", "params", "run_dir"}``;
a result is the runner's record plus ``worker``, ``host`` and ``task``. The messages it exchanges with
worker ranks are listed in :mod:`candle_mbo.pool.worker`; the transport is :mod:`candle_mbo.pool.transport`.

Rules:
- A task goes to an idle worker (nothing in flight) first.
- Pipelining, for runs measured short only: while each of the last ``WINDOW`` runs took under
  ``PIPELINE_BELOW_S``, a worker whose current run started less than ``PIPELINE_BELOW_S`` ago may get a
  second message queued behind it, so that it never waits for the dispatcher between two short runs. A run
  that may be long never has a task queued behind it; and should a queued task still wait behind a run
  that turned long, it is revoked and goes to the first worker that frees.
- Chunks: while runs take a few milliseconds (under ``CHUNK_BELOW_S`` on average), a message carries
  about ``CHUNK_S`` seconds of tasks (at most ``MAX_CHUNK``, and never more than a sixth of the queue per
  worker, so that the last tasks still spread over every worker).
- A worker that cannot load the model (``error``) or whose runner cannot be restarted (``retire``) is
  left out; its tasks go back to the queue. Every worker, left out or not, gets the final stop.
- The pool owns run ids: each task sent is held by one worker (``owner``) until its record comes back or
  the pool takes it back. A message about a run its sender does not hold (a result, a run given back by
  ``revoked``, ``retire`` or ``left``, an epoch report) is ignored and logged, so a run never goes to a
  second worker while the first may still run it, and a busy worker is never counted idle.
- Liveness: the pool knows each worker's last word. A worker with work in flight says something at least
  every ``HEARTBEAT_S`` (an ``alive`` between results); one silent for ``SILENCE_S`` (plus the load
  timeout while it has not said ``ready``) is named by :meth:`Pool.silent_workers`, and the dispatcher
  ends the job (it may still run its task, which must not run twice). A worker that leaves on its own
  (``left``) names the runs it killed: they go to the others. A stop signal a worker reports
  (``signal``) is kept in ``worker_signal`` for the dispatcher.
- After :meth:`Pool.hold` (a stop signal) no task message is sent any more.
- Epoch reports of a run come from the worker that runs it; they wait in ``reports`` for the dispatcher
  (``take_reports``), which may answer one (``answer``).
"""

import collections
import logging
import time

from .isolation import LOAD_TIMEOUT_S
from .transport import Backoff
from .worker import HEARTBEAT_S

log = logging.getLogger("candle_mbo.pool")


class PoolError(RuntimeError):
    """The pool cannot go on: no worker can run the model."""


class _Worker:
    __slots__ = ("rank", "info", "state", "messages", "head_since", "revoking", "reason", "group", "last_word")

    def __init__(self, rank):
        self.rank = rank
        self.info = {}
        self.state = "new"  # new -> ready | dead (cannot load the model) | retired (runner cannot restart)
        # | gone (left on its own, its runs killed)
        self.messages = collections.deque()  # run ids of each task message sent and not answered, oldest first
        self.head_since = None  # when the oldest message in flight started running (as far as we know)
        self.revoking = False
        self.reason = None
        self.group = None  # the Pool's load group it is filed in (0, 1 or 2 messages in flight), or None
        self.last_word = None  # when it last said something, or was given work while it had none (monotonic)

    @property
    def usable(self):
        return self.state in ("new", "ready")


class Pool:
    """Dispatcher end of the worker pool: ``gather``, ``start``, ``submit``, ``poll``, then ``close``."""

    PIPELINE_BELOW_S = 0.05
    WINDOW = 20
    CHUNK_BELOW_S = 0.005
    CHUNK_S = 0.01
    MAX_CHUNK = 64
    SILENCE_S = 10 * HEARTBEAT_S  # a worker with work in flight silent this long is gone or hung

    def __init__(self, link, worker_ranks, stop=None):
        """``stop(ranks, now)``: how workers are told to end (the job's one owner of the ranks' lifecycle,
        :meth:`candle_mbo.pool.ranks.Ranks.stop`); by default a stop message straight on the link."""
        self.link = link
        self.workers = {rank: _Worker(rank) for rank in worker_ranks}
        # Usable workers by messages in flight (0: idle, 1, 2: two or more), each an insertion-ordered set,
        # so that every decision costs the same with 4 workers or 4,096 (no scan of all workers).
        self._load = {0: {}, 1: {}, 2: {}}
        for worker in self.workers.values():
            self._file(worker)
        self.tasks = {}  # run_id -> task, sent and not finished
        self.owner = {}  # run_id -> worker rank
        self.sent_at = {}  # run_id -> time.time() when it went to its worker
        self.queue = collections.deque()
        self.recent = collections.deque(maxlen=self.WINDOW)  # durations of the last runs
        self.mean_duration = None
        self.routes = {}  # rank -> handler(message) for ranks that are not workers (optimizer ranks)
        self.reports = []  # epoch reports received, for the dispatcher (take_reports)
        self.started = False
        self.closed = False
        self.holding = False
        self.on_start = None  # called with (rank, run_ids) as a task message starts on a worker
        self.worker_signal = None  # (signum, rank) of the first stop signal a worker reported
        self._stop = stop or self._send_stops
        self._next_liveness_check = 0.0
        self._backoff = Backoff()

    # -- lifecycle -------------------------------------------------------------------------------
    def gather(self, infos):
        """Record the workers' hello (``{rank: node_info}``, collected by the caller)."""
        for rank, info in infos.items():
            self.workers[rank].info = dict(info)

    def start(self, settings_for):
        """Send each worker its settings (``settings_for(rank)``); they load the model in parallel."""
        for rank in self.workers:
            self.link.send(rank, ("init", settings_for(rank)))
        self.started = True

    @property
    def n_workers(self):
        return sum(len(group) for group in self._load.values())

    def _file(self, worker):
        """File ``worker`` in the load group its messages in flight (and its state) say."""
        group = min(2, len(worker.messages)) if worker.usable else None
        if group == worker.group:
            return
        if worker.group is not None:
            del self._load[worker.group][worker.rank]
        if group is not None:
            self._load[group][worker.rank] = worker
        worker.group = group

    def _send_stops(self, ranks, now):
        for rank in ranks:
            self.link.send(rank, ("stop", {"now": now}))
        self.link.flush()
        return list(ranks)

    def close(self):
        """Stop every worker rank, left-out ones included (idempotent). Called when nothing is in flight;
        a worker that still runs something kills it (see worker.py)."""
        if self.closed:
            return
        self.closed = True
        self._stop(list(self.workers), False)

    def interrupt(self, wait_s=2.0):
        """Stop every worker now, killing the runs in progress; return the results that still arrived."""
        if self.closed:
            return []
        self.closed = True
        records, waiting = [], set(self._stop(list(self.workers), True))
        deadline = time.monotonic() + wait_s
        while waiting and time.monotonic() < deadline:
            received = self.link.wait(deadline - time.monotonic(), self._backoff)
            if received is None:
                break
            rank, (kind, payload) = received
            if rank not in self.workers:
                continue
            if kind == "stopped":
                waiting.discard(rank)
            elif kind in ("result", "results"):
                for record in [payload] if kind == "result" else payload:
                    if self._finish(rank, record):
                        records.append(record)
        self.link.flush(timeout=1.0)
        return records

    def abort(self, code=1):
        """End the whole job now (every rank, every runner): after a fatal error on the dispatcher."""
        self.link.abort(code)

    # -- work --------------------------------------------------------------------------------------
    def submit(self, task):
        """Queue a task; it goes to a worker at once if one is free."""
        self.queue.append(task)
        self._dispatch()

    @property
    def pending(self):
        """Tasks submitted and not finished (queued or running)."""
        return len(self.queue) + len(self.tasks)

    def idle_workers(self):
        """Usable workers with nothing in flight."""
        return len(self._load[0])

    def running(self):
        """``{run_id: (worker rank, time it was sent)}`` of the tasks in flight (a pipelined short run
        starts right after the one before it)."""
        return {run_id: (self.owner[run_id], self.sent_at.get(run_id)) for run_id in self.tasks if run_id in self.owner}
    def hold(self):
        """Send no task message from now on (a stop signal: what is queued stays, see ``cancel_queued``).
        Safe to call from a signal handler."""
        self.holding = True

    def silent_workers(self):
        """Usable workers with work in flight that said nothing for ``SILENCE_S`` (while still loading the
        model: the load timeout on top). Looks at most once a second; [] in between."""
        now = time.monotonic()
        if now < self._next_liveness_check:
            return []
        self._next_liveness_check = now + 1.0
        silent = []
        for group in (self._load[1], self._load[2]):
            for worker in group.values():
                limit = self.SILENCE_S + (LOAD_TIMEOUT_S if worker.state == "new" else 0.0)
                if now - worker.last_word > limit:
                    silent.append(worker)
        return sorted(silent, key=lambda w: w.rank)

    def cancel_queued(self):
        """Drop the tasks not yet sent to a worker; return them."""
        dropped = list(self.queue)
        self.queue.clear()
        return dropped

    def take_reports(self):
        """The epoch reports received since the last call, in arrival order (each has ``worker``)."""
        reports, self.reports = self.reports, []
        return reports

    def answer(self, report, answer):
        """Send the answer to an epoch report (``{"stop": bool, "reason": str}``) to the worker running it."""
        message = dict(answer, run_id=report["run_id"], seq=report["seq"])
        self.link.send(report["worker"], ("answer", message))

    def poll(self, timeout=0.0):
        """Return the results that arrived (possibly none) within ``timeout`` s; at least one result, or an
        epoch report (see ``take_reports``), ends the wait."""
        deadline = time.monotonic() + timeout
        results = []
        while True:
            received = self.link.poll()
            while received is not None:
                results += self._handle(*received)
                received = self.link.poll()
            self._rebalance()
            if results or self.reports:
                self._backoff.reset()
                return results
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return results
            received = self.link.wait(remaining, self._backoff)
            if received is not None:
                results += self._handle(*received)

    # -- policy ------------------------------------------------------------------------------------
    def _short_runs(self):
        return len(self.recent) >= 3 and max(self.recent) < self.PIPELINE_BELOW_S

    def _next_worker(self):
        for worker in self._load[0].values():
            return worker  # the idle worker that has waited longest
        if self._short_runs():
            now = time.monotonic()
            for worker in reversed(self._load[1].values()):  # youngest head first
                if worker.head_since is None or now - worker.head_since >= self.PIPELINE_BELOW_S:
                    break
                if not worker.revoking:
                    return worker
        return None

    def _chunk_size(self):
        """Tasks per message: 1, or for runs of a few milliseconds, about CHUNK_S seconds of them."""
        mean = self.mean_duration
        if mean is None or mean >= self.CHUNK_BELOW_S or not self._short_runs():
            return 1
        fair = len(self.queue) // (2 * max(1, self.n_workers))
        return max(1, min(self.MAX_CHUNK, int(self.CHUNK_S / max(mean, 1e-6)), fair))

    def _dispatch(self):
        while self.queue and not self.holding:
            worker = self._next_worker()
            if worker is None:
                return
            chunk = [self.queue.popleft() for _ in range(min(self._chunk_size(), len(self.queue)))]
            ids = [t["run_id"] for t in chunk]
            now = time.time()
            for task in chunk:
                self.tasks[task["run_id"]] = task
                self.owner[task["run_id"]] = worker.rank
                self.sent_at[task["run_id"]] = now
            starts = not worker.messages
            if starts:
                worker.head_since = worker.last_word = time.monotonic()
            worker.messages.append(ids)
            self._file(worker)
            if starts and self.on_start is not None:
                self.on_start(worker.rank, ids)  # before the worker can have it
            self.link.send(worker.rank, ("run", chunk[0]) if len(chunk) == 1 else ("runs", chunk))

    def _rebalance(self):
        """A worker is idle and nothing is queued: take back tasks queued behind another worker's run."""
        if self.queue or not self.idle_workers():
            return
        for worker in self._load[2].values():
            if not worker.revoking:
                worker.revoking = True
                self.link.send(worker.rank, ("revoke", [i for ids in list(worker.messages)[1:] for i in ids]))

    def _requeue(self, run_ids, rank):
        """Put the named tasks that worker ``rank`` holds (sent, not run) back at the front of the queue, in
        their order; any other run id is not the sender's to give back: ignored and logged."""
        tasks = []
        for run_id in run_ids:
            if not self._holds(rank, run_id, "gave back"):
                continue
            tasks.append(self.tasks.pop(run_id))
            self._forget(run_id)
        self.queue.extendleft(reversed(tasks))

    def _holds(self, rank, run_id, what):
        """True when worker ``rank`` holds ``run_id``; else log that its message about it is ignored."""
        if self.owner.get(run_id) == rank:
            return True
        holder = self.owner.get(run_id)
        level = logging.WARNING if self.workers[rank].usable else logging.DEBUG  # a left-out one lags behind
        log.log(level, "worker %d %s %s, which it does not hold (%s); ignored", rank, what, run_id,
                "worker %d does" % holder if holder is not None else "not in flight")
        return False

    def _forget(self, run_id):
        self.sent_at.pop(run_id, None)
        rank = self.owner.pop(run_id, None)
        if rank is None:
            return
        worker = self.workers[rank]
        for ids in worker.messages:
            if run_id in ids:
                ids.remove(run_id)
                break
        head = worker.messages[0] if worker.messages else None
        while worker.messages and not worker.messages[0]:
            worker.messages.popleft()
            worker.head_since = time.monotonic()
        while worker.messages and not worker.messages[-1]:
            worker.messages.pop()
        self._file(worker)
        if not worker.messages:
            worker.head_since = None
        elif worker.messages[0] is not head and worker.usable and not self.closed and self.on_start is not None:
            self.on_start(worker.rank, list(worker.messages[0]))  # the next one, queued there, starts now

    def _leave_out(self, worker, state, reason):
        worker.state = state
        worker.reason = reason
        self._file(worker)
        held = [i for ids in worker.messages for i in ids]
        self._requeue(held, worker.rank)
        if self.n_workers == 0 and (self.queue or self.tasks):
            raise PoolError("no worker can run the model: %s" % reason)

    def _handle(self, rank, message):
        """Update the pool for one message; return the records it brings (maybe none)."""
        kind, payload = message
        worker = self.workers.get(rank)
        if worker is None:
            route = self.routes.get(rank)
            return route(message) if route is not None else []
        worker.last_word = time.monotonic()
        if kind == "ready":
            worker.state = "ready" if worker.state == "new" else worker.state
            worker.info.update(payload)
        elif kind == "error":
            log.error("worker %d cannot run the model and is left out: %s", rank, payload)
            self._leave_out(worker, "dead", payload)
            self._dispatch()
        elif kind in ("retire", "left"):
            for run_id in payload.get("unrun" if kind == "retire" else "interrupted") or []:
                self._holds(rank, run_id, "gave back")  # only its own go back (all of them, just below)
            if worker.usable:
                log.error("worker %d retires: %s" if kind == "retire" else
                          "worker %d left: %s; its runs go to the other workers", rank, payload["reason"])
                self._leave_out(worker, "retired" if kind == "retire" else "gone", payload["reason"])
            self._dispatch()
        elif kind == "revoked":
            worker.revoking = False
            self._requeue(payload, rank)
            self._dispatch()
        elif kind == "epochs":
            for report in payload:
                if self.owner.get(report.get("run_id")) == rank:
                    report["worker"] = rank
                    self.reports.append(report)
                else:
                    log.debug("dropped an epoch report of %s from worker %d, which does not run it",
                              report.get("run_id"), rank)
        elif kind == "signal":
            if self.worker_signal is None:
                self.worker_signal = (payload["signum"], rank)
        elif kind in ("result", "results"):
            records = [payload] if kind == "result" else payload
            records = [r for r in records if self._finish(rank, r)]
            self._dispatch()
            return records
        return []

    def _finish(self, rank, record):
        """Book one finished task; False for a record of a task that worker ``rank`` does not hold."""
        run_id = record["run_id"]
        if not self._holds(rank, run_id, "sent a result of"):
            return False
        task = self.tasks.pop(run_id)
        self._forget(run_id)
        duration = record.get("duration_s")
        if isinstance(duration, (int, float)):
            self.recent.append(duration)
            self.mean_duration = duration if self.mean_duration is None else \
                0.9 * self.mean_duration + 0.1 * duration
        record.setdefault("worker", rank)
        record["task"] = task
        return True
