"""Early discarding: stop a run at an epoch report when it is clearly behind the others (``--prune``).

A small pure object, fed by epoch reports as they arrive and by the journal on resume; it knows nothing of
MPI, R or the pool. The search source owns it and answers the dispatcher's question "stop this run?"
(see :meth:`candle_mbo.core.dispatch.Source.reported`); the pool only delivers the answer.

Rules (the fidelity is a run's epochs; ``R`` = ``--min-epochs``, ``eta`` = ``--eta``):

- ``asha`` (asynchronous successive halving, as Li et al. 2018 and Ray Tune's ASHA): rungs at R, R*eta,
  R*eta^2, ... epochs (below the run's last epoch). A run reaching a rung continues only while its value
  there is in the best 1/eta of the values recorded at that rung so far (its own included): it stops when
  strictly worse than that quantile. Nobody waits for a rung to fill, so the first run at a rung always
  goes on, and ties go on.
- ``median`` (the median stopping rule, as Vizier's and Optuna's MedianPruner): from R epochs on, at every
  report, a run stops when strictly worse than the median of the other runs' values at the same epoch,
  once at least ``MEDIAN_MIN_OTHERS`` others have reached that epoch.

A non-finite value (a diverged epoch) counts as the worst value. A value is recorded once per run and rung
(or epoch): a run that is rerun after an interruption reports again and is judged against the others as
they stand, its earlier value replaced.

What the surrogate learns from a pruned run (:meth:`Pruner.surrogate_value`) is kept here, in one place.
"""

import collections
import math
import os

RULES = ("none", "asha", "median")
MEDIAN_MIN_OTHERS = 3


class Decision(dict):
    """An answer that stops a run: ``{"stop": True, "rule", "epoch", "rung", "value", "cutoff", "reason",
    "told"}`` (``told``: what the surrogate learns, fixed when the run is stopped and journaled with its
    record, so that a resumed search tells its masters the same values)."""


