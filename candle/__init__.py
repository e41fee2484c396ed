"""``import candle`` for CANDLE-compliant benchmark code, served by candle_mbo.

A thin face over :mod:`candle_mbo.compat`; see that module for what is provided.
"""

from candle_mbo.compat import *  # noqa: F401,F403 - this package is a re-export
from candle_mbo.compat import __all__ as _compat_all
from candle_mbo.compat import tensorflow_helper as _tensorflow_helper

from . import default_utils  # noqa: F401 - CANDLE code does `from candle import default_utils`

__all__ = list(_compat_all) + ["default_utils"]


def __getattr__(name):
    return _tensorflow_helper(name)
