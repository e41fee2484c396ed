"""candle_lib's legacy ``default_utils`` module: the same functions under their old home."""

from . import *  # noqa: F401,F403 - this module is a re-export
from . import __all__  # noqa: F401
from . import __getattr__ as _package_getattr


def __getattr__(name):
    return _package_getattr(name)
