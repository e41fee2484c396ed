"""What the HPO and UPF workflows share around the dispatch loop.

The order of a job's start is fixed so that bad input costs nothing: every check that can fail (options,
files, the model's import and defaults, the space, the GPU mapping, a resumed experiment's pinned inputs)
runs before the output directory is created or changed and before any worker receives work.
"""

import logging
import os
import signal
import sys
import time

from . import __version__, cli
from ._trace import phase
from .core import journal
from .core.dispatch import Dispatcher, resume_command
from .core.store import Experiment, load_journal, next_experiment_dir
from .errors import UsageError
from .pool import placement
from .pool.isolation import RunnerStartError, probe_model
from .pool.policy import Pool
from .pool.runner import ModelError, check_model_source, is_model_path, model_file
from .reporting.progress import Progress

log = logging.getLogger("candle_mbo")

# Options stored as absolute paths (so that a resume from another folder finds the same files); a model
# given as a module name stays a name (with the file it resolved to beside it, "model_file").
PATH_OPTIONS = ("model", "space", "default_model", "upf")


def default_max_failures(workers):
    """The fail-fast default: the first 5 runs, or the first ``workers`` runs when there are more workers."""
    return max(5, workers)


def runner_config(args, require_objective, experiment_id="EXP000", await_answers=False):
    """The Runner's settings, as sent to every worker (``await_answers``: the dispatcher answers epoch
    reports, so runs wait for the answer: early discarding)."""
    return {
        "model": args.model,
        "objective": args.objective,
        "reduction": args.reduction,
        "require_objective": require_objective,
        "default_model": os.path.abspath(args.default_model) if args.default_model else None,
        "experiment_id": experiment_id,
        "memory_limit_mb": args.memory_limit,
        "objective_file": getattr(args, "objective_file", None),
        "objective_regex": getattr(args, "objective_regex", None),
        "workdir": getattr(args, "workdir", None) or "run",
        "await_answers": await_answers,
    }


def check_objective_options(args):
    """--objective-regex compiles and --objective-file is a file name (UsageError otherwise)."""
    from .pool.objective import compile_regex

    if args.objective_regex:
        try:
            compile_regex(args.objective_regex)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if args.objective_file is not None and (not args.objective_file.strip() or args.objective_file.endswith("/")):
        raise UsageError("--objective-file %r: give the scores file's name (relative to the run's output_dir) "
                         "or its absolute path" % args.objective_file)


def resumable(args, kind, build_parser, identity):
    """The Experiment named by --output (None for a new numbered one); on --resume, the stored options
    fill every option not typed again (typed identity options must match)."""
    if not args.output:
        if args.resume:
            raise UsageError("--resume needs --output DIR: the experiment to continue")
        return None
    experiment = Experiment(args.output, resume=args.resume)
    if not args.resume:
        return experiment
    experiment.check()
    stored = experiment.read_settings().get("settings", {})
    if stored.get("kind") != kind:
        other = "python -m candle_mbo" if stored.get("kind") == "hpo" else "python -m candle_mbo.upf"
        raise UsageError("--output %s holds a %s experiment; resume it with %s"
                         % (experiment.path, stored.get("kind"), other))
    for name in PATH_OPTIONS:
        value = getattr(args, name, None)
        if name in args.typed and value and (name != "model" or is_model_path(value)):
            setattr(args, name, os.path.abspath(value))
    if "model" in args.typed and args.model and stored.get("model") and args.model != stored["model"]:
        if model_file(args.model) is not None and model_file(args.model) == model_file(stored["model"]):
            args.model = stored["model"]  # the same file, by path or module name: named as the experiment has it
    cli.apply_stored(args, stored, identity, paths=[p for p in PATH_OPTIONS if p != "model"])
    args.stored_workers = stored.get("workers")
    return experiment


def journal_of(experiment):
    """What the experiment's journal says, read without changing anything (for checks before opening it)."""
    entries = load_journal(experiment.file("results.jsonl"), repair=False, warn=lambda message: None)
    return journal.Replay(entries, experiment.file("results.jsonl"))


def check_model(args, require_objective):
    """Validate the model without running it; return its description (defaults, definitions, files).

    The import happens in a throwaway subprocess, so the master never loads the model's framework.
    """
    check_objective_options(args)
    try:
        args.model = check_model_source(args.model)
    except ModelError as exc:
        raise UsageError(str(exc)) from None
    if args.default_model:
        if not os.path.isfile(args.default_model):
            raise UsageError("--default-model %s: file not found" % args.default_model)
        args.default_model = os.path.abspath(args.default_model)
    try:
        return probe_model(runner_config(args, require_objective))
    except RunnerStartError as exc:
        raise UsageError(str(exc)) from None


