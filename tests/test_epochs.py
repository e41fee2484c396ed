"""Real benchmarks as they are (issue 18): the live per-epoch channel, the objective found in what a run
emits when run() returns None, paths as the benchmark's authors wrote them, and candle_lib parity."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from candle_mbo import epochs
from candle_mbo.core.journal import Replay
from candle_mbo.core.store import load_journal
from candle_mbo.pool import objective
from candle_mbo.pool.runner import Runner
from conftest import (FIXTURES, ROOT, describe, kill_group, launch, mlrmbo, read_journal, read_records,  # noqa: F401
                      requires_mpi, write_upf)
from test_faults import wait_until

EMITTERS = os.path.join(FIXTURES, "emitters")
EMIT = os.path.join(EMITTERS, "emit.py")
P1B1 = os.path.join(EMITTERS, "p1b1_torch.py")
LIB_MODEL = os.path.join(EMITTERS, "lib_model.py")
CANDLE_LIB_LIKE = os.path.join(FIXTURES, "candle_lib_like")


def upf(tmp_path, lines, model=EMIT, np=None, extra=(), wait=True, timeout=240, **kw):
    path = write_upf(tmp_path / "runs.upf", lines)
    args = ["--model", model, "--upf", path, "--output", str(tmp_path / "out"), "--no-report"] + list(extra)
    return launch("candle_mbo.upf", args, np=np, wait=wait, timeout=timeout, **kw)


def hpo(tmp_path, model=EMIT, space=os.path.join(EMITTERS, "emit_space.R"), budget=8, np=3, extra=(), **kw):
    args = ["--model", model, "--space", space, "--budget", budget, "--seed", 7, "--output", str(tmp_path / "out"),
            "--no-report"] + list(extra)
    return launch("candle_mbo", args, np=np, **kw)


def by_id(folder):
    return {r["run_id"]: r for r in read_records(folder)}


def epoch_events(folder, run_id=None):
    return [e for e in read_journal(folder) if e.get("event") == "epoch" and run_id in (None, e["run_id"])]


# -- the channel, in one process ---------------------------------------------------------------------
def test_report_outside_candle_mbo_is_a_no_op():
    assert epochs.active() is None
    assert epochs.report(1, 0.5, loss=0.4) is None  # a model run by hand trains on


def test_a_channel_keeps_the_curve_and_a_stop_answer_raises_run_pruned():
    sent = []

    def send(report, wait):
        sent.append((report, wait))
        return {"stop": report["epoch"] >= 2, "reason": "rung 2"}

    with epochs.open_channel("r1", "val_loss", send, wait=True) as channel:
        epochs.report(1, 0.9, loss=1.0)
        with pytest.raises(epochs.RunPruned, match="rung 2"):
            epochs.report(2, 0.8)
        with pytest.raises(epochs.RunPruned):  # once stopped, every later report says so, without asking
            epochs.report(3, 0.7)
    assert [r["seq"] for r, _ in sent] == [1, 2] and all(wait for _, wait in sent)
    assert channel.curve() == {"val_loss": [0.9, 0.8, 0.7], "loss": [1.0, None, None]}
    assert channel.last_epoch == 3 and epochs.active() is None


# -- where the objective comes from ---------------------------------------------------------------------
def test_the_objective_comes_from_the_first_source_that_has_it_in_the_documented_order(tmp_path):
    (tmp_path / "val_scores.json").write_text(json.dumps({"val_loss": 0.25, "r2": 0.7}))
    curve = {"val_loss": [0.5, 0.4]}
    output = lambda: "epoch 1 val_loss: 0.9\nIMPROVE_RESULT val_loss:\t0.125\n"  # noqa: E731
    common = dict(output_dir=str(tmp_path), curve=curve, output=output)
    assert objective.find_objective({"val_loss": [0.3]}, "val_loss", "last", **common)[:2] == (0.3, "returned")
    assert objective.find_objective(None, "val_loss", "last", **common)[:2] == (0.25, "scores_file")
    os.unlink(tmp_path / "val_scores.json")
    assert objective.find_objective(None, "val_loss", "min", **common)[:2] == (0.4, "epoch_report")
    assert objective.find_objective(None, "val_loss", "last", output_dir=str(tmp_path), output=output)[:2] == \
        (0.125, "output")
    assert objective.find_objective(None, "val_loss", "last", output_dir=str(tmp_path), output=output,
                                    regex=r"val_loss: (\S+)")[:2] == (0.9, "output")


def test_a_scores_file_older_than_the_run_is_a_leftover_and_does_not_count(tmp_path):
    path = tmp_path / "val_scores.json"
    path.write_text(json.dumps({"val_loss": 0.25}))
    os.utime(path, (time.time() - 3600, time.time() - 3600))
    assert objective.find_objective(None, "val_loss", "last", output_dir=str(tmp_path), started=time.time())[0] is None
    why = objective.explain_missing("val_loss", output_dir=str(tmp_path), started=time.time())
    assert "older than the run" in why


def test_the_error_names_every_source_tried_and_what_was_found(tmp_path):
    (tmp_path / "scores.yaml").write_text("r2: 0.5\nmse: 0.1\n")
    why = objective.explain_missing("val_loss", output_dir=str(tmp_path), scores_file="scores.yaml",
                                    curve={"ckpt_metric": [0.3]}, regex="loss=(\\S+)")
    assert why.startswith("no objective 'val_loss': run() returned None")
    assert "scores.yaml has no 'val_loss' (it has: mse, r2)" in why
    assert "the epoch reports carry ckpt_metric, not 'val_loss'" in why and "ckpt_save_best_metric" in why
    assert "no output line matches --objective-regex 'loss=(\\\\S+)'" in why


@pytest.mark.parametrize("emit, extra, value, source", [
    ("report", {}, 0.14, "epoch_report"),
    ("scores", {}, 0.14, "scores_file"),
    ("scores_yaml", {"objective_file": "scores.yaml"}, 0.14, "scores_file"),
    ("print", {"objective_regex": r"val_loss: (?P<value>\S+)"}, 0.14, "output"),
    ("improve", {}, 0.14, "output"),
])
def test_a_runner_finds_what_each_kind_of_benchmark_emits(tmp_path, emit, extra, value, source):
    runner = Runner(EMIT, require_objective=True, **extra)
    record = runner.run({"run_id": emit, "params": {"emit": emit}, "run_dir": str(tmp_path / emit)})
    assert record["status"] == "ok", record
    assert record["objective"] == pytest.approx(value) and record["objective_source"] == source
    if emit == "report":  # the curve from the reports is the run's history (learning curves)
        result = json.loads((tmp_path / emit / "result.json").read_text())
        assert result["history"]["val_loss"] == pytest.approx([0.4733333, 0.3066667, 0.14], rel=1e-5)
        assert record["epochs"] == 3


def test_a_run_that_emits_nothing_fails_with_every_source_named(tmp_path):
    record = Runner(EMIT, require_objective=True).run(
        {"run_id": "n", "params": {"emit": "nothing"}, "run_dir": str(tmp_path / "n")})
    assert record["status"] == "failed"
    for words in ("run() returned None", "no scores file val_scores.json", "no epoch reports",
                  "IMPROVE_RESULT val_loss"):
        assert words in record["error"]
    assert "objective_source" not in record


# -- across processes: the journal, the resume ------------------------------------------------------------
@requires_mpi
def test_epoch_reports_are_journaled_before_the_run_record_in_epoch_order(tmp_path):
    lines = [{"id": "r%d" % i, "x": i / 4, "epochs": 4} for i in range(4)]
    result = upf(tmp_path, lines, np=3)
    assert result.returncode == 0, describe(result)
    journal = read_journal(tmp_path / "out")
    for line in lines:
        run_id = line["id"]
        positions = [i for i, e in enumerate(journal) if e.get("run_id") == run_id]
        kinds = [journal[i].get("event") or "record" for i in positions]
        assert kinds == ["dispatched", "epoch", "epoch", "epoch", "epoch", "record"], kinds
        assert [journal[i]["epoch"] for i in positions[1:5]] == [1, 2, 3, 4]
    records = by_id(tmp_path / "out")
    assert all(r["objective_source"] == "epoch_report" and r["epochs"] == 4 for r in records.values())
    header = (tmp_path / "out" / "results.csv").read_text().splitlines()[0].split(",")
    assert header[7:9] == ["objective_source", "epochs"]


@requires_mpi
@pytest.mark.slow
def test_a_p1b1_shaped_benchmark_returning_none_is_searched_to_its_budget(tmp_path, mlrmbo):
    result = hpo(tmp_path, model=P1B1, space=os.path.join(EMITTERS, "p1b1_space.R"), budget=10, timeout=400)
    assert result.returncode == 0, describe(result)
    records = read_records(tmp_path / "out")
    assert len(records) == 10 and all(r["status"] == "ok" for r in records), records
    assert {r["objective_source"] for r in records} == {"epoch_report"}
    assert {r["epochs"] for r in records} == {4}
    assert len(epoch_events(tmp_path / "out")) == 40
    best = json.loads((tmp_path / "out" / "best.json").read_text())
    assert best["objective"] == min(r["objective"] for r in records)


@requires_mpi
@pytest.mark.slow
@pytest.mark.parametrize("emit, extra, source", [
    ("scores", [], "scores_file"),
    ("print", ["--objective-regex", r"val_loss: (\S+)"], "output"),
])
def test_hpo_takes_its_objective_from_a_scores_file_or_a_printed_line(tmp_path, mlrmbo, emit, extra, source):
    defaults = tmp_path / "defaults.txt"
    defaults.write_text(open(os.path.join(EMITTERS, "emit_default_model.txt")).read().replace(
        "emit = 'report'", "emit = '%s'" % emit))
    result = hpo(tmp_path, extra=["--default-model", str(defaults)] + extra, timeout=400)
    assert result.returncode == 0, describe(result)
    records = read_records(tmp_path / "out")
    assert len(records) == 8 and {r["objective_source"] for r in records} == {source}, records
    assert min(r["objective"] for r in records) < 0.2  # the search found the valley at x = 0.3


@requires_mpi
@pytest.mark.slow
def test_hpo_of_a_benchmark_that_emits_nothing_stops_early_naming_every_source(tmp_path, mlrmbo):
    defaults = tmp_path / "defaults.txt"
    defaults.write_text(open(os.path.join(EMITTERS, "emit_default_model.txt")).read().replace(
        "emit = 'report'", "emit = 'nothing'"))
    result = hpo(tmp_path, budget=20, extra=["--default-model", str(defaults), "--max-failures", 3], timeout=400)
    assert result.returncode == 3, describe(result)
    assert "no objective 'val_loss': run() returned None; no scores file val_scores.json" in result.stderr
    assert "no epoch reports" in result.stderr
    assert len(read_records(tmp_path / "out")) < 20


@requires_mpi
@pytest.mark.slow
def test_a_run_killed_while_training_keeps_its_epochs_in_the_journal_and_resumes(tmp_path):
    lines = [{"id": "long", "x": 0.3, "epochs": 40, "epoch_s": 0.25}, {"id": "short", "x": 0.6, "epochs": 2}]
    process = upf(tmp_path, lines, np=3, wait=False)
    assert wait_until(lambda: (tmp_path / "out" / "results.jsonl").exists()
                      and len(epoch_events(tmp_path / "out", "long")) >= 3, 120)
    kill_group(process)  # kill -9 of the whole job, as a node failure or scancel --signal=KILL
    process.communicate()
    seen = [e["epoch"] for e in epoch_events(tmp_path / "out", "long")]
    assert seen[:3] == [1, 2, 3] and "long" not in by_id(tmp_path / "out")
    replay = Replay(load_journal(str(tmp_path / "out" / "results.jsonl")))
    assert [e["epoch"] for e in replay.epochs["long"]] == seen  # what a resume sees
    again = launch("candle_mbo.upf", ["--output", tmp_path / "out", "--resume", "--no-report"], np=3, timeout=240)
    assert again.returncode == 0, describe(again)
    assert by_id(tmp_path / "out")["long"]["status"] == "ok"


# -- candle_lib's own classes ----------------------------------------------------------------------------
@requires_mpi
@pytest.mark.parametrize("api", ["pytorch", "keras"])
def test_candle_libs_checkpointer_and_monitor_report_through_the_runner(tmp_path, api):
    result = upf(tmp_path, [{"id": api, "api": api}], model=LIB_MODEL, np=2,
                 extra_env={"PYTHONPATH": CANDLE_LIB_LIKE + os.pathsep + ROOT})
    assert result.returncode == 0, describe(result)
    used = [json.loads(line) for line in (tmp_path / "out" / "runs" / api / "epochs.log").read_text().splitlines()]
    assert all(entry["candle"] for entry in used)  # candle_lib's classes (the stand-in), not candle_mbo's
    record = by_id(tmp_path / "out")[api]
    assert record["objective_source"] == "epoch_report" and record["epochs"] == 4
    assert [e["epoch"] for e in epoch_events(tmp_path / "out", api)] == [1, 2, 3, 4]


def test_a_model_run_by_hand_outside_candle_mbo_is_unaffected(tmp_path):
    env = dict(os.environ, CANDLE_DATA_DIR=str(tmp_path), PYTHONPATH=ROOT)
    for model in (EMIT, P1B1):
        result = subprocess.run([sys.executable, model, "--output_dir", str(tmp_path / "o")], cwd=str(tmp_path),
                                env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr


# -- paths as the benchmark's authors wrote them ----------------------------------------------------------
@requires_mpi
def test_a_benchmark_that_opens_paths_relative_to_its_folder_runs_with_workdir_model(tmp_path):
    bench = tmp_path / "bench"
    (bench / "data").mkdir(parents=True)
    (bench / "data" / "table.csv").write_text("0.25\n")
    (bench / "rel.py").write_text(REL_MODEL)
    (bench / "rel_default_model.txt").write_text("[Global_Params]\nmodel_name = 'rel'\nepochs = 1\n")
    model = str(bench / "rel.py")
    failed = upf(tmp_path, [{"id": "a"}], model=model, np=2)
    assert failed.returncode == 0, describe(failed)
    error = by_id(tmp_path / "out")["a"]["error"]
    assert "'data/table.csv' was resolved against the run folder %s" % (tmp_path / "out" / "runs" / "a") in error
    assert "--workdir model" in error
    shutil.rmtree(tmp_path / "out")
    ok = upf(tmp_path, [{"id": "a"}], model=model, np=2, extra=["--workdir", "model"])
    assert ok.returncode == 0, describe(ok)
    record = by_id(tmp_path / "out")["a"]
    assert record["status"] == "ok" and record["objective"] == 0.25
    assert (tmp_path / "out" / "runs" / "a" / "written.txt").exists()  # output_dir is still the run folder
    assert not (bench / "written.txt").exists()


REL_MODEL = '''
import os
import candle

HERE = os.path.dirname(os.path.abspath(__file__))


class Rel(candle.Benchmark):
    pass


def initialize_parameters():
    return candle.finalize_parameters(Rel(HERE, "rel_default_model.txt", "pytorch"))


def run(params):
    with open("data/table.csv") as handle:  # relative to the benchmark's folder, as its author runs it
        value = float(handle.read())
    with open(os.path.join(params["output_dir"], "written.txt"), "w") as handle:
        handle.write("here")
    return {"val_loss": [value]}
'''


@requires_mpi
def test_output_may_be_a_folder_with_staged_data_but_not_another_experiment(tmp_path):
    out = tmp_path / "out"
    (out / "data").mkdir(parents=True)
    (out / "data" / "staged.csv").write_text("1\n")
    result = upf(tmp_path, [{"id": "a"}], np=2)
    assert result.returncode == 0, describe(result)
    assert (out / "data" / "staged.csv").read_text() == "1\n" and "a" in by_id(out)
    again = upf(tmp_path, [{"id": "b"}], np=2)
    assert again.returncode == 2 and "already holds an experiment (experiment.yaml)" in again.stderr, describe(again)


# -- candle_lib parity -----------------------------------------------------------------------------------
def test_benchmark_builds_its_parser_in_init_as_candle_lib_does(tmp_path, monkeypatch):
    import candle

    monkeypatch.chdir(tmp_path)
    (tmp_path / "test_model.txt").write_text("[Global_Params]\nmodel_name = 'fake'\n")
    bmk = candle.Benchmark("./", "test_model.txt", "keras", "fake_bmk", "Fake benchmark")
    assert bmk.parser is not None  # candle_lib's test_indirect_finalize_parameters relies on it
    config = [{"name": "rng_seed", "abv": "r", "type": float, "default": 123},
              {"name": "train_bool", "type": candle.str2bool, "default": True},
              {"name": "clr_flag", "type": candle.str2bool, "default": True}]
    bmk.parser = candle.parse_from_dictlist(config, bmk.parser)
    params = vars(bmk.parser.parse_args(["--rng_seed", "456"]))
    bmk.check_required_exists(params)
    candle.check_flag_conflicts(params)
    assert params == {"rng_seed": 456.0, "train_bool": True, "clr_flag": True}


def test_bad_objective_options_are_refused_before_anything_runs(tmp_path):
    result = upf(tmp_path, [{"id": "a"}], extra=["--objective-regex", "val_loss: ("])
    assert result.returncode == 2 and "--objective-regex 'val_loss: (' is not a valid regular expression" \
        in result.stderr, describe(result)
    assert not (tmp_path / "out").exists()


def test_a_run_whose_answer_never_comes_trains_on_after_the_answer_timeout(tmp_path):
    """The channel's fault path: a report that waits for an answer (early discarding on) and gets none (a
    dispatcher busy or gone) costs the run at most CANDLE_MBO_ANSWER_TIMEOUT per report; the run ends with
    its own objective and its whole curve, and its output says why it waited."""
    from candle_mbo.pool.isolation import IsolatedRunner

    config = {"model": EMIT, "objective": "val_loss", "reduction": "last", "require_objective": True,
              "await_answers": True}
    runner = IsolatedRunner(config, log_path=str(tmp_path / "runner.log"), env={"CANDLE_MBO_ANSWER_TIMEOUT": "0.5"})
    try:
        runner.submit([{"run_id": "lonely", "params": {"emit": "report"}, "run_dir": str(tmp_path / "lonely")}])
        records, reports, deadline = [], [], time.monotonic() + 60
        while runner.busy and time.monotonic() < deadline:  # as a worker does: poll, forward the reports
            records += runner.poll(timeout=1.0)
            reports += runner.take_reports()
        [record] = records
    finally:
        runner.close()
    assert record["status"] == "ok" and record["objective"] == pytest.approx(0.14) and record["epochs"] == 3
    assert [r["epoch"] for r in reports] == [1, 2, 3] and all(r["run_id"] == "lonely" for r in reports)
    log = (tmp_path / "lonely" / "model.log").read_text()
    assert log.count("no answer to the report of epoch") == 3 and "training goes on" in log
