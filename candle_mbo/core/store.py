"""The experiment store: one output directory, one results log that is the single source of truth.

Layout of an experiment directory::

    experiment.yaml   every resolved setting, the pinned inputs' hashes, the first command and each resume
                      (written atomically at start, and again when the job ends: its exit code)
    results.jsonl     the task journal: a record per finished run, and dispatched/interrupted events
                      (see candle_mbo.core.journal), appended and flushed as they happen
    results.csv       the run records as a table (rebuilt from results.jsonl on resume and at the end)
    best.json         the best run so far (written atomically when it changes)
    inputs/           copies of the space, defaults and UPF files the experiment was started with
    runs/<run_id>/    params.json, result.json, model.log (written by the runner)
    logs/             runner logs and, after a fatal error, the master's traceback
    .lock             held (flock) by the job using the directory

Durability: a record is written with one ``write`` of a whole line and flushed to the OS at once, so a
kill -9 of the job loses no finished run; a background thread fsyncs the log at most once a second
(and it is fsynced at the end), which bounds what a power loss or node crash could take to a second.
A torn last line (killed mid-write) is dropped on resume, with a warning; a corrupt line in the middle
stops the resume, so that no record is ever dropped silently.
"""

import csv
import datetime
import errno
import fcntl
import io
import json
import logging
import os
import re
import socket
import threading
import time

import yaml

from . import journal
from .._fileio import write_text_atomic
from .._trace import trace
from ..errors import UsageError
from ..pool.runner import dumps_record

log = logging.getLogger("candle_mbo.store")

_FAULT = os.environ.get("CANDLE_MBO_INJECT_FAULT", "")
_SLOW_WRITE = float(_FAULT.split(":")[1]) if _FAULT.startswith("slow-write:") else 0.0

FIXED_COLUMNS = ("run_id", "status", "objective", "duration_s", "worker", "started", "finished", "objective_source",
                 "epochs")
ERROR_COLUMN = "error"
# What a job creates before its first setting is written; a folder holding only these (and nothing run)
# is a half-created experiment that a fresh start may take over.
SCAFFOLDING = (".lock", "inputs", "logs", "runs", "scratch", "results.jsonl", "results.csv")
# Files a job writes besides the scaffolding: an existing --output holding one of them is not taken over.
OUTPUT_FILES = ("results.csv", "best.json", "report.html", "mbo_settings.json", "mlrmbo_opt_path.rds",
                "convergence.png", "params.png", "learning_curves.png", "timeline.png")
_UNSAFE_ID = re.compile(r"[\x00-\x1f\x7f/\\]")


def check_run_id(run_id):
    """Return an error message if ``run_id`` cannot be a directory name under runs/, else None."""
    if not isinstance(run_id, str) or not run_id.strip():
        return "a run id must be a non-empty string, not %r" % (run_id,)
    if run_id in (".", "..") or _UNSAFE_ID.search(run_id):
        return "run id %r is not a safe file name (no '/', '\\', control characters, '.' or '..')" % run_id
    if len(run_id.encode("utf-8")) > 200:
        return "run id %r is longer than 200 bytes" % run_id[:40]
    return None


def next_experiment_dir(root="experiments"):
    """A fresh ``experiments/EXPnnn`` (created, so that two jobs never get the same one)."""
    os.makedirs(root, exist_ok=True)
    numbers = [int(m.group(1)) for m in (re.fullmatch(r"EXP(\d+)", n) for n in os.listdir(root)) if m]
    number = max(numbers, default=0) + 1
    while True:
        path = os.path.join(root, "EXP%03d" % number)
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            number += 1


