"""candle_lib's TensorFlow 2 / Keras helpers. Imported only on first use, and only where TensorFlow is.

``candle.build_optimizer`` and friends resolve here through ``candle``'s ``__getattr__``, so
``import candle`` stays fast and works on machines without TensorFlow. Written against ``tf.keras``.
"""

import json
import os
import time

import numpy as np
import tensorflow as tf
from tensorflow import keras

from .. import epochs
from ._ckpt import CandleCkpt
from ._helpers import keras_default_config

K = keras.backend


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


def build_initializer(initializer_type, kerasDefaults=None, seed=None, constant=0.0):  # noqa: N803
    """A Keras initializer by CANDLE name ('constant', 'uniform', 'normal', 'glorot_*', 'lecun_uniform', 'he_normal')."""
    defaults = kerasDefaults or keras_default_config()
    name = str(initializer_type).lower()
    init = keras.initializers
    if name == "constant":
        return init.Constant(value=constant)
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
    """Record the run's start, every epoch's losses and the end, and write them to
    ``<output_dir>/run.<run_id>.json`` when training ends (candle_lib's monitoring record)."""

    def __init__(self, params=None):
        super().__init__()
        self.global_params = params if params is not None else {}
        self.experiment_id = self.run_id = None
        self.run_timestamp = self.epoch_timestamp = None
        self.log_messages = []

    def on_train_begin(self, logs=None):
        from datetime import datetime

        self.run_timestamp = datetime.now()
        self.experiment_id = self.global_params.get("experiment_id", "EXP_default")
        self.run_id = self.global_params.get("run_id", "RUN_default")
        self.log_messages.append({
            "experiment_id": self.experiment_id, "run_id": self.run_id,
            "parameters": ["%s: %s" % item for item in self.global_params.items()],
            "start_time": str(self.run_timestamp), "status": "Started"})

    def on_epoch_begin(self, epoch, logs=None):
        from datetime import datetime

        self.epoch_timestamp = datetime.now()

    def on_epoch_end(self, epoch, logs=None):
        from datetime import datetime

        logs = logs or {}
        seconds = (datetime.now() - self.epoch_timestamp).total_seconds()
        line = "epoch: %d/%s, duration: %ss, loss: %s, val_loss: %s" % (
            epoch + 1, self.global_params.get("epochs"), seconds, logs.get("loss"), logs.get("val_loss"))
        self.log_messages.append({"run_id": self.run_id, "status": {"set": "Running"},
                                  "training_loss": {"set": _plain(logs.get("loss"))},
                                  "validation_loss": {"set": _plain(logs.get("val_loss"))},
                                  "run_progress": {"add": [line]}})
        epochs.deliver_from(self, epoch + 1, logs)  # the run's epoch report (see candle_mbo.epochs)

    def on_train_end(self, logs=None):
        from datetime import datetime

        end = datetime.now()
        self.log_messages.append({"run_id": self.run_id,
                                  "runtime_hours": {"set": (end - self.run_timestamp).total_seconds() / 3600.0},
                                  "end_time": {"set": str(end)}, "status": {"set": "Finished"},
                                  "date_modified": {"set": "NOW"}})
        self.save()

    def save(self):
        folder = self.global_params.get("output_dir", ".")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "run.%s.json" % self.run_id), "a") as handle:
            handle.write(json.dumps(self.log_messages, indent=4, separators=(",", ": ")))


def _plain(value):
    return float(value) if value is not None else None


def get_function(name):
    """candle_lib's registry of Keras functions by name, which is empty: always raises."""
    raise ValueError("no Keras function found for %r" % (name,))


def xent(y_true, y_pred):
    return keras.metrics.binary_crossentropy(y_true, y_pred)


def r2(y_true, y_pred):
    """Coefficient of determination, as a Keras metric."""
    residual = K.sum(K.square(y_true - y_pred))
    total = K.sum(K.square(y_true - K.mean(y_true)))
    return 1 - residual / (total + K.epsilon())


