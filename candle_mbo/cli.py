"""Command-line plumbing shared by ``python -m candle_mbo`` (HPO) and ``python -m candle_mbo.upf``.

Thin on purpose: option parsing (which options the user typed, for resume), the YAML ``--config`` file,
and ``main()``, which turns bad input into one ``error: ...`` line with exit code 2 and any other failure
into a one-line error, a traceback file and exit code 1 -- ending every MPI rank, never leaving the job
hanging. Errors always reach the terminal the job started with, even while a run's output is captured.

Exit codes (also in --help): 0 the workflow completed (failed runs are results); 1 unexpected error; 2
bad input, nothing run; 3 stopped early because every run failed (--max-failures); 128 + N stopped by
signal N (130 SIGINT, 138 SIGUSR1, 143 SIGTERM), the unfinished runs journaled to run again first on
--resume. These are rank 0's codes; a launcher may report its own (Open MPI's mpiexec exits 1 after it
was sent SIGINT or SIGTERM, having turned the signal into SIGTERM for the ranks).
"""

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
import traceback

import yaml

from .core.dispatch import stopped_by
from .errors import RankLost, UsageError
from .reporting.progress import setup_logging
from .pool.ranks import Ranks

log = logging.getLogger("candle_mbo")


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors (``error: ...``, exit code 2) instead of a usage dump, and no
    abbreviated options (so that what the user typed is known exactly, see ``typed_options``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UsageError("%s (see --help)" % message)


def _whole_number(minimum, wording):
    """An argparse type for whole numbers of at least ``minimum`` (``wording``: what the error says)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("expected a whole number, got %r" % text) from None
        if value < minimum:
            raise argparse.ArgumentTypeError("%s, got %s" % (wording, text))
        return value

    parse.__name__ = "a whole number >= %d" % minimum
    return parse


positive_int = _whole_number(1, "must be a whole number of at least 1")
nonnegative_int = _whole_number(0, "must be 0 or more")


def nonnegative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number of seconds, got %r" % text) from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError("must be 0 (no limit) or a positive number of seconds, got %s" % text)
    return value


nonnegative_float.__name__ = "seconds"


def add_common_arguments(parser):
    """Options shared by the HPO and UPF workflows."""
    group = parser.add_argument_group("model and runs")
    group.add_argument("--model", metavar="MODEL",
                       help="the benchmark: a .py file defining initialize_parameters() and run(params), "
                            "or an importable module name")
    group.add_argument("--default-model", metavar="FILE",
                       help="a defaults file (INI) to use instead of the benchmark's own")
    group.add_argument("--objective", default="val_loss", metavar="KEY",
                       help="history entry to optimize or report (default: val_loss)")
    group.add_argument("--reduction", default="last", choices=("last", "min", "max"),
                       help="which value of the objective's history counts (default: last, as CANDLE)")
    group.add_argument("--objective-file", metavar="NAME",
                       help="when run() returns None: read the objective from this scores file (JSON or YAML, "
                            "key = --objective) in the run's output_dir (default: the IMPROVE convention's "
                            "val_scores.json, if the run writes one)")
    group.add_argument("--objective-regex", metavar="REGEX",
                       help="when run() returns None and nothing else gives the objective: its last match in "
                            "the run's output, e.g. 'val_loss: (\\S+)' (group 'value' or the first group is "
                            "the number; default: an 'IMPROVE_RESULT <objective>: <value>' line)")
    group.add_argument("--workdir", default="run", choices=("run", "model"),
                       help="where each run executes: run (default: its own runs/<run_id>/ folder) or model (the "
                            "model file's folder, for benchmarks that open paths relative to it; output_dir "
                            "still points at the run's folder)")
    group.add_argument("--timeout", type=nonnegative_float, default=0, metavar="S",
                       help="kill a run after S seconds and record it as 'timeout' (default: 0, no limit)")
    group.add_argument("--isolation", default="process", choices=("process", "none"),
                       help="'process' (default): each worker runs the model in a resident subprocess that a "
                            "crash or timeout cannot take down with the job; 'none': in the worker itself, "
                            "fastest, but a crash ends the job and timeouts are best-effort")
    group.add_argument("--memory-limit", type=positive_int, metavar="MB",
                       help="address-space limit of each runner process, in MB (isolation 'process' only)")
    group.add_argument("--no-run-dirs", action="store_true",
                       help="no runs/<run_id>/ folder per run (for thousands of very short runs, or a file system "
                            "that suffers from many small files): each record in results.jsonl keeps the "
                            "parameters and the history, run output goes to logs/, and output_dir is a scratch "
                            "folder per worker shared by its runs")
    group.add_argument("--maximize", action="store_true",
                       help="a larger objective is better (e.g. val_acc): for the search, best.json and the summary")
    group.add_argument("--allow-unknown-params", action="store_true",
                       help="accept parameter names the benchmark does not define even when they look like a "
                            "typo of one it does (default: refused, with the name it probably meant)")
    group = parser.add_argument_group("early discarding (HPO; see the user guide)")
    group.add_argument("--prune", default="none", choices=("none", "asha", "median"),
                       help="stop runs that are clearly behind at an epoch report: asha (asynchronous successive "
                            "halving: at rungs of R, R*eta, ... epochs a run goes on only in the best 1/eta), median "
                            "(worse than the median of the others at the same epoch); needs a model that reports "
                            "epochs (ckpt_epoch, CandleRemoteMonitor or candle_mbo.report()); default: none")
    group.add_argument("--min-epochs", type=positive_int, default=1, metavar="R",
                       help="the first rung (asha), or the epochs before any stop (median) (default: 1)")
    group.add_argument("--eta", type=_whole_number(2, "must be a whole number of at least 2"), default=3,
                       metavar="N", help="asha: rungs R*eta^k, and the best 1/eta go on (default: 3)")
    group.add_argument("--fidelity", default="epochs", metavar="NAME",
                       help="the parameter that says how many epochs a run trains (default: epochs)")
    group.add_argument("--epoch-budget", type=nonnegative_int, default=0, metavar="E",
                       help="start no new run once E epochs have been trained in all (running runs finish; "
                            "default: 0, no limit)")
    group = parser.add_argument_group("workers")
    group.add_argument("--threads-per-worker", type=positive_int, metavar="N",
                       help="OMP_NUM_THREADS / NUM_INTRA_THREADS / NUM_INTER_THREADS of each worker "
                            "(default: SLURM_CPUS_PER_TASK, else the worker's CPUs divided by the ranks sharing them)")
    group.add_argument("--gpus-per-worker", type=nonnegative_int, default=0, metavar="K",
                       help="give each worker K GPUs of its node through CUDA_VISIBLE_DEVICES, by its index on the "
                            "node (the mapping is printed at start; 0: leave the GPU variables alone)")
    group = parser.add_argument_group("stopping")
    group.add_argument("--max-failures", type=nonnegative_int, metavar="N",
                       help="stop early (exit 3) when the first N runs of the job all failed (default: 5, or the "
                            "number of workers if more; 0: never)")
    group.add_argument("--max-attempts", type=nonnegative_int, default=2, metavar="N",
                       help="a run that was running when N jobs ended and never finished (it took its worker "
                            "down, e.g. a segfault with --isolation none, or the job was killed or reached its "
                            "walltime, each time) is recorded 'crashed' on --resume instead of run again (default: "
                            "2; 0: no limit, e.g. for checkpointing runs longer than several allocations)")
    group.add_argument("--grace", type=nonnegative_float, default=0, metavar="S",
                       help="on SIGTERM or SIGUSR1, let running runs finish for up to S seconds before stopping "
                            "(e.g. Slurm's --signal=B:USR1@300 with --grace 280); SIGINT stops at once")
    group = parser.add_argument_group("experiment")
    group.add_argument("--output", metavar="DIR",
                       help="experiment directory (default: a new experiments/EXPnnn)")
    group.add_argument("--resume", action="store_true",
                       help="continue the experiment in --output: interrupted runs first, under their own ids; "
                            "options not typed again keep their stored values")
    group.add_argument("--accept-changed", action="store_true",
                       help="with --resume: go on although an input file (space, defaults, UPF, model) changed "
                            "since the experiment started (e.g. a fixed comment)")
    group.add_argument("--config", metavar="YAML",
                       help="read options from a YAML mapping (keys are option names); the command line wins")
    group.add_argument("--quiet", action="store_true", help="no progress lines, only the summary")
    group.add_argument("--verbose", action="store_true", help="debug messages")
    group.add_argument("--no-report", action="store_true", help="do not render the plots and report.html at the end")


def option_names(parser):
    """{'budget': action, ...} for every long option, with dashes and underscores both accepted."""
    names = {}
    for action in parser._actions:  # noqa: SLF001 - argparse exposes no public list
        for flag in action.option_strings:
            if flag.startswith("--") and flag not in ("--help", "--config"):
                names[flag[2:]] = action
                names[flag[2:].replace("-", "_")] = action
    return names


def config_tokens(parser, path):
    """Turn a YAML config file into command-line tokens, validating every key and value."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except FileNotFoundError:
        raise UsageError("--config %s: file not found" % path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = ":%d" % (mark.line + 1) if mark is not None else ""
        raise UsageError("--config %s%s: not valid YAML (%s)" % (path, where, getattr(exc, "problem", exc))) from None
    if data is None:
        return []
    if not isinstance(data, dict):
        raise UsageError("--config %s: expected a mapping of option: value, got a %s" % (path, type(data).__name__))
    names = option_names(parser)
    unknown = sorted(str(k) for k in data if str(k) not in names)
    if unknown:
        valid = sorted({a.option_strings[-1][2:] for a in names.values()})
        raise UsageError("--config %s: unknown key%s %s; valid keys: %s"
                         % (path, "s" if len(unknown) > 1 else "", ", ".join(unknown), ", ".join(valid)))
    tokens = []
    for key, value in data.items():
        action = names[str(key)]
        flag = action.option_strings[-1]
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):  # noqa: SLF001
            if not isinstance(value, bool):
                raise UsageError("--config %s: %s must be true or false, got %r" % (path, key, value))
            if value == isinstance(action, argparse._StoreTrueAction):  # noqa: SLF001
                tokens.append(flag)
            continue
        if value is None:
            continue
        if isinstance(value, (list, dict)):
            raise UsageError("--config %s: %s must be a single value, got %r" % (path, key, value))
        text = str(value).lower() if isinstance(value, bool) else str(value)
        converted = text
        if action.type is not None:
            try:
                converted = action.type(text)
            except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
                raise UsageError("--config %s: %s: invalid value %r (%s)" % (path, key, value, exc)) from None
        if action.choices is not None and converted not in action.choices:
            raise UsageError("--config %s: %s: %r is not one of %s"
                             % (path, key, value, ", ".join(map(str, action.choices))))
        tokens += [flag, text]
    return tokens


def parse_arguments(parser, argv=None):
    """Parse ``argv`` on top of the ``--config`` file's options (the command line wins).

    ``args.typed`` is the set of options (dest names) given on the command line or in the config file:
    on ``--resume`` only those override the experiment's stored settings.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    tokens = config_tokens(parser, known.config) if known.config else []
    args = parser.parse_args(tokens + argv)
    args.config_tokens = tokens
    args.typed = typed_options(parser, tokens + argv)
    return args


def typed_options(parser, tokens):
    """The dest names of the options that appear in ``tokens``."""
    by_flag = {flag: action.dest for action in parser._actions for flag in action.option_strings}  # noqa: SLF001
    typed = set()
    for token in tokens:
        if token.startswith("--"):
            dest = by_flag.get(token.split("=", 1)[0])
            if dest is not None:
                typed.add(dest)
    return typed


def apply_stored(args, stored, identity, paths=()):
    """``--resume``: options not typed take the experiment's stored value; typed identity options must match.

    ``identity`` names the settings a resumed experiment cannot change (refused with exit 2); ``paths`` the
    ones compared as absolute paths.
    """
    for key, value in stored.items():
        if not hasattr(args, key) or key in ("output", "resume", "config", "accept_changed"):
            continue
        if key not in args.typed:
            setattr(args, key, value)
            continue
        given = getattr(args, key)
        if key in paths and given is not None:
            given = os.path.abspath(given)
        if key in identity and given != value:
            raise UsageError("--%s %s differs from the experiment's %s; a resumed experiment keeps its %s (leave the "
                             "option out, or start a new experiment to change it)"
                             % (key.replace("_", "-"), given, value, key.replace("_", " ")))


def require(args, *names):
    for name in names:
        if not getattr(args, name.replace("-", "_"), None):
            raise UsageError("--%s is required (on the command line or as '%s:' in --config)" % (name, name))


class Interrupted(BaseException):
    """A stop signal before the dispatch loop started (nothing runs yet): exit 128 + the signal's number."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum, frame):
    raise Interrupted(signum)


def main(build_parser, workflow, argv=None):
    """Run ``workflow(args, ranks, context)`` on rank 0 and the other ranks' roles elsewhere; return the exit code."""
    ranks, code = Ranks.create()
    if ranks is None:
        return code
    terminal = sys.stderr  # a run's output capture may swap sys.stderr later: errors go here
    setup_logging(rank=0)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, _raise_interrupted)
    context = {"error_dir": None, "pool": None}
    done = False
    try:
        args = parse_arguments(build_parser(), argv)
        if args.verbose:
            logging.getLogger("candle_mbo").setLevel(logging.DEBUG)
        code = workflow(args, ranks, context)
        done = True
        return code
    except UsageError as exc:
        sys.stdout.flush()
        _say(terminal, "error: %s" % exc)
        return exc.exit_code
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except (KeyboardInterrupt, Interrupted) as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        when = ("after the runs ended; every result is saved" if context.get("dispatched")
                else "before any run started")
        _say(terminal, "error: %s %s" % (stopped_by(signum), when))
        return 128 + signum
    except RankLost as exc:  # journaled and said already; the lost rank may never reach MPI_Finalize
        sys.stdout.flush()
        _say(terminal, "error: %s" % exc)
        if not ranks.local:
            ranks.abort(1)
        return 1
    except BaseException as exc:  # noqa: BLE001 - a bug or a broken framework: end every rank, loudly
        path = _write_traceback(context.get("error_dir"))
        sys.stdout.flush()
        _say(terminal, "error: %s: %s (full traceback: %s)"
             % (type(exc).__name__, " ".join(str(exc).split())[:300], path))
        pool = context.get("pool")
        if pool is not None and pool.started and not ranks.local:
            ranks.abort(1)
        return 1
    finally:
        ranks.release(now=not done)  # every exit path, every phase: every rank not stopped yet ends


def _say(terminal, line):
    """Write ``line`` and its newline in one write: under mpiexec, whatever mpiexec prints itself (an abort
    banner) could otherwise land between the text and its newline."""
    terminal.write(line + "\n")
    terminal.flush()


def _write_traceback(folder):
    text = traceback.format_exc()
    try:
        if folder:
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, "master-traceback.txt")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
            return path
    except OSError:
        pass
    fd, path = tempfile.mkstemp(prefix="candle-mbo-traceback-", suffix=".txt")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return path
