"""A CANDLE-compliant benchmark with learning curves whose later epochs reorder the early rankings.

A run with hyperparameters (x1, x2) in [0, 1]^2 reports, after epoch e of ``epochs``,

    val_loss(e) = final(x) + 0.6 * exp(-e / tau(x1)),   final(x) = 0.1 + (x1 - 0.75)^2 + 0.3 (x2 - 0.4)^2,
    tau(x1) = 1 + 8 x1^2,

plus a little noise (the same for every epoch of a run), through ``candle_mbo.report`` every epoch. The
configurations that end best (x1 near 0.75) learn slowly (tau about 5.5 epochs): after one or two epochs
they look worse than fast learners with a poorer final value. Early discarding must not throw them away.
Each epoch sleeps ``epoch_s`` seconds. run() returns the history, as CANDLE models do.
"""

import math
import os
import random
import time

import candle

import candle_mbo

file_path = os.path.dirname(os.path.realpath(__file__))


class Curves(candle.Benchmark):
    def set_locals(self):
        self.additional_definitions = [
            {"name": "x1", "type": float, "default": 0.5}, {"name": "x2", "type": float, "default": 0.5},
            {"name": "epoch_s", "type": float, "default": 0.0}, {"name": "noise_seed", "type": int, "default": 0}]


def initialize_parameters():
    return candle.finalize_parameters(Curves(file_path, None, "none", prog="curves"))


def final(x1, x2):
    return 0.1 + (x1 - 0.75) ** 2 + 0.3 * (x2 - 0.4) ** 2


def curve(x1, x2, epoch):
    return final(x1, x2) + 0.6 * math.exp(-epoch / (1.0 + 8.0 * x1 * x1))


def run(params):
    x1, x2, epochs = params["x1"], params["x2"], int(params.get("epochs") or 27)
    noise = random.Random(hash((round(x1, 9), round(x2, 9), params["noise_seed"]))).gauss(0.0, 0.005)
    history = {"val_loss": []}
    for epoch in range(1, epochs + 1):
        if params["epoch_s"]:
            time.sleep(params["epoch_s"])
        value = curve(x1, x2, epoch) + noise
        history["val_loss"].append(value)
        candle_mbo.report(epoch, value)
    return history
