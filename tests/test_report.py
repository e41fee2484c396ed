"""The report: PNG files from hand-written experiment directories (HPO, UPF, torn, empty) and its command line."""

import json
import os
import random
import subprocess
import sys

import matplotlib.image
import pytest
import yaml

from candle_mbo import report

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


def assert_pngs(paths, names):
    assert [os.path.basename(p) for p in paths] == names
    for path in paths:
        with open(path, "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    folder = os.path.dirname(paths[0])
    assert not [n for n in os.listdir(folder) if n.endswith(".tmp")]


def test_hpo_writes_three_plots(tmp_path):
    directory = write_experiment(tmp_path / "hpo", "hpo", hpo_records())
    assert_pngs(report.render(directory), ["convergence.png", "params.png", "timeline.png"])


def test_maximized_objective_and_no_settings(tmp_path):
    settings = {"objective": "val_acc", "maximize": True}
    directory = write_experiment(tmp_path / "max", "hpo", hpo_records(), settings=settings)
    assert_pngs(report.render(directory), ["convergence.png", "params.png", "timeline.png"])
    directory = write_experiment(tmp_path / "bare", None, hpo_records())  # kind inferred from "iteration"
    assert_pngs(report.render(directory), ["convergence.png", "params.png", "timeline.png"])


def test_upf_has_no_convergence_plot(tmp_path):
    directory = write_experiment(tmp_path / "upf", "upf", upf_records(), settings={"objective": "val_loss"})
    assert_pngs(report.render(directory), ["params.png", "timeline.png"])
    assert not os.path.exists(os.path.join(directory, "convergence.png"))


def test_torn_last_line_is_skipped(tmp_path):
    torn = json.dumps(hpo_records(21)[-1])[:60]
    directory = write_experiment(tmp_path / "torn", "hpo", hpo_records(), tail=torn)
    assert_pngs(report.render(directory), ["convergence.png", "params.png", "timeline.png"])


def test_no_successful_run_still_plots_the_timeline(tmp_path):
    records = [dict(r, status="failed", objective=None) for r in hpo_records(4)]
    directory = write_experiment(tmp_path / "failed", "hpo", records)
    assert_pngs(report.render(directory), ["convergence.png", "timeline.png"])


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
    assert capsys.readouterr().err.startswith("error: ")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "candle_mbo.report"] + list(args), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_command_line(tmp_path):
    directory = write_experiment(tmp_path / "hpo", "hpo", hpo_records())
    result = run_cli(directory)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [os.path.join(directory, n)
                                     for n in ("convergence.png", "params.png", "timeline.png")]


@pytest.mark.parametrize("make", [lambda tmp: str(tmp / "missing"), lambda tmp: str(tmp)])
def test_command_line_errors(tmp_path, make):
    result = run_cli(make(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1


def test_help_shows_an_example():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "python -m candle_mbo.report experiments/" in result.stdout
