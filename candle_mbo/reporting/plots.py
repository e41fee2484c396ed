"""The report's figures (matplotlib): has the search converged, which hyperparameters matter, how did
the runs learn, were the workers busy?

Each function takes the records (finish order) and the experiment's settings and returns a Figure, or
None when there is nothing to draw. The rules that keep the figures honest:

- a run that is not ok is never dropped: it has its own mark (an ``x`` in its status color, above the
  axes) wherever ok runs are drawn, and a level of a discrete parameter that always fails still has
  its tick, labelled with its failure count;
- the objective axis is chosen from the data (:func:`choose_scale`): log when positive values span
  decades, symlog when outliers dwarf values around zero, else linear and, when a few outliers would
  squash the rest, limited to the bulk with the outliers drawn as arrows at the edge and counted; runs
  beyond the divergence fence (:func:`divergence_fence`, the surrogate's cap) are always arrows at the
  edge, however many they are;
- the workers' utilization is :func:`candle_mbo.reporting.progress.utilization`, the summary's definition;
- a run too short to see on the timeline still gets a bar a few pixels wide.
"""

import collections
import math

import numpy as np

import matplotlib
matplotlib.use("Agg")
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the non-interactive backend
from matplotlib import ticker  # noqa: E402
from matplotlib import transforms  # noqa: E402
from matplotlib.transforms import blended_transform_factory  # noqa: E402

from .progress import describe_utilization, proposal_kind, reason, run_interval, shorten, utilization  # noqa: E402
from ..status import CRASHED, FAILED, OK, PRUNED, TIMEOUT  # noqa: E402

STATUS_COLORS = {OK: "#4daf4a", PRUNED: "#377eb8", FAILED: "#ff7f00", TIMEOUT: "#984ea3", CRASHED: "#e41a1c"}
OTHER_COLOR = "#999999"
INTERRUPTED_COLOR = "#dddddd"  # an attempt a stop signal cut short (it ran again on resume)
KIND_STYLE = {  # how a point was proposed -> (marker, color, label)
    "design": ("s", "#888888", "initial design"),
    "model-based": ("o", "#1f77b4", "model-based proposal"),
    "random": ("D", "#17becf", "random"),
    "random fallback": ("D", "#bcbd22", "random fallback"),
    None: ("o", "#1f77b4", "run"),
}
BEST_COLOR = "#d62728"
UPF_TABLE_MAX_LINES = 60  # a UPF of more lines is plotted per parameter instead of line by line
LEARNING_CURVES_HIGHLIGHT = 10
LEARNING_CURVES_MAX_FADED = 1000
MIN_BAR_FRACTION = 0.004  # of the timeline's width: about 4 pixels in a 12-inch figure


# -- small helpers ------------------------------------------------------------------------------
def number(value, default=None):
    """``value`` as a finite float, or ``default``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return default


def objective(record):
    """The objective of an ok run, or None."""
    return number(record.get("objective")) if record.get("status") == OK else None


def direction(settings):
    """(objective name, maximize)."""
    return str(settings.get("objective") or "objective"), settings.get("maximize") is True


def better(maximize):
    return "higher" if maximize else "lower"


def color(status):
    return STATUS_COLORS.get(status, OTHER_COLOR)


def status_order(statuses):
    """Known statuses first, in their fixed order, then any others."""
    present = set(statuses)
    return [s for s in STATUS_COLORS if s in present] + sorted(present - set(STATUS_COLORS), key=str)


def best_record(records, maximize):
    ok = [r for r in records if objective(r) is not None]
    return (max if maximize else min)(ok, key=objective) if ok else None


def marker_size(n, size):
    """Smaller marks when there are many points (tens of thousands of runs must not make one blot)."""
    return size if n <= 300 else max(2.0, size * math.sqrt(300.0 / n))


def _duration(seconds):
    """A span of time for a title: 42 s, 3.5 min, 2.1 h."""
    if seconds < 120:
        return "%.0f s" % seconds
    return "%.1f min" % (seconds / 60) if seconds < 7200 else "%.1f h" % (seconds / 3600)


def _time_unit(span_s):
    """(divisor, name) for a time axis of ``span_s`` seconds."""
    if span_s < 180:
        return 1.0, "seconds"
    if span_s < 3 * 3600:
        return 60.0, "minutes"
    return 3600.0, "hours"


# -- the objective axis -------------------------------------------------------------------------
Scale = collections.namedtuple("Scale", "kind linthresh limits")
Scale.__doc__ = """How to draw an objective axis: ``kind`` linear|log|symlog, the symlog threshold, and
``limits`` (low, high) when outliers beyond them are drawn at the edge instead of squashing the axis."""


def _fences(values):
    """Tukey's far fences (quartiles -/+ 3 interquartile ranges), or None when the quartiles coincide."""
    q1, q3 = np.percentile(values, [25, 75])
    iqr = q3 - q1
    if not iqr > 0:
        return None
    return q1 - 3 * iqr, q3 + 3 * iqr


