"""Scale simulation: the real dispatcher, search source and mlrMBO masters, with simulated workers on a
virtual clock, so that 64 to 4,096 workers and 1 to 8 masters can be studied on a 2-core machine.

    python bench/scale_sim.py [--workers 64 256 1024 4096] [--masters 1 2 4 8] [--mean-run 600 30]
                              [--budget-factor 2] [--problem hartmann6] [--seeds 1]
    python bench/scale_sim.py --quality [--seeds 5] [--mean-run 60]   (several masters against one)

What is real: candle_mbo's Dispatcher (journal writes included), SearchSource (design, batched requests,
budget), MasterLogic and the MBOOptimizer with its R/mlrMBO proposals -- each proposal is computed for
real and its measured duration is what it costs on its master's virtual timeline, as are the master's
tells and adoptions of running points (they queue behind its proposal, FIFO, as on a real master). The
dispatcher's own processing time is measured too and advances the clock (rank 0 is one process).
What is simulated: workers (run times drawn from a lognormal with the given mean, sigma 0.5; the
objective is computed at once), and MPI (messages arrive at once; the measured pool benchmark puts a
message at tens of microseconds, negligible against proposals of a second).

Printed per configuration: the workers' share busy while work remained (from the start to the last run's
start: idle time there is the masters' doing), the share busy over the whole span (lower whatever the
scheduler, since the last, longest runs end alone), points proposed per virtual second, the mean
proposal time and points per proposal, and the best value found. Every master's R work runs in turn in
this one process, so the sim's own wall time grows with workers x masters: on 2 cores about 8 minutes
for 4,096 workers and one master, 16 with two; the whole default sweep takes hours.

--quality: the best value after the budget, median (min-max) over seeds, with 1, 2 and 4 masters, on
Branin (budget 96) and Hartmann-6 (budget 160) with 16 and 63 workers, runs of 60 s on average (or
--mean-run S; short runs load master 0 so that the others are asked): do several masters and batched
proposals search as well as one master? Each cell also gives the share of points the other masters made.
"""

import argparse
import heapq
import math
import os
import random
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from candle_mbo.core.dispatch import Dispatcher  # noqa: E402
from candle_mbo.search.masters import MasterLogic  # noqa: E402
from candle_mbo.core.sources import SearchSource  # noqa: E402
from candle_mbo.core.store import Experiment  # noqa: E402

SPACES = {"branin": os.path.join(HERE, "spaces", "branin.R"), "hartmann6": os.path.join(HERE, "spaces", "hartmann6.R")}


def objective(problem, params):
    from models.synthetic import branin, hartmann6

    if problem == "branin":
        return branin(params["x1"], params["x2"])
    return hartmann6([params["x%d" % i] for i in range(1, 7)])


class Clock:
    """Virtual seconds, plus the real time the dispatcher spends between two polls."""

    def __init__(self):
        self.now = 0.0
        self.excluded = 0.0  # real seconds spent in masters' R calls since the last poll (not rank 0's)


class SimMaster:
    """A master on its own virtual timeline: every call runs now, for real, and occupies the master for
    its measured duration; a proposal is handed out when its computation would have ended."""

    def __init__(self, optimizer, index, clock):
        self.logic = MasterLogic(optimizer, index)
        self.index = index
        self.clock = clock
        self.free_at = 0.0
        self._answer = None  # (ready time, step, items, k)
        self.last_seconds = None
        self.durations = []
        self.points = []

    def _occupy(self, fn, *args):
        began = time.perf_counter()
        result = fn(*args)
        spent = time.perf_counter() - began
        self.clock.excluded += spent
        self.free_at = max(self.free_at, self.clock.now) + spent
        return result, spent

    @property
    def busy(self):
        return self._answer is not None

    def request(self, k, step, seed):
        items, spent = self._occupy(self.logic.propose, k, seed)
        self._answer = (self.free_at, step, items, k)
        self.durations.append(spent)
        self.last_seconds = spent
        self.points.append(len(items))

    def requested(self):
        return self._answer[3] if self._answer else 0

    def ready_at(self):
        return self._answer[0] if self._answer else None

    def proposals(self):
        if self._answer is None or self.clock.now < self._answer[0]:
            return None
        _, step, items, _ = self._answer
        self._answer = None
        return step, items

    def design(self, n, seed):
        return self._occupy(self.logic.design, n, seed)[0]

    def restore(self, items, running_ids):
        self._occupy(self.logic.restore, items, running_ids)

    def proposed(self, items):
        self._occupy(self.logic.proposed, items)

    def dispatched(self, items):
        self._occupy(self.logic.dispatched, items)

    def withdraw(self, pairs):
        self._occupy(self.logic.withdraw, pairs)

    def tell(self, items):
        self._occupy(self.logic.tell, items)

    def discard(self, ids):
        self._occupy(self.logic.discard, ids)

    def messages(self):
        return []

    def close(self):
        pass


