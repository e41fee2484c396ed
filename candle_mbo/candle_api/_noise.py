"""candle_lib's noise injection: flipped labels and Gaussian or uniform feature noise (``add_noise``).

Randomness comes from Python's ``random`` (which samples are hit) and numpy's global generator (the
noise values), drawn in the same order as candle_lib, so seeded runs give the same data. Arrays are
changed in place where candle_lib changes them in place.
"""

import random

import numpy as np


def add_noise(data, labels, params):
    """Apply the noise that ``params`` asks for; returns ``(data, labels)``.

    Nothing unless ``add_noise``; then the first that applies of: ``label_noise`` (a share of flipped
    labels, correlated with feature ``feature_col`` above ``feature_threshold`` when
    ``noise_correlated``), ``noise_gaussian`` (``std_dev`` on every value), ``noise_cluster`` (noise on
    ``feature_col`` for a ``label_noise`` share of ``sample_ids``), ``noise_column`` (noise on the columns
    ``feature_col``); ``noise_type`` is gaussian or uniform.
    """
    if not params["add_noise"]:
        return data, labels
    if params["label_noise"]:
        if params["noise_correlated"]:
            labels, _ = label_flip_correlated(labels, params["label_noise"], data, params["feature_col"],
                                              params["feature_threshold"])
        else:
            labels, _ = label_flip(labels, params["label_noise"])
    elif params["noise_gaussian"]:
        data = add_gaussian_noise(data, 0, params["std_dev"])
    elif params["noise_cluster"]:
        data = add_cluster_noise(data, loc=0.0, scale=params["std_dev"], col_ids=params["feature_col"],
                                 noise_type=params["noise_type"], row_ids=params["sample_ids"],
                                 y_noise_level=params["label_noise"])
    elif params["noise_column"]:
        data = add_column_noise(data, 0, params["std_dev"], col_ids=params["feature_col"],
                                noise_type=params["noise_type"])
    return data, labels


def _flip(row):
    for j in range(len(row)):
        row[j] = int(not row[j])


def label_flip(y_data_categorical, y_noise_level):
    """Invert every one-hot entry of a ``y_noise_level`` share of the rows; returns (labels, share flipped)."""
    flipped = 0
    for i in range(y_data_categorical.shape[0]):
        if random.random() < y_noise_level:
            flipped += 1
            _flip(y_data_categorical[i])
    share = float(flipped) / float(y_data_categorical.shape[0])
    print("label noise: flipped %d of %d samples (%.4f, %.4f requested)"
          % (flipped, y_data_categorical.shape[0], share, y_noise_level))
    return y_data_categorical, share


def label_flip_correlated(y_data_categorical, y_noise_level, x_data, col_ids, threshold):
    """Like label_flip, but only rows whose feature ``col_id`` exceeds ``threshold`` (for each col_id)."""
    share = 0.0
    for col_id in col_ids:
        flipped = 0
        for i in range(y_data_categorical.shape[0]):
            if x_data[i][col_id] > threshold and random.random() < y_noise_level:
                flipped += 1
                _flip(y_data_categorical[i])
        share = float(flipped) / float(y_data_categorical.shape[0])
        print("label noise correlated with feature %d: flipped %d of %d samples (%.4f, %.4f requested)"
              % (col_id, flipped, y_data_categorical.shape[0], share, y_noise_level))
    return y_data_categorical, share


def add_gaussian_noise(x_data, loc=0.0, scale=0.5):
    """``x_data`` plus normal noise N(loc, scale) on every value (a new array)."""
    return x_data + np.random.normal(loc, scale, size=x_data.shape)


def _draw(noise_type, loc, scale, size=None):
    if noise_type == "gaussian":
        return np.random.normal(loc, scale, size=size)
    if noise_type == "uniform":
        return np.random.uniform(-1.0 * scale, scale, size=size)
    raise ValueError("noise_type %r: choose gaussian or uniform" % (noise_type,))


def add_column_noise(x_data, loc=0.0, scale=0.5, col_ids=(0,), noise_type="gaussian"):
    """Add noise to every value of the columns ``col_ids`` (in place); returns ``x_data``."""
    for col_id in col_ids:
        x_data[:, col_id] = 1.0 * x_data[:, col_id] + _draw(noise_type, loc, scale, size=x_data.shape[0])
    return x_data


def add_cluster_noise(x_data, loc=0.0, scale=0.5, col_ids=(0,), noise_type="gaussian", row_ids=(0,),
                      y_noise_level=0.0):
    """Add noise to the columns ``col_ids`` of a ``y_noise_level`` share of the rows ``row_ids`` (in place)."""
    hit = 0
    for row_id in row_ids:
        if random.random() < y_noise_level:
            hit += 1
            for col_id in col_ids:
                x_data[row_id, col_id] = 1.0 * x_data[row_id, col_id] + _draw(noise_type, loc, scale)
    print("cluster noise: %d of %d samples (%.4f, %.4f requested)"
          % (hit, len(row_ids), float(hit) / float(len(row_ids)), y_noise_level))
    return x_data
