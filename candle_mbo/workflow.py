"""What the HPO and UPF workflows share: checking the model, opening the experiment, the worker
settings, and the final summary.

The order of a workflow's start is fixed so that bad input costs nothing: every check that can fail
(options, files, the model's import and defaults) runs before the output directory is created and
before any worker receives work.
"""

import logging
import math
import os
import sys
import time

from . import __version__
from .errors import UsageError
from .isolation import RunnerStartError, probe_model
from .progress import _duration, format_objective
from .runner import ModelError, check_model_source
from .status import ALL, OK
from .store import Experiment, next_experiment_dir

log = logging.getLogger("candle_mbo")


def runner_config(args, require_objective, experiment_id="EXP000"):
    """The Runner's settings, as sent to every worker."""
    return {
        "model": args.model,
        "objective": args.objective,
        "reduction": args.reduction,
        "require_objective": require_objective,
        "default_model": os.path.abspath(args.default_model) if args.default_model else None,
        "experiment_id": experiment_id,
        "memory_limit_mb": args.memory_limit,
    }


def check_model(args, require_objective):
    """Validate the model without running it; return its description (defaults and definitions).

    The import happens in a throwaway subprocess, so the master never loads the model's framework.
    """
    try:
        args.model = check_model_source(args.model)
    except ModelError as exc:
        raise UsageError(str(exc)) from None
    if args.default_model and not os.path.isfile(args.default_model):
        raise UsageError("--default-model %s: file not found" % args.default_model)
    try:
        return probe_model(runner_config(args, require_objective))
    except RunnerStartError as exc:
        raise UsageError(str(exc)) from None


def warn_unknown_parameters(names, description, source):
    """Warn (not fail) about parameter names the benchmark defines nowhere: likely typos."""
    known = set(description["definitions"]) | set(description["params"])
    unknown = sorted(set(names) - known)
    if unknown:
        log.warning("warning: %s sets parameter%s the benchmark does not define: %s (it knows: %s)",
                    source, "s" if len(unknown) > 1 else "", ", ".join(unknown), ", ".join(sorted(known)))
    return unknown


def experiment_for(args):
    """The Experiment for --output (or a new experiments/EXPnnn), checked but not opened yet."""
    if args.output:
        return Experiment(args.output, resume=args.resume)
    if args.resume:
        raise UsageError("--resume needs --output DIR: the experiment to continue")
    return None


def fill_from_experiment(args, experiment, kind, build_parser):
    """``--resume --output DIR``: options left at their defaults take the experiment's stored settings.

    So ``--resume --output DIR`` alone continues an experiment, and so does the original command
    repeated with ``--resume`` (options given again must then match where it matters, see IDENTITY).
    """
    experiment.check()
    stored = experiment.read_settings().get("settings", {})
    if stored.get("kind") != kind:
        other = "python -m candle_mbo" if stored.get("kind") == "hpo" else "python -m candle_mbo.upf"
        raise UsageError("--output %s holds a %s experiment; resume it with %s"
                         % (experiment.path, stored.get("kind"), other))
    defaults = build_parser().parse_args([])
    for key, value in stored.items():
        if value is not None and hasattr(args, key) and getattr(args, key) == getattr(defaults, key, None):
            setattr(args, key, value)


