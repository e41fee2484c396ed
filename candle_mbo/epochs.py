"""Per-epoch reports from inside a run: the one live channel from a training loop to the dispatcher.

A run tells candle_mbo how its training goes, epoch by epoch, in any of three ways:

- the checkpoint classes of the CANDLE layer report from ``ckpt_epoch`` (the value they were given, named
  by ``ckpt_save_best_metric``, or ``ckpt_metric`` when that is unset);
- ``CandleRemoteMonitor`` reports Keras' epoch logs from ``on_epoch_end``;
- any other loop calls :func:`report` (``candle_mbo.report(epoch, val_loss)``).

With candle_lib installed, the runner wraps candle_lib's own classes in the same way (see
:mod:`candle_mbo.pool.candle_lib_hooks`), so the benchmark's code stays unchanged.

Each report reaches rank 0 while the run trains: it is journaled (curves survive a kill), shown in the
progress, and may be answered with "stop" (early discarding, ``--prune``). A stop takes effect at the report
that received it: :func:`report` and the PyTorch checkpointer raise :class:`RunPruned`, which the runner
recognises (the run ends as ``pruned``, its runner is reused); Keras callbacks set ``model.stop_training``
so that ``fit`` returns normally.

Outside candle_mbo (a model run by hand) there is no channel and every report is a no-op. This module
imports nothing beyond the standard library: user code imports it.

The runner side: :func:`open_channel` makes the channel of one run, with a ``send(report, wait)`` function
given by the process that hosts the run (the isolated runner's pipe, or the worker itself); ``wait`` is
True when the dispatcher answers reports (pruning is on), and ``send`` then returns the answer (or None
when none came in time).
"""

import contextlib
import math
import threading
import time

#: The name under which a checkpointer's unnamed value is reported (``ckpt_save_best_metric`` unset).
UNNAMED_CKPT_METRIC = "ckpt_metric"


class RunPruned(BaseException):
    """Raised into a training loop at a report that the search answered with "stop".

    A BaseException (like KeyboardInterrupt), so that a model's ``except Exception`` lets it through to
    the runner, which records the run as ``pruned`` with what it reported so far.
    """


class Channel:
    """One run's reports: kept here (the run's curve) and sent to the dispatcher as they happen."""

    def __init__(self, run_id, objective, send=None, wait=False):
        self.run_id = run_id
        self.objective = objective
        self._send = send
        self.wait = bool(wait and send is not None)
        self.reports = []  # [(epoch, {metric: value}, time)] in the order they were made
        self.stop = None  # the answer that stopped the run, once one did
        self._seq = 0
        self._lock = threading.Lock()

    def deliver(self, epoch, metrics):
        """Record and send one report; True when the run is to stop (now, or by an earlier answer)."""
        epoch = _epoch_number(epoch)
        metrics = {str(k): v for k, v in ((k, _number(v)) for k, v in metrics.items()) if v is not None}
        with self._lock:
            self.reports.append((epoch, metrics, time.time()))
            if self.stop is not None:
                return True
            self._seq += 1
            if self._send is None:
                return False
            report = {"run_id": self.run_id, "seq": self._seq, "epoch": epoch, "metrics": metrics,
                      "time": round(self.reports[-1][2], 3), "wait": self.wait}
            answer = self._send(report, self.wait)
            if answer and answer.get("stop"):
                self.stop = answer
                return True
            return False

    def curve(self):
        """The reports as a history: ``{metric: [value per epoch]}`` over the epochs reported, in order
        (the last report of an epoch counts; a metric missing at an epoch is None)."""
        by_epoch = {}
        for epoch, metrics, _ in self.reports:
            by_epoch.setdefault(epoch, {}).update(metrics)
        epochs = sorted(by_epoch)
        names = []
        for epoch in epochs:
            names += [name for name in by_epoch[epoch] if name not in names]
        return {name: [by_epoch[e].get(name) for e in epochs] for name in names}

    @property
    def last_epoch(self):
        return max((epoch for epoch, _, _ in self.reports), default=None)


_channel = None


@contextlib.contextmanager
def open_channel(run_id, objective, send=None, wait=False):
    """The channel of the run about to start, active while the block runs (the runner's side)."""
    global _channel
    previous = _channel
    _channel = Channel(run_id, objective, send, wait)
    try:
        yield _channel
    finally:
        _channel = previous


def active():
    """The channel of the run in progress in this process, or None (a model run by hand)."""
    return _channel


def deliver(epoch, metrics):
    """Report ``metrics`` after ``epoch`` epochs; True when the run is to stop. For the CANDLE layer's
    callbacks, which stop in their own way; a no-op (False) outside candle_mbo."""
    channel = _channel
    if channel is None:
        return False
    return channel.deliver(epoch, metrics)


def deliver_from(callback, epoch, metrics):
    """Report for a callback or checkpointer, and stop the way it can: a Keras callback sets
    ``model.stop_training`` (``fit`` returns normally); anything else raises :class:`RunPruned`."""
    if not deliver(epoch, metrics):
        return
    model = getattr(callback, "model", None)
    if model is not None and not isinstance(model, dict) and hasattr(model, "stop_training"):
        model.stop_training = True
        return
    raise RunPruned("stopped after epoch %s by the search (%s)" % (epoch, _reason()))


def report(epoch, value=None, **metrics):
    """Tell candle_mbo how the run is going after ``epoch`` epochs (1 after the first).

    ``value`` is the objective (the metric ``--objective`` names, val_loss by default); other metrics may
    be given by name: ``report(epoch, val_loss, loss=train_loss, accuracy=acc)``. They are journaled and
    drawn as learning curves; when run() returns nothing, the last report carrying the objective is the
    run's result. Raises :class:`RunPruned` when the search stops this run here (``--prune``): let it
    propagate (clean-up in ``finally`` runs as usual). Does nothing outside candle_mbo.
    """
    channel = _channel
    if channel is None:
        return None
    metrics = dict(metrics)
    if value is not None:
        metrics[channel.objective] = value
    if channel.deliver(epoch, metrics):
        raise RunPruned("stopped after epoch %s by the search (%s)" % (epoch, _reason()))
    return None


def _reason():
    channel = _channel
    return ((channel.stop or {}).get("reason") if channel is not None else None) or "early discarding"


def _epoch_number(epoch):
    try:
        number = float(epoch.item() if hasattr(epoch, "item") else epoch)
    except (TypeError, ValueError):
        raise TypeError("report(epoch, ...): epoch must be a number, not %r" % (epoch,)) from None
    return int(number) if number == int(number) else number


def _number(value):
    """A metric as a float (numpy/torch scalars included); None for what is not a number."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError, AttributeError):
        return None
    return number if math.isfinite(number) else str(number)
