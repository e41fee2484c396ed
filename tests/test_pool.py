"""The pool's dispatch rules, driven through a scripted link (no MPI): chunks for very short runs."""

import collections

from candle_mbo.pool import Pool


class ScriptedLink:
    """Workers that answer each message, oldest first, with runs of ``duration`` seconds."""

    def __init__(self, n_workers, duration):
        self.n_workers = n_workers
        self.duration = duration
        self.sent = []
        self.unanswered = collections.deque()

    def workers(self):
        return list(range(1, self.n_workers + 1))

    def send(self, worker, message):
        self.sent.append((worker, message))
        if message[0] in ("run", "runs"):
            self.unanswered.append((worker, message))

    def poll(self):
        if not self.unanswered:
            return None
        worker, (kind, payload) = self.unanswered.popleft()
        tasks = [payload] if kind == "run" else payload
        records = [{"run_id": t["run_id"], "status": "ok", "objective": 0.0, "duration_s": self.duration}
                   for t in tasks]
        return worker, (("result", records[0]) if kind == "run" else ("results", records))

    def flush(self, timeout=5.0):
        pass

    def task_messages(self):
        return [m for _, m in self.sent if m[0] in ("run", "runs")]


def drive(n_tasks, duration, n_workers=3):
    link = ScriptedLink(n_workers, duration)
    pool = Pool(link, n_workers + 1)
    pool.start({})
    for i in range(n_tasks):
        pool.submit({"run_id": "r%04d" % i, "params": {}, "run_dir": None})
    records = []
    while pool.pending:
        records += pool.poll()
    return link, records


def sizes(messages):
    return [1 if kind == "run" else len(payload) for kind, payload in messages]


def test_runs_of_a_few_milliseconds_travel_in_chunks_that_shrink_at_the_end():
    link, records = drive(1000, duration=1e-4)
    messages = link.task_messages()
    sent_ids = [t["run_id"] for kind, p in messages for t in ([p] if kind == "run" else p)]
    assert sorted(sent_ids) == ["r%04d" % i for i in range(1000)]  # each task sent exactly once
    assert sorted(r["run_id"] for r in records) == sorted(sent_ids)
    assert all("task" in r and r["worker"] in (1, 2, 3) for r in records)
    chunk_sizes = sizes(messages)
    assert chunk_sizes[:3] == [1, 1, 1]  # nothing known about run times yet
    assert max(chunk_sizes) == Pool.MAX_CHUNK
    assert chunk_sizes[-3:] == [1, 1, 1]  # the tail spreads over every worker
    assert len(messages) < 1000 / 10


def test_long_runs_go_one_at_a_time_to_free_workers():
    link, records = drive(30, duration=2.0)
    assert set(sizes(link.task_messages())) == {1}
    assert len(records) == 30
