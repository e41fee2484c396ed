"""HPO workflow: mlrMBO proposes, the worker pool evaluates, results go back to mlrMBO.

    mpiexec -n 8 python -m candle_mbo --model examples/digits/digits_baseline.py --space examples/digits/space.R

Rank 0 runs this loop and, on a dedicated thread, the optimizer (R through rpy2): the dispatch of runs
and the collection of results never wait for R except where the mode requires it.

Modes:
- ``sync``: design, then batches of ``--propose-points`` proposals; a batch is evaluated completely
  and fed back before the next is proposed (CANDLE Supervisor's scheme; with ``--seed`` the proposals
  equal plain ``mlrMBO::mbo()``).
- ``async``: a worker that frees gets the next proposal at once; proposals are computed ahead while
  runs go on, and take the running points into account (kriging believer), see R/cm_propose.R.

The budget counts every evaluation, design included, and is met exactly.
"""

import json
import logging
import os
import time
import random
import sys

from . import cli, job
from ._fileio import write_json_atomic
from ._trace import phase
from .errors import UsageError
from .search.masters import LocalMaster, RemoteMaster, make_optimizer, masters_rule
from .search.names import check_names
from .search.mbo import CRIT_HELP, CRITS, LEARNERS, LIES, PROFILES, TRANSFORMS, check_settings
from .reporting.progress import describe_epochs, epoch_usage, format_objective
from .search.optimizer import small_budget_note
from .core.sources import SearchSource
from .pool.transport import Backoff

log = logging.getLogger("candle_mbo")

EXAMPLE = """example (the bundled PyTorch digits benchmark, 2 workers, 24 evaluations):
  mpiexec -n 3 python -m candle_mbo --model examples/digits/digits_baseline.py \\
      --space examples/digits/space.R --budget 24 --seed 1 --output experiments/digits1
  mpiexec -n 3 python -m candle_mbo --output experiments/digits1 --resume
      (continue after an interruption, launched as the search started so that it keeps its 2 workers;
      without mpiexec it would go on with 1 worker, with a warning)

space.R defines `param.set` with ParamHelpers, e.g.
  param.set <- makeParamSet(
    makeNumericParam("learning_rate", lower = -4, upper = -1, trafo = function(x) 10^x),
    makeDiscreteParam("activation", values = c("relu", "tanh")))
exit codes (rank 0's): 0 finished (failed runs are results), 1 unexpected error, 2 bad input (nothing ran),
3 stopped early because every run failed (--max-failures), 128+N stopped by signal N (130 SIGINT: Ctrl-C
without mpiexec; 143 SIGTERM: Ctrl-C under mpiexec, or the scheduler; 138 SIGUSR1): the interrupted runs
are journaled and run again first with --resume. Open MPI's mpiexec exits 1 after Ctrl-C or SIGTERM
(rank 0's code is in results.jsonl and experiment.yaml) and passes 138 through.
"""

# Settings a resumed experiment must keep.
IDENTITY = ("kind", "model", "space", "default_model", "objective", "reduction", "maximize", "optimizer",
            "learner", "crit", "profile", "mode", "lie", "objective_transform", "seed", "design_size", "prune", "min_epochs", "eta",
            "fidelity")


