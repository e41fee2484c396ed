"""Shared helpers: launching the workflows for real (with or without mpiexec) under a wall-clock guard."""

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
EXAMPLES = os.path.join(ROOT, "examples")
PYTHON = sys.executable

MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
}


def env(**extra):
    result = dict(os.environ)
    result.update(MPI_ENV)
    result["PYTHONPATH"] = ROOT + os.pathsep + result.get("PYTHONPATH", "")
    result.update({k: str(v) for k, v in extra.items()})
    return result


def launch(module, args, np=None, timeout=240, cwd=None, extra_env=None, wait=True):
    """Run ``python -m module args`` (under ``mpiexec -n np`` when np is given).

    With ``wait`` returns the CompletedProcess; the wall-clock guard kills the whole process group and
    fails the test on a hang. Without ``wait`` returns the Popen (its own process group).
    """
    command = [PYTHON, "-m", module] + [str(a) for a in args]
    if np:
        command = ["mpiexec", "-n", str(np), "--oversubscribe"] + command
    process = subprocess.Popen(command, cwd=cwd or ROOT, env=env(**(extra_env or {})), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    if not wait:
        return process
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)
        out, err = process.communicate()
        pytest.fail("hang: %s did not finish in %d s\nstdout:\n%s\nstderr:\n%s"
                    % (" ".join(command), timeout, out[-3000:], err[-3000:]))
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def session_pids(leader):
    """Every process in the session that ``leader`` started (mpiexec, its ranks, their runners)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == leader and fields[0] != "Z":  # session id (field 6); zombies are gone already
            pids.append(int(name))
    return pids


def world_rank(pid):
    """The MPI rank of the process ``pid`` (from its environment), or None for a process that is not a rank."""
    try:
        with open("/proc/%d/environ" % pid, "rb") as handle:
            for item in handle.read().split(b"\0"):
                if item.startswith(b"OMPI_COMM_WORLD_RANK="):
                    return int(item.split(b"=", 1)[1])
    except OSError:
        pass
    return None


def kill_group(process, sig=signal.SIGKILL):
    """Kill the whole job like a scheduler would: every process of the session, not just one group.

    OpenMPI puts ranks in process groups of their own, so killing mpiexec's group alone would leave
    the ranks running.
    """
    for pid in session_pids(process.pid) or [process.pid]:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def read_journal(folder):
    """Every line of results.jsonl: run records and journal events (a torn last line is left out, as the
    store leaves it out: a job killed while writing it)."""
    with open(os.path.join(folder, "results.jsonl"), encoding="utf-8") as handle:
        lines = [line for line in handle.read().split("\n") if line.strip()]
    entries = []
    for number, line in enumerate(lines, start=1):
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            if number != len(lines):
                raise
    return entries


def read_records(folder):
    """The run records of results.jsonl (lines with a status), without the journal's events."""
    return [entry for entry in read_journal(folder) if "status" in entry and "event" not in entry]


def write_upf(path, lines):
    with open(path, "w", encoding="utf-8") as handle:
        for line in lines:
            handle.write((line if isinstance(line, str) else json.dumps(line)) + "\n")
    return str(path)


def have_mpiexec():
    return shutil.which("mpiexec") is not None


requires_mpi = pytest.mark.skipif(not have_mpiexec(), reason="mpiexec not installed")


def have_mlrmbo():
    try:
        subprocess.run(["Rscript", "-e", "suppressMessages(library(mlrMBO))"], check=True, timeout=60,
                       capture_output=True)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


@pytest.fixture(scope="session")
def mlrmbo():
    if not have_mlrmbo():
        pytest.skip("R package mlrMBO not installed (make setup)")
    return True


def describe(result):
    return "exit %s\nstdout:\n%s\nstderr:\n%s" % (result.returncode, result.stdout[-4000:], result.stderr[-4000:])
