"""Parameter importance (report/importance.py): which parameters matter, from the finished runs alone."""

import os
import random

import pytest

from candle_mbo.reporting import importance as imp
from candle_mbo.reporting import progress
from conftest import FIXTURES, describe, launch, read_records, requires_mpi


def runs(n, seed, objective, kinds=("a", "b", "c")):
    """``n`` ok runs with ``strong`` and ``noise`` uniform in 0..1 and ``kind`` one of ``kinds``."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        params = {"strong": rng.uniform(0, 1), "kind": rng.choice(kinds), "noise": rng.uniform(0, 1)}
        records.append({"run_id": "r%d" % i, "status": "ok", "objective": objective(params, rng), "params": params})
    return records


def ranking(result):
    return [name for name, _ in result.shares]


def dominant(params, rng):
    return 10 * (params["strong"] - 0.45) ** 2 + {"a": 0.0, "b": 0.3, "c": 0.6}[params["kind"]] + rng.gauss(0, 0.02)


@pytest.mark.parametrize("n", [30, 60, 200])
def test_the_dominant_parameter_comes_first_and_the_noise_last(n):
    for seed in range(10):
        result = imp.importance(runs(n, seed, dominant))
        shares = dict(result.shares)
        assert ranking(result) == ["strong", "kind", "noise"], (n, seed, result)
        assert shares["strong"] > 0.4 and shares["noise"] < 0.1, (n, seed, result)
        assert 0 <= result.explained <= 1


def test_an_optimum_in_the_middle_of_the_range_still_counts():
    # a U-shaped effect: the two halves of the range have the same mean, so two bins would see nothing
    result = imp.importance(runs(40, 1, lambda p, rng: (p["strong"] - 0.5) ** 2))
    assert ranking(result)[0] == "strong" and dict(result.shares)["strong"] > 0.5


def test_a_diverged_run_does_not_decide_the_answer():
    records = runs(40, 2, dominant)
    records[0]["objective"] = 1e30  # the ranks, not the values, are explained
    records[1]["objective"] = 5e29
    assert ranking(imp.importance(records))[0] == "strong"


def test_too_few_runs_are_said_not_ranked():
    result = imp.importance(runs(8, 3, dominant))
    assert result.shares == [] and result.runs == 8 and result.needed > 8
    line = imp.describe(result, "val_loss")
    assert line.startswith("importance: too few runs to tell which parameters matter (8 ok runs; ")


def test_failed_runs_constants_and_inactive_parameters():
    records = runs(40, 4, dominant)
    for record in records:
        record["params"]["epochs"] = 5  # a constant: nothing to compare
        if record["params"]["kind"] == "c":
            record["params"]["momentum"] = 0.9  # set only in some runs: "not set" is a level of its own
    records.append({"run_id": "x", "status": "failed", "objective": None, "params": {"strong": 0.9}})
    result = imp.importance(records)
    assert result.runs == 40 and "epochs" not in dict(result.shares) and "momentum" in dict(result.shares)
    assert ranking(result)[0] == "strong"
    assert imp.importance([dict(r, params={"epochs": 5}) for r in records]) is None  # nothing varies
    assert imp.describe(None) is None


def test_a_parameter_with_list_values_is_a_set_of_levels():
    records = runs(60, 5, lambda p, rng: 0.1 * p["noise"] + (0 if p["kind"] == "a" else 1))
    for record in records:
        record["params"]["kind"] = [64, 32] if record["params"]["kind"] == "a" else [128]
    assert ranking(imp.importance(records))[0] == "kind"


def test_the_summary_names_the_importance():
    lines = progress.summary(runs(60, 6, dominant), "val_loss", False, None, None, 2, "/exp")
    line = next(line for line in lines if line.startswith("importance"))
    assert line.startswith("importance (share of the variation in val_loss ranks that each parameter explains, "
                           "60 ok runs): strong ")
    assert line.index("strong") < line.index("kind") < line.index("noise")


@pytest.mark.slow
@requires_mpi
def test_a_real_search_ranks_the_dominant_parameter_first_and_the_noise_last(tmp_path, mlrmbo):
    """mlrMBO's own proposals (clustered near the optimum), through the whole workflow and its report."""
    out = tmp_path / "out"
    result = launch("candle_mbo", ["--model", os.path.join(FIXTURES, "dominant.py"), "--space",
                                   os.path.join(FIXTURES, "dominant_space.R"), "--budget", 30, "--design-size", 10,
                                   "--mode", "sync", "--propose-points", 2, "--seed", 3, "--output", out],
                    np=3, timeout=600)
    assert result.returncode == 0, describe(result)
    line = next(line for line in result.stdout.splitlines() if " importance (" in line)
    assert line.index("strong") < line.index("kind") < line.index("noise"), line
    found = imp.importance(read_records(out))
    assert ranking(found) == ["strong", "kind", "noise"] and dict(found.shares)["noise"] < 0.1, found
    page = (out / "report.html").read_text()
    assert 'alt="importance.png"' in page and "strong" in page
