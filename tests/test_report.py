"""The report: PNG files from hand-written experiment directories (HPO, UPF, torn, empty) and its command line."""

import json
import os
import random
import re
import subprocess
import sys

import matplotlib.colors
import matplotlib.image
import matplotlib.pyplot
import pytest
import yaml

from candle_mbo import reporting as report
from candle_mbo.reporting import plots, progress
from conftest import FIXTURES, describe, launch, write_upf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T0 = 1.8e9


def write_experiment(path, kind, records, tail="", settings=None):
    """An experiment directory with experiment.yaml (unless ``kind`` is None) and results.jsonl."""
    os.makedirs(path, exist_ok=True)
    if kind is not None:
        meta = {"candle_mbo": "0.1.0", "kind": kind, "command": "test", "started": "2026-01-01T00:00:00",
                "settings": settings or {"objective": "val_loss", "maximize": False, "budget": len(records)}}
        (path / "experiment.yaml").write_text(yaml.safe_dump(meta))
    lines = "".join(json.dumps(r) + "\n" for r in records)
    (path / "results.jsonl").write_text(lines + tail)
    return str(path)


def hpo_records(n=20):
    """Runs on 2 workers: numeric, log-scale, discrete, bool, list and conditional params; a failure, a crash."""
    rng = random.Random(1)
    clock = {1: T0, 2: T0 + 0.5}
    records = []
    for i in range(n):
        worker = 1 + i % 2
        started = clock[worker] + rng.uniform(0, 2)
        duration = rng.uniform(5, 30)
        clock[worker] = started + duration
        params = {"learning_rate": 10 ** rng.uniform(-4, -1), "units": rng.randint(16, 256),
                  "activation": rng.choice(["relu", "tanh", "elu"]), "batch_size": rng.choice([32, 64, 128]),
                  "deep": rng.choice([True, False]), "dense": rng.choice([[64, 32], [128]])}
        if params["deep"]:
            params["dropout"] = rng.uniform(0, 0.5)
        status = "failed" if i == 7 else "crashed" if i == 12 else "ok"
        record = {"run_id": "run-%04d" % (i + 1), "status": status,
                  "objective": rng.uniform(0.05, 3.0) if status == "ok" else None, "duration_s": duration,
                  "worker": worker, "host": "node", "started": started, "finished": started + duration,
                  "iteration": 0 if i < 10 else (i - 10) // 2 + 1,
                  "prop_type": "initdesign" if i < 10 else "infill_cb", "params": params}
        if status != "ok":
            record["error"] = "RuntimeError: boom"
        records.append(record)
    return records


def upf_records():
    return [{key: value for key, value in r.items() if key not in ("iteration", "prop_type")}
            for r in hpo_records(8)]


