"""A CANDLE-compliant PyTorch benchmark: an MLP on scikit-learn's bundled 8x8 digits.

It trains for real in seconds on a laptop core, needs no download, and reports a Keras-style history
(loss, val_loss, val_acc per epoch), so it serves as the quick-start and demo model of candle_mbo. Each
epoch is also reported with ``candle_mbo.report()`` while it trains: live progress, learning curves of
interrupted runs, and early discarding (``--prune asha``); run by hand, the call does nothing.

Run it alone:   python examples/digits/digits_baseline.py -e 2
Search it:      python -m candle_mbo --model examples/digits/digits_baseline.py --space examples/digits/space.R
"""

import time

import numpy as np
import torch
from sklearn.datasets import load_digits

import candle
import candle_mbo
import digits

ACTIVATIONS = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid, "elu": torch.nn.ELU}
OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop,
              "adagrad": torch.optim.Adagrad}


class History:
    """The shape CANDLE workflows read: ``history.history['val_loss'][-1]``."""

    def __init__(self):
        self.history = {"loss": [], "val_loss": [], "val_acc": [], "epoch_seconds": []}


def initialize_parameters(default_model="digits_params.txt"):
    bmk = digits.Digits(digits.file_path, default_model, "pytorch", prog="digits_baseline",
                        desc="MLP on the scikit-learn digits")
    return candle.finalize_parameters(bmk)


def load_data(params):
    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    order = np.random.RandomState(params["data_seed"]).permutation(len(y))
    n_val = int(len(y) * params["val_fraction"])
    val, train = order[:n_val], order[n_val:]
    return torch.from_numpy(x[train]), torch.from_numpy(y[train]), torch.from_numpy(x[val]), torch.from_numpy(y[val])


def build_model(params, n_in, n_out):
    hidden = params["hidden"]
    if isinstance(hidden, int):
        hidden = [hidden]
    layers, width = [], n_in
    for units in hidden:
        layers += [torch.nn.Linear(width, int(units)), ACTIVATIONS[params["activation"]]()]
        if params["deep_dropout"] and params["dropout"] > 0:
            layers.append(torch.nn.Dropout(params["dropout"]))
        width = int(units)
    layers.append(torch.nn.Linear(width, n_out))
    return torch.nn.Sequential(*layers)


def run(params):
    candle.set_parallelism_threads()
    candle.set_seed(params["rng_seed"])
    x_train, y_train, x_val, y_val = load_data(params)
    model = build_model(params, x_train.shape[1], 10)
    optimizer = OPTIMIZERS[params["optimizer"]](model.parameters(), lr=params["learning_rate"],
                                                weight_decay=params["weight_decay"])
    loss_fn = torch.nn.CrossEntropyLoss()
    history = History()
    batch = int(params["batch_size"])
    for epoch in range(int(params["epochs"])):
        start = time.time()
        model.train()
        order = torch.randperm(len(y_train))
        total = 0.0
        for first in range(0, len(order), batch):
            index = order[first:first + batch]
            optimizer.zero_grad()
            loss = loss_fn(model(x_train[index]), y_train[index])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
        model.eval()
        with torch.no_grad():
            logits = model(x_val)
            val_loss = loss_fn(logits, y_val).item()
            val_acc = (logits.argmax(1) == y_val).float().mean().item()
        history.history["loss"].append(total / len(order))
        history.history["val_loss"].append(val_loss)
        history.history["val_acc"].append(val_acc)
        history.history["epoch_seconds"].append(time.time() - start)
        candle_mbo.report(epoch + 1, val_loss, loss=total / len(order), val_acc=val_acc)
        if params["verbose"]:
            print("epoch %d: loss %.4f val_loss %.4f val_acc %.3f" % (epoch + 1, total / len(order), val_loss, val_acc))
    print("final val_loss %.4f val_acc %.3f" % (history.history["val_loss"][-1], history.history["val_acc"][-1]))
    return history


def main():
    params = initialize_parameters()
    run(params)


if __name__ == "__main__":
    main()
