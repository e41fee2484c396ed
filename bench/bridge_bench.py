"""What the rpy2 bridge adds per proposal, and how proposal time grows with the evaluations.

    python bench/bridge_bench.py [--rounds 15]

Bridge: the same human-in-the-loop calls (design, tell, then rounds of propose 1 point + tell it back)
made through candle_mbo's rpy2 bridge (MBOOptimizer) and by Rscript sourcing the same R/candle_mbo.R,
with the same seeds and the same y values (so both do identical R work), in one run. The figure is
the mean seconds per propose+tell round on each side and their ratio. Target: at most 5% more.

Curve: seconds for one proposal with 50, 100, 200 and 400 finished evaluations, for the kriging (km,
6 numeric parameters) and random-forest (rf, a mixed space) surrogates, with mlrMBO's default effort
('mlrmbo' profile: 1000 points x 5 iterations x 3 restarts of focus search, 500 trees) and the async
default ('fast': 500 x 3 x 1, 100 trees).
"""

import argparse
import json
import os
import statistics
import subprocess
import time

from common import ENV, ROOT, machine, save, table

SPACES = {"numeric": os.path.join(ROOT, "bench", "spaces", "hartmann6.R"),
          "mixed": os.path.join(ROOT, "tests", "fixtures", "mixed_space.R")}


def settings(profile, learner="default", mode="sync"):
    return {"propose_points": 1, "learner": learner, "crit": "default", "profile": profile, "maximize": False,
            "mode": mode, "lie": "best", "random_lambda": False}


def y_of(point_id):
    return ((point_id * 37) % 101) / 128  # a binary fraction: exact through JSON on both sides


def python_rounds(space, opts, n, rounds, seed):
    from candle_mbo.search.mbo import MBOOptimizer

    optimizer = MBOOptimizer(space, opts)
    design = optimizer.design(n, seed)
    optimizer.tell([(p, y_of(p.id)) for p in design])
    times = []
    for i in range(1, rounds + 1):
        start = time.perf_counter()
        proposals = optimizer.propose(1, seed + i)
        optimizer.tell([(p, y_of(p.id)) for p in proposals])
        times.append(time.perf_counter() - start)
    return times


def r_rounds(space, opts, n, rounds, seed):
    out = subprocess.run(["Rscript", os.path.join(ROOT, "bench", "bridge_bench.R"), space, json.dumps(opts), str(n),
                          str(rounds), str(seed)], capture_output=True, text=True, env=ENV, check=True, timeout=3600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def py_rounds_subprocess(space, opts, rounds):
    code = ("import sys, json; sys.path.insert(0, %r); from bridge_bench import python_rounds; "
            "print(json.dumps(python_rounds(%r, %r, 12, %d, 5)))" % (os.path.join(ROOT, "bench"), space, opts, rounds))
    return json.loads(subprocess.run([os.sys.executable, "-c", code], capture_output=True, text=True, env=ENV,
                                     check=True, timeout=3600).stdout.strip().splitlines()[-1])


def call_overhead(calls=2000):
    """Seconds one bridge call costs with R doing nothing: a JSON string in, the same string out."""
    from candle_mbo.search.mbo import _start_r

    robjects = _start_r()
    echo = robjects.r("function(text) text")
    payload = json.dumps([{"id": i, "x": {"x1": 0.123456789012345, "act": "relu"}, "y": 0.5} for i in range(20)])
    start = time.perf_counter()
    for _ in range(calls):
        json.loads(str(echo(payload)[0]))
    return (time.perf_counter() - start) / calls


def bridge(rounds, repeats):
    """Both sides do identical R work (same seeds, same y); they alternate ``repeats`` times, each in a
    fresh process, and the medians of the rounds are compared (the first round of each process, which
    loads code, is left out)."""
    rows, data = [], []
    for name in ("numeric", "mixed"):
        opts = settings("mlrmbo")
        py, rs, pair_ratios = [], [], []
        for _ in range(repeats):
            r_times = r_rounds(SPACES[name], opts, 12, rounds, 5)[1:]
            py_times = py_rounds_subprocess(SPACES[name], opts, rounds)[1:]
            pair_ratios.append(statistics.median(py_times) / statistics.median(r_times) - 1)
            rs += r_times
            py += py_times
        py_median, r_median = statistics.median(py), statistics.median(rs)
        rows.append([name, len(py), "%.3f" % r_median, "%.3f" % py_median,
                     "%+.1f%%" % (100 * (py_median / r_median - 1)),
                     "%+.1f%% .. %+.1f%%" % (100 * min(pair_ratios), 100 * max(pair_ratios))])
        data.append({"space": name, "rscript_s": rs, "rpy2_s": py, "pair_ratios": pair_ratios})
    text = table(["space", "rounds each", "Rscript s/round (median)", "rpy2 bridge s/round (median)",
                  "bridge adds", "range over the %d pairs" % repeats], rows)
    overhead = call_overhead()
    text += ("\n\nOne bridge call with R doing nothing (a 2 KB JSON string in and out, parsed in Python): "
             "%.0f us; a propose+tell round makes 2 calls." % (overhead * 1e6))
    save("bridge_overhead", {"machine": machine(), "rows": data, "call_overhead_s": overhead},
         "rpy2 bridge vs Rscript, same propose+tell calls after a 12-point design, alternated %d times (%s)\n\n%s"
         % (repeats, machine(), text))


def curve(sizes, pending=7):
    """Sync proposals (one point, nothing running) and async ones (one point while ``pending`` others run,
    with the default believer lie: one more surrogate fit)."""
    script = os.path.join(ROOT, "bench", "proposal_curve.R")
    rows, data = [], []
    cases = [("km", "numeric", "mlrmbo", "sync"), ("km", "numeric", "fast", "sync"), ("km", "numeric", "fast", "async"),
             ("rf", "mixed", "mlrmbo", "sync"), ("rf", "mixed", "fast", "sync"), ("rf", "mixed", "fast", "async")]
    for learner, space, profile, mode in cases:
        opts = settings(profile, learner, mode)
        opts["lie"] = "believer"
        command = ["Rscript", script, SPACES[space], json.dumps(opts), ",".join(map(str, sizes))]
        if mode == "async":
            command.append(str(pending))
        out = subprocess.run(command, capture_output=True, text=True, env=ENV, check=True, timeout=7200)
        seconds = json.loads(out.stdout.strip().splitlines()[-1])
        label = mode if mode == "sync" else "async, %d running" % pending
        rows.append([learner, space, profile, label] + ["%.2f" % s for s in seconds])
        data.append({"learner": learner, "space": space, "profile": profile, "mode": mode, "sizes": sizes,
                     "seconds": seconds})
    text = table(["learner", "space", "profile", "proposal"] + ["%d evals" % n for n in sizes], rows)
    save("proposal_curve", {"machine": machine(), "rows": data},
         "Seconds for one proposal (fit + infill search) as evaluations grow (%s)\n\n%s" % (machine(), text))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200, 400])
    parser.add_argument("--skip-curve", action="store_true")
    args = parser.parse_args()
    bridge(args.rounds, args.repeats)
    if not args.skip_curve:
        curve(args.sizes)


if __name__ == "__main__":
    main()
