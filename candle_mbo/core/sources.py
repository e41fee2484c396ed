"""The two task sources of the dispatch loop: the lines of a UPF file, and a search (mlrMBO masters).

Both follow :class:`candle_mbo.core.dispatch.Source`: on resume they learn the journal's finished records and
hand back its unfinished tasks (to run first, unchanged); then they hand out new tasks when asked.
"""

import bisect
import collections
import json
import math
import time

from .dispatch import Source, Task, objective_value
from .._trace import phase
from ..errors import UsageError
from ..search.pruning import Pruner
from ..status import PRUNED


class UpfSource(Source):
    """The lines of a UPF file. A line is identified by its id and its parameters: a line whose id already
    ran with other parameters is refused (a run id is never reused for other parameters). An unfinished
    task of a line no longer in the file (removed with --accept-changed) is not run."""

    def __init__(self, lines, path):
        self.lines = lines
        self.path = path
        self.todo = collections.deque()
        self.stopped = False

    def check(self, replay):
        """Refuse a line whose id the journal holds with other parameters (called before anything changes)."""
        done = {r["run_id"]: r for r in replay.records}
        for line in self.lines:
            earlier = replay.dispatched.get(line.run_id) or done.get(line.run_id)
            if earlier is not None and _canonical(earlier.get("params")) != _canonical(line.params):
                raise UsageError("%s:%d: id %r already ran with other parameters (%s); give the edited line a new id"
                                 % (self.path, line.lineno, line.run_id, _short_json(earlier.get("params"))))

    def resume(self, replay):
        self.check(replay)
        done = {r["run_id"] for r in replay.records}
        waiting = {e["run_id"] for e in replay.unfinished}
        self.todo.extend(line for line in self.lines if line.run_id not in done and line.run_id not in waiting)
        current = {line.run_id for line in self.lines}
        return [Task(e["run_id"], e["params"], {"line": e.get("line")}) for e in replay.unfinished
                if e["run_id"] in current]

    def take(self, view):
        if self.stopped:
            return []
        tasks = [Task(line.run_id, line.params, {"line": line.lineno}) for line in self.todo]
        self.todo.clear()
        return tasks

    def exhausted(self):
        return self.stopped or not self.todo

    def planned_left(self):
        return len(self.todo)

    def stop(self):
        self.stopped = True


def _whole(value):
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else 0


def _epochs_of(record):
    """Epochs a finished run trained, as its record says (0 when it does not say)."""
    return _whole(record.get("epochs"))


def _canonical(params):
    return json.dumps(params, sort_keys=True, default=str)


