"""Where a run's objective comes from: found in what the run gives or emits, in a fixed order, never made up.

1. ``returned``: what run() returned -- a Keras History (``.history``), a dict of lists or scalars, a
   number, or CANDLE's ``(val_scores, infer_scores)`` tuple (:func:`objective_from`). When run() returns
   something, it decides, as it always did (a History without the objective is an error, not a reason
   to look elsewhere).
2. ``scores_file``: when run() returned None, a scores file in the run's ``output_dir``: the one
   ``--objective-file NAME`` names, or else the IMPROVE convention's ``val_scores.json`` if the run wrote
   one; JSON or YAML, the objective is the value of the key named by ``--objective``. A file older than
   the run (left by an earlier attempt in the same folder) does not count.
3. ``epoch_report``: the run's per-epoch reports (:mod:`candle_mbo.epochs`) that carry the objective,
   reduced like a history (``--reduction``: last, min or max).
4. ``output``: the last match of ``--objective-regex`` in what the run printed (its group named
   ``value``, else its first group, else the whole match, read as a number); without a regex, the IMPROVE
   convention's ``IMPROVE_RESULT <objective>: <value>`` line.

Each record says which source gave its value (``objective_source``). When none gives one, the error names
every source tried and what was found there.
"""

import json
import math
import os
import re

REDUCTIONS = ("last", "min", "max")
SOURCES = ("returned", "scores_file", "epoch_report", "output")
IMPROVE_SCORES_FILE = "val_scores.json"
OUTPUT_TAIL_BYTES = 4 << 20  # the last match is in the last few MB of even a chatty run's output


class NoObjective(ValueError):
    """No source gave the objective; the message lists what was tried and found."""


def objective_from(returned, key="val_loss", reduction="last"):
    """Read the objective from what run() returned.

    Accepts a Keras-History-like object (``.history`` dict), a dict of lists, a dict of scalars, a plain
    number, or CANDLE's ``(val_scores, infer_scores)`` tuple. Returns ``(objective, history, extra)``;
    objective is None when run() returned None. Raises ValueError with a message for the user otherwise.

    Non-finite values (NaN, +-Inf: a diverged epoch) follow one rule. With ``min`` or ``max`` the
    reduction runs over the finite epochs only (a NaN in epoch 3 neither wins nor hides epoch 5); the
    run fails when no epoch is finite. With ``last`` the last epoch is the objective, so a non-finite
    last epoch fails the run (the model as trained is diverged, whatever earlier epochs reached). A
    single number (or a dict of scalars) that is not finite fails the run.
    """
    extra = None
    if returned is None:
        return None, None, None
    if isinstance(returned, tuple) and len(returned) == 2 and not is_number(returned[0]):
        returned, extra = returned
    history = getattr(returned, "history", None)
    if isinstance(history, dict):
        returned = history
    if is_number(returned):
        return _finite(to_float(returned), "run() returned"), None, extra
    if not isinstance(returned, dict):
        raise ValueError("run() returned %s, which holds no objective; return a Keras History, a dict such as "
                         "{'%s': [...]}, or a number" % (type(returned).__name__, key))
    history = {str(k): as_list(v) for k, v in returned.items()}
    if key not in history:
        raise ValueError("the history has no '%s' (it has: %s); choose one with --objective"
                         % (key, ", ".join(sorted(history)) or "nothing"))
    return reduce_values(history[key], key, reduction), history, extra


def reduce_values(values, key, reduction):
    """The objective from a list of per-epoch values by the rule of objective_from's docstring."""
    values = [v for v in values if v is not None]
    if not values:
        raise ValueError("the history's '%s' is empty" % key)
    numbers = []
    for value in values:
        if isinstance(value, str) and value.lower() in ("nan", "inf", "-inf", "infinity", "-infinity"):
            value = float(value)  # a non-finite value as the journal writes it
        if not is_number(value):
            raise ValueError("the history's '%s' holds %r, not a number" % (key, value))
        numbers.append(to_float(value))
    if reduction == "last":
        return _finite(numbers[-1], "the last '%s' (epoch %d of %d)" % (key, len(numbers), len(numbers)))
    if reduction not in ("min", "max"):
        raise ValueError("unknown reduction %r; choose one of %s" % (reduction, ", ".join(REDUCTIONS)))
    finite = [v for v in numbers if math.isfinite(v)]
    if not finite:
        raise ValueError("every '%s' value is non-finite (%s), no %s to take"
                         % (key, ", ".join(sorted({str(v) for v in numbers})), reduction))
    return min(finite) if reduction == "min" else max(finite)


def find_objective(returned, key, reduction, output_dir=None, started=None, scores_file=None, curve=None,
                   output=None, regex=None):
    """The objective of a finished run from the first source that has it (see the module docstring).

    ``curve``: the run's epoch reports as ``{metric: [values]}``; ``output``: a callable returning the
    text the run printed (read only if needed). Returns ``(objective, source, history, extra)``; objective
    and source are None when nothing was returned and no source has one (``explain_missing`` says why).
    Raises ValueError for a returned value that holds no usable objective.
    """
    objective, history, extra = objective_from(returned, key, reduction)
    if objective is not None:
        return objective, "returned", history, extra
    value = _from_scores_file(key, output_dir, started, scores_file)
    if value is not None:
        return value, "scores_file", None, None
    if curve and any(v is not None for v in curve.get(key, ())):
        return reduce_values(curve[key], key, reduction), "epoch_report", None, None
    value = _from_output(key, output, regex)
    if value is not None:
        return value, "output", None, None
    return None, None, None, None


