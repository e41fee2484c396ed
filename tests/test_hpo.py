"""HPO workflow for real: mlrMBO through rpy2, mpiexec ranks, budgets, failures, resume, bad input."""

import csv
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import FIXTURES, ROOT, describe, kill_group, launch, read_journal, read_records, requires_mpi

BRANIN = os.path.join(FIXTURES, "branin.py")
MIXED = os.path.join(FIXTURES, "mixed.py")
FAULTY = os.path.join(FIXTURES, "faulty.py")
pytestmark = [pytest.mark.r, pytest.mark.usefixtures("mlrmbo")]


def hpo(out, model, space, *extra, np=3, timeout=300, extra_env=None):
    args = ["--model", model, "--space", os.path.join(FIXTURES, space), "--output", out, "--no-report"]
    return launch("candle_mbo", args + [str(a) for a in extra], np=np, timeout=timeout, extra_env=extra_env)


def reference(out):
    result = subprocess.run(["Rscript", os.path.join(ROOT, "R", "mbo_reference.R"), str(out)], capture_output=True,
                            text=True, timeout=600)
    return result.returncode, json.loads(result.stdout.strip().splitlines()[-1])


@requires_mpi
def test_numeric_space_sync_exact_budget(tmp_path):
    out = tmp_path / "out"
    result = hpo(out, BRANIN, "branin_space.R", "--mode", "sync", "--budget", 13, "--design-size", 5,
                 "--propose-points", 3, "--seed", 7)
    assert result.returncode == 0, describe(result)
    records = read_records(out)
    assert len(records) == 13
    iterations = sorted(r["iteration"] for r in records)
    assert iterations == [0] * 5 + [1] * 3 + [2] * 3 + [3] * 2  # the last batch is trimmed to the budget
    assert {r["prop_type"] for r in records if r["iteration"] > 0} == {"infill_cb"}
    best = json.loads((out / "best.json").read_text())
    assert best["objective"] == min(r["objective"] for r in records) and set(best["params"]) == {"x1", "x2"}
    assert (out / "mlrmbo_opt_path.rds").exists()
    header = (out / "results.csv").read_text().splitlines()[0]
    assert header == "run_id,status,objective,duration_s,worker,started,finished,objective_source,epochs,iteration,prop_type,error,x1,x2"
    assert "best: run-" in result.stdout
    assert "files: best.json, results.csv" in result.stdout and "report.html" not in result.stdout  # --no-report
    assert not (out / "report.html").exists()


@requires_mpi
def test_log_transform_is_recorded_and_results_keep_raw_values(tmp_path):
    """Issue 21 item 9: --objective-transform log reaches R (mbo_settings.json), experiment.yaml records it,
    results.csv keeps the values run() returned."""
    import yaml

    out = tmp_path / "out"
    result = hpo(out, BRANIN, "branin_space.R", "--mode", "sync", "--budget", 7, "--design-size", 4, "--seed", 5,
                 "--objective-transform", "log", "--no-run-dirs")
    assert result.returncode == 0, describe(result)
    assert json.loads((out / "mbo_settings.json").read_text())["objective_transform"] == "log"
    assert yaml.safe_load((out / "experiment.yaml").read_text())["settings"]["objective_transform"] == "log"
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    records = read_records(out)
    assert len(rows) == 7 and sorted(float(r["objective"]) for r in rows) == sorted(r["objective"] for r in records)
    assert min(float(r["objective"]) for r in rows) > 0.3  # Branin's values (minimum 0.398), not their log10


@requires_mpi
def test_async_search_without_run_dirs(tmp_path):
    out = tmp_path / "out"
    result = hpo(out, BRANIN, "branin_space.R", "--mode", "async", "--budget", 10, "--design-size", 4, "--seed", 3,
                 "--no-run-dirs")
    assert result.returncode == 0, describe(result)
    records = read_records(out)
    assert len(records) == 10 and all(r["status"] == "ok" and r["history"] for r in records)
    assert not os.listdir(out / "runs")
    best = json.loads((out / "best.json").read_text())
    assert best["objective"] == min(r["objective"] for r in records)


@requires_mpi
@pytest.mark.parametrize("model, space", [(BRANIN, "branin_space.R"),
                                          pytest.param(MIXED, "mixed_space.R", marks=pytest.mark.slow)])
def test_sync_proposals_equal_plain_mbo(tmp_path, model, space):
    out = tmp_path / "out"
    result = hpo(out, model, space, "--mode", "sync", "--budget", 16, "--design-size", 10, "--propose-points", 2,
                 "--seed", 11)
    assert result.returncode == 0, describe(result)
    code, report = reference(out)
    assert code == 0 and report["equal"] is True and report["points"] == 6, report


