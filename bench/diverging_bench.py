"""Diverged runs: do they steer the search? (issue 21, item 9)

    python bench/diverging_bench.py [--seeds 3] [--variants cap nocap log] [--modes sync]

bench/models/diverging.py over bench/spaces/diverging.R: a loss bowl whose minimum (0.3) lies 0.4
decades of learning rate below the edge where training diverges (val_loss 1e13..1e30, about 18% of the
space). The optimizer is driven directly (no MPI, no real runs): budget 40 with a design of 8, batches
of 4 in sync mode (async: one point per tell, 4 running). Variants: cap (default: values beyond the
divergence fence enter capped), nocap (objective_cap false: the surrogate sees 1e13..1e30), log
(--objective-transform log, with the cap), k10, k40 and k1000 (the cap with a fence at 10, 40 or 1000 robust
spreads instead of 100: not run by default). Reported per variant: how many of the 32 points after the
design land in the diverging region, and the best val_loss found (median and range over seeds).
"""

import argparse
import heapq
import importlib.util
import json
import os
import random
import statistics
import sys

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, ROOT)
BUDGET, DESIGN, WORKERS = 40, 8, 4
VARIANTS = {"cap": {}, "nocap": {"objective_cap": False}, "log": {"objective_transform": "log"},
            "k10": {"fence_k": 10}, "k40": {"fence_k": 40}, "k1000": {"fence_k": 1000}}


def load_model():
    spec = importlib.util.spec_from_file_location("diverging", os.path.join(BENCH, "models", "diverging.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MODEL = load_model()


def evaluate(point):
    return MODEL.run(point.params)["val_loss"]


def settings(mode, variant):
    return dict({"propose_points": WORKERS, "learner": "default", "crit": "default",
                 "profile": "mlrmbo" if mode == "sync" else "fast", "maximize": False, "mode": mode,
                 "lie": "believer", "random_lambda": mode == "async"}, **VARIANTS[variant])


def drive(optimizer, mode, seed):
    """One search; returns [(lr, width, val_loss)] of the points after the design."""
    design = optimizer.design(DESIGN, seed * 1000)
    after = []
    if mode == "sync":
        optimizer.tell([(p, evaluate(p)) for p in design])
        step = 1
        while DESIGN + len(after) < BUDGET:
            batch = optimizer.propose(min(WORKERS, BUDGET - DESIGN - len(after)), seed * 1000 + step)
            told = [(p, evaluate(p)) for p in batch]
            optimizer.tell(told)
            after += [(p.params["lr"], p.params["width"], y) for p, y in told]
            step += 1
        return after
    rng = random.Random(seed)
    running, queue, handed, step = [], list(design), len(design), 1
    for point in queue[:WORKERS]:
        heapq.heappush(running, (rng.uniform(0.5, 1.5), point.id, point))
    queue = queue[WORKERS:]
    while running:
        clock, _, point = heapq.heappop(running)
        optimizer.tell([(point, evaluate(point))])
        if point.prop_type != "initdesign":
            after.append((point.params["lr"], point.params["width"], evaluate(point)))
        if queue:
            nxt = queue.pop(0)
        elif handed < BUDGET:
            nxt = optimizer.propose(1, seed * 1000 + step)[0]
            handed += 1
            step += 1
        else:
            continue
        heapq.heappush(running, (clock + rng.uniform(0.5, 1.5), nxt.id, nxt))
    return after


def one(mode, variant, seed):
    from candle_mbo.search.mbo import MBOOptimizer

    after = drive(MBOOptimizer(os.path.join(BENCH, "spaces", "diverging.R"), settings(mode, variant)), mode, seed)
    return {"diverged": int(sum(bool(MODEL.diverges(lr, w)) for lr, w, _ in after)), "after": len(after),
            "best": min(y for _, _, y in after)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=["cap", "nocap", "log"], choices=list(VARIANTS))
    parser.add_argument("--modes", nargs="+", default=["sync"], choices=["sync", "async"])
    args = parser.parse_args()
    results = {}
    for mode in args.modes:
        for seed in range(1, args.seeds + 1):
            for variant in args.variants:  # alternated, so that load on the machine hits them alike
                result = one(mode, variant, seed)
                results.setdefault(mode, {}).setdefault(variant, []).append(result)
                print("%-5s %-6s seed %d: %2d of %d points after the design diverged, best %.4f"
                      % (mode, variant, seed, result["diverged"], result["after"], result["best"]), flush=True)
    for mode, by_variant in results.items():
        for variant, runs in by_variant.items():
            counts = [r["diverged"] for r in runs]
            bests = [r["best"] for r in runs]
            print("%-5s %-6s diverged after the design: median %s (%s); best: median %.4f (%.4f .. %.4f)"
                  % (mode, variant, statistics.median(counts), ", ".join(map(str, counts)),
                     statistics.median(bests), min(bests), max(bests)))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