def explain_missing(key, output_dir=None, started=None, scores_file=None, curve=None, output=None, regex=None):
    """Why no source gave the objective ``key``: one sentence per source, naming what was found there."""
    parts = ["run() returned None"]
    names = [scores_file] if scores_file else [IMPROVE_SCORES_FILE]
    for name in names:
        path = _scores_path(name, output_dir)
        if path is None or not os.path.isfile(path):
            parts.append("no scores file %s%s" % (name, "" if scores_file else " (set --objective-file NAME)"))
        elif started is not None and os.path.getmtime(path) < started - 1:
            parts.append("%s is older than the run (from an earlier attempt)" % name)
        else:
            try:
                data = _read_scores(path)
            except ValueError as exc:
                parts.append(str(exc))
            else:
                parts.append("%s has no '%s' (it has: %s)" % (name, key, ", ".join(sorted(map(str, data))) or
                                                              "nothing"))
    if curve:
        parts.append("the epoch reports carry %s, not '%s'%s" % (", ".join(sorted(curve)), key, _ckpt_hint(curve)))
    else:
        parts.append("no epoch reports (ckpt_epoch, CandleRemoteMonitor or candle_mbo.report())")
    if regex:
        parts.append("no output line matches --objective-regex %r with a number" % regex)
    else:
        parts.append("no 'IMPROVE_RESULT %s:' line in the output (or set --objective-regex)" % key)
    return "no objective '%s': %s" % (key, "; ".join(parts))


def _ckpt_hint(curve):
    from ..epochs import UNNAMED_CKPT_METRIC

    if UNNAMED_CKPT_METRIC in curve:
        return (" (%s is the value given to ckpt_epoch: name it with ckpt_save_best_metric, or optimize it with "
                "--objective %s)" % (UNNAMED_CKPT_METRIC, UNNAMED_CKPT_METRIC))
    return " (choose one with --objective)"


def _scores_path(name, output_dir):
    if os.path.isabs(name):
        return name
    return os.path.join(output_dir, name) if output_dir else None


def _from_scores_file(key, output_dir, started, scores_file):
    path = _scores_path(scores_file or IMPROVE_SCORES_FILE, output_dir)
    if path is None or not os.path.isfile(path):
        return None
    if started is not None and os.path.getmtime(path) < started - 1:
        return None  # left in the run folder by an earlier attempt
    try:
        data = _read_scores(path)
    except ValueError:
        return None
    if key not in data:
        return None
    value = data[key]
    if isinstance(value, list) and value:
        value = value[-1]
    if not is_number(value):
        raise ValueError("%s: '%s' is %r, not a number" % (path, key, value))
    return _finite(to_float(value), "%s's '%s'" % (os.path.basename(path), key))


def _read_scores(path):
    """A scores file as a dict: JSON, else YAML."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        text = handle.read()
    try:
        data = json.loads(text)
    except ValueError:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError("%s is neither JSON nor YAML (%s)" % (os.path.basename(path), exc)) from None
    if not isinstance(data, dict):
        raise ValueError("%s holds a %s, not a mapping of scores" % (os.path.basename(path), type(data).__name__))
    return data


def compile_regex(pattern):
    """``--objective-regex`` checked before anything runs (ValueError naming the problem)."""
    try:
        return re.compile(pattern, re.MULTILINE)
    except re.error as exc:
        raise ValueError("--objective-regex %r is not a valid regular expression: %s" % (pattern, exc)) from None


def _from_output(key, output, regex):
    if output is None:
        return None
    pattern = compile_regex(regex) if regex else re.compile(
        r"^\s*IMPROVE_RESULT\s+%s\s*:\s*(?P<value>\S+)" % re.escape(key), re.MULTILINE)
    text = output()
    if not text:
        return None
    for match in reversed(list(pattern.finditer(text))):
        groups = match.groupdict()
        raw = groups.get("value") if groups.get("value") is not None else (
            match.group(1) if match.re.groups else match.group(0))
        try:
            value = float(raw)
        except (TypeError, ValueError):
            continue
        return _finite(value, "the output's last '%s' line" % key)
    return None


def read_tail(path, offset=0, limit=OUTPUT_TAIL_BYTES):
    """The text of ``path`` from ``offset`` on (at most its last ``limit`` bytes); '' when unreadable."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            end = handle.tell()
            handle.seek(max(offset, end - limit))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _finite(value, what):
    if not math.isfinite(value):
        raise ValueError("%s is %s, not a finite number" % (what, value))
    return value


def is_number(value):
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    shape = getattr(value, "shape", None)
    if shape is not None and tuple(shape) in ((), (1,)) and hasattr(value, "__float__"):
        return True
    return False


def to_float(value):
    return float(value.item() if hasattr(value, "item") else value)


def as_list(value):
    """A history entry as a list of Python numbers (NaN kept: the caller judges it)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        value = [value]
    return [to_float(v) if is_number(v) else v for v in value]
