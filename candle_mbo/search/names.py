"""Parameter names of a search space (or a UPF file) checked against what the benchmark defines.

A name the benchmark does not define is passed to run() as given (CANDLE Supervisor does the same, and
real spaces rely on it: a benchmark may read keys its definitions never list). But a name within a
typo of a defined one (``learnig_rate`` for ``learning_rate``) would silently train every run with the
default value and make the whole budget worthless, so it is refused before anything runs.
"""

import re

from ..errors import UsageError

# How many edits (insert, delete, substitute, or swap two neighbouring letters: a Damerau-Levenshtein
# distance, in its optimal-string-alignment form) turn an unknown name into a defined one before the
# unknown name counts as a typo of it, by the length of the longer of the two names: names of fewer than
# four letters are never "typos" (lr, x), one edit in four to seven letters (widht -> width, epoch ->
# epochs), two in eight or more (learnig_rate, batch_szie, model_fle). Names that merely share a stem
# stay allowed (warmup_lr vs warmup_epochs: 4 edits; drop vs dropout: 3; dense_1 vs dense: 2 of 7).
MIN_TYPO_LENGTH = 4


def max_edits(length):
    """The most edits at which a name of ``length`` letters still counts as a typo (0: never)."""
    if length < MIN_TYPO_LENGTH:
        return 0
    return 1 if length < 8 else 2


def edit_distance(a, b):
    """Damerau-Levenshtein distance (optimal string alignment): a transposition of neighbours is one edit."""
    previous2, previous = None, list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[len(b)]


def close_match(name, known):
    """The defined name ``name`` most likely mistypes, or None."""
    lowered = {k.lower(): k for k in known}
    low = name.lower()
    if low in lowered and lowered[low] != name:
        return lowered[low]
    best = None
    for candidate in sorted(lowered):
        distance = edit_distance(low, candidate)
        if 0 < distance <= max_edits(max(len(low), len(candidate))) and (best is None or distance < best[0]):
            best = (distance, candidate)
    return lowered[best[1]] if best else None


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