def mae(y_true, y_pred):
    return keras.metrics.mean_absolute_error(y_true, y_pred)


def mse(y_true, y_pred):
    return keras.metrics.mean_squared_error(y_true, y_pred)


def covariance(x, y):
    return K.mean(x * y) - K.mean(x) * K.mean(y)


def corr(y_true, y_pred):
    """Pearson correlation, as a Keras metric."""
    return covariance(y_true, y_pred) / (K.sqrt(covariance(y_true, y_true) * covariance(y_pred, y_pred))
                                         + K.epsilon())


def evaluate_autoencoder(y_pred, y_test):
    """mse, r2_score and Pearson correlation of a reconstruction (numpy arrays)."""
    from scipy.stats import pearsonr

    error = np.mean((y_pred - y_test) ** 2)
    total = np.sum((y_test - np.mean(y_test, axis=0)) ** 2, axis=0)
    r2_score = float(np.mean(1 - np.sum((y_test - y_pred) ** 2, axis=0) / np.where(total > 0, total, 1)))
    return {"mse": error, "r2_score": r2_score, "correlation": pearsonr(y_pred.flatten(), y_test.flatten())[0]}


class PermanentDropout(keras.layers.Dropout):
    """Dropout that stays on at inference (Monte Carlo dropout for uncertainty estimates)."""

    def __init__(self, rate, **kwargs):
        super().__init__(rate, **kwargs)
        self.uses_learning_phase = False

    def call(self, x, mask=None):
        return super().call(x, training=True)


def register_permanent_dropout():
    """Let load_model() find PermanentDropout by name."""
    keras.utils.get_custom_objects()["PermanentDropout"] = PermanentDropout


class LoggingCallback(keras.callbacks.Callback):
    """Report every epoch's metrics through ``print_fcn`` (e.g. a logger's info)."""

    def __init__(self, print_fcn=print):
        super().__init__()
        self.print_fcn = print_fcn

    def on_epoch_end(self, epoch, logs=None):
        self.print_fcn("[Epoch: %i] %s" % (epoch, ", ".join("%s: %f" % (k, v) for k, v in sorted((logs or {}).items()))))


def compute_trainable_params(model):
    """``{"trainable_params", "non_trainable_params", "total_params"}`` of a Keras model."""
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    frozen = int(sum(np.prod(w.shape) for w in model.non_trainable_weights))
    return {"trainable_params": trainable, "non_trainable_params": frozen, "total_params": trainable + frozen}


class MultiGPUCheckpoint(keras.callbacks.ModelCheckpoint):
    """ModelCheckpoint that saves the template model inside a multi-GPU wrapper model."""

    def set_model(self, model):
        inner = model.layers[-2] if len(model.layers) > 1 else None
        self.model = inner if isinstance(inner, keras.Model) else model


class CandleCkptKeras(CandleCkpt, keras.callbacks.Callback):
    """Checkpoint/restart as a Keras callback (see :mod:`._ckpt`): ``ckpt.set_model(model)``,
    ``J = ckpt.restart(model)`` (``J["epoch"]`` is the ``initial_epoch`` to pass to ``fit``), then
    ``model.fit(..., callbacks=[ckpt])``."""

    KNOWN_METRICS = {"loss": "-", "accuracy": "+", "val_loss": "-", "val_accuracy": "+", "lr": "-"}

    def __init__(self, gParameters, logger="DEFAULT", verbose=True):  # noqa: N803
        CandleCkpt.__init__(self, gParameters, logger, verbose)
        keras.callbacks.Callback.__init__(self)

    def set_model(self, model):
        self.model = model

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        metric = self.save_best_metric
        if metric not in logs:
            raise ValueError("ckpt_save_best_metric %r is not among the model's metrics: %s"
                             % (metric, ", ".join(sorted(logs))))
        if metric not in self.KNOWN_METRICS:
            raise ValueError("ckpt_save_best_metric %r: choose one of %s" % (metric, ", ".join(self.KNOWN_METRICS)))
        self.ckpt_epoch(epoch, self.KNOWN_METRICS[metric], float(logs[metric]))

    def on_train_end(self, logs=None):
        self.report_final()

    def write_model_backend(self, model, epoch):
        self.model.save(self.model_file, save_format="h5")

    def build_model(self, model_file):
        self.model.load_weights(model_file)