def build_parser():
    parser = cli.ArgumentParser(
        prog="python -m candle_mbo", description="Hyperparameter optimization of a CANDLE benchmark with mlrMBO.",
        epilog=EXAMPLE, formatter_class=lambda prog: cli.argparse.RawDescriptionHelpFormatter(prog, width=100))
    group = parser.add_argument_group("search")
    group.add_argument("--space", metavar="SPACE.R", help="R file defining `param.set` (ParamHelpers)")
    group.add_argument("--budget", type=cli.positive_int, metavar="N",
                       help="evaluations in all, initial design included (default: design + 10 batches)")
    group.add_argument("--design-size", type=cli.positive_int, metavar="N",
                       help="initial design points (default: max(workers, 2 x dimensions, most levels of a "
                            "discrete parameter), at most the budget)")
    group.add_argument("--propose-points", type=cli.positive_int, metavar="K",
                       help="points per batch in sync mode (default: the number of workers)")
    group.add_argument("--iterations", type=cli.positive_int, metavar="N",
                       help="stop after N batches (sync) or N x propose-points proposals (async)")
    group.add_argument("--max-time", type=cli.nonnegative_float, default=0, metavar="S",
                       help="stop proposing after S seconds; running evaluations finish (default: 0, none)")
    group.add_argument("--mode", choices=("async", "sync"), default="async",
                       help="async (default): a free worker gets a new proposal at once; sync: batches")
    group.add_argument("--optimizer", choices=("mbo", "random"), default="mbo",
                       help="mbo (default): mlrMBO; random: random search over the same space (a baseline)")
    group.add_argument("--learner", choices=LEARNERS, default="default",
                       help="surrogate: default (mlrMBO's choice: kriging for numeric spaces without "
                            "requires, else random forest), rf, km, ranger")
    group.add_argument("--crit", choices=CRITS, default="default", help=CRIT_HELP)
    group.add_argument("--profile", choices=PROFILES,
                       help="surrogate/infill effort: mlrmbo (mlrMBO's defaults; default in sync mode) or fast "
                            "(100 trees, smaller infill search; default in async mode)")
    group.add_argument("--lie", choices=LIES, default="believer",
                       help="async: the objective assumed for running points: the surrogate's prediction "
                            "(believer, default), the best, mean or worst value so far (constant liar), or "
                            "none (ignore them)")
    group.add_argument("--objective-transform", choices=TRANSFORMS, default="none",
                       help="what the surrogate sees of the objective: none (default: the values, those beyond "
                            "the divergence fence capped there) or log (log10, for objectives that span decades; "
                            "a value <= 0 enters a decade below the smallest positive one). results.csv keeps "
                            "the raw values")
    group.add_argument("--seed", type=int, metavar="S",
                       help="seed of R before the design and every proposal (default: drawn and recorded)")
    group.add_argument("--masters", type=cli.positive_int, metavar="M",
                       help="optimizer ranks: ranks 0..M-1 each run mlrMBO and propose, the others work "
                            "(default: one per 256 workers, at most 8; async mode only)")
    cli.add_common_arguments(parser)
    return parser



def _default_design(args, space, n_workers):
    return max(min(n_workers, args.budget or n_workers), 2 * space["dims"], space["max_levels"])


