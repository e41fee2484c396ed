"""CANDLE's TensorFlow 2 / Keras helpers. Imported only on first use, and only where TensorFlow is.

``candle.build_optimizer`` and friends resolve here through the ``candle`` package's ``__getattr__``,
so ``import candle`` stays fast and works on machines without TensorFlow.
"""

import time

import tensorflow as tf
from tensorflow import keras

from ._helpers import keras_default_config


def build_optimizer(optimizer_type, lr, kerasDefaults=None):  # noqa: N803 - CANDLE's argument name
    """A Keras optimizer by CANDLE name ('sgd', 'rmsprop', 'adagrad', 'adadelta', 'adam', 'adamax', 'nadam')."""
    defaults = kerasDefaults or keras_default_config()
    name = str(optimizer_type).lower()
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=defaults["momentum_sgd"],
                                    nesterov=defaults["nesterov_sgd"])
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=lr, rho=defaults["rho"], epsilon=defaults["epsilon"])
    if name == "adagrad":
        return keras.optimizers.Adagrad(learning_rate=lr, epsilon=defaults["epsilon"])
    if name == "adadelta":
        return keras.optimizers.Adadelta(learning_rate=lr, rho=defaults["rho"], epsilon=defaults["epsilon"])
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=lr, beta_1=defaults["beta_1"], beta_2=defaults["beta_2"],
                                     epsilon=defaults["epsilon"])
    if name == "adamax":
        return keras.optimizers.Adamax(learning_rate=lr, beta_1=defaults["beta_1"], beta_2=defaults["beta_2"],
                                       epsilon=defaults["epsilon"])
    if name == "nadam":
        return keras.optimizers.Nadam(learning_rate=lr, beta_1=defaults["beta_1"], beta_2=defaults["beta_2"],
                                      epsilon=defaults["epsilon"])
    raise ValueError("unknown optimizer %r; choose sgd, rmsprop, adagrad, adadelta, adam, adamax or nadam"
                     % optimizer_type)


def build_initializer(initializer_type, kerasDefaults=None, seed=None):  # noqa: N803
    """A Keras initializer by CANDLE name ('constant', 'uniform', 'normal', 'glorot_*', 'lecun_uniform', 'he_normal')."""
    defaults = kerasDefaults or keras_default_config()
    name = str(initializer_type).lower()
    init = keras.initializers
    if name == "constant":
        return init.Constant(value=0)
    if name == "uniform":
        return init.RandomUniform(minval=defaults["minval_uniform"], maxval=defaults["maxval_uniform"], seed=seed)
    if name == "normal":
        return init.RandomNormal(mean=defaults["mean_normal"], stddev=defaults["stddev_normal"], seed=seed)
    if name == "glorot_normal":
        return init.GlorotNormal(seed=seed)
    if name == "glorot_uniform":
        return init.GlorotUniform(seed=seed)
    if name == "lecun_uniform":
        return init.LecunUniform(seed=seed)
    if name == "he_normal":
        return init.HeNormal(seed=seed)
    raise ValueError("unknown initializer %r" % initializer_type)


class TerminateOnTimeOut(keras.callbacks.Callback):
    """Stop training at the end of the first epoch that ends after ``timeout_in_sec`` seconds."""

    def __init__(self, timeout_in_sec=10):
        super().__init__()
        self.timeout_in_sec = timeout_in_sec
        self.run_timestamp = None

    def on_train_begin(self, logs=None):
        self.run_timestamp = time.time()

    def on_epoch_end(self, epoch, logs=None):
        if self.timeout_in_sec is None or self.timeout_in_sec < 0:
            return
        if time.time() - self.run_timestamp > self.timeout_in_sec:
            print("TerminateOnTimeOut: %.0f s elapsed, stopping after epoch %d" % (
                time.time() - self.run_timestamp, epoch + 1))
            self.model.stop_training = True


class CandleRemoteMonitor(keras.callbacks.Callback):
    """Record per-epoch metrics with timing; kept in ``self.log_messages`` and printed when verbose."""

    def __init__(self, params=None):
        super().__init__()
        self.global_params = dict(params or {})
        self.log_messages = []
        self.run_timestamp = None
        self.epoch_timestamp = None

    def on_train_begin(self, logs=None):
        self.run_timestamp = time.time()
        self.log_messages.append({"event": "train_begin", "time": self.run_timestamp,
                                  "run_id": self.global_params.get("run_id")})

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_timestamp = time.time()

    def on_epoch_end(self, epoch, logs=None):
        now = time.time()
        message = {"event": "epoch_end", "epoch": epoch + 1, "epoch_seconds": now - self.epoch_timestamp,
                   "elapsed_seconds": now - self.run_timestamp,
                   "metrics": {k: float(v) for k, v in (logs or {}).items()}}
        self.log_messages.append(message)
        if self.global_params.get("verbose"):
            print(message)

    def on_train_end(self, logs=None):
        self.log_messages.append({"event": "train_end", "elapsed_seconds": time.time() - self.run_timestamp})


__all__ = ["build_optimizer", "build_initializer", "TerminateOnTimeOut", "CandleRemoteMonitor", "tf"]
