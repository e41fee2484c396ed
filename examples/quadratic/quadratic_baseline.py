"""A CANDLE-compliant toy benchmark: a shifted quadratic bowl, minimum 0 at x=1, y=-2.

numpy only; each "epoch" moves halfway to the final value, so the history looks like training.
Used by the fast tests and for trying candle_mbo in seconds.
"""

import time

import numpy as np

import candle
import quadratic


def initialize_parameters(default_model="quadratic_params.txt"):
    bmk = quadratic.Quadratic(quadratic.file_path, default_model, "numpy", prog="quadratic_baseline",
                              desc="quadratic bowl")
    return candle.finalize_parameters(bmk)


def run(params):
    if params["sleep"] > 0:
        time.sleep(params["sleep"])
    value = (params["x"] - 1.0) ** 2 + (params["y"] + 2.0) ** 2
    if params["noise"] > 0:
        value += np.random.RandomState(int(params["rng_seed"])).normal(0, params["noise"])
    epochs = max(1, int(params["epochs"]))
    start = value + 1.0
    val_loss = [value + (start - value) * 0.5 ** (i + 1) for i in range(epochs - 1)] + [value]
    print("x=%g y=%g val_loss=%g" % (params["x"], params["y"], value))
    return {"loss": list(val_loss), "val_loss": val_loss}


if __name__ == "__main__":
    run(initialize_parameters())
