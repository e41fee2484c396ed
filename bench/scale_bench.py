"""Workers kept busy at the design card's scale, for real: 64 ranks on this machine, runs of 20 s.

    python bench/scale_bench.py [--ranks 64] [--run-s 20] [--budget 320] [--baseline 74232ff]

A 4-d numeric space (Rosenbrock), default settings, runs that only sleep (so the cores are free for the
masters). Side by side in one run: this code with its default number of masters, this code with
``--masters 2``, and the code of ``--baseline`` (the last commit before batched proposals and several
masters; checked out into a temporary git worktree and run from there). Printed per configuration:
workers busy (sum of run durations / (workers x first start to last finish)), wall, the best value, each
master's peak RSS and CPU seconds, and the mean CPU share of an idle-waiting worker rank.

With runs of a fixed length, whole rounds bound what any scheduler can do: 320 runs on 63 workers
need 6 rounds (5 x 63 = 315), so the span is at least 120 s and "workers busy" at most 84.7%; the
table prints that ceiling, and "busy while work remained" (from the first start to the last start, the
time during which an idle worker is the dispatcher's fault).
"""

import argparse
import os
import subprocess
import tempfile
import threading
import time

from common import (ENV, PYTHON, ROOT, all_stats, cmdline, cpu_seconds, environ_value, fresh_dir, machine, records,
                    rss_mb, save, table)

MODEL = os.path.join(ROOT, "bench", "models", "synthetic.py")
SPACE = os.path.join(ROOT, "bench", "spaces", "rosenbrock4.R")


class RankWatch(threading.Thread):
    """Samples every rank of a job once a second: peak RSS and last CPU seconds, by MPI rank."""

    def __init__(self, leader):
        super().__init__(daemon=True)
        self.leader = leader
        self.rss = {}
        self.cpu = {}
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            for pid, fields in all_stats():
                if int(fields[3]) != self.leader:
                    continue
                rank = environ_value(pid, "OMPI_COMM_WORLD_RANK")
                if rank is None or "candle_mbo" not in cmdline(pid):
                    continue
                try:
                    self.rss[int(rank)] = max(self.rss.get(int(rank), 0.0), rss_mb(pid))
                    self.cpu[int(rank)] = cpu_seconds(pid)
                except OSError:
                    pass
            self.done.wait(1.0)


def one(name, ranks, run_s, budget, extra, pythonpath, masters):
    out = fresh_dir(os.path.join("/tmp", "candle-mbo-scale-%s" % name))
    defaults = os.path.join(tempfile.gettempdir(), "candle-mbo-scale-defaults.txt")
    with open(defaults, "w") as handle:
        handle.write("[Global_Params]\nfunction = 'rosenbrock4'\nmin_s = %g\nmax_s = %g\n" % (run_s, run_s))
    command = ["mpiexec", "-n", str(ranks), "--oversubscribe", PYTHON, "-m", "candle_mbo", "--model", MODEL,
               "--space", SPACE, "--default-model", defaults, "--budget", str(budget), "--seed", "1",
               "--output", out, "--quiet", "--no-report"] + extra
    env = dict(ENV, PYTHONPATH=pythonpath)
    process = subprocess.Popen(command, cwd=pythonpath, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    watch = RankWatch(process.pid)
    watch.start()
    began = time.time()
    stdout, stderr = process.communicate(timeout=7200)
    watch.done.set()
    if process.returncode != 0:
        raise RuntimeError("%s failed:\n%s\n%s" % (name, stdout[-2000:], stderr[-2000:]))
    done = records(out)
    workers = ranks - masters
    start = min(r["started"] for r in done)
    end = max(r["finished"] for r in done)
    last_start = max(r["started"] for r in done)
    busy = sum(r["finished"] - r["started"] for r in done) / (workers * (end - start))
    while_work = sum(max(0.0, min(r["finished"], last_start) - r["started"]) for r in done) / (
        workers * (last_start - start))
    wall = time.time() - began
    worker_cpu = [c for rank, c in watch.cpu.items() if rank >= masters]
    rounds = -(-budget // workers)
    return {"name": name, "busy": busy, "ceiling": budget / float(workers * rounds), "busy_while_work": while_work,
            "span_s": end - start, "best_span_s": rounds * run_s, "wall_s": wall, "runs": len(done),
            "best": min(r["objective"] for r in done if r["objective"] is not None),
            "master_rss_mb": [round(watch.rss.get(r, 0.0), 1) for r in range(masters)],
            "master_cpu_s": [round(watch.cpu.get(r, 0.0), 1) for r in range(masters)],
            "worker_cpu_share": (sum(worker_cpu) / len(worker_cpu) / wall) if worker_cpu else 0.0}


def baseline_checkout(rev):
    folder = tempfile.mkdtemp(prefix="candle-mbo-baseline-")
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", folder, rev], check=True, capture_output=True)
    return folder


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, default=64)
    parser.add_argument("--run-s", type=float, default=20.0)
    parser.add_argument("--budget", type=int, default=320)
    parser.add_argument("--baseline", default="74232ff", help="git revision to compare with ('' to skip)")
    args = parser.parse_args()
    configs = [("default", [], ROOT, 1), ("masters-2", ["--masters", "2"], ROOT, 2)]
    folder = None
    if args.baseline:
        folder = baseline_checkout(args.baseline)
        configs.append(("baseline %s" % args.baseline, [], folder, 1))
    try:
        results = [one(name.split()[0], args.ranks, args.run_s, args.budget, extra, path, masters)
                   | {"name": name} for name, extra, path, masters in configs]
    finally:
        if folder:
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", folder], capture_output=True)
    rows = [[r["name"], "%.1f%%" % (100 * r["busy"]), "%.1f%%" % (100 * r["ceiling"]),
             "%.1f%%" % (100 * r["busy_while_work"]), "%.0f (%.0f)" % (r["span_s"], r["best_span_s"]), r["runs"],
             "%.3g" % r["best"],
             " / ".join("%.0f" % m for m in r["master_rss_mb"]), " / ".join("%.0f" % c for c in r["master_cpu_s"]),
             "%.2f%%" % (100 * r["worker_cpu_share"])] for r in results]
    text = table(["configuration", "workers busy", "ceiling", "busy while work remained", "span s (best possible)",
                  "runs", "best", "master RSS MB", "master CPU s", "worker rank CPU"], rows)
    base = results[-1] if args.baseline else None
    ratio = ("\n\nspan: baseline / default = %.2fx" % (base["span_s"] / results[0]["span_s"])) if base else ""
    save("scale_bench", {"machine": machine(), "ranks": args.ranks, "run_s": args.run_s, "budget": args.budget,
                         "results": results},
         "%d ranks, runs of %g s, budget %d, 4-d Rosenbrock, default settings (%s)\n\n%s%s"
         % (args.ranks, args.run_s, args.budget, machine(), text, ratio))


if __name__ == "__main__":
    main()
