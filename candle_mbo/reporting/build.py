"""The report of an experiment directory: plots and one self-contained report.html.

The results log answers "has the search converged, which hyperparameters matter, why did runs fail,
were the workers busy?" only after some digging; the report answers at a glance. It reads nothing but
experiment.yaml, results.jsonl (and each run's result.json for its learning curve), so it works on a
finished experiment as well as on one that is still running, or was killed::

    python -m candle_mbo.report experiments/EXP001

prints the summary and writes, into the experiment directory, convergence.png (HPO), params.png,
importance.png (when enough runs show which parameters matter), learning_curves.png (when runs report a
history of the objective), timeline.png and report.html: the
summary, the best parameters, the plots (embedded) and a sortable, filterable table of every run. The
page needs no network and no server: copy that one file to a laptop and open it.
"""

import argparse
import json
import math
import os
import sys

import yaml

from ..errors import UsageError
from .progress import summary

PLOT_NAMES = ("convergence.png", "params.png", "importance.png", "learning_curves.png", "timeline.png")
HTML_NAME = "report.html"


class CorruptResults(UsageError):
    """A line in the middle of results.jsonl is not JSON."""


# -- reading -------------------------------------------------------------------------------------
def read_records(path):
    """The run records of a results log, in file order (see read_journal)."""
    return read_journal(path)[0]


