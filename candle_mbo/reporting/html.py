"""report.html: one self-contained page per experiment, to open after ``scp`` on a laptop.

Everything is inside the file: the plots as data: URIs, the style sheet and the script inline. A
Content-Security-Policy allows nothing else (no network at all; only that exact script and style,
by hash), so the page works offline and a run id or error text that slipped through escaping could
still not run code. Every value shown comes from user data (run ids, errors, parameters) and goes
through Jinja2's autoescaping. Links to a run's folder and log are relative, so they work wherever
the experiment folder is copied whole.
"""

import base64
import collections
import datetime
import hashlib
import json
import math
import os
import urllib.parse

import jinja2

from .. import __version__
from .progress import proposal_counts, proposal_kind
from ..status import ALL, OK, PRUNED

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")

CAPTIONS = {
    "convergence.png": "the best objective so far against the number of finished runs and against time; "
                       "every run as a mark (how it was proposed), runs not ok as x above the plot.",
    "params.png": "the objective against each hyperparameter (HPO, or a UPF of many lines), or one row per "
                  "UPF line, best first, with the reason of each run that is not ok.",
    "importance.png": "which parameters matter: the share of the variation in the objective's ranks that each "
                      "parameter explains (main effects of an additive model fitted to the ok runs; the rest "
                      "is interactions between parameters and noise).",
    "learning_curves.png": "the objective per epoch: the best runs in color, every other run faded.",
    "timeline.png": "each run as a bar on its worker, colored by status; the utilization is the summary's.",
}

Column = collections.namedtuple("Column", "key label numeric param")

#: Rows of the table shown at most until "show every run" is clicked (sorting and filtering always
#: consider every run): a browser lays out a table of 20,000 runs in seconds, of 1,000 at once.
PAGE_ROWS = 1000


def page(data, plot_paths):
    """The HTML text of the report for ``data`` (a report.Data) and the PNG files already written."""
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                     undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    css = _read("report.css")
    js = _read("report.js")
    columns, rows = _table(data)
    best = data.best()
    counts = collections.Counter(str(r.get("status")) for r in data.records)
    context = {
        "version": __version__,
        "name": os.path.basename(data.path.rstrip(os.sep)) or data.path,
        "kind_name": "HPO" if data.kind == "hpo" else "UPF",
        "objective": data.objective_name,
        "direction": "higher" if data.maximize else "lower",
        "command": _text(data.meta.get("command")) if data.meta.get("command") else None,
        "started": _text(data.meta.get("first_started") or data.meta.get("started") or "").replace("T", " ") or None,
        "resumed": data.resumed,
        "resumes": [{"command": _text(r.get("command") or ""), "started": _text(r.get("started") or "").replace("T", " "),
                     "end": _end_text(r)} for r in (data.meta.get("resumes") or []) if isinstance(r, dict)],
        "end": _end_text(data.meta),
        "written": datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
        "records": data.records,
        "counts": [(s, counts[s]) for s in ALL if counts.get(s)] + sorted(
            (s, n) for s, n in counts.items() if s not in ALL),
        "proposals": proposal_counts(data.records),
        "summary": data.summary(),
        "best": _best(data, best),
        "plots": [_plot(path) for path in plot_paths],
        "columns": columns,
        "page": PAGE_ROWS,
        "rows": rows,
        "settings": [(key, _value(value)) for key, value in data.settings.items()],
        "css": css,
        "js": js,
        "style_hash": _csp_hash(css),
        "script_hash": _csp_hash(js),
    }
    return environment.get_template("report.html.j2").render(context)


def _end_text(job):
    """How a job ended, from its experiment.yaml entry: ``exit 143 (SIGTERM)``, or None while unknown."""
    code = job.get("exit_code")
    if not isinstance(code, int) or isinstance(code, bool):
        return None
    return "exit %d%s" % (code, " (%s)" % _text(job["stopped_by"]) if job.get("stopped_by") else "")


def _read(name):
    with open(os.path.join(TEMPLATES, name), encoding="utf-8") as handle:
        return handle.read()


def _csp_hash(text):
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def _plot(path):
    with open(path, "rb") as handle:
        uri = "data:image/png;base64," + base64.b64encode(handle.read()).decode("ascii")
    name = os.path.basename(path)
    return {"name": name, "stem": name.rsplit(".", 1)[0], "uri": uri, "caption": CAPTIONS.get(name, "")}


def _best(data, best):
    if best is None:
        return None
    return {"run_id": best["run_id"], "objective": _number_text(best["objective"]),
            "href": _run_href(data, best["run_id"]), "params": [(k, _value(v)) for k, v in best["params"].items()]}


