"""Early discarding: the same best model for a fraction of the training?

    python bench/early_discarding_bench.py [--seeds 5] [--problems curves digits] [--methods ...]

Side by side in one run, at equal numbers of configurations (the budget; one search at equal epochs), on
  (a) ``digits``: the bundled PyTorch digits example, 12 epochs a run (epochs are the fidelity);
  (b) ``curves``: bench/models/curves.py, 27 epochs a run, whose slow learners end best (its later epochs
      reorder the early rankings: early discarding is tempted to throw the best configurations away);
these searches:
  - candle_mbo without pruning, with ``--prune asha`` (R=1, eta=3; rungs 1, 3, 9), with ``--prune median``
    (both telling the surrogate a pruned run's rung value adjusted by the typical later change of the runs
    that went on, the default), and asha telling it the pruned run's last value instead (``asha, last
    value``: CANDLE_MBO_PRUNED_VALUE=last);
  - ``asha, 40% epochs``: what early discarding is for, the freed epochs spent on new configurations:
    ``--prune asha --epoch-budget E`` with E = 40% of the unpruned search's epochs and 4 times the budget
    of configurations (the search ends at E epochs);
  - Optuna's TPE with its HyperbandPruner (min resource 1, reduction factor 3), the same model code
    reporting through the same epoch channel (trial.report / should_prune).
candle_mbo runs through the real workflow (mpiexec, ``--workers`` workers, async mode); Optuna runs its
trials one after another in this process (the epoch channel of a process serves one run at a time).

Printed per problem and search, over seeds: best final val_loss of the runs that trained to the end
(median, range), epochs trained (median) as a share of the unpruned search, and wall time (median).
"""

import argparse
import os
import statistics
import sys
import time

from common import ENV, ROOT, fresh_dir, machine, mpi_command, records, run, save, table

PROBLEMS = {
    "digits": {"model": os.path.join(ROOT, "examples", "digits", "digits_baseline.py"),
               "space": os.path.join(ROOT, "examples", "digits", "space.R"), "budget": 30, "epochs": 12,
               "defaults": None},
    "curves": {"model": os.path.join(ROOT, "bench", "models", "curves.py"),
               "space": os.path.join(ROOT, "bench", "spaces", "curves.R"), "budget": 40, "epochs": 27,
               "defaults": "[Global_Params]\nepochs = 27\nepoch_s = 0.01\n"},
}
METHODS = ("no pruning", "asha", "median", "asha, last value", "asha, 40% epochs", "Optuna TPE+Hyperband")
EPOCH_SHARE = 0.4  # "asha, 40% epochs": the freed epochs spent on more configurations, up to this share


def candle_mbo_search(problem, method, seed, workers):
    spec = PROBLEMS[problem]
    out = fresh_dir("/tmp/candle-mbo-early")
    args = ["-m", "candle_mbo", "--model", spec["model"], "--space", spec["space"], "--budget", spec["budget"],
            "--seed", seed, "--output", out, "--quiet", "--no-report", "--mode", "async"]
    defaults = spec["defaults"] or open(os.path.join(ROOT, "examples", "digits", "digits_params.txt")).read()
    path = "/tmp/candle-mbo-early-defaults.txt"
    with open(path, "w") as handle:
        handle.write(defaults.replace("epochs = 8", "epochs = %d" % spec["epochs"]))
    args += ["--default-model", path]
    env = dict(ENV)
    if method != "no pruning":
        args += ["--prune", method.split()[0].rstrip(",")]
    if method == "asha, last value":
        env["CANDLE_MBO_PRUNED_VALUE"] = "last"
    if method == "asha, 40% epochs":  # as a user with an allocation would: an epoch budget, more configurations
        budget = spec["budget"] * 4
        args[args.index("--budget") + 1] = budget
        args += ["--epoch-budget", int(EPOCH_SHARE * spec["budget"] * spec["epochs"])]
    start = time.time()
    run(mpi_command(workers + 1, args), timeout=7200, env=env)
    wall = time.time() - start
    done = records(out)
    finals = [r["objective"] for r in done if r["status"] == "ok"]
    epochs = sum(r.get("epochs") or 0 for r in done)
    return min(finals), epochs, wall, len(done)


