"""Early discarding (issue 19): the rung logic as a pure object, then pruned runs across real processes."""

import os

import pytest
import yaml

from candle_mbo.core.journal import Replay
from candle_mbo.core.store import load_journal
from candle_mbo.search import pruning
from candle_mbo.search.pruning import MEDIAN_MIN_OTHERS, Pruner
from conftest import (FIXTURES, ROOT, describe, kill_group, launch, mlrmbo, read_journal, read_records,  # noqa: F401
                      requires_mpi, write_upf)
from test_faults import wait_until

EMITTERS = os.path.join(FIXTURES, "emitters")
EMIT = os.path.join(EMITTERS, "emit.py")
SPACE = os.path.join(EMITTERS, "emit_space.R")
P1B1 = os.path.join(EMITTERS, "p1b1_torch.py")
LIB_MODEL = os.path.join(EMITTERS, "lib_model.py")
CANDLE_LIB_LIKE = os.path.join(FIXTURES, "candle_lib_like")


# -- the rung logic ----------------------------------------------------------------------------------------
def test_asha_rungs_are_r_times_eta_to_the_k_below_the_last_epoch():
    assert Pruner("asha", 1, 3).rungs(27) == [1, 3, 9]
    assert Pruner("asha", 2, 2).rungs(17) == [2, 4, 8, 16]
    assert Pruner("asha", 1, 3).rungs(1) == []  # a one-epoch run has no rung


def test_asha_the_first_run_at_a_rung_goes_on_and_a_worse_second_one_stops():
    pruner = Pruner("asha", 1, 3)
    assert pruner.report("a", 1, 0.5, planned=9) is None  # nothing to compare with: no waiting for a rung to fill
    decision = pruner.report("b", 1, 0.6, planned=9)
    assert decision["stop"] and decision["rung"] == 1 and decision["value"] == 0.6
    assert decision["cutoff"] == pytest.approx(0.5 + 0.1 / 3)
    assert "rung 1" in decision["reason"] and "best 1/3 of 2" in decision["reason"]


def test_asha_is_asynchronous_a_run_judged_early_is_not_recalled_by_later_better_runs():
    pruner = Pruner("asha", 1, 3)
    assert pruner.report("a", 1, 0.9, planned=9) is None
    for i, value in enumerate([0.1, 0.2, 0.3, 0.4]):
        pruner.report("late%d" % i, 1, value, planned=9)
    assert "a" not in pruner.stopped  # promoted when it arrived; it goes on
    assert pruner.report("a", 2, 0.8, planned=9) is None  # between rungs: no decision
    assert pruner.report("a", 3, 0.7, planned=9) is None  # first at rung 3


def test_asha_ties_go_on():
    pruner = Pruner("asha", 1, 3)
    for run_id in "abcd":
        assert pruner.report(run_id, 1, 0.5, planned=9) is None


def test_asha_best_third_at_a_full_rung():
    pruner = Pruner("asha", 1, 3)
    decisions = [pruner.report("r%d" % i, 1, value, planned=9) for i, value in enumerate([0.3, 0.1, 0.2, 0.6, 0.5, 0.4])]
    # each is judged against the values so far, itself included: 0.2 arrives third, behind 0.1 (the best
    # 1/3 of three is one run), and stops; so do the later ones, all behind the best third
    assert [d is None for d in decisions] == [True, True, False, False, False, False]
    assert decisions[-1]["cutoff"] == pytest.approx(0.1 + 0.1 * 5 / 3)


def test_a_run_reporting_every_other_epoch_is_judged_at_the_first_report_past_a_rung():
    pruner = Pruner("asha", 1, 3)
    pruner.report("a", 2, 0.4, planned=9)
    decision = pruner.report("b", 2, 0.6, planned=9)
    assert decision["rung"] == 1 and decision["epoch"] == 2


def test_maximize_and_non_finite_values():
    pruner = Pruner("asha", 1, 3, maximize=True)
    assert pruner.report("a", 1, 0.9, planned=9) is None
    assert pruner.report("b", 1, 0.5, planned=9)["value"] == 0.5  # smaller accuracy: worse
    assert pruner.report("c", 1, float("nan"), planned=9)["stop"]  # a diverged epoch is the worst value
    assert Pruner("asha").report("d", 1, "inf", planned=9) is None  # ... but the first at a rung goes on


