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
    return ((point_id * 37) % 101) / 101


def python_rounds(space, opts, n, rounds, seed):
    from candle_mbo.mbo import MBOOptimizer

    optimizer = MBOOptimizer(space, opts)
    design = optimizer.initial_design(n, seed)
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


def bridge(rounds):
    rows, data = [], []
    for name in ("numeric", "mixed"):
        opts = settings("mlrmbo")
        # Python first in a fresh interpreter so that both sides start cold; the same seed: same work
        code = ("import sys, json; sys.path.insert(0, %r); from bridge_bench import python_rounds; "
                "print(json.dumps(python_rounds(%r, %r, 12, %d, 5)))" % (os.path.join(ROOT, "bench"), SPACES[name],
                                                                        opts, rounds))
        py = json.loads(subprocess.run([os.sys.executable, "-c", code], capture_output=True, text=True, env=ENV,
                                       check=True, timeout=3600).stdout.strip().splitlines()[-1])
        rs = r_rounds(SPACES[name], opts, 12, rounds, 5)
        # the first round includes one-time costs (model code loading); compare the steady rounds
        py_mean, r_mean = statistics.mean(py[1:]), statistics.mean(rs[1:])
        rows.append([name, "%.3f" % r_mean, "%.3f" % py_mean, "%+.1f%%" % (100 * (py_mean / r_mean - 1))])
        data.append({"space": name, "rscript_s": rs, "rpy2_s": py})
    text = table(["space", "Rscript s/round", "rpy2 bridge s/round", "bridge adds"], rows)
    save("bridge_overhead", {"machine": machine(), "rows": data},
         "rpy2 bridge vs Rscript, same calls, %d propose+tell rounds after a 12-point design (%s)\n\n%s"
         % (rounds, machine(), text))


def curve(sizes):
    script = os.path.join(ROOT, "bench", "proposal_curve.R")
    rows, data = [], []
    for learner, space in (("km", "numeric"), ("rf", "mixed")):
        for profile in ("mlrmbo", "fast"):
            out = subprocess.run(["Rscript", script, SPACES[space], json.dumps(settings(profile, learner)),
                                  ",".join(map(str, sizes))], capture_output=True, text=True, env=ENV, check=True,
                                 timeout=7200)
            seconds = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append([learner, space, profile] + ["%.2f" % s for s in seconds])
            data.append({"learner": learner, "space": space, "profile": profile, "sizes": sizes, "seconds": seconds})
    text = table(["learner", "space", "profile"] + ["%d evals" % n for n in sizes], rows)
    save("proposal_curve", {"machine": machine(), "rows": data},
         "Seconds for one proposal (fit + infill search) as evaluations grow (%s)\n\n%s" % (machine(), text))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200, 400])
    parser.add_argument("--skip-curve", action="store_true")
    args = parser.parse_args()
    bridge(args.rounds)
    if not args.skip_curve:
        curve(args.sizes)


if __name__ == "__main__":
    main()
