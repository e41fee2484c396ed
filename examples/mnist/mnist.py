"""Benchmark description of the MNIST example: its extra parameters and the required ones.

Importing this module needs neither TensorFlow nor the data: the baseline script (mnist_mlp.py) builds
``MNIST`` with the defaults file next to this one and lets ``candle.finalize_parameters`` resolve them.
"""

import os

import candle

file_path = os.path.dirname(os.path.realpath(__file__))

additional_definitions = [
    {"name": "classes", "type": int, "default": 10, "help": "number of classes (digits 0-9)"},
    {"name": "input_dim", "type": int, "default": 784, "help": "pixels per image (28 x 28, flattened)"},
]

required = ["epochs", "batch_size", "activation", "optimizer", "learning_rate", "dense", "dropout", "loss",
            "out_activation"]


class MNIST(candle.Benchmark):
    def set_locals(self):
        """Set the benchmark's required parameters and its own definitions (CANDLE's hook)."""
        if required is not None:
            self.required = set(required)
        if additional_definitions is not None:
            self.additional_definitions = additional_definitions