def test_median_needs_enough_others_and_stops_below_the_median_after_min_epochs():
    pruner = Pruner("median", min_epochs=2)
    for i in range(MEDIAN_MIN_OTHERS):
        assert pruner.report("r%d" % i, 2, 0.3 + 0.1 * i, planned=10) is None
    assert pruner.report("late", 1, 9.0, planned=10) is None  # before min_epochs
    assert pruner.report("good", 2, 0.35, planned=10) is None
    decision = pruner.report("bad", 2, 0.5, planned=10)
    # the others at epoch 2: 0.3, 0.35, 0.4, 0.5 ("late" is at epoch 1): their median is 0.375
    assert decision["stop"] and decision["cutoff"] == pytest.approx(0.375) and "median" in decision["reason"]
    assert pruner.report("last", 10, 9.0, planned=10) is None  # the last epoch: the run is done anyway


def test_none_decides_nothing():
    assert Pruner("none").report("a", 1, 1e9, planned=3) is None


def _events(pruner_reports):
    return {run_id: [{"epoch": e, "metrics": {"val_loss": v}} for e, v in reports]
            for run_id, reports in pruner_reports.items()}


@pytest.mark.parametrize("rule", ["asha", "median"])
def test_a_pruner_rebuilt_from_the_journal_decides_as_the_uninterrupted_one(rule):
    # 7 runs reporting 7 epochs each, interleaved, values that cross
    stream = [("r%d" % (i % 7), 1 + i // 7, 1.0 / (1 + i // 7) + 0.05 * ((i * 37) % 11)) for i in range(49)]

    def feed(pruner, reports, journal=None):
        decisions = []
        for run_id, epoch, value in reports:
            if run_id in pruner.stopped:
                continue
            decisions.append((run_id, epoch, bool(pruner.report(run_id, epoch, value, planned=9))))
            if journal is not None:
                journal.setdefault(run_id, []).append({"epoch": epoch, "metrics": {"val_loss": value}})
        return decisions

    uninterrupted = feed(Pruner(rule, 1, 3), stream)
    before_kill, journal = Pruner(rule, 1, 3), {}
    first = feed(before_kill, stream[:20], journal)
    resumed = Pruner(rule, 1, 3)
    resumed.replay(journal, "val_loss", lambda run_id: 9)
    resumed.stopped.update(before_kill.stopped)  # the pruned records, as the journal holds them
    assert first + feed(resumed, stream[20:]) == uninterrupted


def test_the_surrogate_learns_a_pruned_runs_value_adjusted_by_how_the_others_went_on(monkeypatch):
    """What mlrMBO is told of a pruned run: its rung value plus the median later change of the runs that went
    on past that rung (fixed when the run is stopped, journaled in the decision); its own value while no run
    has gone on; with CANDLE_MBO_PRUNED_VALUE=last, the value it had when stopped."""
    pruner = Pruner("asha", 1, 3)
    assert pruner.report("a", 1, 0.5, planned=9) is None
    first = pruner.report("b", 1, 0.7, planned=9)  # nobody went on yet: its own value
    assert first["told"] == 0.7 and pruner.surrogate_value("b", 0.7) == 0.7
    for epoch, value in ((2, 0.4), (3, 0.3)):
        pruner.report("a", epoch, value, planned=9)  # a went on and improved by 0.2 after rung 1
    pruner.report("c", 1, 0.45, planned=9)
    stopped = pruner.report("d", 1, 0.9, planned=9)
    assert stopped["told"] == pytest.approx(0.7) and pruner.surrogate_value("d", 0.9) == pytest.approx(0.7)
    assert pruner.surrogate_value("a", 0.3) == 0.3  # not pruned: its own objective
    maximizing = Pruner("asha", 1, 3, maximize=True)
    maximizing.report("a", 1, 0.9, planned=9)
    maximizing.report("a", 2, 0.95, planned=9)
    assert maximizing.report("b", 1, 0.5, planned=9)["told"] == pytest.approx(0.55)  # the gain is a rise here
    monkeypatch.setattr(pruning, "SURROGATE_VALUE", "last")
    assert pruner.surrogate_value("d", 0.9) == 0.9


# -- across processes ----------------------------------------------------------------------------------------
def defaults_file(tmp_path, **values):
    text = open(os.path.join(EMITTERS, "emit_default_model.txt")).read()
    for key, value in values.items():
        lines = [line for line in text.splitlines() if not line.startswith(key + " ")]
        text = "\n".join(lines + ["%s = %r" % (key, value)]) + "\n"
    path = tmp_path / "defaults.txt"
    path.write_text(text)
    return str(path)


def hpo(tmp_path, extra=(), budget=12, np=3, model=EMIT, space=SPACE, **kw):
    args = ["--model", model, "--space", space, "--budget", budget, "--seed", 11, "--output",
            str(tmp_path / "out"), "--no-report"] + list(extra)
    return launch("candle_mbo", args, np=np, **kw)


def epoch_lines(folder, run_id):
    return [e for e in read_journal(folder) if e.get("event") == "epoch" and e["run_id"] == run_id]


@requires_mpi
@pytest.mark.slow
def test_asha_stops_runs_at_their_rung_through_report_and_reuses_the_runner(tmp_path, mlrmbo):
    extra = ["--default-model", defaults_file(tmp_path, epochs=9), "--prune", "asha"]
    result = hpo(tmp_path, extra=extra, budget=14, timeout=400)
    assert result.returncode == 0, describe(result)
    records = read_records(tmp_path / "out")
    pruned = [r for r in records if r["status"] == "pruned"]
    assert pruned and len(records) == 14, [r["status"] for r in records]
    for record in pruned:
        assert record["epochs"] in (1, 3) and record["pruned"]["rung"] == record["epochs"]
        assert record["objective_source"] == "epoch_report" and record["objective"] == record["pruned"]["value"]
        assert [e["epoch"] for e in epoch_lines(tmp_path / "out", record["run_id"])] == list(
            range(1, record["epochs"] + 1))  # it trained no epoch past its rung
    pids = {}
    for record in records:
        pids.setdefault(record["worker"], set()).add(open(tmp_path / "out" / "runs" / record["run_id"] / "pid.txt").read())
    assert all(len(p) == 1 for p in pids.values()), pids  # one resident runner per worker, pruned runs included
    assert "pruned  run-" in result.stdout and "(rung " in result.stdout  # each pruned run, its rung, its cutoff
    assert "epochs: " in result.stdout and "% saved" in result.stdout and "%d runs pruned" % len(pruned) in result.stdout
    outcome = yaml.safe_load((tmp_path / "out" / "experiment.yaml").read_text())["outcome"]["epochs"]
    assert outcome["pruned"] == len(pruned) and outcome["trained"] == sum(r["epochs"] for r in records)
    assert outcome["full"] == 9 * len(records) and 0 < outcome["saved_share"] < 1
    header = (tmp_path / "out" / "results.csv").read_text().splitlines()[0]
    assert ",epochs," in header


@requires_mpi
@pytest.mark.parametrize("np", [2, None])
def test_a_run_in_the_worker_itself_is_pruned_too(tmp_path, np, mlrmbo):
    extra = ["--default-model", defaults_file(tmp_path, epochs=9), "--prune", "asha", "--isolation", "none"]
    result = hpo(tmp_path, extra=extra, budget=8, np=np, timeout=400)
    assert result.returncode == 0, describe(result)
    pruned = [r for r in read_records(tmp_path / "out") if r["status"] == "pruned"]
    assert pruned and all(r["epochs"] == r["pruned"]["rung"] for r in pruned)


@requires_mpi
@pytest.mark.parametrize("api", ["pytorch", "keras"])
def test_candle_libs_classes_stop_a_pruned_run(tmp_path, api, mlrmbo):
    space = tmp_path / "space.R"
    space.write_text('param.set <- makeParamSet(makeNumericParam("x", lower = 0, upper = 1))\n')
    result = hpo(tmp_path, model=LIB_MODEL, space=str(space), budget=8,
                 extra=["--prune", "asha", "--default-model", str(_lib_defaults(tmp_path, api))],
                 extra_env={"PYTHONPATH": CANDLE_LIB_LIKE + os.pathsep + ROOT}, timeout=400)
    assert result.returncode == 0, describe(result)
    records = read_records(tmp_path / "out")
    pruned = [r for r in records if r["status"] == "pruned"]
    assert pruned, [(r["run_id"], r["status"], r["objective"]) for r in records]
    for record in pruned:
        trained = (tmp_path / "out" / "runs" / record["run_id"] / "epochs.log").read_text().splitlines()
        assert len(trained) == record["epochs"] == record["pruned"]["epoch"] in (1, 3)  # its rung


def _lib_defaults(tmp_path, api):
    path = tmp_path / "lib_defaults.txt"
    path.write_text("[Global_Params]\nmodel_name = 'lib_model'\napi = '%s'\nx = 0.5\nepochs = 6\nepoch_s = 0.0\n" % api)
    return path


@requires_mpi
@pytest.mark.slow
def test_a_p1b1_shaped_run_is_pruned_through_ckpt_epoch(tmp_path, mlrmbo):
    space = os.path.join(EMITTERS, "p1b1_space.R")
    result = hpo(tmp_path, model=P1B1, space=space, budget=12, extra=["--prune", "asha", "--eta", 2], timeout=400)
    assert result.returncode == 0, describe(result)
    records = read_records(tmp_path / "out")
    pruned = [r for r in records if r["status"] == "pruned"]
    assert pruned
    for record in pruned:
        log = (tmp_path / "out" / "runs" / record["run_id"] / "model.log").read_text()
        assert log.count("====> Epoch:") == record["epochs"] == record["pruned"]["rung"]


@requires_mpi
@pytest.mark.slow
def test_the_epoch_budget_stops_the_search(tmp_path, mlrmbo):
    result = hpo(tmp_path, budget=40, extra=["--default-model", defaults_file(tmp_path, epochs=5), "--epoch-budget", 22],
                 timeout=400)
    assert result.returncode == 0, describe(result)
    records = read_records(tmp_path / "out")
    trained = sum(r["epochs"] for r in records)
    assert len(records) < 40 and trained >= 22
    assert trained < 22 + 2 * 5  # at most the two running runs' epochs past the budget
    assert "--epoch-budget 22 reached" in result.stdout


@requires_mpi
def test_upf_ignores_prune_with_a_clear_message(tmp_path):
    path = write_upf(tmp_path / "runs.upf", [{"id": "a", "epochs": 4}, {"id": "b", "x": 0.9, "epochs": 4}])
    result = launch("candle_mbo.upf", ["--model", EMIT, "--upf", path, "--output", tmp_path / "out", "--no-report",
                                       "--prune", "asha"], np=2, timeout=240)
    assert result.returncode == 0, describe(result)
    assert "--prune ignored: a UPF file is a fixed list of runs, not a search" in result.stdout
    assert {r["status"] for r in read_records(tmp_path / "out")} == {"ok"}


@requires_mpi
@pytest.mark.slow
def test_a_killed_job_resumed_with_asha_keeps_every_rungs_values_and_prunes_the_same_way(tmp_path, mlrmbo):
    extra = ["--default-model", defaults_file(tmp_path, epochs=9, epoch_s=0.15), "--prune", "asha"]
    process = hpo(tmp_path, extra=extra, budget=16, wait=False)
    journal = tmp_path / "out" / "results.jsonl"
    assert wait_until(lambda: journal.exists() and sum(1 for r in read_records(tmp_path / "out")) >= 5
                      and any(r["status"] == "pruned" for r in read_records(tmp_path / "out")), 300)
    kill_group(process)
    process.communicate()
    before = {r["run_id"] for r in read_records(tmp_path / "out")}
    again = launch("candle_mbo", ["--output", tmp_path / "out", "--resume", "--no-report"], np=3, timeout=400)
    assert again.returncode == 0, describe(again)
    records = read_records(tmp_path / "out")
    assert len(records) == 16
    # Every decision, before and after the kill, is what one pruner fed the whole journal in order makes:
    # the resumed job saw the rung values recorded before the kill.
    pruner = Pruner("asha", 1, 3)
    stopped = {}
    for entry in load_journal(str(journal)):
        if entry.get("event") == "epoch" and entry["run_id"] not in stopped:
            decision = pruner.report(entry["run_id"], entry["epoch"], entry["metrics"].get("val_loss"), planned=9)
            if decision:
                stopped[entry["run_id"]] = decision
    pruned = {r["run_id"]: r for r in records if r["status"] == "pruned"}
    assert set(pruned) == set(stopped)
    assert any(run_id not in before for run_id in pruned) or len(pruned) == len(stopped)
    for run_id, record in pruned.items():
        assert record["pruned"]["cutoff"] == pytest.approx(stopped[run_id]["cutoff"])
    replay = Replay(load_journal(str(journal)))
    assert all(run_id in replay.epochs for run_id in pruned)


@requires_mpi
@pytest.mark.slow
def test_pruning_never_sends_the_search_back_to_the_region_it_pruned(tmp_path, mlrmbo):
    extra = ["--default-model", defaults_file(tmp_path, epochs=9), "--prune", "asha", "--mode", "sync",
             "--propose-points", 2, "--design-size", 6]
    result = hpo(tmp_path, extra=extra, budget=24, timeout=500)
    assert result.returncode == 0, describe(result)
    records = read_records(tmp_path / "out")
    pruned_x = [r["params"]["x"] for r in records if r["status"] == "pruned"]
    assert pruned_x
    later = [r for r in records if r.get("prop_type") and not str(r["prop_type"]).startswith(("initdesign", "random"))]
    bad = [r["params"]["x"] for r in later[len(later) // 2:] if abs(r["params"]["x"] - 0.3) > 0.35]
    assert len(bad) <= 1, (bad, pruned_x)
    best = min(r["objective"] for r in records if r["status"] == "ok")
    assert best < 0.11  # and the search still found the valley at x = 0.3 (0.1 at best)
