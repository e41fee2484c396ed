"""candle_lib's Keras helpers, written against tf.keras: run where TensorFlow 2 is installed, skipped elsewhere.

Without TensorFlow, test_candle_helpers checks that these names fail with a sentence saying TensorFlow
is needed.
"""

import json
import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = tf.keras

import candle  # noqa: E402


def _model(units=4):
    model = keras.Sequential([keras.layers.Input((3,)), keras.layers.Dense(units, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse", metrics=[candle.r2, candle.mae, candle.mse])
    return model


def _data():
    rs = np.random.RandomState(0)
    x = rs.rand(32, 3).astype("float32")
    return x, (x @ np.array([[1.0], [-1.0], [0.5]], dtype="float32"))


def test_metrics_and_parameter_count():
    y_true = tf.constant([[1.0], [2.0], [3.0]])
    assert abs(float(candle.r2(y_true, y_true)) - 1.0) < 1e-5
    assert abs(float(tf.reduce_mean(candle.mae(y_true, y_true + 1.0))) - 1.0) < 1e-6
    assert abs(float(tf.reduce_mean(candle.mse(y_true, y_true + 2.0))) - 4.0) < 1e-6
    assert abs(float(candle.corr(y_true, 2 * y_true)) - 1.0) < 1e-5
    counts = candle.compute_trainable_params(_model())
    assert counts == {"trainable_params": 3 * 4 + 4 + 4 + 1, "non_trainable_params": 0, "total_params": 21}


@pytest.mark.parametrize("name", ["sgd", "rmsprop", "adagrad", "adadelta", "adam", "adamax", "nadam"])
def test_build_optimizer(name):
    optimizer = candle.build_optimizer(name, 0.01, candle.keras_default_config())
    assert isinstance(optimizer, keras.optimizers.Optimizer)


@pytest.mark.parametrize("name", ["constant", "uniform", "normal", "glorot_normal", "glorot_uniform",
                                  "lecun_uniform", "he_normal"])
def test_build_initializer(name):
    values = candle.build_initializer(name, candle.keras_default_config(), seed=1)((50, 50)).numpy()
    if name == "constant":
        assert (values == 0).all()
    elif name == "uniform":
        assert values.min() >= -0.05 and values.max() <= 0.05


def test_callbacks_train_a_model(tmp_path):
    x, y = _data()
    lines = []
    monitor = candle.CandleRemoteMonitor(params={"epochs": 2, "run_id": "r1", "output_dir": str(tmp_path)})
    callbacks = [candle.LoggingCallback(lines.append), candle.TerminateOnTimeOut(3600), monitor,
                 candle.clr_callback("trng1", base_lr=1e-4, max_lr=1e-3)]
    history = _model().fit(x, y, epochs=2, batch_size=8, verbose=0, validation_split=0.25, callbacks=callbacks)
    assert len(history.history["val_loss"]) == 2 and len(lines) == 2 and lines[0].startswith("[Epoch: 0]")
    records = json.loads((tmp_path / "run.r1.json").read_text())
    assert records[0]["status"] == "Started" and records[-1]["status"] == {"set": "Finished"}
    assert "lr" in history.history


def test_permanent_dropout_stays_on_at_inference():
    candle.register_permanent_dropout()
    layer = candle.PermanentDropout(0.5)
    out = layer(tf.ones((1, 1000)), training=False).numpy()
    assert (out == 0).sum() > 300  # still dropping at inference
    assert keras.utils.get_custom_objects()["PermanentDropout"] is candle.PermanentDropout


def test_candle_ckpt_keras_restarts(tmp_path):
    x, y = _data()
    params = {"epochs": 3, "output_dir": str(tmp_path), "ckpt_directory": None, "ckpt_save_interval": 1,
              "ckpt_restart_mode": "auto", "ckpt_save_best": True, "ckpt_save_best_metric": "val_loss",
              "ckpt_keep_limit": 2}
    model = _model()
    ckpt = candle.CandleCkptKeras(dict(params), verbose=False)
    ckpt.set_model(model)
    assert ckpt.restart(model) is None
    model.fit(x, y, epochs=3, batch_size=8, verbose=0, validation_split=0.25, callbacks=[ckpt])
    assert os.path.exists(tmp_path / "ckpts" / "last" / "model.h5")
    again = _model()
    ckpt = candle.CandleCkptKeras(dict(params), verbose=False)
    ckpt.set_model(again)
    info = ckpt.restart(again)
    assert info["epoch"] == 3
    assert all(np.allclose(a, b) for a, b in zip(model.get_weights(), again.get_weights()))
