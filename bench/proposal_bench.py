"""Proposal latency as the history grows, and batched proposals against one point per fit (issue 14).

    python bench/proposal_bench.py latency [--sizes 100 300 1000 3000] [--pending 8 64]
    python bench/proposal_bench.py quality [--seeds 5] [--workers 16]

latency: seconds per propose(k) call of an async MBOOptimizer (the HPO default: fast profile, kriging
believer) on Hartmann-6 (kriging) and the mixed test space (random forest), with n finished
evaluations and 8 or 64 points running. Each row is 6 rounds of "one result told, then propose(k)",
as a master sees them; the first call after the history is loaded (when kriging estimates its
hyperparameters) is reported apart. 'no rule' fits every row and estimates on every fit (the behaviour
before the cap; only the sizes where it finishes in minutes).

quality: best value after the budget, median over seeds, on Branin (budget 64) and Hartmann-6 (budget
112) with 16 simulated workers on a virtual clock (run times of 1, 2 or 3 units, so that several
workers free at once), for the ways of filling k free workers: one proposal (one fit) per worker
('one per fit', before issue 14), and propose(k) with one fit: distinct lambdas ('lambdas'), the
sequential believer ('believer'), both. Also the latency rule's parts: hyperparameters estimated on
every fit ('no reuse'), and the row cap brought down to 48 so that it bites within the budget (keeping
the best half of the rows by value, the default, or the best quarter).
"""

import argparse
import heapq
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
SPACES = {"hartmann6": os.path.join(BENCH, "spaces", "hartmann6.R"),
          "branin": os.path.join(BENCH, "spaces", "branin.R"),
          "mixed": os.path.join(ROOT, "tests", "fixtures", "mixed_space.R")}
BUDGETS = {"branin": 64, "hartmann6": 112}
OPTIMA = {"branin": 0.397887, "hartmann6": -3.32237}
VARIANTS = {"one per fit": {}, "lambdas": {"batch": "lambdas"},
            "lambdas, focus search per point": {"batch": "lambdas", "later_infill": "focussearch"}, "believer": {"batch": "believer"},
            "both": {"batch": "both"}, "lambdas, no reuse": {"batch": "lambdas", "reuse_hyper": False},
            "lambdas, cap 48, best half": {"batch": "lambdas", "max_fit_rows": 48},
            "lambdas, cap 48, best quarter": {"batch": "lambdas", "max_fit_rows": 48, "fit_best_share": 0.25}}


def async_settings(workers, **over):
    base = {"propose_points": workers, "learner": "default", "crit": "default", "profile": "fast",
            "maximize": False, "mode": "async", "lie": "believer", "random_lambda": True}
    base.update(over)
    return base