def run(args, ranks, context):
    """The HPO workflow on rank 0 (see the module docstring). Returns the exit code."""
    experiment = job.resumable(args, "hpo", build_parser, IDENTITY)
    cli.require(args, "model", "space")
    if not os.path.isfile(args.space):
        raise UsageError("--space %s: file not found" % args.space)
    args.space = os.path.abspath(args.space)
    if experiment is not None:
        experiment.check()
    ranks.gather()
    n_masters = args.masters or (1 if args.mode == "sync" else masters_rule(ranks.size - 1))
    if n_masters > 1 and args.mode == "sync":
        raise UsageError("--masters %d: sync mode proposes each batch from one model; use --mode async for "
                         "several masters" % n_masters)
    n_masters = min(n_masters, max(1, ranks.size - 1)) if not args.masters else n_masters
    master_ranks, worker_ranks = ranks.roles(n_masters)
    phase("roles")
    n_workers = len(worker_ranks)
    profile = args.profile or ("fast" if args.mode == "async" else "mlrmbo")
    propose_points = args.propose_points or n_workers
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2 ** 31 - 1)
    opt_settings = {"propose_points": propose_points, "learner": args.learner, "crit": args.crit,
                    "profile": profile, "maximize": bool(args.maximize), "mode": args.mode, "lie": args.lie,
                    "objective_transform": args.objective_transform, "random_lambda": args.mode == "async", "optimizer": args.optimizer, "space": args.space,
                    "request_points": min(SearchSource.MAX_BATCH, max(1, n_workers))}
    if args.optimizer == "mbo":
        check_settings(opt_settings)  # before R starts: a criterion that cannot give what a request asks
    master = LocalMaster()
    master.begin(make_optimizer, opt_settings)  # R starts on its thread while the model is probed
    description = job.check_model(args, require_objective=True)
    master.ready()
    space = master.optimizer.space
    warning = check_names(space["ids"], description, args.space, args.allow_unknown_params)
    if warning:
        log.warning(warning)
    design_size = args.design_size or _default_design(args, space, n_workers)
    budget = args.budget or design_size + 10 * propose_points
    if args.design_size and args.design_size > budget:
        raise UsageError("--budget %d is smaller than --design-size %d; raise the budget or lower the design"
                         % (budget, args.design_size))
    if design_size > budget:
        raise UsageError("--budget %d is smaller than the initial design (%d points: 2 x %d dimensions, or the "
                         "%d levels of a discrete parameter); raise --budget or set --design-size"
                         % (budget, design_size, space["dims"], space["max_levels"]))
    if design_size < space["max_levels"] and args.optimizer == "mbo":
        raise UsageError("--design-size %d is smaller than the %d levels of a discrete parameter of %s: every "
                         "level must appear in the design; use at least %d"
                         % (design_size, space["max_levels"], args.space, space["max_levels"]))
    note = small_budget_note(budget, design_size) if args.optimizer == "mbo" else None
    if note:
        log.warning("warning: %s", note)
    if n_workers > budget:
        log.info("note: %d workers for a budget of %d evaluations; %d will stay idle", n_workers, budget,
                 n_workers - budget)
    evaluations = budget if not args.iterations else min(budget, design_size + args.iterations * propose_points)
    # every master searches the same budget from the same design size (warm-up, adaptive criteria)
    opt_settings.update(budget=evaluations, design_size=design_size)
    master.call(master.optimizer.set_budget, evaluations, design_size)
    opt_settings["budget"] = evaluations
    envs = job.plan_workers(ranks, worker_ranks, master_ranks, args)
    max_failures = args.max_failures if args.max_failures is not None else job.default_max_failures(n_workers)
    settings = {"kind": "hpo", "entry": "candle_mbo", "model": args.model, "space": args.space,
                "default_model": args.default_model, "objective": args.objective, "reduction": args.reduction,
                "objective_file": args.objective_file, "objective_regex": args.objective_regex,
                "workdir": args.workdir, "prune": args.prune, "min_epochs": args.min_epochs, "eta": args.eta,
                "fidelity": args.fidelity, "epoch_budget": args.epoch_budget,
                "planned_epochs": (description.get("params") or {}).get(args.fidelity),
                "maximize": bool(args.maximize), "optimizer": args.optimizer, "learner": args.learner,
                "crit": args.crit, "profile": profile, "mode": args.mode, "lie": args.lie,
                "objective_transform": args.objective_transform, "seed": seed,
                "budget": budget, "design_size": design_size, "propose_points": propose_points,
                "iterations": args.iterations, "max_time": args.max_time, "timeout": args.timeout,
                "isolation": args.isolation, "memory_limit": args.memory_limit,
                "no_run_dirs": bool(args.no_run_dirs), "threads_per_worker": args.threads_per_worker,
                "gpus_per_worker": args.gpus_per_worker, "max_failures": max_failures, "grace": args.grace,
                "max_attempts": args.max_attempts, "model_file": job.model_file(args.model),
                "masters": args.masters, "masters_used": n_masters, "workers": n_workers,
                "r_packages": master.call(master.optimizer.versions)}
    inputs = job.input_files(args, description, space=args.space)
    # No defaults for empty cells: a space parameter a run lacks is an inactive conditional one (its requires=
    # was false), and results.csv leaves it empty so that "not active" reads apart from "chose the default"
    # (run() still receives the benchmark's default).
    experiment = job.open_experiment(args, experiment, settings, inputs, param_columns=space["ids"],
                                     extra_columns=("iteration", "prop_type"))
    context["error_dir"] = experiment.file("logs")
    write_json_atomic(experiment.file("mbo_settings.json"),
                      dict(opt_settings, seed=seed, budget=budget, design_size=design_size))
    log.info("HPO of %s over %s: budget %d (design %d), %s mode, %s, %d worker%s%s, seed %d; results in %s",
             os.path.basename(args.model), os.path.basename(args.space), budget, design_size, args.mode,
             "random search" if args.optimizer == "random" else "mlrMBO %s profile" % profile, n_workers,
             "" if n_workers == 1 else "s", ", %d masters" % n_masters if n_masters > 1 else "", seed, experiment.path)
    masters = [master] + _remote_masters(ranks, master_ranks, opt_settings)
    dispatcher = None
    try:
        remaining = budget - len(experiment.records)
        if remaining > 0:
            pool = job.start_workers(ranks, worker_ranks, envs, args, experiment, True, context,
                                     await_answers=args.prune != "none")
            for remote in masters[1:]:
                pool.routes[remote.rank] = remote.handle
            source = SearchSource(masters, settings, log)
            code, dispatcher = job.dispatch(source, pool, experiment, args, settings, evaluations, ranks.launched,
                                            "candle_mbo", context, defaults=description.get("params"))
            if code >= 128:
                return code
            pool.close()
            for each in masters:  # a failed tell would otherwise go unnoticed
                each.check()
        else:
            code = 0
            for remote in masters[1:]:
                remote.close()
        saved = master.call(master.optimizer.save, experiment.path)
        job.record_end(experiment, code)
    finally:
        experiment.close()
    records = experiment.records
    extra = []
    if args.prune != "none" or args.epoch_budget:
        usage = epoch_usage(records, args.fidelity, settings["planned_epochs"])
        extra.append(describe_epochs(usage, args.epoch_budget))
        job.record_outcome(experiment, epochs=usage)
        if args.prune != "none" and not any(r.get("epochs") for r in records):
            log.warning("warning: --prune %s stopped nothing: no run reported an epoch (the model must call "
                        "ckpt_epoch, use CandleRemoteMonitor or call candle_mbo.report() after each epoch)",
                        args.prune)
    best = dispatcher.best if dispatcher else None
    if best:
        extra.append("best: %s %s = %s with %s" % (best["run_id"], args.objective, format_objective(best["objective"]),
                                                   json.dumps(best["params"])))
        extra.append("files: %sbest.json, results.csv, results.jsonl%s%s"
                     % ("" if args.no_report else "report.html, ", ", " + os.path.basename(saved) if saved else "",
                        "" if args.no_run_dirs else ", runs/<run_id>/"))
    job.finish(args, experiment, dispatcher.start if dispatcher else time.time(), records, n_workers, extra)
    return code


def _remote_masters(ranks, master_ranks, opt_settings):
    """Start the optimizer ranks; UsageError if one cannot build its optimizer."""
    remotes = {}
    for index, rank in enumerate(master_ranks, start=1):
        remotes[rank] = RemoteMaster(ranks.link, rank, index, stop=ranks.stop)
        remotes[rank].start(dict(opt_settings, master_index=index))
    phase("optimizers")
    backoff = Backoff()
    while any(r.ready is None for r in remotes.values()):
        received = ranks.link.wait(1.0, backoff)
        if received is not None and received[0] in remotes:
            remotes[received[0]].handle(received[1])
    failed = [r for r in remotes.values() if not r.ready[0]]
    if failed:
        for remote in remotes.values():
            remote.close()
        raise UsageError("optimizer rank %d: %s" % (failed[0].rank, failed[0].ready[1]))
    return list(remotes.values())


def main(argv=None):
    return cli.main(build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