class Experiment:
    """Owns an experiment directory: its lock, its settings file and its results log.

    ``param_columns`` orders the parameter columns of results.csv; ``extra_columns`` come after the
    fixed ones (e.g. ``iteration``, ``prop_type`` for HPO); ``param_defaults`` fill a parameter cell that a
    run did not set (the benchmark's default, which is what the run used: UPF); without them such a cell is
    empty (HPO: an inactive conditional parameter). After ``open()`` on resume,
    ``replay`` holds what the journal says (see candle_mbo.core.journal.Replay).
    """

    def __init__(self, path, resume=False, param_columns=(), extra_columns=()):
        self.path = os.path.abspath(path)
        self.resume = resume
        self.param_columns = list(param_columns)
        self.extra_columns = list(extra_columns)
        self.records = []
        self.replay = journal.Replay([])
        self.param_defaults = {}
        self.inputs_version = 1  # of the pinned inputs (an accepted change makes a new one)
        self.job = 1  # this job's number in the experiment (1, then one more per resume)
        self._lock_handle = None
        self._jsonl = None
        self._csv = None
        self._csv_writer = None
        self._last_csv_flush = 0.0
        self._syncer = None
        self._csv_stale = False
        self._known_params = set()
        self.created = False
        self.warnings = []

    # -- paths ---------------------------------------------------------------------------------
    def file(self, *parts):
        return os.path.join(self.path, *parts)

    def run_dir(self, run_id):
        return self.file("runs", run_id)

    # -- opening -------------------------------------------------------------------------------
    def check(self):
        """Validate the directory for a new or resumed experiment without changing anything."""
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise UsageError("--output %s is a file, not a directory" % self.path)
        if self.resume:
            if not os.path.isfile(self.file("experiment.yaml")):
                raise UsageError("--resume: %s holds no experiment (no experiment.yaml); "
                                 "start it without --resume" % self.path)
        elif os.path.isdir(self.path) and not self.half_created():
            problem = self.foreign_content()
            if problem:
                advice = "add --resume to continue it, or choose" if problem.startswith("an experiment") else "choose"
                raise UsageError("--output %s already holds %s; %s another directory (a folder holding other "
                                 "files, such as data staged for the job, is fine)" % (self.path, problem, advice))
        parent = self.path if os.path.isdir(self.path) else os.path.dirname(self.path)
        while parent and not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if parent and not os.access(parent, os.W_OK | os.X_OK):
            raise UsageError("--output %s is not writable (no write permission on %s)" % (self.path, parent))

    def foreign_content(self):
        """What in an existing folder a new experiment would mix with or overwrite (another experiment's
        journal or settings, its results, run folders), as words; None when there is nothing such (the
        folder may hold anything else: data staged for the job, a job script)."""
        if os.path.isfile(self.file("experiment.yaml")):
            return "an experiment (experiment.yaml)"
        if os.path.isfile(self.file("results.jsonl")) and os.path.getsize(self.file("results.jsonl")):
            return "another experiment's journal (results.jsonl)"
        runs = sorted(os.listdir(self.file("runs"))) if os.path.isdir(self.file("runs")) else []
        if runs:
            return "run folders (runs/%s%s)" % (", runs/".join(runs[:3]), ", ..." if len(runs) > 3 else "")
        ours = [n for n in OUTPUT_FILES if os.path.exists(self.file(n))]
        if ours:
            return "the output files of an earlier job (%s)" % ", ".join(ours)
        return None

    def half_created(self):
        """True when the folder holds nothing but what a job creates before its settings (killed at birth):
        no experiment.yaml, no journal entry, no run folder."""
        if not os.path.isdir(self.path) or os.path.exists(self.file("experiment.yaml")):
            return False
        names = os.listdir(self.path)
        if any(n not in SCAFFOLDING and not n.startswith(".tmp-") for n in names):
            return False
        if os.path.isdir(self.file("runs")) and os.listdir(self.file("runs")):
            return False
        return not (os.path.isfile(self.file("results.jsonl")) and os.path.getsize(self.file("results.jsonl")))

    def open(self):
        """Create (or reopen) the directory, take the lock, and load the journal when resuming."""
        self.check()
        try:
            if not os.path.isdir(self.path):
                os.makedirs(self.path)
                self.created = True
        except OSError as exc:
            raise UsageError("cannot create --output %s: %s" % (self.path, exc.strerror)) from None
        self._lock()
        os.makedirs(self.file("runs"), exist_ok=True)
        os.makedirs(self.file("logs"), exist_ok=True)
        if self.resume:
            entries = load_journal(self.file("results.jsonl"), repair=True, warn=self.warnings.append)
            self.replay = journal.Replay(entries, self.file("results.jsonl"))
            self.records = list(self.replay.records)
        elif os.path.exists(self.file("results.jsonl")):
            os.unlink(self.file("results.jsonl"))  # an empty journal left by a job killed at birth
        self._jsonl = open(self.file("results.jsonl"), "a", encoding="utf-8")
        self._syncer = _Syncer(self._jsonl.fileno())
        self.rewrite_csv()
        return self

    def _lock(self):
        path = self.file(".lock")
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                handle.seek(0)
                owner = handle.read().strip() or "another process"
                handle.close()
                raise UsageError("--output %s is in use by another job (%s); wait for it to finish or choose "
                                 "another directory" % (self.path, owner)) from None
            log.warning("file locking is not supported on %s (%s); make sure no other job uses it",
                        self.path, exc.strerror)
        handle.seek(0)
        handle.truncate()
        handle.write("pid %d on %s since %s\n" % (os.getpid(), socket.gethostname(), _iso(time.time())))
        handle.flush()
        self._lock_handle = handle

    def write_settings(self, settings):
        """Write experiment.yaml (atomically)."""
        text = yaml.safe_dump(settings, sort_keys=False, default_flow_style=False, allow_unicode=True)
        write_text_atomic(self.file("experiment.yaml"), text)

    def read_settings(self):
        with open(self.file("experiment.yaml"), encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
        if not isinstance(data, dict):
            raise UsageError("%s is not a valid experiment.yaml" % self.file("experiment.yaml"))
        return data

    # -- recording -----------------------------------------------------------------------------
    def append(self, record):
        """Record one finished run: results.jsonl first (the truth, flushed now), then a results.csv row."""
        line = dumps_record(record) + "\n"
        if _SLOW_WRITE:  # the reliability tests' hook: a kill in the middle of writing a record
            self._write(line[:len(line) // 2])
            trace("writing", record["run_id"])
            time.sleep(_SLOW_WRITE)
            line = line[len(line) // 2:]
        self._write(line)
        self.records.append(record)  # at once: a stop line said from a signal handler counts what is written
        trace("recorded", record["run_id"])
        if self._csv is not None:
            self._csv_writer.writerow(self._csv_row(record))
            now = time.monotonic()
            if now - self._last_csv_flush >= 1.0:  # a convenience copy: flushed once a second
                self._csv.flush()
                self._last_csv_flush = now

    def append_events(self, entries):
        """Journal events (dispatched, interrupted): one write of their lines, flushed now."""
        if entries:
            self._write("".join(dumps_record(e) + "\n" for e in entries))

    def _write(self, text):
        self._jsonl.write(text)
        self._jsonl.flush()
        self._syncer.dirty.set()

    def sync(self):
        """fsync the journal now (before an interrupted job exits)."""
        if self._jsonl is not None:
            self._jsonl.flush()
            os.fsync(self._jsonl.fileno())

    def _columns(self):
        return list(FIXED_COLUMNS) + self.extra_columns + [ERROR_COLUMN] + self.param_columns

    def _csv_row(self, record):
        get = record.get
        row = [get("run_id"), get("status"), _cell(get("objective")), get("duration_s"), get("worker"),
               _iso(get("started")), _iso(get("finished")), get("objective_source") or "", _cell(get("epochs"))]
        row += [_cell(get(c)) for c in self.extra_columns]
        row.append(get("error") or "")
        params = get("params") or {}
        if any(key not in self._known_params for key in params):
            self._csv_stale = True  # a parameter without a column: the CSV is rebuilt at close
        defaults = self.param_defaults
        row += [_cell(params[c] if c in params else defaults.get(c)) for c in self.param_columns]
        return row

    def rewrite_csv(self):
        """Rebuild results.csv from the records (atomically), and reopen it for appending."""
        self._csv_stale = False
        known = set(self.param_columns)
        for record in self.records:
            for key in record.get("params") or {}:
                if key not in known:
                    self.param_columns.append(key)
                    known.add(key)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(self._columns())
        for record in self.records:
            writer.writerow(self._csv_row(record))
        if self._csv is not None:
            self._csv.close()
        self._known_params = known
        write_text_atomic(self.file("results.csv"), buffer.getvalue())
        self._csv = open(self.file("results.csv"), "a", newline="", encoding="utf-8")
        self._csv_writer = csv.writer(self._csv)

    def close(self):
        """Flush and fsync the log, rebuild the CSV, release the lock."""
        if self._jsonl is not None:
            self._jsonl.flush()
            self._syncer.stop()
            os.fsync(self._jsonl.fileno())
            self._jsonl.close()
            self._jsonl = None
        if self._csv is not None:
            if self._csv_stale:
                self.rewrite_csv()
            self._csv.close()
            self._csv = None
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None


class _Syncer:
    """fsyncs a file at most once a second, off the master's dispatch path (fsync can take 50+ ms)."""

    def __init__(self, fd, interval=1.0):
        self.fd = fd
        self.interval = interval
        self.dirty = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="results-fsync", daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop.is_set():
            if self.dirty.wait(timeout=self.interval):
                self.dirty.clear()
                try:
                    os.fsync(self.fd)
                except OSError:
                    return
                self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        self.dirty.set()
        self._thread.join()


class CorruptResults(UsageError):
    """results.jsonl holds a line that is not a record or an event, before its last line."""


def load_results(path, repair=False, warn=log.warning):
    """The run records of results.jsonl (its journal events left out), one per run id; see load_journal."""
    return [entry for entry in load_journal(path, repair, warn) if journal.is_record(entry)]


def load_journal(path, repair=False, warn=log.warning):
    """Read results.jsonl; tolerate (and with ``repair``, cut off) a torn last line; refuse other damage.

    Every line is written whole, ending in a newline, so only the text after the last newline can be
    torn. Any other unreadable line is corruption and raises CorruptResults. A run recorded twice keeps
    its first record (with a warning).
    """
    if not os.path.exists(path):
        return []
    with open(path, "rb") as handle:
        data = handle.read()
    *complete, tail = data.split(b"\n")
    records, seen = [], set()

    def parse(raw, number):
        record = json.loads(raw.decode("utf-8"))
        if isinstance(record, dict) and "event" in record:
            records.append(record)
            return
        if not isinstance(record, dict) or "run_id" not in record or "status" not in record:
            raise ValueError("not a run record")
        if record["run_id"] in seen:
            warn("%s:%d: run %s is recorded twice; keeping the first record" % (path, number, record["run_id"]))
            return
        seen.add(record["run_id"])
        records.append(record)

    for number, raw in enumerate(complete, start=1):
        if not raw.strip():
            continue
        try:
            parse(raw, number)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptResults("%s:%d: corrupt record (%s); refusing to continue so that no record is lost "
                                 "silently: fix or remove that line" % (path, number, exc)) from None
    if tail.strip():
        number = len(complete) + 1
        try:
            parse(tail, number)
        except (ValueError, UnicodeDecodeError):
            warn("%s:%d: dropped a torn last line (the job was killed while writing it; that run will run "
                 "again)" % (path, number))
            if repair:
                with open(path, "r+b") as handle:
                    handle.truncate(len(data) - len(tail))
        else:
            if repair:
                with open(path, "ab") as handle:
                    handle.write(b"\n")
    return records


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value


_ISO_CACHE = {}


def _iso(stamp):
    """Local ISO time to the second (cached: thousands of short runs share a few seconds)."""
    if not isinstance(stamp, (int, float)):
        return ""
    second = int(stamp)
    text = _ISO_CACHE.get(second)
    if text is None:
        if len(_ISO_CACHE) > 4096:
            _ISO_CACHE.clear()
        text = _ISO_CACHE[second] = datetime.datetime.fromtimestamp(second).isoformat(timespec="seconds")
    return text