def clr_callback(mode=None, base_lr=1e-4, max_lr=1e-3, gamma=0.999994):
    """A CyclicLR callback for a CANDLE clr_mode: trng1, trng2 or exp."""
    modes = {"trng1": "triangular", "trng2": "triangular2", "exp": "exp_range"}
    return CyclicLR(base_lr=base_lr, max_lr=max_lr, mode=modes.get(mode, mode), gamma=gamma)


class CyclicLR(keras.callbacks.Callback):
    """Cyclical learning rate (Smith, 2017): the rate moves between ``base_lr`` and ``max_lr`` every
    ``step_size`` batches; 'triangular', 'triangular2' (amplitude halves each cycle) or 'exp_range'."""

    def __init__(self, base_lr=0.001, max_lr=0.006, step_size=2000.0, mode="triangular", gamma=1.0,
                 scale_fn=None, scale_mode="cycle"):
        super().__init__()
        if mode not in ("triangular", "triangular2", "exp_range"):
            raise ValueError("mode must be triangular, triangular2 or exp_range, not %r" % (mode,))
        self.base_lr, self.max_lr, self.step_size, self.mode, self.gamma = base_lr, max_lr, step_size, mode, gamma
        if scale_fn is not None:
            self.scale_fn, self.scale_mode = scale_fn, scale_mode
        elif mode == "triangular":
            self.scale_fn, self.scale_mode = (lambda x: 1.0), "cycle"
        elif mode == "triangular2":
            self.scale_fn, self.scale_mode = (lambda x: 1 / (2.0 ** (x - 1))), "cycle"
        else:
            self.scale_fn, self.scale_mode = (lambda x: gamma ** x), "iterations"
        self.clr_iterations = 0.0
        self.trn_iterations = 0.0
        self.history = {}

    def _reset(self, new_base_lr=None, new_max_lr=None, new_step_size=None):
        self.base_lr = self.base_lr if new_base_lr is None else new_base_lr
        self.max_lr = self.max_lr if new_max_lr is None else new_max_lr
        self.step_size = self.step_size if new_step_size is None else new_step_size
        self.clr_iterations = 0.0

    def clr(self):
        cycle = np.floor(1 + self.clr_iterations / (2 * self.step_size))
        x = np.abs(self.clr_iterations / self.step_size - 2 * cycle + 1)
        scale = self.scale_fn(cycle if self.scale_mode == "cycle" else self.clr_iterations)
        return self.base_lr + (self.max_lr - self.base_lr) * np.maximum(0, 1 - x) * scale

    def _set_lr(self, value):
        K.set_value(self.model.optimizer.learning_rate, value)

    def on_train_begin(self, logs=None):
        self._set_lr(self.base_lr if self.clr_iterations == 0 else self.clr())

    def on_batch_end(self, batch, logs=None):
        self.trn_iterations += 1
        self.clr_iterations += 1
        self._set_lr(self.clr())
        self.history.setdefault("lr", []).append(K.get_value(self.model.optimizer.learning_rate))
        self.history.setdefault("iterations", []).append(self.trn_iterations)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["lr"] = K.get_value(self.model.optimizer.learning_rate)


__all__ = ["build_optimizer", "build_initializer", "TerminateOnTimeOut", "CandleRemoteMonitor", "get_function",
           "xent", "r2", "mae", "mse", "covariance", "corr", "evaluate_autoencoder", "PermanentDropout",
           "register_permanent_dropout", "LoggingCallback", "compute_trainable_params", "MultiGPUCheckpoint",
           "CandleCkptKeras", "clr_callback", "CyclicLR", "tf"]