# The divergence fence: the same formula and constants as cm_fence in R/cm_feedback.R (the surrogate
# caps values beyond it); change both together.
FENCE_K = 100
FENCE_MIN = 4


def divergence_fence(values, maximize=False, k=FENCE_K):
    """The value beyond which an ok run counts as diverged (median + ``k`` robust spreads on the worse
    side: above when minimizing, below when maximizing; spread = max(1.4826 MAD, 0.1 |median|)), or None
    with fewer than FENCE_MIN values or no spread."""
    v = np.array([x for x in values if number(x) is not None], dtype=float)
    if len(v) < FENCE_MIN:
        return None
    median = float(np.median(v))
    spread = max(1.4826 * float(np.median(np.abs(v - median))), 0.1 * abs(median))
    if not (math.isfinite(spread) and spread > 0):
        return None
    return median - k * spread if maximize else median + k * spread


def choose_scale(values, outlier_share=0.1, maximize=False):
    """The objective axis for ``values``: see the module docstring. Robust to wild outliers.

    Diverged values (beyond :func:`divergence_fence`, on the worse side for ``maximize``) are always
    left off the axis (callers draw them as arrows at the edge), however many they are. Outliers are
    values beyond Tukey's far fences. Positive values spanning more than a decade get a log axis; when
    at most ``outlier_share`` of the values are outliers, the axis is limited to the others (callers
    mark the outliers at the edge); when more are, values around zero and large ones of either sign
    share a symlog axis.
    """
    v = np.array([x for x in values if number(x) is not None], dtype=float)
    if len(v) == 0:
        return Scale("linear", None, None)
    lo, hi = float(v.min()), float(v.max())
    log = lo > 0 and hi / lo > 10
    fence = divergence_fence(v, maximize)
    diverged = np.zeros(len(v), bool) if fence is None else (v < fence if maximize else v > fence)
    t = np.log10(v) if log else v
    kept = t[~diverged]
    fences = _fences(kept) if len(kept) >= 4 else None
    within = (kept >= fences[0]) & (kept <= fences[1]) if fences else np.ones(len(kept), bool)
    outliers = int((~within).sum())  # Tukey's, among the values within the divergence fence
    few = 0 < outliers <= max(1, outlier_share * len(t))
    inside = kept[within] if few else kept  # many outliers within the fence are data: the axis keeps them
    clipped = few or bool(diverged.any())
    if log:
        return Scale("log", None, _pad((10 ** inside.min(), 10 ** inside.max()), log=True) if clipped else None)
    if not outliers or few:
        return Scale("linear", None, _pad((float(inside.min()), float(inside.max()))) if clipped else None)
    q1, q3 = np.percentile(kept, [25, 75])
    return Scale("symlog", max(abs(q1), abs(q3), q3 - q1, 1e-300),
                 _pad((float(kept.min()), float(kept.max()))) if clipped else None)


def _pad(limits, log=False, fraction=0.06):
    lo, hi = limits
    if log:
        a, b = math.log10(lo), math.log10(hi)
        margin = max(b - a, 0.1) * fraction
        return 10 ** (a - margin), 10 ** (b + margin)
    margin = max(hi - lo, abs(hi) * 0.01, 1e-12) * fraction
    return lo - margin, hi + margin


def apply_scale(ax, scale):
    """Set ``ax``'s y axis to ``scale`` (see :func:`choose_scale`)."""
    if scale.kind == "log":
        ax.set_yscale("log")
        lo, hi = scale.limits or ax.get_ylim()
        if hi / lo < 1000:  # few decades: label 1-2-5 ticks with plain numbers
            ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
            ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: "%g" % value))
            ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    elif scale.kind == "symlog":
        ax.set_yscale("symlog", linthresh=scale.linthresh)
    if scale.limits:
        ax.set_ylim(*scale.limits)


