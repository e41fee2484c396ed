"""Benchmark description of the NT3-like example: its extra parameters and the required ones.

CANDLE's NT3 classifies RNA-seq expression profiles as normal or tumor tissue with a 1D convolutional
network. This stand-in keeps the model and its parameters but generates its data deterministically
(see nt3_baseline_pytorch.make_data), so it needs no download and trains in seconds on one core.
"""

import os

import candle

file_path = os.path.dirname(os.path.realpath(__file__))

additional_definitions = [
    # data
    {"name": "classes", "type": int, "default": 2, "help": "number of classes (0 = normal, 1.. = tumor types)"},
    {"name": "feature_length", "type": int, "default": 1000, "help": "features (genes) per profile"},
    {"name": "n_samples", "type": int, "default": 600, "help": "profiles generated in all"},
    {"name": "data_seed", "type": int, "default": 0, "help": "seed of the synthetic data and of its split"},
    {"name": "noise", "type": float, "default": 1.0, "help": "standard deviation of the per-feature noise"},
    {"name": "n_bumps", "type": int, "default": 3, "help": "localized bumps that mark a tumor profile"},
    {"name": "bump_height", "type": float, "default": 0.8, "help": "mean height of a bump, in noise units"},
    {"name": "bump_width", "type": float, "default": 6.0, "help": "width (standard deviation) of a bump, in features"},
    # model: CANDLE declares 'pool' as one number; NT3 gives one pool length per convolution layer
    {"name": "pool", "type": int, "nargs": "+",
     "help": "max-pooling length after each convolution layer (the last one repeats; 0 or 1: none)"},
    {"name": "weight_decay", "type": float, "default": 0.0, "help": "L2 penalty of the optimizer"},
]

required = ["data_seed", "conv", "dense", "pool", "activation", "out_activation", "loss", "optimizer",
            "learning_rate", "epochs", "batch_size", "dropout", "classes"]


class NT3(candle.Benchmark):
    def set_locals(self):
        if required is not None:
            self.required = set(required)
        if additional_definitions is not None:
            self.additional_definitions = additional_definitions
