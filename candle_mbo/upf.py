"""UPF workflow: run a fixed list of parameter sets over the worker pool.

    mpiexec -n 4 python -m candle_mbo.upf --model examples/digits/digits_baseline.py --upf upf/digits.upf

A UPF file (CANDLE Supervisor's format) holds one JSON object per line; blank lines and lines starting
with '#' are skipped. ``"id"`` names the run (default ``line-<lineno>``); the other keys overwrite the
benchmark's defaults for that run. The whole file is validated before anything runs.
"""

import json
import logging
import os
import sys
import time

from . import cli, workflow
from .errors import UsageError
from .progress import Progress
from .store import check_run_id

log = logging.getLogger("candle_mbo")

EXAMPLE = """example:
  mpiexec -n 4 python -m candle_mbo.upf --model examples/digits/digits_baseline.py --upf upf/digits.upf
  python -m candle_mbo.upf --model examples/quadratic/quadratic_baseline.py --upf upf/quadratic.upf --output out/q1
  python -m candle_mbo.upf --output out/q1 --resume ...      (same command plus --resume after an interruption)

UPF file: one JSON object per line, e.g.
  {"id": "lr-small", "learning_rate": 0.001, "epochs": 5}
  {"id": "lr-large", "learning_rate": 0.1, "dense": "50 50 1"}
exit codes: 0 every line has a result (failed runs included), 2 bad input (nothing ran), 1 unexpected error.
"""


class UpfLine:
    __slots__ = ("lineno", "run_id", "params")

    def __init__(self, lineno, run_id, params):
        self.lineno = lineno
        self.run_id = run_id
        self.params = params


def read_upf(path):
    """Parse and validate a whole UPF file; raise UsageError ``FILE:LINE: ...`` at the first problem."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise UsageError("--upf %s: file not found" % path) from None
    except IsADirectoryError:
        raise UsageError("--upf %s is a directory, not a UPF file" % path) from None
    except UnicodeDecodeError as exc:
        raise UsageError("%s: not UTF-8 text (%s)" % (path, exc)) from None
    lines, seen = [], {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            value = json.loads(stripped, parse_constant=_refuse_constant)
        except json.JSONDecodeError as exc:
            raise UsageError("%s:%d: invalid JSON: %s (column %d)" % (path, lineno, exc.msg, exc.colno)) from None
        except ValueError as exc:
            raise UsageError("%s:%d: %s" % (path, lineno, exc)) from None
        if not isinstance(value, dict):
            raise UsageError("%s:%d: expected a JSON object like {\"id\": \"run1\", \"epochs\": 5}, got %s"
                             % (path, lineno, type(value).__name__))
        params = dict(value)
        run_id = params.pop("id", "line-%d" % lineno)
        if not isinstance(run_id, str):
            if isinstance(run_id, int) and not isinstance(run_id, bool):
                run_id = str(run_id)
            else:
                raise UsageError("%s:%d: \"id\" must be a string, got %r" % (path, lineno, run_id))
        problem = check_run_id(run_id)
        if problem:
            raise UsageError("%s:%d: %s" % (path, lineno, problem))
        if run_id in seen:
            raise UsageError("%s:%d: duplicate id %r (first used on line %d)" % (path, lineno, run_id, seen[run_id]))
        seen[run_id] = lineno
        lines.append(UpfLine(lineno, run_id, params))
    if not lines:
        raise UsageError("%s: no parameter sets (the file is empty or only comments)" % path)
    return lines


def _refuse_constant(name):
    raise ValueError("%s is not allowed in a UPF file (use a number or a string)" % name)


def build_parser():
    parser = cli.ArgumentParser(
        prog="python -m candle_mbo.upf", description=__doc__.split("\n\n")[0],
        epilog=EXAMPLE, formatter_class=lambda prog: cli.argparse.RawDescriptionHelpFormatter(prog, width=100))
    parser.add_argument("--upf", metavar="FILE", help="the UPF file: one JSON object of parameters per line")
    cli.add_common_arguments(parser)
    return parser


def run(args, pool, context):
    """The UPF workflow on rank 0 (see the module docstring). Returns the exit code."""
    experiment = workflow.experiment_for(args)
    if args.resume:
        workflow.fill_from_experiment(args, experiment, "upf", build_parser)
    cli.require(args, "model", "upf")
    lines = read_upf(args.upf)
    if experiment is not None:
        experiment.check()
    description = workflow.check_model(args, require_objective=False)
    names = {name for line in lines for name in line.params}
    workflow.warn_unknown_parameters(names, description, args.upf)

    settings = {"kind": "upf", "entry": "candle_mbo.upf", "model": args.model, "upf": os.path.abspath(args.upf),
                "default_model": args.default_model, "objective": args.objective, "reduction": args.reduction,
                "timeout": args.timeout, "isolation": args.isolation, "memory_limit": args.memory_limit,
                "no_run_dirs": bool(args.no_run_dirs),
                "threads_per_worker": args.threads_per_worker, "gpus_per_worker": args.gpus_per_worker,
                "workers": pool.n_workers}
    columns = []
    for line in lines:
        columns += [k for k in line.params if k not in columns]
    experiment = workflow.open_experiment(args, experiment, settings, identity=("kind", "model"),
                                          param_columns=columns)
    context["error_dir"] = experiment.file("logs")
    done = experiment.finished_ids
    by_id = {line.run_id: line for line in lines}
    stale = sorted(done - set(by_id))
    if stale:
        log.warning("warning: %d recorded run%s not in %s (kept): %s", len(stale), "s" if len(stale) > 1 else "",
                    args.upf, ", ".join(stale[:10]))
    todo = [line for line in lines if line.run_id not in done]
    log.info("UPF %s: %d parameter sets, %d to run, %d already done; %d worker%s; results in %s",
             args.upf, len(lines), len(todo), len(lines) - len(todo), pool.n_workers,
             "" if pool.n_workers == 1 else "s", experiment.path)
    if pool.n_workers > len(todo) > 0:
        log.info("note: %d workers for %d runs; %d will stay idle", pool.n_workers, len(todo),
                 pool.n_workers - len(todo))

    start = time.time()
    progress = Progress(total=len(lines), objective_name=args.objective, done=len(lines) - len(todo),
                        quiet=args.quiet)
    progress.seed([r for r in experiment.records if r["run_id"] in by_id])
    try:
        if todo:
            pool.start(workflow.worker_settings(args, experiment, require_objective=False))
            for line in todo:
                pool.submit({"run_id": line.run_id, "params": line.params,
                             "run_dir": workflow.run_dir(args, experiment, line.run_id)})
            while pool.pending:
                for record in pool.poll(timeout=1.0):
                    workflow.record_result(experiment, progress, workflow.finish_record(record))
            pool.close()
        wall = time.time() - start
        records = [r for r in experiment.records if r["run_id"] in by_id]
        for text in workflow.summary(records, args.objective, False, start, wall, pool.n_workers,
                                     experiment.path, logs=workflow.run_logs(args)):
            log.info(text)
    finally:
        experiment.close()
    workflow.render_report(experiment, args)
    return 0


def main(argv=None):
    return cli.main(build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