def split_off_scale(y, scale):
    """Masks (inside, above, below) of ``y`` against the scale's limits."""
    y = np.asarray(y, dtype=float)
    if not scale.limits:
        return np.ones(len(y), bool), np.zeros(len(y), bool), np.zeros(len(y), bool)
    above, below = y > scale.limits[1], y < scale.limits[0]
    return ~(above | below), above, below


def draw_off_scale(ax, x, y, scale, color="black"):
    """Arrows at the top/bottom edge for points beyond the limits; returns a legend label or None."""
    _, above, below = split_off_scale(y, scale)
    if not (above.any() or below.any()):
        return None
    transform = ax.get_xaxis_transform()
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    for mask, marker, at in ((above, "^", 0.985), (below, "v", 0.015)):
        if mask.any():
            ax.plot(x[mask], np.full(mask.sum(), at), marker, color=color, markersize=7, linestyle="none",
                    transform=transform, clip_on=False, zorder=5)
    parts = []
    if above.any():
        parts.append("%d above (max %.3g)" % (above.sum(), y[above].max()))
    if below.any():
        parts.append("%d below (min %.3g)" % (below.sum(), y[below].min()))
    return "off the scale: " + ", ".join(parts)


def failure_marks(ax, x, records, y_axes=1.03):
    """``x`` marks in the status color just above the axes, one per not-ok run; returns the statuses."""
    transform = blended_transform_factory(ax.transData, ax.transAxes)
    statuses = np.array([str(r.get("status")) for r in records])
    x = np.asarray(x, dtype=float)
    for status in status_order(statuses):
        mask = statuses == status
        ax.plot(x[mask], np.full(mask.sum(), y_axes), "x", color=color(status), markersize=6, mew=1.6,
                linestyle="none", transform=transform, clip_on=False, zorder=5)
    return status_order(statuses)


def _status_legend(statuses, counts=None):
    """Legend handles for not-ok marks."""
    from matplotlib.lines import Line2D

    return [Line2D([], [], marker="x", color=color(s), linestyle="none", mew=1.6,
                   label="%s%s (x above the plot)" % (s, " (%d)" % counts[s] if counts else "")) for s in statuses]


# -- convergence (HPO) --------------------------------------------------------------------------
def convergence(records, settings):
    """Best-so-far objective against evaluation number and against wall time; not-ok runs as x above."""
    name, maximize = direction(settings)
    values = np.array([number(objective(r), np.nan) for r in records])
    best = (np.fmax if maximize else np.fmin).accumulate(values)
    ok = np.isfinite(values)
    kinds = np.array([proposal_kind(r.get("prop_type")) or "" for r in records], dtype=object)
    t0 = min((i[0] for i in map(run_interval, records) if i), default=None)
    finished = np.array([number(r.get("finished"), np.nan) for r in records])
    span = np.nanmax(finished) - t0 if t0 is not None and np.isfinite(finished).any() else 0.0
    divisor, unit = _time_unit(span)
    times = (finished - t0) / divisor if t0 is not None else np.full(len(records), np.nan)
    scale = choose_scale(values[ok], maximize=maximize)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True, layout="constrained")
    xaxes = ((np.arange(1, len(records) + 1), "evaluation number (in order of finishing)"),
             (times, "wall time since the first run started (%s)" % unit))
    not_ok = [r for r, good in zip(records, ok) if not good]
    statuses = []
    off_label = None
    for ax, (x, xlabel) in zip(axes, xaxes):
        ax.step(x, best, where="post", color="black", linewidth=2, label="best so far")
        inside, _, _ = split_off_scale(values, scale)
        for kind in [k for k in KIND_STYLE if k is not None] + [""]:
            mask = ok & inside & (kinds == kind)
            if mask.any():
                marker, colour, label = KIND_STYLE.get(kind or None)
                ax.scatter(x[mask], values[mask], marker=marker, s=marker_size(len(records), 22), color=colour,
                           alpha=0.6, label=label, zorder=3)
        off_label = draw_off_scale(ax, x[ok], values[ok], scale) or off_label
        if not_ok:
            statuses = failure_marks(ax, x[~ok], not_ok)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    apply_scale(axes[0], scale)
    axes[0].set_ylabel("%s (%s is better)" % (name, better(maximize)))
    handles, _ = axes[0].get_legend_handles_labels()
    counts = collections.Counter(str(r.get("status")) if r.get("status") != OK else "ok, no objective"
                                 for r in not_ok)
    handles += _status_legend(statuses, counts)
    if off_label:
        from matplotlib.lines import Line2D
        handles.append(Line2D([], [], marker="^", color="black", linestyle="none", label=off_label))
    axes[1].legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    found = "best %s = %.4g" % (name, best[-1]) if ok.any() else "no successful run yet"
    failed = ", ".join("%d %s" % (n, s) for s, n in counts.items())
    fig.suptitle("HPO convergence: %s after %d runs%s%s" % (
        found, len(records), " (%s)" % failed if failed else "",
        "; y axis: %s" % scale.kind if scale.kind != "linear" else ""))
    return fig


