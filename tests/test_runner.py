"""The runner: one parameter set in, one result out, with per-run files; and its isolated form."""

import json
import os
import sys
import textwrap
import time

import pytest

from candle_mbo.pool.isolation import IsolatedRunner, RunnerStartError, probe_model
from candle_mbo.pool.runner import ModelError, Runner, load_model, objective_from
from conftest import FIXTURES

FAULTY = os.path.join(FIXTURES, "faulty.py")


class History:
    def __init__(self, history):
        self.history = history


@pytest.mark.parametrize("returned, expected", [
    (History({"val_loss": [3.0, 2.0]}), 2.0),
    ({"val_loss": [3.0, 1.5]}, 1.5),
    ({"val_loss": 0.25, "acc": 0.9}, 0.25),
    (0.75, 0.75),
    (({"val_loss": [2.0, 4.0]}, {"test": 1}), 4.0),
])
def test_objective_from_every_history_shape(returned, expected):
    assert objective_from(returned)[0] == expected


def test_objective_reductions_and_numpy():
    import numpy

    history = {"val_loss": numpy.array([3.0, 1.0, 2.0])}
    assert objective_from(history, reduction="last")[0] == 2.0
    assert objective_from(history, reduction="min")[0] == 1.0
    assert objective_from(history, reduction="max")[0] == 3.0
    assert objective_from({"val_acc": [numpy.float32(0.5)]}, key="val_acc")[0] == 0.5
    assert objective_from(None) == (None, None, None)


@pytest.mark.parametrize("returned, message", [
    ({"loss": [1.0]}, "has no 'val_loss'"),
    ({"val_loss": [float("nan")]}, "not a finite number"),
    ({"val_loss": []}, "empty"),
    ("text", "holds no objective"),
])
def test_objective_errors_explain(returned, message):
    with pytest.raises(ValueError, match=message):
        objective_from(returned)


