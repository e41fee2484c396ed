"""A CANDLE-compliant benchmark for the HPO benchmarks: Branin or Hartmann-6, taking time like training.

``function``: branin (x1 in [-5, 10], x2 in [0, 15]; minimum 0.397887), hartmann6 (x1..x6 in [0, 1];
minimum -3.32237) or rosenbrock4 (x1..x4 in [-2, 2]; minimum 0 at (1, 1, 1, 1)). Each run sleeps
between ``min_s`` and ``max_s`` seconds: where in that range depends on x1 (half) and on chance (half),
as real training time depends on hyperparameters and on the machine.
"""

import math
import os
import random
import time

import candle

file_path = os.path.dirname(os.path.realpath(__file__))

_A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
_P = [[0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886], [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
      [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650], [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381]]
_ALPHA = [1.0, 1.2, 3.0, 3.2]


def branin(x1, x2):
    b, c, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def hartmann6(x):
    return -sum(a * math.exp(-sum(_A[i][j] * (x[j] - _P[i][j]) ** 2 for j in range(6)))
                for i, a in enumerate(_ALPHA))


class Synthetic(candle.Benchmark):
    def set_locals(self):
        self.additional_definitions = (
            [{"name": "function", "type": str, "default": "branin"},
             {"name": "min_s", "type": float, "default": 0.0}, {"name": "max_s", "type": float, "default": 0.0}]
            + [{"name": "x%d" % i, "type": float, "default": 0.5} for i in range(1, 7)])


def initialize_parameters():
    return candle.finalize_parameters(Synthetic(file_path, None, "none", prog="synthetic"))


def rosenbrock(x):
    return sum(100 * (b - a * a) ** 2 + (1 - a) ** 2 for a, b in zip(x, x[1:]))


def evaluate(params):
    if params["function"] == "hartmann6":
        return hartmann6([params["x%d" % i] for i in range(1, 7)])
    if params["function"] == "rosenbrock4":
        return rosenbrock([params["x%d" % i] for i in range(1, 5)])
    return branin(params["x1"], params["x2"])


def run(params):
    if params["max_s"] > 0:
        low, high = {"hartmann6": (0.0, 1.0), "rosenbrock4": (-2.0, 2.0)}.get(params["function"], (-5.0, 10.0))
        share = min(1.0, max(0.0, (params["x1"] - low) / (high - low)))
        fraction = 0.5 * share + 0.5 * random.random()
        time.sleep(params["min_s"] + (params["max_s"] - params["min_s"]) * fraction)
    value = evaluate(params)
    return {"val_loss": [value]}
