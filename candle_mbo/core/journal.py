"""The task journal: what was dispatched, what finished, what was interrupted; and the inputs it was made from.

The journal is the experiment's ``results.jsonl``: one JSON object per line, appended and flushed as
things happen (see :class:`candle_mbo.core.store.Experiment` for durability). Two kinds of lines:

- a **run record** (it has a ``status``): one per finished task, exactly as before the journal existed,
  so that tools reading results.jsonl keep working when they take the lines with a ``status``;
- an **event** (it has an ``event``, no ``status``):

  - ``{"event": "dispatched", "run_id", "params", "time", ...source fields}``, written when a task leaves
    its source for the pool, before any worker can have it. ``params`` is exactly what run() receives
    on top of the benchmark's defaults; HPO adds ``x`` (the optimizer's untransformed point), ``step``
    (the proposal step, whose number also seeds R), ``prop_type``, ``info`` and ``master``; UPF adds
    ``line``.
  - ``{"event": "started", "run_ids", "worker", "job", "inputs", "time"}``, written when a task message
    starts on a worker (sent to an idle worker, or, queued behind another run there, when that one
    finished), before the worker can have it. ``job`` numbers the jobs of the experiment (1, then one more
    per resume): the jobs in which a run started are its attempts, and a run's record says which
    ``attempt`` it is. ``inputs`` is the version of the pinned inputs the run saw (see below).
  - ``{"event": "interrupted", "run_ids", "signal" | "reason", "exit_code", "running", "time"}``, written
    when a signal (or a worker gone silent) stopped the job: the tasks left unfinished, the signal (or the
    reason), rank 0's exit code (128 + the signal's number for a signal), and for each run that was running
    ``{"worker", "started"}`` (when it went to its worker), so that the report can draw the interrupted
    attempts. Informative: replay treats every dispatched, unfinished task alike.
  - ``{"event": "epoch", "run_id", "epoch", "metrics", "time"}``, one per epoch report of a run while it
    trains (see candle_mbo.epochs), written as the reports arrive: the learning curves of every run,
    including those a kill interrupted, and what early discarding decided from.

Resume is a replay (:func:`replay`): finished tasks are given back to their source (the optimizer learns
them, UPF skips them), dispatched-but-unfinished tasks run again first, under their own run id, parameters
and ``runs/<id>/`` folder (so a checkpointing model continues where it stopped), and only then come new
tasks. A run id is never reused for other parameters: new ids continue after the highest one in the
journal. A run that started in ``--max-attempts`` jobs and never finished (each of them ended while it
ran: it took its worker down, or the job was killed or reached its walltime) is not run again: the resume
records it ``crashed`` (see :class:`candle_mbo.core.dispatch.Dispatcher`).

Pinned inputs: at the start, the experiment keeps a copy of the space file, the defaults file and the UPF
file under ``inputs/``, and the SHA-256 of each of them and of the model's own Python files in
experiment.yaml. ``--resume`` compares them with the files given now and refuses a change (exit 2), unless
``--accept-changed``. An accepted change is a new version of the inputs (experiment.yaml's
``inputs_version``): each changed file gets a numbered copy beside the earlier ones, which are never
overwritten, and each ``started`` event names the version its runs saw.
"""

import hashlib
import os
import re
import shutil
import time

from ..errors import UsageError

DISPATCHED = "dispatched"
STARTED = "started"
INTERRUPTED = "interrupted"
EPOCH = "epoch"


def is_record(entry):
    """True for a run record (a finished task), False for an event line."""
    return isinstance(entry, dict) and "status" in entry and "event" not in entry


def dispatched(run_id, params, **fields):
    """The journal entry of a task leaving its source."""
    entry = {"event": DISPATCHED, "run_id": run_id, "params": params, "time": time.time()}
    entry.update(fields)
    return entry


def epoch(report):
    """The journal entry of one epoch report (``{"run_id", "epoch", "metrics", "time"}``)."""
    return {"event": EPOCH, "run_id": report["run_id"], "epoch": report["epoch"], "metrics": report["metrics"],
            "time": report.get("time") or round(time.time(), 3)}


def started(run_ids, worker, job, inputs_version):
    """The journal entry of a task message starting on ``worker`` in job number ``job``."""
    return {"event": STARTED, "run_ids": list(run_ids), "worker": worker, "job": job, "inputs": inputs_version,
            "time": time.time()}


def interrupted(run_ids, signal_name=None, exit_code=None, running=None, reason=None):
    """The journal entry of a job stopped with ``run_ids`` unfinished, by a signal or for ``reason`` (rank 0
    exits ``exit_code``; ``running``: where each running run ran, see the module docstring)."""
    entry = {"event": INTERRUPTED, "run_ids": list(run_ids)}
    if signal_name:
        entry["signal"] = signal_name
    if reason:
        entry["reason"] = reason
    if exit_code is not None:
        entry["exit_code"] = exit_code
    entry["running"] = dict(running or {})
    entry["time"] = time.time()
    return entry


