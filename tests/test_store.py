"""The experiment store: durable appends, torn lines, corruption, locking, directory rules."""

import csv
import io
import json
import os
import stat
import subprocess
import sys

import pytest

from candle_mbo.errors import UsageError
from candle_mbo.core.store import CorruptResults, Experiment, check_run_id, load_results, next_experiment_dir


def record(run_id, status="ok", objective=1.0, **params):
    return {"run_id": run_id, "status": status, "objective": objective, "duration_s": 0.1, "worker": 1,
            "started": 1.0, "finished": 2.0, "params": params}


def test_append_is_readable_at_once_and_csv_matches(tmp_path):
    experiment = Experiment(str(tmp_path / "e"), param_columns=["a", "c"]).open()
    experiment.param_defaults = {"c": 7}
    experiment.append(record("r1", a=1))
    failed = record("r2", status="failed", objective=None, a=[1, 2], b="new")
    failed["error"] = "ValueError: a long reason, with commas, kept whole to the very end"
    experiment.append(failed)
    experiment.append_events([{"event": "dispatched", "run_id": "r3", "params": {"a": 3}}])
    assert [r["run_id"] for r in load_results(experiment.file("results.jsonl"))] == ["r1", "r2"]
    experiment.close()
    rows = list(csv.reader(io.StringIO((tmp_path / "e" / "results.csv").read_text())))
    assert rows[0] == ["run_id", "status", "objective", "duration_s", "worker", "started", "finished",
                       "objective_source", "epochs", "error", "a", "c", "b"]
    assert rows[1][9:] == ["", "1", "7", ""]  # c: the benchmark's default, which the run used
    assert rows[2][:3] == ["r2", "failed", ""] and rows[2][9] == failed["error"]
    assert rows[2][10:] == ["[1, 2]", "7", "new"]
    assert len(rows) == 3  # journal events are not runs


def test_torn_last_line_is_dropped_and_repaired(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(record("r1")) + "\n" + '{"run_id": "r2", "sta')
    warnings = []
    assert [r["run_id"] for r in load_results(str(path), repair=True, warn=warnings.append)] == ["r1"]
    assert "torn" in warnings[0]
    assert path.read_text().endswith("}\n")


def test_last_line_without_newline_but_complete_is_kept(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(record("r1")) + "\n" + json.dumps(record("r2")))
    assert len(load_results(str(path), repair=True)) == 2
    assert path.read_text().endswith("\n")


def test_corrupt_middle_line_is_refused(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(record("r1")) + "\n{garbage\n" + json.dumps(record("r3")) + "\n")
    with pytest.raises(CorruptResults, match=r"results.jsonl:2: corrupt record"):
        load_results(str(path))


def test_a_folder_with_staged_data_takes_a_new_experiment_and_keeps_the_data(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("1,2\n")
    (tmp_path / "job.sh").write_text("#!/bin/sh\n")
    experiment = Experiment(str(tmp_path)).open()
    experiment.append(record("r1"))
    experiment.close()
    assert (tmp_path / "data" / "train.csv").read_text() == "1,2\n" and (tmp_path / "job.sh").exists()
    assert [r["run_id"] for r in load_results(str(tmp_path / "results.jsonl"))] == ["r1"]


@pytest.mark.parametrize("make, reason", [
    (lambda p: (p / "experiment.yaml").write_text("kind: hpo\n"), "an experiment \\(experiment.yaml\\); add --resume"),
    (lambda p: (p / "results.jsonl").write_text(json.dumps(record("r9")) + "\n"), "another experiment's journal"),
    (lambda p: (p / "runs" / "run-0001").mkdir(parents=True), "run folders \\(runs/run-0001\\)"),
    (lambda p: (p / "best.json").write_text("{}\n"), "output files of an earlier job \\(best.json\\)"),
])
def test_a_folder_holding_another_experiments_files_is_refused_with_the_reason(tmp_path, make, reason):
    make(tmp_path)
    with pytest.raises(UsageError, match=reason):
        Experiment(str(tmp_path)).open()


def test_resume_needs_an_experiment(tmp_path):
    with pytest.raises(UsageError, match="holds no experiment"):
        Experiment(str(tmp_path), resume=True).open()


def test_output_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(UsageError, match="is a file"):
        Experiment(str(tmp_path / "f")).open()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_output_not_writable(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    with pytest.raises(UsageError, match="not writable"):
        Experiment(str(locked / "e")).open()


def test_second_job_is_refused_by_the_lock(tmp_path):
    folder = str(tmp_path / "e")
    experiment = Experiment(folder).open()
    experiment.write_settings({"kind": "upf"})
    code = ("import sys; from candle_mbo.core.store import Experiment; from candle_mbo.errors import UsageError\n"
            "try:\n    Experiment(sys.argv[1], resume=True).open()\nexcept UsageError as e:\n    print(e)")
    result = subprocess.run([sys.executable, "-c", code, folder], capture_output=True, text=True, timeout=60)
    assert "in use by another job" in result.stdout and ("pid %d" % os.getpid()) in result.stdout
    experiment.close()


def test_unsafe_run_ids():
    for bad in ["", " ", "a/b", "a\\b", "..", ".", "tab\there", "nul\x00"]:
        assert check_run_id(bad)
    for good in ["run-1", "line-3", "ünïcödé", "a.b", "x y"]:
        assert check_run_id(good) is None


def test_numbered_experiment_dirs(tmp_path):
    first = next_experiment_dir(str(tmp_path / "experiments"))
    second = next_experiment_dir(str(tmp_path / "experiments"))
    assert os.path.basename(first) == "EXP001" and os.path.basename(second) == "EXP002"


def test_files_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        experiment = Experiment(str(tmp_path / "e")).open()
        experiment.write_settings({"kind": "upf"})
        experiment.append(record("r1"))
        experiment.close()
    finally:
        os.umask(old)
    for name in ("experiment.yaml", "results.jsonl", "results.csv"):
        mode = os.stat(tmp_path / "e" / name).st_mode
        assert not mode & stat.S_IWOTH and not mode & stat.S_IROTH, name
