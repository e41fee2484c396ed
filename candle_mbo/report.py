"""Plots of an experiment directory: has the search converged, which hyperparameters matter, were the workers busy?

The results log answers these questions only after some digging; three PNG files in the experiment
directory answer them at a glance. The report reads nothing but experiment.yaml and results.jsonl, so it
works on a finished experiment as well as on one that is still running (or was killed)::

    python -m candle_mbo.report experiments/EXP001

writes convergence.png (HPO only), params.png and timeline.png and prints their paths.
"""

import argparse
import math
import os
import sys

import numpy as np
import yaml

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker
except ImportError:  # an optional dependency: candle_mbo[report]
    plt = None

from .errors import UsageError
from .status import CRASHED, FAILED, OK, TIMEOUT
from .store import load_results

STATUS_COLORS = {OK: "#4daf4a", FAILED: "#ff7f00", TIMEOUT: "#984ea3", CRASHED: "#e41a1c"}
OTHER_COLOR = "#999999"
INIT_COLOR, PROPOSAL_COLOR, BEST_COLOR = "#888888", "#1f77b4", "#d62728"
DPI = 100


def render(experiment_dir):
    """Write the report's PNG files into ``experiment_dir``; return their paths ([] without any record)."""
    if plt is None:
        raise UsageError("the report needs matplotlib: pip install 'candle_mbo[report]'")
    settings, kind, records = _load(experiment_dir)
    plots = [("params.png", _params), ("timeline.png", _timeline)]
    if kind == "hpo":
        plots.insert(0, ("convergence.png", _convergence))
    paths = []
    for name, draw in plots:
        fig = draw(records, settings) if records else None
        if fig is not None:
            paths.append(_save(fig, os.path.join(experiment_dir, name)))
    return paths


# -- reading -----------------------------------------------------------------------------------
def _load(experiment_dir):
    """(settings, kind, records): records sorted by finish time; settings {} when experiment.yaml is unusable."""
    meta = {}
    try:
        with open(os.path.join(experiment_dir, "experiment.yaml"), encoding="utf-8") as handle:
            meta = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError):
        pass
    meta = meta if isinstance(meta, dict) else {}
    settings = meta.get("settings") if isinstance(meta.get("settings"), dict) else {}
    records = load_results(os.path.join(experiment_dir, "results.jsonl"), warn=lambda message: None)
    records.sort(key=lambda r: _number(r.get("finished"), math.inf))
    kind = meta.get("kind")
    if kind not in ("hpo", "upf"):
        kind = "hpo" if any("iteration" in r for r in records) else "upf"
    return settings, kind, records


