"""HPO workflow: mlrMBO proposes, the worker pool evaluates, results go back to mlrMBO.

    mpiexec -n 8 python -m candle_mbo --model examples/digits/digits_baseline.py --space examples/digits/space.R

Rank 0 runs this loop and, on a dedicated thread, the optimizer (R through rpy2): the dispatch of runs
and the collection of results never wait for R except where the mode requires it.

Modes:
- ``sync``: design, then batches of ``--propose-points`` proposals; a batch is evaluated completely
  and fed back before the next is proposed (CANDLE Supervisor's scheme; with ``--seed`` the proposals
  equal plain ``mlrMBO::mbo()``).
- ``async``: a worker that frees gets the next proposal at once; proposals are computed ahead while
  runs go on, and take the running points into account (kriging believer), see R/candle_mbo.R.

The budget counts every evaluation, design included, and is met exactly.
"""

import collections
import concurrent.futures
import json
import logging
import math
import os
import random
import sys
import time

from . import cli, workflow
from ._fileio import write_json_atomic
from .errors import UsageError
from .mbo import CRITS, LEARNERS, LIES, PROFILES
from .progress import Progress, format_objective
from .status import OK

log = logging.getLogger("candle_mbo")

EXAMPLE = """example (the bundled PyTorch digits benchmark, 2 workers, 24 evaluations):
  mpiexec -n 3 python -m candle_mbo --model examples/digits/digits_baseline.py \\
      --space examples/digits/space.R --budget 24 --seed 1 --output experiments/digits1
  python -m candle_mbo --output experiments/digits1 --resume      (continue after an interruption)

space.R defines `param.set` with ParamHelpers, e.g.
  param.set <- makeParamSet(
    makeNumericParam("learning_rate", lower = -4, upper = -1, trafo = function(x) 10^x),
    makeDiscreteParam("activation", values = c("relu", "tanh")))
exit codes: 0 finished (failed runs are results), 2 bad input (nothing ran), 1 unexpected error.
"""

# Settings a resumed experiment must keep.
IDENTITY = ("kind", "model", "space", "objective", "reduction", "maximize", "optimizer", "learner", "crit",
            "profile", "mode", "seed", "design_size")


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
    group.add_argument("--crit", choices=CRITS, default="default",
                       help="infill criterion (default: mlrMBO's, confidence bound 'cb'); others: ei, aei, "
                            "eqi, adacb, mr, se (batches of non-cb criteria use the constant liar)")
    group.add_argument("--profile", choices=PROFILES,
                       help="surrogate/infill effort: mlrmbo (mlrMBO's defaults; default in sync mode) or fast "
                            "(100 trees, smaller infill search; default in async mode)")
    group.add_argument("--lie", choices=LIES, default="believer",
                       help="async: the objective assumed for running points: the surrogate's prediction "
                            "(believer, default), the best, mean or worst value so far (constant liar), or "
                            "none (ignore them)")
    group.add_argument("--maximize", action="store_true", help="maximize the objective (e.g. val_acc)")
    group.add_argument("--seed", type=int, metavar="S",
                       help="seed of R before the design and every proposal (default: drawn and recorded)")
    cli.add_common_arguments(parser)
    return parser


class OptimizerThread:
    """Runs every optimizer call on one dedicated thread (R is single-threaded; rpy2 releases the GIL)."""

    def __init__(self):
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="optimizer")

    def submit(self, fn, *args):
        return self.executor.submit(fn, *args)

    def call(self, fn, *args):
        return self.submit(fn, *args).result()

    def close(self):
        self.executor.shutdown(wait=True)


def _make_optimizer(args, settings):
    from .mbo import MBOOptimizer

    return MBOOptimizer(args.space, settings)


def _default_design(args, space, n_workers):
    return max(min(n_workers, args.budget or n_workers), 2 * space["dims"], space["max_levels"])


class Point:
    """A point the workflow evaluates: a proposal (or a design point re-run after a resume)."""

    __slots__ = ("run_id", "proposal", "x", "params", "prop_type", "iteration", "info")

    def __init__(self, run_id, proposal, iteration, x=None, params=None, prop_type=None, info=None):
        self.run_id = run_id
        self.proposal = proposal
        self.x = x if x is not None else proposal.x
        self.params = params if params is not None else proposal.params
        self.prop_type = prop_type or proposal.prop_type
        self.iteration = iteration
        self.info = info if info is not None else (proposal.info if proposal else {})

    @property
    def handle(self):
        """What the optimizer is told about: its own proposal, or the raw point after a resume."""
        return self.proposal if self.proposal is not None else self.x


