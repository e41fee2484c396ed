"""What the user sees on the master's stdout: logging setup, a progress line per run, the final summary.

Lines are plain text for batch logs: ``HH:MM:SS r0 <message>``, the rank in every line. Workers write
nothing to the job's stdout; a run's own output goes to its ``model.log``.

The workers' utilization is defined once, here (:func:`utilization`), and used by the end-of-job
summary, ``python -m candle_mbo.report`` and the timeline plot, so that they always agree.
"""

import collections
import logging
import math
import sys
import time

from ..search.optimizer import origin
from ..status import ALL, OK, PRUNED
from .importance import describe as describe_importance, importance

#: A failure reason longer than this is shortened (at a word boundary) in progress lines and the summary;
#: results.jsonl, results.csv and report.html keep it whole.
REASON_CHARS = 300


def setup_logging(rank=0, level=logging.INFO, stream=None):
    """Log to ``stream`` (stdout) with time and rank; replaces handlers set up earlier."""
    root = logging.getLogger("candle_mbo")
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(logging.Formatter("%%(asctime)s r%d %%(message)s" % rank, datefmt="%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    return root


def _duration(seconds):
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return "%dh%02dm" % (hours, minutes)
    if minutes:
        return "%dm%02ds" % (minutes, secs)
    return "%ds" % secs


def format_objective(value):
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return "%.6g" % value


def shorten(text, limit=REASON_CHARS):
    """``text`` on one line; when longer than ``limit``, cut at the last word boundary before it, plus `` [...]``.

    A word is never cut in half (a single word longer than ``limit`` is kept whole).
    """
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit + 1)
    if cut <= 0:
        cut = text.find(" ", limit)
        if cut < 0:
            return text
    return text[:cut].rstrip(" ,;:") + " [...]"


def reason(record):
    """Why a run is not ok, as stored (``error``), or a stand-in naming its status."""
    error = record.get("error")
    if error is not None and str(error).strip():
        return " ".join(str(error).split())
    return "no reason recorded (status %s)" % record.get("status")


class Progress:
    """A line per finished run: count/total, status, objective, best so far, rate and ETA.

    When ok runs finish faster than ``max_lines_per_s``, their lines are merged into one line per
    interval (a 20,000-run UPF of quick runs would otherwise spend its time printing); the merged line
    says how many runs it covers. A run that is not ok always gets a line of its own, with its reason,
    after the line of the ok runs merged before it, so that the counter moves by what each line covers;
    ``flush()`` prints the merged runs still waiting for a line (at the end of a job).

    Runs that report epochs (see candle_mbo.epochs) add how far the running ones are ("12 running, median
    epoch 5/27") to each line, and a line of its own when nothing else was said for ``quiet_s`` seconds.
    """

    def __init__(self, total, objective_name="objective", maximize=False, done=0, quiet=False,
                 logger=None, max_lines_per_s=20.0, quiet_s=60.0):
        self.total = total
        self.objective_name = objective_name
        self.maximize = maximize
        self.done = done
        self.initial_done = done
        self.quiet = quiet
        self.log = logger or logging.getLogger("candle_mbo.progress")
        self.start = time.time()
        self.best = None
        self.best_id = None
        self.counts = {s: 0 for s in ALL}
        self.max_lines_per_s = max_lines_per_s
        self._last_line = 0.0
        self._merged = 0  # ok runs finished since the last line
        self._pending = None  # the last of them
        self.quiet_s = quiet_s
        self.running = {}  # run_id -> (epochs reported so far, epochs planned or None), while it runs
        self._last_said = time.time()

    def seed(self, records):
        """Account for records finished before a resume (they count toward best and totals)."""
        for record in records:
            self._account(record)

    def _account(self, record):
        status = record.get("status")
        self.counts[status] = self.counts.get(status, 0) + 1
        value = record.get("objective")
        if status == OK and isinstance(value, (int, float)) and math.isfinite(value):
            if self.best is None or (value > self.best if self.maximize else value < self.best):
                self.best, self.best_id = value, record.get("run_id")

    def epoch(self, run_id, epoch, planned=None):
        """A running run reported ``epoch`` (of ``planned``)."""
        self.running[run_id] = (epoch, planned)

    def running_text(self):
        """``12 running, median epoch 5/27`` for the runs that reported an epoch; '' when none did."""
        if not self.running:
            return ""
        reached = sorted(e for e, _ in self.running.values())
        planned = sorted(p for _, p in self.running.values() if p)
        text = "%d running, median epoch %s" % (len(reached), _median_text(reached))
        return text + ("/%s" % _median_text(planned) if planned else "")

    def tick(self):
        """A line on how the running runs go, when nothing was said for ``quiet_s`` seconds (long runs)."""
        now = time.time()
        if self.quiet or not self.running or now - self._last_said < self.quiet_s:
            return
        self._last_said = now
        best = format_objective(self.best) + (" (%s)" % self.best_id if self.best_id else "")
        self.log.info("[%*d/%d] %s | best %s", len(str(self.total)), self.done, self.total, self.running_text(), best)

    def update(self, record):
        ok = record.get("status") == OK
        if not ok:
            self.flush()
        self.done += 1
        self._account(record)
        self.running.pop(record.get("run_id"), None)
        if self.quiet:
            return
        now = time.time()
        if ok and now - self._last_line < 1.0 / self.max_lines_per_s and self.done < self.total:
            self._merged += 1
            self._pending = record
            return
        self._emit(record, now, self._merged + 1 if ok else 1)

    def flush(self):
        """Print the line of the ok runs merged since the last line, if any."""
        if self._pending is not None and not self.quiet:
            self._emit(self._pending, time.time(), self._merged)

    def _emit(self, record, now, covers):
        self._merged, self._pending = 0, None
        self._last_line = self._last_said = now
        self.log.info(self._line(record, now, covers))

    def _line(self, record, now, covers=1):
        elapsed = now - self.start
        finished_here = self.done - self.initial_done
        rate = finished_here / elapsed * 60 if elapsed > 0 else 0.0
        eta = (self.total - self.done) / (finished_here / elapsed) if finished_here and elapsed > 0 else None
        width = len(str(self.total))
        ok = record.get("status") == OK
        parts = ["[%*d/%d]" % (width, self.done, self.total), "%-7s" % record.get("status"),
                 str(record.get("run_id"))]
        if ok or record.get("status") == PRUNED:
            parts.append("%s %s" % (self.objective_name, format_objective(record.get("objective"))))
        if record.get("status") == PRUNED:
            parts.append(_pruned_text(record))
        line = " ".join(parts)
        line += " | best %s" % (format_objective(self.best) + (" (%s)" % self.best_id if self.best_id else ""))
        line += " | %.1f runs/min" % rate
        if eta is not None and self.done < self.total:
            line += " | ETA %s" % _duration(eta)
        running = self.running_text()
        if running:
            line += " | " + running
        if covers > 1:
            line += " | line covers %d ok runs" % covers
        if not ok and record.get("status") != PRUNED:
            line += " | reason: %s" % shorten(reason(record))
        return line


def _median_text(values):
    middle = values[len(values) // 2] if len(values) % 2 else (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2
    return "%g" % middle


def _pruned_text(record):
    """``at epoch 3 (rung 3: 0.52 vs 0.41)`` for a pruned run, from its record."""
    pruned = record.get("pruned") or {}
    text = "at epoch %s" % record.get("epochs", pruned.get("epoch", "?"))
    if pruned.get("reason"):
        text += " (%s)" % pruned["reason"]
    return text


# -- utilization ---------------------------------------------------------------------------------
Utilization = collections.namedtuple("Utilization", "fraction busy_s start end n_workers runs")
Utilization.__doc__ = """Busy share of the workers: ``busy_s / (n_workers * (end - start))``.

``busy_s`` is the run time (``finished - started`` of each run, clipped to the window) of ``runs``
runs; ``start``/``end`` is the window in epoch seconds."""


def run_interval(record):
    """``(started, finished)`` of a record in epoch seconds, or None when either is missing or unusable."""
    started, finished = record.get("started"), record.get("finished")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
               for v in (started, finished)):
        return None
    if finished < started:
        return None
    return float(started), float(finished)


def utilization(records, n_workers, start=None, end=None):
    """How busy the workers were: their run time divided by ``n_workers`` x the window.

    The window defaults to the first run's start .. the last run's finish (so the job's start-up, R
    loading and the model's import, is not counted as idle: the summary states it on its own). The
    workers are at least as many as the distinct ``worker`` values of the records. Returns a
    :class:`Utilization`, or None when no record has a usable start and finish.
    """
    intervals = [i for i in map(run_interval, records) if i is not None]
    if not intervals:
        return None
    start = min(s for s, _ in intervals) if start is None else float(start)
    end = max(f for _, f in intervals) if end is None else float(end)
    workers = {r.get("worker") for r in records if isinstance(r.get("worker"), int)}
    n_workers = max(int(n_workers or 0), len(workers), 1)
    busy = sum(max(0.0, min(f, end) - max(s, start)) for s, f in intervals)
    span = end - start
    fraction = busy / (n_workers * span) if span > 0 else None
    return Utilization(fraction, busy, start, end, n_workers, len(intervals))


def describe_utilization(usage):
    """``workers busy 85% (2 workers, 1m10s from the first run's start to the last run's end)``."""
    if usage is None or usage.fraction is None:
        return "workers busy: n/a"
    return "workers busy %.0f%% (%d worker%s, %s from the first run's start to the last run's end)" % (
        100.0 * usage.fraction, usage.n_workers, "" if usage.n_workers == 1 else "s",
        _duration(usage.end - usage.start))


# -- summary -------------------------------------------------------------------------------------
def proposal_kind(prop_type):
    """How an HPO point was proposed (``optimizer.origin``), or None for a record without a ``prop_type`` (UPF)."""
    return None if prop_type is None else origin(str(prop_type))


def proposal_counts(records):
    """``[(kind, count)]`` in a fixed order, for the records that carry a ``prop_type``; [] for UPF."""
    counts = collections.Counter(proposal_kind(r.get("prop_type")) for r in records)
    counts.pop(None, None)
    order = ("design", "model-based", "random", "random fallback")
    return [(kind, counts[kind]) for kind in order if counts.get(kind)]


def summary(records, objective_name, maximize, start, wall_s, n_workers, experiment_path, top=5,
            logs="runs/<run_id>/model.log"):
    """The end-of-run summary lines: counts by status and by how points were proposed, the best runs with
    their parameters, which parameters matter (importance.py), every failure reason, time and the
    workers' utilization.

    ``start`` (epoch seconds) and ``wall_s`` describe this job: utilization counts the runs started since
    ``start`` (not the ones a resume inherited). With ``start`` None (a report after the fact) every
    record counts and no wall time is known.
    """
    counts = {status: 0 for status in ALL}
    for record in records:
        counts[record.get("status")] = counts.get(record.get("status"), 0) + 1
    shown = [s for s in counts if counts[s] or s != PRUNED]  # "pruned" only where early discarding was on
    head = "summary: %d runs: %s" % (len(records), ", ".join("%d %s" % (counts[s], s) for s in shown))
    kinds = proposal_counts(records)
    if kinds:
        head += "; proposed: " + ", ".join("%d %s" % (n, kind + ("s" if n != 1 and kind.endswith("fallback")
                                                                 else "")) for kind, n in kinds)
    lines = [head]
    good = [r for r in records if r.get("status") == OK and isinstance(r.get("objective"), (int, float))
            and not isinstance(r.get("objective"), bool) and math.isfinite(r["objective"])]
    good.sort(key=lambda r: r["objective"], reverse=maximize)
    if good:
        lines.append("top %d by %s (%s):" % (min(top, len(good)), objective_name, "max" if maximize else "min"))
        for rank, record in enumerate(good[:top], start=1):
            params = record.get("params") if isinstance(record.get("params"), dict) else {}
            params = ", ".join("%s=%s" % (k, _short(v)) for k, v in params.items())
            lines.append("  %d. %s  %s  %s" % (rank, record["run_id"], format_objective(record["objective"]), params))
    which = describe_importance(importance(records), objective_name)
    if which:
        lines.append(which)
    lines.extend(_failures(records, experiment_path, logs))
    mine = records if start is None else [r for r in records if (run_interval(r) or (0, 0))[0] >= start]
    usage = utilization(mine, n_workers)
    timing = []
    if wall_s is not None:
        timing.append("wall time %s" % _duration(wall_s))
        if usage is not None and start is not None:
            timing.append("first run started %s after launch" % _duration(usage.start - start))
    timing.append(describe_utilization(usage) if usage else "%d worker%s" % (n_workers, "" if n_workers == 1 else "s"))
    timing.append("results in %s" % experiment_path)
    lines.append(" | ".join(timing))
    return lines


def epoch_usage(records, fidelity="epochs", planned_default=None):
    """Epochs trained by ``records`` against what a full-fidelity search of the same runs would train.

    ``{"trained", "full", "saved_share", "pruned", "runs"}``: a run trained what its record says
    (``epochs``); at full fidelity it would train its fidelity parameter (else ``planned_default``). Runs
    that do not say are left out of both sums.
    """
    trained = full = counted = 0
    for record in records:
        epochs = record.get("epochs")
        params = record.get("params") if isinstance(record.get("params"), dict) else {}
        planned = params.get(fidelity, planned_default)
        if not _whole(epochs) or not _whole(planned):
            continue
        counted += 1
        trained += int(epochs)
        full += max(int(planned), int(epochs))
    saved = 1.0 - trained / float(full) if full else None
    return {"trained": trained, "full": full, "saved_share": None if saved is None else round(saved, 4),
            "pruned": sum(1 for r in records if r.get("status") == PRUNED), "runs": counted}


def describe_epochs(usage, epoch_budget=0):
    """``epochs: 130 trained, 400 at full fidelity (68% saved); 14 runs pruned``."""
    text = "epochs: %d trained" % usage["trained"]
    if usage["full"]:
        text += ", %d at full fidelity (%.0f%% saved)" % (usage["full"], 100.0 * usage["saved_share"])
    text += "; %d run%s pruned" % (usage["pruned"], "" if usage["pruned"] == 1 else "s")
    if epoch_budget:
        text += "; --epoch-budget %d%s" % (epoch_budget, " reached" if usage["trained"] >= epoch_budget else "")
    return text


def _whole(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _failures(records, experiment_path, logs, groups=8, ids=3):
    """Lines naming every reason of the runs that are not ok, grouped by status and reason (pruned runs are
    results, not failures: they are counted in the head line and by describe_epochs)."""
    failed = [r for r in records if r.get("status") not in (OK, PRUNED)]
    if not failed:
        return []
    by_reason = collections.OrderedDict()
    for record in failed:
        by_reason.setdefault((str(record.get("status")), reason(record)), []).append(str(record.get("run_id")))
    lines = ["not ok: %d run%s (logs: %s/%s):" % (len(failed), "" if len(failed) == 1 else "s",
                                                 experiment_path, logs)]
    for (status, why), run_ids in list(by_reason.items())[:groups]:
        named = ", ".join(run_ids[:ids]) + (", ..." if len(run_ids) > ids else "")
        lines.append("  %d %s (%s): %s" % (len(run_ids), status, named, shorten(why)))
    if len(by_reason) > groups:
        rest = sum(len(v) for v in list(by_reason.values())[groups:])
        lines.append("  %d more run%s with %d other reasons: see results.csv or report.html"
                     % (rest, "" if rest == 1 else "s", len(by_reason) - groups))
    return lines


def _short(value):
    text = format_objective(value) if isinstance(value, float) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."