# -- objective against each parameter -----------------------------------------------------------
def is_numeric(values):
    """Numbers with enough distinct values for a scatter plot (few repeated levels make a box plot)."""
    if not values or not all(number(v) is not None for v in values):
        return False
    levels = len(set(values))
    return levels > 5 or len(values) < 2 * levels


def label(value):
    """A discrete level as text; lists as their items joined by spaces."""
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def level_key(text):
    """Order levels numerically when they are numbers, else alphabetically."""
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def _log_scale(values, ratio=100):
    values = [v for v in values if v is not None]
    return bool(values) and min(values) > 0 and max(values) / min(values) > ratio


def params(records, settings):
    """Objective against each hyperparameter: scatter for numeric ones, box plots for discrete ones, and
    every run that is not ok as an x above its parameter value (discrete levels count their failures)."""
    name, maximize = direction(settings)
    runs = [r for r in records if isinstance(r.get("params"), dict)]
    names = list(dict.fromkeys(key for r in runs for key in r["params"]))
    constant = [k for k in names if len({label(r["params"].get(k)) for r in runs}) == 1]
    names = [k for k in names if k not in constant] or names
    ok = [r for r in runs if objective(r) is not None]
    if not names or not runs:
        return None
    best = best_record(ok, maximize)
    scale = choose_scale([objective(r) for r in ok], maximize=maximize)
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 1.2 + 3.9 * nrows), sharey=True, squeeze=False,
                             layout="constrained")
    statuses, off_label = set(), None
    for ax, param in zip(axes.flat, names):
        have = [r for r in runs if r["params"].get(param) is not None]
        values = [r["params"][param] for r in have]
        good = np.array([objective(r) is not None for r in have], dtype=bool)
        if is_numeric(values):
            x = np.array(values, dtype=float)
            if _log_scale(values):
                ax.set_xscale("log")
        else:
            labels = sorted(set(map(label, values)), key=level_key)
            level = np.array([labels.index(label(v)) + 1 for v in values])
            per_level = [[objective(r) for r, lv, g in zip(have, level, good) if g and lv == n]
                         for n in range(1, len(labels) + 1)]
            ax.boxplot([p if p else [np.nan] for p in per_level], widths=0.5, showfliers=False,
                       medianprops={"color": "black"})
            ticks, tick_colors = [], []
            for n, text in enumerate(labels, start=1):
                total = int((level == n).sum())
                bad = int(((level == n) & ~good).sum())
                ticks.append(text if not bad else "%s\n%d/%d not ok" % (text, bad, total))
                tick_colors.append("black" if not bad else STATUS_COLORS[CRASHED] if bad == total
                                   else STATUS_COLORS[FAILED])
            ax.set_xticks(range(1, len(labels) + 1), ticks)
            for tick, tick_color in zip(ax.get_xticklabels(), tick_colors):
                tick.set_color(tick_color)
            if sum(len(t.split("\n")[0]) for t in ticks) > 30:
                plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
            ax.set_xlim(0.4, len(labels) + 0.6)
            x = level + np.random.default_rng(0).uniform(-0.12, 0.12, len(level))  # jitter: see every run
        okruns = [r for r, g in zip(have, good) if g]
        _scatter_runs(ax, x[good], okruns, best, scale)
        off_label = draw_off_scale(ax, x[good], [objective(r) for r in okruns], scale) or off_label
        if (~good).any():
            statuses.update(failure_marks(ax, x[~good], [r for r, g in zip(have, good) if not g]))
        title = param if len(have) == len(runs) else "%s (in %d of %d runs)" % (param, len(have), len(runs))
        ax.set_title(title, fontsize=10, pad=24)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    apply_scale(axes[0, 0], scale)
    for row in axes:
        row[0].set_ylabel(name)
    not_ok = len(runs) - len(ok)
    kinds = {proposal_kind(r.get("prop_type")) for r in ok}
    marks = ", ".join("%s: %s" % (KIND_STYLE[k][2], _marker_word(KIND_STYLE[k][0])) for k in KIND_STYLE
                      if k in kinds and k is not None) or "dots: runs"
    extra = []
    if not_ok:
        extra.append("x above a panel: %d run%s not ok (%s)" % (
            not_ok, "" if not_ok == 1 else "s", ", ".join(s for s in status_order(statuses))))
    if off_label:
        extra.append("arrows: " + off_label)
    same = [k for k in constant if k not in names]
    if same:
        extra.append("the same in every run: " + ", ".join(
            "%s=%s" % (k, _cell(runs[0]["params"].get(k), 16)) for k in same[:6]) + (", ..." if len(same) > 6 else ""))
    fig.suptitle("%s against each hyperparameter: %d runs, %d ok (%s is better)\n%s, red star: the best run%s"
                 % (name, len(runs), len(ok), better(maximize), marks, "\n" + "; ".join(extra) if extra else ""))
    return fig


