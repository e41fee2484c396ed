"""Epoch reports from candle_lib's own classes, where ``import candle`` is candle_lib.

candle_mbo's CANDLE layer reports every epoch by itself (its checkpointers' ``ckpt_epoch``, its
``CandleRemoteMonitor``). Where candle_lib is installed, benchmarks get candle_lib's classes instead, which
know nothing of candle_mbo. The runner owns its process, so before each run it wraps, once, the two methods
that see every epoch in candle_lib:

- ``CandleCkpt.ckpt_epoch(epoch, direction, metric_value)`` (candle_lib's PyTorch checkpointer calls it
  through ``super()``, its Keras one from ``on_epoch_end``): the value is reported under the name
  ``ckpt_save_best_metric`` gives it (``ckpt_metric`` when unset);
- ``CandleRemoteMonitor.on_epoch_end(epoch, logs)``: Keras' logs are reported.

The original method runs first and unchanged. A "stop" answer sets ``model.stop_training`` on a Keras
callback, and raises :class:`candle_mbo.epochs.RunPruned` out of a PyTorch loop's ``ckpt_epoch``. A
benchmark run by hand, outside candle_mbo, never sees these wrappers.
"""

import functools
import sys

from .. import epochs

_MARK = "_candle_mbo_reports"
_seen = set()  # ids of the candle modules already looked at


def install():
    """Wrap candle_lib's epoch methods if ``candle`` is candle_lib and they are not wrapped yet (cheap)."""
    candle = sys.modules.get("candle")
    if candle is None or getattr(candle, "__name__", "") == "candle_mbo.candle_api":
        return
    modules = [candle] + [m for name, m in list(sys.modules.items()) if name.startswith("candle.") and m]
    for module in modules:
        if id(module) in _seen:
            continue
        _seen.add(id(module))
        for cls in list(vars(module).values()):
            if not isinstance(cls, type):
                continue
            _wrap(cls, "ckpt_epoch", _ckpt_epoch, lambda method: "direction" in _arguments(method))
            if cls.__name__ == "CandleRemoteMonitor":
                _wrap(cls, "on_epoch_end", _on_epoch_end, lambda method: True)


def _unwrapped(method):
    return getattr(method, "__wrapped__", method)


def _arguments(function):
    code = getattr(function, "__code__", None)
    return code.co_varnames[:code.co_argcount] if code is not None else ()


def _wrap(cls, name, wrapper, wanted):
    """Wrap the method ``name`` where the first class of ``cls``'s MRO defines it in the ``wanted`` shape (the
    base class's 3-argument ``ckpt_epoch``, so that a subclass calling ``super()`` reports once)."""
    owner = next((c for c in cls.__mro__ if name in vars(c) and wanted(_unwrapped(vars(c)[name]))), None)
    if owner is None or getattr(vars(owner)[name], _MARK, False):
        return
    original = vars(owner)[name]
    wrapped = functools.wraps(original)(wrapper(original))
    setattr(wrapped, _MARK, True)
    setattr(owner, name, wrapped)


def _ckpt_epoch(original):
    def ckpt_epoch(self, epoch, direction, metric_value, *args, **kwargs):
        result = original(self, epoch, direction, metric_value, *args, **kwargs)
        name = getattr(self, "save_best_metric", None) or epochs.UNNAMED_CKPT_METRIC
        epochs.deliver_from(self, epoch + 1, {name: metric_value})
        return result
    return ckpt_epoch


def _on_epoch_end(original):
    def on_epoch_end(self, epoch, logs=None, *args, **kwargs):
        result = original(self, epoch, logs, *args, **kwargs)
        epochs.deliver_from(self, epoch + 1, dict(logs or {}))
        return result
    return on_epoch_end
