"""The epoch channel under load: does rank 0 stay responsive when every worker reports every 50 ms?

    python bench/epoch_channel_bench.py [--workers 16] [--runs 64] [--epochs 40] [--epoch-s 0.05]

Three HPO jobs of the same runs side by side (random search, so that proposals cost nothing; the test
fixture tests/fixtures/emitters/emit.py, ``epochs`` epochs of ``epoch_s`` seconds each):
  - ``no reports``: the runs print their result at the end (IMPROVE_RESULT line), no epoch report;
  - ``reports``: ``candle_mbo.report()`` after every epoch, nobody answers (the default);
  - ``reports, answered``: the same, with ``--prune median --min-epochs 100000``: every report waits for
    rank 0's answer (as with early discarding on), and the answer is always "go on".
Printed: epoch reports handled per second by rank 0 (journal lines / busy span), dispatch latency (a
worker's idle gap between one run's end and its next run's start: median and 95th percentile), and the
time between two epoch reports of a run beyond the epoch itself (median: what a report costs the run,
including the wait for its answer).
"""

import argparse
import os
import statistics
import time

from common import ROOT, fresh_dir, machine, mpi_command, run, save, table

EMIT = os.path.join(ROOT, "tests", "fixtures", "emitters", "emit.py")
SPACE = os.path.join(ROOT, "tests", "fixtures", "emitters", "emit_space.R")
MODES = {"no reports": ("improve", []), "reports": ("report", []),
         "reports, answered": ("report", ["--prune", "median", "--min-epochs", "100000"])}


def journal(folder):
    import json

    with open(os.path.join(folder, "results.jsonl")) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


def measure(mode, args):
    emit, extra = MODES[mode]
    out = fresh_dir("/dev/shm/candle-mbo-epochs")
    defaults = "/dev/shm/candle-mbo-epochs-defaults.txt"
    with open(defaults, "w") as handle:
        handle.write("[Global_Params]\nmodel_name = 'emit'\nepochs = %d\nemit = '%s'\nx = 0.5\nepoch_s = %g\n"
                     % (args.epochs, emit, args.epoch_s))
    start = time.time()
    run(mpi_command(args.workers + 1, ["-m", "candle_mbo", "--model", EMIT, "--space", SPACE, "--optimizer", "random",
                                       "--budget", args.runs, "--default-model", defaults, "--output", out,
                                       "--quiet", "--no-report", "--seed", 1] + extra), timeout=3600)
    wall = time.time() - start
    entries = journal(out)
    records = [e for e in entries if "status" in e and "event" not in e]
    events = [e for e in entries if e.get("event") == "epoch"]
    assert len(records) == args.runs and all(r["status"] == "ok" for r in records), mode
    first, last = min(r["started"] for r in records), max(r["finished"] for r in records)
    gaps = []
    by_worker = {}
    for record in records:
        by_worker.setdefault(record["worker"], []).append(record)
    for runs in by_worker.values():
        runs.sort(key=lambda r: r["started"])
        gaps += [b["started"] - a["finished"] for a, b in zip(runs, runs[1:])]
    per_report = []
    by_run = {}
    for event in events:
        by_run.setdefault(event["run_id"], []).append(event["time"])
    for times in by_run.values():
        per_report += [b - a - args.epoch_s for a, b in zip(times, times[1:])]
    fresh_dir(out)
    return {"reports": len(events), "reports_per_s": len(events) / (last - first), "gap_median": percentile(gaps, 0.5),
            "gap_p95": percentile(gaps, 0.95), "report_cost": statistics.median(per_report) if per_report else None,
            "wall": wall}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--runs", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--epoch-s", type=float, default=0.05)
    args = parser.parse_args()
    results = {mode: measure(mode, args) for mode in MODES}
    rows = []
    for mode, m in results.items():
        rows.append([mode, m["reports"], "%.0f" % m["reports_per_s"], "%.1f ms" % (1000 * m["gap_median"]),
                     "%.1f ms" % (1000 * m["gap_p95"]),
                     "-" if m["report_cost"] is None else "%.2f ms" % (1000 * m["report_cost"]), "%.0f s" % m["wall"]])
    base = results["no reports"]["gap_median"]
    text = table(["mode", "epoch reports", "reports/s at rank 0", "dispatch gap median", "dispatch gap p95",
                  "cost per report", "wall"], rows)
    text += ("\n\ndispatch gap median with reports / without: %.2fx; answered / without: %.2fx"
             % (results["reports"]["gap_median"] / base, results["reports, answered"]["gap_median"] / base))
    save("epoch_channel", {"machine": machine(), "args": vars(args), "results": results},
         "Epoch channel: %d workers, %d runs of %d epochs of %g s (%s)\n\n%s"
         % (args.workers, args.runs, args.epochs, args.epoch_s, machine(), text))


if __name__ == "__main__":
    main()
