"""The MNIST example of the CANDLE user guide (Keras, TensorFlow 2) and its PyTorch version.

Its parameter handling is checked everywhere; training the Keras version needs TensorFlow (and downloads
MNIST), so those tests skip where TensorFlow is not installed. The PyTorch version trains everywhere, on
a small stand-in for MNIST placed where the download would be cached.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import read_records

import candle
from candle_mbo.candle_api import _benchmark

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "mnist"
MODEL = "examples/mnist/mnist_mlp.py"


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("CANDLE_DATA_DIR", None)
    return env


def _show(proc):
    return "exit %s\n--- stdout\n%s\n--- stderr\n%s" % (proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])


@pytest.fixture()
def mnist(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.setattr(sys, "argv", ["mnist_mlp.py"])
    monkeypatch.delenv("CANDLE_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    import mnist

    yield mnist
    sys.modules.pop("mnist", None)  # leave no example module behind for other tests


def _build(mnist):
    return mnist.MNIST(mnist.file_path, "mnist_params.txt", "keras", prog="mnist_mlp", desc="MNIST example")


def test_benchmark_module_needs_no_tensorflow():
    code = "import sys; sys.path.insert(0, %r); import mnist; print('tensorflow' in sys.modules)" % str(EXAMPLE)
    proc = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, _show(proc)
    assert proc.stdout.strip() == "False"


def test_defaults_resolve(mnist, tmp_path):
    params = candle.finalize_parameters(_build(mnist))
    assert params["model_name"] == "mnist"
    assert params["epochs"] == 5 and params["batch_size"] == 128
    assert params["dense"] == [512, 256] and params["dropout"] == 0.2
    assert params["activation"] == "relu" and params["optimizer"] == "rmsprop"
    assert params["learning_rate"] == 0.001 and isinstance(params["learning_rate"], float)
    assert params["loss"] == "categorical_crossentropy" and params["out_activation"] == "softmax"
    assert params["classes"] == 10 and params["input_dim"] == 784
    assert params["rng_seed"] == 7102
    assert Path(params["output_dir"]).is_dir() and str(tmp_path) in params["output_dir"]


def test_command_line_and_run_parameters_override_defaults(mnist, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["mnist_mlp.py", "-e", "2", "--dense", "128", "64", "--optimizer", "adam"])
    params = candle.finalize_parameters(_build(mnist))
    assert params["epochs"] == 2 and params["dense"] == [128, 64] and params["optimizer"] == "adam"
    # What candle_mbo's runner does for one parameter set of a UPF or an HPO (values as strings/numbers).
    monkeypatch.setattr(sys, "argv", ["mnist_mlp.py"])
    with _benchmark.run_context({"dense": "256 128", "batch_size": 64, "learning_rate": 1}):
        params = candle.finalize_parameters(_build(mnist))
    assert params["dense"] == [256, 128] and params["batch_size"] == 64
    assert params["learning_rate"] == 1.0 and isinstance(params["learning_rate"], float)


@pytest.mark.slow
def test_script_runs_alone(tmp_path):
    pytest.importorskip("tensorflow")
    proc = subprocess.run([sys.executable, str(EXAMPLE / "mnist_mlp.py"), "-e", "1"], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, _show(proc)
    assert "Test accuracy" in proc.stdout, _show(proc)


@pytest.mark.slow
def test_upf_coerces_list_parameters(tmp_path):
    pytest.importorskip("tensorflow")
    upf = tmp_path / "mnist.upf"
    upf.write_text('{"id": "base", "epochs": 1, "train_samples": 5000, "val_samples": 1000}\n'
                   '{"id": "small", "epochs": 1, "dense": "128 64", "train_samples": 5000, "val_samples": 1000}\n')
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "candle_mbo.upf", "--model", MODEL, "--upf", str(upf),
                           "--output", str(out), "--no-report"],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, _show(proc)
    records = read_records(out)
    assert len(records) == 2 and all(r["status"] == "ok" for r in records), records
    params = json.loads((out / "runs" / "small" / "params.json").read_text())
    assert params["dense"] == [128, 64] and params["epochs"] == 1
    result = json.loads((out / "runs" / "small" / "result.json").read_text())
    assert set(result["history"]) >= {"loss", "val_loss", "accuracy", "val_accuracy"}


# -- the PyTorch version: the same benchmark, without TensorFlow --------------------------------------
PYTORCH_MODEL = "examples/mnist/mnist_mlp_pytorch.py"


def fake_mnist(data_dir, n_train=300, n_test=100):
    """A stand-in for MNIST where the file would be cached (no network here): 28x28 images whose class
    decides where a bright square sits, so that a model can learn it."""
    rng = np.random.RandomState(0)

    def images(n):
        labels = rng.randint(0, 10, n)
        pixels = rng.randint(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            pixels[i, 2 * label:2 * label + 6, 4:10] = 250
        return pixels, labels.astype(np.uint8)

    (x_train, y_train), (x_test, y_test) = images(n_train), images(n_test)
    os.makedirs(data_dir / "mnist", exist_ok=True)
    np.savez(data_dir / "mnist" / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def test_the_pytorch_version_needs_no_tensorflow_and_runs_alone(tmp_path):
    fake_mnist(tmp_path / "data")
    env = dict(_env(), CANDLE_DATA_DIR=str(tmp_path / "data"))
    code = ("import sys, runpy; sys.argv = [%r, '-e', '3', '--dense', '64']; runpy.run_path(%r, run_name='__main__');"
            " print('tensorflow' in sys.modules)" % (PYTORCH_MODEL, PYTORCH_MODEL))
    proc = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, %r); %s" % (str(EXAMPLE), code)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, _show(proc)
    assert "300 train samples, 100 test samples" in proc.stdout and "epoch 3: loss" in proc.stdout, _show(proc)
    assert proc.stdout.strip().splitlines()[-1] == "False"  # TensorFlow was never imported


@pytest.mark.slow
def test_the_pytorch_version_learns_under_the_upf_workflow(tmp_path):
    fake_mnist(tmp_path / "data")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "candle_mbo.upf", "--model", PYTORCH_MODEL, "--upf",
                           str(REPO / "upf" / "mnist.upf"), "--output", str(out), "--no-report"],
                          cwd=REPO, env=dict(_env(), CANDLE_DATA_DIR=str(tmp_path / "data")), capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, _show(proc)
    records = {r["run_id"]: r for r in read_records(out)}
    assert set(records) == {"baseline", "adam", "small-tanh", "sgd"} and all(r["status"] == "ok" for r in records.values())
    result = json.loads((out / "runs" / "small-tanh" / "result.json").read_text())
    assert set(result["history"]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert result["history"]["val_accuracy"][-1] > 0.5  # it learned the squares
    assert json.loads((out / "runs" / "small-tanh" / "params.json").read_text())["dense"] == [256]
