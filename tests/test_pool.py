"""The pool's dispatch rules, driven through simulated workers on a virtual clock (no MPI)."""

import collections
import heapq

import pytest

from candle_mbo.pool import policy as pool_module
from candle_mbo.pool.policy import Pool


class SimulatedWorkers:
    """A link whose workers run each task for ``duration(task)`` virtual seconds, messages in order.

    A worker keeps received task messages in a local queue (as the real worker does), answers one reply
    per message, and honours ``revoke`` for messages it has not started.
    """

    def __init__(self, n_workers, duration, clock):
        self.duration = duration
        self.clock = clock
        self.peers = list(range(1, n_workers + 1))
        self.queues = {w: collections.deque() for w in self.peers}  # messages not started
        self.running = {}  # worker -> (kind, tasks, finish time)
        self.outbox = []  # (time, seq, worker, message)
        self.sent = []
        self.seq = 0

    def _emit(self, when, worker, message):
        self.seq += 1
        heapq.heappush(self.outbox, (when, self.seq, worker, message))

    def _start_next(self, worker, now):
        if worker in self.running or not self.queues[worker]:
            return
        kind, tasks = self.queues[worker].popleft()
        finish = now + sum(self.duration(t) for t in tasks)
        self.running[worker] = (kind, tasks, finish)
        records = [{"run_id": t["run_id"], "status": "ok", "objective": 0.0, "duration_s": self.duration(t)}
                   for t in tasks]
        self._emit(finish, worker, ("result", records[0]) if kind == "run" else ("results", records))

    def send(self, worker, message):
        self.sent.append((self.clock.now, worker, message))
        kind, payload = message
        if kind in ("run", "runs"):
            self.queues[worker].append((kind, [payload] if kind == "run" else payload))
            self._start_next(worker, self.clock.now)
        elif kind == "revoke":
            wanted = set(payload)
            given = [t["run_id"] for _, tasks in self.queues[worker] for t in tasks if t["run_id"] in wanted]
            self.queues[worker] = collections.deque(m for m in self.queues[worker]
                                                    if not any(t["run_id"] in wanted for t in m[1]))
            self._emit(self.clock.now, worker, ("revoked", given))

    def _deliver(self):
        if self.outbox and self.outbox[0][0] <= self.clock.now:
            when, _, worker, message = heapq.heappop(self.outbox)
            if message[0] in ("result", "results"):
                self.running.pop(worker, None)
                self._start_next(worker, when)
            return worker, message
        return None

    def poll(self, source=None):
        return self._deliver()

    def wait(self, timeout, backoff=None, source=None):
        received = self._deliver()
        if received is not None:
            return received
        if self.outbox:
            self.clock.now = max(self.clock.now, min(self.outbox[0][0], self.clock.now + timeout))
        else:
            self.clock.now += timeout
        return self._deliver()

    def flush(self, timeout=5.0):
        pass

    def task_messages(self):
        return [(t, w, m) for t, w, m in self.sent if m[0] in ("run", "runs")]


class Clock:
    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(pool_module.time, "monotonic", clock.monotonic)
    return clock


def drive(clock, durations, n_workers=3, submit_at=None):
    """Submit tasks (``durations``: run_id -> seconds) and collect every result; returns (link, records, end)."""
    link = SimulatedWorkers(n_workers, lambda t: durations[t["run_id"]], clock)
    pool = Pool(link, link.peers)
    pool.start(lambda rank: {})
    for run_id in durations:
        if submit_at is None:
            pool.submit({"run_id": run_id, "params": {}, "run_dir": None})
    records = []
    while pool.pending:
        records += pool.poll(timeout=1.0)
    return link, pool, records


def sizes(messages):
    return [1 if kind == "run" else len(payload) for _, _, (kind, payload) in messages]


def test_runs_of_a_few_milliseconds_travel_in_chunks_that_shrink_at_the_end(clock):
    link, pool, records = drive(clock, {"r%04d" % i: 1e-4 for i in range(1000)})
    messages = link.task_messages()
    sent_ids = [t["run_id"] for _, _, (kind, p) in messages for t in ([p] if kind == "run" else p)]
    assert sorted(r["run_id"] for r in records) == ["r%04d" % i for i in range(1000)]  # each exactly once
    assert len(set(sent_ids)) == len(sent_ids) or any(m[2][0] == "revoke" for m in link.sent)
    assert all("task" in r and r["worker"] in (1, 2, 3) for r in records)
    chunk_sizes = sizes(messages)
    assert chunk_sizes[:3] == [1, 1, 1]  # nothing known about run times yet
    assert max(chunk_sizes) == Pool.MAX_CHUNK
    assert chunk_sizes[-3:] == [1, 1, 1]  # the tail spreads over every worker
    assert len(messages) < 1000 / 10