class Search:
    """State of one HPO run on rank 0: experiment, pool, optimizer thread, budget and counters."""

    def __init__(self, args, pool, experiment, opt_thread, optimizer, settings):
        self.args = args
        self.pool = pool
        self.experiment = experiment
        self.thread = opt_thread
        self.opt = optimizer
        self.settings = settings
        self.budget = settings["budget"]
        self.seed = settings["seed"]
        self.minimize = not args.maximize
        self.points = {}  # run_id -> Point, for points submitted and not finished
        self.next_number = 1
        self.start = time.time()
        self.best = None
        records = experiment.records
        for record in records:
            number = _run_number(record["run_id"])
            if number:
                self.next_number = max(self.next_number, number + 1)
        self.progress = Progress(total=self.budget, objective_name=args.objective, maximize=args.maximize,
                                 done=len(records), quiet=args.quiet)
        self.progress.seed(records)
        self.resumed = bool(records)
        self.design_ids = set()
        self._tells = []
        for record in records:
            self._track_best(record)

    # -- bookkeeping -----------------------------------------------------------------------------
    @property
    def done(self):
        return len(self.experiment.records)

    def new_run_id(self):
        """The next free ``run-NNNN`` (never one recorded, pending, or of the recorded design)."""
        taken = self.experiment.finished_ids
        while True:
            run_id = "run-%04d" % self.next_number
            self.next_number += 1
            if run_id not in taken and run_id not in self.points and run_id not in self.design_ids:
                return run_id

    def stopping(self, iteration=None):
        """True once --max-time or --iterations says: no new proposals."""
        if self.args.max_time and time.time() - self.start >= self.args.max_time:
            return True
        if self.args.iterations and iteration is not None and iteration > self.args.iterations:
            return True
        return False

    def submit(self, point):
        self.points[point.run_id] = point
        self.pool.submit({"run_id": point.run_id, "params": point.params,
                          "run_dir": workflow.run_dir(self.args, self.experiment, point.run_id)})

    def collect(self, timeout):
        """Record finished runs; return ``[(Point, y or None)]`` for the optimizer."""
        told = []
        for result in self.pool.poll(timeout=timeout):
            point = self.points.pop(result["run_id"])
            extra = {"iteration": point.iteration, "prop_type": point.prop_type}
            record = workflow.finish_record(result, extra)
            record["x"] = point.x
            if point.info:
                record["proposal"] = point.info
            workflow.record_result(self.experiment, self.progress, record)
            self._track_best(record)
            told.append((point, objective_for_optimizer(record)))
        return told

    def _track_best(self, record):
        value = objective_for_optimizer(record)
        if value is None:
            return
        if self.best is None or (value < self.best["objective"] if self.minimize else value > self.best["objective"]):
            self.best = {"run_id": record["run_id"], "objective": value, "params": record.get("params", {})}
            write_json_atomic(self.experiment.file("best.json"), self.best)

    def tell(self, told):
        if told:
            values = self.thread.call(self.opt.tell, [(p.handle, y) for p, y in told])
            self._log_optimizer_messages()
            return values
        return []

    def _log_optimizer_messages(self):
        for message in self.thread.call(self.opt.messages):
            log.warning("optimizer: %s", message)

    # -- phases ----------------------------------------------------------------------------------
    def design_points(self, n):
        """The initial design: new, or (resume) the recorded design's points that have no result yet."""
        path = self.experiment.file("design.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                design = json.load(handle)
            self.design_ids = {d["run_id"] for d in design}
            finished = self.experiment.finished_ids
            return [Point(d["run_id"], None, 0, x=d["x"], params=d["params"], prop_type="initdesign", info={})
                    for d in design if d["run_id"] not in finished]
        proposals = self.thread.call(self.opt.initial_design, n, proposal_seed(self.seed, 0))
        points = [Point(self.new_run_id(), p, 0) for p in proposals]
        write_json_atomic(path, [{"run_id": p.run_id, "x": p.x, "params": p.params} for p in points])
        if hasattr(self.opt, "save_design"):
            self.thread.call(self.opt.save_design, proposals, self.experiment.file("design.rds"))
        return points

    def restore(self, exclude=()):
        """Give the optimizer the results of earlier runs of this experiment (resume)."""
        records = [r for r in self.experiment.records if r["run_id"] not in exclude]
        if records:
            self.thread.call(self.opt.restore, [(r["x"], objective_for_optimizer(r)) for r in records])
            self._log_optimizer_messages()

    def run_design(self):
        design = self.design_points(self.settings["design_size"])
        room = self.budget - self.done
        design = design[:max(room, 0)]
        if self.resumed:
            log.info("resume: %d finished evaluations reloaded from results.jsonl; %d design point%s to rerun, "
                     "%d evaluations to go", self.done, len(design), "" if len(design) == 1 else "s",
                     max(0, self.budget - self.done))
        elif design:
            log.info("initial design: %d point%s", len(design), "s" if len(design) > 1 else "")
        for point in design:
            self.submit(point)
        return design

    def wait_all(self, points):
        """Collect until every point of ``points`` finished; return their results in ``points``' order."""
        told = []
        while self.points:
            told += self.collect(timeout=1.0)
        order = {p.run_id: i for i, p in enumerate(points)}
        told.sort(key=lambda item: order.get(item[0].run_id, len(order)))
        return told

    def sync(self):
        design = self.run_design()
        told = self.wait_all(design)
        if self.resumed:
            self.restore()  # every finished result, the design's included
        else:
            self.tell(told)  # design order, as mbo() adds its design
        iteration = max([r.get("iteration") or 0 for r in self.experiment.records] + [0]) + 1
        while self.done < self.budget and not self.stopping(iteration):
            k = min(self.settings["propose_points"], self.budget - self.done)
            proposals = self.thread.call(self.opt.propose, k, proposal_seed(self.seed, iteration))
            self._log_optimizer_messages()
            batch = [Point(self.new_run_id(), p, iteration) for p in proposals[:k]]
            for point in batch:
                self.submit(point)
            self.tell(self.wait_all(batch))
            iteration += 1

    def asynchronous(self):
        design = self.run_design()
        if self.resumed:
            self.restore()
        told_finite = sum(1 for r in self.experiment.records if objective_for_optimizer(r) is not None)
        warmup = max(2, math.ceil(self.settings["design_size"] / 2))
        number = max([r.get("iteration") or 0 for r in self.experiment.records] + [0]) + 1
        limit = self.args.iterations * self.settings["propose_points"] if self.args.iterations else None
        ready = collections.deque()
        backlog = []
        future = None
        while True:
            while ready and self.pool.idle_workers() > 0:
                self.submit(ready.popleft())
            finished = not self.points and not ready and future is None and self._no_more(number, limit)
            if self.done >= self.budget or finished:
                break
            outstanding = len(self.points) + len(ready) + (1 if future is not None else 0)
            wanted = self.budget - self.done - outstanding
            capacity = self.pool.idle_workers() - len(ready) + 1  # one proposal computed ahead
            if future is None and wanted > 0 and capacity > 0 and not self._no_more(number, limit):
                if backlog:
                    told_finite += sum(1 for _, y in backlog if y is not None)
                    self._tell_later(backlog)
                    backlog = []
                propose = self.opt.propose if told_finite >= warmup else self.opt.random_points
                future = self.thread.submit(propose, 1, proposal_seed(self.seed, number))
                future.number = number
                number += 1
            backlog += self.collect(timeout=0.02 if future is not None else 0.5)
            self._check_tells()
            if future is not None and future.done():
                for proposal in future.result():
                    ready.append(Point(self.new_run_id(), proposal, future.number))
                future = None
                self._log_optimizer_messages()
        self._check_tells(wait=True)
        self.tell(backlog)

    def _tell_later(self, told):
        """Queue a tell on the optimizer thread; it runs before the next proposal (FIFO)."""
        self._tells.append(self.thread.submit(self.opt.tell, [(p.handle, y) for p, y in told]))

    def _check_tells(self, wait=False):
        """Surface errors of queued tells (a broken optimizer must stop the search, not hide)."""
        pending = []
        for future in self._tells:
            if wait or future.done():
                future.result()
            else:
                pending.append(future)
        self._tells = pending

    def _no_more(self, number, limit):
        return self.stopping() or (limit is not None and number > limit)


def proposal_seed(seed, index):
    """R's seed for step ``index`` of a search seeded with ``seed`` (0: the design; i: proposal batch i).

    Spread out so that searches with nearby seeds never share a random stream (``seed + i`` would: seed
    1's third batch would draw what seed 4's design draws). R/mbo_reference.R uses the same formula.
    """
    return (int(seed) * 10007 + int(index)) % 2147483647


def objective_for_optimizer(record):
    """The value the optimizer learns from: the objective of an ok run, None for anything else."""
    value = record.get("objective")
    if record.get("status") == OK and isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def _run_number(run_id):
    if isinstance(run_id, str) and run_id.startswith("run-") and run_id[4:].isdigit():
        return int(run_id[4:])
    return None


def run(args, pool, context):
    """The HPO workflow on rank 0 (see the module docstring). Returns the exit code."""
    experiment = workflow.experiment_for(args)
    if args.resume:
        workflow.fill_from_experiment(args, experiment, "hpo", build_parser)
    cli.require(args, "model", "space")
    if not os.path.isfile(args.space):
        raise UsageError("--space %s: file not found" % args.space)
    args.space = os.path.abspath(args.space)
    if experiment is not None:
        experiment.check()
    profile = args.profile or ("fast" if args.mode == "async" else "mlrmbo")
    n_workers = pool.n_workers
    propose_points = args.propose_points or n_workers
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2 ** 31 - 1)
    opt_settings = {"propose_points": propose_points, "learner": args.learner, "crit": args.crit,
                    "profile": profile, "maximize": bool(args.maximize), "mode": args.mode, "lie": args.lie,
                    "random_lambda": args.mode == "async"}

    thread = OptimizerThread()
    try:
        optimizer_future = thread.submit(_make_optimizer, args, opt_settings)
        description = workflow.check_model(args, require_objective=True)
        optimizer = optimizer_future.result()
        space = optimizer.space
        workflow.warn_unknown_parameters(space["ids"], description, args.space)
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
        if n_workers > budget:
            log.info("note: %d workers for a budget of %d evaluations; %d will stay idle", n_workers, budget,
                     n_workers - budget)
        settings = {"kind": "hpo", "entry": "candle_mbo", "model": args.model, "space": args.space,
                    "default_model": args.default_model, "objective": args.objective, "reduction": args.reduction,
                    "maximize": bool(args.maximize), "optimizer": args.optimizer, "learner": args.learner,
                    "crit": args.crit, "profile": profile, "mode": args.mode, "lie": args.lie, "seed": seed,
                    "budget": budget, "design_size": design_size, "propose_points": propose_points,
                    "iterations": args.iterations, "max_time": args.max_time, "timeout": args.timeout,
                    "isolation": args.isolation, "memory_limit": args.memory_limit,
                    "no_run_dirs": bool(args.no_run_dirs),
                    "threads_per_worker": args.threads_per_worker, "gpus_per_worker": args.gpus_per_worker,
                    "workers": n_workers, "r_packages": thread.call(optimizer.versions)}
        if args.optimizer == "random":
            optimizer.propose = optimizer.random_points
        experiment = workflow.open_experiment(args, experiment, settings, IDENTITY,
                                              param_columns=space["ids"], extra_columns=("iteration", "prop_type"))
        context["error_dir"] = experiment.file("logs")
        write_json_atomic(experiment.file("mbo_settings.json"),
                          dict(opt_settings, space=args.space, seed=seed, budget=budget, design_size=design_size))
        log.info("HPO of %s over %s: budget %d (design %d), %s mode, %s, %d worker%s, seed %d; results in %s",
                 os.path.basename(args.model), os.path.basename(args.space), budget, design_size, args.mode,
                 "random search" if args.optimizer == "random" else "mlrMBO %s profile" % profile, n_workers,
                 "" if n_workers == 1 else "s", seed, experiment.path)
        search = Search(args, pool, experiment, thread, optimizer, settings)
        try:
            if search.done < budget:
                pool.start(workflow.worker_settings(args, experiment, require_objective=True))
                if args.mode == "sync":
                    search.sync()
                else:
                    search.asynchronous()
                pool.close()
            saved = thread.call(optimizer.save, experiment.path)
            wall = time.time() - search.start
            _final_summary(search, experiment, wall, saved)
        finally:
            experiment.close()
        workflow.render_report(experiment, args)
        return 0
    finally:
        thread.close()


def _final_summary(search, experiment, wall, saved):
    records = experiment.records
    logs = workflow.run_logs(search.args)
    for text in workflow.summary(records, search.args.objective, search.args.maximize, search.start, wall,
                                 search.pool.n_workers, experiment.path, logs=logs):
        log.info(text)
    if search.best:
        log.info("best: %s %s = %s with %s", search.best["run_id"], search.args.objective,
                 format_objective(search.best["objective"]), json.dumps(search.best["params"]))
        log.info("files: best.json, results.csv, results.jsonl%s%s",
                 ", " + os.path.basename(saved) if saved else "",
                 "" if search.args.no_run_dirs else ", runs/<run_id>/")
    else:
        log.info("no run succeeded: see %s/%s", experiment.path, logs)


def main(argv=None):
    return cli.main(build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
