"""A CANDLE-compliant PyTorch benchmark modelled on CANDLE's NT3 (normal vs tumor classification).

A 1D convolutional network reads each expression profile as a one-channel signal: convolution layers
(``conv``: filters, kernel length, stride per layer), each followed by max pooling (``pool``), then
fully connected layers (``dense``) and a softmax output over ``classes``. The data are synthetic and
deterministic (``data_seed``): a smooth baseline profile plus noise, where tumor profiles also carry
a few localized bumps at class-specific (slightly jittered) positions -- the pattern a convolution
finds and a linear model on raw features finds less easily. With the defaults one run takes a few
seconds on one CPU core and reports a Keras-style history (loss, acc, val_loss, val_acc per epoch).

It uses candle_lib's PyTorch API as the real PyTorch benchmarks do: ``build_pytorch_optimizer`` builds the
optimizer, ``set_up_logger`` sends the progress to ``<output_dir>/nt3.log`` and stdout, and
``CandleCkptPyTorch`` saves a checkpoint after each epoch (``ckpt_save_interval``) into
``<output_dir>/ckpts``; a run started again in the same folder (a resumed experiment) continues after
the last epoch saved instead of starting over (``ckpt_restart_mode = 'off'`` turns that off).

Run it alone:   python examples/nt3/nt3_baseline_pytorch.py -e 2
Fixed list:     python -m candle_mbo.upf --model examples/nt3/nt3_baseline_pytorch.py --upf upf/nt3.upf
Search it:      python -m candle_mbo --model examples/nt3/nt3_baseline_pytorch.py --space examples/nt3/space.R
"""

import csv
import logging
import os
import time

import numpy as np
import torch

import candle
import nt3

ACTIVATIONS = {"relu": torch.nn.ReLU, "elu": torch.nn.ELU, "selu": torch.nn.SELU, "tanh": torch.nn.Tanh,
               "sigmoid": torch.nn.Sigmoid, "leaky_relu": torch.nn.LeakyReLU, "gelu": torch.nn.GELU}
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad", "adadelta", "adamax", "nadam")
logger = logging.getLogger("nt3")
# Keras' name (CANDLE's NT3 uses categorical_crossentropy) and torch's name for the same loss.
CROSS_ENTROPY = ("cross_entropy", "categorical_crossentropy", "crossentropy")


class History:
    """The shape CANDLE workflows read: ``history.history['val_loss'][-1]``."""

    def __init__(self):
        self.history = {"loss": [], "acc": [], "val_loss": [], "val_acc": [], "epoch_seconds": []}


