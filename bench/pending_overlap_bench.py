"""Masters proposing at the same time: does telling every master each proposal the moment it is made
(issue 21 item 4) keep their batches apart? A small version of ``scale_sim.py --quality`` at 4 masters.

    python bench/pending_overlap_bench.py [--seeds 3] [--workers 16] [--budget 64]

Per variant ("proposed": other masters' proposals pending from their proposal on; "at dispatch": only from
their start, as before), over seeds: the best value, and the pairs of points from different masters
proposed within 2% of the box of each other (near-duplicates).
"""

import argparse
import itertools
import logging
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import scale_sim  # noqa: E402

BOX = {"x1": (-5.0, 10.0), "x2": (0.0, 15.0)}


def near_pairs(points, radius=0.02):
    unit = [(origin, [(x[k] - lo) / (hi - lo) for k, (lo, hi) in BOX.items()]) for origin, x in points]
    return sum(1 for (a, pa), (b, pb) in itertools.combinations(unit, 2)
               if a != b and max(abs(u - v) for u, v in zip(pa, pb)) < radius)


def run(variant, seed, workers, budget, log):
    proposed = []
    original_request = scale_sim.SimMaster.request
    original = (scale_sim.SimMaster.proposed, scale_sim.SimMaster.withdraw)

    def request(self, k, step, seed_):
        original_request(self, k, step, seed_)
        proposed.extend((self.index, item[1]) for item in self._answer[2])

    scale_sim.SimMaster.request = request
    if variant == "at dispatch":
        scale_sim.SimMaster.proposed = lambda self, items: None
        scale_sim.SimMaster.withdraw = lambda self, pairs: None
    try:
        design = max(4, min(workers, budget // 3))
        result = scale_sim.simulate(workers, 4, 60.0, budget, "branin", seed,
                                    scale_sim.mbo_factory("branin", workers, budget, design), log, design=design)
    finally:
        scale_sim.SimMaster.request = original_request
        scale_sim.SimMaster.proposed, scale_sim.SimMaster.withdraw = original
    return result["best"], near_pairs(proposed), result["others_share"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--budget", type=int, default=64)
    args = parser.parse_args()
    log = logging.getLogger("bench")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    for variant in ("at dispatch", "proposed"):
        rows = [run(variant, seed, args.workers, args.budget, log) for seed in range(1, args.seeds + 1)]
        bests, pairs, shares = zip(*rows)
        print("%-12s best median %.4f (%s)  near-duplicate pairs %s (mean %.1f)  others' share %.0f%%"
              % (variant, statistics.median(bests), ", ".join("%.4f" % b for b in bests),
                 list(pairs), statistics.mean(pairs), 100 * statistics.mean(shares)), flush=True)


if __name__ == "__main__":
    main()