# -- the table of runs -----------------------------------------------------------------------------
def _table(data):
    """(columns, rows): a row per record, in finish order; cells are dicts (text, v: sort key, href, cls)."""
    records = data.records
    present = {key for r in records for key in r}
    has = present.__contains__
    param_names = list(dict.fromkeys(k for r in records if isinstance(r.get("params"), dict) for k in r["params"]))
    columns = [Column("run_id", "run", False, False), Column("log", "log", False, False),
               Column("status", "status", False, False), Column("objective", data.objective_name, True, False),
               Column("error", "error", False, False), Column("duration_s", "duration (s)", True, False),
               Column("worker", "worker", True, False)]
    if has("host"):
        columns.append(Column("host", "host", False, False))
    columns.append(Column("started", "started", True, False))
    if has("iteration"):
        columns.append(Column("iteration", "iteration", True, False))
    if has("prop_type"):
        columns.append(Column("prop_type", "proposed", False, False))
    if has("epochs"):
        columns.append(Column("epochs", "epochs", True, False))
    if has("objective_source"):
        columns.append(Column("objective_source", "objective from", False, False))
    params_numeric = {name: all(_finite(r["params"][name]) for r in records
                                if isinstance(r.get("params"), dict) and r["params"].get(name) is not None)
                      for name in param_names}
    columns += [Column("param:" + name, name, params_numeric[name], True) for name in param_names]
    best = data.best()
    best_id = best["run_id"] if best else None
    logs = _shared_logs(data)
    rows = []
    for record in records:
        run_id = record["run_id"]
        status = str(record.get("status"))
        params = record.get("params") if isinstance(record.get("params"), dict) else {}
        cells = [
            {"text": run_id, "href": _run_href(data, run_id)},
            _log_cell(data, record, logs),
            {"text": status, "cls": "status-" + status if status in ALL else None},
            _number_cell(record.get("objective")),
            {"text": _text(_why(record)) if status != OK or record.get("error") else "", "cls": "error"},
            _number_cell(record.get("duration_s"), "%.3f"),
            _number_cell(record.get("worker"), "%d"),
        ]
        if has("host"):
            cells.append({"text": _text(record.get("host") or "")})
        cells.append(_time_cell(record.get("started")))
        if has("iteration"):
            cells.append(_number_cell(record.get("iteration"), "%d"))
        if has("prop_type"):
            kind = proposal_kind(record.get("prop_type"))
            cells.append({"text": _text(record.get("prop_type") or ""), "title": kind})
        if has("epochs"):
            cells.append(_number_cell(record.get("epochs"), "%d"))
        if has("objective_source"):
            cells.append({"text": _text(record.get("objective_source") or "")})
        for name in param_names:
            if name not in params:
                cells.append({"text": ""})
            elif params_numeric[name]:
                cells.append(_number_cell(params[name]))
            else:
                cells.append({"text": _value(params[name])})
        rows.append({"run_id": run_id, "status": status, "best": run_id == best_id,
                     "cells": [_full(c) for c in cells]})
    return columns, rows


def _why(record):
    """The error of a run that is not ok; for a pruned run, why it was stopped."""
    pruned = record.get("pruned")
    if record.get("status") == PRUNED and isinstance(pruned, dict) and pruned.get("reason"):
        return "pruned: " + str(pruned["reason"])
    return record.get("error")


def _full(cell):
    return {"text": cell.get("text", ""), "v": cell.get("v"), "href": cell.get("href"), "cls": cell.get("cls")}


def _finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number_text(value, fmt="%.6g"):
    if _finite(value):
        return fmt % value
    return "" if value is None else _text(value)


def _number_cell(value, fmt="%.6g"):
    """A numeric cell: formatted text, the exact value as its sort key."""
    if _finite(value):
        return {"text": fmt % value, "v": repr(float(value)), "cls": "num"}
    return {"text": "" if value is None else _text(value), "cls": "num"}


def _time_cell(value):
    if not _finite(value):
        return {"text": ""}
    text = datetime.datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M:%S")
    return {"text": text, "v": repr(float(value))}


def _text(value):
    return " ".join(str(value).split())


def _value(value):
    """A parameter or setting value as text: numbers compact, lists and dicts as JSON."""
    if isinstance(value, float) and math.isfinite(value):
        return "%.6g" % value
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    if value is None:
        return "null"
    return str(value)


def _run_href(data, run_id):
    """``runs/<run_id>/`` (URL-quoted, relative) when that folder exists, else None."""
    if os.path.isdir(os.path.join(data.path, "runs", run_id)):
        return "runs/%s/" % urllib.parse.quote(run_id, safe="")
    return None


def _shared_logs(data):
    """The files of logs/ (--no-run-dirs: a run's output is in its worker's or runner's log)."""
    try:
        return set(os.listdir(os.path.join(data.path, "logs")))
    except OSError:
        return set()


def _log_cell(data, record, logs):
    run_id = record["run_id"]
    if os.path.isfile(os.path.join(data.path, "runs", run_id, "model.log")):
        return {"text": "model.log", "href": "runs/%s/model.log" % urllib.parse.quote(run_id, safe="")}
    worker = record.get("worker")
    if isinstance(worker, int):
        for name in ("runner-%d.log" % worker, "worker-%d.log" % worker):
            if name in logs:
                return {"text": name, "href": "logs/" + name}
    return {"text": ""}
