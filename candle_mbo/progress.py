"""What the user sees on the master's stdout: logging setup, a progress line per run, the final summary.

Lines are plain text for batch logs: ``HH:MM:SS r0 <message>``, the rank in every line. Workers write
nothing to the job's stdout; a run's own output goes to its ``model.log``.
"""

import logging
import math
import sys
import time

from .status import ALL, OK


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


class Progress:
    """A line per finished run: count/total, status, objective, best so far, rate and ETA.

    When runs finish faster than ``max_lines_per_s``, lines are merged into one line per second (a
    20,000-run UPF of quick runs would otherwise spend its time printing).
    """

    def __init__(self, total, objective_name="objective", maximize=False, done=0, quiet=False,
                 logger=None, max_lines_per_s=20.0):
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
        self._skipped = 0

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

    def update(self, record):
        self.done += 1
        self._account(record)
        if self.quiet:
            return
        now = time.time()
        if now - self._last_line < 1.0 / self.max_lines_per_s and self.done < self.total:
            self._skipped += 1
            return
        self._last_line = now
        elapsed = now - self.start
        finished_here = self.done - self.initial_done
        rate = finished_here / elapsed * 60 if elapsed > 0 else 0.0
        eta = (self.total - self.done) / (finished_here / elapsed) if finished_here and elapsed > 0 else None
        width = len(str(self.total))
        parts = ["[%*d/%d]" % (width, self.done, self.total), "%-7s" % record.get("status"),
                 str(record.get("run_id")),
                 "%s %s" % (self.objective_name, format_objective(record.get("objective")))]
        if record.get("status") != OK and record.get("error"):
            parts[-1] += " (%s)" % str(record["error"])[:100]
        line = " ".join(parts)
        line += " | best %s" % (format_objective(self.best) + (" (%s)" % self.best_id if self.best_id else ""))
        line += " | %.1f runs/min" % rate
        if eta is not None and self.done < self.total:
            line += " | ETA %s" % _duration(eta)
        if self._skipped:
            line += " | +%d more" % self._skipped
            self._skipped = 0
        self.log.info(line)


def summary(records, objective_name, maximize, start, wall_s, n_workers, experiment_path, top=5,
            logs="runs/<run_id>/model.log"):
    """The end-of-run summary: counts by status, the best runs with their parameters, time, utilization.

    Utilization counts the runs started since ``start`` (this job, not the ones a resume inherited).
    """
    counts = {status: 0 for status in ALL}
    for record in records:
        counts[record.get("status")] = counts.get(record.get("status"), 0) + 1
    good = [r for r in records if r.get("status") == OK and isinstance(r.get("objective"), (int, float))
            and math.isfinite(r["objective"])]
    good.sort(key=lambda r: r["objective"], reverse=maximize)
    lines = ["summary: %d runs: %s" % (len(records), ", ".join("%d %s" % (counts[s], s) for s in ALL))]
    if good:
        lines.append("top %d by %s (%s):" % (min(top, len(good)), objective_name, "max" if maximize else "min"))
        for rank, record in enumerate(good[:top], start=1):
            params = ", ".join("%s=%s" % (k, _short(v)) for k, v in (record.get("params") or {}).items())
            lines.append("  %d. %s  %s  %s" % (rank, record["run_id"], format_objective(record["objective"]), params))
    failed = [r for r in records if r.get("status") != OK]
    if failed:
        lines.append("not ok: %s (logs: %s/%s)"
                     % (", ".join(r["run_id"] for r in failed[:10]) + (" ..." if len(failed) > 10 else ""),
                        experiment_path, logs))
    busy_s = sum(r.get("duration_s") or 0 for r in records if (r.get("started") or 0) >= start)
    capacity = wall_s * max(n_workers, 1)
    utilization = " | workers busy %.0f%%" % (100.0 * busy_s / capacity) if capacity > 0 else ""
    lines.append("wall time %s | %d worker%s%s | results in %s"
                 % (_duration(wall_s), n_workers, "" if n_workers == 1 else "s", utilization, experiment_path))
    return lines


def _short(value):
    text = format_objective(value) if isinstance(value, float) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."