def _marker_word(marker):
    return {"s": "squares", "o": "dots", "D": "diamonds"}.get(marker, "marks")


def _scatter_runs(ax, x, runs, best, scale):
    """Ok runs by how they were proposed, a star for the best; points off the scale are left to arrows."""
    if not runs:
        return
    y = np.array([objective(r) for r in runs])
    inside, _, _ = split_off_scale(y, scale)
    kinds = np.array([proposal_kind(r.get("prop_type")) for r in runs], dtype=object)
    for kind, (marker, colour, _) in KIND_STYLE.items():
        mask = inside & np.array([k == kind for k in kinds], dtype=bool)
        if mask.any():
            ax.scatter(x[mask], y[mask], marker=marker, s=marker_size(len(runs), 18), color=colour, alpha=0.6,
                       zorder=3)
    is_best = np.array([r is best for r in runs], dtype=bool) & inside
    ax.scatter(x[is_best], y[is_best], marker="*", s=160, color=BEST_COLOR, edgecolor="black", zorder=4)


# -- UPF: one row per line ----------------------------------------------------------------------
def upf_lines(records, settings, max_lines=UPF_TABLE_MAX_LINES):
    """A table-like figure: one row per UPF line (best first), the parameters that differ between
    lines, and the objective as a dot on a shared axis, or the status and reason of a run not ok."""
    if not records or len(records) > max_lines:
        return None
    name, maximize = direction(settings)
    ok = sorted([r for r in records if objective(r) is not None], key=objective, reverse=maximize)
    rest = [r for r in records if objective(r) is None]
    rest.sort(key=lambda r: (r.get("status") == OK, str(r.get("run_id"))))
    rows = ok + rest
    params_of = [r.get("params") if isinstance(r.get("params"), dict) else {} for r in rows]
    keys = list(dict.fromkeys(k for p in params_of for k in p))
    varying = [k for k in keys if len({label(p.get(k, "")) for p in params_of}) > 1]
    same = [k for k in keys if k not in varying]
    varying = varying[:8]
    columns = ["run"] + varying
    cells = [[_cell(r.get("run_id"))] + [_cell(p[k]) if k in p else "" for k in varying]
             for r, p in zip(rows, params_of)]
    widths = [max(len(c), max((len(row[i]) for row in cells), default=0)) for i, c in enumerate(columns)]
    char_in = 0.0755  # the width of a 9-point DejaVu Sans Mono character, in inches
    left_in = max(1.5, char_in * (sum(widths) + 2 * len(widths)))
    right_in, margin_in, gap_in, row_in = 6.0, 0.15, 0.2, 0.3
    n = len(rows)
    width_in = margin_in + left_in + gap_in + right_in + 0.8
    height_in = 0.75 + row_in * (n + 1) + (0.2 if same else 0)
    fig = plt.figure(figsize=(width_in, height_in))
    bottom, top = 0.15 / height_in, (0.15 + row_in * (n + 1)) / height_in
    table = fig.add_axes([margin_in / width_in, bottom, left_in / width_in, top - bottom])
    ax = fig.add_axes([(margin_in + left_in + gap_in) / width_in, bottom, right_in / width_in,
                       row_in * n / height_in])
    for axis in (table, ax):
        axis.set_ylim(n - 0.5, -1.5 if axis is table else -0.5)
        for i in range(0, n, 2):
            axis.axhspan(i - 0.5, i + 0.5, color="#f2f2f2", zorder=0)
    table.axis("off")
    x_in = 0.05
    for i, column in enumerate(columns):
        at = transforms.offset_copy(table.get_yaxis_transform(), fig=fig, x=x_in, units="inches")
        table.text(0, -1, column, fontsize=9, fontweight="bold", va="center", family="DejaVu Sans Mono",
                   transform=at)
        for row, values in enumerate(cells):
            status = rows[row].get("status")
            table.text(0, row, values[i], fontsize=9, va="center", family="DejaVu Sans Mono", transform=at,
                       color=color(status) if status != OK and i == 0 else "black")
        x_in += char_in * (widths[i] + 2)
    y = np.arange(n)
    values = np.array([number(objective(r), np.nan) for r in rows])
    good = np.isfinite(values)
    scale = choose_scale(values[good], maximize=maximize)
    if good.any():
        _apply_x_scale(ax, scale)
        inside, _, _ = split_off_scale(values, scale)
        ax.hlines(y[good & inside], _baseline(ax, values[good]), values[good & inside], color="#1f77b4",
                  alpha=0.35, linewidth=2)
        ax.scatter(values[good & inside], y[good & inside], color="#1f77b4", zorder=3, s=30)
        if good[0] and inside[0]:
            ax.scatter(values[0], 0, marker="*", s=200, color=BEST_COLOR, edgecolor="black", zorder=4)
        for row in np.where(good)[0]:
            ax.annotate(" %.4g" % values[row], (1.0, row), xycoords=("axes fraction", "data"), va="center",
                        fontsize=8, annotation_clip=False)
    else:
        ax.set_xticks([])
    for row in np.where(~good)[0]:
        record = rows[row]
        status = str(record.get("status"))
        text = status if status != OK else "ok, no objective"
        if status != OK:
            text += ": " + shorten(reason(record), 110)
        ax.text(0.01, row, text, transform=blended_transform_factory(ax.transAxes, ax.transData),
                va="center", fontsize=8, color=color(status) if status != OK else "black", clip_on=True)
    ax.set_yticks([])
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel("%s (%s is better)" % (name, better(maximize)))
    ax.xaxis.set_label_position("top")
    ax.xaxis.tick_top()
    counts = collections.Counter(str(r.get("status")) for r in rows)
    title = "UPF: %d lines, %s; best first" % (n, ", ".join("%d %s" % (counts[s], s) for s in status_order(counts)))
    if any(k not in p for p in params_of for k in varying):
        title += "; a blank cell: the benchmark's default"
    if same:
        shown = ", ".join("%s=%s" % (k, _cell(params_of[0][k], 16)) for k in same[:6])
        title += "\nthe same in every line: %s%s" % (shown, ", ..." if len(same) > 6 else "")
    fig.suptitle(title, fontsize=11)
    return fig


