"""Which hyperparameters matter: a first-order functional ANOVA of the finished runs (numpy only).

The question a scientist asks of a search ("does the learning rate matter more than the batch size?")
is answered from the results alone, without R and without the surrogate, so that it works for UPF
sweeps and for any experiment folder. The method, in short:

- the target is the **rank** of each ok run's objective (ties share their mean rank), so that a few
  diverged runs (1e30) cannot decide the answer;
- each parameter enters by its **values**: a parameter with few distinct values (discrete, logical,
  list parameters, or a few numbers) as a set of levels; a numeric one with many as a cubic in the
  rank of its value (so that a log-scaled learning rate counts as evenly as a linear one, and an
  optimum in the middle of the range is seen); a run that did not set it (an inactive conditional
  parameter) has a level of its own;
- an **additive model** ``rank ~ mean + sum over parameters of f_p(value of p)`` is fitted by
  backfitting: each ``f_p`` is fitted to what the other parameters' effects leave unexplained.
  Fitting all main effects together keeps a parameter that the search happened to vary along with
  another (model-based proposals cluster) from taking that one's credit;
- a parameter's **importance** is the variance of its effect over the runs, less what noise alone
  would give an effect with that many degrees of freedom: 0% for a parameter that does not matter. The
  shares are scaled to add up to what the additive model explains of the ranks' variance (its adjusted
  R^2: the effects of parameters that the runs varied together overlap, so their variances alone could
  add up to more); the rest is interactions between parameters and noise.

This is the first-order part of a functional ANOVA decomposition (as fANOVA, behind Optuna's
importance plot, computes from a random forest), estimated from the runs directly. It needs a few runs
per estimated effect: below ``RUNS_PER_EFFECT x`` the effects' degrees of freedom (and below MIN_RUNS)
it says "too few runs" instead of ranking noise.
"""

import collections
import json
import math

import numpy as np

MIN_RUNS = 10
MAX_LEVELS = 6  # a numeric parameter with more distinct values than this is a curve, not levels
DEGREE = 3  # of that curve
RUNS_PER_EFFECT = 2  # ok runs needed per estimated effect (the mean, and the degrees of freedom of every f_p)

Importance = collections.namedtuple("Importance", "shares explained runs needed parameters")
Importance.__doc__ = """What :func:`importance` found.

``shares``: ``[(name, share)]``, largest first (share of the objective ranks' variance that the parameter's
main effect explains, 0..1); empty when there were too few runs. ``explained``: the sum of the shares.
``runs``: the ok runs used. ``needed``: the runs needed for this many parameters and levels (more than
``runs`` means too few). ``parameters``: how many parameters varied."""


def importance(records):
    """The importance of each parameter that varies among the ok runs of ``records``; None when no
    parameter varies (nothing to compare)."""
    runs = [r for r in records if r.get("status") == "ok" and _finite(r.get("objective"))
            and isinstance(r.get("params"), dict)]
    names = list(dict.fromkeys(name for r in runs for name in r["params"]))
    n = len(runs)
    columns = {}
    for name in names:
        basis = _basis([r["params"].get(name, _ABSENT) for r in runs])
        if basis is not None:
            columns[name] = basis
    if not columns:
        return None
    effects = 1 + sum(basis.shape[1] for basis in columns.values())
    needed = max(MIN_RUNS, RUNS_PER_EFFECT * effects)
    if n < needed:
        return Importance([], 0.0, n, needed, len(columns))
    y = _ranks([float(r["objective"]) for r in runs])
    total = float(np.var(y))
    if total <= 0:
        return Importance([(name, 0.0) for name in columns], 0.0, n, needed, len(columns))
    fitted = _backfit(y - y.mean(), columns)
    residual = y - y.mean() - sum(fitted.values())
    noise = float(np.sum(residual ** 2)) / max(1, n - effects)  # the residual variance, per degree of freedom
    explained = max(0.0, 1.0 - noise / (total * n / (n - 1)))  # the additive model's adjusted R^2
    variances = {name: max(0.0, float(np.mean(fitted[name] ** 2)) - noise * basis.shape[1] / n)
                 for name, basis in columns.items()}
    scale = explained / sum(variances.values()) if sum(variances.values()) > 0 else 0.0
    shares = sorted(((name, variance * scale) for name, variance in variances.items()), key=lambda item: -item[1])
    return Importance(shares, explained if scale else 0.0, n, needed, len(columns))


