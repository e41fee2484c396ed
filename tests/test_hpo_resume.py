"""HPO and the task journal, for real (issues 11, 12, 14): kills and signals at five moments then resume,
seeded sync resume = uninterrupted, fail fast, several masters."""

import collections
import json
import os
import signal

import pytest

from conftest import FIXTURES, describe, kill_group, launch, read_journal, read_records, requires_mpi
from test_faults import wait_until

CKPT = os.path.join(FIXTURES, "ckpt_model.py")
FAULTY = os.path.join(FIXTURES, "faulty.py")
pytestmark = [pytest.mark.r, pytest.mark.usefixtures("mlrmbo"), requires_mpi]

BUDGET = 10
EPOCHS = 6


def ckpt_defaults(tmp_path):
    path = tmp_path / "ckpt_params.txt"
    path.write_text("[Global_Params]\nmodel_name = 'ckpt_model'\nepochs = %d\nlr = 0.05\nepoch_s = 0.25\n"
                    "ckpt_restart_mode = 'auto'\nckpt_save_interval = 1\n" % EPOCHS)
    return str(path)


def hpo(tmp_path, *extra, np=3, wait=True, timeout=300, extra_env=None):
    args = ["--model", CKPT, "--space", os.path.join(FIXTURES, "ckpt_space.R"), "--default-model",
            ckpt_defaults(tmp_path), "--output", str(tmp_path / "out"), "--no-report", "--budget", BUDGET,
            "--design-size", 4, "--seed", 3] + list(extra)
    return launch("candle_mbo", args, np=np, timeout=timeout, wait=wait, extra_env=extra_env)


def trace_count(path, event):
    if not os.path.exists(path):
        return 0
    with open(path) as handle:
        return sum(1 for line in handle if line.split()[1:2] == [event])


def kill_after_records(tmp_path, count, *extra, np=3):
    """Start a search, kill -9 its whole process group once `count` runs are recorded, and wait for it."""
    trace = str(tmp_path / "trace")
    process = hpo(tmp_path, *extra, np=np, wait=False, extra_env={"CANDLE_MBO_TRACE": trace})
    try:
        assert wait_until(lambda: trace_count(trace, "recorded") >= count, 240, 0.01)
        kill_group(process, signal.SIGKILL)
        process.communicate(timeout=60)
    finally:
        kill_group(process, signal.SIGKILL)


def epochs_trained(out):
    total = 0
    for name in os.listdir(out / "runs"):
        log = out / "runs" / name / "epochs.log"
        if log.exists():
            total += len(log.read_text().splitlines())
    return total


def check_journal(out, before, budget=BUDGET):
    """Every planned evaluation exactly once, no id with two parameter sets, earlier records unchanged."""
    records = read_records(out)
    assert len(records) == budget and len({r["run_id"] for r in records}) == budget
    params = collections.defaultdict(set)
    for entry in read_journal(out):
        if entry.get("event") == "dispatched":
            params[entry["run_id"]].add(json.dumps(entry["params"], sort_keys=True))
    assert all(len(p) == 1 for p in params.values()), params
    now = {r["run_id"]: r for r in records}
    for record in before:
        assert now[record["run_id"]] == record


# event in the trace to wait for, how many of them, fault injected into the first job
MOMENTS = {
    "design": ("recorded", 1, None),
    "proposing": ("propose-start", 1, "slow-proposal:30"),
    "running": ("recorded", 6, None),
    "writing": ("writing", 1, "slow-write:30"),
    "last": ("recorded", BUDGET, None),
}


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
@pytest.mark.parametrize("moment", sorted(MOMENTS))
def test_kill_or_sigterm_at_five_moments_then_resume(tmp_path, moment, sig):
    trace = str(tmp_path / "trace")
    event, count, fault = MOMENTS[moment]
    env = {"CANDLE_MBO_TRACE": trace}
    if fault:
        env["CANDLE_MBO_INJECT_FAULT"] = fault
    process = hpo(tmp_path, wait=False, extra_env=env)
    try:
        assert wait_until(lambda: trace_count(trace, event) >= count or process.poll() is not None, 240, 0.01)
        alive = process.poll() is None  # "last": the job may already have ended by itself
        if sig == signal.SIGKILL:
            kill_group(process, signal.SIGKILL)
        else:
            process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=60)
    finally:
        kill_group(process, signal.SIGKILL)
    out = tmp_path / "out"
    before = read_records(out)
    journal = read_journal(out)
    dispatched = {e["run_id"] for e in journal if e.get("event") == "dispatched"}
    interrupted = dispatched - {r["run_id"] for r in before}
    if sig == signal.SIGTERM and alive and len(before) < BUDGET:
        assert "stopped by SIGTERM" in stdout and "continue with: mpiexec -n 3 " in stdout, stdout
        if moment != "writing":  # "writing": held in the write until OpenMPI's SIGKILL
            events = [e for e in journal if e.get("event") == "interrupted"]
            assert events and interrupted <= set(events[-1]["run_ids"])  # one may still have finished ok
    result = hpo(tmp_path, "--resume")
    assert result.returncode == 0, describe(result)
    check_journal(out, before)
    assert epochs_trained(out) <= EPOCHS * BUDGET + len(interrupted), (epochs_trained(out), interrupted)


