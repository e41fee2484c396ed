"""A numpy model with a diverging region, for bench/diverging_bench.py (issue 21, item 9).

Two hyperparameters: ``lr`` (log10 of a learning rate, -5..0) and ``width`` (0..1). Training is stable
while lr < edge(width) = -1.2 + 0.6 width; there the loss is a smooth bowl whose minimum, 0.3 at
(lr = edge - 0.4, width = 0.6), sits close to the edge (as the best learning rate often does). Beyond
the edge the run diverges: val_loss 1e13 right at the edge, growing to 1e30 0.6 decades beyond it.
About 18% of the space diverges.
"""

import numpy as np


def edge(width):
    return -1.2 + 0.6 * np.asarray(width, dtype=float)


def diverges(lr, width):
    return np.asarray(lr, dtype=float) > edge(width)


def val_loss(lr, width):
    lr, width = np.asarray(lr, dtype=float), np.asarray(width, dtype=float)
    stable = 0.3 + 0.15 * (lr - (edge(width) - 0.4)) ** 2 + 0.5 * (width - 0.6) ** 2
    beyond = 10.0 ** (13 + 17 * np.clip((lr - edge(width)) / 0.6, 0, 1))
    return np.where(diverges(lr, width), beyond, stable)


def run(params):
    """CANDLE-style entry point: the parameters in, the objective out."""
    return {"val_loss": float(val_loss(params["lr"], params["width"]))}
