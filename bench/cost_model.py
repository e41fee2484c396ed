"""What a master's calls cost, measured once with real mlrMBO proposals, fitted, and a stand-in
optimizer that charges those costs (bench/scale_sim.py --cost-model).

    python bench/cost_model.py [--problem hartmann6] [--sizes 256 1024 4096 16384]
                               [--later-infill focussearch] [--label NAME]

Measures, on one real MBOOptimizer with the HPO's async defaults, at histories of the given sizes
(finished evaluations) and with few or many points pending: propose(k) for k = 1 .. 128 (the first
call after the history grew estimates kriging's hyperparameters: measured apart), tell of k results,
adopt (another master's batch, in one call), discard, a random (warm-up) proposal and the design.
Fits each kind by least squares on the features below, prints the fitted curves next to what was
measured, and stores both in bench/costs/proposal_costs_<problem>.json, which --cost-model reads.

The stand-in keeps the state that decides a real call's cost (finished count, pending count, the
async warm-up until half the design is back, kriging's re-estimate when the finished count grew by
10% since the last one) and proposes uniform random points: a cost-model simulation measures how busy
the workers are, never search quality.
"""

import argparse
import itertools
import json
import math
import os
import random
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from candle_mbo.search.optimizer import Optimizer, Proposal  # noqa: E402

# kind -> feature names; a call's cost is the dot product of its features and the fitted weights
FEATURES = {
    "propose": ("1", "k", "n/1000", "pending/1000", "estimate"),
    "random": ("1", "k", "n/1000"),
    "tell": ("1", "n/1000", "k", "k*n/1000", "k*pending/1000"),
    "adopt": ("1", "k"),
    "discard": ("1", "k"),
    "design": ("1", "k"),
}
BOUNDS = {"hartmann6": [(0.0, 1.0)] * 6, "branin": [(-5.0, 10.0), (0.0, 15.0)]}


def cost_file(problem, label=""):
    """Where a fitted curve is kept, with the benchmark: bench/costs/proposal_costs_<problem>[_<label>].json."""
    return os.path.join(HERE, "costs", "proposal_costs_%s%s.json" % (problem, "_" + label if label else ""))


def random_point(rng, problem):
    return {"x%d" % (i + 1): rng.uniform(lo, hi) for i, (lo, hi) in enumerate(BOUNDS[problem])}


def warmup(design_size):
    """Results before the surrogate proposes (R/cm_propose.R cm_warmup: half the design, at least 2)."""
    return max(2, math.ceil((design_size or 0) / 2))


def estimates(told, estimated_at):
    """Whether a model proposal re-estimates kriging's hyperparameters (R/cm_propose.R cm_fit: the first
    fit, then whenever the finished count grew by 10%)."""
    return estimated_at is None or told >= 1.1 * estimated_at


def features(kind, k=0, n=0, pending=0, estimate=0):
    values = {"1": 1.0, "k": float(k), "n/1000": n / 1000.0, "pending/1000": pending / 1000.0,
              "estimate": float(estimate), "k*n/1000": k * n / 1000.0, "k*pending/1000": k * pending / 1000.0}
    return [values[name] for name in FEATURES[kind]]


class CostModel:
    """The fitted curves: seconds(kind, ...) for one call."""

    def __init__(self, weights):
        self.weights = weights

    @classmethod
    def load(cls, path):
        with open(path) as handle:
            return cls(json.load(handle)["weights"])

    def seconds(self, kind, **state):
        return max(0.0, sum(w * f for w, f in zip(self.weights[kind], features(kind, **state))))

    def describe(self):
        lines = []
        for kind, names in FEATURES.items():
            terms = " + ".join("%.4g%s" % (w, "" if name == "1" else " x " + name)
                               for w, name in zip(self.weights[kind], names))
            lines.append("  %-8s s = %s" % (kind, terms))
        return "\n".join(lines)