class Replay:
    """What a journal says: the finished records, the tasks to run again first, the next free run number.

    ``records``: run records in the order they finished (one per run id, the first if a line repeats).
    ``unfinished``: dispatched entries without a record, in dispatch order. ``dispatched``: run id -> its
    dispatched entry. ``attempts``: run id -> the number of jobs it started in. ``next_number``: one past
    the highest ``run-NNNN`` number ever used. ``epochs``: run id -> its epoch events in journal order.
    """

    def __init__(self, entries, where="results.jsonl"):
        self.records = []
        self.dispatched = {}
        self.epochs = {}
        self.attempts = {}
        jobs = set()  # (run id, job) of every start
        finished = set()
        self.next_number = 1
        for entry in entries:
            run_id = entry.get("run_id")
            self.next_number = max(self.next_number, (run_number(run_id) or 0) + 1)
            if is_record(entry):
                if run_id not in finished:
                    finished.add(run_id)
                    self.records.append(entry)
            elif entry.get("event") == EPOCH:
                self.epochs.setdefault(run_id, []).append(entry)
            elif entry.get("event") == DISPATCHED:
                previous = self.dispatched.get(run_id)
                if previous is not None and previous.get("params") != entry.get("params"):
                    raise UsageError("%s: run %s was dispatched twice with different parameters; the journal is "
                                     "inconsistent (was it edited?)" % (where, run_id))
                if previous is None:
                    self.dispatched[run_id] = entry
            elif entry.get("event") == STARTED:
                for started_id in entry.get("run_ids") or []:
                    if (started_id, entry.get("job")) not in jobs:
                        jobs.add((started_id, entry.get("job")))
                        self.attempts[started_id] = self.attempts.get(started_id, 0) + 1
        self.unfinished = [e for e in self.dispatched.values() if e["run_id"] not in finished]


def run_number(run_id):
    """The NNNN of a ``run-NNNN`` id, else None."""
    if isinstance(run_id, str) and run_id.startswith("run-") and run_id[4:].isdigit():
        return int(run_id[4:])
    return None


# ---------------------------------------------------------------------------------------------------
# Pinned inputs
# ---------------------------------------------------------------------------------------------------
def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_inputs(files, model_files=()):
    """``{role: {"path", "sha256"}}`` for the input files (role -> path, None skipped) and the model's files."""
    out = {}
    for role, path in files.items():
        if path:
            out[role] = {"path": os.path.abspath(path), "sha256": sha256(path)}
    for path in sorted(set(model_files)):
        if os.path.isfile(path):
            out["model:%s" % os.path.abspath(path)] = {"path": os.path.abspath(path), "sha256": sha256(path)}
    return out


def pin(inputs, folder, version=1, previous=None):
    """Copy the pinned input files (not the model's) into ``folder``; return ``inputs`` with each copy's name.

    Version 1 copies every file; a later ``version`` (an accepted change) copies only the files that differ
    from ``previous`` (the pinned inputs before), under a numbered name, so that no earlier copy is ever
    overwritten; an unchanged file keeps its earlier copy.
    """
    os.makedirs(folder, exist_ok=True)
    previous = previous or {}
    pinned = {}
    for role, item in inputs.items():
        item = dict(item)
        if not role.startswith("model:"):
            before = previous.get(role) or {}
            if version > 1 and before.get("copy") and before.get("sha256") == item["sha256"]:
                item["copy"] = before["copy"]
            else:
                stem = re.sub(r"[^A-Za-z0-9_.-]", "_", role) + ("-v%d" % version if version > 1 else "")
                name = "%s-%s" % (stem, os.path.basename(item["path"]))
                shutil.copyfile(item["path"], os.path.join(folder, name))
                item["copy"] = os.path.join(os.path.basename(folder), name)
        pinned[role] = item
    return pinned


def changed_inputs(pinned, current):
    """Messages naming each pinned input that differs now (changed, missing, or a different file)."""
    problems = []
    for role, item in sorted(pinned.items()):
        now = current.get(role)
        if role.startswith("model:"):
            what = "the model file %s" % item["path"]
        else:
            what = "%s %s" % (_ROLE_NAMES.get(role, role), item["path"])
        if now is None:
            if role.startswith("model:") and not os.path.exists(item["path"]):
                problems.append("%s is gone" % what)
            elif not role.startswith("model:"):
                problems.append("%s is no longer given" % what)
            continue
        if now["path"] != item["path"]:
            problems.append("%s is now %s" % (what, now["path"]))
        elif now["sha256"] != item["sha256"]:
            problems.append("%s changed since the experiment started" % what)
    for role in sorted(set(current) - set(pinned)):
        if not role.startswith("model:"):
            problems.append("%s %s was not part of the experiment"
                            % (_ROLE_NAMES.get(role, role), current[role]["path"]))
    return problems


_ROLE_NAMES = {"space": "the space file", "default_model": "the defaults file", "upf": "the UPF file",
               "defaults": "the benchmark's defaults file"}
