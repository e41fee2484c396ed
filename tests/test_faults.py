"""The pool under real-world faults (issue 12): no hang, no lost result, no orphan, a failing job stops early.

Each test launches the real workflows (UPF here; the HPO form of fail-fast is in test_hpo_resume.py) with the
fault-injecting benchmark tests/fixtures/faulty.py.
"""

import json
import os
import re
import signal
import time

import pytest

from conftest import FIXTURES, describe, kill_group, launch, read_journal, read_records, requires_mpi, write_upf

FAULTY = os.path.join(FIXTURES, "faulty.py")


def upf(tmp_path, lines, np=None, extra=(), timeout=180, extra_env=None, wait=True):
    path = write_upf(tmp_path / "runs.upf", lines)
    args = ["--model", FAULTY, "--upf", path, "--output", str(tmp_path / "out"), "--no-report"] + list(extra)
    return launch("candle_mbo.upf", args, np=np, timeout=timeout, extra_env=extra_env, wait=wait)


def processes_with(text):
    """Pids of live processes whose command line contains ``text`` as whole words ("sleep 59" is not
    found in another process's "sleep 590")."""
    pattern = re.compile(r"(?<!\w)%s(?!\w)" % re.escape(text))
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
            with open("/proc/%s/stat" % name) as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if pattern.search(cmdline) and state != "Z":
            found.append(int(name))
    return found