class StandIn(Optimizer):
    """The Optimizer contract with random points, each call charged what the fitted model says."""

    name = "cost model"

    def __init__(self, model, problem, seed):
        self.model = model
        self.problem = problem
        self.rng = random.Random(seed)
        self.next_id = 0
        self.told = 0
        self.pending = 0
        self.design_size = None
        self.estimated_at = None
        self.charge = 0.0

    def take_charge(self):
        charge, self.charge = self.charge, 0.0
        return charge

    def _points(self, k, prop_type):
        out = []
        for _ in range(k):
            self.next_id += 1
            x = random_point(self.rng, self.problem)
            out.append(Proposal(self.next_id, x, dict(x), prop_type, {}))
        self.pending += k
        return out

    def set_budget(self, evaluations, design_size=None):
        self.design_size = design_size

    def design(self, n, seed):
        self.charge += self.model.seconds("design", k=n)
        self.design_size = self.design_size or n
        return self._points(n, "initdesign")

    def propose(self, k, seed):
        if self.told < warmup(self.design_size):  # as cm_propose: random points until half the design is back
            self.charge += self.model.seconds("random", k=k)
            return self._points(k, "random")
        estimate = estimates(self.told, self.estimated_at)
        if estimate:
            self.estimated_at = self.told
        self.charge += self.model.seconds("propose", k=k, n=self.told, pending=self.pending, estimate=estimate)
        return self._points(k, "infill_cb")

    def tell(self, results):
        self.charge += self.model.seconds("tell", k=len(results), n=self.told)
        self.told += len(results)
        self.pending = max(0, self.pending - sum(1 for point, _ in results if isinstance(point, Proposal)))
        return [y for _, y in results]

    def adopt(self, x):
        return self.adopt_many([x])[0]

    def adopt_many(self, xs):
        self.charge += self.model.seconds("adopt", k=len(xs), n=self.told)
        out = []
        for x in xs:
            self.next_id += 1
            out.append(Proposal(self.next_id, x, dict(x), "adopted", {}))
        self.pending += len(xs)
        return out

    def discard(self, proposals):
        self.charge += self.model.seconds("discard", k=len(proposals))
        self.pending = max(0, self.pending - len(proposals))


# -- measuring ------------------------------------------------------------------------------------------

def _timed(fn, *args):
    began = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - began


def measure(problem, sizes, ks, pendings, later_infill="pool", log=print):
    """Rows (kind, k, n, pending, estimate, seconds) from one real optimizer whose history grows."""
    from scale_sim import mbo_factory, objective

    budget = 2 * max(sizes)
    optimizer = mbo_factory(problem, 4096, budget, later_infill=later_infill)(0)
    design_n = min(sizes)
    optimizer.set_budget(budget, design_n)
    rows = []
    rng = random.Random(1)
    for n in (256, 1024, 4096):
        made, spent = _timed(optimizer.design, n, n)
        rows.append(("design", n, 0, 0, 0, spent))
        optimizer.discard(made)
    points = optimizer.design(design_n, 7)
    pending = []  # proposals handed out and not told
    seed = itertools.count(100)

    def value(point):
        return objective(problem, point.params)

    optimizer.tell([(p, value(p)) for p in points])
    history = design_n
    for n in sorted(sizes):
        while history < n:  # grow the history with results of points made elsewhere (plain data)
            xs = [random_point(rng, problem) for _ in range(min(512, n - history))]
            optimizer.tell([(x, objective(problem, x)) for x in xs])
            history += len(xs)
        for target in sorted(pendings):
            if len(pending) < target:
                pending += optimizer.propose(target - len(pending), next(seed))
            elif len(pending) > target:
                optimizer.discard(pending[target:])
                pending = pending[:target]
            _, spent = _timed(optimizer.propose, 1, next(seed))  # the history grew: kriging estimates here
            rows.append(("propose", 1, history, len(pending), 1, spent))
            for k in ks:
                for _ in range(2):
                    done, pending = pending[:k], pending[k:]
                    _, spent = _timed(optimizer.tell, [(p, value(p)) for p in done])
                    rows.append(("tell", len(done), history, len(pending), 0, spent))
                    history += len(done)
                    new, spent = _timed(optimizer.propose, k, next(seed))
                    rows.append(("propose", k, history, len(pending), 0, spent))
                    pending += new
            for k in (1, 16):
                _, spent = _timed(optimizer._call, "cm_random", k, next(seed), "")
                rows.append(("random", k, history, len(pending), 0, spent))
            adopted = []
            for m in (1, 1, 16, 16, 64, 64):  # another master's batch, adopted in one call
                proposals, spent = _timed(optimizer.adopt_many, [random_point(rng, problem) for _ in range(m)])
                rows.append(("adopt", m, history, len(pending), 0, spent))
                adopted += proposals
            _, spent = _timed(optimizer.discard, adopted)
            rows.append(("discard", len(adopted), history, len(pending), 0, spent))
            last = [r[5] for r in rows if r[0] == "propose" and r[1] == max(ks)][-2:]
            log("history %d, %d pending: propose(%d) %.2f s"
                % (history, len(pending), max(ks), statistics.median(last)))
    return [dict(zip(("kind", "k", "n", "pending", "estimate", "seconds"), row)) for row in rows]


