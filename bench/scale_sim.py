"""Scale simulation: the real dispatcher, search source and mlrMBO masters, with simulated workers on a
virtual clock, so that 64 to 16,384 workers and 1 to 8 masters can be studied on a 2-core machine.

    python bench/scale_sim.py [--workers 64 256 1024 4096] [--masters 1 2 4 8 default] [--mean-run 600 30]
                              [--budget-factor 2] [--problem hartmann6] [--seeds 1]
    python bench/scale_sim.py --cost-model [LABEL] --workers 4096 16384 ...   (fitted costs, no R)
    python bench/scale_sim.py --compare --workers 1024 4096 --mean-run 30 ...  (real and cost model)
    python bench/scale_sim.py --quality [--seeds 5] [--mean-run 60] [--masters 1 2 4]
                              [--quality-infill pool focussearch]   (several masters against one)

What is real: candle_mbo's Dispatcher (journal writes included), SearchSource (design, batched requests,
budget), MasterLogic and the MBOOptimizer with its R/mlrMBO proposals -- each proposal is computed for
real and its measured duration is what it costs on its master's virtual timeline, as are the master's
tells and adoptions of running points (they queue behind its proposal, FIFO, as on a real master;
results that queue up are told in one call, as masters.py does; --tell-each: one call each, as before). The
dispatcher's own processing time is measured too and advances the clock (rank 0 is one process).
What is simulated: workers (run times drawn from a lognormal with the given mean, sigma 0.5; the
objective is computed at once), and MPI (messages arrive at once; the measured pool benchmark puts a
message at tens of microseconds, negligible against proposals of a second).

--cost-model: the masters are stand-ins (bench/cost_model.py) that propose random points and charge
each call the cost fitted from real mlrMBO calls (bench/costs/proposal_costs_<problem>.json, measured
once by `python bench/cost_model.py`; LABEL picks another stored curve), so that 16,384 workers and 8
masters take minutes instead of hours. It measures how busy the workers are; it produces no quality
figures (the best column is empty). --compare runs each configuration both ways, side by side: the
check of the cost model against the real mode.

Printed per configuration: the workers' share busy while work remained (from the start to the last run's
start: idle time there is the masters' doing), the share busy over the whole span (lower whatever the
scheduler, since the last, longest runs end alone), points proposed per virtual second, the mean
proposal time and points per proposal, and the best value found. Every master's R work runs in turn in
this one process, so the real mode's wall time grows with workers x masters.

--quality: the best value after the budget, median (min-max) over seeds, with 1, 2 and 4 masters, on
Branin (budget 96) and Hartmann-6 (budget 160) with 16 and 63 workers, runs of 60 s on average (or
--mean-run S; short runs load master 0 so that the others are asked): do several masters and batched
proposals search as well as one master? Each cell also gives the share of points the other masters made.
--later-infill focussearch (real mode and --quality): a focus search for every point of a batch, as
before issue 24, for comparing search quality with the default shared pool.
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

BATCH_TELLS = True  # results queued behind a busy master are told in one call (False: one call each, as before)
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
        self.seconds = {}  # call kind -> [calls, seconds charged]
        self.calls = []  # (kind, k, finished told, pending, seconds) of every propose and tell (cost_model.py)
        self.told = 0
        self._held = []  # results that arrived while the master was busy: told together, as masters.py does

    def _occupy(self, kind, fn, *args, queued=False):
        """Runs ``fn`` now; the master is busy for its duration from when it is free (``queued``: from
        when it was last free, for calls that waited behind the previous one), else from now."""
        if kind != "tell":
            self.flush_tells()
        began = time.perf_counter()
        result = fn(*args)
        spent = time.perf_counter() - began
        self.clock.excluded += spent
        charge = getattr(self.logic.opt, "take_charge", None)
        if charge is not None:  # cost-model mode: the modelled seconds, not the stand-in's own
            spent = charge()
        self.free_at = (self.free_at if queued else max(self.free_at, self.clock.now)) + spent
        tally = self.seconds.setdefault(kind, [0, 0.0])
        tally[0] += 1
        tally[1] += spent
        return result, spent

    @property
    def busy(self):
        return self._answer is not None

    def _pending(self):
        return len(self.logic.handed) + len(self.logic.running) + len(self.logic.foreign)

    def request(self, k, step, seed):
        pending = self._pending()
        items, spent = self._occupy("propose", self.logic.propose, k, seed)
        self.calls.append(("propose", k, self.told, pending, spent))
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
        return self._occupy("design", self.logic.design, n, seed)[0]

    def restore(self, items, running_ids):
        self._occupy("restore", self.logic.restore, items, running_ids)

    def proposed(self, items):
        self._occupy("proposed", self.logic.proposed, items)

    def dispatched(self, items):
        self._occupy("dispatched", self.logic.dispatched, items)

    def withdraw(self, pairs):
        self._occupy("withdraw", self.logic.withdraw, pairs)

    def tell(self, items):
        if self._held and self.clock.now >= self.free_at:
            self.flush_tells()
        if self.clock.now < self.free_at and BATCH_TELLS:  # busy: these wait and join the results before them
            self._held.extend(items)
            return
        self._tell(items)

    def flush_tells(self):
        if self._held:
            held, self._held = self._held, []
            self._tell(held, queued=True)

    def _tell(self, items, queued=False):
        pending = self._pending()
        spent = self._occupy("tell", self.logic.tell, items, queued=queued)[1]
        self.calls.append(("tell", len(items), self.told, pending, spent))
        self.told += len(items)

    def discard(self, ids):
        self._occupy("discard", self.logic.discard, ids)

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
    design = design or default_design(workers, budget, problem)
    settings = {"budget": budget, "design_size": design, "mode": mode, "propose_points": propose_points or workers,
                "seed": seed, "objective": "val_loss", "maximize": False, "no_run_dirs": True}
    with tempfile.TemporaryDirectory(prefix="candle-mbo-sim-") as folder:
        experiment = Experiment(folder).open()
        source = SearchSource(sims, settings, log)
        dispatcher = Dispatcher(source, pool, experiment, Quiet(), settings, clock=lambda: clock.now)
        began = time.perf_counter()
        dispatcher.run()
        for master in sims:
            master.flush_tells()
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
            "others_share": sum(sum(m.points) for m in sims[1:]) / proposed if proposed else 0.0,
            "calls": [call for m in sims for call in m.calls],
            "master_seconds": {kind: [sum(m.seconds.get(kind, [0, 0])[i] for m in sims) for i in (0, 1)]
                               for kind in sorted({kind for m in sims for kind in m.seconds})}}


def while_work(intervals, workers):
    """Busy share of the workers from the start to the last run's start (when work remained to hand out)."""
    last = max(start for start, _ in intervals)
    if last <= 0:
        return 1.0
    return sum(max(0.0, min(end, last) - start) for start, end in intervals if start < last) / (workers * last)