def test_long_runs_go_one_at_a_time_to_free_workers(clock):
    link, pool, records = drive(clock, {"r%02d" % i: 2.0 for i in range(30)})
    assert set(sizes(link.task_messages())) == {1}
    assert len(records) == 30
    assert max(len(q) for q in link.queues.values()) == 0  # nothing ever waited behind a running task
    assert clock.now == pytest.approx(20.0, abs=0.5)  # 30 runs of 2 s on 3 workers


class Scenario:
    """Submit tasks at chosen virtual times and see when each result arrives."""

    def __init__(self, clock, n_workers):
        self.clock = clock
        self.durations = {}
        self.link = SimulatedWorkers(n_workers, lambda t: self.durations[t["run_id"]], clock)
        self.pool = Pool(self.link, self.link.peers)
        self.pool.start(lambda rank: {})
        self.arrived = {}
        self.worker = {}

    def submit(self, run_id, duration):
        self.durations[run_id] = duration
        self.pool.submit({"run_id": run_id, "params": {}, "run_dir": None})

    def _take(self, records):
        for record in records:
            self.arrived[record["run_id"]] = self.clock.now
            self.worker[record["run_id"]] = record["worker"]

    def run_until(self, moment):
        while self.clock.now < moment:
            self._take(self.pool.poll(timeout=min(0.05, moment - self.clock.now)))

    def finish(self):
        while self.pool.pending:
            self._take(self.pool.poll(timeout=1.0))

    def keep_busy_with_short_runs(self, count, prefix="short", duration=0.001):
        """Feed short runs one by one (as an async search does), so that the recent runs are all short."""
        for i in range(count):
            self.submit("%s%03d" % (prefix, i), duration)
            self._take(self.pool.poll(timeout=0.0005))
        return ["%s%03d" % (prefix, i) for i in range(count)]


def test_no_task_is_queued_behind_a_run_that_has_been_going_for_long(clock):
    """Issue 12.4: the pool knew only short runs; one run has been going for 2 s: a new task must not wait
    behind it (it goes to the worker whose run is young, or waits for the first free worker)."""
    scene = Scenario(clock, 2)
    scene.keep_busy_with_short_runs(100)
    scene.finish()
    scene.submit("long", 10.0)
    scene.run_until(clock.now + 2.0)
    later = scene.keep_busy_with_short_runs(20, prefix="later")
    scene.finish()
    assert all(scene.worker[run_id] != scene.worker["long"] for run_id in later)
    assert max(scene.arrived[run_id] for run_id in later) < scene.arrived["long"] - 7.0


def test_long_runs_after_many_short_ones_take_one_worker_each(clock):
    """Three 4 s runs after many short ones, on three workers: about 4 s, not 8."""
    scene = Scenario(clock, 3)
    scene.keep_busy_with_short_runs(300)
    begin = clock.now
    for i in range(3):
        scene.submit("long%d" % i, 4.0)
        scene._take(scene.pool.poll(timeout=0.0005))
    scene.finish()
    assert len({scene.worker["long%d" % i] for i in range(3)}) == 3
    assert max(scene.arrived["long%d" % i] for i in range(3)) - begin < 4.5


def test_a_task_queued_behind_a_run_that_turned_long_moves_to_the_first_free_worker(clock):
    """Pipelined behind a run that looked short (it had just started), a task is taken back and given to
    the first worker that frees."""
    scene = Scenario(clock, 2)
    scene.keep_busy_with_short_runs(100)
    scene.finish()
    start = clock.now
    scene.submit("busy", 1.0)  # one worker is busy for a second
    scene.run_until(start + 0.1)
    scene.submit("turns-long", 30.0)  # starts on the other worker; young, so a task may queue behind it
    scene.submit("behind", 0.001)
    scene.finish()
    assert scene.worker["behind"] == scene.worker["busy"]
    assert scene.arrived["behind"] - start < 1.1  # right after "busy", not after "turns-long"