def insitu(problem, workers, mean_run, later_infill="pool", seed=1, log=print):
    """Rows of the proposals and tells of a real-mode scale simulation (1 master, runs of ``mean_run`` s
    on average, a budget of two per worker), labelled as the R side decides: a proposal before half the
    design is back is a random (warm-up) one, and a model proposal estimates when the finished count
    grew by 10% since the last estimate (R/cm_propose.R: cm_warmup, cm_fit)."""
    import logging

    from scale_sim import default_design, mbo_factory, simulate

    budget = 2 * workers
    design = default_design(workers, budget, problem)
    make = mbo_factory(problem, workers, budget, design, later_infill=later_infill)
    result = simulate(workers, 1, mean_run, budget, problem, seed, make, logging.getLogger("cost-model"))
    log("real-mode simulation, %d workers, %g s runs: %.1f%% busy while work remained"
        % (workers, mean_run, 100 * result["busy_while_work"]))
    rows, estimated_at = [], None
    for kind, k, told, pending, seconds in result["calls"]:
        estimate = 0
        if kind == "propose" and told < warmup(design):
            kind = "random"
        elif kind == "propose":
            estimate = int(estimates(told, estimated_at))
            estimated_at = told if estimate else estimated_at
        rows.append({"kind": kind, "k": k, "n": told, "pending": pending, "estimate": estimate,
                     "seconds": seconds, "source": "simulation"})
    return rows


def throughput(model, k, history, pending):
    """Points a second of a master that does nothing but tell k results and propose k points (fitted)."""
    return k / (model.seconds("propose", k=k, n=history, pending=pending)
                + model.seconds("tell", k=k, n=history, pending=pending))


def fit(rows):
    """Least squares per kind (weights that come out negative are dropped and the rest refitted)."""
    import numpy

    weights = {}
    for kind in FEATURES:
        mine = [r for r in rows if r["kind"] == kind]
        X = numpy.array([features(kind, r["k"], r["n"], r["pending"], r["estimate"]) for r in mine])
        y = numpy.array([r["seconds"] for r in mine])
        keep = list(range(X.shape[1]))
        while True:
            w, *_ = numpy.linalg.lstsq(X[:, keep], y, rcond=None)
            if (w >= 0).all() or len(keep) == 1:
                break
            keep.pop(int(numpy.argmin(w)))
        full = [0.0] * X.shape[1]
        for index, weight in zip(keep, w):
            full[index] = max(0.0, float(weight))
        weights[kind] = full
    return weights