def default_design(workers, budget, problem):
    """The design's size when none is given: one point per worker (within the budget)."""
    return max(min(workers, budget), 2 * len(objective_dims(problem)))


def objective_dims(problem):
    return ["x1", "x2"] if problem == "branin" else ["x%d" % i for i in range(1, 7)]


def mbo_factory(problem, workers, budget, design_size=None, **tuning):
    """Masters as the HPO workflow makes them (async defaults, ``tuning`` added), one per index: each is
    given the budget and the design's size, as hpo.py gives them (the async warm-up is half the design)."""
    design_size = design_size or default_design(workers, budget, problem)

    def make(index):
        from candle_mbo.search.masters import make_optimizer

        return make_optimizer(dict({"propose_points": workers, "learner": "default", "crit": "default",
                                    "profile": "fast", "maximize": False, "mode": "async", "lie": "believer",
                                    "random_lambda": True, "optimizer": "mbo", "space": SPACES[problem],
                                    "master_index": index, "budget": budget, "design_size": design_size},
                                   **tuning))

    return make


def quality(seeds, mean_run, log, masters_list=(1, 2, 4), infills=("pool",)):
    """Each cell: median (min .. max) of the best values, and the share of points masters 1.. proposed
    (extra masters are asked only when master 0 is busy, so at a light load they add nothing). With
    several ``infills`` each (problem, workers) row is repeated per way of searching a batch."""
    from common import machine, save, table

    rows, data = [], []
    for problem, budget in (("branin", 96), ("hartmann6", 160)):
        for workers in (16, 63):
            for infill in infills:
                cells = [problem, workers, budget] + ([infill] if len(infills) > 1 else [])
                for masters in masters_list:
                    design = max(2 * len(objective_dims(problem)), min(workers, budget // 3))
                    make = mbo_factory(problem, workers, budget, design, later_infill=infill)
                    results = [simulate(workers, masters, mean_run, budget, problem, seed, make, log, design=design)
                               for seed in range(1, seeds + 1)]
                    bests = [r["best"] for r in results]
                    others = statistics.mean(r["others_share"] for r in results)
                    data.append({"problem": problem, "workers": workers, "masters": masters, "later_infill": infill,
                                 "bests": bests, "others_share": others,
                                 "points_per_proposal": statistics.mean(r["points_per_proposal"] for r in results)})
                    cells.append("%.4f (%.4f .. %.4f)%s" % (statistics.median(bests), min(bests), max(bests),
                                                             " [%.0f%%]" % (100 * others) if masters > 1 else ""))
                    print(problem, workers, infill, masters, cells[-1], flush=True)
                rows.append(cells)
    heads = ["%d master%s%s" % (m, "s" if m > 1 else "", " [others' share]" if m > 1 else "") for m in masters_list]
    text = table(["problem", "workers", "budget"] + (["later points"] if len(infills) > 1 else []) + heads, rows)
    name = "scale_quality_%gs" % mean_run + ("_" + "_".join(infills) if infills != ("pool",) else "")
    save(name, {"machine": machine(), "seeds": seeds, "mean_run_s": mean_run, "rows": data},
         "Best value after the budget, median (min .. max) of %d seeds, runs of %g s on average (simulated), %s\n\n%s"
         % (seeds, mean_run, machine(), text))


def standin_factory(problem, seed, design_size, label=""):
    """Cost-model masters: random points, each call charged the fitted cost of a real one (each told the
    design's size, as the real masters are)."""
    from cost_model import CostModel, StandIn, cost_file

    path = cost_file(problem, label)
    if not os.path.exists(path):
        sys.exit("%s: missing; measure it first: python bench/cost_model.py --problem %s%s"
                 % (path, problem, " --label " + label if label else ""))
    model = CostModel.load(path)

    def make(index):
        stand_in = StandIn(model, problem, seed * 1000 + index)
        stand_in.set_budget(None, design_size)
        return stand_in

    return make


def masters_count(value, workers):
    from candle_mbo.search.masters import masters_rule

    return masters_rule(workers) if value == "default" else int(value)


def main():
    import logging

    from common import machine, save, table

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--masters", nargs="+", default=None,
                        help="master counts, or 'default' for the HPO's rule (one per 256 workers, at most 8)")
    parser.add_argument("--cost-model", nargs="?", const="", default=None, metavar="LABEL",
                        help="charge every master call the cost fitted by bench/cost_model.py instead of running "
                             "mlrMBO (busy shares only, no quality); LABEL picks a curve stored with --label "
                             "(e.g. 'before': measured on the code before issue 24)")
    parser.add_argument("--later-infill", choices=("pool", "focussearch"), default="pool",
                        help="real mode: how a batch's later points are searched")
    parser.add_argument("--compare", action="store_true",
                        help="run every configuration in real mode and in cost-model mode, side by side")
    parser.add_argument("--save", help="name of the result files in bench/results (default from the mode)")
    parser.add_argument("--tell-each", action="store_true",
                        help="one tell call per result even when results queue behind a busy master (before issue 24)")
    parser.add_argument("--mean-run", type=float, nargs="+", default=None,
                        help="mean run times in s (default: 600 and 30; with --quality one value, default 60)")
    parser.add_argument("--budget-factor", type=float, default=2.0, help="evaluations per worker")
    parser.add_argument("--problem", choices=sorted(SPACES), default="hartmann6")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--quality", action="store_true", help="compare the search quality of 1, 2, 4 masters")
    parser.add_argument("--quality-infill", nargs="+", choices=("pool", "focussearch"),
                        help="--quality: compare these ways of searching a batch's later points, row by row")
    args = parser.parse_args()
    global BATCH_TELLS
    BATCH_TELLS = not args.tell_each
    args.masters_given = args.masters is not None
    args.masters = args.masters or ["1", "2", "4", "8"]
    args.mean_run_given = args.mean_run is not None
    args.mean_run = args.mean_run or [600.0, 30.0]
    log = logging.getLogger("scale-sim")
    if args.quality:
        infills = tuple(args.quality_infill or [args.later_infill])
        masters_list = [int(m) for m in args.masters] if args.masters_given else [1, 2, 4]
        return quality(args.seeds if args.seeds > 1 else 5, args.mean_run[0] if args.mean_run_given else 60.0, log,
                       masters_list, infills)
    infill = args.later_infill
    curve = args.cost_model or ""
    modes = [False, True] if args.compare else [args.cost_model is not None]
    if True in modes:
        print("cost-model mode: every master call is charged the cost fitted from real mlrMBO calls "
              "(bench/cost_model.py); the points are random, so no quality figures are produced.", flush=True)
    rows, data = [], []
    for mean_run in args.mean_run:
        for workers in args.workers:
            for given in args.masters:
                masters = masters_count(given, workers)
                for seed in range(1, args.seeds + 1):
                    for costed in modes:
                        budget = int(workers * args.budget_factor)
                        design = default_design(workers, budget, args.problem)
                        if costed:
                            make = standin_factory(args.problem, seed, design, curve)
                            mode = "cost model" + (" (%s)" % curve if curve else "")
                        else:
                            make = mbo_factory(args.problem, workers, budget, design, later_infill=infill)
                            mode = "real" + ("" if infill == "pool" else " (%s)" % infill)
                        result = simulate(workers, masters, mean_run, budget, args.problem, seed, make, log)
                        result.pop("calls")
                        result.update(mode=mode, masters_given=given)
                        data.append(result)
                        label = "%d (default)" % masters if given == "default" else str(masters)
                        rows.append([mode, workers, label, "%g" % mean_run, budget,
                                     "%.1f%%" % (100 * result["busy_while_work"]),
                                     "%.1f%%" % (100 * result["utilization"]),
                                     "%.2f" % result["proposals_per_s"], "%.2f" % result["mean_proposal_s"],
                                     "%.1f" % result["points_per_proposal"],
                                     "-" if costed else "%.4f" % result["best"], "%.0f" % result["real_s"]])
                        print(table(["mode", "workers", "masters", "mean run s", "budget", "busy while work",
                                     "busy over span", "points/s", "proposal s", "points/proposal", "best", "real s"],
                                    rows[-1:]), flush=True)
                        print("  masters' calls (count, seconds): " + ", ".join(
                            "%s %d, %.1f s" % (kind, n, sec) for kind, (n, sec) in result["master_seconds"].items()),
                            flush=True)
    text = table(["mode", "workers", "masters", "mean run s", "budget", "busy while work remained",
                  "busy over the span", "points/s (virtual)", "proposal s", "points/proposal",
                  "best " + args.problem, "sim wall s"], rows)
    name = args.save or "scale_sim" + ("_compare" if args.compare else "_cost_model" if args.cost_model is not None
                                       else "")
    save(name, {"machine": machine(), "problem": args.problem, "rows": data},
         "Scale simulation (%s; %s)\n\n%s" % (args.problem, machine(), text))


if __name__ == "__main__":
    main()
