"""candle_mbo's CANDLE layer: candle_lib's API, answered to ``import candle`` where candle_lib is absent.

Where candle_lib is installed, ``import candle`` is candle_lib and this package stays out of the way
(see :mod:`candle_mbo.candle_finder`). Elsewhere benchmark code written for candle_lib runs unchanged
against this reimplementation:

- the parameter handling (``Benchmark``, ``finalize_parameters``) and small helpers are loaded with
  ``import candle``, which needs neither a deep-learning framework nor pandas;
- the data, preprocessing, noise, UQ and plotting helpers load numpy/pandas/scipy/matplotlib on first use;
- the PyTorch helpers (``CandleCkptPyTorch``, ``build_pytorch_optimizer``...) import torch on first use;
- the Keras helpers (``CandleCkptKeras``, ``build_optimizer``, ``r2``...) import TensorFlow on first use
  and say plainly that it is needed where it is missing;
- any other name fails with one sentence saying candle_mbo does not provide it and how to get candle_lib.
"""

from . import _catalog
from ._benchmark import (
    Benchmark,
    ParameterError,
    check_flag_conflicts,
    coerce_value,
    create_params,
    finalize_parameters,
    initialize_parameters,
    parse_from_dictlist,
    parse_list_of_lists,
)
from ._common_params import COMMON_DEFINITIONS, DEFAULT_SEED, DEFAULT_TIMEOUT
from ._helpers import (
    ArgumentStruct,
    clr_check_args,
    clr_set_args,
    fetch_file,
    get_file,
    keras_default_config,
    set_default_data_dir,
    set_parallelism_threads,
    set_seed,
    set_up_logger,
    str2bool,
    validate_file,
    verify_path,
)


def _register_candle_alias():
    """Once candle_mbo's layer is loaded (e.g. by the runner), ``import candle`` works in this process."""
    from ..candle_finder import register

    register()


_register_candle_alias()


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

__all__ = [
    "Benchmark", "ParameterError", "finalize_parameters", "initialize_parameters", "create_params",
    "ArgumentStruct", "str2bool", "verify_path", "fetch_file", "get_file", "validate_file", "set_seed",
    "set_up_logger", "keras_default_config", "set_parallelism_threads", "parse_list_of_lists",
    "parse_from_dictlist", "check_flag_conflicts", "clr_check_args", "clr_set_args", "coerce_value",
    "COMMON_DEFINITIONS", "DEFAULT_SEED", "DEFAULT_TIMEOUT",
]

CANDLE_LIB_HINT = ("install candle_lib (pip install git+https://github.com/ECP-CANDLE/candle_lib) and "
                   "`import candle` will use it instead")


class NotProvided(AttributeError):
    """A ``candle`` name this layer does not provide (or whose framework is missing here).

    An AttributeError, so that ``hasattr(candle, name)`` is False; its message says what to do.
    """


TensorFlowMissing = NotProvided  # the name earlier versions raised


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    if name in _catalog.LAZY:
        return _lazy(name, _catalog.LAZY[name], "numpy, pandas, scipy and matplotlib")
    if name in _catalog.LAZY_PYTORCH:
        return _lazy(name, _catalog.LAZY_PYTORCH[name], "PyTorch")
    if name in _catalog.LAZY_TENSORFLOW:
        return _lazy(name, _catalog.LAZY_TENSORFLOW[name], "TensorFlow 2")
    if name in _catalog.CANDLE_LIB_ONLY:
        raise NotProvided("candle.%s is a candle_lib function that candle_mbo does not provide; %s"
                          % (name, CANDLE_LIB_HINT))
    raise NotProvided("candle.%s is not provided by candle_mbo's CANDLE layer; if it is a candle_lib name, %s"
                      % (name, CANDLE_LIB_HINT))


def _lazy(name, module_name, needs):
    import importlib

    try:
        module = importlib.import_module(__name__ + "." + module_name)
    except ImportError as exc:
        raise NotProvided("candle.%s needs %s, which is not importable here (%s); install it, e.g. with the "
                          "project's environment.yml" % (name, needs, exc)) from None
    value = getattr(module, name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def tensorflow_helper(name):
    """Return one of the TensorFlow helpers, importing TensorFlow on first use (kept for older callers)."""
    if name not in _catalog.LAZY_TENSORFLOW:
        raise AttributeError(name)
    return __getattr__(name)


def __dir__():
    return sorted(set(globals()) | set(_catalog.LAZY) | set(_catalog.LAZY_PYTORCH) | set(_catalog.LAZY_TENSORFLOW))