class Pruner:
    """The rung bookkeeping of one search (see the module docstring).

    ``planned(run_id)`` gives the epochs a run is to train (its fidelity): no rung is at or beyond it.
    """

    def __init__(self, rule, min_epochs=1, eta=3, maximize=False):
        if rule not in RULES:
            raise ValueError("unknown pruning rule %r; choose one of %s" % (rule, ", ".join(RULES)))
        if min_epochs < 1 or eta < 2:
            raise ValueError("--min-epochs must be at least 1 and --eta at least 2")
        self.rule = rule
        self.min_epochs = int(min_epochs)
        self.eta = int(eta)
        self.maximize = bool(maximize)
        self.values = collections.defaultdict(dict)  # rung (asha) or epoch (median) -> {run_id: value}
        self.curves = collections.defaultdict(dict)  # run_id -> {epoch: value}: what each run reported
        self.stopped = {}  # run_id -> Decision

    # -- rungs -----------------------------------------------------------------------------------------
    def rungs(self, planned=None):
        """The rung epochs below ``planned`` (all of them up to a large bound when it is unknown)."""
        out, rung = [], self.min_epochs
        limit = planned if planned else 10 ** 6
        while rung < limit:
            out.append(rung)
            rung *= self.eta
        return out

    # -- reports -----------------------------------------------------------------------------------------
    def report(self, run_id, epoch, value, planned=None):
        """A run reported ``value`` after ``epoch`` epochs; returns a Decision to stop it, or None."""
        if self.rule == "none" or value is None:
            return None
        value = _comparable(value, self.maximize)
        self.curves[run_id][epoch] = value
        if self.rule == "asha":
            return self._asha(run_id, epoch, value, planned)
        return self._median(run_id, epoch, value, planned)

    def _asha(self, run_id, epoch, value, planned):
        reached = [r for r in self.rungs(planned) if r <= epoch]
        if not reached:
            return None
        rung = reached[-1]
        recorded = self.values[rung]
        if run_id in recorded and epoch != rung:
            return None  # judged at this rung already (a report between rungs)
        recorded[run_id] = value
        values = sorted(recorded.values())
        cutoff = _quantile(values, 1.0 / self.eta)
        if value > cutoff:
            return self._stop(run_id, epoch, rung, value, cutoff, "rung %d: %s not in the best 1/%d of %d (cutoff %s)"
                              % (rung, _show(value, self.maximize), self.eta, len(values), _show(cutoff, self.maximize)))
        return None

    def _median(self, run_id, epoch, value, planned):
        if epoch < self.min_epochs or (planned and epoch >= planned):
            return None
        recorded = self.values[epoch]
        recorded[run_id] = value
        others = sorted(v for r, v in recorded.items() if r != run_id)
        if len(others) < MEDIAN_MIN_OTHERS:
            return None
        median = _quantile(others, 0.5)
        if value > median:
            return self._stop(run_id, epoch, epoch, value, median, "epoch %d: %s worse than the median %s of %d others"
                              % (epoch, _show(value, self.maximize), _show(median, self.maximize), len(others)))
        return None

    def _stop(self, run_id, epoch, rung, value, cutoff, reason):
        decision = Decision(stop=True, rule=self.rule, epoch=epoch, rung=rung, value=_plain(value, self.maximize),
                            cutoff=_plain(cutoff, self.maximize), reason=reason,
                            told=_plain(self._told(rung, value), self.maximize))
        self.stopped[run_id] = decision
        return decision

    # -- resume ------------------------------------------------------------------------------------------
    def replay(self, epochs_by_run, objective, planned=lambda run_id: None):
        """Rebuild the rungs from a journal's epoch events (``{run_id: [event, ...]}``), deciding nothing."""
        for run_id, events in epochs_by_run.items():
            for event in events:
                value = (event.get("metrics") or {}).get(objective)
                if value is None or self.rule == "none":
                    continue
                value = _comparable(value, self.maximize)
                epoch = event.get("epoch")
                self.curves[run_id][epoch] = value
                if self.rule == "asha":
                    reached = [r for r in self.rungs(planned(run_id)) if r <= epoch]
                    if reached and (run_id not in self.values[reached[-1]] or epoch == reached[-1]):
                        self.values[reached[-1]][run_id] = value
                elif epoch >= self.min_epochs:
                    self.values[epoch][run_id] = value

    # -- what the surrogate learns -----------------------------------------------------------------------
    def surrogate_value(self, run_id, last_value):
        """The objective a pruned run enters the surrogate with (see SURROGATE_VALUE): the value fixed when
        it was stopped (``told``), or ``last_value`` for a run this pruner did not stop."""
        decision = self.stopped.get(run_id)
        if SURROGATE_VALUE == "last" or not decision or decision.get("told") is None:
            return last_value
        return decision["told"]

    def _told(self, rung, value):
        """A run stopped at ``rung`` with ``value`` (comparable): with "adjusted", its value plus the typical
        later change of the runs that went on past the rung, an estimate of where it would have ended
        (a run stopped after one epoch is otherwise compared with runs that trained to the end, and the
        surrogate learns "short", not "bad"); its value itself while no run has gone on."""
        if SURROGATE_VALUE == "adjusted" and math.isfinite(value):
            gain = self._typical_gain(rung)
            if gain is not None:
                return value + gain
        return value

    def _typical_gain(self, rung):
        """The median change from ``rung`` to the last epoch reported, over runs that were not stopped."""
        gains = []
        for run_id, curve in self.curves.items():
            if run_id in self.stopped or rung not in curve or len(curve) < 2:
                continue
            last = curve[max(curve)]
            if max(curve) > rung and math.isfinite(last) and math.isfinite(curve[rung]):
                gains.append(last - curve[rung])
        return _quantile(sorted(gains), 0.5) if gains else None


# What the surrogate learns from a pruned run: "adjusted" (its value at the rung plus the typical later change
# of the runs that went on) or "last" (the value it had when stopped). Chosen with
# bench/early_discarding_bench.py, which compares both through CANDLE_MBO_PRUNED_VALUE (not a user setting):
# over 11 seeds of the learning-curve problem and 8 of digits, "adjusted" found the better best model in both
# (median 0.1146 against 0.1208; 0.1028 against 0.1031), and "last" tells the surrogate a fidelity bias: a
# good configuration stopped after one epoch looks worse than a poor one trained to the end
# (docs/performance.md, Early discarding).
SURROGATE_VALUE = os.environ.get("CANDLE_MBO_PRUNED_VALUE", "adjusted")


def _comparable(value, maximize):
    """Smaller is better internally; non-finite (or unreadable) values are the worst."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.inf
    if not math.isfinite(number):
        return math.inf
    return -number if maximize else number


def _plain(value, maximize):
    if not math.isfinite(value):
        return str(value)
    return -value if maximize else value


def _show(value, maximize):
    return "%.4g" % _plain(value, maximize) if math.isfinite(value) else "non-finite"


def _quantile(values, q):
    """The ``q`` quantile of sorted ``values`` (linear interpolation, as numpy's default)."""
    if not values:
        return None
    position = q * (len(values) - 1)
    low = int(math.floor(position))
    high = min(low + 1, len(values) - 1)
    if values[low] == values[high] or position == low:
        return values[low]
    return values[low] + (values[high] - values[low]) * (position - low)
