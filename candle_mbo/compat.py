"""The CANDLE-compatible API, exposed to user code as the ``candle`` package.

``import candle`` must work for code written for CANDLE, be fast, and not need TensorFlow or torch.
The TensorFlow-only helpers are looked up lazily: touching ``candle.build_optimizer`` imports
TensorFlow then, and says plainly that it is needed if it is missing.
"""

from ._benchmark import (
    Benchmark,
    ParameterError,
    coerce_value,
    finalize_parameters,
    initialize_parameters,
    parse_list_of_lists,
)
from ._common_params import COMMON_DEFINITIONS, DEFAULT_SEED, DEFAULT_TIMEOUT
from ._helpers import (
    ArgumentStruct,
    fetch_file,
    get_file,
    keras_default_config,
    set_parallelism_threads,
    set_seed,
    str2bool,
    verify_path,
)

def _report_parameter_errors():
    """When a benchmark runs as a script, a ParameterError that nobody catches is bad input: print one
    ``error: ...`` line and exit with code 2 instead of a traceback. Other exceptions are untouched."""
    import sys

    previous = sys.excepthook

    def hook(kind, value, traceback):
        if issubclass(kind, ParameterError):
            print("error: %s" % value, file=sys.stderr)
            sys.exit(2)
        previous(kind, value, traceback)

    if not getattr(previous, "_candle_mbo", False):
        hook._candle_mbo = True
        sys.excepthook = hook


_report_parameter_errors()

TENSORFLOW_ONLY = ("build_optimizer", "build_initializer", "TerminateOnTimeOut", "CandleRemoteMonitor")

__all__ = [
    "Benchmark", "ParameterError", "finalize_parameters", "initialize_parameters", "ArgumentStruct",
    "str2bool", "verify_path", "fetch_file", "get_file", "set_seed", "keras_default_config",
    "set_parallelism_threads", "parse_list_of_lists", "coerce_value", "COMMON_DEFINITIONS", "DEFAULT_SEED",
    "DEFAULT_TIMEOUT",
]


class TensorFlowMissing(AttributeError):
    """A TensorFlow-only helper was asked for where TensorFlow is not importable.

    An AttributeError, so that ``hasattr(candle, "build_optimizer")`` is False without TensorFlow;
    ``from candle import build_optimizer`` then fails with an ImportError, as users expect.
    """


def tensorflow_helper(name):
    """Return one of the TensorFlow-only helpers, importing TensorFlow on first use."""
    if name not in TENSORFLOW_ONLY:
        raise AttributeError(name)
    try:
        from . import _keras
    except ImportError as exc:
        raise TensorFlowMissing("candle.%s needs TensorFlow 2, which is not importable here (%s); "
                          "install tensorflow, e.g. with the project's environment.yml" % (name, exc)) from None
    return getattr(_keras, name)