class SimPool:
    """The Pool's interface over simulated workers whose runs end at virtual times."""

    def __init__(self, workers, mean_run, clock, problem, masters, rng):
        self.clock = clock
        self.problem = problem
        self.masters = masters
        self.rng = rng
        self.sigma = 0.5
        self.mu = math.log(mean_run) - self.sigma ** 2 / 2
        self.idle = list(range(workers))
        self.n_workers = workers
        self.tasks = {}
        self.queue = []
        self.events = []
        self.recent = []
        self.busy_seconds = 0.0
        self.intervals = []  # (start, end) of every run
        self.started = True
        self.worker_signal = None  # simulated workers never get a signal, nor go silent
        self._last = time.perf_counter()
        self._seq = 0

    def idle_workers(self):
        return len(self.idle)

    def submit(self, task):
        self.queue.append(task)
        self._dispatch()

    def _dispatch(self):
        while self.queue and self.idle:
            task = self.queue.pop(0)
            worker = self.idle.pop()
            duration = self.rng.lognormvariate(self.mu, self.sigma)
            self.tasks[task["run_id"]] = task
            self._seq += 1
            heapq.heappush(self.events, (self.clock.now + duration, self._seq, worker, task, duration))

    def cancel_queued(self):
        dropped, self.queue = self.queue, []
        return dropped

    def take_reports(self):
        return []  # simulated runs report no epochs
    def hold(self):
        pass

    def silent_workers(self):
        return []

    def _charge_dispatcher(self):
        real = time.perf_counter() - self._last - self.clock.excluded
        self.clock.excluded = 0.0
        self.clock.now += max(real, 0.0)

    def poll(self, timeout=0.0):
        self._charge_dispatcher()
        results = self._due()
        if not results:
            moments = [self.clock.now + timeout]
            if self.events:
                moments.append(self.events[0][0])
            moments += [m.ready_at() for m in self.masters if m.ready_at() is not None]
            self.clock.now = max(self.clock.now, min(moments))
            results = self._due()
        self._last = time.perf_counter()
        return results

    def _due(self):
        results = []
        while self.events and self.events[0][0] <= self.clock.now:
            finish, _, worker, task, duration = heapq.heappop(self.events)
            del self.tasks[task["run_id"]]
            self.idle.append(worker)
            self.busy_seconds += duration
            self.intervals.append((finish - duration, finish))
            value = objective(self.problem, task["params"])
            results.append({"run_id": task["run_id"], "status": "ok", "objective": value, "duration_s": duration,
                            "started": finish - duration, "finished": finish, "worker": worker + 1, "task": task})
        self._dispatch()
        return results

    def close(self):
        pass

    def interrupt(self, wait_s=0):
        return []


class Quiet:
    """The dispatcher's progress, silent."""

    def update(self, record):
        pass

    def seed(self, records):
        pass

    def epoch(self, run_id, epoch, planned=None):
        pass

    def tick(self):
        pass


def simulate(workers, masters, mean_run, budget, problem, seed, make_optimizer, log, mode="async",
             propose_points=None, design=None):
    clock = Clock()
    rng = random.Random(seed)
    sims = [SimMaster(make_optimizer(index), index, clock) for index in range(masters)]
    pool = SimPool(workers, mean_run, clock, problem, sims, rng)
    design = design or max(min(workers, budget), 2 * len(objective_dims(problem)))
    settings = {"budget": budget, "design_size": design, "mode": mode, "propose_points": propose_points or workers,
                "seed": seed, "objective": "val_loss", "maximize": False, "no_run_dirs": True}
    with tempfile.TemporaryDirectory(prefix="candle-mbo-sim-") as folder:
        experiment = Experiment(folder).open()
        source = SearchSource(sims, settings, log)
        dispatcher = Dispatcher(source, pool, experiment, Quiet(), settings, clock=lambda: clock.now)
        began = time.perf_counter()
        dispatcher.run()
        real = time.perf_counter() - began
        experiment.close()
        records = experiment.records
    makespan = max(r["finished"] for r in records)
    durations = [d for m in sims for d in m.durations]
    points = [p for m in sims for p in m.points]
    proposed = sum(points)
    return {"workers": workers, "masters": masters, "mean_run_s": mean_run, "budget": budget,
            "evaluations": len(records),
            "makespan_s": makespan, "utilization": pool.busy_seconds / (workers * makespan),
            "busy_while_work": while_work(pool.intervals, workers),
            "proposals_per_s": proposed / makespan if makespan else 0.0,
            "mean_proposal_s": statistics.mean(durations) if durations else 0.0,
            "points_per_proposal": statistics.mean(points) if points else 0.0,
            "best": min(r["objective"] for r in records), "real_s": real,
            "others_share": sum(sum(m.points) for m in sims[1:]) / proposed if proposed else 0.0}