def wait_until(condition, timeout, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


@requires_mpi
def test_a_rank_that_cannot_load_the_model_does_not_hang_the_job(tmp_path):
    """12.1: the model fails to import on GPU 1 only; the other worker does the work and every rank ends."""
    lines = [{"id": "r%d" % i, "sleep": 0.1} for i in range(6)]
    started = time.monotonic()
    result = upf(tmp_path, lines, np=3, extra=["--gpus-per-worker", "1"], timeout=120,
                 extra_env={"CUDA_VISIBLE_DEVICES": "0,1", "FAULTY_BROKEN_GPU": "1"})
    assert result.returncode == 0, describe(result)
    records = read_records(tmp_path / "out")
    assert sorted(r["run_id"] for r in records) == ["r%d" % i for i in range(6)]
    assert {r["status"] for r in records} == {"ok"} and len({r["worker"] for r in records}) == 1
    assert "cannot run the model" in result.stdout + result.stderr
    assert "CUDA driver broken on GPU 1" in result.stdout + result.stderr
    assert time.monotonic() - started < 60  # the job itself takes about 10 s here; a hang would take for ever


@requires_mpi
def test_a_rank_whose_model_import_hangs_is_left_out_after_the_load_timeout(tmp_path):
    lines = [{"id": "r%d" % i} for i in range(4)]
    result = upf(tmp_path, lines, np=3, extra=["--gpus-per-worker", "1"], timeout=120,
                 extra_env={"CUDA_VISIBLE_DEVICES": "0,1", "FAULTY_HUNG_GPU": "1", "CANDLE_MBO_LOAD_TIMEOUT": "5"})
    assert result.returncode == 0, describe(result)
    records = read_records(tmp_path / "out")
    assert sorted(r["run_id"] for r in records) == ["r0", "r1", "r2", "r3"]
    assert "did not finish loading within 5 s" in result.stdout + result.stderr


@pytest.mark.parametrize("fate", ["fork_then_die", "system_then_die"])
def test_a_crash_is_seen_at_once_when_a_child_of_the_run_holds_on(tmp_path, fate):
    """12.2: the run starts a background process, then dies: crashed at once, not when the child ends,
    and the child dies with it."""
    marker = str(41 + os.getpid() % 50)  # a whole number: the fixture formats it with %g
    lines = [{"id": "dies", "fate": fate, "child_sleep": float(marker)}, {"id": "after"}]
    result = upf(tmp_path, lines, timeout=120)
    assert result.returncode == 0, describe(result)
    records = {r["run_id"]: r for r in read_records(tmp_path / "out")}
    assert records["dies"]["status"] == "crashed"
    assert records["dies"]["duration_s"] < 10, records["dies"]  # not the child's 40 s
    assert records["after"]["status"] == "ok"
    assert wait_until(lambda: not processes_with("sleep " + marker), 10), processes_with("sleep " + marker)


@requires_mpi
def test_a_runner_that_cannot_restart_mid_chunk_retires_its_worker_and_loses_nothing(tmp_path):
    """12.3: a run poisons the model's import and dies in the middle of a chunk of short runs: the chunk's
    finished results are kept, the worker retires with one line, the rest runs on the other worker."""
    poison = tmp_path / "poison"
    lines = [{"id": "r%03d" % i} for i in range(400)]
    lines[200] = {"id": "r200", "fate": "poison"}
    result = upf(tmp_path, lines, np=3, extra=["--no-run-dirs"], timeout=180,
                 extra_env={"FAULTY_POISON": str(poison)})
    assert result.returncode == 0, describe(result)
    records = read_records(tmp_path / "out")
    assert sorted(r["run_id"] for r in records) == ["r%03d" % i for i in range(400)]  # each exactly once
    by_id = {r["run_id"]: r for r in records}
    assert by_id["r200"]["status"] == "crashed" and "exit code 3" in by_id["r200"]["error"]
    assert sum(r["status"] == "ok" for r in records) == 399
    assert (result.stdout + result.stderr).count("retires") == 1
    assert "could not be restarted" in result.stdout + result.stderr


@requires_mpi
def test_long_runs_after_short_ones_run_side_by_side(tmp_path):
    """12.4: after many short runs, three long runs on three free workers run at the same time."""
    lines = [{"id": "s%03d" % i} for i in range(200)] + [{"id": "long%d" % i, "sleep": 3} for i in range(3)]
    result = upf(tmp_path, lines, np=4, extra=["--no-run-dirs"], timeout=180)
    assert result.returncode == 0, describe(result)
    longs = [r for r in read_records(tmp_path / "out") if r["run_id"].startswith("long")]
    assert len({r["worker"] for r in longs}) == 3
    assert max(r["started"] for r in longs) < min(r["finished"] for r in longs)  # they overlapped


@requires_mpi
def test_kill_9_of_the_job_leaves_no_process_behind(tmp_path):
    """12.5: runs that started children with Popen; kill -9 of every process of the job: nothing survives."""
    marker = str(301 + os.getpid() % 500)
    lines = [{"id": "p%d" % i, "fate": "popen_sleep", "child_sleep": float(marker), "sleep": 300} for i in range(2)]
    process = upf(tmp_path, lines, np=3, wait=False)
    try:
        assert wait_until(lambda: len(processes_with("sleep " + marker)) == 2, 60), "the runs did not start"
        kill_group(process, signal.SIGKILL)
        process.wait(timeout=30)
        assert wait_until(lambda: not processes_with("sleep " + marker), 15), processes_with("sleep " + marker)
        assert wait_until(lambda: not processes_with("candle_mbo.pool.isolation import runner_main"), 15)
    finally:
        kill_group(process, signal.SIGKILL)
        for pid in processes_with("sleep " + marker):
            os.kill(pid, signal.SIGKILL)


def test_a_fatal_master_error_reaches_the_terminal_not_a_run_log(tmp_path):
    """12.6: with --isolation none and no mpiexec, the worker is a thread of the master's process."""
    lines = [{"id": "first"}] + [{"id": "r%d" % i, "sleep": 1, "fate": "ok"} for i in range(3)]
    result = upf(tmp_path, lines, extra=["--isolation", "none"], timeout=60,
                 extra_env={"CANDLE_MBO_INJECT_FAULT": "master-after:1"})
    assert result.returncode == 1, describe(result)
    assert "injected master fault" in result.stderr
    for name in os.listdir(tmp_path / "out" / "runs"):
        log = (tmp_path / "out" / "runs" / name / "model.log").read_text()
        assert "injected master fault" not in log and "error:" not in log, log


@requires_mpi
def test_a_job_whose_every_run_fails_stops_early(tmp_path):
    """12.7: 30 runs that all fail the same way: the job stops after the first few, exit 3, one line."""
    lines = [{"id": "r%02d" % i, "fate": "raise"} for i in range(30)]
    result = upf(tmp_path, lines, np=3, timeout=120)
    assert result.returncode == 3, describe(result)
    records = read_records(tmp_path / "out")
    assert 5 <= len(records) < 30
    assert "every run so far failed" in result.stdout + result.stderr
    assert "RuntimeError: injected failure" in result.stdout + result.stderr
    again = upf(tmp_path, lines, np=3, extra=["--resume", "--max-failures", "0"], timeout=120)
    assert again.returncode == 0, describe(again)
    assert len(read_records(tmp_path / "out")) == 30


def test_one_success_keeps_the_job_going(tmp_path):
    lines = [{"id": "good"}] + [{"id": "r%02d" % i, "fate": "raise"} for i in range(8)]
    result = upf(tmp_path, lines, timeout=120)
    assert result.returncode == 0, describe(result)
    assert len(read_records(tmp_path / "out")) == 9


@requires_mpi
def test_gpu_mapping_is_printed_shared_gpus_warned_and_impossible_mappings_refused(tmp_path):
    """12.8: two workers, one visible GPU: both get it, with a warning; the mapping is printed."""
    lines = [{"id": "a", "fate": "env", "sleep": 0.5}, {"id": "b", "fate": "env", "sleep": 0.5}]
    result = upf(tmp_path, lines, np=3, extra=["--gpus-per-worker", "1"], extra_env={"CUDA_VISIBLE_DEVICES": "0"})
    assert result.returncode == 0, describe(result)
    assert "workers share GPUs" in result.stdout + result.stderr
    assert "worker 1 -> GPU 0" in result.stdout and "worker 2 -> GPU 0" in result.stdout
    for run_id in ("a", "b"):
        env = json.loads((tmp_path / "out" / "runs" / run_id / "env.json").read_text())
        assert env["CUDA_VISIBLE_DEVICES"] == "0"
        assert env["CANDLE_DATA_DIR"] == str(tmp_path / "out" / "data")  # one data folder for the job


@pytest.mark.parametrize("extra, env, message", [
    (["--gpus-per-worker", "-1"], {}, "--gpus-per-worker: must be 0 or more"),
    (["--gpus-per-worker", "1"], {"CUDA_VISIBLE_DEVICES": ""}, "no GPU is visible"),
])
def test_impossible_gpu_mappings_are_bad_input(tmp_path, extra, env, message):
    result = upf(tmp_path, [{"id": "a"}], extra=extra, extra_env=env, timeout=60)
    assert result.returncode == 2, describe(result)
    assert message in result.stderr and not (tmp_path / "out").exists()


@requires_mpi
def test_threads_per_worker_follow_slurm_and_the_cpuset(tmp_path):
    lines = [{"id": "a", "fate": "env"}]
    result = upf(tmp_path, lines, np=2, extra_env={"SLURM_CPUS_PER_TASK": "3"})
    assert result.returncode == 0, describe(result)
    env = json.loads((tmp_path / "out" / "runs" / "a" / "env.json").read_text())
    assert env["OMP_NUM_THREADS"] == "3"
    result = upf(tmp_path, lines, np=2, extra=["--output", str(tmp_path / "out2")])
    assert result.returncode == 0, describe(result)
    env = json.loads((tmp_path / "out2" / "runs" / "a" / "env.json").read_text())
    cpus = len(os.sched_getaffinity(0))
    assert env["OMP_NUM_THREADS"] == str(max(1, cpus // 2))  # the worker and the master share the CPUs


def test_a_model_whose_initialize_parameters_hangs_is_bad_input_within_the_load_timeout(tmp_path):
    """20.4: the load timeout bounds the whole probe, initialize_parameters() included, with one line naming it."""
    model = tmp_path / "hangs.py"
    model.write_text("import time\n\ndef initialize_parameters():\n    time.sleep(3600)\n    return {}\n\n"
                     "def run(params):\n    return 1.0\n")
    lines = write_upf(tmp_path / "runs.upf", [{"id": "a"}])
    result = launch("candle_mbo.upf", ["--model", model, "--upf", lines, "--output", tmp_path / "out"], timeout=90,
                    extra_env={"CANDLE_MBO_LOAD_TIMEOUT": "3"})
    assert result.returncode == 2, describe(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "initialize_parameters()" in errors[0] and "within 3 s" in errors[0], result.stderr
    assert not (tmp_path / "out").exists()


def resume(tmp_path, extra=(), np=None, timeout=120, wait=True):
    return launch("candle_mbo.upf", ["--output", tmp_path / "out", "--resume", "--no-report"] + list(extra), np=np,
                  timeout=timeout, wait=wait)


def log_text(out, run_id):
    path = out / "runs" / run_id / "model.log"
    return path.read_text() if path.exists() else ""


def started_events(out, run_id):
    if not (out / "results.jsonl").exists():
        return []
    return [e for e in read_journal(out) if e.get("event") == "started" and run_id in e["run_ids"]]


def test_a_run_that_takes_its_worker_down_is_recorded_crashed_after_max_attempts(tmp_path):
    """20.5: with --isolation none a segfault ends the whole job, and every resume ran it first again. The
    journal counts the attempts; after --max-attempts (2) the run is recorded crashed and the rest goes on."""
    lines = [{"id": "a"}, {"id": "dies", "fate": "segv"}, {"id": "b"}]
    first = upf(tmp_path, lines, extra=["--isolation", "none"], timeout=120)
    assert first.returncode == -signal.SIGSEGV, describe(first)
    second = resume(tmp_path)
    assert second.returncode == -signal.SIGSEGV, describe(second)
    third = resume(tmp_path)
    assert third.returncode == 0, describe(third)
    out = tmp_path / "out"
    records = {r["run_id"]: r for r in read_records(out)}
    assert records["a"]["status"] == records["b"]["status"] == "ok"
    assert records["dies"]["status"] == "crashed" and "--max-attempts 2" in records["dies"]["error"], records["dies"]
    assert len(started_events(out, "dies")) == 2 and records["b"]["attempt"] == 1
    assert "dies" in third.stdout  # the summary names it


def test_a_run_longer_than_the_walltime_is_not_rerun_for_ever(tmp_path):
    """20.5: the same cap for a run that is interrupted each time (a walltime shorter than the run, no --timeout)."""
    out = tmp_path / "out"
    process = upf(tmp_path, [{"id": "long", "sleep": 300}, {"id": "short"}], wait=False)
    for attempt in (1, 2):
        try:
            assert wait_until(lambda: len(started_events(out, "long")) == attempt and
                              log_text(out, "long").count("fate:") == attempt, 60)
            os.kill(process.pid, signal.SIGINT)
            process.communicate(timeout=60)
        finally:
            kill_group(process)
        assert process.returncode == 128 + signal.SIGINT
        if attempt == 1:
            process = resume(tmp_path, wait=False)
    third = resume(tmp_path)
    assert third.returncode == 0, describe(third)
    records = {r["run_id"]: r for r in read_records(out)}
    assert records["long"]["status"] == "crashed" and "running when 2 jobs ended" in records["long"]["error"]
    assert records["short"]["status"] == "ok"


@requires_mpi
def test_fail_fast_exits_0_when_every_planned_run_has_a_result(tmp_path):
    """20.6: 6 of 6 lines failed: nothing was left undone, so the job completed (exit 0), and the summary still
    names the common error."""
    lines = [{"id": "r%d" % i, "fate": "raise"} for i in range(6)]
    result = upf(tmp_path, lines, np=3, timeout=120)
    assert result.returncode == 0, describe(result)
    assert len(read_records(tmp_path / "out")) == 6
    assert "Stopped early" not in result.stderr and "RuntimeError: injected failure" in result.stdout