@pytest.mark.slow
def test_interrupted_runs_continue_from_their_own_checkpoint(tmp_path):
    kill_after_records(tmp_path, 5)
    out = tmp_path / "out"
    before = read_records(out)
    result = hpo(tmp_path, "--resume")
    assert result.returncode == 0, describe(result)
    check_journal(out, before)
    rerun = [r for r in read_records(out) if r["run_id"] not in {b["run_id"] for b in before}]
    logs = [(out / "runs" / r["run_id"] / "model.log").read_text() for r in rerun]
    assert any("restored from epoch" in log for log in logs)  # an interrupted run continued
    for record in rerun:  # and never restored another configuration's checkpoint
        log = (out / "runs" / record["run_id"] / "epochs.log").read_text()
        trained = [json.loads(line)["x"] for line in log.splitlines()]
        assert set(trained) == {record["params"]["x"]}


def steps(out):
    by_step = collections.defaultdict(list)
    for entry in read_journal(out):
        if entry.get("event") == "dispatched":
            by_step[entry["step"]].append([round(v, 9) for v in entry["x"].values()])
    return dict(by_step)


@pytest.mark.slow
def test_a_seeded_sync_search_resumed_after_a_kill_proposes_what_the_uninterrupted_one_did(tmp_path):
    straight = tmp_path / "straight"
    straight.mkdir()
    result = hpo(straight, "--mode", "sync", "--propose-points", 2)
    assert result.returncode == 0, describe(result)
    broken = tmp_path / "broken"
    broken.mkdir()
    kill_after_records(broken, 7, "--mode", "sync", "--propose-points", 2)  # inside the second batch
    result = hpo(broken, "--mode", "sync", "--propose-points", 2, "--resume")
    assert result.returncode == 0, describe(result)
    assert steps(broken / "out") == steps(straight / "out")


@pytest.mark.parametrize("space", ["faulty_space.R", "faulty_space5.R"])
def test_a_search_whose_every_run_fails_stops_early(tmp_path, space):
    """The 5-d space's design (10 points) outnumbers the fail-fast limit plus the workers: queued design
    points are taken back when the job stops (they stay journaled)."""
    defaults = tmp_path / "none.txt"
    defaults.write_text("[Global_Params]\nmodel_name = 'faulty'\nfate = 'none'\n")
    args = ["--model", FAULTY, "--space", os.path.join(FIXTURES, space), "--default-model", str(defaults),
            "--budget", 30, "--output", str(tmp_path / "out"), "--no-report"]
    result = launch("candle_mbo", args, np=3, timeout=300)
    assert result.returncode == 3, describe(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: every run so far failed")]
    assert len(errors) == 1 and "run() returned None" in errors[0]
    assert len(read_records(tmp_path / "out")) < 30


def test_a_search_whose_whole_budget_failed_ends_with_0(tmp_path):
    """20.6: every evaluation of the budget has a (failed) result: nothing was left undone, exit 0."""
    defaults = tmp_path / "none.txt"
    defaults.write_text("[Global_Params]\nmodel_name = 'faulty'\nfate = 'none'\n")
    args = ["--model", FAULTY, "--space", os.path.join(FIXTURES, "faulty_space.R"), "--default-model", str(defaults),
            "--budget", 6, "--design-size", 6, "--output", str(tmp_path / "out"), "--no-report"]
    result = launch("candle_mbo", args, np=3, timeout=300)
    assert result.returncode == 0, describe(result)
    assert len(read_records(tmp_path / "out")) == 6 and "Stopped early" not in result.stderr
    assert "run() returned None" in result.stdout


def test_several_masters_share_the_search(tmp_path):
    base = ["--model", FAULTY, "--space", os.path.join(FIXTURES, "faulty_space.R"), "--budget", 24, "--design-size",
            6, "--masters", 2, "--seed", 4, "--no-report"]
    result = launch("candle_mbo", base + ["--output", str(tmp_path / "out")], np=6, timeout=300)
    assert result.returncode == 0, describe(result)
    records = read_records(tmp_path / "out")
    assert len(records) == 24 and all(r["status"] == "ok" for r in records)
    masters = collections.Counter(e.get("master") for e in read_journal(tmp_path / "out")
                                  if e.get("event") == "dispatched" and e.get("step"))
    assert set(masters) == {0, 1}, masters  # both masters proposed points after the design
    assert "2 masters" in result.stdout
    refused = launch("candle_mbo", base + ["--output", str(tmp_path / "o2"), "--mode", "sync"], np=6, timeout=120)
    assert refused.returncode == 2 and "sync mode proposes each batch from one model" in refused.stderr


@pytest.mark.slow
def test_several_masters_kill_then_resume(tmp_path):
    """Two masters, kill -9 with runs in flight, resume under the same mpiexec: every evaluation exactly once,
    and the reruns keep their ids and parameters."""
    kill_after_records(tmp_path, 7, "--masters", 2, "--budget", 16, np=5)
    out = tmp_path / "out"
    before = read_records(out)
    result = hpo(tmp_path, "--resume", "--budget", 16, np=5)
    assert result.returncode == 0, describe(result)
    check_journal(out, before, budget=16)
    assert {e.get("master") for e in read_journal(out) if e.get("event") == "dispatched" and e["step"]} == {0, 1}
