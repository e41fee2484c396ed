"""Worker pool benchmarks (issue: pool/UPF): dispatch throughput, idle cost, memory.

    python bench/pool_bench.py [--tasks 20000] [--ranks 4 8]

Throughput: a UPF of N no-op runs over 4 and 8 ranks, in-process (--isolation none) and with isolated
runners, with and without per-run folders (--no-run-dirs), against a raw mpi4py send/recv loop of the
same shape, measured in the same run. By default each candle_mbo run creates its runs/<id>/ folder with
params.json, result.json and model.log; the output goes to tmpfs (/dev/shm) so that the figures measure
candle_mbo rather than this VM's disk (one row on the disk is printed for comparison). Rates are steady-state: runs / (last finish - first
start), which leaves out the start-up (imports, model probe) that a 20,000-run job pays once.

Idle cost: CPU time used by each rank over 10 s while the workers have nothing to do.
Memory: resident size of a worker rank and of its runner subprocess with a no-op model loaded.
"""

import argparse
import json
import os
import subprocess
import time

from common import (ENV, ROOT, children_of, cmdline, cpu_seconds, environ_value, fresh_dir, machine, maps_contain,
                    mpi_command, records, rss_mb, run, save, session_pids, table)

NOOP = os.path.join(ROOT, "bench", "noop.py")
FAULTY = os.path.join(ROOT, "tests", "fixtures", "faulty.py")


def write_upf(path, n):
    with open(path, "w") as handle:
        for i in range(n):
            handle.write(json.dumps({"id": "r%05d" % i, "x": i}) + "\n")
    return path


def raw_rate(np, n):
    return float(run(mpi_command(np, [os.path.join(ROOT, "bench", "raw_mpi_loop.py"), n])).stdout.strip())


def pool_rate(np, upf, isolation, out, run_dirs=True):
    fresh_dir(out)
    start = time.time()
    run(mpi_command(np, ["-m", "candle_mbo.upf", "--model", NOOP, "--upf", upf, "--output", out, "--isolation",
                         isolation, "--quiet", "--no-report"] + ([] if run_dirs else ["--no-run-dirs"])))
    wall = time.time() - start
    done = records(out)
    first = min(r["started"] for r in done)
    last = max(r["finished"] for r in done)
    fresh_dir(out)
    return len(done) / (last - first), len(done) / wall


def throughput(ranks, n):
    upf = write_upf("/dev/shm/candle-mbo-bench.upf", n)
    rows, data = [], []
    for np in ranks:
        raw = raw_rate(np, n)
        for isolation, where, run_dirs in (("none", "/dev/shm", True), ("process", "/dev/shm", True),
                                           ("none", "/dev/shm", False), ("process", "/dev/shm", False),
                                           ("none", "/tmp", True)):
            steady, overall = pool_rate(np, upf, isolation, os.path.join(where, "candle-mbo-bench-out"), run_dirs)
            label = ("in-process" if isolation == "none" else "isolated runners") + \
                ("" if run_dirs else ", --no-run-dirs") + ("" if where == "/dev/shm" else " (disk)")
            rows.append([np, label, "%.0f" % raw, "%.0f" % steady, "%.1f%%" % (100 * steady / raw),
                         "%.0f" % overall])
            data.append({"ranks": np, "isolation": isolation, "output": where, "run_dirs": run_dirs,
                         "raw_per_s": raw, "steady_per_s": steady, "overall_per_s": overall,
                         "ratio": steady / raw})
    os.remove(upf)
    text = table(["ranks", "candle_mbo mode", "raw mpi4py loop /s", "candle_mbo runs/s", "ratio",
                  "incl. start-up /s"], rows)
    save("pool_throughput", {"tasks": n, "machine": machine(), "rows": data},
         "Dispatch throughput, %d no-op runs (%s)\n\n%s" % (n, machine(), text))


def ranks_of(leader):
    found = {}
    for pid in session_pids(leader):
        rank = environ_value(pid, "OMPI_COMM_WORLD_RANK")
        if rank is not None and "candle_mbo" in cmdline(pid):
            found[pid] = int(rank)
    return found


def idle_and_memory():
    upf = write_upf("/dev/shm/candle-mbo-idle.upf", 0)
    with open(upf, "w") as handle:
        handle.write(json.dumps({"id": "long", "fate": "ok", "sleep": 25}) + "\n")
    out = fresh_dir("/dev/shm/candle-mbo-idle-out")
    process = subprocess.Popen(mpi_command(4, ["-m", "candle_mbo.upf", "--model", FAULTY, "--upf", upf, "--output",
                                               out, "--quiet", "--no-report"]),
                               cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        time.sleep(8)  # start-up done, the long run going, two workers idle
        ranks = ranks_of(process.pid)
        children = {pid: rank for pid, rank in ranks.items()}
        # runner subprocesses: children of the worker ranks, in sessions of their own
        runners = [pid for pid in children_of(ranks) if "runner_main" in cmdline(pid)]
        before = {pid: cpu_seconds(pid) for pid in list(ranks) + runners}
        time.sleep(10)
        after = {pid: cpu_seconds(pid) for pid in before}
        memory = {pid: rss_mb(pid) for pid in before}
        r_loaded = {pid: maps_contain(pid, "libR.so") for pid in ranks}
    finally:
        process.terminate()
        process.wait(timeout=60)
        fresh_dir(out)
        os.remove(upf)
    rows = []
    for pid, rank in sorted(children.items(), key=lambda item: item[1]):
        role = "master" if rank == 0 else "worker"
        rows.append(["rank %d (%s)" % (rank, role), "%.2f%%" % (100 * (after[pid] - before[pid]) / 10.0),
                     "%.0f" % memory[pid], "yes" if r_loaded[pid] else "no"])
    for pid in runners:
        rows.append(["runner pid %d" % pid, "%.2f%%" % (100 * (after[pid] - before[pid]) / 10.0), "%.0f" % memory[pid],
                     "no"])
    text = table(["process", "CPU over 10 s idle (% of a core)", "RSS MB", "libR loaded"], rows)
    save("pool_idle_memory", {"rows": rows, "machine": machine()},
         "Idle cost and memory (4 ranks; one worker running a 25 s sleep, two idle; %s)\n\n%s" % (machine(), text))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--ranks", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--only", choices=("throughput", "idle"))
    args = parser.parse_args()
    if args.only != "idle":
        throughput(args.ranks, args.tasks)
    if args.only != "throughput":
        idle_and_memory()


if __name__ == "__main__":
    main()