def initialize_parameters(default_model="nt3_default_model.txt"):
    bmk = nt3.NT3(nt3.file_path, default_model, "pytorch", prog="nt3_baseline_pytorch",
                  desc="1D CNN classifier of normal vs tumor expression profiles (synthetic data)")
    return candle.finalize_parameters(bmk)


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------
def make_data(params):
    """Synthetic profiles ``x`` (n_samples x feature_length, float32) and labels ``y`` (int64).

    Everything is drawn from ``RandomState(data_seed)``, so equal parameters give equal data.
    Classes are balanced; class 0 ("normal") has no bumps, class c >= 1 has ``n_bumps`` bumps at its
    own positions, each jittered per sample by up to ``bump_width`` features and scaled by +-25 %.
    """
    n = int(params["n_samples"])
    length = int(params["feature_length"])
    classes = int(params["classes"])
    n_bumps = int(params.get("n_bumps", 3))
    width = float(params.get("bump_width", 6.0))
    height = float(params.get("bump_height", 0.8))
    noise = float(params.get("noise", 1.0))
    if classes < 2:
        raise ValueError("classes = %d; NT3 needs at least 2 (normal and tumor)" % classes)
    if n < 2 * classes:
        raise ValueError("n_samples = %d is too few for %d classes" % (n, classes))
    if length < 8 * width:
        raise ValueError("feature_length = %d is too short for bumps of width %g" % (length, width))
    rs = np.random.RandomState(int(params["data_seed"]))
    position = np.arange(length, dtype=np.float64)

    # A smooth baseline every profile shares (a few slow waves), and a per-sample offset.
    baseline = np.zeros(length)
    for _ in range(4):
        period = rs.uniform(length / 8.0, length / 2.0)
        baseline += rs.uniform(0.2, 0.6) * np.sin(2 * np.pi * position / period + rs.uniform(0, 2 * np.pi))
    y = np.arange(n) % classes
    rs.shuffle(y)
    x = baseline + rs.normal(0.0, noise, size=(n, length)) + rs.normal(0.0, 0.3, size=(n, 1))

    margin = int(3 * width) + 1
    centers = rs.randint(margin, length - margin, size=(classes, max(n_bumps, 0)))
    for c in range(1, classes):
        members = np.flatnonzero(y == c)
        if n_bumps <= 0 or len(members) == 0:
            continue
        jitter = rs.uniform(-width, width, size=(len(members), n_bumps))
        scale = height * rs.uniform(0.75, 1.25, size=(len(members), n_bumps))
        where = centers[c][None, :] + jitter                                   # (members, bumps)
        bumps = scale[:, :, None] * np.exp(-0.5 * ((position[None, None, :] - where[:, :, None]) / width) ** 2)
        x[members] += bumps.sum(axis=1)
    return x.astype(np.float32), y.astype(np.int64)


def split_and_scale(x, y, params):
    """Hold out the last ``val_split`` share; scale features with statistics of the training part."""
    val_split = float(params.get("val_split") or 0.2)
    if not 0.0 < val_split < 1.0:
        raise ValueError("val_split = %g; expected a fraction between 0 and 1" % val_split)
    n_val = max(1, int(round(len(y) * val_split)))
    x_train, y_train, x_val, y_val = x[:-n_val], y[:-n_val], x[-n_val:], y[-n_val:]
    scaling = params.get("scaling") or "none"
    if scaling == "std":
        mean, std = x_train.mean(axis=0), x_train.std(axis=0)
        std[std == 0] = 1.0
        x_train, x_val = (x_train - mean) / std, (x_val - mean) / std
    elif scaling == "minmax":
        low, high = x_train.min(axis=0), x_train.max(axis=0)
        span = np.where(high > low, high - low, 1.0)
        x_train, x_val = (x_train - low) / span, (x_val - low) / span
    elif scaling == "minabs":  # CANDLE's name for scaling by the largest absolute value
        top = np.abs(x_train).max(axis=0)
        top[top == 0] = 1.0
        x_train, x_val = x_train / top, x_val / top
    elif scaling != "none":
        raise ValueError("unknown scaling %r; choose std, minmax, minabs or none" % scaling)
    as_tensor = lambda a, dtype: torch.from_numpy(np.ascontiguousarray(a, dtype=dtype))  # noqa: E731
    return (as_tensor(x_train, np.float32).unsqueeze(1), as_tensor(y_train, np.int64),
            as_tensor(x_val, np.float32).unsqueeze(1), as_tensor(y_val, np.int64))


# ------------------------------------------------------------------------------------------------
# model
# ------------------------------------------------------------------------------------------------
def int_list(value, name):
    """A list of ints from what a parameter may hold: an int, a list (possibly nested), or "16 5 1"."""
    if value is None:
        return []
    if isinstance(value, (bool, np.bool_)):
        raise ValueError("%s = %r; expected whole numbers" % (name, value))
    if isinstance(value, (int, np.integer)):
        return [int(value)]
    if isinstance(value, float) and value.is_integer():
        return [int(value)]
    if isinstance(value, str):
        return int_list(value.replace(",", " ").replace("[", " ").replace("]", " ").split(), name)
    if isinstance(value, (list, tuple)):
        out = []
        for item in value:
            if isinstance(item, (list, tuple)):
                out += int_list(item, name)
            else:
                try:
                    number = float(item)
                except (TypeError, ValueError):
                    raise ValueError("%s = %r; expected whole numbers" % (name, value)) from None
                if not number.is_integer():
                    raise ValueError("%s = %r; expected whole numbers" % (name, value))
                out.append(int(number))
        return out
    raise ValueError("%s = %r; expected a number or a list of numbers" % (name, value))


