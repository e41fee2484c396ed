"""Benchmark description of the quadratic example (numpy only, runs in milliseconds)."""

import os

import candle

file_path = os.path.dirname(os.path.realpath(__file__))

additional_definitions = [
    {"name": "x", "type": float, "default": 0.0, "help": "first coordinate"},
    {"name": "y", "type": float, "default": 0.0, "help": "second coordinate"},
    {"name": "noise", "type": float, "default": 0.0, "help": "standard deviation of added noise"},
    {"name": "sleep", "type": float, "default": 0.0, "help": "seconds to sleep, to mimic training time"},
]

required = ["x", "y"]


class Quadratic(candle.Benchmark):
    def set_locals(self):
        if required is not None:
            self.required = set(required)
        if additional_definitions is not None:
            self.additional_definitions = additional_definitions
