"""The MNIST example in PyTorch: the same benchmark, defaults, search space and UPF file as the Keras
version (mnist_mlp.py), for environments without TensorFlow (``make setup``, environment.yml).

The first run downloads MNIST (11 MB, the file Keras uses) into ``$CANDLE_DATA_DIR/mnist/`` with
``candle.fetch_file``; under candle_mbo that is the experiment's data/ folder, so a job downloads it
once. Without internet, place mnist.npz there by hand. ``run()`` returns a Keras-style history (loss,
accuracy, val_loss, val_accuracy per epoch), so candle_mbo reads val_loss from it as from the Keras one.

Run it alone:   python examples/mnist/mnist_mlp_pytorch.py -e 2
Fixed list:     python -m candle_mbo.upf --model examples/mnist/mnist_mlp_pytorch.py --upf upf/mnist.upf
Search it:      python -m candle_mbo --model examples/mnist/mnist_mlp_pytorch.py --space examples/mnist/space.R
"""

import numpy as np
import torch

import candle
import mnist

MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"

ACTIVATIONS = {"relu": torch.nn.ReLU, "elu": torch.nn.ELU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid,
               "selu": torch.nn.SELU, "softplus": torch.nn.Softplus}
OPTIMIZERS = {"sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop, "adam": torch.optim.Adam,
              "adagrad": torch.optim.Adagrad, "adadelta": torch.optim.Adadelta, "adamax": torch.optim.Adamax,
              "nadam": torch.optim.NAdam}


class History:
    """What Keras' model.fit returns, as far as CANDLE workflows read it: ``history.history[key]``."""

    def __init__(self):
        self.history = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}


def initialize_parameters(default_model="mnist_params.txt"):
    mnist_common = mnist.MNIST(mnist.file_path, default_model, "pytorch", prog="mnist_mlp_pytorch",
                               desc="MNIST example (PyTorch)")
    return candle.finalize_parameters(mnist_common)


def load_data(params):
    """MNIST as flat float32 pixels in [0, 1] and integer labels; optionally only the first N images."""
    path = candle.fetch_file(MNIST_URL, "mnist")
    with np.load(path) as data:
        x_train, y_train, x_test, y_test = (data[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    input_dim = int(params["input_dim"])
    n_train = int(params.get("train_samples") or 0)
    n_test = int(params.get("val_samples") or 0)
    if n_train > 0:
        x_train, y_train = x_train[:n_train], y_train[:n_train]
    if n_test > 0:
        x_test, y_test = x_test[:n_test], y_test[:n_test]
    print(len(x_train), "train samples,", len(x_test), "test samples")

    def tensors(x, y):
        return (torch.from_numpy(x.reshape(len(x), input_dim).astype(np.float32) / 255.0),
                torch.from_numpy(y.astype(np.int64)))

    return tensors(x_train, y_train) + tensors(x_test, y_test)


def build_model(params):
    dense = params["dense"]
    if isinstance(dense, int):
        dense = [dense]
    if params["activation"] not in ACTIVATIONS:
        raise ValueError("unknown activation %r; choose one of %s" % (params["activation"], ", ".join(ACTIVATIONS)))
    dropout = float(params.get("dropout") or 0.0)
    layers, width = [], int(params["input_dim"])
    for units in dense:
        if int(units) < 1:
            continue
        layers += [torch.nn.Linear(width, int(units)), ACTIVATIONS[params["activation"]]()]
        if dropout > 0:
            layers.append(torch.nn.Dropout(dropout))
        width = int(units)
    layers.append(torch.nn.Linear(width, int(params["classes"])))  # logits: softmax is in the loss
    return torch.nn.Sequential(*layers)


def build_optimizer(params, model):
    name = str(params["optimizer"]).lower()
    if name not in OPTIMIZERS:
        raise ValueError("unknown optimizer %r; choose one of %s" % (params["optimizer"], ", ".join(OPTIMIZERS)))
    options = {"lr": float(params["learning_rate"])}
    if name == "sgd":
        options["momentum"] = float(params.get("momentum") or 0.0)
    return OPTIMIZERS[name](model.parameters(), **options)


def evaluate(model, loss_fn, x, y, batch_size, device):
    model.eval()
    total, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            inputs, labels = x[start:start + batch_size].to(device), y[start:start + batch_size].to(device)
            logits = model(inputs)
            total += float(loss_fn(logits, labels)) * len(logits)
            correct += int((logits.argmax(dim=1) == labels).sum())
    return total / len(x), correct / len(x)


def run(params):
    candle.set_parallelism_threads()
    candle.set_seed(params["rng_seed"])
    if params["loss"] != "categorical_crossentropy":
        raise ValueError("loss %r: this example trains with categorical_crossentropy only" % params["loss"])

    # The GPU candle_mbo gave this worker (--gpus-per-worker sets CUDA_VISIBLE_DEVICES), else the CPU.
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x_train, y_train, x_test, y_test = load_data(params)
    model = build_model(params).to(device)
    print(model, "on", device)
    optimizer = build_optimizer(params, model)
    loss_fn = torch.nn.CrossEntropyLoss()
    batch_size = int(params["batch_size"])
    history = History()
    for epoch in range(int(params["epochs"])):
        model.train()
        order = torch.randperm(len(x_train))
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(x_train[batch].to(device)), y_train[batch].to(device))
            loss.backward()
            optimizer.step()
        for prefix, (x, y) in (("", (x_train, y_train)), ("val_", (x_test, y_test))):
            loss_value, accuracy = evaluate(model, loss_fn, x, y, 1024, device)
            history.history[prefix + "loss"].append(loss_value)
            history.history[prefix + "accuracy"].append(accuracy)
        print("epoch %d: loss %.4f, accuracy %.4f, val_loss %.4f, val_accuracy %.4f" % (
            epoch + 1, history.history["loss"][-1], history.history["accuracy"][-1], history.history["val_loss"][-1],
            history.history["val_accuracy"][-1]))
    return history


def main():
    run(initialize_parameters())


if __name__ == "__main__":
    main()