@requires_mpi
def test_mixed_space_values_reach_run_as_plain_python(tmp_path):
    out = tmp_path / "out"
    result = hpo(out, MIXED, "mixed_space.R", "--budget", 14, "--design-size", 6, "--seed", 3)
    assert result.returncode == 0, describe(result)
    records = read_records(out)
    assert len(records) == 14 and all(r["status"] == "ok" for r in records)
    for record in records:
        received = json.loads((out / "runs" / record["run_id"] / "received.json").read_text())
        values, types = received["values"], received["types"]
        assert types == {"learning_rate": "float", "units": "int", "activation": "str", "batch_size": "int",
                         "use_bn": "bool", "momentum": "float", "weights": "list", "layers": "list"}
        assert 1e-4 <= values["learning_rate"] <= 0.1
        assert values["units"] in (8, 16, 32, 64)
        assert values["activation"] in ("relu", "tanh", "sigmoid") and values["batch_size"] in (16, 32, 64)
        assert len(values["weights"]) == 2 and all(0 <= w <= 1 for w in values["weights"])
        assert values["layers"] in ([50, 50, 1], [100, 1])
        params = record["params"]
        if values["use_bn"]:
            assert "momentum" not in params and values["momentum"] == 0.5  # inactive: the default applies
        else:
            assert 0 <= params["momentum"] <= 0.9
        assert None not in params.values()
    levels = {r["params"]["activation"] for r in records if r["iteration"] == 0}
    assert levels == {"relu", "tanh", "sigmoid"}  # every level in the design
    # issue 21 item 10: an inactive parameter's cell in results.csv is empty, not the default run() received
    with open(out / "results.csv", newline="") as handle:
        rows = {row["run_id"]: row for row in csv.DictReader(handle)}
    inactive = [r["run_id"] for r in records if "momentum" not in r["params"]]
    assert inactive and all(rows[i]["momentum"] == "" for i in inactive)
    assert all(rows[r["run_id"]]["momentum"] != "" for r in records if "momentum" in r["params"])


@requires_mpi
def test_failures_are_imputed_and_the_search_finishes(tmp_path):
    out = tmp_path / "out"
    result = hpo(out, FAULTY, "faulty_space.R", "--default-model", os.path.join(FIXTURES, "faulty_regions.txt"),
                 "--budget", 20, "--design-size", 8, "--seed", 5, "--mode", "sync")
    assert result.returncode == 0, describe(result)
    records = read_records(out)
    assert len(records) == 20
    statuses = {r["status"] for r in records}
    assert "failed" in statuses and "ok" in statuses
    best = json.loads((out / "best.json").read_text())
    assert next(r for r in records if r["run_id"] == best["run_id"])["status"] == "ok"
    check = subprocess.run(["Rscript", "-e", "x <- readRDS('%s')$data; cat(all(is.finite(x$cm_objective)), nrow(x))"
                            % (out / "mlrmbo_opt_path.rds")], capture_output=True, text=True, timeout=120)
    assert check.stdout.split() == ["TRUE", "20"], check.stderr


@requires_mpi
def test_workers_never_import_rpy2(tmp_path):
    out = tmp_path / "out"
    result = hpo(out, BRANIN, "branin_space.R", "--budget", 6, "--isolation", "none", "--seed", 2)
    assert result.returncode == 0, describe(result)
    records = read_records(out)
    assert len(records) == 6 and all(r["metrics"]["rpy2_loaded"] == 0.0 for r in records)
    pids = {r["metrics"]["pid"] for r in records}
    assert len(pids) == 2  # ran in the two worker ranks themselves (isolation none)


def _wait_for_records(out, count, process, limit=180):
    deadline = time.time() + limit
    while time.time() < deadline:
        if (out / "results.jsonl").exists() and len(read_records(out)) >= count:
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.05)
    return False


@requires_mpi
@pytest.mark.parametrize("mode, kill_after", [("sync", 3), pytest.param("sync", 9, marks=pytest.mark.slow),
                                              pytest.param("async", 7, marks=pytest.mark.slow)])
