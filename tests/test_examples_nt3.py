"""The NT3-like PyTorch example: runs alone as a script, through the UPF workflow, and its pieces."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import read_records

pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "nt3"
MODEL = "examples/nt3/nt3_baseline_pytorch.py"


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("CANDLE_DATA_DIR", None)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _show(proc):
    return "exit %s\n--- stdout\n%s\n--- stderr\n%s" % (proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])


def test_script_runs_alone(tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLE / "nt3_baseline_pytorch.py"), "-e", "1"], cwd=tmp_path,
                          env=_env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, _show(proc)
    assert "epoch 1/1" in proc.stdout and "final val_loss" in proc.stdout, _show(proc)
    # Run alone, the outputs go where CANDLE puts them: <cwd>/<model_name>/Output/<experiment>/<run>/
    log = tmp_path / "nt3" / "Output" / "EXP000" / "RUN000" / "training.log"
    assert log.is_file()
    assert len(log.read_text().splitlines()) == 2  # header + one epoch


def test_upf_coerces_list_parameters(tmp_path):
    upf = tmp_path / "nt3.upf"
    upf.write_text('{"id": "base", "epochs": 1}\n'
                   '{"id": "small", "epochs": 1, "conv": "16 5 1 8 3 1", "dense": "32"}\n')
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "candle_mbo.upf", "--model", MODEL, "--upf", str(upf),
                           "--output", str(out), "--no-report"],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, _show(proc)
    records = read_records(out)
    assert len(records) == 2, records
    assert {r["run_id"] for r in records} == {"base", "small"}
    assert all(r["status"] == "ok" for r in records), records
    assert all(isinstance(r["objective"], float) for r in records), records
    params = json.loads((out / "runs" / "small" / "params.json").read_text())
    assert params["conv"] == [16, 5, 1, 8, 3, 1]
    assert params["dense"] == [32]
    assert params["epochs"] == 1
    base = json.loads((out / "runs" / "base" / "params.json").read_text())
    assert base["conv"] == [16, 5, 1, 16, 5, 1] and base["dense"] == [64, 16] and base["pool"] == [2]
    result = json.loads((out / "runs" / "small" / "result.json").read_text())
    assert set(result["history"]) >= {"loss", "val_loss", "val_acc"}


@pytest.mark.mpi
@pytest.mark.skipif(shutil.which("mpiexec") is None, reason="mpiexec not installed")
def test_upf_under_mpi(tmp_path):
    upf = tmp_path / "nt3.upf"
    upf.write_text('{"id": "a", "epochs": 1}\n{"id": "b", "epochs": 1, "pool": "2 4", "dense": "16"}\n')
    out = tmp_path / "out"
    env = dict(_env(), OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    proc = subprocess.run(["mpiexec", "-n", "3", "--oversubscribe", sys.executable, "-m", "candle_mbo.upf",
                           "--model", MODEL, "--upf", str(upf), "--output", str(out), "--no-report"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, _show(proc)
    records = read_records(out)
    assert sorted(r["run_id"] for r in records) == ["a", "b"]
    assert all(r["status"] == "ok" for r in records), records
    params = json.loads((out / "runs" / "b" / "params.json").read_text())
    assert params["pool"] == [2, 4] and params["dense"] == [16]


@pytest.fixture()
def nt3(monkeypatch, tmp_path):
    """The baseline module imported in-process (its folder on sys.path, as the runner does)."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.setattr(sys, "argv", ["nt3_baseline_pytorch.py"])
    monkeypatch.delenv("CANDLE_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    import nt3_baseline_pytorch

    yield nt3_baseline_pytorch
    for name in ("nt3_baseline_pytorch", "nt3"):  # leave no example module behind for other tests
        sys.modules.pop(name, None)


def test_defaults_resolve(nt3):
    params = nt3.initialize_parameters()
    assert params["model_name"] == "nt3"
    assert params["conv"] == [16, 5, 1, 16, 5, 1]
    assert params["pool"] == [2] and params["dense"] == [64, 16]
    assert params["classes"] == 2 and params["feature_length"] == 1000 and params["n_samples"] == 600
    assert params["epochs"] == 4 and params["loss"] == "cross_entropy" and params["out_activation"] == "softmax"


def test_data_is_deterministic_and_balanced(nt3):
    params = dict(nt3.initialize_parameters(), n_samples=60, feature_length=200)
    x1, y1 = nt3.make_data(params)
    x2, y2 = nt3.make_data(params)
    assert x1.shape == (60, 200) and x1.dtype.name == "float32"
    assert (x1 == x2).all() and (y1 == y2).all()
    assert sorted(set(y1.tolist())) == [0, 1] and (y1 == 0).sum() == 30
    x3, _ = nt3.make_data(dict(params, data_seed=1))
    assert not (x1 == x3).all()


def test_run_accepts_scalars_and_strings_for_list_parameters(nt3):
    params = dict(nt3.initialize_parameters(), n_samples=80, feature_length=200, epochs=2, pool=4, dense=8,
                  conv="8 5 1")
    history = nt3.run(params).history
    assert len(history["val_loss"]) == 2 and len(history["val_acc"]) == 2 and len(history["loss"]) == 2
    assert all(0.0 <= a <= 1.0 for a in history["val_acc"])


def test_bad_conv_is_a_clear_error(nt3):
    params = dict(nt3.initialize_parameters(), n_samples=40, feature_length=100, epochs=1)
    with pytest.raises(ValueError, match="multiple of 3"):
        nt3.run(dict(params, conv=[16, 5]))
    with pytest.raises(ValueError, match="kernel length"):
        nt3.run(dict(params, conv=[4, 200, 1]))


def test_checkpoints_and_a_rerun_continues_where_it_stopped(nt3, tmp_path):
    """The example checkpoints with CandleCkptPyTorch; run again in the same folder (a resumed experiment
    re-running an unfinished run) it continues after the last saved epoch instead of starting over."""
    params = dict(nt3.initialize_parameters(), n_samples=80, feature_length=200, epochs=2,
                  output_dir=str(tmp_path / "run"))
    os.makedirs(params["output_dir"])
    first = nt3.run(dict(params, ckpt_directory=None)).history
    assert len(first["val_loss"]) == 2
    ckpts = tmp_path / "run" / "ckpts"
    assert os.readlink(ckpts / "last") == os.path.join("epochs", "002")
    second = nt3.run(dict(params, epochs=4, ckpt_directory=None)).history
    assert len(second["val_loss"]) == 2  # epochs 3 and 4 only
    lines = (tmp_path / "run" / "training.log").read_text().splitlines()
    assert [line.split(",")[0] for line in lines] == ["epoch", "1", "2", "3", "4"]
    assert "restarting from the checkpoint of epoch 2" in (tmp_path / "run" / "nt3.log").read_text()
    third = nt3.run(dict(params, epochs=1, ckpt_directory=None, ckpt_restart_mode="off",
                         output_dir=str(tmp_path / "run"))).history
    assert len(third["val_loss"]) == 1  # off: starts over