def while_work(intervals, workers):
    """Busy share of the workers from the start to the last run's start (when work remained to hand out)."""
    last = max(start for start, _ in intervals)
    if last <= 0:
        return 1.0
    return sum(max(0.0, min(end, last) - start) for start, end in intervals if start < last) / (workers * last)


def objective_dims(problem):
    return ["x1", "x2"] if problem == "branin" else ["x%d" % i for i in range(1, 7)]


def mbo_factory(problem, workers, budget):
    """Masters as the HPO workflow makes them (async defaults), one per index."""
    def make(index):
        from candle_mbo.search.masters import make_optimizer

        return make_optimizer({"propose_points": workers, "learner": "default", "crit": "default", "profile": "fast",
                               "maximize": False, "mode": "async", "lie": "believer", "random_lambda": True,
                               "optimizer": "mbo", "space": SPACES[problem], "master_index": index,
                               "budget": budget})

    return make


def quality(seeds, mean_run, log):
    """Each cell: median (min .. max) of the best values, and the share of points masters 1.. proposed
    (extra masters are asked only when master 0 is busy, so at a light load they add nothing)."""
    from common import machine, save, table

    rows, data = [], []
    for problem, budget in (("branin", 96), ("hartmann6", 160)):
        for workers in (16, 63):
            cells = [problem, workers, budget]
            for masters in (1, 2, 4):
                design = max(2 * len(objective_dims(problem)), min(workers, budget // 3))
                make = mbo_factory(problem, workers, budget)
                results = [simulate(workers, masters, mean_run, budget, problem, seed, make, log, design=design)
                           for seed in range(1, seeds + 1)]
                bests = [r["best"] for r in results]
                others = statistics.mean(r["others_share"] for r in results)
                data.append({"problem": problem, "workers": workers, "masters": masters, "bests": bests,
                             "others_share": others})
                cells.append("%.4f (%.4f .. %.4f)%s" % (statistics.median(bests), min(bests), max(bests),
                                                         " [%.0f%%]" % (100 * others) if masters > 1 else ""))
                print(problem, workers, masters, cells[-1], flush=True)
            rows.append(cells)
    text = table(["problem", "workers", "budget", "1 master", "2 masters [others' share]", "4 masters [others' share]"],
                 rows)
    save("scale_quality_%gs" % mean_run, {"machine": machine(), "seeds": seeds, "mean_run_s": mean_run, "rows": data},
         "Best value after the budget, median (min .. max) of %d seeds, runs of %g s on average (simulated), %s\n\n%s"
         % (seeds, mean_run, machine(), text))


def main():
    import logging

    from common import machine, save, table

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--masters", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--mean-run", type=float, nargs="+", default=None,
                        help="mean run times in s (default: 600 and 30; with --quality one value, default 60)")
    parser.add_argument("--budget-factor", type=float, default=2.0, help="evaluations per worker")
    parser.add_argument("--problem", choices=sorted(SPACES), default="hartmann6")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--quality", action="store_true", help="compare the search quality of 1, 2, 4 masters")
    args = parser.parse_args()
    args.mean_run_given = args.mean_run is not None
    args.mean_run = args.mean_run or [600.0, 30.0]
    log = logging.getLogger("scale-sim")
    if args.quality:
        return quality(args.seeds if args.seeds > 1 else 5, args.mean_run[0] if args.mean_run_given else 60.0, log)
    rows, data = [], []
    for mean_run in args.mean_run:
        for workers in args.workers:
            for masters in args.masters:
                for seed in range(1, args.seeds + 1):
                    budget = int(workers * args.budget_factor)
                    result = simulate(workers, masters, mean_run, budget, args.problem, seed,
                                      mbo_factory(args.problem, workers, budget), log)
                    data.append(result)
                    rows.append([workers, masters, "%g" % mean_run, budget,
                                 "%.1f%%" % (100 * result["busy_while_work"]), "%.1f%%" % (100 * result["utilization"]),
                                 "%.2f" % result["proposals_per_s"], "%.2f" % result["mean_proposal_s"],
                                 "%.1f" % result["points_per_proposal"], "%.4f" % result["best"],
                                 "%.0f" % result["real_s"]])
                    print(table(["workers", "masters", "mean run s", "budget", "busy while work", "busy over span",
                                 "points/s", "proposal s", "points/proposal", "best", "real s"], rows[-1:]), flush=True)
    text = table(["workers", "masters", "mean run s", "budget", "busy while work remained", "busy over the span",
                  "points/s (virtual)", "proposal s (real)", "points/proposal", "best " + args.problem, "sim wall s"],
                 rows)
    save("scale_sim", {"machine": machine(), "problem": args.problem, "rows": data},
         "Scale simulation (%s; %s)\n\n%s" % (args.problem, machine(), text))


if __name__ == "__main__":
    main()
