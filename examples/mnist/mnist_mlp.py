"""The CANDLE user guide's MNIST example: a Keras MLP on the MNIST digits, written for TensorFlow 2.

Needs TensorFlow 2 (``from tensorflow import keras``); the first run downloads MNIST (11 MB) into
~/.keras/datasets. It reports Keras' own History (loss, accuracy, val_loss, val_accuracy per epoch),
so candle_mbo reads val_loss from it as from any CANDLE benchmark.

Run it alone:   python examples/mnist/mnist_mlp.py -e 2   (mnist_mlp_pytorch.py: the same in PyTorch)
Fixed list:     python -m candle_mbo.upf --model examples/mnist/mnist_mlp.py --upf upf/mnist.upf
Search it:      python -m candle_mbo --model examples/mnist/mnist_mlp.py --space examples/mnist/space.R
"""

from tensorflow import keras

import candle
import mnist


def initialize_parameters(default_model="mnist_params.txt"):
    mnist_common = mnist.MNIST(mnist.file_path, default_model, "keras", prog="mnist_mlp", desc="MNIST example")
    # Reads the defaults file, the command line and, under candle_mbo, the run's hyperparameters.
    gParameters = candle.finalize_parameters(mnist_common)
    return gParameters


def build_optimizer(gParameters):
    """The Keras optimizer named by 'optimizer', with 'learning_rate' (and 'momentum' for SGD)."""
    optimizers = {
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
        "adam": keras.optimizers.Adam,
        "adagrad": keras.optimizers.Adagrad,
        "adadelta": keras.optimizers.Adadelta,
        "adamax": keras.optimizers.Adamax,
        "nadam": keras.optimizers.Nadam,
    }
    name = str(gParameters["optimizer"]).lower()
    if name not in optimizers:
        raise ValueError("unknown optimizer %r; choose one of %s" % (gParameters["optimizer"], ", ".join(optimizers)))
    options = {"learning_rate": float(gParameters["learning_rate"])}
    if name == "sgd":
        options["momentum"] = float(gParameters.get("momentum") or 0.0)
    return optimizers[name](**options)


def load_data(gParameters):
    """MNIST as flat float32 pixels in [0, 1] and one-hot labels; optionally only the first N images."""
    num_classes = int(gParameters["classes"])
    input_dim = int(gParameters["input_dim"])
    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    x_train = x_train.reshape(len(x_train), input_dim).astype("float32") / 255.0
    x_test = x_test.reshape(len(x_test), input_dim).astype("float32") / 255.0
    n_train = int(gParameters.get("train_samples") or 0)
    n_test = int(gParameters.get("val_samples") or 0)
    if n_train > 0:
        x_train, y_train = x_train[:n_train], y_train[:n_train]
    if n_test > 0:
        x_test, y_test = x_test[:n_test], y_test[:n_test]
    y_train = keras.utils.to_categorical(y_train, num_classes)
    y_test = keras.utils.to_categorical(y_test, num_classes)
    print(x_train.shape[0], "train samples,", x_test.shape[0], "test samples")
    return x_train, y_train, x_test, y_test


def build_model(gParameters):
    dense = gParameters["dense"]
    if isinstance(dense, int):
        dense = [dense]
    dropout = float(gParameters.get("dropout") or 0.0)
    model = keras.Sequential(name="mnist_mlp")
    model.add(keras.Input(shape=(int(gParameters["input_dim"]),)))
    for units in dense:
        if int(units) < 1:
            continue
        model.add(keras.layers.Dense(int(units), activation=gParameters["activation"]))
        if dropout > 0:
            model.add(keras.layers.Dropout(dropout))
    model.add(keras.layers.Dense(int(gParameters["classes"]), activation=gParameters["out_activation"]))
    return model


def run(gParameters):
    candle.set_parallelism_threads()
    candle.set_seed(gParameters["rng_seed"])

    x_train, y_train, x_test, y_test = load_data(gParameters)
    model = build_model(gParameters)
    model.summary()
    model.compile(loss=gParameters["loss"], optimizer=build_optimizer(gParameters), metrics=["accuracy"])

    # verbose=2: one line per epoch, readable in a run's model.log (a progress bar is not)
    history = model.fit(x_train, y_train,
                        batch_size=int(gParameters["batch_size"]),
                        epochs=int(gParameters["epochs"]),
                        verbose=2,
                        validation_data=(x_test, y_test))
    score = model.evaluate(x_test, y_test, verbose=0)
    print("Test loss:", score[0])
    print("Test accuracy:", score[1])

    # Free the graph and the model: candle_mbo may run the next parameter set in this same process.
    keras.backend.clear_session()
    return history


def main():
    gParameters = initialize_parameters()
    run(gParameters)


if __name__ == "__main__":
    main()