def describe(result, objective_name="objective"):
    """One line for the summary (None when no parameter varies)."""
    if result is None:
        return None
    if not result.shares and result.runs < result.needed:
        return ("importance: too few runs to tell which parameters matter (%d ok run%s; %d needed for %d parameter%s "
                "and their levels)" % (result.runs, "" if result.runs == 1 else "s", result.needed,
                                       result.parameters, "" if result.parameters == 1 else "s"))
    parts = ", ".join("%s %.0f%%" % (name, 100 * share) for name, share in result.shares)
    return ("importance (share of the variation in %s ranks that each parameter explains, %d ok runs): %s; "
            "left to interactions and noise %.0f%%" % (objective_name, result.runs, parts,
                                                      100 * max(0.0, 1 - result.explained)))


# -- levels, ranks, fit ----------------------------------------------------------------------------
_ABSENT = object()  # a run that did not set the parameter


def _finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _basis(values):
    """The centered columns one parameter's effect is fitted on (n x its degrees of freedom), or None
    when it does not vary: level indicators, or a cubic in the rank of a numeric value (plus a "not set"
    indicator when some runs did not set it)."""
    keys = [_key(v) for v in values]
    distinct = set(keys)
    if len(distinct) < 2:
        return None
    present = [v for v in values if v is not _ABSENT]
    if present and all(_finite(v) for v in present) and len(set(present)) > MAX_LEVELS:
        mask = np.array([v is not _ABSENT for v in values])
        z = np.zeros(len(values))
        z[mask] = 2 * _ranks([float(v) for v in present]) - 1
        columns = [np.where(mask, z ** power, 0.0) for power in range(1, DEGREE + 1)]
        if not mask.all():
            columns.append((~mask).astype(float))
    else:
        order = {key: index for index, key in enumerate(sorted(distinct, key=str))}
        codes = np.array([order[key] for key in keys])
        columns = [(codes == level).astype(float) for level in range(1, len(order))]  # the first level is the base
    basis = np.column_stack(columns)
    return basis - basis.mean(axis=0)


def _key(value):
    if value is _ABSENT:
        return "(not set)"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, sort_keys=True, default=str)
    return value if _finite(value) else str(value)


def _ranks(values):
    """Ranks 0..1 of ``values`` (ties share their mean rank)."""
    array = np.asarray(values, dtype=float)
    order = np.argsort(array, kind="mergesort")
    ranks = np.empty(len(array))
    ranks[order] = np.arange(len(array), dtype=float)
    _, inverse, counts = np.unique(array, return_inverse=True, return_counts=True)
    if (counts > 1).any():
        sums = np.bincount(inverse, weights=ranks)
        ranks = (sums / counts)[inverse]
    return ranks / max(1, len(array) - 1)


def _backfit(y, columns, rounds=200, tolerance=1e-10):
    """The fitted main effect of each parameter (one value per run) of an additive model of centered ``y``."""
    solvers = {name: np.linalg.pinv(basis) for name, basis in columns.items()}
    fitted = {name: np.zeros_like(y) for name in columns}
    total = np.zeros_like(y)
    for _ in range(rounds):
        change = 0.0
        for name, basis in columns.items():
            partial = y - (total - fitted[name])
            new = basis @ (solvers[name] @ partial)
            total += new - fitted[name]
            change = max(change, float(np.max(np.abs(new - fitted[name]))))
            fitted[name] = new
        if change < tolerance:
            break
    return fitted
