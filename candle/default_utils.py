"""CANDLE's legacy ``default_utils`` module: the same functions under their old home."""

from candle_mbo.compat import *  # noqa: F401,F403 - this module is a re-export
from candle_mbo.compat import __all__  # noqa: F401
from candle_mbo.compat import tensorflow_helper as _tensorflow_helper


def __getattr__(name):
    return _tensorflow_helper(name)