def _number(value, default=None):
    """``value`` as a finite float, or ``default``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return default


def _objective(record):
    """The objective of an ok run, or None."""
    return _number(record.get("objective")) if record.get("status") == OK else None


def _direction(settings):
    """(objective name, maximize)."""
    return str(settings.get("objective") or "objective"), settings.get("maximize") is True


def _is_initial(record):
    return record.get("iteration") == 0


def _log_scale(values, ratio=100):
    """Whether ``values`` are all positive and span more than ``ratio`` (two decades by default)."""
    values = [v for v in values if v is not None]
    return bool(values) and min(values) > 0 and max(values) / min(values) > ratio


def _objective_axis(ax, values):
    """A log y axis when a positive objective spans more than a factor 10 (so that the best runs stay apart)."""
    if not _log_scale(values, ratio=10):
        return
    ax.set_yscale("log")
    if max(values) / min(values) < 1000:  # few decades: label 1-2-5 ticks with plain numbers
        ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: "%g" % value))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def _duration(seconds):
    """A span of time for a title: 42 s, 3.5 min, 2.1 h."""
    if seconds < 120:
        return "%.0f s" % seconds
    return "%.1f min" % (seconds / 60) if seconds < 7200 else "%.1f h" % (seconds / 3600)


def _color(status):
    return STATUS_COLORS.get(status, OTHER_COLOR)


# -- plots -------------------------------------------------------------------------------------
def _convergence(records, settings):
    """Best-so-far objective against evaluation number and against wall time; not-ok runs as x at the top."""
    name, maximize = _direction(settings)
    values = np.array([_number(_objective(r), np.nan) for r in records])
    best = (np.fmax if maximize else np.fmin).accumulate(values)
    ok = np.isfinite(values)
    initial = np.array([_is_initial(r) for r in records])
    statuses = np.array(["no objective" if r.get("status") == OK else str(r.get("status")) for r in records])
    t0 = min(_number(r.get("started"), math.inf) for r in records)
    minutes = np.array([(_number(r.get("finished"), np.nan) - t0) / 60 for r in records])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    xaxes = ((np.arange(1, len(records) + 1), "evaluation number (in order of finishing)"),
             (minutes, "wall time since the first start (minutes)"))
    for ax, (x, xlabel) in zip(axes, xaxes):
        ax.step(x, best, where="post", color="black", linewidth=2, label="best so far")
        for mask, marker, color, label in ((ok & initial, "s", INIT_COLOR, "initial design"),
                                           (ok & ~initial, "o", PROPOSAL_COLOR, "proposal")):
            if mask.any():
                ax.scatter(x[mask], values[mask], marker=marker, s=22, color=color, alpha=0.5, label=label)
        for status in sorted(set(statuses[~ok])):
            mask = ~ok & (statuses == status)
            ax.plot(x[mask], np.full(mask.sum(), 0.97), "x", color=_color(status), markersize=6,
                    transform=ax.get_xaxis_transform(), label=status)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    _objective_axis(axes[0], values[ok])
    axes[0].set_ylabel("%s (%s is better)" % (name, "higher" if maximize else "lower"))
    axes[0].legend(fontsize=8, loc="best")
    found = "best %s = %.4g" % (name, best[-1]) if ok.any() else "no successful run yet"
    counts = ", ".join("%d %s" % ((statuses == s).sum(), s) for s in sorted(set(statuses[~ok])))
    fig.suptitle("HPO convergence: %s after %d runs%s" % (found, len(records), " (%s)" % counts if counts else ""))
    return fig


def _params(records, settings):
    """Objective against each hyperparameter: scatter for numeric ones, box plots for discrete ones."""
    name, maximize = _direction(settings)
    ok = [r for r in records if _objective(r) is not None and isinstance(r.get("params"), dict)]
    names = list(dict.fromkeys(key for r in ok for key in r["params"]))
    if not names:
        return None
    best = (max if maximize else min)(ok, key=_objective)
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.4 * nrows), sharey=True, squeeze=False)
    for ax, param in zip(axes.flat, names):
        runs = [r for r in ok if r["params"].get(param) is not None]
        values = [r["params"][param] for r in runs]
        if _is_numeric(values):
            x = np.array(values, dtype=float)
            if _log_scale(values):
                ax.set_xscale("log")
        else:
            labels = sorted(set(map(_label, values)), key=_level_key)
            level = np.array([labels.index(_label(v)) + 1 for v in values])
            ax.boxplot([[_objective(r) for r in np.array(runs)[level == n]] for n in range(1, len(labels) + 1)],
                       widths=0.5, showfliers=False, medianprops={"color": "black"})
            ax.set_xticks(range(1, len(labels) + 1), labels)
            if sum(map(len, labels)) > 30:
                plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
            x = level + np.random.default_rng(0).uniform(-0.12, 0.12, len(level))  # jitter: see every run
        _scatter_runs(ax, x, runs, best)
        ax.set_title(param if len(runs) == len(ok) else "%s (%d of %d runs)" % (param, len(runs), len(ok)),
                     fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    _objective_axis(axes[0, 0], [_objective(r) for r in ok])
    for row in axes:
        row[0].set_ylabel(name)
    marks = "grey squares: initial design, blue dots: proposals" if any(map(_is_initial, ok)) else "dots: runs"
    fig.suptitle("%s against each hyperparameter: %d successful runs (%s is better)\n%s, red star: the best run"
                 % (name, len(ok), "higher" if maximize else "lower", marks))
    return fig


def _is_numeric(values):
    """Numbers with enough distinct values for a scatter plot (few repeated levels make a box plot)."""
    if not all(_number(v) is not None for v in values):
        return False
    levels = len(set(values))
    return levels > 5 or len(values) < 2 * levels


def _label(value):
    """A discrete level as text; lists as their items joined by spaces."""
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def _level_key(label):
    """Order levels numerically when they are numbers, else alphabetically."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def _scatter_runs(ax, x, runs, best):
    """Dots for runs (initial design grey squares, proposals blue), a star for the best run."""
    y = np.array([_objective(r) for r in runs])
    initial = np.array([_is_initial(r) for r in runs], dtype=bool)
    ax.scatter(x[initial], y[initial], marker="s", s=18, color=INIT_COLOR, alpha=0.6, zorder=3)
    ax.scatter(x[~initial], y[~initial], marker="o", s=18, color=PROPOSAL_COLOR, alpha=0.6, zorder=3)
    is_best = np.array([r is best for r in runs], dtype=bool)
    ax.scatter(x[is_best], y[is_best], marker="*", s=160, color=BEST_COLOR, edgecolor="black", zorder=4)


