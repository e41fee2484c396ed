"""candle_lib's PyTorch helpers with real PyTorch: builders, initializers, and checkpoint/restart that
continues after a kill exactly where the last checkpoint left off."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")

import candle  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))


@pytest.mark.parametrize("name, cls, settings", [
    ("sgd", torch.optim.SGD, {"momentum": 0.0, "nesterov": False}),
    ("rmsprop", torch.optim.RMSprop, {"alpha": 0.9, "eps": 1e-8}),
    ("adagrad", torch.optim.Adagrad, {"eps": 1e-8}),
    ("adadelta", torch.optim.Adadelta, {"rho": 0.9, "eps": 1e-8}),
    ("adam", torch.optim.Adam, {"betas": (0.9, 0.999), "eps": 1e-8}),
    ("adamax", torch.optim.Adamax, {"eps": 1e-8}),
    ("nadam", torch.optim.NAdam, {"eps": 1e-8}),
    ("adamw", torch.optim.AdamW, {"eps": 1e-8}),
])
def test_build_pytorch_optimizer_uses_keras_defaults(name, cls, settings):
    optimizer = candle.build_pytorch_optimizer(_model(), name, 0.01, candle.keras_default_config())
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.01
    for key, value in settings.items():
        assert tuple(group[key]) == tuple(value) if isinstance(value, tuple) else group[key] == value


def test_build_pytorch_optimizer_options():
    model = _model()
    model[0].weight.requires_grad_(False)
    defaults = dict(candle.keras_default_config(), momentum_sgd=0.9, nesterov_sgd=True)
    optimizer = candle.build_pytorch_optimizer(model, "sgd", 0.1, defaults)
    assert optimizer.param_groups[0]["momentum"] == 0.9 and optimizer.param_groups[0]["nesterov"] is True
    assert len(optimizer.param_groups[0]["params"]) == 3  # the frozen weight is left out
    everything = candle.build_pytorch_optimizer(model, "adam", 0.1, defaults, trainable_only=False)
    assert len(everything.param_groups[0]["params"]) == 4
    with pytest.raises(ValueError, match="choose sgd"):
        candle.build_pytorch_optimizer(model, "lbfgs2", 0.1, defaults)


def test_activations_losses_and_functions():
    for name, cls in (("relu", torch.nn.ReLU), ("sigmoid", torch.nn.Sigmoid), ("tanh", torch.nn.Tanh),
                      ("elu", torch.nn.ELU), ("linear", torch.nn.Identity)):
        assert isinstance(candle.build_pytorch_activation(name), cls)
    with pytest.raises(ValueError, match="choose one of"):
        candle.build_pytorch_activation("swishy")
    for name, cls in (("mse", torch.nn.MSELoss), ("binary_crossentropy", torch.nn.BCELoss),
                      ("categorical_crossentropy", torch.nn.CrossEntropyLoss), ("smoothL1", torch.nn.SmoothL1Loss)):
        assert isinstance(candle.get_pytorch_function(name), cls)
    with pytest.raises(ValueError):
        candle.get_pytorch_function("hinge")
    logits, target = torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 1])
    assert torch.isclose(candle.pytorch_xent(target, logits), torch.nn.functional.cross_entropy(logits, target))
    assert candle.pytorch_mse(torch.ones(3), torch.zeros(3)).item() == 1.0
    candle.set_pytorch_seed(3)
    first = torch.rand(2)
    candle.set_pytorch_seed(3)
    assert torch.equal(first, torch.rand(2))
    candle.set_pytorch_threads()


def test_pytorch_initialize():
    defaults = candle.keras_default_config()
    weights = torch.empty(200, 100)
    assert (candle.pytorch_initialize(weights, "constant", defaults, constant=0.5) == 0.5).all()
    candle.pytorch_initialize(weights, "uniform", defaults)
    assert weights.min() >= -0.05 and weights.max() <= 0.05
    candle.pytorch_initialize(weights, "normal", defaults)
    assert abs(weights.std().item() - 0.05) < 0.005
    candle.pytorch_initialize(weights, "glorot_uniform", defaults)
    assert weights.abs().max() <= (6.0 / 300) ** 0.5
    candle.pytorch_initialize(weights, "he_normal", defaults)
    assert abs(weights.std().item() - (2.0 / 100) ** 0.5) < 0.01
    candle.pytorch_initialize(weights, "lecun_uniform", defaults)
    assert weights.abs().max() <= (3.0 / 100) ** 0.5
    bias = torch.ones(7)
    candle.pytorch_initialize(bias, "constant", defaults, 0.0)  # P1B1's call: seed given positionally
    assert (bias == 0).all()
    with pytest.raises(ValueError):
        candle.pytorch_initialize(weights, "orthogonal-ish", defaults)


TRAIN = textwrap.dedent('''
    """Deterministic full-batch training with CandleCkptPyTorch; kills itself after epoch KILL_AT."""
    import json, os, signal, sys
    import torch
    import candle

    def train(folder, epochs, kill_at=None, extra="", run_id="RUN000"):
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "d.txt"), "w") as handle:
            # the first section wins where both set a name, so `extra` overrides the settings after it
            handle.write("[Global_Params]\\n%s\\n[Defaults]\\nmodel_name = 'tiny'\\nepochs = %d\\n"
                         "ckpt_save_interval = 1\\nckpt_keep_limit = 2\\n" % (extra, epochs))
        sys.argv = ["train"]
        with candle._benchmark.run_context({"output_dir": os.path.join(folder, "out"), "run_id": run_id}):
            params = candle.finalize_parameters(candle.Benchmark(folder, "d.txt", "pytorch"))
        torch.manual_seed(0)
        x = torch.randn(64, 4)
        y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        optimizer = candle.build_pytorch_optimizer(model, "adam", 0.05, candle.keras_default_config())
        ckpt = candle.CandleCkptPyTorch(params, verbose=False)
        ckpt.set_model({"model": model, "optimizer": optimizer})
        info = ckpt.restart(model)
        start = info["epoch"] if info is not None else 0
        done = []
        for epoch in range(start, params["epochs"]):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            done.append(epoch + 1)
            ckpt.ckpt_epoch(epoch, loss.item())
            if kill_at == epoch + 1:
                os.kill(os.getpid(), signal.SIGKILL)
        ckpt.report_final()
        return start, done, [p.detach().clone() for p in model.parameters()], params

    if __name__ == "__main__":
        train(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
''')


@pytest.fixture
def trainer(tmp_path, monkeypatch):
    (tmp_path / "ckpt_train.py").write_text(TRAIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("CANDLE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(sys, "argv", ["train"])
    sys.modules.pop("ckpt_train", None)
    import ckpt_train

    yield ckpt_train
    sys.modules.pop("ckpt_train", None)


def test_restart_after_a_kill_continues_at_the_saved_epoch(trainer, tmp_path):
    start, done, uninterrupted, _ = trainer.train(str(tmp_path / "full"), 6)
    assert (start, done) == (0, [1, 2, 3, 4, 5, 6])

    killed = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(tmp_path / "ckpt_train.py"), str(killed), "6", "3"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    ckpts = killed / "out" / "ckpts"
    assert os.readlink(ckpts / "last") == os.path.join("epochs", "003")
    assert json.loads((ckpts / "last" / "ckpt-info.json").read_text())["epoch"] == 3

    start, done, resumed, params = trainer.train(str(killed), 6)
    assert (start, done) == (3, [4, 5, 6])  # continues with the epoch after the last one saved
    for a, b in zip(uninterrupted, resumed):
        assert torch.allclose(a, b, rtol=0, atol=1e-6)  # model and optimizer state restored exactly
    assert params["ckpt_directory"] == str(ckpts)
    kept = sorted(os.listdir(ckpts / "epochs"))
    # this run's own keep limit (2) applies to the epochs it wrote; the killed run's stay, as in candle_lib
    assert kept == ["002", "003", "005", "006"]
    assert os.readlink(ckpts / "last") == os.path.join("epochs", "006")
    assert os.readlink(ckpts / "best") == os.path.join("epochs", "006")
    assert "restarted from epoch 3" in (ckpts / "ckpt.log").read_text()


def test_restart_modes_and_disabled_checkpoints(trainer, tmp_path):
    trainer.train(str(tmp_path / "run"), 2)
    start, done, _, _ = trainer.train(str(tmp_path / "run"), 4, extra="ckpt_restart_mode = 'off'\n")
    assert (start, done) == (0, [1, 2, 3, 4])  # off: starts over even with checkpoints there
    with pytest.raises(RuntimeError, match="required"):
        trainer.train(str(tmp_path / "fresh"), 2, extra="ckpt_restart_mode = 'required'\n")
    trainer.train(str(tmp_path / "none"), 2, extra="ckpt_save_interval = 0\n")
    assert not os.path.exists(tmp_path / "none" / "out" / "ckpts" / "epochs")


def test_checksum_detects_a_damaged_checkpoint(trainer, tmp_path):
    trainer.train(str(tmp_path / "run"), 2, extra="ckpt_checksum = True\n")
    model_file = tmp_path / "run" / "out" / "ckpts" / "epochs" / "002" / "model.h5"
    with open(model_file, "r+b") as handle:
        handle.seek(-8, os.SEEK_END)
        handle.write(b"damaged!")
    with pytest.raises(RuntimeError, match="damaged"):
        trainer.train(str(tmp_path / "run"), 4, extra="ckpt_checksum = True\n")


def test_a_checkpointer_per_run_keeps_logs_apart(trainer, tmp_path):
    """A resident runner makes one checkpointer per run: each run's ckpt.log gets only its own lines."""
    trainer.train(str(tmp_path / "a"), 1)
    trainer.train(str(tmp_path / "b"), 1)
    log_a = (tmp_path / "a" / "out" / "ckpts" / "ckpt.log").read_text()
    log_b = (tmp_path / "b" / "out" / "ckpts" / "ckpt.log").read_text()
    assert str(tmp_path / "b") not in log_a and str(tmp_path / "b") in log_b


def test_another_runs_checkpoint_is_not_restarted(trainer, tmp_path):
    """Runs sharing a folder (a workflow without per-run folders) never continue each other's training."""
    trainer.train(str(tmp_path / "shared"), 2, run_id="r1")
    start, done, _, _ = trainer.train(str(tmp_path / "shared"), 3, run_id="r2")
    assert (start, done) == (0, [1, 2, 3])
    start, done, _, _ = trainer.train(str(tmp_path / "shared"), 4, run_id="r2")
    assert (start, done) == (3, [4])  # its own checkpoint: continues
    with pytest.raises(RuntimeError, match="belongs to run r2"):
        trainer.train(str(tmp_path / "shared"), 4, run_id="r3", extra="ckpt_restart_mode = 'required'\n")
