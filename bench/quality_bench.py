"""Search quality at equal budget: sync mlrMBO, async mlrMBO, random search and Optuna's TPE.

    python bench/quality_bench.py [--seeds 5] [--workers 4] [--problems branin hartmann6 digits]

Best objective after the budget, median (and range) over seeds, on Branin (budget 40), Hartmann-6
(budget 60) and the bundled PyTorch digits example (budget 30). candle_mbo's three searches run through
the real workflow (mpiexec, workers+1 ranks); Optuna's TPE (Debian's python3-optuna) runs
asynchronously with the same number of workers as threads. Branin and Hartmann-6 runs sleep 0.2-1.5 s
so that asynchronous searches really overlap.
"""

import argparse
import json
import os
import statistics
import sys
import threading
import time

from common import ROOT, fresh_dir, machine, mpi_command, records, run, save, table

SYNTHETIC = os.path.join(ROOT, "bench", "models", "synthetic.py")
DIGITS = os.path.join(ROOT, "examples", "digits", "digits_baseline.py")
PROBLEMS = {
    "branin": {"model": SYNTHETIC, "space": os.path.join(ROOT, "bench", "spaces", "branin.R"), "budget": 40,
               "defaults": "[Global_Params]\nfunction = 'branin'\nmin_s = 0.2\nmax_s = 1.5\n", "optimum": 0.397887},
    "hartmann6": {"model": SYNTHETIC, "space": os.path.join(ROOT, "bench", "spaces", "hartmann6.R"), "budget": 60,
                  "defaults": "[Global_Params]\nfunction = 'hartmann6'\nmin_s = 0.2\nmax_s = 1.5\n",
                  "optimum": -3.32237},
    "digits": {"model": DIGITS, "space": os.path.join(ROOT, "examples", "digits", "space.R"), "budget": 30,
               "defaults": None, "optimum": None},
}
METHODS = ("mlrMBO sync", "mlrMBO async", "random", "Optuna TPE")
# Alternatives to async mlrMBO's default lie for running points (believer), compared on the
# synthetic problems only (the digits runs are real training and take minutes per search).
LIE_VARIANTS = ("async lie=best", "async lie=mean", "async lie=worst", "async lie=none")


def candle_mbo_best(problem, method, seed, workers):
    spec = PROBLEMS[problem]
    out = fresh_dir("/tmp/candle-mbo-quality")
    args = ["-m", "candle_mbo", "--model", spec["model"], "--space", spec["space"], "--budget", spec["budget"],
            "--seed", seed, "--output", out, "--quiet", "--no-report"]
    if spec["defaults"]:
        path = "/tmp/candle-mbo-quality-defaults.txt"
        with open(path, "w") as handle:
            handle.write(spec["defaults"])
        args += ["--default-model", path]
    if method.startswith("async lie="):
        args += ["--mode", "async", "--lie", method.split("=", 1)[1]]
    else:
        args += {"mlrMBO sync": ["--mode", "sync"], "mlrMBO async": ["--mode", "async"],
                 "random": ["--mode", "async", "--optimizer", "random"]}[method]
    start = time.time()
    run(mpi_command(workers + 1, args), timeout=7200)
    done = records(out)
    values = [r["objective"] for r in done if r["status"] == "ok"]
    return min(values), time.time() - start, len(done)


def optuna_best(problem, seed, workers):
    import optuna

    sys.path.insert(0, os.path.join(ROOT, "bench", "models"))
    sys.path.insert(0, os.path.join(ROOT, "examples", "digits"))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = PROBLEMS[problem]
    lock = threading.Lock()
    if problem == "digits":
        import torch

        import digits_baseline

        torch.set_num_threads(1)
        saved_argv, sys.argv = sys.argv, ["digits"]
        with lock:
            base = digits_baseline.initialize_parameters()
        sys.argv = saved_argv

        def objective(trial):
            params = dict(base)
            params["learning_rate"] = 10 ** trial.suggest_float("log_lr", -3.5, -1)
            params["hidden"] = [int(u) for u in trial.suggest_categorical(
                "hidden", ["32", "64", "128", "64 32", "128 64"]).split()]
            params["activation"] = trial.suggest_categorical("activation", ["relu", "tanh", "elu"])
            params["optimizer"] = trial.suggest_categorical("optimizer", ["adam", "sgd", "rmsprop"])
            params["batch_size"] = trial.suggest_categorical("batch_size", [32, 64, 128])
            params["deep_dropout"] = trial.suggest_categorical("deep_dropout", [True, False])
            if params["deep_dropout"]:
                params["dropout"] = trial.suggest_float("dropout", 0, 0.5)
            return digits_baseline.run(params).history["val_loss"][-1]
    else:
        import synthetic

        dims = 2 if problem == "branin" else 6
        bounds = [(-5.0, 10.0), (0.0, 15.0)] if problem == "branin" else [(0.0, 1.0)] * 6

        def objective(trial):
            x = [trial.suggest_float("x%d" % (i + 1), *bounds[i]) for i in range(dims)]
            share = (x[0] - bounds[0][0]) / (bounds[0][1] - bounds[0][0])
            time.sleep(0.2 + 1.3 * (0.5 * share + 0.5 * __import__("random").random()))
            return synthetic.branin(*x) if problem == "branin" else synthetic.hartmann6(x)

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    start = time.time()
    devnull = open(os.devnull, "w")
    saved = sys.stdout
    sys.stdout = devnull  # the digits model prints a line per run
    try:
        study.optimize(objective, n_trials=spec["budget"], n_jobs=workers)
    finally:
        sys.stdout = saved
    return study.best_value, time.time() - start, len(study.trials)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS) + list(LIE_VARIANTS))
    parser.add_argument("--merge", action="store_true",
                        help="add to the results saved by an earlier run instead of replacing them")
    args = parser.parse_args()
    results = {}
    saved = os.path.join(ROOT, "bench", "results", "quality.json")
    if args.merge and os.path.exists(saved):
        with open(saved) as handle:
            results = json.load(handle)["results"]
    for problem in args.problems:
        for method in args.methods:
            if method in LIE_VARIANTS and problem == "digits":
                continue
            bests = []
            for seed in range(1, args.seeds + 1):
                if method == "Optuna TPE":
                    best, seconds, n = optuna_best(problem, seed, args.workers)
                else:
                    best, seconds, n = candle_mbo_best(problem, method, seed, args.workers)
                bests.append(best)
                print("%-9s %-13s seed %d: best %.5f in %.0f s (%d evaluations)" % (problem, method, seed, best,
                                                                                     seconds, n), flush=True)
            results.setdefault(problem, {})[method] = bests
    rows = []
    for problem, by_method in results.items():
        for method, bests in by_method.items():
            rows.append([problem, PROBLEMS[problem]["budget"], method, "%.4f" % statistics.median(bests),
                         "%.4f .. %.4f" % (min(bests), max(bests))])
    text = table(["problem", "budget", "search", "median best", "range over seeds"], rows)
    save("quality", {"machine": machine(), "seeds": args.seeds, "workers": args.workers, "results": results},
         "Best objective after the budget, %d seeds, %d workers (%s); optima: Branin 0.3979, Hartmann-6 -3.3224\n\n%s"
         % (args.seeds, args.workers, machine(), text))


if __name__ == "__main__":
    main()