def read_journal(path):
    """``(records, stops)``: the run records of a results log in file order, and its ``interrupted`` events.

    Tolerant where a log legitimately differs from a list of records: a torn last line (a kill during
    the write) is skipped, and so are the other journal events. A later record of the same run id
    replaces nothing: the first one is kept, as the store does. A line in the middle that is not JSON
    raises CorruptResults naming the file and line.
    """
    if not os.path.exists(path):
        return [], []
    with open(path, "rb") as handle:
        data = handle.read()
    *complete, tail = data.split(b"\n")
    records, stops, seen = [], [], set()
    for number, raw in enumerate(complete + [tail], start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            if number == len(complete) + 1:
                break  # the torn last line
            raise CorruptResults("%s:%d: corrupt record (%s)" % (path, number, exc)) from None
        if isinstance(record, dict) and record.get("event") == "interrupted":
            stops.append(record)
        if not isinstance(record, dict) or "status" not in record or "run_id" not in record:
            continue
        record["run_id"] = str(record["run_id"])
        if record["run_id"] in seen:
            continue
        seen.add(record["run_id"])
        records.append(record)
    return records, stops


class Data:
    """What the report shows: the experiment's folder, metadata, settings, kind and records.

    ``records`` are sorted by finish time; ``meta`` is experiment.yaml ({} when missing or unusable).
    """

    def __init__(self, path):
        self.path = os.path.abspath(path)
        meta = {}
        try:
            with open(os.path.join(self.path, "experiment.yaml"), encoding="utf-8") as handle:
                meta = yaml.safe_load(handle)
        except (OSError, yaml.YAMLError):
            pass
        self.meta = meta if isinstance(meta, dict) else {}
        settings = self.meta.get("settings")
        self.settings = settings if isinstance(settings, dict) else {}
        self.records, self.stops = read_journal(os.path.join(self.path, "results.jsonl"))
        self.epoch_curves = read_epoch_curves(os.path.join(self.path, "results.jsonl"))
        self.records.sort(key=lambda r: _float(r.get("finished"), math.inf))
        kind = self.meta.get("kind") or self.settings.get("kind")
        if kind not in ("hpo", "upf"):
            kind = "hpo" if any("iteration" in r for r in self.records) else "upf"
        self.kind = kind
        resumed = self.meta.get("resumed")
        self.resumed = resumed if isinstance(resumed, int) and not isinstance(resumed, bool) else 0

    @property
    def objective_name(self):
        return str(self.settings.get("objective") or "objective")

    @property
    def maximize(self):
        return self.settings.get("maximize") is True

    @property
    def n_workers(self):
        workers = self.settings.get("workers")
        return workers if isinstance(workers, int) and not isinstance(workers, bool) else 0

    def interrupted_attempts(self):
        """``[(run_id, worker, started, stopped)]``: the runs a signal stopped while they ran (from the
        journal's interrupted events), except those that still finished in that last moment."""
        finished = {r["run_id"]: _float(r.get("started")) for r in self.records}
        attempts = []
        for stop in self.stops:
            stopped = _float(stop.get("time"))
            running = stop.get("running") if isinstance(stop.get("running"), dict) else {}
            for run_id, where in running.items():
                started = _float(where.get("started")) if isinstance(where, dict) else None
                worker = where.get("worker") if isinstance(where, dict) else None
                if started is None or stopped is None or not isinstance(worker, int):
                    continue
                record_start = finished.get(str(run_id))
                if record_start is not None and started <= record_start <= stopped:
                    continue  # this attempt is the record: it finished ok as the job stopped
                attempts.append((str(run_id), worker, started, stopped))
        return attempts

    def has_run_dirs(self):
        return os.path.isdir(os.path.join(self.path, "runs"))

    def logs_hint(self):
        """Where a run's output is, for the summary."""
        if self.settings.get("no_run_dirs") or not self.has_run_dirs():
            return "logs/*.log (--no-run-dirs)"
        return "runs/<run_id>/model.log"

    def summary(self):
        """The summary lines (progress.summary, over every record; no wall time known after the fact)."""
        return summary(self.records, self.objective_name, self.maximize, None, None, self.n_workers, self.path,
                       logs=self.logs_hint())

    def best(self):
        """{"run_id", "objective", "params"} of the best ok run, or None."""
        from .plots import best_record

        record = best_record(self.records, self.maximize)
        if record is None:
            return None
        return {"run_id": record["run_id"], "objective": record.get("objective"),
                "params": record.get("params") if isinstance(record.get("params"), dict) else {}}

    def histories(self, key=None):
        """{run_id: per-epoch values of ``key`` (the objective)}: from each record's ``history``
        (--no-run-dirs) or else runs/<run_id>/result.json, else the run's epoch reports in the journal;
        runs without any are left out."""
        key = key or self.objective_name
        out = {}
        for record in self.records:
            history = record.get("history")
            if not isinstance(history, dict):
                history = _read_history(os.path.join(self.path, "runs", record["run_id"], "result.json"))
            if not isinstance(history, dict) or not history.get(key):
                history = self.epoch_curves.get(record["run_id"], history)
            values = history.get(key) if isinstance(history, dict) else None
            if isinstance(values, list) and values:
                out[record["run_id"]] = values
            elif _float(values) is not None:
                out[record["run_id"]] = [values]
        return out


def read_epoch_curves(path):
    """{run_id: {metric: [value per epoch]}} from the journal's epoch events (the last report of an epoch
    counts; an epoch without the metric is None). Unreadable lines are skipped: read_records judges them."""
    by_run = {}
    try:
        with open(path, "rb") as handle:
            for raw in handle:
                if b'"epoch"' not in raw:
                    continue
                try:
                    entry = json.loads(raw.decode("utf-8"))
                except (ValueError, UnicodeDecodeError):
                    continue
                if isinstance(entry, dict) and entry.get("event") == "epoch" and isinstance(entry.get("metrics"), dict):
                    by_run.setdefault(str(entry.get("run_id")), {}).setdefault(entry.get("epoch"), {}).update(
                        entry["metrics"])
    except OSError:
        return {}
    curves = {}
    for run_id, epochs in by_run.items():
        order = sorted((e for e in epochs if _float(e) is not None), key=float)
        names = {name for e in order for name in epochs[e]}
        curves[run_id] = {name: [epochs[e].get(name) for e in order] for name in names}
    return curves


def _read_history(path):
    try:
        with open(path, encoding="utf-8") as handle:
            result = json.load(handle)
    except (OSError, ValueError):
        return None
    return result.get("history") if isinstance(result, dict) else None


def _float(value, default=None):
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return default


# -- rendering -----------------------------------------------------------------------------------
def render(experiment_dir, html=True):
    """Write the plots and report.html into ``experiment_dir``; return the paths written.

    Nothing is written (and [] returned) while no run has finished. A plot that has nothing to show
    this time (say, no run reported a history) is removed if an earlier report left one.
    """
    return _render(Data(experiment_dir), html)


def _plots():
    try:
        from . import plots
    except ImportError:  # an optional dependency: candle_mbo[report]
        raise UsageError("the report needs matplotlib: pip install 'candle_mbo[report]' "
                         "(Debian: apt-get install python3-matplotlib)") from None
    return plots


def _render(data, html=True):
    plots = _plots()
    if not data.records:
        return []
    figures = {
        "convergence.png": (lambda: plots.convergence(data.records, data.settings)) if data.kind == "hpo" else None,
        "params.png": lambda: _params_figure(plots, data),
        "importance.png": lambda: plots.importance(data.records, data.settings),
        "learning_curves.png": lambda: plots.learning_curves(data.records, data.settings, data.histories()),
        "timeline.png": lambda: plots.timeline(data.records, data.settings, data.resumed,
                                               data.interrupted_attempts()),
    }
    paths = []
    for name in PLOT_NAMES:
        path = os.path.join(data.path, name)
        fig = figures[name]() if figures[name] else None
        if fig is None:
            if os.path.exists(path):
                os.unlink(path)
            continue
        paths.append(_save_atomic(path, lambda tmp, fig=fig: plots.save(fig, tmp)))
    if html:
        try:
            from .html import page
        except ImportError:
            raise UsageError("report.html needs Jinja2: pip install jinja2 (Debian: apt-get install "
                             "python3-jinja2)") from None
        text = page(data, paths)
        paths.append(_save_atomic(os.path.join(data.path, HTML_NAME), lambda tmp: _write(tmp, text)))
    return paths


def _params_figure(plots, data):
    if data.kind == "upf" and len(data.records) <= plots.UPF_TABLE_MAX_LINES:
        return plots.upf_lines(data.records, data.settings)
    return plots.params(data.records, data.settings)


def _write(path, text):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def _save_atomic(path, write):
    """Call ``write(tmp)`` for a temporary file in the same folder, then rename it to ``path``."""
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, ".%s.%d.tmp" % (name, os.getpid()))
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


# -- command line --------------------------------------------------------------------------------
class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError("%s (see --help)" % message)


def main(argv=None):
    """``python -m candle_mbo.report DIR``: print the summary, write the report, print its paths; 2 on a
    usage error."""
    parser = _ArgumentParser(
        prog="python -m candle_mbo.report", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Summarize an experiment and write its report into DIR: report.html (one self-contained "
                    "page: summary, best parameters, plots, a sortable table of every run) and the plots "
                    "convergence.png (HPO), params.png, importance.png, learning_curves.png, timeline.png.",
        epilog="example:\n  python -m candle_mbo.report experiments/EXP001")
    parser.add_argument("directory", metavar="DIR", help="an experiment directory (holding results.jsonl)")
    try:
        directory = parser.parse_args(argv).directory
        if not os.path.isdir(directory):
            raise UsageError("%s is not a directory" % directory)
        if not os.path.isfile(os.path.join(directory, "results.jsonl")):
            raise UsageError("%s holds no results.jsonl (not an experiment directory, or no run has finished)"
                             % directory)
        data = Data(directory)
        paths = _render(data)
    except UsageError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    if not data.records:
        print("no finished run yet: nothing to report", file=sys.stderr)
        return 0
    for line in data.summary():
        print(line)
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
