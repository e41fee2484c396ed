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

from . import cli, job
from ._trace import phase
from .errors import UsageError
from .search.names import check_names
from .core.sources import UpfSource
from .core.store import check_run_id
from .pool.runner import check_run_values

log = logging.getLogger("candle_mbo")

EXAMPLE = """example:
  mpiexec -n 4 python -m candle_mbo.upf --model examples/digits/digits_baseline.py --upf upf/digits.upf
  python -m candle_mbo.upf --model examples/quadratic/quadratic_baseline.py --upf upf/quadratic.upf --output out/q1
  python -m candle_mbo.upf --output out/q1 --resume      (after an interruption: the rest, interrupted lines first)

UPF file: one JSON object per line, e.g.
  {"id": "lr-small", "learning_rate": 0.001, "epochs": 5}
  {"id": "lr-large", "learning_rate": 0.1, "dense": "50 50 1"}
exit codes (rank 0's): 0 every line has a result (failed runs included), 1 unexpected error, 2 bad input
(nothing ran), 3 stopped early because every run failed (--max-failures), 128+N stopped by signal N (130
SIGINT: Ctrl-C without mpiexec; 143 SIGTERM: Ctrl-C under mpiexec, or the scheduler; 138 SIGUSR1). Open
MPI's mpiexec exits 1 after Ctrl-C or SIGTERM (rank 0's code is in results.jsonl and experiment.yaml).
Resume under the same mpiexec -n as the first job: with fewer ranks the rest runs on fewer workers.
"""

# Settings a resumed UPF experiment keeps.
IDENTITY = ("kind", "model", "upf", "objective", "reduction", "default_model", "maximize")


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


def check_values(lines, description, path):
    """Every line's values against the benchmark's definitions, before anything runs: a value a run would
    refuse (``"learning_rate": "0.1x"``, a choice not offered) is a UsageError ``FILE:LINE: parameter NAME =
    VALUE is not a valid TYPE value``, not a failed run later."""
    for line in lines:
        try:
            check_run_values(line.params, description, "%s:%d: parameter " % (path, line.lineno))
        except ValueError as exc:
            raise UsageError(str(exc)) from None


def _refuse_constant(name):
    raise ValueError("%s is not allowed in a UPF file (use a number or a string)" % name)


def build_parser():
    parser = cli.ArgumentParser(
        prog="python -m candle_mbo.upf", description=__doc__.split("\n\n")[0],
        epilog=EXAMPLE, formatter_class=lambda prog: cli.argparse.RawDescriptionHelpFormatter(prog, width=100))
    parser.add_argument("--upf", metavar="FILE", help="the UPF file: one JSON object of parameters per line")
    cli.add_common_arguments(parser)
    return parser


def run(args, ranks, context):
    """The UPF workflow on rank 0 (see the module docstring). Returns the exit code."""
    experiment = job.resumable(args, "upf", build_parser, IDENTITY)
    cli.require(args, "model", "upf")
    lines = read_upf(args.upf)
    args.upf = os.path.abspath(args.upf)
    if experiment is not None:
        experiment.check()
    description = job.check_model(args, require_objective=False)
    names = sorted({name for line in lines for name in line.params})
    warning = check_names(names, description, args.upf, args.allow_unknown_params)
    if warning:
        log.warning(warning)
    check_values(lines, description, args.upf)
    ignored = [flag for flag, on in (("--prune", args.prune != "none"), ("--epoch-budget", args.epoch_budget))
               if on]
    if ignored:
        log.info("note: %s ignored: a UPF file is a fixed list of runs, not a search; every line runs to its end",
                 " and ".join(ignored))
    ranks.gather()
    _, worker_ranks = ranks.roles(1)
    phase("roles")
    envs = job.plan_workers(ranks, worker_ranks, [], args)
    workers = len(worker_ranks)
    max_failures = args.max_failures if args.max_failures is not None else job.default_max_failures(workers)
    settings = {"kind": "upf", "entry": "candle_mbo.upf", "model": args.model, "upf": args.upf,
                "default_model": args.default_model, "objective": args.objective, "reduction": args.reduction,
                "objective_file": args.objective_file, "objective_regex": args.objective_regex,
                "workdir": args.workdir,
                "maximize": bool(args.maximize), "timeout": args.timeout, "isolation": args.isolation,
                "memory_limit": args.memory_limit, "no_run_dirs": bool(args.no_run_dirs),
                "threads_per_worker": args.threads_per_worker, "gpus_per_worker": args.gpus_per_worker,
                "max_failures": max_failures, "grace": args.grace, "max_attempts": args.max_attempts,
                "model_file": job.model_file(args.model), "workers": workers}
    columns = []
    for line in lines:
        columns += [k for k in line.params if k not in columns]
    inputs = job.input_files(args, description, upf=args.upf)
    source = UpfSource(lines, args.upf)
    if args.resume:  # an edited input, then an edited line whose id ran, are refused before anything changes
        job.check_pinned(args, experiment, inputs)
        source.check(job.journal_of(experiment))
    experiment = job.open_experiment(args, experiment, settings, inputs, param_columns=columns,
                                     param_defaults=description.get("params"))
    context["error_dir"] = experiment.file("logs")
    try:
        replay = experiment.replay
        ids = {line.run_id for line in lines}
        done = sum(1 for r in replay.records if r["run_id"] in ids)
        waiting = sum(1 for e in replay.unfinished if e["run_id"] in ids)
        log.info("UPF %s: %d parameter sets, %d to run%s, %d already done; %d worker%s; results in %s",
                 args.upf, len(lines), len(lines) - done, " (%d interrupted first)" % waiting if waiting else "",
                 done, workers, "" if workers == 1 else "s", experiment.path)
        _note_removed_lines(replay, ids)
        if workers > len(lines) - done > 0:
            log.info("note: %d workers for %d runs; %d will stay idle", workers, len(lines) - done,
                     workers - (len(lines) - done))
        code, start = 0, time.time()
        if len(lines) - done > 0:
            pool = job.start_workers(ranks, worker_ranks, envs, args, experiment, False, context)
            total = len(lines) + len(replay.records) - done  # the results of removed lines stay results
            code, dispatcher = job.dispatch(source, pool, experiment, args, settings, total, ranks.launched,
                                            "candle_mbo.upf", context, defaults=description.get("params"))
            if code >= 128:
                return code
            pool.close()
            start = dispatcher.start
        job.record_end(experiment, code)
    finally:
        experiment.close()
    job.finish(args, experiment, start, experiment.records, workers)
    return code


def _note_removed_lines(replay, ids):
    """Say what becomes of the lines removed from the UPF file (--accept-changed): a finished one stays a result,
    an unfinished one is not run."""
    kept = [r["run_id"] for r in replay.records if r["run_id"] not in ids]
    dropped = [e["run_id"] for e in replay.unfinished if e["run_id"] not in ids]
    if kept:
        log.info("note: %d finished run%s no longer in the UPF file stay%s among the results: %s", len(kept),
                 "" if len(kept) == 1 else "s", "s" if len(kept) == 1 else "", _names(kept))
    if dropped:
        log.info("note: %d interrupted run%s no longer in the UPF file and %s not run: %s", len(dropped),
                 " is" if len(dropped) == 1 else "s are", "is" if len(dropped) == 1 else "are", _names(dropped))


def _names(run_ids, most=10):
    return ", ".join(run_ids[:most]) + (", ..." if len(run_ids) > most else "")


def main(argv=None):
    return cli.main(build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
