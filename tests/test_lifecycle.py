"""Every run executes once and every job ends (issue 20), for real under mpiexec: the pool owns run ids,
rank 0 knows whether each worker is alive, and one owner stops every rank at every phase of a job."""

import os
import re
import signal
import subprocess

import pytest

from conftest import (FIXTURES, describe, kill_group, launch, read_journal, read_records, requires_mpi, session_pids,
                      world_rank)
from test_faults import upf, wait_until

FAULTY = os.path.join(FIXTURES, "faulty.py")
pytestmark = requires_mpi


def finish(process, timeout):
    """Wait for the job; a job that does not end within ``timeout`` s is a failure (and is killed)."""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)
        out, err = process.communicate()
        pytest.fail("the job did not end within %d s\nstdout:\n%s\nstderr:\n%s" % (timeout, out[-3000:], err[-3000:]))
    return process.returncode, out, err


def runs_started(out, run_ids):
    def started(run_id):
        path = out / "runs" / run_id / "model.log"
        return path.exists() and "fate:" in path.read_text()
    return all(started(r) for r in run_ids)


def ranks_of(process, wanted):
    return [pid for pid in session_pids(process.pid) if world_rank(pid) in wanted]


def interrupted_events(out):
    return [e for e in read_journal(out) if e.get("event") == "interrupted"]


def test_a_run_given_back_by_a_worker_that_cannot_load_the_model_runs_once(tmp_path):
    """20.1: worker 1 (GPU 0) cannot load the model after it was sent r0; the pool gives r0 to another worker,
    and the worker's later 'retire' listing r0 must not give it to a third one: r0 runs once."""
    lines = [{"id": "r0", "sleep": 4}, {"id": "r1", "sleep": 4}]
    result = upf(tmp_path, lines, np=5, extra=["--gpus-per-worker", "1"], timeout=180,
                 extra_env={"CUDA_VISIBLE_DEVICES": "0,1,2,3", "FAULTY_BROKEN_GPU": "0"})
    assert result.returncode == 0, describe(result)
    for run_id in ("r0", "r1"):
        log = (tmp_path / "out" / "runs" / run_id / "model.log").read_text()
        assert log.count("fate: ok") == 1, log  # one execution, one pid
    records = read_records(tmp_path / "out")
    assert sorted(r["run_id"] for r in records) == ["r0", "r1"] and 1 not in {r["worker"] for r in records}


def test_a_stop_signal_that_reaches_only_the_workers_stops_the_job(tmp_path):
    """20.2: Slurm's --signal=USR1@T without B: under a multi-node mpiexec signals the workers, not rank 0.
    The workers report it; rank 0 stops the job as if it had been signalled itself."""
    lines = [{"id": "r%d" % i, "sleep": 300} for i in range(3)]
    process = upf(tmp_path, lines, np=3, wait=False)
    try:
        assert wait_until(lambda: runs_started(tmp_path / "out", ["r0", "r1"]), 120)
        for pid in ranks_of(process, (1, 2)):
            os.kill(pid, signal.SIGUSR1)
        code, out, err = finish(process, 60)
    finally:
        kill_group(process)
    assert code == 128 + signal.SIGUSR1, out + err
    assert "stopped by SIGUSR1" in out and "continue with: mpiexec -n 3 " in out, out
    events = interrupted_events(tmp_path / "out")
    assert events and {"r0", "r1", "r2"} == set(events[-1]["run_ids"])
    assert wait_until(lambda: not session_pids(process.pid), 10)