def conv_layers(params):
    """[(filters, kernel, stride), ...] from the flat ``conv`` list (CANDLE's convention)."""
    conv = int_list(params["conv"], "conv")
    if len(conv) % 3 != 0:
        raise ValueError("conv = %s; expected filters, kernel length, stride for each layer (a multiple of 3 "
                         "numbers, e.g. 16 5 1 16 5 1)" % conv)
    layers = [tuple(conv[i:i + 3]) for i in range(0, len(conv), 3)]
    for filters, kernel, stride in layers:
        if filters < 1 or kernel < 1 or stride < 1:
            raise ValueError("conv = %s; filters, kernel length and stride must be at least 1" % conv)
    return layers


class NT3Net(torch.nn.Module):
    def __init__(self, params, length, classes):
        super().__init__()
        activation = params["activation"]
        if activation not in ACTIVATIONS:
            raise ValueError("unknown activation %r; choose one of %s" % (activation, ", ".join(ACTIVATIONS)))
        act = ACTIVATIONS[activation]
        pools = int_list(params.get("pool"), "pool") or [1]
        batch_norm = bool(params.get("batch_normalization"))
        dropout = float(params.get("dropout") or 0.0)
        if not 0.0 <= dropout < 1.0:
            raise ValueError("dropout = %g; expected a value in [0, 1)" % dropout)

        features, channels, size = [], 1, length
        for index, (filters, kernel, stride) in enumerate(conv_layers(params)):
            if size < kernel:
                raise ValueError("conv layer %d: kernel length %d exceeds its input length %d; use shorter "
                                 "kernels, larger strides or less pooling" % (index + 1, kernel, size))
            features.append(torch.nn.Conv1d(channels, filters, kernel, stride=stride))
            if batch_norm:
                features.append(torch.nn.BatchNorm1d(filters))
            features.append(act())
            channels, size = filters, (size - kernel) // stride + 1
            pool = pools[index] if index < len(pools) else pools[-1]
            if pool > 1 and size >= pool:
                features.append(torch.nn.MaxPool1d(pool))
                size //= pool
        self.features = torch.nn.Sequential(*features)

        dense, width = [], channels * size
        for units in int_list(params.get("dense"), "dense"):
            if units < 1:
                continue  # CANDLE writes dense = [0] for "no hidden dense layer"
            dense += [torch.nn.Linear(width, units), act()]
            if dropout > 0:
                dense.append(torch.nn.Dropout(dropout))
            width = units
        dense.append(torch.nn.Linear(width, classes))
        self.classifier = torch.nn.Sequential(*dense)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def build_optimizer(params, model):
    """candle.build_pytorch_optimizer with Keras' defaults, this run's momentum and weight decay."""
    name = str(params["optimizer"]).lower()
    if name not in OPTIMIZERS:
        raise ValueError("unknown optimizer %r; choose one of %s" % (params["optimizer"], ", ".join(OPTIMIZERS)))
    defaults = dict(candle.keras_default_config(), momentum_sgd=float(params.get("momentum") or 0.0))
    optimizer = candle.build_pytorch_optimizer(model, name, float(params["learning_rate"]), defaults)
    for group in optimizer.param_groups:
        group["weight_decay"] = float(params.get("weight_decay") or 0.0)
    return optimizer


