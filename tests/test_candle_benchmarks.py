"""The fixture corpus (benchmarks shaped like NT3, P1B1, P3B1, Uno, Combo, UnoMT) runs unchanged under the
UPF and HPO workflows, with values written the way Supervisor's UPF and space files write them."""

import json
import os

import pytest

from conftest import FIXTURES, describe, launch, mlrmbo, read_records, write_upf  # noqa: F401 - fixture

CORPUS = os.path.join(FIXTURES, "benchmarks")

UPF_LINES = {
    "nt3": [{"id": "a", "epochs": 2, "conv": "[16, 5, 1]", "dense": "50 10"}, {"id": "b", "pool": 4, "dropout": 0}],
    "p1b1": [{"id": "a", "dense": "[100,20]", "learning_rate": 0.003, "model": "ae"}, {"id": "b", "latent_dim": 2.0}],
    "p3b1": [{"id": "a", "shared_nnet_spec": "[300, 200]", "learning_rate": 0.01},
             {"id": "b", "ind_nnet_spec": "100, 50:100:100", "n_fold": 2}],
    "uno": [{"id": "a", "dense": "[1000, 500]", "cell_types": "BRCA", "learning_rate": 0.002},
            {"id": "b", "dense_feature_layers": 100, "epochs": 2.0}],
    "combo": [{"id": "a", "exclude_cells": "NCI60.A549 NCI60.HOP-62", "cell_features": "expression"},
              {"id": "b", "learning_rate": 0.001, "cv_partition": "disjoint"}],
    "unomt": [{"id": "a", "val_sources": "CCLE", "resp_lr": 0.001, "gene_layer_dim": 256},
              {"id": "b", "train_sources": "CCLE", "epochs": 2}],
}

EXPECTED_PARAMS = {  # what run() received for line "a" (params.json), with its types
    "nt3": {"epochs": 2, "conv": [16, 5, 1], "dense": [50, 10], "pool": [1, 5]},
    "p1b1": {"dense": [100, 20], "learning_rate": 0.003, "model": "ae", "latent_dim": 3},
    "p3b1": {"shared_nnet_spec": [300, 200], "feature_names": "Primary site:Tumor laterality:Histological grade",
             "ind_nnet_spec": [[300, 150], [300, 150], [200, 100]]},
    "uno": {"dense": [1000, 500], "cell_types": ["BRCA"], "learning_rate": 0.002, "train_sources": ["GDSC", "CTRP"]},
    "combo": {"exclude_cells": ["NCI60.A549", "NCI60.HOP-62"], "cell_features": ["expression"]},
    "unomt": {"val_sources": ["CCLE"], "resp_lr": 0.001, "gene_layer_dim": 256, "train_sources": "gCSI"},
}


@pytest.mark.parametrize("name", sorted(UPF_LINES))
def test_corpus_under_upf(name, tmp_path):
    upf = write_upf(tmp_path / "runs.upf", UPF_LINES[name])
    out = tmp_path / "out"
    result = launch("candle_mbo.upf", ["--model", os.path.join(CORPUS, name, "%s_baseline.py" % name), "--upf", upf,
                                       "--output", out, "--no-report"], timeout=240,
                    extra_env={"CANDLE_DATA_DIR": str(tmp_path / "data")})
    assert result.returncode == 0, describe(result)
    records = {r["run_id"]: r for r in read_records(out)}
    assert {k: r["status"] for k, r in records.items()} == {"a": "ok", "b": "ok"}, records
    params = json.loads((out / "runs" / "a" / "params.json").read_text())
    for key, value in EXPECTED_PARAMS[name].items():
        assert params[key] == value and type(params[key]) is type(value), (key, params[key])
    assert params["data_dir"] == str(tmp_path / "data" / name / "Data")


@pytest.mark.r
def test_corpus_under_hpo(tmp_path, mlrmbo):
    out = tmp_path / "out"
    result = launch("candle_mbo", ["--model", os.path.join(CORPUS, "uno", "uno_baseline.py"), "--space",
                                   os.path.join(CORPUS, "uno", "space.R"), "--budget", 5, "--design-size", 4, "--seed",
                                   2, "--output", out, "--no-report"], timeout=300,
                    extra_env={"CANDLE_DATA_DIR": str(tmp_path / "data")})
    assert result.returncode == 0, describe(result)
    records = read_records(out)
    assert len(records) == 5 and all(r["status"] == "ok" for r in records), records
    for record in records:
        params = json.loads((out / "runs" / record["run_id"] / "params.json").read_text())
        assert params["dense"] in ([500, 250, 125], [1000, 500], [600, 300]) and isinstance(params["epochs"], int)
