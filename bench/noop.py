"""A CANDLE-shaped model that does nothing: measures the workflow's own cost per run."""


def initialize_parameters():
    return {"rng_seed": 7102}


def run(params):
    return {"val_loss": [0.0]}