def test_a_worker_that_cannot_load_the_model_gives_its_tasks_back(clock):
    link = SimulatedWorkers(2, lambda t: 1.0, clock)
    pool = Pool(link, link.peers)
    pool.start(lambda rank: {})
    for i in range(4):
        pool.submit({"run_id": "r%d" % i, "params": {}, "run_dir": None})
    link.queues[1].clear()
    link.running.pop(1, None)
    link.outbox = [item for item in link.outbox if item[2] != 1]
    pool._handle(1, ("error", "import failed on GPU 1"))
    records = []
    while pool.pending:
        records += pool.poll(timeout=1.0)
    assert sorted(r["run_id"] for r in records) == ["r0", "r1", "r2", "r3"]
    assert {r["worker"] for r in records} == {2}
    pool._handle(2, ("retire", {"reason": "cannot restart", "unrun": []}))
    assert pool.n_workers == 0
    pool.submit({"run_id": "r9", "params": {}, "run_dir": None})
    assert pool.pending == 1 and not link.queues[2]  # nothing goes to a left-out worker
    pool.close()
    stops = [w for _, w, m in link.sent if m[0] == "stop"]
    assert sorted(stops) == [1, 2]  # the stop reaches left-out workers too


def test_a_worker_retiring_mid_chunk_keeps_its_finished_results(clock):
    link = SimulatedWorkers(2, lambda t: 0.001, clock)
    pool = Pool(link, link.peers)
    pool.start(lambda rank: {})
    for i in range(3):
        pool.submit({"run_id": "r%d" % i, "params": {}, "run_dir": None})
    link.outbox.clear()
    link.running.clear()
    owner = pool.owner["r0"]
    done = pool._handle(owner, ("results", [{"run_id": "r0", "status": "ok", "objective": 1.0}]))
    assert [r["run_id"] for r in done] == ["r0"]
    pool._handle(owner, ("retire", {"reason": "the runner could not be restarted", "unrun": []}))
    assert "r0" not in pool.tasks and all(pool.owner.get(t) != owner for t in pool.tasks)


# -- issue 20: the pool owns run ids; liveness; no work after a stop -------------------------------------
def started_pool(clock, n_workers=3, duration=5.0):
    link = SimulatedWorkers(n_workers, lambda t: duration, clock)
    pool = Pool(link, link.peers)
    pool.start(lambda rank: {})
    return link, pool


def forget_simulated(link, rank):
    """The simulated worker ``rank`` drops what it was given (it never runs it)."""
    link.queues[rank].clear()
    link.running.pop(rank, None)
    link.outbox = [item for item in link.outbox if item[2] != rank]


def sent_to(link, run_id):
    return [w for _, w, (kind, p) in link.task_messages()
            if run_id in [t["run_id"] for t in ([p] if kind == "run" else p)]]


def test_a_worker_that_gives_back_a_run_it_no_longer_holds_is_ignored(clock):
    """20.1: a worker that cannot load the model says so, then retires listing the task it had been sent;
    that task went to another worker meanwhile and must stay there: never requeued, never run twice."""
    link, pool = started_pool(clock)
    for i in range(2):
        pool.submit({"run_id": "r%d" % i, "params": {}, "run_dir": None})
    assert pool.owner == {"r0": 1, "r1": 2}
    forget_simulated(link, 1)
    pool._handle(1, ("error", "CUDA driver broken on GPU 0"))
    assert pool.owner["r0"] == 3
    pool._handle(1, ("retire", {"reason": "no runner (the model could not be loaded)", "unrun": ["r0"]}))
    pool._handle(1, ("revoked", ["r1"]))
    assert pool.owner == {"r0": 3, "r1": 2} and not pool.queue
    assert pool.idle_workers() == 0  # worker 3 is busy with r0, not idle
    assert pool._handle(2, ("result", {"run_id": "r0", "status": "ok"})) == []  # r0 is worker 3's
    assert pool.owner["r0"] == 3
    records = []
    while pool.pending:
        records += pool.poll(timeout=1.0)
    assert sorted((r["run_id"], r["worker"]) for r in records) == [("r0", 3), ("r1", 2)]
    assert sent_to(link, "r0") == [1, 3] and sent_to(link, "r1") == [2]


def test_a_worker_that_left_gives_its_killed_runs_to_the_others(clock):
    """20.2: a worker that leaves on its own says which runs it stopped; they run elsewhere."""
    link, pool = started_pool(clock, n_workers=2)
    for i in range(3):
        pool.submit({"run_id": "r%d" % i, "params": {}, "run_dir": None})
    forget_simulated(link, 1)
    pool._handle(1, ("left", {"interrupted": ["r0"], "reason": "no word from the dispatcher"}))
    assert pool.n_workers == 1
    records = []
    while pool.pending:
        records += pool.poll(timeout=1.0)
    assert sorted(r["run_id"] for r in records) == ["r0", "r1", "r2"] and {r["worker"] for r in records} == {2}


