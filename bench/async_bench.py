"""Worker utilization of synchronous and asynchronous mlrMBO, side by side (issue: async HPO).

    python bench/async_bench.py [--workers 8] [--budget 96]

A synthetic benchmark (Branin) whose runs take 1 to 10 s, depending on x1 and on chance, over 8
workers with a budget of 96, in sync mode (batches of 8) and in async mode. From the results log:
- busy: the fraction of worker time spent running (sum of run durations / (workers x span));
- wall: first start to last finish;
- idle gaps: mean time a worker waits between the end of a run and the start of its next one
  (in sync mode: for the slowest run of the batch and for R; in async mode: for a proposal).
"""

import argparse
import os
import statistics

from common import ROOT, fresh_dir, machine, mpi_command, records, run, save, table

MODEL = os.path.join(ROOT, "bench", "models", "synthetic.py")
SPACE = os.path.join(ROOT, "bench", "spaces", "branin.R")
DEFAULTS = os.path.join(ROOT, "bench", "models", "branin_timed.txt")


def utilization(done, workers):
    start = min(r["started"] for r in done)
    end = max(r["finished"] for r in done)
    busy = sum(r["finished"] - r["started"] for r in done)
    gaps = []
    by_worker = {}
    for record in done:
        by_worker.setdefault(record["worker"], []).append(record)
    for runs in by_worker.values():
        runs.sort(key=lambda r: r["started"])
        gaps += [b["started"] - a["finished"] for a, b in zip(runs, runs[1:])]
    return {"busy": busy / (workers * (end - start)), "wall": end - start,
            "gap_mean": statistics.mean(gaps) if gaps else 0.0, "gap_max": max(gaps) if gaps else 0.0,
            "runs": len(done), "best": min(r["objective"] for r in done if r["objective"] is not None)}


def one(mode, workers, budget, seed):
    out = fresh_dir(os.path.join("/tmp", "candle-mbo-async-bench-%s" % mode))
    run(mpi_command(workers + 1, ["-m", "candle_mbo", "--model", MODEL, "--space", SPACE, "--default-model",
                                  DEFAULTS, "--budget", budget, "--mode", mode, "--seed", seed, "--output", out,
                                  "--quiet", "--no-report"]), timeout=7200)
    return utilization(records(out), workers)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--budget", type=int, default=96)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    results = {mode: one(mode, args.workers, args.budget, args.seed) for mode in ("sync", "async")}
    rows = [[mode, "%.1f%%" % (100 * r["busy"]), "%.0f" % r["wall"], "%.2f" % r["gap_mean"], "%.1f" % r["gap_max"],
             r["runs"], "%.4f" % r["best"]] for mode, r in results.items()]
    text = table(["mode", "workers busy", "wall s", "mean idle gap s", "max idle gap s", "runs", "best"], rows)
    speedup = results["sync"]["wall"] / results["async"]["wall"]
    save("async_utilization", {"machine": machine(), "workers": args.workers, "budget": args.budget,
                               "results": results},
         "Utilization, %d workers, budget %d, runs of 1-10 s (%s)\n\n%s\n\nasync finishes %.2fx faster than sync"
         % (args.workers, args.budget, machine(), text, speedup))


if __name__ == "__main__":
    main()
