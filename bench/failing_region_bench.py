"""Failures that cluster in one region: does the search keep out of it? (issue 13, item 4)

    python bench/failing_region_bench.py [--seeds 5] [--baseline COMMIT] [--problems branin border]

Two objectives on Branin's domain (x1 in -5..10, x2 in 0..15) where every run with x1 > 7 fails (as an
out-of-memory region would: no value, and quickly, so failures are told early):
- branin: Branin's function; one of its three minima lies in the failing region.
- border: the loss falls as x1 (say, the model's size) grows, until the runs stop fitting in memory:
  (x1 - 7.5)^2 / 4 + (x2 - 5)^2 / 10 + 1, so the best run that works sits on the region's border.
A surrogate that ranks failures among the good points is drawn into the region. The optimizer is driven directly
(no MPI, no real runs) on a virtual clock: 4 workers, run times uniform in 0.5-1.5 (a failure ends
after a tenth of that), budget 48 with a design of 8; sync mode proposes batches of 4, async mode
proposes a point whenever a worker frees (random points until 4 runs succeeded, as the HPO workflow
does). The figure is the share of the points after the design that land in the failing region,
median over seeds, for this tree and for the baseline commit (failures imputed once, when told),
side by side in one run.
"""

import argparse
import heapq
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
BUDGET, DESIGN, WORKERS, WARMUP = 48, 8, 4, 4
SPACE = "param.set <- makeParamSet(makeNumericParam('x1', lower = -5, upper = 10), " \
        "makeNumericParam('x2', lower = 0, upper = 15))\n"


def branin(x1, x2):
    return (x2 - 5.1 / (4 * math.pi ** 2) * x1 ** 2 + 5 / math.pi * x1 - 6) ** 2 + \
        10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10


PROBLEM = {"name": "branin"}


def evaluate(point):
    x1, x2 = point.params["x1"], point.params["x2"]
    if x1 > 7:
        return None
    if PROBLEM["name"] == "border":
        return (x1 - 7.5) ** 2 / 4 + (x2 - 5) ** 2 / 10 + 1
    return branin(x1, x2)


def settings(mode):
    # the HPO workflow's defaults for each mode
    return {"propose_points": WORKERS, "learner": "default", "crit": "default",
            "profile": "mlrmbo" if mode == "sync" else "fast", "maximize": False, "mode": mode, "lie": "believer",
            "random_lambda": mode == "async"}


def drive(optimizer, mode, seed):
    """Run one search; returns [(prop_type, x1, y)] for every point after the design."""
    design = (getattr(optimizer, "design", None) or optimizer.initial_design)(DESIGN, seed * 1000)
    after = []
    if mode == "sync":
        optimizer.tell([(p, evaluate(p)) for p in design])
        step = 1
        while DESIGN + len(after) < BUDGET:
            batch = optimizer.propose(min(WORKERS, BUDGET - DESIGN - len(after)), seed * 1000 + step)
            told = [(p, evaluate(p)) for p in batch]
            optimizer.tell(told)
            after += [(p.prop_type, p.params["x1"], y) for p, y in told]
            step += 1
        return after
    rng = random.Random(seed)
    clock, running, queue, handed, succeeded = 0.0, [], list(design), len(design), 0

    def dispatch(point, now):
        y = evaluate(point)
        duration = rng.uniform(0.5, 1.5) * (0.1 if y is None else 1.0)
        heapq.heappush(running, (now + duration, point.id, point, y))

    for _ in range(WORKERS):
        dispatch(queue.pop(0), clock)
    step = 1
    while running:
        clock, _, point, y = heapq.heappop(running)
        optimizer.tell([(point, y)])
        succeeded += y is not None
        if point.prop_type != "initdesign":
            after.append((point.prop_type, point.params["x1"], y))
        if queue:
            dispatch(queue.pop(0), clock)
        elif handed < BUDGET:
            propose = optimizer.propose if succeeded >= WARMUP or not hasattr(optimizer, "random_points") \
                else optimizer.random_points
            dispatch(propose(1, seed * 1000 + step)[0], clock)
            handed += 1
            step += 1
    return after


def one(root, problem, mode, seed):
    """One search with the candle_mbo found under ``root`` (run in a subprocess of its own)."""
    PROBLEM["name"] = problem
    sys.path.insert(0, root)
    from candle_mbo.search.mbo import MBOOptimizer

    with tempfile.NamedTemporaryFile("w", suffix=".R", delete=False) as handle:
        handle.write(SPACE)
    after = drive(MBOOptimizer(handle.name, settings(mode)), mode, seed)
    os.unlink(handle.name)
    finite = [y for _, _, y in after if y is not None]
    return {"share": sum(1 for _, x1, _ in after if x1 > 7) / len(after), "best": min(finite) if finite else None,
            "fallbacks": sum(1 for t, _, _ in after if t == "random_fallback")}


def baseline_tree(commit):
    folder = tempfile.mkdtemp(prefix="candle-mbo-baseline-")
    archive = subprocess.run(["git", "-C", ROOT, "archive", "--format=tar", commit, "candle_mbo", "R"],
                             capture_output=True, check=True).stdout
    with tempfile.TemporaryFile() as handle:
        handle.write(archive)
        handle.seek(0)
        with tarfile.open(fileobj=handle) as tar:
            tar.extractall(folder)
    return folder


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--baseline", default="74232ff", help="the commit to compare with (default: before item 4)")
    parser.add_argument("--modes", nargs="+", default=["sync", "async"])
    parser.add_argument("--problems", nargs="+", default=["branin", "border"])
    parser.add_argument("--one", nargs=4, metavar=("ROOT", "PROBLEM", "MODE", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], args.one[1], args.one[2], int(args.one[3]))))
        return
    baseline = baseline_tree(args.baseline)
    trees = {"baseline %s" % args.baseline: baseline, "this tree": ROOT}
    try:
        results = run_all(args, trees)
    finally:
        shutil.rmtree(baseline, ignore_errors=True)
    report(results, args.seeds)


def run_all(args, trees):
    results = {}
    for problem in args.problems:
        for mode in args.modes:
            for seed in range(1, args.seeds + 1):
                for name, root in trees.items():  # alternated, so that load on the machine hits both alike
                    out = subprocess.run([sys.executable, __file__, "--one", root, problem, mode, str(seed)],
                                         capture_output=True, text=True, check=True, timeout=3600, cwd="/tmp")
                    result = json.loads(out.stdout.strip().splitlines()[-1])
                    results.setdefault(problem, {}).setdefault(mode, {}).setdefault(name, []).append(result)
                    print("%-6s %-5s %-18s seed %d: %.0f%% in the failing region, best %.4f, %d fallbacks"
                          % (problem, mode, name, seed, 100 * result["share"], result["best"], result["fallbacks"]),
                          flush=True)
    return results


def report(results, seeds):
    sys.path.insert(0, BENCH)
    from common import machine, save, table

    rows = []
    for problem, by_mode in results.items():
        for mode, by_tree in by_mode.items():
            for name, runs in by_tree.items():
                shares = [r["share"] for r in runs]
                rows.append([problem, mode, name, "%.0f%%" % (100 * statistics.median(shares)),
                             "%.0f%%" % (100 * statistics.mean(shares)),
                             "%.0f%% .. %.0f%%" % (100 * min(shares), 100 * max(shares)),
                             "%.3f" % statistics.median(r["best"] for r in runs)])
    text = table(["problem", "mode", "code", "median share in failing region", "mean", "range over seeds",
                  "median best"], rows)
    save("failing_region", {"machine": machine(), "seeds": seeds, "results": results}, text)


if __name__ == "__main__":
    main()