def test_a_stop_signal_a_worker_reports_reaches_the_dispatcher(clock):
    link, pool = started_pool(clock, n_workers=2)
    assert pool.worker_signal is None
    pool._handle(2, ("signal", {"signum": 10}))
    pool._handle(1, ("signal", {"signum": 15}))
    assert pool.worker_signal == (10, 2)  # the first one


def test_a_busy_worker_silent_past_the_deadline_is_named(clock):
    """20.2: rank 0 knows each worker's last word; a worker with work in flight that says nothing past
    the deadline is reported (a worker still loading the model has the load timeout on top)."""
    link, pool = started_pool(clock, n_workers=3, duration=1e6)
    for rank in (1, 2):
        pool._handle(rank, ("ready", {}))
    for i in range(3):
        pool.submit({"run_id": "r%d" % i, "params": {}, "run_dir": None})
    clock.now += pool.SILENCE_S / 2
    pool._handle(2, ("alive", None))
    assert pool.silent_workers() == []
    clock.now += pool.SILENCE_S / 2 + 1
    assert [w.rank for w in pool.silent_workers()] == [1]  # 2 spoke lately; 3 still loads the model
    clock.now += pool.SILENCE_S
    assert [w.rank for w in pool.silent_workers()] == [1, 2]


def test_an_idle_worker_is_never_silent(clock):
    link, pool = started_pool(clock, n_workers=2, duration=1.0)
    pool._handle(1, ("ready", {}))
    pool.submit({"run_id": "r0", "params": {}, "run_dir": None})
    while pool.pending:
        pool.poll(timeout=1.0)
    clock.now += 10 * pool.SILENCE_S
    assert pool.silent_workers() == []


def test_after_hold_no_task_message_leaves_the_pool(clock):
    """20.7: after a stop signal nothing new is sent; what is queued stays, to be taken back."""
    link, pool = started_pool(clock, n_workers=2, duration=1.0)
    for i in range(4):
        pool.submit({"run_id": "r%d" % i, "params": {}, "run_dir": None})
    pool.hold()
    pool.submit({"run_id": "r4", "params": {}, "run_dir": None})
    before = len(link.task_messages())
    records = []
    while pool.tasks:
        records += pool.poll(timeout=1.0)
    assert len(link.task_messages()) == before == 2 and len(records) == 2
    assert [t["run_id"] for t in pool.cancel_queued()] == ["r2", "r3", "r4"]


def test_the_start_of_each_task_message_is_reported_when_it_starts(clock):
    """20.5: the journal's 'started' comes from here: a message starts when it is sent to an idle worker,
    or, pipelined, when the one before it on that worker has finished."""
    link, pool = started_pool(clock, n_workers=1, duration=0.001)
    starts = []
    pool.on_start = lambda rank, run_ids: starts.append((clock.now, rank, list(run_ids)))
    for i in range(40):  # short runs: later ones are pipelined behind the current one
        pool.submit({"run_id": "r%02d" % i, "params": {}, "run_dir": None})
        pool.poll(timeout=0.0005)
    while pool.pending:
        pool.poll(timeout=1.0)
    started_ids = [i for _, _, ids in starts for i in ids]
    assert started_ids == ["r%02d" % i for i in range(40)]  # each once, in order
    sends = [t for t, _, _ in link.task_messages()]
    assert len(starts) == len(sends) and all(sent <= begun for sent, (begun, _, _) in zip(sends, starts))
    assert any(sent < begun for sent, (begun, _, _) in zip(sends, starts))  # some waited behind another


def test_an_epoch_report_about_a_run_the_sender_does_not_hold_is_dropped(clock):
    """The epoch channel obeys the same ownership as results: a late report from a worker whose run moved
    on (or a confused one) never reaches the dispatcher, so it cannot prune or bend another worker's run."""
    link, pool = started_pool(clock, n_workers=2)
    for i in range(2):
        pool.submit({"run_id": "r%d" % i, "params": {}, "run_dir": None})
    assert pool.owner == {"r0": 1, "r1": 2}
    pool._handle(2, ("epochs", [{"run_id": "r0", "seq": 1, "epoch": 1, "metrics": {"val_loss": 9.0}}]))
    pool._handle(1, ("epochs", [{"run_id": "r0", "seq": 1, "epoch": 1, "metrics": {"val_loss": 0.5}}]))
    reports = pool.take_reports()
    assert [(r["run_id"], r["worker"], r["metrics"]["val_loss"]) for r in reports] == [("r0", 1, 0.5)]
    assert pool.take_reports() == []
