"""Benchmark description of the digits example: its extra parameters and the required ones.

The CANDLE pattern: a ``candle.Benchmark`` subclass whose ``set_locals()`` sets ``required`` and
``additional_definitions``. The baseline script builds it with the defaults file next to this one.
"""

import os

import candle

file_path = os.path.dirname(os.path.realpath(__file__))

additional_definitions = [
    {"name": "hidden", "type": int, "nargs": "+", "help": "units of each hidden layer"},
    {"name": "weight_decay", "type": float, "default": 0.0, "help": "L2 penalty of the optimizer"},
    {"name": "val_fraction", "type": float, "default": 0.25, "help": "share of the samples held out"},
    {"name": "data_seed", "type": int, "default": 0, "help": "seed of the train/validation split"},
    {"name": "deep_dropout", "type": candle.str2bool, "default": True, "help": "use dropout after hidden layers"},
]

required = ["epochs", "batch_size", "learning_rate", "hidden", "activation", "optimizer", "dropout"]


class Digits(candle.Benchmark):
    def set_locals(self):
        if required is not None:
            self.required = set(required)
        if additional_definitions is not None:
            self.additional_definitions = additional_definitions