def optuna_search(problem, seed):
    import optuna

    from candle_mbo import epochs as channel

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = PROBLEMS[problem]
    module = _load(problem)
    saved_argv, sys.argv = sys.argv, [spec["model"]]
    base = module.initialize_parameters()
    sys.argv = saved_argv
    base["epochs"] = spec["epochs"]
    if problem == "curves":
        base["epoch_s"] = 0.01
    trained = [0]

    def objective(trial):
        params = dict(base, output_dir="/tmp/candle-mbo-early-optuna")
        os.makedirs(params["output_dir"], exist_ok=True)
        if problem == "digits":
            params["learning_rate"] = 10 ** trial.suggest_float("log_lr", -3.5, -1)
            params["hidden"] = [int(u) for u in trial.suggest_categorical(
                "hidden", ["32", "64", "128", "64 32", "128 64"]).split()]
            params["activation"] = trial.suggest_categorical("activation", ["relu", "tanh", "elu"])
            params["optimizer"] = trial.suggest_categorical("optimizer", ["adam", "sgd", "rmsprop"])
            params["batch_size"] = trial.suggest_categorical("batch_size", [32, 64, 128])
            params["deep_dropout"] = trial.suggest_categorical("deep_dropout", [True, False])
            if params["deep_dropout"]:
                params["dropout"] = trial.suggest_float("dropout", 0, 0.5)
        else:
            params["x1"] = trial.suggest_float("x1", 0, 1)
            params["x2"] = trial.suggest_float("x2", 0, 1)

        def send(report, wait):  # the same channel the runner opens, answered by Optuna's pruner
            value = report["metrics"].get("val_loss")
            trained[0] += 1
            if value is None:
                return None
            trial.report(float(value), int(report["epoch"]))
            return {"stop": trial.should_prune()}

        with channel.open_channel("trial-%d" % trial.number, "val_loss", send, wait=True):
            try:
                history = module.run(params)
            except channel.RunPruned:
                raise optuna.TrialPruned() from None
        return history.history["val_loss"][-1] if hasattr(history, "history") else history["val_loss"][-1]

    pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=spec["epochs"], reduction_factor=3)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner)
    start = time.time()
    devnull = open(os.devnull, "w")
    saved = sys.stdout
    sys.stdout = devnull  # the digits model prints a line per run
    try:
        study.optimize(objective, n_trials=spec["budget"])
    finally:
        sys.stdout = saved
    complete = [t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return min(complete), trained[0], time.time() - start, len(study.trials)


def _load(problem):
    import importlib

    folder = os.path.dirname(PROBLEMS[problem]["model"])
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(os.path.splitext(os.path.basename(PROBLEMS[problem]["model"]))[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--problems", nargs="+", default=["curves", "digits"], choices=list(PROBLEMS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = parser.parse_args()
    results = {}
    for problem in args.problems:
        for method in args.methods:
            for seed in range(1, args.seeds + 1):
                if method.startswith("Optuna"):
                    best, epochs, wall, n = optuna_search(problem, seed)
                else:
                    best, epochs, wall, n = candle_mbo_search(problem, method, seed, args.workers)
                results.setdefault(problem, {}).setdefault(method, []).append(
                    {"best": best, "epochs": epochs, "wall": wall, "runs": n})
                print("%-7s %-21s seed %d: best %.4f, %d epochs, %.0f s (%d runs)" % (problem, method, seed, best,
                                                                                     epochs, wall, n), flush=True)
    rows, checks = [], []
    for problem, by_method in results.items():
        full = statistics.median(r["epochs"] for r in by_method.get("no pruning", [])) if "no pruning" in by_method \
            else PROBLEMS[problem]["budget"] * PROBLEMS[problem]["epochs"]
        unpruned = sorted(r["best"] for r in by_method.get("no pruning", []))
        for method, runs in by_method.items():
            bests = sorted(r["best"] for r in runs)
            epochs = statistics.median(r["epochs"] for r in runs)
            rows.append([problem, method, "%.4f" % statistics.median(bests), "%.4f .. %.4f" % (bests[0], bests[-1]),
                         "%.0f (%.0f%%)" % (epochs, 100.0 * epochs / full), "%.0f s" % statistics.median(
                             r["wall"] for r in runs)])
            if unpruned and method != "no pruning":
                within = statistics.median(bests) <= unpruned[-1]  # inside the unpruned seeds' range
                checks.append("%s, %s: median best %.4f vs unpruned median %.4f (range %.4f .. %.4f): %s; "
                              "epochs %.0f%% of unpruned" % (problem, method, statistics.median(bests),
                                                             statistics.median(unpruned), unpruned[0], unpruned[-1],
                                                             "within the unpruned range" if within else "worse",
                                                             100.0 * epochs / full))
    text = table(["problem", "search", "median best final val_loss", "range over seeds", "epochs (share)",
                  "median wall"], rows)
    text += "\n\n" + "\n".join(checks)
    save("early_discarding", {"machine": machine(), "seeds": args.seeds, "workers": args.workers,
                              "results": results},
         "Early discarding at equal configurations, %d seeds, %d workers (%s)\n\n%s"
         % (args.seeds, args.workers, machine(), text))


if __name__ == "__main__":
    main()
