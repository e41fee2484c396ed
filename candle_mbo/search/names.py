"""Parameter names of a search space (or a UPF file) checked against what the benchmark defines.

A name the benchmark does not define is passed to run() as given (CANDLE Supervisor does the same, and
real spaces rely on it: a benchmark may read keys its definitions never list). But a name within a
typo of a defined one (``learnig_rate`` for ``learning_rate``) would silently train every run with the
default value and make the whole budget worthless, so it is refused before anything runs.
"""

import difflib
import re

from ..errors import UsageError

# difflib's similarity ratio (on lower-cased names) from which an unknown name counts as a typo of a
# defined one: one or two characters wrong in a name of ten or more (learnig_rate, learning_rat,
# batch_szie), one in a name of six or more (epoch -> epochs: 0.91). Names that merely share a stem
# stay allowed (warmup_lr vs warmup_epochs: 0.64; drop vs dropout: 0.73; dense_1 vs dense: 0.83).
TYPO_RATIO = 0.85


def close_match(name, known):
    """The defined name ``name`` most likely mistypes, or None."""
    lowered = {k.lower(): k for k in known}
    if name.lower() in lowered and lowered[name.lower()] != name:
        return lowered[name.lower()]
    matches = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=TYPO_RATIO)
    return lowered[matches[0]] if matches else None


def name_line(path, name):
    """``path:line`` of the first line of ``path`` that quotes ``name`` (outside an R/# comment), else ``path``."""
    pattern = re.compile(r"""(["'])%s\1""" % re.escape(name))
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                if pattern.search(line.split("#", 1)[0]):
                    return "%s:%d" % (path, number)
    except OSError:
        pass
    return path


def check_names(names, description, source, allow_unknown=False):
    """Check the parameter names a space (or UPF file) sets against the benchmark's description.

    ``description``: what the runner's probe returns ({"definitions": {...}, "params": {...}}).
    ``source``: the file the names come from (its line is named in the error).
    Raises UsageError for a name within a typo of a defined one, unless ``allow_unknown``; returns one
    warning line (or None) for the unknown names that are passed through.
    """
    known = set(description.get("definitions") or ()) | set(description.get("params") or ())
    unknown = [n for n in names if n not in known]
    if not unknown:
        return None
    if not allow_unknown:
        for name in unknown:
            match = close_match(name, known)
            if match is not None:
                raise UsageError("%s: parameter '%s' is not defined by the benchmark; did you mean %s? (if '%s' is "
                                 "meant, pass --allow-unknown-params)" % (name_line(source, name), name, match, name))
    return ("warning: %s sets %s the benchmark does not define (passed to run() as given): %s"
            % (source, "a parameter" if len(unknown) == 1 else "%d parameters" % len(unknown), ", ".join(unknown)))
