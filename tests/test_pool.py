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