def input_files(args, description, **files):
    """The inputs an experiment pins: ``files`` (role -> path), the defaults file, the model's own files."""
    files = dict(files)
    files["default_model"] = args.default_model
    if not args.default_model and description.get("defaults_file"):
        files["defaults"] = description["defaults_file"]
    model_files = description.get("model_files") or ([args.model] if os.path.isfile(args.model) else [])
    return journal.describe_inputs(files, model_files)


def plan_workers(ranks, worker_ranks, master_ranks, args):
    """Place the workers (GPUs, threads); print the mapping; UsageError for a mapping that cannot work."""
    infos = ranks.infos
    workers = {r: infos[r] for r in worker_ranks if r in infos}
    masters = {r: infos[r] for r in master_ranks if r in infos}
    from .pool.placement import node_info

    masters[0] = node_info()
    envs, lines, warnings = placement.plan(workers, masters, args.threads_per_worker, args.gpus_per_worker)
    if args.gpus_per_worker or args.verbose:
        for line in lines:
            log.info("placement: %s", line)
    for warning in warnings:
        log.warning(warning)
    return envs


def check_pinned(args, experiment, inputs):
    """--resume: refuse inputs that changed since the experiment started (unless --accept-changed)."""
    problems = journal.changed_inputs(experiment.read_settings().get("inputs") or {}, inputs)
    if problems and not args.accept_changed:
        raise UsageError("%s; a resumed experiment uses the inputs it started with (restore them; every version "
                         "of the data files it ran with is in %s, experiment.yaml's inputs name the current one), "
                         "or add --accept-changed to go on anyway" % ("; ".join(problems), experiment.file("inputs")))


def check_workers(previous, settings):
    """--resume: warn when this job has fewer workers than the experiment started with; return the count
    experiment.yaml keeps (the original one; each resume records its own)."""
    original = previous.get("workers")
    workers = settings.get("workers")
    if not isinstance(original, int) or isinstance(original, bool):
        return workers
    if workers < original:
        ranks = original + (previous.get("masters_used") or 1)
        log.warning("warning: resuming with %d worker%s; the experiment started with %d (resume it under mpiexec -n "
                    "%d, or your launcher's equivalent, to keep its pace)", workers, "" if workers == 1 else "s",
                    original, ranks)
    elif workers > original:
        log.info("note: resuming with %d workers; the experiment started with %d", workers, original)
    return original


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def open_experiment(args, experiment, settings, inputs, param_columns=(), extra_columns=(), param_defaults=None):
    """Create (or reopen, on --resume) the experiment: check and pin its inputs, write experiment.yaml.

    experiment.yaml keeps the command and start of the job that created the experiment; each resume is
    appended to ``resumes`` (its command, start and workers), and each job's end is added to its entry by
    :func:`record_end`. ``settings`` are the current ones, but ``workers`` stays the original count.
    """
    if experiment is None:
        experiment = Experiment(next_experiment_dir(), resume=False)
    experiment.param_columns = list(param_columns)
    experiment.extra_columns = list(extra_columns)
    experiment.param_defaults = dict(param_defaults or {})
    previous = experiment.read_settings() if args.resume else {}
    kept = dict(settings)
    if args.resume:
        check_pinned(args, experiment, inputs)
        kept["workers"] = check_workers(previous.get("settings") or {}, settings)
    experiment.open()
    for message in experiment.warnings:
        log.warning("warning: %s", message)
    pinned = previous.get("inputs") if args.resume and previous.get("inputs") else None
    version = previous.get("inputs_version", 1) if pinned else 1
    changes = journal.changed_inputs(pinned, inputs) if pinned and args.accept_changed else []
    if pinned is None:
        pinned = journal.pin(inputs, experiment.file("inputs"))
    elif changes:  # a new version of the inputs: the earlier copies stay as they are
        version += 1
        pinned = journal.pin(inputs, experiment.file("inputs"), version, previous=pinned)
    resumed = max(previous.get("resumed") or 0, len(previous.get("resumes") or [])) + 1 if args.resume else 0
    experiment.inputs_version, experiment.job = version, resumed + 1
    command = " ".join([os.path.basename(sys.executable), "-m", settings.get("entry", "candle_mbo")] + sys.argv[1:])
    now = _now()
    document = {"candle_mbo": __version__, "kind": settings.get("kind"), "command": command, "started": now}
    if args.resume:
        document["command"] = previous.get("command", command)
        document["started"] = previous.get("first_started", previous.get("started", now))  # older files: first_started
        document.update((key, previous[key]) for key in END_KEYS if key in previous)
    document.update(settings=kept, inputs=pinned, inputs_version=version)
    if args.resume:
        document["resumed"] = resumed
        document["resumes"] = (previous.get("resumes") or []) + [
            {"command": command, "started": now, "workers": settings.get("workers")}]
        accepted = previous.get("accepted_changes") or []
        if changes:
            accepted = accepted + [{"version": version, "time": now, "changes": changes}]
        if accepted:
            document["accepted_changes"] = accepted
    experiment.write_settings(document)
    return experiment