def test_kill_then_resume(tmp_path, mode, kill_after):
    out = tmp_path / "out"
    args = ["--model", FAULTY, "--space", os.path.join(FIXTURES, "faulty_space.R"), "--output", out, "--no-report",
            "--budget", 16, "--design-size", 6, "--mode", mode, "--seed", 9, "--default-model",
            os.path.join(FIXTURES, "faulty_regions.txt")]
    process = launch("candle_mbo", args, np=3, wait=False)
    assert _wait_for_records(out, kill_after, process), process.communicate()
    kill_group(process, signal.SIGKILL)
    process.wait(timeout=30)
    before = read_records(out)
    assert len(before) < 16
    result = launch("candle_mbo", ["--output", out, "--resume", "--no-report"], np=3, timeout=300)
    assert result.returncode == 0, describe(result)
    after = read_records(out)
    ids = [r["run_id"] for r in after]
    assert len(after) == 16 and len(set(ids)) == 16
    assert after[:len(before)] == before
    design = {e["run_id"] for e in read_journal(out) if e.get("event") == "dispatched" and e["step"] == 0}
    assert len(design) == 6 and design <= set(ids)  # the design completed with its own points


@pytest.mark.parametrize("space_text, message", [
    (None, "--space"),
    ("param.set <- makeParamSet(makeNumericParam('x1', lower = 0, upper = 1)\n", "R syntax error"),
    ("other <- 1\n", "defines no `param.set`"),
    ("param.set <- makeParamSet(makeNumericParam('x1', lower = 2, upper = 1))\n", "space.R:1"),
    ("param.set <- makeParamSet(makeDiscreteParam('x1', values = character(0)))\n", "space.R:1"),
    ("param.set <- 3\n", "not a ParamHelpers ParamSet"),
])
def test_bad_space_files_exit_2(tmp_path, space_text, message):
    space = tmp_path / "space.R"
    if space_text is not None:
        space.write_text(space_text)
    result = launch("candle_mbo", ["--model", BRANIN, "--space", space, "--output", tmp_path / "out"], timeout=120)
    assert result.returncode == 2, describe(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, message", [
    (["--budget", "4", "--design-size", "6"], "--budget 4 is smaller than --design-size 6"),
    (["--budget", "3"], "--budget 3 is smaller than the initial design"),
    (["--design-size", "2"], "smaller than the 3 levels"),
    (["--learner", "gp"], "invalid choice: 'gp'"),
    (["--crit", "pi"], "invalid choice: 'pi'"),
    (["--objective-transform", "sqrt"], "invalid choice: 'sqrt'"),
    (["--learner", "km"], "km needs a space of numeric"),
    (["--budget", "0"], "--budget: must be a whole number of at least 1"),
    (["--timeout", "-5"], "--timeout: must be 0"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
])
def test_bad_options_exit_2(tmp_path, extra, message):
    result = launch("candle_mbo", ["--model", MIXED, "--space", os.path.join(FIXTURES, "mixed_space.R"),
                                   "--output", tmp_path / "out"] + extra, timeout=120)
    assert result.returncode == 2, describe(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert not (tmp_path / "out").exists()


def test_missing_mlrmbo_is_explained(tmp_path):
    empty = tmp_path / "rlib"
    empty.mkdir()
    result = launch("candle_mbo", ["--model", BRANIN, "--space", os.path.join(FIXTURES, "branin_space.R"),
                                   "--output", tmp_path / "out"],
                    extra_env={"R_LIBS_SITE": str(empty), "R_LIBS_USER": str(empty), "R_LIBS": str(empty)},
                    timeout=120)
    assert result.returncode == 2, describe(result)
    assert "mlrMBO" in result.stderr and "not installed" in result.stderr and "make setup" in result.stderr


def test_unknown_hyperparameter_names_are_warned_and_typos_refused(tmp_path):
    space = tmp_path / "space.R"
    space.write_text("param.set <- makeParamSet(makeNumericParam('x1', 0, 1), makeNumericParam('warmup_lr', 0, 1))\n")
    result = launch("candle_mbo", ["--model", BRANIN, "--space", space, "--output", tmp_path / "out", "--budget", 5,
                                   "--no-report", "--quiet"], timeout=180)
    assert result.returncode == 0, describe(result)
    assert "warmup_lr" in result.stdout and "does not define" in result.stdout
    space.write_text("param.set <- makeParamSet(makeNumericParam('x1', 0, 1), "
                     "makeNumericParam('learning_rte', 0, 1))\n")
    args = ["--model", BRANIN, "--space", space, "--budget", 5, "--no-report", "--quiet"]
    refused = launch("candle_mbo", args + ["--output", tmp_path / "out2"], timeout=180)
    assert refused.returncode == 2 and "did you mean learning_rate?" in refused.stderr, describe(refused)
    assert not (tmp_path / "out2").exists()
    allowed = launch("candle_mbo", args + ["--output", tmp_path / "out3", "--allow-unknown-params"], timeout=180)
    assert allowed.returncode == 0, describe(allowed)


@requires_mpi
def test_async_mr_with_one_point_per_batch_is_refused_for_several_workers(tmp_path):
    """Issue 21 item 5: --propose-points 1 does not bound an async request, which asks for up to the workers."""
    result = launch("candle_mbo", ["--model", BRANIN, "--space", os.path.join(FIXTURES, "branin_space.R"),
                                   "--output", tmp_path / "out", "--mode", "async", "--crit", "mr",
                                   "--propose-points", "1", "--budget", 8], np=4, timeout=180)
    assert result.returncode == 2, describe(result)
    assert "--crit mr cannot choose several points at once: async mode with 3 points" in result.stderr
    assert not (tmp_path / "out").exists()


def test_help_shows_a_working_example():
    result = launch("candle_mbo", ["--help"], timeout=60)
    assert result.returncode == 0 and "mpiexec -n 3 python -m candle_mbo --model examples/digits" in result.stdout
    assert "mpiexec -n 3 python -m candle_mbo --output experiments/digits1 --resume" in result.stdout  # same ranks


@requires_mpi
def test_resume_reruns_unfinished_design_points_under_their_own_ids(tmp_path):
    out = tmp_path / "out"
    result = hpo(out, FAULTY, "faulty_space.R", "--budget", 10, "--design-size", 6, "--seed", 1, "--mode", "sync")
    assert result.returncode == 0, describe(result)
    lines = (out / "results.jsonl").read_text().splitlines()
    # as if the job had died before the last design point finished: its record and all later steps are gone
    kept = []
    for line in lines:
        entry = json.loads(line)
        step = entry.get("step", entry.get("iteration"))
        if step == 0 and not ("status" in entry and entry["run_id"] == "run-0006"):
            kept.append(line)
    (out / "results.jsonl").write_text("\n".join(kept) + "\n")
    result = launch("candle_mbo", ["--output", out, "--resume", "--no-report"], np=3, timeout=300)
    assert result.returncode == 0, describe(result)
    records = read_records(out)
    ids = [r["run_id"] for r in records]
    assert len(ids) == 10 and len(set(ids)) == 10
    rerun = next(r for r in records if r["run_id"] == "run-0006")
    assert rerun["iteration"] == 0 and rerun["prop_type"] == "initdesign"


def test_flat_objective_breaks_kriging_and_the_search_goes_on(tmp_path):
    """A real surrogate failure: kriging on a constant objective (seeded sync search, so every fit fails)."""
    out = tmp_path / "out"
    result = launch("candle_mbo", ["--model", os.path.join(FIXTURES, "constant.py"), "--space",
                                   os.path.join(FIXTURES, "ab_space.R"), "--output", out, "--budget", 8,
                                   "--design-size", 4, "--mode", "sync", "--learner", "km", "--seed", 1,
                                   "--no-report"], timeout=300)
    assert result.returncode == 0, describe(result)
    records = read_records(out)
    assert len(records) == 8
    assert {r["prop_type"] for r in records if r["iteration"] > 0} == {"random_fallback"}
    assert "surrogate failed" in result.stdout
    assert all(r["proposal"]["error"] for r in records if r["prop_type"] == "random_fallback")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_surrogate_failure_falls_back_to_random_and_goes_on(tmp_path, mode):
    """Every fit fails (injected: in async mode a flat objective breaks kriging only now and then)."""
    out = tmp_path / "out"
    result = launch("candle_mbo", ["--model", os.path.join(FIXTURES, "branin.py"), "--space",
                                   os.path.join(FIXTURES, "branin_space.R"), "--output", out, "--budget", 8,
                                   "--design-size", 4, "--mode", mode, "--seed", 1, "--no-report"],
                    timeout=300, extra_env={"CANDLE_MBO_INJECT_FAULT": "surrogate"})
    assert result.returncode == 0, describe(result)
    records = read_records(out)
    assert len(records) == 8 and all(r["status"] == "ok" for r in records)
    types = [r["prop_type"] for r in records if r["iteration"] > 0]
    # async may hand out a plain random point before the first design result has arrived
    assert "random_fallback" in types and set(types) <= {"random_fallback", "random"}
    assert "surrogate failed (injected surrogate fault" in result.stdout
    assert all("injected" in r["proposal"]["error"] for r in records if r["prop_type"] == "random_fallback")