def _short_json(params):
    text = json.dumps(params, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def proposal_seed(seed, step):
    """R's seed for proposal step ``step`` of a search seeded with ``seed`` (0: the design).

    Spread out so that searches with nearby seeds never share a random stream (``seed + step`` would:
    seed 1's third step would draw what seed 4's design draws). R/mbo_reference.R uses the same formula.
    """
    return (int(seed) * 10007 + int(step)) % 2147483647


class _Point:
    """A proposed point, from its proposal until its result has been told."""

    __slots__ = ("run_id", "origin", "proposal_id", "x", "params", "prop_type", "info", "step", "since")

    def __init__(self, run_id, origin, item, step):
        self.run_id = run_id
        self.origin = origin
        self.proposal_id, self.x, self.params, self.prop_type, self.info = item
        self.step = step
        self.since = None  # when it was dispatched (the loop's clock)

    def task(self):
        fields = {"x": self.x, "step": self.step, "prop_type": self.prop_type, "master": self.origin}
        if self.info:
            fields["info"] = self.info
        return Task(self.run_id, self.params, fields)


class SearchSource(Source):
    """A search: an initial design, then proposals from the masters, until the budget is met exactly.

    ``sync``: batches of ``propose_points``; a batch is evaluated completely and told back, in proposal
    order, before the next is proposed (CANDLE Supervisor's scheme; seeded proposals equal plain
    ``mbo()``). ``async``: proposals are asked for ahead of need and handed to workers as they free; a
    request asks one master for k points (one surrogate fit), k sized to the workers that are idle or will
    free while the proposal is computed. Running points enter every master's surrogate.

    Budget: every point is in exactly one state (finished, running, ready, requested), and their sum never
    exceeds the budget. With ``epoch_budget`` no new point starts once the epochs trained (finished runs,
    and what running runs reported) reach it; running runs finish.

    Early discarding (``prune``): the source's :class:`~candle_mbo.search.pruning.Pruner` answers each epoch
    report of a running point (``reported``); a pruned run is a result, told to the masters with the value
    the pruner gives it.
    """

    MAX_BATCH = 64
    PROPOSAL_BASE_S = 0.3  # a proposal's cost beyond its points (a fit), before any is measured
    CLUSTER = 0.05  # recent run times within 5% of their median count as one length (see _expected_frees)

    def __init__(self, masters, settings, log):
        self.masters = masters
        self.budget = settings["budget"]
        self.design_size = settings["design_size"]
        self.mode = settings["mode"]
        self.propose_points = settings["propose_points"]
        self.seed = settings["seed"]
        self.iterations = settings.get("iterations")
        self.max_time = settings.get("max_time") or 0
        self.log = log
        self.start = time.time()
        self.next_number = 1
        self.step = 1
        self.designed = False
        self.ready = collections.deque()  # points proposed, waiting for a free worker
        self.running = {}  # run_id -> _Point dispatched and not finished
        self.batch = None  # sync: {"step", "order": [run ids], "held": {run_id: (x, y)}}
        self.proposed = 0  # points proposed after the design (for --iterations in async mode)
        self.finished_count = 0
        self.stopped = False
        self.durations = collections.deque(maxlen=50)  # of the last runs, for predicting when workers free
        self.point_s = None  # measured seconds per proposed point (a moving average)
        self.now = 0.0
        self.objective = settings.get("objective") or "val_loss"
        self.fidelity = settings.get("fidelity") or "epochs"
        self.planned_default = settings.get("planned_epochs")
        self.pruner = Pruner(settings.get("prune") or "none", settings.get("min_epochs") or 1,
                             settings.get("eta") or 3, bool(settings.get("maximize")))
        self.epoch_budget = settings.get("epoch_budget") or 0
        self.epochs_done = 0  # epochs trained by finished runs
        self.epochs_running = {}  # run_id -> epochs a running run reported so far

    # -- run ids, steps ----------------------------------------------------------------------------
    def _new_run_id(self):
        run_id = "run-%04d" % self.next_number
        self.next_number += 1
        return run_id

    def epochs_trained(self):
        """Epochs trained so far: by finished runs, and by running ones as far as they reported."""
        return self.epochs_done + sum(self.epochs_running.values())

    def planned(self, params):
        """Epochs a run with ``params`` is to train (its fidelity parameter, else the benchmark's default)."""
        value = (params or {}).get(self.fidelity, self.planned_default)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def _epochs_spent(self):
        return bool(self.epoch_budget) and self.epochs_trained() >= self.epoch_budget

    def _stopping(self):
        if self.stopped or self._epochs_spent():
            return True
        if self.max_time and time.time() - self.start >= self.max_time:
            return True
        if self.iterations:
            if self.mode == "sync":
                return self.step > self.iterations
            return self.proposed >= self.iterations * self.propose_points
        return False

    # -- resume --------------------------------------------------------------------------------------
    def resume(self, replay):
        """Give every master the journal's tasks (finished ones with their value, unfinished ones flagged
        running: they become pending points) and return the unfinished ones, to run first."""
        self.next_number = replay.next_number
        self.finished_count = len(replay.records)
        records = {r["run_id"]: r for r in replay.records}
        self._replay_epochs(replay)
        items, running = [], []
        for entry in replay.dispatched.values():  # dispatch order
            if entry.get("x") is None:
                continue
            record = records.pop(entry["run_id"], None)
            items.append({"x": entry["x"], "y": self._told_value(record) if record else None,
                          "step": entry.get("step") or 0, "prop_type": entry.get("prop_type"),
                          "info": entry.get("info") or {}, "running": record is None})
            if record is None:
                running.append(entry)
        for record in records.values():  # finished before the journal kept dispatched entries
            if record.get("x") is not None:
                items.insert(0, {"x": record["x"], "y": self._told_value(record), "step": record.get("iteration") or 0,
                                 "prop_type": record.get("prop_type"), "info": record.get("proposal") or {},
                                 "running": False})
        # By step, dispatch order kept within a step: several masters dispatch their steps out of order,
        # and the optimizer rebuilds its path step by step (and returns the running points in that order).
        items.sort(key=lambda item: item["step"])
        running.sort(key=lambda entry: entry.get("step") or 0)
        self.designed = bool(items)
        self.step = max([i["step"] for i in items], default=0) + 1
        self.proposed = sum(1 for i in items if i["step"] > 0)  # --iterations counts across resumes
        if items:
            for master in self.masters:
                master.restore(items, [e["run_id"] for e in running])
        tasks = []
        for entry in running:
            point = _Point(entry["run_id"], entry.get("master", 0), (None, entry["x"], entry["params"],
                                                                     entry.get("prop_type"), entry.get("info") or {}),
                           entry.get("step") or 0)
            self.running[point.run_id] = point
            tasks.append(point.task())
        if self.mode == "sync" and running:
            self.batch = {"step": running[0].get("step") or 0, "order": [e["run_id"] for e in running], "held": {}}
        if replay.records or tasks:
            self.log.info("resume: %d finished evaluation%s given back to the optimizer; %d interrupted run%s "
                          "first, under their own ids; %d evaluations to go",
                          len(replay.records), "" if len(replay.records) == 1 else "s", len(tasks),
                          "" if len(tasks) == 1 else "s", max(0, self.budget - len(replay.records)))
        return tasks

    # -- handing out -------------------------------------------------------------------------------------
    def _room(self):
        requested = sum(m.requested() for m in self.masters)
        return self.budget - self.finished_count - len(self.running) - len(self.ready) - requested

    def _dispatch(self, points):
        """Running from now: tell every master (the origin maps its proposal, the others adopt the point)."""
        items = []
        for point in points:
            point.since = self.now
            self.running[point.run_id] = point
            items.append((point.run_id, point.origin, point.proposal_id, point.x))
        if items:
            for master in self.masters:
                master.dispatched(items)
        return [p.task() for p in points]

    def _collect(self):
        """Take the proposals that finished computing; ready points get their run ids."""
        for master in self.masters:
            answer = master.proposals()
            if answer is None:
                continue
            step, items = answer
            if self._epochs_spent():  # no new run starts once the epoch budget is spent
                master.discard([item[0] for item in items])
                continue
            if items and getattr(master, "last_seconds", None):
                per_point = master.last_seconds / len(items)
                self.point_s = per_point if self.point_s is None else 0.7 * self.point_s + 0.3 * per_point
            points = [_Point(self._new_run_id(), master.index, item, step) for item in items]
            if self.mode == "sync":
                self.batch = {"step": step, "order": [p.run_id for p in points], "held": {}}
                return self._dispatch(points)
            self.proposed += len(points)
            self.ready.extend(points)
            if points and len(self.masters) > 1:  # pending for every other master from now, not at dispatch
                items = [(p.origin, p.proposal_id, p.x) for p in points]
                for other in self.masters:
                    if other.index != master.index:
                        other.proposed(items)
        return []

    def _design(self):
        self.designed = True
        n = min(self.design_size, self.budget - self.finished_count)
        if n <= 0:
            return []
        phase("design")
        items = self.masters[0].design(n, proposal_seed(self.seed, 0))
        points = [_Point(self._new_run_id(), 0, item, 0) for item in items]
        self.log.info("initial design: %d point%s", len(points), "" if len(points) == 1 else "s")
        if self.mode == "sync":
            self.batch = {"step": 0, "order": [p.run_id for p in points], "held": {}}
        return self._dispatch(points)

    def take(self, view):
        self.finished_count = view.finished
        self.now = view.now
        for point in self.running.values():  # reruns of a resume: running since they were handed back
            if point.since is None:
                point.since = view.now
        tasks = self._collect()
        if not self.designed:
            return tasks + self._design()
        if self.mode == "sync":
            return tasks + self._take_sync()
        return tasks + self._take_async(view)

    def _take_sync(self):
        if self.batch is not None or self._stopping() or self.masters[0].busy:
            return []
        k = min(self.propose_points, self._room())
        if k > 0:
            self.masters[0].request(k, self.step, proposal_seed(self.seed, self.step))
            self.step += 1
        return []

    def _take_async(self, view):
        if self._epochs_spent():
            self._drop_ready()
        free = max(0, view.idle - view.queued)
        points = []
        while self.ready and free > 0:
            points.append(self.ready.popleft())
            free -= 1
        tasks = self._dispatch(points)  # running from now on: counted before the room is measured
        room = self._room()
        if room > 0 and not self._stopping():
            idle = [m for m in self.masters if not m.busy]
            demand = 0
            if idle:  # (the estimate is only needed when a master could be asked)
                backlog = max(0, view.queued - view.idle)  # tasks that the next frees go to (a design's rest)
                demand = (free - backlog + self._expected_frees(view) - len(self.ready)
                          - sum(m.requested() for m in self.masters))
            if self.iterations:
                room = min(room, self.iterations * self.propose_points - self.proposed
                           - sum(m.requested() for m in self.masters))
            for index, master in enumerate(idle):
                if demand <= 0 or room <= 0:
                    break
                k = max(1, min(self.MAX_BATCH, room, math.ceil(demand / (len(idle) - index))))
                master.request(k, self.step, proposal_seed(self.seed, self.step))
                self.step += 1
                demand -= k
                room -= k
        return tasks

    def _expected_frees(self, view):
        """Workers that will free while a proposal for them is computed (at least one ahead while runs go).

        The recent run times (at least 3) stand for the distribution of a run's duration: a run that has
        been going for e seconds ends within h with probability (F(e + h) - F(e)) / (1 - F(e)), and a run
        longer than every recent one counts for nothing (nothing is known of that tail) -- unless the recent
        run times cluster within CLUSTER of their median and it is not past them by more. The answer is the
        largest n such that about n runs end within the time a proposal of n points takes (measured cost
        per point). So when runs end together (the same length, started together) the batch for all of
        them is asked for before they end; when run times spread, points are asked for about as they are
        needed, each from the latest results.
        """
        if not self.running:
            return 0
        if len(self.durations) < 3:
            return 1
        samples = sorted(self.durations)
        total = float(len(samples))
        per_point = self.point_s if self.point_s is not None else 0.1
        most = self.MAX_BATCH * max(1, len(self.masters))
        elapsed = []
        for point in self.running.values():  # dispatch order: the oldest, likeliest to end, first
            if len(elapsed) >= most:
                break  # no request asks for more (and thousands of running points must not cost a scan each)
            if point.since is not None:
                elapsed.append(self.now - point.since)

        # Run times that cluster tightly (fixed epochs on identical nodes) make a run just past the cluster
        # one that is ending now, not a long one: its result is on its way.
        clustered = samples[-1] - samples[0] <= self.CLUSTER * samples[len(samples) // 2]
        due = samples[-1] * (1.0 + self.CLUSTER)

        def ending_within(horizon):
            count = 0.0
            for e in elapsed:
                done = bisect.bisect_right(samples, e) / total
                if done < 1.0:
                    count += (bisect.bisect_right(samples, e + horizon) / total - done) / (1.0 - done)
                elif clustered and e <= due:
                    count += 1.0
            return count

        n = most  # from the largest batch down to the largest that is self-consistent
        for _ in range(4):
            n = int(ending_within(self.PROPOSAL_BASE_S + per_point * max(1, n)) + 1e-9)
        return max(1, n)

    def _replay_epochs(self, replay):
        """A resumed search's rungs, stops and epochs trained, as the journal holds them."""
        params = {run_id: entry.get("params") for run_id, entry in replay.dispatched.items()}
        self.pruner.replay(replay.epochs, self.objective, lambda run_id: self.planned(params.get(run_id)))
        for record in replay.records:
            self.epochs_done += _epochs_of(record)
            if record.get("status") == PRUNED and isinstance(record.get("pruned"), dict):
                self.pruner.stopped[record["run_id"]] = dict(record["pruned"], stop=True)

    def reported(self, report, task):
        """An epoch report of a running point: count its epochs; ask the pruner whether it goes on."""
        self.epochs_running[report["run_id"]] = max(self.epochs_running.get(report["run_id"], 0),
                                                    _whole(report.get("epoch")))
        value = (report.get("metrics") or {}).get(self.objective)
        return self.pruner.report(report["run_id"], report["epoch"], value, self.planned(task.params))

    def _told_value(self, record):
        """What the masters learn from a finished run: its objective; a pruned run's from the pruner."""
        if record.get("status") == PRUNED and record.get("objective") is not None:
            value = self.pruner.surrogate_value(record["run_id"], record["objective"])
            return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
        return objective_value(record)

    def finished(self, record, task):
        self.finished_count += 1
        self.epochs_running.pop(record["run_id"], None)
        self.epochs_done += _epochs_of(record)
        if isinstance(record.get("duration_s"), (int, float)):
            self.durations.append(record["duration_s"])
        point = self.running.pop(record["run_id"], None)
        if point is None:
            return
        y = self._told_value(record)
        if self.batch is None:
            for master in self.masters:
                master.tell([(point.run_id, point.x, y)])
            return
        self.batch["held"][point.run_id] = (point.x, y)
        if all(run_id in self.batch["held"] for run_id in self.batch["order"]):
            items = [(run_id,) + self.batch["held"][run_id] for run_id in self.batch["order"]]
            for master in self.masters:
                master.tell(items)
            self.batch = None

    def exhausted(self):
        if self.stopped:
            return True  # what is still running is the loop's; answers still being computed are dropped
        if self.running or self.ready or any(m.busy for m in self.masters) or self.batch is not None:
            return False
        return self.designed and (self._stopping() or self._room() <= 0)

    def cancelled(self, run_ids):
        for run_id in run_ids:
            self.running.pop(run_id, None)

    def planned_left(self):
        """Evaluations of the budget (or of --iterations) neither running nor finished; 0 once stopping."""
        if self._stopping():
            return 0
        planned = self.budget
        if self.iterations:
            planned = min(planned, self.design_size + self.iterations * self.propose_points)
        return max(0, planned - self.finished_count - len(self.running))

    def stop(self):
        self.stopped = True
        self._drop_ready()

    def _drop_ready(self):
        """Give back the proposed points that wait for a worker: they will never run."""
        by_origin = collections.defaultdict(list)
        for point in self.ready:
            by_origin[point.origin].append(point.proposal_id)
        self.ready.clear()
        for master in self.masters:
            if by_origin.get(master.index):
                master.discard(by_origin[master.index])
            if len(self.masters) > 1:  # the others adopted them when they were proposed
                pairs = [(origin, i) for origin, ids in by_origin.items() if origin != master.index for i in ids]
                if pairs:
                    master.withdraw(pairs)

    def wait_s(self):
        return 0.02 if any(m.busy for m in self.masters) else 0.25

    def close(self):
        for master in self.masters:
            master.close()


__all__ = ["UpfSource", "SearchSource", "proposal_seed"]