def open_experiment(args, experiment, settings, identity, param_columns=(), extra_columns=()):
    """Open the experiment; on resume, check that ``identity`` settings match the stored ones.

    ``identity`` lists the settings a resumed experiment cannot change (the model, the space, ...).
    """
    if experiment is None:
        experiment = Experiment(next_experiment_dir(), resume=False)
    experiment.param_columns = list(param_columns)
    experiment.extra_columns = list(extra_columns)
    if args.resume:
        experiment.check()
        stored = experiment.read_settings().get("settings", {})
        for key in identity:
            if key in stored and stored[key] != settings.get(key):
                raise UsageError("--%s %s differs from the experiment's %s; a resumed experiment keeps its %s "
                                 "(start a new experiment to change it)"
                                 % (key.replace("_", "-"), settings.get(key), stored[key], key.replace("_", " ")))
    experiment.open()
    for message in experiment.warnings:
        log.warning("warning: %s", message)
    document = {
        "candle_mbo": __version__,
        "kind": settings.get("kind"),
        "command": " ".join([os.path.basename(sys.executable), "-m", settings.get("entry", "candle_mbo")]
                            + sys.argv[1:]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "settings": settings,
    }
    if args.resume:
        previous = experiment.read_settings()
        document["first_started"] = previous.get("first_started", previous.get("started"))
        document["resumed"] = previous.get("resumed", 0) + 1
    experiment.write_settings(document)
    return experiment


def worker_settings(args, experiment, require_objective):
    return {
        "runner": runner_config(args, require_objective, os.path.basename(experiment.path)),
        "isolation": args.isolation,
        "timeout": args.timeout or None,
        "threads_per_worker": args.threads_per_worker,
        "gpus_per_worker": args.gpus_per_worker,
        "log_dir": experiment.file("logs"),
        "run_dirs": not args.no_run_dirs,
        "scratch_dir": experiment.file("scratch"),
    }


def run_dir(args, experiment, run_id):
    """A task's ``run_dir``: ``runs/<run_id>/``, or None with --no-run-dirs (see Runner.run)."""
    return None if args.no_run_dirs else experiment.run_dir(run_id)


_FIRST_FIELDS = ("run_id", "status", "objective", "duration_s", "worker", "host", "started", "finished")


def finish_record(record, extra=None):
    """Turn a pool result into the record stored in results.jsonl (task -> params, fields ordered)."""
    task = record.pop("task", None) or {}
    ordered = {key: record.pop(key, None) for key in _FIRST_FIELDS}
    if extra:
        ordered.update(extra)
    ordered.update(record)
    ordered["params"] = task.get("params", {})
    return ordered


_FAULT = os.environ.get("CANDLE_MBO_INJECT_FAULT", "")


def record_result(experiment, progress, record):
    """Store a finished run (durably, first) and report it.

    Also the fault-injection hook of the reliability tests: with ``CANDLE_MBO_INJECT_FAULT=master-after:N``
    the master raises once N results are recorded, to prove that a master failure ends every rank.
    """
    experiment.append(record)
    progress.update(record)
    if _FAULT.startswith("master-after:") and len(experiment.records) >= int(_FAULT.split(":")[1]):
        raise RuntimeError("injected master fault after %d results (CANDLE_MBO_INJECT_FAULT)"
                           % len(experiment.records))


def run_logs(args):
    """Where a run's output is, for messages: its model.log, or the shared logs with --no-run-dirs."""
    return "logs/*.log (--no-run-dirs)" if args.no_run_dirs else "runs/<run_id>/model.log"


def summary(records, objective_name, maximize, start, wall_s, n_workers, experiment_path, top=5,
            logs="runs/<run_id>/model.log"):
    """The end-of-run summary: counts by status, the best runs with their parameters, time, utilization.

    Utilization counts the runs started since ``start`` (this job, not the ones a resume inherited).
    """
    counts = {status: 0 for status in ALL}
    for record in records:
        counts[record.get("status")] = counts.get(record.get("status"), 0) + 1
    good = [r for r in records if r.get("status") == OK and isinstance(r.get("objective"), (int, float))
            and math.isfinite(r["objective"])]
    good.sort(key=lambda r: r["objective"], reverse=maximize)
    lines = ["summary: %d runs: %s" % (len(records), ", ".join("%d %s" % (counts[s], s) for s in ALL))]
    if good:
        lines.append("top %d by %s (%s):" % (min(top, len(good)), objective_name, "max" if maximize else "min"))
        for rank, record in enumerate(good[:top], start=1):
            params = ", ".join("%s=%s" % (k, _short(v)) for k, v in (record.get("params") or {}).items())
            lines.append("  %d. %s  %s  %s" % (rank, record["run_id"], format_objective(record["objective"]), params))
    failed = [r for r in records if r.get("status") != OK]
    if failed:
        lines.append("not ok: %s (logs: %s/%s)"
                     % (", ".join(r["run_id"] for r in failed[:10]) + (" ..." if len(failed) > 10 else ""),
                        experiment_path, logs))
    busy_s = sum(r.get("duration_s") or 0 for r in records if (r.get("started") or 0) >= start)
    capacity = wall_s * max(n_workers, 1)
    utilization = " | workers busy %.0f%%" % (100.0 * busy_s / capacity) if capacity > 0 else ""
    lines.append("wall time %s | %d worker%s%s | results in %s"
                 % (_duration(wall_s), n_workers, "" if n_workers == 1 else "s", utilization, experiment_path))
    return lines


def _short(value):
    text = format_objective(value) if isinstance(value, float) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def render_report(experiment, args):
    """Render the plots unless --no-report; a failure to plot never fails the workflow."""
    if args.no_report:
        return
    try:
        from .report import render

        paths = render(experiment.path)
        if paths:
            log.info("plots: %s", ", ".join(os.path.basename(p) for p in paths))
    except Exception as exc:  # noqa: BLE001 - plots are a convenience; the results are already safe
        log.warning("warning: could not render the report: %s", exc)