def _apply_x_scale(ax, scale):
    if scale.kind == "log":
        ax.set_xscale("log")
    elif scale.kind == "symlog":
        ax.set_xscale("symlog", linthresh=scale.linthresh)
    if scale.limits:
        ax.set_xlim(*scale.limits)


def _baseline(ax, values):
    """Where the lollipop sticks start: 0 when it is in view on a linear axis, else the smallest value."""
    lo = float(np.min(values))
    if ax.get_xscale() == "linear" and lo >= 0:
        return 0.0
    return lo


def _cell(value, limit=24):
    text = label(value) if not isinstance(value, float) else "%.4g" % value
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# -- learning curves ----------------------------------------------------------------------------
def learning_curves(records, settings, histories):
    """The objective per epoch: the best runs in color (named in the legend), every other run faded.

    ``histories`` maps run ids to the per-epoch values of the objective (runs without one are left out).
    """
    name, maximize = direction(settings)
    curves = {}
    for record in records:
        values = histories.get(record.get("run_id"))
        if values:
            curves[record["run_id"]] = np.array([number(v, np.nan) for v in values], dtype=float)
    if not curves or not any(np.isfinite(c).any() for c in curves.values()):
        return None
    by_id = {r.get("run_id"): r for r in records}
    ranked = sorted((rid for rid in curves if objective(by_id[rid]) is not None),
                    key=lambda rid: objective(by_id[rid]), reverse=maximize)
    top = ranked[:LEARNING_CURVES_HIGHLIGHT]
    others = [rid for rid in curves if rid not in top]
    shown_others = others[:LEARNING_CURVES_MAX_FADED]
    scale = choose_scale(np.concatenate([c[np.isfinite(c)] for c in curves.values()]), maximize=maximize)
    fig, ax = plt.subplots(figsize=(11, 5.2), layout="constrained")
    for rid in shown_others:
        curve = curves[rid]
        status = by_id[rid].get("status")
        ax.plot(np.arange(1, len(curve) + 1), curve, color=OTHER_COLOR if status == OK else color(status),
                alpha=0.25, linewidth=0.9, marker="." if len(curve) == 1 else None, zorder=1)
    cmap = plt.get_cmap("viridis")
    for i, rid in enumerate(top):
        curve = curves[rid]
        ax.plot(np.arange(1, len(curve) + 1), curve, color=cmap(i / max(len(top) - 1, 1) * 0.9),
                linewidth=2 if i == 0 else 1.4, marker="o" if len(curve) <= 30 else None, markersize=3,
                label="%d. %s (%.4g)" % (i + 1, rid, objective(by_id[rid])), zorder=3)
    pruned = [rid for rid in curves if by_id[rid].get("status") == PRUNED]
    for rid in pruned:  # where early discarding stopped them
        curve = curves[rid]
        ax.plot([len(curve)], [curve[-1]], linestyle="none", marker="x", markersize=5, color=color(PRUNED), zorder=2,
                label="pruned (stopped here)" if rid == pruned[0] else None)
    apply_scale(ax, scale)
    epochs = max(len(c) for c in curves.values())
    for rung in _rungs(settings, epochs):
        ax.axvline(rung, color="#777777", linewidth=0.8, linestyle=":", zorder=0)
    ax.set_xlim(0.5, epochs + 0.5)
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("%s (%s is better)" % (name, better(maximize)))
    ax.grid(alpha=0.3)
    if top or pruned:
        ax.legend(title="best %d runs (final %s)" % (len(top), settings.get("objective") or "objective"),
                  fontsize=8, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    faded = "faded: the %d other run%s" % (len(others), "" if len(others) == 1 else "s") if others else "no other run"
    if len(others) > len(shown_others):
        faded += " (%d drawn)" % len(shown_others)
    if any(by_id[r].get("status") != OK for r in shown_others):
        faded += "; runs not ok in their status color"
    off = ""
    if scale.limits:
        _, above, below = split_off_scale(np.concatenate(list(curves.values())), scale)
        off = "\n%d value%s off the scale (%s)" % (above.sum() + below.sum(), "" if above.sum() + below.sum() == 1
                                                   else "s", ", ".join(
            part for part in ("max %.3g" % max(np.nanmax(c) for c in curves.values()) if above.any() else "",
                              "min %.3g" % min(np.nanmin(c) for c in curves.values()) if below.any() else "")
            if part))
    rungs = ""
    if settings.get("prune") in ("asha", "median"):
        rungs = "; %d pruned (x), %s dotted" % (len(pruned), "rungs" if settings["prune"] == "asha" else
                                                 "first epoch a run may be stopped at")
    ax.set_title("Learning curves: %s per epoch of %d runs; %s%s%s%s" % (
        name, len(curves), faded, rungs, "; y axis: %s" % scale.kind if scale.kind != "linear" else "", off),
        fontsize=10)
    return fig


def _rungs(settings, epochs):
    """The epochs early discarding judged runs at (asha: its rungs; median: the first one), up to ``epochs``."""
    rule, first, eta = settings.get("prune"), settings.get("min_epochs") or 1, settings.get("eta") or 3
    if rule == "median":
        return [first] if first < epochs else []
    if rule != "asha" or not isinstance(first, int) or not isinstance(eta, int) or eta < 2:
        return []
    out, rung = [], first
    while rung < epochs:
        out.append(rung)
        rung *= eta
    return out
# -- parameter importance -----------------------------------------------------------------------
def importance(records, settings):
    """Horizontal bars: the share of the objective ranks' variation each parameter explains
    (:mod:`candle_mbo.reporting.importance`); None when no parameter varies or the runs are too few."""
    from .importance import importance as compute

    result = compute(records)
    if result is None or not result.shares:
        return None
    name, _ = direction(settings)
    shares = list(reversed(result.shares))  # the largest at the top
    rest = max(0.0, 1.0 - result.explained)
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.35 * (len(shares) + 1)), layout="constrained")
    labels = ["interactions and noise"] + [label(n) for n, _ in shares]
    values = [rest] + [share for _, share in shares]
    colors = ["#cccccc"] + ["#1f77b4"] * len(shares)
    bars = ax.barh(range(len(values)), [100 * v for v in values], color=colors)
    for bar, value in zip(bars, values):
        ax.text(bar.get_width() + 1, bar.get_y() + bar.get_height() / 2, "%.0f%%" % (100 * value), va="center",
                fontsize=9)
    ax.set_yticks(range(len(values)), labels)
    ax.set_xlim(0, 110)
    ax.set_xlabel("share of the variation in %s ranks (%%)" % name)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("Parameter importance: what each parameter explains, from %d ok runs\n(main effects of an "
                 "additive model of the ranks; the rest is interactions and noise)" % result.runs, fontsize=10)
    return fig