def _timeline(records, settings):
    """A Gantt chart of the runs per worker rank, colored by status, with the workers' utilization."""
    runs = [(r, _number(r.get("started")), _number(r.get("finished"))) for r in records]
    runs = [(r, s, f) for r, s, f in runs if s is not None and f is not None and f >= s
            and isinstance(r.get("worker"), int)]
    if not runs:
        return None
    t0, t1 = min(s for _, s, _ in runs), max(f for _, _, f in runs)
    workers = sorted({r["worker"] for r, _, _ in runs})
    n_workers = max(len(workers), int(_number(settings.get("workers"), 0)))
    fig, ax = plt.subplots(figsize=(12, min(12, 1.8 + 0.4 * len(workers))))
    present = {r.get("status") for r, _, _ in runs}
    statuses = [s for s in STATUS_COLORS if s in present] + sorted(present - set(STATUS_COLORS), key=str)
    for status in statuses:
        mine = [(r, s, f) for r, s, f in runs if r.get("status") == status]
        ax.barh([r["worker"] for r, _, _ in mine], [(f - s) / 60 for _, s, f in mine],
                left=[(s - t0) / 60 for _, s, _ in mine], height=0.7, color=_color(status),
                edgecolor="black", linewidth=0.3, label="%s (%d)" % (status, len(mine)))
    if len(workers) <= 40:
        ax.set_yticks(workers, ["rank %d" % w for w in workers])
    ax.invert_yaxis()
    ax.set_xlim(0, max((t1 - t0) / 60, 1 / 60) * 1.01)
    ax.set_xlabel("time since the first start (minutes)")
    ax.set_ylabel("worker")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=9)
    busy = sum(f - s for _, s, f in runs)
    span = t1 - t0
    utilization = "%.0f%%" % (100 * busy / (n_workers * span)) if span > 0 else "n/a"
    ax.set_title("Runs per worker: utilization %s (busy time / (%d workers x %s)), %d runs"
                 % (utilization, n_workers, _duration(span), len(runs)))
    return fig


# -- output ------------------------------------------------------------------------------------
def _save(fig, path):
    """Save ``fig`` as PNG atomically (a temporary file in the same folder, then a rename); close it."""
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, ".%s.%d.tmp" % (name, os.getpid()))
    try:
        fig.tight_layout()
        fig.savefig(tmp, dpi=DPI, format="png")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        plt.close(fig)
    return path


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError("%s (see --help)" % message)


def main(argv=None):
    """``python -m candle_mbo.report DIR``: render the report and print the paths; 2 on a usage error."""
    parser = _ArgumentParser(
        prog="python -m candle_mbo.report", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Plot an experiment: convergence.png (HPO), params.png and timeline.png, written into DIR.",
        epilog="example:\n  python -m candle_mbo.report experiments/EXP001")
    parser.add_argument("directory", metavar="DIR", help="an experiment directory (holding results.jsonl)")
    try:
        directory = parser.parse_args(argv).directory
        if not os.path.isdir(directory):
            raise UsageError("%s is not a directory" % directory)
        if not os.path.isfile(os.path.join(directory, "results.jsonl")):
            raise UsageError("%s holds no results.jsonl (not an experiment directory, or no run has finished)"
                             % directory)
        paths = render(directory)
    except UsageError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    if not paths:
        print("no finished run yet: nothing to plot", file=sys.stderr)
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