def assert_report(paths, names):
    """``paths`` are the PNG files ``names`` (in that order) and report.html, all complete."""
    assert [os.path.basename(p) for p in paths] == names + ["report.html"]
    for path in paths[:-1]:
        with open(path, "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    with open(paths[-1], encoding="utf-8") as handle:
        assert handle.read().rstrip().endswith("</html>")
    folder = os.path.dirname(paths[0])
    assert not [n for n in os.listdir(folder) if n.endswith(".tmp")]


HPO_PLOTS = ["convergence.png", "params.png", "timeline.png"]


def test_hpo_writes_three_plots_and_the_page(tmp_path):
    directory = write_experiment(tmp_path / "hpo", "hpo", hpo_records())
    assert_report(report.render(directory), HPO_PLOTS)


def test_maximized_objective_and_no_settings(tmp_path):
    settings = {"objective": "val_acc", "maximize": True}
    directory = write_experiment(tmp_path / "max", "hpo", hpo_records(), settings=settings)
    assert_report(report.render(directory), HPO_PLOTS)
    directory = write_experiment(tmp_path / "bare", None, hpo_records())  # kind inferred from "iteration"
    assert_report(report.render(directory), HPO_PLOTS)


def test_upf_has_no_convergence_plot(tmp_path):
    directory = write_experiment(tmp_path / "upf", "upf", upf_records(), settings={"objective": "val_loss"})
    assert_report(report.render(directory), ["params.png", "timeline.png"])
    assert not os.path.exists(os.path.join(directory, "convergence.png"))


def test_torn_last_line_and_journal_entries_are_skipped(tmp_path):
    torn = json.dumps(hpo_records(21)[-1])[:60]
    records = hpo_records()
    directory = write_experiment(tmp_path / "torn", "hpo", records, tail=torn)
    with open(os.path.join(directory, "results.jsonl"), "r+") as handle:
        lines = handle.read().splitlines(keepends=True)
        lines.insert(3, json.dumps({"event": "dispatched", "run_id": "run-0099", "params": {}}) + "\n")
        handle.seek(0)
        handle.write("".join(lines))
    assert [r["run_id"] for r in report.read_records(os.path.join(directory, "results.jsonl"))] == \
        [r["run_id"] for r in records]
    assert_report(report.render(directory), HPO_PLOTS)


def test_no_successful_run_still_plots_the_timeline(tmp_path):
    records = [dict(r, status="failed", objective=None) for r in hpo_records(4)]
    directory = write_experiment(tmp_path / "failed", "hpo", records)
    assert_report(report.render(directory), ["convergence.png", "params.png", "timeline.png"])


def test_empty_experiment_gives_nothing(tmp_path):
    directory = write_experiment(tmp_path / "empty", "hpo", [])
    assert report.render(directory) == []
    assert report.main([directory]) == 0


def test_corrupt_middle_line_is_an_error(tmp_path, capsys):
    directory = write_experiment(tmp_path / "corrupt", "hpo", [])
    lines = [json.dumps(r) for r in hpo_records(3)]
    lines[1] = lines[1][:30]
    (tmp_path / "corrupt" / "results.jsonl").write_text("\n".join(lines) + "\n")
    assert report.main([directory]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "results.jsonl:2:" in err


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "candle_mbo.report"] + list(args), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_command_line_prints_the_summary_then_the_files(tmp_path):
    directory = write_experiment(tmp_path / "hpo", "hpo", hpo_records())
    result = run_cli(directory)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "summary: 20 runs: 18 ok, 1 failed, 0 timeout, 1 crashed; proposed: 10 design, 10 model-based"
    assert "  1 failed (run-0008): RuntimeError: boom" in lines
    assert any(line.startswith("workers busy ") for line in lines)
    assert lines[-4:] == [os.path.join(directory, n) for n in HPO_PLOTS + ["report.html"]]


@pytest.mark.parametrize("make", [lambda tmp: str(tmp / "missing"), lambda tmp: str(tmp)])
def test_command_line_errors(tmp_path, make):
    result = run_cli(make(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1


def test_help_shows_an_example():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "python -m candle_mbo.report experiments/" in result.stdout


# -- honest plots ------------------------------------------------------------------------------------
def test_scale_follows_the_data():
    assert plots.choose_scale([0.1, 0.2, 0.3, 0.25]) == plots.Scale("linear", None, None)
    assert plots.choose_scale([1e-4, 1e-3, 1e-2, 0.1, 1.0]).kind == "log"
    squashed = plots.choose_scale([-3.3, -3.1, -3.0, -2.9, -2.95, -3.2, -3.05, -2.85, -3.15, 5000.0])
    assert squashed.kind == "linear" and -3.4 < squashed.limits[0] and squashed.limits[1] < -2.7
    logged = plots.choose_scale([0.1, 0.12, 0.15, 0.11, 0.2, 0.13, 0.14, 0.16, 0.17, 1e30])
    assert logged.kind == "log" and logged.limits[1] < 1
    heavy = plots.choose_scale([-1e4, -1e3, -100, -1, 0, 1, 100, 1e3, 1e4, 3e4])
    assert heavy.kind == "symlog" and heavy.linthresh > 0
    assert plots.choose_scale([]).kind == "linear"


def diverged_records():
    """An HPO of 30 runs where 7 (over 20%: too many for the outlier rule alone) diverged to 1e13..1e30."""
    records = hpo_records(30)
    huge = iter([1e13, 1e16, 1e20, 1e22, 1e25, 1e28, 1e30])
    for i, r in enumerate(records):
        r.update(status="ok", objective=0.1 + 0.01 * (i % 10))
        if i % 4 == 3:
            r["objective"] = next(huge)
    return records


def test_diverged_runs_are_arrows_at_the_divergence_fence():
    """Issue 21 item 9: runs beyond the fence (the surrogate's cap) never stretch the axis, however many."""
    records = diverged_records()
    values = [r["objective"] for r in records]
    fence = plots.divergence_fence(values)
    assert 0.1 < fence < 100  # median 0.15 + 100 spreads: far above the bulk, far below 1e13
    scale = plots.choose_scale(values)
    assert scale.limits is not None and scale.limits[1] < 1
    figure = plots.convergence(records, {"objective": "val_loss"})
    assert figure.axes[0].get_ylim()[1] < 1  # not 1 .. 1e30
    arrows = [line for line in figure.axes[0].get_lines() if line.get_marker() == "^"]
    assert sum(len(line.get_xdata()) for line in arrows) == 7  # each diverged run is an arrow at the edge
    labels = [t.get_text() for t in figure.axes[1].get_legend().get_texts()]
    assert "off the scale: 7 above (max 1e+30)" in labels
    matplotlib.pyplot.close(figure)
    # maximizing: the fence is below, and a very good value is never clipped
    assert plots.divergence_fence([0.9, 0.8, 0.85, 0.95], maximize=True) < 0


def test_the_fence_leaves_heavy_tailed_data_alone():
    assert plots.choose_scale([1e-4, 1e-3, 1e-2, 0.1, 1.0]) == plots.Scale("log", None, None)
    heavy = plots.choose_scale([-1e4, -1e3, -100, -1, 0, 1, 100, 1e3, 1e4, 3e4])
    assert heavy.kind == "symlog" and heavy.limits is None
    assert plots.divergence_fence([1.0, 2.0, 3.0]) is None  # too few ok runs to say
    assert plots.divergence_fence([0.0] * 6 + [5.0]) is None  # no spread: nothing to measure against


def failing_level_records():
    """An HPO where optimizer=rmsprop always fails in 1 ms and one ok run is a wild outlier."""
    records = hpo_records(30)
    for i, r in enumerate(records):
        r["params"]["optimizer"] = ("adam", "sgd", "rmsprop")[i % 3]
        if r["params"]["optimizer"] == "rmsprop":
            r.update(status="failed", objective=None, error="ValueError: rmsprop needs a schedule",
                     finished=r["started"] + 0.001, duration_s=0.001)
        elif r["status"] != "ok":
            r.update(status="ok", objective=1.0)
    next(r for r in records if r["status"] == "ok")["objective"] = 1e6
    return records


def texts(figure):
    return [t.get_text() for ax in figure.axes for t in ax.texts + ax.get_xticklabels() + [ax.title]] + \
        [figure._suptitle.get_text() if figure._suptitle else ""]


def test_params_shows_a_level_that_always_fails_and_every_failure():
    records = failing_level_records()
    figure = plots.params(records, {"objective": "val_loss"})
    panel = next(ax for ax in figure.axes if ax.get_title().startswith("optimizer"))
    labels = [t.get_text() for t in panel.get_xticklabels()]
    assert "rmsprop\n10/10 not ok" in labels
    tick = next(t for t in panel.get_xticklabels() if t.get_text().startswith("rmsprop"))
    assert tick.get_color() == plots.STATUS_COLORS["crashed"]  # red: that level never works
    crosses = sum(len(line.get_xdata()) for line in panel.get_lines() if line.get_marker() == "x")
    assert crosses == 10
    assert "x above a panel: 10 runs not ok (failed)" in figure._suptitle.get_text()
    matplotlib.pyplot.close(figure)


def test_convergence_keeps_the_bulk_readable_despite_an_outlier():
    records = failing_level_records()
    figure = plots.convergence(records, {"objective": "val_loss"})
    low, high = figure.axes[0].get_ylim()
    assert high < 10  # the outlier (1e6) does not squash the others ...
    labels = [t.get_text() for t in figure.axes[1].get_legend().get_texts()]
    assert "off the scale: 1 above (max 1e+06)" in labels  # ... and is still shown, counted
    assert "failed (10) (x above the plot)" in labels
    matplotlib.pyplot.close(figure)


def test_importance_is_plotted_when_the_runs_suffice(tmp_path):
    from test_importance import dominant, runs

    records = runs(40, 1, dominant)
    for i, record in enumerate(records):
        record.update(worker=1 + i % 2, started=T0 + i, finished=T0 + i + 0.5)
    directory = write_experiment(tmp_path / "enough", "upf", records)
    assert_report(report.render(directory), ["params.png", "importance.png", "timeline.png"])
    figure = plots.importance(records, {"objective": "val_loss"})
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == ["interactions and noise", "noise", "kind",
                                                                         "strong"]  # largest at the top
    matplotlib.pyplot.close(figure)
    directory = write_experiment(tmp_path / "few", "upf", records[:8])
    assert_report(report.render(directory), ["params.png", "timeline.png"])  # too few: said in the summary only
    assert "importance: too few runs" in open(os.path.join(directory, "report.html")).read()


def test_the_timeline_shows_the_attempts_a_stop_signal_cut_short(tmp_path):
    records = hpo_records(6)
    rerun = records[2]  # cut short, then run again (its record is the later attempt)
    stop = rerun["started"] - 0.5
    cut = {"run-0099": {"worker": 1, "started": stop - 3.0},  # cut short, never run again
           rerun["run_id"]: {"worker": rerun["worker"], "started": stop - 5.0}}
    last = records[-1]  # finished ok as a later job stopped: its record is that attempt, not an interrupted one
    events = [{"event": "interrupted", "run_ids": sorted(cut), "signal": "SIGTERM", "exit_code": 143, "running": cut,
               "time": stop},
              {"event": "interrupted", "run_ids": [last["run_id"]], "signal": "SIGUSR1", "exit_code": 138,
               "running": {last["run_id"]: {"worker": last["worker"], "started": last["started"]}},
               "time": last["finished"] + 0.1}]
    directory = write_experiment(tmp_path / "cut", "hpo", records, tail="".join(json.dumps(e) + "\n" for e in events))
    data = report.Data(directory)
    attempts = data.interrupted_attempts()
    assert sorted(a[0] for a in attempts) == sorted(["run-0099", rerun["run_id"]])
    figure = plots.timeline(data.records, data.settings, 1, attempts)
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert "interrupted attempt (2)" in labels
    hatched = [c for c in figure.axes[0].collections if c.get_hatch() == "///"]
    assert sum(len(c.get_paths()) for c in hatched) == 2
    matplotlib.pyplot.close(figure)
    assert "timeline.png" in map(os.path.basename, report.render(directory))


def test_timeline_bars_of_a_millisecond_are_visible():
    records = failing_level_records()
    figure = plots.timeline(records, {"workers": 2})
    ax = figure.axes[0]
    width = ax.get_xlim()[1] - ax.get_xlim()[0]
    red = matplotlib.colors.to_rgb(plots.STATUS_COLORS["failed"])
    bars = [path.vertices[:, 0] for c in ax.collections if tuple(c.get_facecolor()[0][:3]) == red
            for path in c.get_paths()]
    assert len(bars) == 10
    assert min(x.max() - x.min() for x in bars) >= plots.MIN_BAR_FRACTION * width * 0.99
    matplotlib.pyplot.close(figure)


def test_upf_lines_read_as_a_table_with_reasons():
    records = upf_records()
    records[2].update(status="timeout", objective=None, error="killed after 9 s (--timeout 5)")
    figure = plots.upf_lines(records, {"objective": "val_loss"})
    shown = texts(figure)
    for r in records:
        assert r["run_id"] in shown
    assert "timeout: killed after 9 s (--timeout 5)" in shown and "failed: RuntimeError: boom" in shown
    assert any(t.startswith("UPF: 8 lines, 6 ok, 1 failed, 1 timeout") for t in shown)
    matplotlib.pyplot.close(figure)
    assert plots.upf_lines(upf_records() * 10, {}) is None  # too many lines: the per-parameter view


def with_histories(directory, records, in_records=False):
    """Per-epoch val_loss ending at each ok run's objective: in runs/<id>/result.json or in the records."""
    for r in records:
        if r["status"] != "ok":
            continue
        history = {"val_loss": [r["objective"] + 1.0 / (e + 1) for e in range(5)][::-1][:-1] + [r["objective"]]}
        if in_records:
            r["history"] = history
        else:
            os.makedirs(os.path.join(directory, "runs", r["run_id"]), exist_ok=True)
            with open(os.path.join(directory, "runs", r["run_id"], "result.json"), "w") as handle:
                json.dump(dict(r, history=history), handle)
    return records


@pytest.mark.parametrize("in_records", [False, True], ids=["run-dirs", "no-run-dirs"])
def test_learning_curves_highlight_the_best_ten(tmp_path, in_records):
    records = hpo_records(30)
    directory = str(tmp_path / "lc")
    os.makedirs(directory)
    with_histories(directory, records, in_records)
    write_experiment(tmp_path / "lc", "hpo", records)
    data = report.Data(directory)
    assert len(data.histories()) == sum(r["status"] == "ok" for r in records)
    figure = plots.learning_curves(data.records, data.settings, data.histories())
    ax = figure.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    best = sorted((r for r in records if r["status"] == "ok"), key=lambda r: r["objective"])[:10]
    assert legend == ["%d. %s (%.4g)" % (i + 1, r["run_id"], r["objective"]) for i, r in enumerate(best)]
    assert "faded: the %d other runs" % (len(data.histories()) - 10) in ax.get_title()
    matplotlib.pyplot.close(figure)
    assert_report(report.render(directory), ["convergence.png", "params.png", "learning_curves.png", "timeline.png"])


def test_a_plot_with_nothing_to_show_is_removed(tmp_path):
    records = hpo_records()
    directory = str(tmp_path / "stale")
    os.makedirs(directory)
    write_experiment(tmp_path / "stale", "hpo", with_histories(directory, records, in_records=True))
    assert "learning_curves.png" in map(os.path.basename, report.render(directory))
    write_experiment(tmp_path / "stale", "hpo", hpo_records())  # no history any more
    assert "learning_curves.png" not in map(os.path.basename, report.render(directory))
    assert not os.path.exists(os.path.join(directory, "learning_curves.png"))


# -- report.html (its behaviour in a browser: test_report_html.py) ------------------------------------
def test_the_page_is_self_contained_and_lists_every_run(tmp_path):
    records = hpo_records()
    directory = write_experiment(tmp_path / "page", "hpo", records)
    os.makedirs(os.path.join(directory, "runs", "run-0001"))
    open(os.path.join(directory, "runs", "run-0001", "model.log"), "w").close()
    report.render(directory)
    text = open(os.path.join(directory, "report.html"), encoding="utf-8").read()
    assert "default-src 'none'" in text  # no network: the browser may load nothing else
    refs = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert all(ref.startswith(("data:image/png;base64,", "#", "runs/")) for ref in refs), refs
    assert len([r for r in refs if r.startswith("data:")]) == 3
    assert set(re.findall(r'data-run="([^"]*)"', text)) == {r["run_id"] for r in records}
    assert 'href="runs/run-0001/"' in text and 'href="runs/run-0001/model.log"' in text
    assert 'href="runs/run-0002/"' not in text  # no folder, no link
    assert "RuntimeError: boom" in text and "<th>learning_rate</th>" in text


# -- a real UPF without run folders ------------------------------------------------------------------
def test_upf_without_run_dirs_links_the_shared_logs_and_draws_learning_curves(tmp_path):
    upf = write_upf(tmp_path / "lines.upf", [{"id": "a", "value": 0.5}, {"id": "b", "value": 0.2},
                                             {"id": "c", "fate": "raise"}, {"id": "d", "fate": "nan"}])
    out = tmp_path / "out"
    result = launch("candle_mbo.upf", ["--model", os.path.join(FIXTURES, "faulty.py"), "--upf", upf,
                                       "--output", out, "--no-run-dirs"], timeout=240)
    assert result.returncode == 0, describe(result)
    names = sorted(os.listdir(out))
    assert {"params.png", "learning_curves.png", "timeline.png", "report.html"} <= set(names)
    text = (out / "report.html").read_text()
    logs = re.findall(r'href="(logs/[^"]*)"', text)
    assert len(logs) == 4 and all(os.path.isfile(out / log) for log in logs)
    assert "RuntimeError: injected failure" in text


def test_odd_records_are_shown_not_fatal(tmp_path):
    """Values a hand-edited or future results log may hold: the report shows them and goes on."""
    records = hpo_records(12)
    records[0].update(objective="0.5")  # text
    records[1].update(objective=float("nan"))
    records[2].update(status="queued", objective=None)  # an unknown status
    records[3].update(params=["not", "a", "dict"])
    records[4].update(worker=None, started=None)
    records[5].update(objective=True)
    records[6]["params"]["nested"] = {"a": [1, 2]}
    records[7].update(finished=records[7]["started"] - 5)  # a clock step backwards
    records[8].pop("error", None)
    records[8].update(status="crashed", objective=None)
    directory = write_experiment(tmp_path / "odd", "hpo", records)
    assert_report(report.render(directory), HPO_PLOTS)
    text = open(os.path.join(directory, "report.html"), encoding="utf-8").read()
    assert set(re.findall(r'data-run="([^"]*)"', text)) == {r["run_id"] for r in records}
    lines = progress.summary(report.Data(directory).records, "val_loss", False, None, None, 2, directory)
    assert "no reason recorded (status crashed)" in "\n".join(lines)


def test_an_inactive_parameter_is_an_empty_cell_and_the_legend_says_so(tmp_path):
    """Issue 21 item 10: a run without ``dropout`` (deep=False) shows an empty cell, and the legend says why."""
    records = hpo_records()
    directory = write_experiment(tmp_path / "exp", "hpo", records)
    report.render(directory)
    page = open(os.path.join(directory, "report.html")).read()
    assert "a conditional parameter whose <code>requires</code> was false: not active" in page
    assert any("dropout" not in r["params"] for r in records)