@pytest.fixture
def faulty_runner(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    return Runner(FAULTY, require_objective=True, experiment_id="EXPT")


def test_run_writes_per_run_files(faulty_runner, tmp_path):
    record = faulty_runner.run({"run_id": "r1", "params": {"value": "2.5"}, "run_dir": str(tmp_path / "runs" / "r1")})
    assert record["status"] == "ok" and record["objective"] == 2.5
    folder = tmp_path / "runs" / "r1"
    params = json.loads((folder / "params.json").read_text())
    assert params["value"] == 2.5 and params["run_id"] == "r1" and params["experiment_id"] == "EXPT"
    assert params["output_dir"] == str(folder)
    result = json.loads((folder / "result.json").read_text())
    assert result["status"] == "ok" and result["history"]["val_loss"] == [3.0, 2.5]
    assert "fate: ok" in (folder / "model.log").read_text()
    assert os.getcwd() == str(tmp_path)  # restored after the run


@pytest.mark.parametrize("fate, message", [("raise", "injected failure"), ("nan", "finite"),
                                           ("not_history", "holds no objective"), ("missing_key", "val_loss"),
                                           ("none", "no objective 'val_loss': run() returned None")])
def test_failures_are_records_with_traceback_in_log(faulty_runner, tmp_path, fate, message):
    record = faulty_runner.run({"run_id": fate, "params": {"fate": fate}, "run_dir": str(tmp_path / fate)})
    assert record["status"] == "failed" and message in record["error"]
    assert "Traceback" in (tmp_path / fate / "model.log").read_text()
    again = faulty_runner.run({"run_id": "ok", "params": {}, "run_dir": str(tmp_path / "ok")})
    assert again["status"] == "ok"  # the process lives on


def test_argv_is_hidden_from_the_benchmark(faulty_runner, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["python", "--budget", "99", "-e", "5"])
    record = faulty_runner.run({"run_id": "a", "params": {}, "run_dir": str(tmp_path / "a")})
    assert record["status"] == "ok"
    assert json.loads((tmp_path / "a" / "params.json").read_text())["epochs"] == 1
    assert sys.argv == ["python", "--budget", "99", "-e", "5"]


def test_none_objective_allowed_without_requirement(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = Runner(FAULTY)
    record = runner.run({"run_id": "n", "params": {"fate": "none"}, "run_dir": str(tmp_path / "n")})
    assert record["status"] == "ok" and record["objective"] is None


def test_sys_exit_in_model_is_a_failure(tmp_path, monkeypatch):
    model = tmp_path / "exits.py"
    model.write_text(textwrap.dedent("""
        import sys
        def initialize_parameters():
            return {}
        def run(params):
            sys.exit(4)
        """))
    record = Runner(str(model)).run({"run_id": "e", "params": {}, "run_dir": str(tmp_path / "e")})
    assert record["status"] == "failed" and "sys.exit(4)" in record["error"]


def test_model_loading_errors(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(str(tmp_path / "missing.py"))
    broken = tmp_path / "broken.py"
    broken.write_text("def run(:\n")
    with pytest.raises(ModelError, match=r"broken.py:1: syntax error"):
        load_model(str(broken))
    incomplete = tmp_path / "incomplete.py"
    incomplete.write_text("def run(params):\n    return 1\n")
    with pytest.raises(ModelError, match="initialize_parameters"):
        load_model(str(incomplete))
    failing = tmp_path / "failing.py"
    failing.write_text("import not_a_module_anywhere\n")
    with pytest.raises(ModelError, match="not_a_module_anywhere"):
        load_model(str(failing))


def test_sibling_imports_work(tmp_path):
    (tmp_path / "helper_mod_xyz.py").write_text("VALUE = 7\n")
    model = tmp_path / "sib.py"
    model.write_text("import helper_mod_xyz\ndef initialize_parameters():\n    return {}\n"
                     "def run(p):\n    return helper_mod_xyz.VALUE\n")
    record = Runner(str(model)).run({"run_id": "s", "params": {}, "run_dir": str(tmp_path / "s")})
    assert record["objective"] == 7


# --- isolated runner --------------------------------------------------------------------------------
def isolated(tmp_path, timeout=None, **config):
    settings = {"model": FAULTY, "objective": "val_loss", "reduction": "last", "require_objective": True}
    settings.update(config)
    return IsolatedRunner(settings, log_path=str(tmp_path / "runner.log"), timeout=timeout,
                          env={"FAULTY_MARKER_DIR": str(tmp_path / "imports")})


@pytest.mark.parametrize("fate, status, message", [("segv", "crashed", "SIGSEGV"), ("exit", "crashed", "exit code 3"),
                                                   ("sigkill", "crashed", "SIGKILL")])
def test_isolated_crash_is_recorded_and_runner_restarts(tmp_path, fate, status, message):
    runner = isolated(tmp_path)
    try:
        record = runner.run({"run_id": fate, "params": {"fate": fate}, "run_dir": str(tmp_path / fate)})
        assert record["status"] == status and message in record["error"]
        assert json.loads((tmp_path / fate / "result.json").read_text())["status"] == status
        after = runner.run({"run_id": "next", "params": {}, "run_dir": str(tmp_path / "next")})
        assert after["status"] == "ok"
    finally:
        runner.close()


@pytest.mark.parametrize("fate", ["sleep", "hang"])
def test_isolated_timeout_kills_even_when_sigterm_ignored(tmp_path, fate):
    runner = isolated(tmp_path, timeout=1.5)
    try:
        start = time.time()
        record = runner.run({"run_id": fate, "params": {"fate": fate}, "run_dir": str(tmp_path / fate)})
        elapsed = time.time() - start
        assert record["status"] == "timeout" and elapsed < 1.5 + 5
        assert runner.run({"run_id": "n", "params": {}, "run_dir": str(tmp_path / "n")})["status"] == "ok"
    finally:
        runner.close()


def test_isolated_runner_imports_the_model_once(tmp_path):
    runner = isolated(tmp_path)
    try:
        for i in range(5):
            assert runner.run({"run_id": "r%d" % i, "params": {}, "run_dir": str(tmp_path / str(i))})["status"] == "ok"
    finally:
        runner.close()
    assert len(os.listdir(tmp_path / "imports")) == 1


def test_isolated_memory_limit_turns_a_hog_into_a_failure(tmp_path):
    runner = isolated(tmp_path, memory_limit_mb=600)
    try:
        record = runner.run({"run_id": "oom", "params": {"fate": "oom", "megabytes": 2000},
                             "run_dir": str(tmp_path / "oom")})
        assert record["status"] in ("failed", "crashed") and record["status"] != "ok"
        assert runner.run({"run_id": "n", "params": {}, "run_dir": str(tmp_path / "n")})["status"] == "ok"
    finally:
        runner.close()


def test_isolated_large_output_goes_to_the_log(tmp_path):
    runner = isolated(tmp_path)
    try:
        record = runner.run({"run_id": "big", "params": {"fate": "print_mb", "megabytes": 3},
                             "run_dir": str(tmp_path / "big")})
        assert record["status"] == "ok"
        assert os.path.getsize(tmp_path / "big" / "model.log") >= 3 * 1024 * 1024
    finally:
        runner.close()


def test_probe_reports_defaults_and_errors(tmp_path):
    description = probe_model({"model": FAULTY, "objective": "val_loss", "reduction": "last",
                               "require_objective": True})
    assert description["params"]["fate"] == "ok" and "value" in description["definitions"]
    broken = tmp_path / "broken.py"
    broken.write_text("x = (\n")
    with pytest.raises(RunnerStartError, match="syntax error"):
        probe_model({"model": str(broken), "objective": "val_loss", "reduction": "last", "require_objective": True})
