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
- Epoch reports of a run come from the worker that runs it; they wait in ``reports`` for the dispatcher
  (``take_reports``), which may answer one (``answer``). A report about a run the sender does not run is
  dropped.
"""

import collections
import logging
import time

from .transport import Backoff

log = logging.getLogger("candle_mbo.pool")


class PoolError(RuntimeError):
    """The pool cannot go on: no worker can run the model."""


class _Worker:
    __slots__ = ("rank", "info", "state", "messages", "head_since", "revoking", "reason", "group")

    def __init__(self, rank):
        self.rank = rank
        self.info = {}
        self.state = "new"  # new -> ready | dead (cannot load the model) | retired (runner cannot restart)
        self.messages = collections.deque()  # run ids of each task message sent and not answered, oldest first
        self.head_since = None  # when the oldest message in flight started running (as far as we know)
        self.revoking = False
        self.reason = None
        self.group = None  # the Pool's load group it is filed in (0, 1 or 2 messages in flight), or None

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

    def __init__(self, link, worker_ranks):
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

    def close(self):
        """Stop every worker rank, left-out ones included (idempotent). Called when nothing is in flight;
        a worker that still runs something kills it (see worker.py)."""
        if self.closed:
            return
        self.closed = True
        for rank in self.workers:
            self.link.send(rank, ("stop", {"now": False}))
        self.link.flush()

    def interrupt(self, wait_s=2.0):
        """Stop every worker now, killing the runs in progress; return the results that still arrived."""
        if self.closed:
            return []
        self.closed = True
        for rank in self.workers:
            self.link.send(rank, ("stop", {"now": True}))
        records, waiting = [], {r for r in self.workers}
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
        while self.queue:
            worker = self._next_worker()
            if worker is None:
                return
            chunk = [self.queue.popleft() for _ in range(min(self._chunk_size(), len(self.queue)))]
            now = time.time()
            for task in chunk:
                self.tasks[task["run_id"]] = task
                self.owner[task["run_id"]] = worker.rank
                self.sent_at[task["run_id"]] = now
            if not worker.messages:
                worker.head_since = time.monotonic()
            worker.messages.append([t["run_id"] for t in chunk])
            self._file(worker)
            self.link.send(worker.rank, ("run", chunk[0]) if len(chunk) == 1 else ("runs", chunk))

    def _rebalance(self):
        """A worker is idle and nothing is queued: take back tasks queued behind another worker's run."""
        if self.queue or not self.idle_workers():
            return
        for worker in self._load[2].values():
            if not worker.revoking:
                worker.revoking = True
                self.link.send(worker.rank, ("revoke", [i for ids in list(worker.messages)[1:] for i in ids]))

    def _requeue(self, run_ids):
        """Put the named tasks (sent, not run) back at the front of the queue, in their order."""
        tasks = []
        for run_id in run_ids:
            task = self.tasks.pop(run_id, None)
            if task is not None:
                tasks.append(task)
                self._forget(run_id)
        self.queue.extendleft(reversed(tasks))

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
        while worker.messages and not worker.messages[0]:
            worker.messages.popleft()
            worker.head_since = time.monotonic()
        while worker.messages and not worker.messages[-1]:
            worker.messages.pop()
        self._file(worker)
        if not worker.messages:
            worker.head_since = None

    def _leave_out(self, worker, state, reason):
        worker.state = state
        worker.reason = reason
        self._file(worker)
        held = [i for ids in worker.messages for i in ids]
        self._requeue(held)
        if self.n_workers == 0 and (self.queue or self.tasks):
            raise PoolError("no worker can run the model: %s" % reason)

    def _handle(self, rank, message):
        """Update the pool for one message; return the records it brings (maybe none)."""
        kind, payload = message
        worker = self.workers.get(rank)
        if worker is None:
            route = self.routes.get(rank)
            return route(message) if route is not None else []
        if kind == "ready":
            worker.state = "ready" if worker.state == "new" else worker.state
            worker.info.update(payload)
        elif kind == "error":
            log.error("worker %d cannot run the model and is left out: %s", rank, payload)
            self._leave_out(worker, "dead", payload)
            self._dispatch()
        elif kind == "retire":
            log.error("worker %d retires: %s", rank, payload["reason"])
            self._requeue(payload.get("unrun") or [])
            self._leave_out(worker, "retired", payload["reason"])
            self._dispatch()
        elif kind == "revoked":
            worker.revoking = False
            self._requeue(payload)
            self._dispatch()
        elif kind == "epochs":
            for report in payload:
                if self.owner.get(report.get("run_id")) == rank:
                    report["worker"] = rank
                    self.reports.append(report)
                else:
                    log.debug("dropped an epoch report of %s from worker %d, which does not run it",
                              report.get("run_id"), rank)
        elif kind in ("result", "results"):
            records = [payload] if kind == "result" else payload
            records = [r for r in records if self._finish(rank, r)]
            self._dispatch()
            return records
        return []

    def _finish(self, rank, record):
        """Book one finished task; False for a record of a task not (or no longer) in flight."""
        run_id = record["run_id"]
        task = self.tasks.pop(run_id, None)
        if task is None:
            return False
        self._forget(run_id)
        duration = record.get("duration_s")
        if isinstance(duration, (int, float)):
            self.recent.append(duration)
            self.mean_duration = duration if self.mean_duration is None else \
                0.9 * self.mean_duration + 0.1 * duration
        record.setdefault("worker", rank)
        record["task"] = task
        return True