def evaluate(model, loss_fn, x, y, batch):
    model.eval()
    total_loss, correct = 0.0, 0
    with torch.no_grad():
        for first in range(0, len(y), batch):
            logits = model(x[first:first + batch])
            total_loss += loss_fn(logits, y[first:first + batch]).item() * len(logits)
            correct += (logits.argmax(1) == y[first:first + batch]).sum().item()
    return total_loss / len(y), correct / len(y)


# ------------------------------------------------------------------------------------------------
# run
# ------------------------------------------------------------------------------------------------
def run(params):
    candle.set_parallelism_threads()
    candle.set_seed(params["rng_seed"])
    candle.set_up_logger(os.path.join(params["output_dir"], "nt3.log"), logger, params.get("verbose", False))
    if str(params["loss"]).lower() not in CROSS_ENTROPY:
        raise ValueError("loss %r is not supported; NT3 is trained with cross_entropy" % params["loss"])
    if str(params["out_activation"]).lower() != "softmax":
        raise ValueError("out_activation %r is not supported; NT3 uses softmax" % params["out_activation"])

    x, y = make_data(params)
    x_train, y_train, x_val, y_val = split_and_scale(x, y, params)
    classes = int(params["classes"])
    model = NT3Net(params, x_train.shape[-1], classes)
    optimizer = build_optimizer(params, model)
    loss_fn = torch.nn.CrossEntropyLoss()  # softmax output + categorical cross-entropy, on logits
    batch = int(params["batch_size"])
    if batch < 1:
        raise ValueError("batch_size = %d; expected at least 1" % batch)
    timeout = float(params.get("timeout") or -1)

    ckpt = candle.CandleCkptPyTorch(params, verbose=False)
    ckpt.set_model({"model": model, "optimizer": optimizer})
    restarted = ckpt.restart(model)
    first_epoch = restarted["epoch"] if restarted else 0
    if restarted:
        logger.info("restarting from the checkpoint of epoch %d", first_epoch)

    history = History()
    log_path = os.path.join(params["output_dir"], "training.log")
    with open(log_path, "a" if restarted else "w", newline="") as handle:
        writer = csv.writer(handle)
        if not restarted:
            writer.writerow(["epoch", "loss", "acc", "val_loss", "val_acc", "seconds"])
        started = time.time()
        for epoch in range(first_epoch, int(params["epochs"])):
            epoch_start = time.time()
            model.train()
            order = torch.randperm(len(y_train))
            total, correct = 0.0, 0
            for first in range(0, len(order), batch):
                index = order[first:first + batch]
                optimizer.zero_grad()
                logits = model(x_train[index])
                loss = loss_fn(logits, y_train[index])
                loss.backward()
                optimizer.step()
                total += loss.item() * len(index)
                correct += (logits.argmax(1) == y_train[index]).sum().item()
            val_loss, val_acc = evaluate(model, loss_fn, x_val, y_val, max(batch, 256))
            seconds = time.time() - epoch_start
            row = [total / len(order), correct / len(order), val_loss, val_acc, seconds]
            for key, value in zip(("loss", "acc", "val_loss", "val_acc", "epoch_seconds"), row):
                history.history[key].append(value)
            writer.writerow([epoch + 1] + ["%.6g" % v for v in row])
            handle.flush()
            ckpt.ckpt_epoch(epoch, val_loss)
            logger.info("epoch %d/%d: loss %.4f acc %.3f val_loss %.4f val_acc %.3f (%.2f s)",
                        epoch + 1, int(params["epochs"]), row[0], row[1], val_loss, val_acc, seconds)
            if 0 < timeout < time.time() - started:  # CANDLE's TerminateOnTimeOut: stop after this epoch
                logger.info("timeout of %g s reached; training stopped after epoch %d", timeout, epoch + 1)
                break
    ckpt.report_final()
    if history.history["val_loss"]:
        logger.info("final val_loss %.4f val_acc %.3f", history.history["val_loss"][-1],
                    history.history["val_acc"][-1])
    return history


def main():
    params = initialize_parameters()
    run(params)


if __name__ == "__main__":
    main()