# -- timeline -----------------------------------------------------------------------------------
def timeline(records, settings, resumed=0, interrupted=()):
    """A Gantt chart of the runs per worker rank, colored by status, with the workers' utilization.

    ``interrupted``: ``[(run_id, worker, started, stopped)]`` of the attempts a stop signal cut short
    (Data.interrupted_attempts), drawn hatched in grey where they ran.
    """
    runs = [(r, run_interval(r)) for r in records if isinstance(r.get("worker"), int)]
    runs = [(r, i) for r, i in runs if i is not None]
    if not runs:
        return None
    usage = utilization([r for r, _ in runs], number(settings.get("workers"), 0))
    t0 = min([usage.start] + [a[2] for a in interrupted])
    t1 = max([usage.end] + [a[3] for a in interrupted])
    divisor, unit = _time_unit(t1 - t0)
    width = max((t1 - t0) / divisor, 1.0 / divisor)
    min_bar = width * MIN_BAR_FRACTION
    workers = sorted({r["worker"] for r, _ in runs} | {a[1] for a in interrupted})
    fig, ax = plt.subplots(figsize=(12, min(12, 2.0 + 0.4 * len(workers))), layout="constrained")
    statuses = status_order(r.get("status") for r, _ in runs)
    handles = []
    for status in statuses:  # one collection per worker and status: fast for tens of thousands of runs
        mine = collections.defaultdict(list)
        for r, (s, f) in runs:
            if r.get("status") == status:
                mine[r["worker"]].append(((s - t0) / divisor, max((f - s) / divisor, min_bar)))
        for worker, spans in mine.items():
            ax.broken_barh(spans, (worker - 0.35, 0.7), facecolors=color(status), edgecolors="black",
                           linewidth=0.3 if len(spans) < 2000 else 0, zorder=2 if status == OK else 3)
        handles.append(matplotlib.patches.Patch(facecolor=color(status), edgecolor="black", linewidth=0.3,
                                                label="%s (%d)" % (status, sum(map(len, mine.values())))))
    if interrupted:
        cut = collections.defaultdict(list)
        for _, worker, started, stopped in interrupted:
            cut[worker].append(((started - t0) / divisor, max((stopped - started) / divisor, min_bar)))
        for worker, spans in cut.items():
            ax.broken_barh(spans, (worker - 0.35, 0.7), facecolors=INTERRUPTED_COLOR, edgecolors="black",
                           linewidth=0.3, hatch="///", zorder=1)
        handles.append(matplotlib.patches.Patch(facecolor=INTERRUPTED_COLOR, edgecolor="black", linewidth=0.3,
                                                hatch="///", label="interrupted attempt (%d)" % len(interrupted)))
    if len(workers) <= 40:
        ax.set_yticks(workers, ["rank %d" % w for w in workers])
    ax.set_xlim(0, width * 1.01)
    ax.set_xlabel("time since the first run started (%s); bars are at least %.1f%% of the width wide"
                  % (unit, 100 * MIN_BAR_FRACTION))
    ax.set_ylabel("worker")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=9)
    ax.set_ylim(max(workers) + 0.6, min(workers) - 0.6)
    note = ""
    if resumed:
        note = "\n(resumed %d time%s: the time between jobs counts as idle)" % (resumed, "" if resumed == 1 else "s")
    ax.set_title("%d runs: %s%s" % (len(runs), describe_utilization(usage), note), fontsize=10)
    return fig


def save(fig, path, dpi=100):
    """Save ``fig`` as PNG and close it."""
    try:
        fig.savefig(path, dpi=dpi, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