#: What record_end adds to a job's entry of experiment.yaml.
END_KEYS = ("ended", "exit_code", "stopped_by")


def record_end(experiment, code, signal_name=None):
    """Write rank 0's exit status (and the signal that stopped it) into this job's entry of experiment.yaml:
    the last of ``resumes``, or the top level for the job that created the experiment."""
    document = experiment.read_settings()
    entry = document["resumes"][-1] if document.get("resumes") else document
    entry.update(ended=_now(), exit_code=code)
    if signal_name:
        entry["stopped_by"] = signal_name
    experiment.write_settings(document)


def record_outcome(experiment, **outcome):
    """Add what a finished job measured (e.g. epochs trained) to experiment.yaml, under ``outcome``."""
    document = experiment.read_settings()
    document.setdefault("outcome", {}).update(outcome)
    experiment.write_settings(document)


def worker_settings(args, experiment, require_objective, await_answers=False):
    """The settings every worker gets in its ``init`` (its own environment is added per worker)."""
    return {
        "runner": runner_config(args, require_objective, os.path.basename(experiment.path), await_answers),
        "isolation": args.isolation,
        "timeout": args.timeout or None,
        "log_dir": experiment.file("logs"),
        "run_dirs": not args.no_run_dirs,
        "scratch_dir": experiment.file("scratch"),
        "grace": args.grace,
    }


def start_workers(ranks, worker_ranks, envs, args, experiment, require_objective, context, await_answers=False):
    """The pool over ``worker_ranks``, started: every worker loads the model in parallel."""
    pool = Pool(ranks.link, worker_ranks, stop=ranks.stop)
    pool.gather({r: ranks.infos.get(r, {}) for r in worker_ranks})
    base = worker_settings(args, experiment, require_objective, await_answers)
    data = os.environ.get("CANDLE_DATA_DIR")
    for rank in worker_ranks:
        env = envs.setdefault(rank, {})
        if not data:  # one data folder for the whole job, never a download per run
            env["CANDLE_DATA_DIR"] = experiment.file("data")
    pool.start(lambda rank: dict(base, env=envs.get(rank, {})))
    context["pool"] = pool
    return pool


def dispatch(source, pool, experiment, args, settings, total, launched, entry, context, defaults=None):
    """Run the loop; returns ``(exit code, dispatcher)``. ``launched``: the ranks the launcher started (the
    resume command is printed as this job was started); ``defaults``: the benchmark's default parameters
    (how many epochs a run trains when its parameters do not say)."""
    progress = Progress(total=total, objective_name=args.objective, maximize=bool(args.maximize),
                        done=len(experiment.records), quiet=args.quiet)
    progress.seed(experiment.records)
    fidelity = settings.get("fidelity") or "epochs"
    loop_settings = dict(settings, resume_command=resume_command(entry, experiment.path, launched),
                         inputs_version=experiment.inputs_version, job=experiment.job,
                         planned_epochs=(defaults or {}).get(fidelity))
    dispatcher = Dispatcher(source, pool, experiment, progress, loop_settings)
    context["dispatched"] = True
    try:
        code = dispatcher.run()
    finally:
        source.close()
    if code >= 128:  # stopped by a signal: the job ends here
        record_end(experiment, code, signal.Signals(dispatcher.signal[0]).name)
    else:
        progress.flush()
    return code, dispatcher


def finish(args, experiment, start, records, workers, extra_lines=()):
    """The end-of-job summary lines (``start``: when this job's dispatching began) and the report."""
    from .reporting.progress import summary

    phase("summary")
    wall = time.time() - start
    logs = "logs/*.log (--no-run-dirs)" if args.no_run_dirs else "runs/<run_id>/model.log"
    for text in summary(records, args.objective, bool(args.maximize), start, wall, workers,
                        experiment.path, logs=logs):
        log.info(text)
    for text in extra_lines:
        log.info(text)
    if not args.no_report:
        try:
            from .reporting.build import render

            paths = render(experiment.path)
            if paths:
                log.info("report: %s", ", ".join(os.path.basename(p) for p in paths))
        except Exception as exc:  # noqa: BLE001 - plots are a convenience; the results are already safe
            log.warning("warning: could not render the report: %s", exc)
