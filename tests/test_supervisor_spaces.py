"""Supervisor-shaped spaces through the whole HPO workflow, in both modes (issue 13, items 1-3 and 5).

Pinned parameters (lower == upper, one level), a discrete vector, a list parameter with numeric levels,
a rounding trafo; runs that diverge (the largest float) and runs that fail; criteria in batches.
"""

import json
import os

import pytest

from conftest import FIXTURES, describe, launch, read_records, requires_mpi

pytestmark = [pytest.mark.r, pytest.mark.mpi, pytest.mark.usefixtures("mlrmbo"), requires_mpi]


def hpo(out, model, space, *extra):
    args = ["--model", os.path.join(FIXTURES, model), "--space", os.path.join(FIXTURES, space), "--output", out,
            "--no-report"]
    return launch("candle_mbo", args + [str(a) for a in extra], np=3, timeout=300)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_uno_shaped_space_with_diverged_and_failed_runs(tmp_path, mode):
    out = tmp_path / "out"
    result = hpo(out, "uno_quick.py", "uno_quick_space.R", "--mode", mode, "--budget", 16, "--design-size", 8,
                 "--seed", 3)
    assert result.returncode == 0, describe(result)
    records = read_records(out)
    assert len(records) == 16
    statuses = [r["status"] for r in records]
    assert "failed" in statuses and "ok" in statuses
    assert any(r["status"] == "ok" and r["objective"] > 1e300 for r in records)  # diverged, yet a result
    assert "random_fallback" not in {r["prop_type"] for r in records}, result.stdout
    for record in records:
        received = json.loads((out / "runs" / record["run_id"] / "received.json").read_text())
        values, types = received["values"], received["types"]
        assert types == {"epochs": "int", "cell_features": "str", "learning_rate": "float", "batch_size": "int",
                         "dropout": "float", "activations": "list", "dense": "list", "warmup": "float"}
        assert values["epochs"] == 3 and values["cell_features"] == "expression" and values["warmup"] == 0.1
        assert values["dense"] in ([64, 32], [128, 64, 32])
        assert len(values["activations"]) == 2 and set(values["activations"]) <= {"relu", "tanh"}
    best = json.loads((out / "best.json").read_text())
    assert best["objective"] < 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_pinned_epochs_keep_kriging_proposing(tmp_path, mode):
    out = tmp_path / "out"
    result = hpo(out, "branin.py", "pinned_space.R", "--mode", mode, "--budget", 12, "--design-size", 6,
                 "--seed", 4, "--profile", "mlrmbo")
    assert result.returncode == 0, describe(result)
    records = read_records(out)
    proposed = [r for r in records if r["iteration"] > 0]
    assert len(records) == 12 and proposed
    assert {r["prop_type"] for r in proposed} <= {"infill_cb", "random"}, result.stdout
    assert "infill_cb" in {r["prop_type"] for r in proposed} and "surrogate failed" not in result.stdout
    assert all(r["params"]["epochs"] == 4 for r in records)


def test_adacb_in_sync_batches(tmp_path):
    out = tmp_path / "out"
    result = hpo(out, "branin.py", "pinned_space.R", "--mode", "sync", "--crit", "adacb", "--budget", 12,
                 "--design-size", 6, "--seed", 5)
    assert result.returncode == 0, describe(result)
    proposed = [r for r in read_records(out) if r["iteration"] > 0]
    assert len(proposed) == 6 and {r["prop_type"] for r in proposed} == {"infill_adacb"}


def test_a_criterion_that_cannot_batch_exits_2_before_anything_runs(tmp_path):
    out = tmp_path / "out"
    result = hpo(out, "branin.py", "pinned_space.R", "--mode", "sync", "--crit", "eqi", "--budget", 12)
    assert result.returncode == 2, describe(result)
    assert "error: --crit eqi cannot choose several points at once" in result.stderr + result.stdout
    assert not (out / "results.jsonl").exists() or not (out / "results.jsonl").read_text()


def test_sync_proposals_with_constants_and_vectors_equal_plain_mbo(tmp_path):
    """The reference check on the space as searched (constants out, the discrete vector split)."""
    import subprocess

    from conftest import ROOT

    out = tmp_path / "out"
    result = hpo(out, "uno_quick.py", "uno_quick_space.R", "--mode", "sync", "--budget", 14, "--design-size", 8,
                 "--propose-points", 2, "--seed", 11, "--default-model",
                 os.path.join(FIXTURES, "uno_quick_healthy.txt"))
    assert result.returncode == 0, describe(result)
    check = subprocess.run(["Rscript", os.path.join(ROOT, "R", "mbo_reference.R"), str(out)], capture_output=True,
                           text=True, timeout=600)
    report = json.loads(check.stdout.strip().splitlines()[-1])
    assert check.returncode == 0 and report["equal"] is True and report["points"] == 6, (report, check.stderr[-2000:])