def test_a_worker_that_goes_silent_ends_the_job_with_the_resume_command(tmp_path):
    """20.2: a worker stops answering (here: SIGSTOP) while it runs r0. Rank 0 notices within the liveness
    deadline, journals what was unfinished and ends every rank with the resume command; the resume completes."""
    lines = [{"id": "r%d" % i, "sleep": 5} for i in range(2)]
    process = upf(tmp_path, lines, np=3, wait=False, extra_env={"CANDLE_MBO_HEARTBEAT": "0.5"})
    try:
        assert wait_until(lambda: runs_started(tmp_path / "out", ["r0", "r1"]), 120)
        victims = ranks_of(process, (1,))
        os.kill(victims[0], signal.SIGSTOP)
        code, out, err = finish(process, 90)
    finally:
        kill_group(process)  # SIGKILL ends a stopped process too
    assert code == 1, out + err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "worker 1 on" in errors[0] and "said nothing for" in errors[0], err
    assert "continue with: mpiexec -n 3 " in errors[0]
    events = interrupted_events(tmp_path / "out")
    assert events and "r0" in events[-1]["run_ids"]
    assert wait_until(lambda: not session_pids(process.pid), 10)
    again = launch("candle_mbo.upf", ["--output", tmp_path / "out", "--resume", "--no-report"], np=3, timeout=120)
    assert again.returncode == 0, describe(again)
    assert sorted(r["run_id"] for r in read_records(tmp_path / "out")) == ["r0", "r1"]


def trace_has(path, text):
    """The trace holds a step starting with ``text`` ("phase design", "recorded")."""
    return os.path.exists(path) and any(line.split(None, 1)[1].startswith(text) for line in open(path) if " " in line)


PHASES = ("hello", "roles", "optimizers", "design", "dispatch", "summary")
LINE = re.compile(r"stopped by SIGUSR1 \([^)]*\): (\d+) finished, (\d+) interrupted")


@pytest.mark.r
@pytest.mark.usefixtures("mlrmbo")
@pytest.mark.parametrize("phase", [p if p in ("optimizers", "design") else pytest.param(p, marks=pytest.mark.slow)
                                   for p in PHASES])
def test_a_stop_signal_at_any_phase_ends_every_rank(tmp_path, phase):
    """20.3 and 20.7: SIGUSR1 (forwarded by mpiexec to every rank) at each phase of an HPO with two masters: the
    job ends with 138 and no rank left, whichever ranks had a role. Once dispatching began, nothing is sent after
    the signal and the printed line agrees with the journal (each task it counts is recorded or interrupted)."""
    trace = tmp_path / "trace"
    defaults = tmp_path / "defaults.txt"
    defaults.write_text("[Global_Params]\nmodel_name = 'faulty'\nsleep = 1.5\n")
    env = {"CANDLE_MBO_TRACE": str(trace)}
    if phase != "dispatch":
        env["CANDLE_MBO_INJECT_FAULT"] = "slow-phase:%s:8" % phase  # rank 0 stays there a while
    out = tmp_path / "out"
    args = ["--model", FAULTY, "--space", os.path.join(FIXTURES, "faulty_space.R"), "--default-model", defaults,
            "--budget", 8, "--design-size", 4, "--masters", 2, "--seed", 5, "--output", out, "--no-report"]
    process = launch("candle_mbo", args, np=4, wait=False, extra_env=env)
    try:
        assert wait_until(lambda: trace_has(trace, "recorded" if phase == "dispatch" else "phase " + phase)
                          or process.poll() is not None, 240, 0.01)
        process.send_signal(signal.SIGUSR1)
        code, stdout, stderr = finish(process, 60)
    finally:
        kill_group(process)
    assert code == 128 + signal.SIGUSR1, stdout + stderr
    assert wait_until(lambda: not session_pids(process.pid), 15)
    said = LINE.search(stdout)
    if phase in ("design", "dispatch"):
        assert said, stdout
        events = interrupted_events(out)
        unfinished = len(events[-1]["run_ids"]) if events else 0
        assert int(said.group(1)) + int(said.group(2)) == len(read_records(out)) + unfinished, (stdout, events)
    if phase == "design":  # the design R computed after the signal was neither journaled nor run
        assert said.groups() == ("0", "0")
        assert not [e for e in read_journal(out) if e.get("event") == "dispatched"]
        assert not os.listdir(out / "runs")