def main():
    from common import machine, table

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problem", choices=sorted(BOUNDS), default="hartmann6")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096, 16384])
    parser.add_argument("--k", type=int, nargs="+", default=[1, 4, 16, 64, 128])
    parser.add_argument("--pending", type=int, nargs="+", default=[200, 4000])
    parser.add_argument("--later-infill", choices=("pool", "focussearch"), default="pool",
                        help="how a batch's later points are searched (focussearch: a search per point)")
    parser.add_argument("--label", default="", help="stores the curve as proposal_costs_<problem>_<label>.json "
                        "(scale_sim.py --cost-model LABEL reads it)")
    parser.add_argument("--sim-workers", type=int, nargs="*", default=[1024, 4096],
                        help="also run real-mode scale simulations of these many workers (one master) and fit the "
                             "calls to their proposals and tells too, in the mix a search makes them (none: the "
                             "measured grid only)")
    parser.add_argument("--sim-run", type=float, default=30.0, help="mean run time of those simulations, s")
    parser.add_argument("--refit", action="store_true",
                        help="keep the measured grid stored with the curve; run the simulations again and refit")
    args = parser.parse_args()
    path = cost_file(args.problem, args.label)
    if args.refit:
        with open(path) as handle:
            stored = json.load(handle)
        rows = [dict(zip(stored["columns"], row)) for row in stored["rows"]]
        rows = [r for r in rows if r.get("source") != "simulation"]
    else:
        rows = measure(args.problem, args.sizes, args.k, args.pending, args.later_infill)
    for workers in args.sim_workers:
        rows += insitu(args.problem, workers, args.sim_run, args.later_infill)
    model = CostModel(fit(rows))
    out = []
    for kind in FEATURES:
        groups = {}
        for r in rows:
            if r["kind"] != kind:
                continue
            if r.get("source") == "simulation":  # thousands of calls: by batch size, over the whole run
                bucket = next(b for b in (1, 4, 16, 64, 10 ** 9) if r["k"] <= b)
                key = ("sim", bucket, "all", "all", r["estimate"])
            else:
                key = ("grid", r["k"], round(r["n"], -2) if kind != "design" else 0, r["pending"] // 1000 * 1000,
                       r["estimate"])
            groups.setdefault(key, []).append(r)
        for (source, k, n, pending, estimate), group in sorted(groups.items(), key=lambda item: str(item[0])):
            measured = statistics.mean(r["seconds"] for r in group)
            fitted = statistics.mean(model.seconds(kind, k=r["k"], n=r["n"], pending=r["pending"],
                                                   estimate=r["estimate"]) for r in group)
            label = k if source == "grid" else "<= %s" % k if k < 10 ** 9 else "> 64"
            out.append([kind, source, label, len(group), n, pending, "yes" if estimate else "", "%.3f" % measured,
                        "%.3f" % fitted])
    print(table(["call", "measured in", "k", "calls", "history", "pending", "estimate", "mean measured s",
                 "mean fitted s"], out))
    print("one busy master at a history of 4,096 with 2,000 points running (fitted: k results told, k points "
          "proposed, as fast as it can):")
    for k in (4, 16, 64):
        print("  k = %3d: %.1f points/s" % (k, throughput(model, k, 4096, 2000)))
    print("fitted:\n" + model.describe())
    os.makedirs(os.path.dirname(path), exist_ok=True)
    columns = ["kind", "k", "n", "pending", "estimate", "seconds", "source"]
    with open(path, "w") as handle:
        json.dump({"machine": machine(), "problem": args.problem, "later_infill": args.later_infill,
                   "weights": model.weights, "features": FEATURES, "columns": columns,
                   "rows": [[r.get(c, "grid") if c == "source" else r[c] for c in columns] for r in rows]},
                  handle, separators=(",", ":"))
        handle.write("\n")
    print("stored in", path)


if __name__ == "__main__":
    main()
