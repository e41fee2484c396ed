"""Fault injection: no finished result is ever lost, no job ever hangs, bad input runs nothing.

The faults table and the bad-input table here are the ones docs/RELIABILITY.md reports.
"""

import fcntl
import json
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import (FIXTURES, ROOT, describe, kill_group, launch, read_records, requires_mpi, session_pids,
                      world_rank, write_upf)

FAULTY = os.path.join(FIXTURES, "faulty.py")
TIMEOUT = 2

# fate -> the status the run must get (UPF needs no objective, so "none" is ok)
FATES = {
    "ok": "ok", "none": "ok", "print_mb": "ok",
    "raise": "failed", "nan": "failed", "inf": "failed", "not_history": "failed", "missing_key": "failed",
    "oom": "failed",
    "exit": "crashed", "segv": "crashed", "sigkill": "crashed",
    "sleep": "timeout", "hang": "timeout",
}


@requires_mpi
def test_upf_with_every_fault_mixed_among_good_runs(tmp_path):
    faulty = [f for f in FATES if f not in ("ok", "none", "print_mb")]
    lines = []
    for i in range(33):  # 11 of 33 lines faulty: a third
        fate = faulty[i // 3] if i % 3 == 0 else "ok"
        lines.append({"id": "r%02d-%s" % (i, fate), "fate": fate, "value": i, "megabytes": 4096 if fate == "oom" else 2})
    lines.append({"id": "none", "fate": "none"})
    lines.append({"id": "print", "fate": "print_mb", "megabytes": 2})
    upf = write_upf(tmp_path / "faults.upf", lines)
    out = tmp_path / "out"
    result = launch("candle_mbo.upf", ["--model", FAULTY, "--upf", upf, "--output", out, "--timeout", TIMEOUT,
                                       "--memory-limit", 1024, "--no-report"], np=4, timeout=300)
    assert result.returncode == 0, describe(result)
    records = read_records(out)
    assert sorted(r["run_id"] for r in records) == sorted(line["id"] for line in lines)  # exactly one each
    for record in records:
        fate = record["run_id"].split("-", 1)[-1] if record["run_id"][0] == "r" else record["run_id"]
        fate = {"print": "print_mb"}.get(fate, fate)
        assert record["status"] == FATES[fate], record
        if record["status"] == "timeout":
            assert record["duration_s"] <= TIMEOUT + 5
        if record["status"] != "ok":
            assert record["error"] and os.path.exists(out / "runs" / record["run_id"] / "model.log")
        assert json.loads((out / "runs" / record["run_id"] / "result.json").read_text())["status"] == record["status"]


@requires_mpi
def test_hpo_with_failing_crashing_and_hanging_regions(tmp_path):
    out = tmp_path / "out"
    result = launch("candle_mbo", ["--model", FAULTY, "--space", os.path.join(FIXTURES, "faulty_space.R"),
                                   "--default-model", os.path.join(FIXTURES, "faulty_all_regions.txt"),
                                   "--output", out, "--budget", 24, "--design-size", 10, "--seed", 4,
                                   "--timeout", TIMEOUT, "--no-report"], np=4, timeout=400)
    assert result.returncode == 0, describe(result)
    records = read_records(out)
    assert len(records) == 24 and len({r["run_id"] for r in records}) == 24
    statuses = [r["status"] for r in records]
    assert statuses.count("ok") >= 6 and len(set(statuses)) >= 2
    for record in records:
        x, y = record["params"]["x"], record["params"]["y"]
        expected = "timeout" if x < -2.6 else "crashed" if y < -3.6 else "failed" if x > 2.2 else "ok"
        assert record["status"] == expected, record
    best = json.loads((out / "best.json").read_text())
    assert next(r for r in records if r["run_id"] == best["run_id"])["status"] == "ok"
    check = subprocess.run(["Rscript", "-e", "x <- readRDS('%s')$data; cat(all(is.finite(x$cm_objective)), nrow(x))"
                            % (out / "mlrmbo_opt_path.rds")], capture_output=True, text=True, timeout=120)
    assert check.stdout.split() == ["TRUE", "24"], check.stderr  # the surrogate never saw NA/NaN/Inf


@requires_mpi
@pytest.mark.parametrize("module", ["candle_mbo.upf", "candle_mbo"])
def test_master_failure_after_start_ends_every_rank(tmp_path, module):
    out = tmp_path / "out"
    if module == "candle_mbo.upf":
        args = ["--upf", write_upf(tmp_path / "r.upf", [{"id": "r%d" % i, "sleep": 1} for i in range(12)])]
    else:
        args = ["--space", os.path.join(FIXTURES, "faulty_space.R"), "--budget", 20]
    start = time.time()
    process = launch(module, ["--model", FAULTY, "--output", out, "--no-report"] + args, np=4, wait=False,
                     extra_env={"CANDLE_MBO_INJECT_FAULT": "master-after:3"})
    try:
        stdout, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        kill_group(process)
        pytest.fail("the job hung after a master failure")
    assert process.returncode != 0
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "injected master fault" in errors[0] and "full traceback:" in errors[0], stderr
    traceback_path = re.search(r"full traceback: (\S+?\.txt)\)", errors[0]).group(1)
    assert "Traceback" in open(traceback_path).read()
    deadline = time.time() + 10
    while session_pids(process.pid) and time.time() < deadline:
        time.sleep(0.2)
    assert not session_pids(process.pid), "processes left behind"
    assert len(read_records(out)) >= 3  # what finished is kept
    assert time.time() - start < 120


@requires_mpi
def test_worker_rank_killed_from_outside_then_resume(tmp_path):
    lines = [{"id": "r%02d" % i, "sleep": 0.5} for i in range(16)]
    upf = write_upf(tmp_path / "r.upf", lines)
    out = tmp_path / "out"
    args = ["--model", FAULTY, "--upf", upf, "--output", out, "--no-report"]
    process = launch("candle_mbo.upf", args, np=3, wait=False)
    deadline = time.time() + 120
    while time.time() < deadline and not ((out / "results.jsonl").exists() and len(read_records(out)) >= 3):
        time.sleep(0.1)
    victims = [pid for pid in session_pids(process.pid) if world_rank(pid) == 1]
    assert victims, "no rank 1 found"
    os.kill(victims[0], signal.SIGKILL)
    try:
        process.communicate(timeout=60)  # OpenMPI ends the whole job when a rank dies
    except subprocess.TimeoutExpired:
        kill_group(process)
        pytest.fail("the job did not end after a rank was killed")
    assert process.returncode != 0
    before = read_records(out)
    result = launch("candle_mbo.upf", args + ["--resume"], np=3, timeout=180)
    assert result.returncode == 0, describe(result)
    after = read_records(out)
    assert after[:len(before)] == before and sorted(r["run_id"] for r in after) == [line["id"] for line in lines]


@requires_mpi
@pytest.mark.slow
@pytest.mark.parametrize("repeat", range(3))
@pytest.mark.parametrize("moment", ["design", "mid-batch", "proposing"])
def test_repeated_kill_and_resume(tmp_path, moment, repeat):
    out = tmp_path / "out"
    args = ["--model", FAULTY, "--space", os.path.join(FIXTURES, "faulty_space.R"), "--output", out, "--no-report",
            "--budget", 14, "--design-size", 6, "--mode", "sync", "--propose-points", 2, "--seed", 20 + repeat,
            "--default-model", os.path.join(FIXTURES, "faulty_regions.txt")]
    extra_env = {}
    if moment == "design":
        wanted = 2 + repeat
    elif moment == "mid-batch":
        wanted = 7 + repeat % 2  # inside the first or second batch of two
        extra_env = {}
    else:
        wanted = 8  # after a full batch: the master is in R, proposing
    process = launch("candle_mbo", args, np=3, wait=False, extra_env=extra_env)
    deadline = time.time() + 180
    while time.time() < deadline and not ((out / "results.jsonl").exists() and len(read_records(out)) >= wanted):
        if process.poll() is not None:
            break
        time.sleep(0.02)
    if moment == "proposing":
        time.sleep(0.5)
    kill_group(process)
    process.wait(timeout=30)
    before = read_records(out)
    for attempt in range(2):
        result = launch("candle_mbo", ["--output", out, "--resume", "--no-report"], np=3, timeout=300)
        assert result.returncode == 0, describe(result)
    after = read_records(out)
    ids = [r["run_id"] for r in after]
    assert len(after) == 14 and len(set(ids)) == 14 and after[:len(before)] == before
    csv_ids = [row.split(",")[0] for row in (out / "results.csv").read_text().splitlines()[1:]]
    assert csv_ids == ids


# ---------------------------------------------------------------------------------------------------
# Bad input: each exits 2 with one `error:` line, runs nothing, writes nothing outside --output.
# ---------------------------------------------------------------------------------------------------
def _files(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def bad_model(tmp_path, body):
    return _files(tmp_path, "model.py", body)


GOOD_MODEL_BODY = ("import candle, os\nclass B(candle.Benchmark):\n    def set_locals(self):\n"
                   "        self.additional_definitions = [{'name': 'x', 'type': float}]\n"
                   "        self.required = ['x']\n"
                   "def initialize_parameters():\n"
                   "    return candle.finalize_parameters(B(os.path.dirname(__file__), 'defaults.txt', 'none'))\n"
                   "def run(p):\n    open(os.environ['RUN_MARKER'], 'w').close()\n    return p['x']\n")


def case(tmp_path, name):
    """Build the files of a bad-input case; returns (module, args, expected fragment of the message)."""
    space = os.path.join(FIXTURES, "faulty_space.R")
    upf = write_upf(tmp_path / "ok.upf", [{"id": "a"}])

    def model_with(defaults=None, body=GOOD_MODEL_BODY):
        _files(tmp_path, "defaults.txt", defaults if defaults is not None else "[Global_Params]\nx = 1\n")
        return bad_model(tmp_path, body)

    cases = {
        "model missing": lambda: ("candle_mbo.upf", ["--model", tmp_path / "nope.py", "--upf", upf], "model file not found"),
        "model syntax error": lambda: ("candle_mbo.upf", ["--model", bad_model(tmp_path, "def run(:\n"), "--upf", upf],
                               "model.py:1: syntax error"),
        "model without run": lambda: ("candle_mbo.upf", ["--model", bad_model(tmp_path, "def initialize_parameters():\n"
                                                                                 "    return {}\n"), "--upf", upf],
                              "defines no run()"),
        "model without initialize_parameters": lambda: ("candle_mbo.upf", ["--model", bad_model(tmp_path, "def run(p):\n"
                                                                                                 "    return 1\n"),
                                                                   "--upf", upf], "initialize_parameters"),
        "model import fails": lambda: ("candle_mbo.upf", ["--model", bad_model(tmp_path, "import no_such_module_x\n"),
                                                  "--upf", upf], "no_such_module_x"),
        "defaults file missing": lambda: ("candle_mbo.upf", ["--model", model_with(), "--upf", upf, "--default-model",
                                                     tmp_path / "missing.txt"], "missing.txt"),
        "benchmark defaults file missing": lambda: ("candle_mbo.upf", ["--model", bad_model(
            tmp_path, GOOD_MODEL_BODY.replace("defaults.txt", "gone.txt")), "--upf", upf], "gone.txt"),
        "defaults file malformed": lambda: ("candle_mbo.upf", ["--model", model_with("[Global_Params]\nx 1\n"), "--upf", upf],
                                    "defaults.txt:2"),
        "defaults file bad value": lambda: ("candle_mbo.upf", ["--model", model_with("[Global_Params]\nx = one\n"),
                                                       "--upf", upf], "x = 'one' is not a valid float"),
        "required parameter missing": lambda: ("candle_mbo.upf", ["--model", model_with("[Global_Params]\n"), "--upf", upf],
                                       "required parameter not set: x"),
        "space missing": lambda: ("candle_mbo", ["--model", FAULTY, "--space", tmp_path / "none.R"], "none.R: file not found"),
        "space syntax error": lambda: ("candle_mbo", ["--model", FAULTY, "--space", _files(tmp_path, "s.R", "param.set <- (\n")],
                               "s.R: R syntax error"),
        "space without param.set": lambda: ("candle_mbo", ["--model", FAULTY, "--space", _files(tmp_path, "s.R", "a <- 1\n")],
                                    "defines no `param.set`"),
        "space lower above upper": lambda: ("candle_mbo", ["--model", FAULTY, "--space", _files(
            tmp_path, "s.R", "param.set <- makeParamSet(makeNumericParam('x', lower = 3, upper = 1))\n")], "s.R:1"),
        "space empty discrete": lambda: ("candle_mbo", ["--model", FAULTY, "--space", _files(
            tmp_path, "s.R", "param.set <- makeParamSet(makeDiscreteParam('x', values = list()))\n")], "s.R:1"),
        "upf bad json": lambda: ("candle_mbo.upf", ["--model", FAULTY, "--upf", _files(tmp_path, "b.upf", "{x\n")],
                         "b.upf:1: invalid JSON"),
        "upf not an object": lambda: ("candle_mbo.upf", ["--model", FAULTY, "--upf", _files(tmp_path, "b.upf", "3\n")],
                              "b.upf:1: expected a JSON object"),
        "upf duplicate id": lambda: ("candle_mbo.upf", ["--model", FAULTY, "--upf", _files(
            tmp_path, "b.upf", '{"id": "a"}\n{"id": "a"}\n')], "b.upf:2: duplicate id"),
        "upf unsafe id": lambda: ("candle_mbo.upf", ["--model", FAULTY, "--upf", _files(tmp_path, "b.upf", '{"id": "../../x"}\n')],
                          "b.upf:1: run id '../../x' is not a safe file name"),
        "upf empty": lambda: ("candle_mbo.upf", ["--model", FAULTY, "--upf", _files(tmp_path, "b.upf", "")], "no parameter sets"),
        "budget zero": lambda: ("candle_mbo", ["--model", FAULTY, "--space", space, "--budget", 0], "--budget"),
        "budget negative": lambda: ("candle_mbo", ["--model", FAULTY, "--space", space, "--budget", -3], "--budget"),
        "budget below design": lambda: ("candle_mbo", ["--model", FAULTY, "--space", space, "--budget", 3, "--design-size", 5],
                                "--budget 3 is smaller than --design-size 5"),
        "timeout negative": lambda: ("candle_mbo.upf", ["--model", FAULTY, "--upf", upf, "--timeout", -1], "--timeout"),
        "unknown option": lambda: ("candle_mbo.upf", ["--model", FAULTY, "--upf", upf, "--bugdet", 3],
                           "unrecognized arguments: --bugdet"),
        "output is a file": lambda: ("candle_mbo.upf", ["--model", FAULTY, "--upf", upf, "--output",
                                                _files(tmp_path, "afile", "")], "is a file"),
        "output not writable": lambda: ("candle_mbo.upf", ["--model", FAULTY, "--upf", upf, "--output", "/proc/candle-mbo-x"],
                                "/proc/candle-mbo-x"),
        "resume without experiment": lambda: ("candle_mbo.upf", ["--model", FAULTY, "--upf", upf, "--resume", "--output",
                                                         tmp_path / "empty"], "holds no experiment"),
        "config not a mapping": lambda: ("candle_mbo", ["--config", _files(tmp_path, "c.yaml", "- budget\n")],
                                 "c.yaml: expected a mapping"),
        "config unknown key": lambda: ("candle_mbo", ["--config", _files(tmp_path, "c.yaml", "budgett: 3\nmodel: x.py\n")],
                               "unknown key budgett"),
        "config bad value": lambda: ("candle_mbo", ["--config", _files(tmp_path, "c.yaml", "budget: many\n")],
                             "c.yaml: budget: invalid value"),
        "unknown learner": lambda: ("candle_mbo", ["--model", FAULTY, "--space", space, "--learner", "svm"],
                            "invalid choice: 'svm'"),
        "design below levels": lambda: ("candle_mbo", ["--model", FAULTY, "--space", _files(
            tmp_path, "s.R", "param.set <- makeParamSet(makeDiscreteParam('fate', values = c('ok', 'ok2', 'ok3')))\n"),
            "--design-size", 2], "smaller than the 3 levels"),
    }
    return cases[name]()


BAD_INPUTS = ["model missing", "model syntax error", "model without run", "model without initialize_parameters",
              "model import fails", "defaults file missing", "benchmark defaults file missing",
              "defaults file malformed", "defaults file bad value", "required parameter missing", "space missing",
              "space syntax error", "space without param.set", "space lower above upper", "space empty discrete",
              "upf bad json", "upf not an object", "upf duplicate id", "upf unsafe id", "upf empty", "budget zero",
              "budget negative", "budget below design", "timeout negative", "unknown option", "output is a file",
              "output not writable", "resume without experiment", "config not a mapping", "config unknown key",
              "config bad value", "unknown learner", "design below levels"]


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input(tmp_path, name):
    module, args, expected = case(tmp_path, name)
    work = tmp_path / "work"
    work.mkdir()
    if "--output" not in [str(a) for a in args]:
        args = args + ["--output", tmp_path / "out"]
    before = sorted(os.listdir(tmp_path))
    start = time.time()
    marker = tmp_path.parent / (tmp_path.name + "-ran")
    result = launch(module, args, cwd=str(work), timeout=60, extra_env={"RUN_MARKER": marker})
    elapsed = time.time() - start
    assert result.returncode == 2, describe(result)
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and expected in errors[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not marker.exists()  # nothing ran
    assert os.listdir(work) == []  # nothing written in the working directory
    assert sorted(os.listdir(tmp_path)) == before  # no output directory, nothing else
    print("%s: exit 2 in %.1f s" % (name, elapsed))


def test_output_in_use_by_another_job(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("pid 1 on elsewhere\n")
        lock.flush()
        upf = write_upf(tmp_path / "a.upf", [{"id": "a"}])
        result = launch("candle_mbo.upf", ["--model", FAULTY, "--upf", upf, "--output", out], timeout=60)
    assert result.returncode == 2 and "in use by another job" in result.stderr, describe(result)
    assert sorted(os.listdir(out)) == [".lock"]


def test_more_workers_than_work_is_allowed_with_a_note(tmp_path):
    upf = write_upf(tmp_path / "a.upf", [{"id": "a"}])
    result = launch("candle_mbo.upf", ["--model", FAULTY, "--upf", upf, "--output", tmp_path / "out", "--no-report"],
                    np=4, timeout=120)
    assert result.returncode == 0 and "note: 3 workers for 1 runs" in result.stdout, describe(result)


def test_defaults_files_and_upf_values_are_data(tmp_path):
    marker = tmp_path / "executed"
    upf = write_upf(tmp_path / "a.upf", [{"id": "a", "fate": "__import__('os').system('touch %s')" % marker}])
    launch("candle_mbo.upf", ["--model", FAULTY, "--upf", upf, "--output", tmp_path / "out", "--no-report"],
           timeout=120)
    assert not marker.exists()
    record = read_records(tmp_path / "out")[0]
    assert record["params"]["fate"].startswith("__import__")


def test_no_world_writable_files(tmp_path):
    upf = write_upf(tmp_path / "a.upf", [{"id": "a"}, {"id": "b", "fate": "segv"}])
    result = launch("candle_mbo.upf", ["--model", FAULTY, "--upf", upf, "--output", tmp_path / "out"], timeout=120)
    assert result.returncode == 0, describe(result)
    for folder, _, names in os.walk(tmp_path / "out"):
        for name in names + ["."]:
            mode = os.stat(os.path.join(folder, name)).st_mode
            assert not mode & 0o002, os.path.join(folder, name)
