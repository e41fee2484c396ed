"""objective_from's one rule for non-finite epochs (NaN, +-Inf: a diverged epoch)."""

import math

import pytest

from candle_mbo.pool.runner import objective_from

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("history, reduction, expected", [
    ([0.5, NAN, 0.3, 0.4], "min", 0.3),         # a NaN epoch neither wins nor hides later epochs
    ([NAN, 0.5, 0.4], "min", 0.4),              # ... wherever it is
    ([0.5, -INF, 0.4], "min", 0.4),             # -inf is not a minimum, it is a diverged epoch
    ([0.5, INF, 0.7], "max", 0.7),
    ([0.5, NAN, 0.7], "max", 0.7),
    ([0.5, NAN, 0.4], "last", 0.4),             # last: only the last epoch counts
])
def test_non_finite_epochs_are_ignored_where_a_finite_value_decides(history, reduction, expected):
    objective, _, _ = objective_from({"val_loss": history}, "val_loss", reduction)
    assert objective == expected


@pytest.mark.parametrize("history, reduction, message", [
    ([0.5, 0.4, NAN], "last", "the last 'val_loss' (epoch 3 of 3) is nan, not a finite number"),
    ([0.5, INF], "last", "is inf, not a finite number"),
    ([NAN, INF], "min", "every 'val_loss' value is non-finite (inf, nan), no min to take"),
    ([NAN], "max", "every 'val_loss' value is non-finite (nan), no max to take"),
])
def test_the_run_fails_when_the_chosen_value_is_not_finite(history, reduction, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        objective_from({"val_loss": history}, "val_loss", reduction)


def test_a_non_finite_number_returned_fails_the_run():
    with pytest.raises(ValueError, match="run\\(\\) returned is nan"):
        objective_from(math.nan)


def test_numpy_nan_epochs_follow_the_same_rule():
    numpy = pytest.importorskip("numpy")
    objective, _, _ = objective_from({"val_loss": numpy.array([0.5, numpy.nan, 0.25])}, "val_loss", "min")
    assert objective == 0.25