def hartmann6(x):
    alpha = [1.0, 1.2, 3.0, 3.2]
    a = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
    p = [[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
         [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]]
    return -sum(alpha[i] * math.exp(-sum(a[i][j] * (x[j] - p[i][j] * 1e-4) ** 2 for j in range(6))) for i in range(4))


def branin(x1, x2):
    return (x2 - 5.1 / (4 * math.pi ** 2) * x1 ** 2 + 5 / math.pi * x1 - 6) ** 2 + \
        10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10


def objective(problem, point):
    v = point.params
    if problem == "branin":
        return branin(v["x1"], v["x2"])
    if problem == "hartmann6":
        return hartmann6([v["x%d" % i] for i in range(1, 7)])
    numbers = [x for x in point.x.values() if isinstance(x, float)]
    return sum((a - 0.3) ** 2 for a in numbers) + 0.1 * math.sin(10 * sum(numbers))


def latency_one(space, n, pending, k, rule, rounds=6):
    sys.path.insert(0, ROOT)
    from candle_mbo.search.mbo import MBOOptimizer

    over = {} if rule else {"max_fit_rows": 10 ** 6, "reuse_hyper": False}
    optimizer = MBOOptimizer(SPACES[space], async_settings(64, **over))
    history = optimizer.design(n, 1)
    optimizer.tell([(p, objective(space, p)) for p in history])
    running = optimizer.design(pending, 2)  # handed out, not told: running points
    times = []
    for i in range(rounds + 1):
        start = time.perf_counter()
        proposals = optimizer.propose(k, 10 + i)
        times.append(time.perf_counter() - start)
        assert not any(p.prop_type == "random_fallback" for p in proposals), optimizer.messages()
        # one running point finishes, the proposals start running
        optimizer.tell([(running[0], objective(space, running[0]))])
        running = running[1:] + proposals[:1]
        optimizer.discard(proposals[1:])
    return {"first": times[0], "steady": statistics.mean(times[1:]), "max": max(times[1:])}


def quality_one(problem, variant, seed, workers):
    """One async search on a virtual clock; returns best value and seconds spent proposing."""
    sys.path.insert(0, ROOT)
    from candle_mbo.search.mbo import MBOOptimizer

    budget = BUDGETS[problem]
    optimizer = MBOOptimizer(SPACES[problem], async_settings(workers, **VARIANTS[variant]))
    optimizer.set_budget(budget)
    rng = random.Random(seed)
    running, clock, handed, best, spent, calls = [], 0, 0, math.inf, 0.0, 0
    design = optimizer.design(workers, seed * 7919)
    for point in design:
        heapq.heappush(running, (rng.choice((1, 2, 3)), point.id, point))
    handed = len(design)
    step = 1
    while running:
        clock = running[0][0]
        finished = []
        while running and running[0][0] == clock:
            finished.append(heapq.heappop(running)[2])
        told = [(p, objective(problem, p)) for p in finished]
        optimizer.tell(told)
        best = min([best] + [y for _, y in told])
        free = min(len(finished), budget - handed)
        if free <= 0:
            continue
        start = time.perf_counter()
        if variant == "one per fit":
            new = []
            for _ in range(free):
                new += optimizer.propose(1, seed * 7919 + step)
                step += 1
            calls += free
        else:
            new = optimizer.propose(free, seed * 7919 + step)
            step += 1
            calls += 1
        spent += time.perf_counter() - start
        for point in new:
            heapq.heappush(running, (clock + rng.choice((1, 2, 3)), point.id, point))
        handed += len(new)
    return {"best": best, "seconds": spent, "calls": calls, "points": handed - len(design)}


def subprocess_json(args):
    out = subprocess.run([sys.executable, __file__] + [str(a) for a in args], capture_output=True, text=True,
                         timeout=7200, cwd="/tmp")
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("latency", "quality", "one-latency", "one-quality"))
    parser.add_argument("--sizes", nargs="+", type=int, default=[100, 300, 1000, 3000])
    parser.add_argument("--pending", nargs="+", type=int, default=[8, 64])
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--no-rule-max", type=int, default=300, help="largest size measured without the rule")
    parser.add_argument("--spaces", nargs="+", default=["hartmann6", "mixed"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--problems", nargs="+", default=["branin", "hartmann6"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.what == "one-latency":
        space, n, pending, k, rule = args.args
        print(json.dumps(latency_one(space, int(n), int(pending), int(k), rule == "1")))
        return
    if args.what == "one-quality":
        problem, variant, seed, workers = args.args
        print(json.dumps(quality_one(problem, variant, int(seed), int(workers))))
        return
    sys.path.insert(0, BENCH)
    from common import machine, save, table

    rows, data = [], []
    if args.what == "latency":
        for space in args.spaces:
            for n in args.sizes:
                for pending in args.pending:
                    for k in args.batch:
                        for rule in (True, False):
                            if not rule and n > args.no_rule_max:
                                continue
                            r = subprocess_json(["one-latency", space, n, pending, k, int(rule)])
                            data.append(dict(r, space=space, n=n, pending=pending, k=k, rule=rule))
                            rows.append([space, n, pending, k, "rule" if rule else "no rule", "%.2f" % r["first"],
                                         "%.3f" % r["steady"], "%.3f" % r["max"], "%.3f" % (r["steady"] / k)])
                            print(rows[-1], flush=True)
        text = table(["space", "finished n", "running", "k", "", "first call s", "steady s/call", "max s",
                      "s/point"], rows)
        save("proposal_latency", {"machine": machine(), "rows": data}, text)
        return
    results = {}
    for problem in args.problems:
        for seed in range(1, args.seeds + 1):
            for variant in args.variants:
                r = subprocess_json(["one-quality", problem, variant, seed, args.workers])
                results.setdefault(problem, {}).setdefault(variant, []).append(r)
                print(problem, variant, seed, r, flush=True)
    for problem, by_variant in results.items():
        for variant, runs in by_variant.items():
            bests = [r["best"] for r in runs]
            rows.append([problem, BUDGETS[problem], variant, "%.4f" % statistics.median(bests),
                         "%.4f .. %.4f" % (min(bests), max(bests)),
                         "%.3f" % statistics.median(r["seconds"] / r["points"] for r in runs),
                         "%.1f" % statistics.median(r["points"] / r["calls"] for r in runs)])
    text = table(["problem", "budget", "proposals", "median best", "range over seeds", "s per point",
                  "points per call"], rows)
    save("batch_quality", {"machine": machine(), "workers": args.workers, "seeds": args.seeds,
                           "results": results}, text)


if __name__ == "__main__":
    main()
