"""Parameters parsed exactly as candle_lib parses them, and run values coerced as CANDLE hands them over.

The expected dictionaries were derived by reading candle_lib (candle/parsing_utils.py, benchmark_def.py:
``finalize_parameters``, ``parse_from_dictlist``, ``format_benchmark_config_arguments``,
``args_overwrite_config``; file_utils.py: ``directory_tree_from_parameters``), not by running it:

- every definition with a ``default`` is in the dict (its default, or the file's value);
- a file value keeps its Python type; only for a definition with a default is a *string* value passed
  through the definition's type (argparse converts string defaults); list-of-lists strings are split;
- rng_seed 7102, timeout -1, data_type numpy.float32 when nothing set them;
- data_dir = $CANDLE_DATA_DIR/<model_name>/Data,
  output_dir = $CANDLE_DATA_DIR/<model_name>/<output_dir or Output>/<experiment_id>/<run_id>.

Values are compared with their types (``dropout = 0`` stays the int 0, ``-1`` stays an int for a float).
"""

import argparse
import os
import sys
import textwrap
import warnings

import numpy
import pytest

import candle
from candle_mbo.candle_api._benchmark import ParameterError, coerce_value, run_context

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "fixtures", "benchmarks")

COMMON = {  # candle_lib's common definitions that have a default
    "train_bool": True, "profiling": False, "experiment_id": "EXP000", "run_id": "RUN000", "verbose": False,
    "logfile": None, "shuffle": False, "ckpt_restart_mode": "auto", "ckpt_checksum": False, "ckpt_skip_epochs": 0,
    "ckpt_directory": None, "ckpt_save_best": True, "ckpt_save_best_metric": "val_loss",
    "ckpt_save_weights_only": False, "ckpt_save_interval": 0, "ckpt_keep_mode": "linear", "ckpt_keep_limit": 5,
    "data_type": numpy.float32, "rng_seed": 7102, "timeout": -1,
}

EXPECTED = {
    "nt3": dict(
        COMMON, classes=2, data_url="http://example.invalid/candle/nt3/", train_data="nt_train_small.csv",
        test_data="nt_test_small.csv", model_name="nt3", conv=[32, 10, 1, 32, 5, 1], dense=[100, 10],
        activation="relu", out_activation="softmax", loss="categorical_crossentropy", optimizer="sgd",
        metrics="accuracy", epochs=3, batch_size=16, learning_rate=0.01, dropout=0.2, pool=[1, 5], add_noise=True,
        label_noise=0.25, noise_correlated=False, noise_cluster=False, noise_column=False, noise_type="gaussian",
        feature_col=[3], feature_threshold=0.05, noise_gaussian=False, std_dev=0.5, timeout=1200,
        ckpt_restart_mode="off", ckpt_save_interval=0, ckpt_checksum=True,
        data_dir="{D}/nt3/Data", output_dir="{D}/nt3/EXP000/RUN000"),
    "p1b1": dict(
        COMMON, model="vae", use_landmark_genes=False, residual=False, reduce_lr=False, warmup_lr=False, cp=False,
        tb=False, alpha_dropout=False, latent_dim=3, data_url="http://example.invalid/candle/p1b1/",
        train_data="P1B1.small.train.csv", test_data="P1B1.small.test.csv", model_name="p1b1", dense=[400, 60],
        batch_size=50, epochs=4, activation="sigmoid", loss="mse", optimizer="adam", dropout=0, learning_rate=None,
        base_lr=None, scaling="minmax", val_split=0.2, epsilon_std=1.0, rng_seed=2017,
        initialization="glorot_uniform", feature_subsample=0, batch_normalization=False, save_path="save/",
        timeout=1800, data_dir="{D}/p1b1/Data", output_dir="{D}/p1b1/Output/EXP000/RUN000"),
    "p3b1": dict(
        COMMON, train_features="data/task0_train.csv;data/task1_train.csv",
        train_truths="data/task0_label.csv;data/task1_label.csv", output_files="result0.csv;result1.csv",
        case="CenterZ", fig=False, data_url="ftp://example.invalid/candle/p3b1/", train_data="P3B1_small.tar.gz",
        model_name="p3b1", learning_rate=0.02, batch_size=8, epochs=2, dropout=0.1, activation="relu",
        out_activation="softmax", loss="categorical_crossentropy", optimizer="sgd", metrics="accuracy", n_fold=1,
        shared_nnet_spec=[600, 300], ind_nnet_spec=[[300, 150], [300, 150], [200, 100]],
        feature_names="Primary site:Tumor laterality:Histological grade", timeout=600, scaling="none",
        initialization="glorot_uniform", shuffle=True,
        data_dir="{D}/p3b1/Data", output_dir="{D}/p3b1/EXP000/RUN000"),
    "uno": dict(
        COMMON, agg_dose=None, by_cell=None, cell_subset_path="", drug_median_response_min=-1,
        drug_median_response_max=1, no_feature_source=False, dense_cell_feature_layers=None,
        use_landmark_genes=False, preprocess_rnaseq="none", residual=False, reduce_lr=False, warmup_lr=False,
        base_lr=None, partition_by=None, no_gen=False, cache=None, growth_bins=0, model_name="uno",
        train_sources=["GDSC", "CTRP"], test_sources=["train"], cell_types=None, cell_features=["rnaseq"],
        drug_features=["descriptors", "fingerprints"], dense=[500, 250, 125], dense_feature_layers=[500, 250],
        activation="relu", loss="mse", optimizer="adam", scaling="std", dropout=0, epochs=3, batch_size=32,
        val_split=0.2, cv=1, max_val_loss=1.0, learning_rate=None, batch_normalization=False, feature_subsample=0,
        rng_seed=2018, save_path="save/uno", gpus=[0], timeout=3600,
        data_dir="{D}/uno/Data", output_dir="{D}/uno/Output/EXP000/RUN000"),
    "combo": dict(
        COMMON, use_landmark_genes=True, use_combo_score=False, preprocess_rnaseq="none", response_url=None,
        residual=False, reduce_lr=False, warmup_lr=False, cp=True, gen=False, exclude_cells=[], exclude_drugs=[],
        model_name="combo", cell_features=["expression"], drug_features=["descriptors"], dense=[300, 300],
        dense_feature_layers=[300, 300], activation="relu", loss="mse", optimizer="adam", scaling="std", dropout=0,
        epochs=2, batch_size=64, val_split=0.2, cv=1, cv_partition="overlapping", max_val_loss=1.0,
        learning_rate=0.0005, base_lr=None, batch_normalization=False, feature_subsample=0, rng_seed=2017,
        save_path="save/combo", timeout=3600,
        data_dir="{D}/combo/Data", output_dir="{D}/combo/Output/EXP000/RUN000"),
    "unomt": dict(
        COMMON, train_sources="gCSI", grth_scaling="none", dscptr_scaling="std", qed_scaling="none",
        dscptr_nan_threshold=0.0, drug_feature_usage="both", disjoint_drugs=False, disjoint_cells=True,
        gene_layer_dim=512, gene_latent_dim=128, gene_num_layers=2, autoencoder_init=True, resp_layer_dim=256,
        resp_activation="none", resp_opt="SGD", resp_lr=1e-4, resp_val_start_epoch=2, l2_regularization=1e-5,
        lr_decay_factor=0.98, trn_batch_size=32, val_batch_size=256, max_num_batches=100, multi_gpu=False,
        no_cuda=False, model_name="unomt", val_sources=["gCSI", "CCLE"], val_split=0.2, dropout=0.1, epochs=3,
        rng_seed=0, save_path="save/unomt", timeout=3600,
        data_dir="{D}/unomt/Data", output_dir="{D}/unomt/Output/EXP000/RUN000"),
}


def typed(value):
    """A value with the types of everything in it, so that 0 != 0.0 != False and [1] != [1.0]."""
    if isinstance(value, (list, tuple)):
        return type(value).__name__, [typed(v) for v in value]
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    return type(value).__name__, value


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    folder = tmp_path / "candle_data"
    monkeypatch.setenv("CANDLE_DATA_DIR", str(folder))
    monkeypatch.delenv("CANDLE_OUTPUT_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["benchmark"])
    return str(folder)


def load_baseline(name, monkeypatch):
    folder = os.path.join(CORPUS, name)
    monkeypatch.syspath_prepend(folder)
    for module in ("%s_bench" % name, "%s_baseline" % name):
        sys.modules.pop(module, None)
    import importlib

    return importlib.import_module("%s_baseline" % name)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_parses_as_candle_lib_does(name, data_dir, monkeypatch):
    baseline = load_baseline(name, monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # keys the benchmark does not define (base_lr, cv)
        params = baseline.initialize_parameters()
    expected = {k: (v.format(D=data_dir) if isinstance(v, str) and "{D}" in v else v)
                for k, v in EXPECTED[name].items()}
    assert typed(params) == typed(expected)
    assert os.path.isdir(params["output_dir"]) and os.path.isdir(params["data_dir"])


COMMON_FILE = """
[Global_Params]
model_name = 'common'
config_file = 'ignored-by-the-parser.txt'
data_type = 'f64'
rng_seed = 5
train_bool = 'no'
eval_bool = 'yes'
timeout = '30'
gpus = 0
save_path = 'snapshots'
home_dir = '/home/x'
train_data = 'train.csv'
val_data = 'val.csv'
test_data = 'test.csv'
output_dir = 'outs'
data_url = 'http://example.invalid/'
experiment_id = 'E7'
run_id = 'R1'
scaling = 'minmax'
shuffle = 'true'
feature_subsample = 10
dense = '64 32'
conv = [1, 2, 3]
locally_connected = False
activation = 'tanh'
out_activation = 'sigmoid'
lstm_size = [8]
recurrent_dropout = 0.1
dropout = 0
pool = 3
batch_normalization = 'false'
loss = 'mse'
optimizer = 'rmsprop'
metrics = 'mae'
epochs = 4
batch_size = 2.0
learning_rate = 1
early_stop = True
momentum = 0.5
initialization = 'he_normal'
val_split = 0.25
train_steps = 0
val_steps = 0
test_steps = 0
train_samples = 100
val_samples = 20
clr_flag = False
clr_mode = 'trng1'
clr_base_lr = 0.0001
clr_max_lr = 0.01
clr_gamma = 0.99

[Checkpointing]
ckpt_restart_mode = 'off'
ckpt_checksum = 'TRUE'
ckpt_skip_epochs = 1
ckpt_directory = 'ck'
ckpt_save_best = 0
ckpt_save_best_metric = 'loss'
ckpt_save_weights_only = 'f'
ckpt_save_interval = 2
ckpt_keep_mode = 'linear'
ckpt_keep_limit = '3'
"""

# What candle_lib gives for COMMON_FILE: a string becomes the declared type only where the definition has
# a default (train_bool, shuffle, the ckpt_* family); elsewhere values stay as written ('yes', '30',
# '64 32', 2.0, 1). config_file is an ordinary value once read from a file.
COMMON_EXPECTED = {
    "model_name": "common", "config_file": "ignored-by-the-parser.txt", "data_type": numpy.float64, "rng_seed": 5,
    "train_bool": False, "eval_bool": "yes", "timeout": "30", "gpus": 0, "save_path": "snapshots",
    "home_dir": "/home/x", "train_data": "train.csv", "val_data": "val.csv", "test_data": "test.csv",
    "data_url": "http://example.invalid/", "experiment_id": "E7", "run_id": "R1", "scaling": "minmax",
    "shuffle": True, "feature_subsample": 10, "dense": "64 32", "conv": [1, 2, 3], "locally_connected": False,
    "activation": "tanh", "out_activation": "sigmoid", "lstm_size": [8], "recurrent_dropout": 0.1, "dropout": 0,
    "pool": 3, "batch_normalization": "false", "loss": "mse", "optimizer": "rmsprop", "metrics": "mae",
    "epochs": 4, "batch_size": 2.0, "learning_rate": 1, "early_stop": True, "momentum": 0.5,
    "initialization": "he_normal", "val_split": 0.25, "train_steps": 0, "val_steps": 0, "test_steps": 0,
    "train_samples": 100, "val_samples": 20, "clr_flag": False, "clr_mode": "trng1", "clr_base_lr": 0.0001,
    "clr_max_lr": 0.01, "clr_gamma": 0.99, "ckpt_restart_mode": "off", "ckpt_checksum": True,
    "ckpt_skip_epochs": 1, "ckpt_directory": "ck", "ckpt_save_best": 0, "ckpt_save_best_metric": "loss",
    "ckpt_save_weights_only": False, "ckpt_save_interval": 2, "ckpt_keep_mode": "linear", "ckpt_keep_limit": 3,
    "profiling": False, "verbose": False, "logfile": None,
    "data_dir": "{D}/common/Data", "output_dir": "{D}/common/outs/E7/R1",
}


def test_every_common_parameter_parses_as_candle_lib_does(data_dir, tmp_path):
    (tmp_path / "common_default_model.txt").write_text(COMMON_FILE)
    params = candle.finalize_parameters(candle.Benchmark(str(tmp_path), "common_default_model.txt", "keras",
                                                         prog="common"))
    expected = {k: (v.format(D=data_dir) if isinstance(v, str) and "{D}" in v else v)
                for k, v in COMMON_EXPECTED.items()}
    assert typed(params) == typed(expected)
    in_file = {line.split("=")[0].strip() for line in COMMON_FILE.splitlines() if "=" in line}
    names = {d["name"] for d in candle.COMMON_DEFINITIONS}
    assert names - in_file == {"profiling", "verbose", "logfile", "jupyter"}  # see the test below for the first 3


def test_common_definitions_match_candle_lib():
    """Names, types, short flags, defaults and choices of candle_lib's common parameters (rng_seed: int here,
    float there, see _common_params)."""
    by_name = {d["name"]: d for d in candle.COMMON_DEFINITIONS}
    flags = {n: d.get("abv") for n, d in by_name.items() if d.get("abv")}
    assert flags == {"data_type": "d", "rng_seed": "r", "profiling": "p", "save_path": "s", "verbose": "v",
                     "logfile": "l", "activation": "a", "epochs": "e", "batch_size": "z", "learning_rate": "lr",
                     "jupyter": "f"}
    defaults = {n: d["default"] for n, d in by_name.items() if "default" in d}
    assert defaults == {k: v for k, v in COMMON.items() if k not in ("data_type", "rng_seed", "timeout")}
    lists = {n for n, d in by_name.items() if d.get("nargs") == "+"}
    assert lists == {"gpus", "dense", "conv", "lstm_size"}
    assert by_name["ckpt_restart_mode"]["choices"] == ["off", "auto", "required"]
    assert by_name["scaling"]["choices"] == ["minabs", "minmax", "std", "none"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_runs_with_its_defaults(name, data_dir, monkeypatch):
    baseline = load_baseline(name, monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        params = baseline.initialize_parameters()
    history = baseline.run(params)
    assert len(history["val_loss"]) == params["epochs"]


# -- where candle_lib's result is an accident of argparse, and this layer differs on purpose -----------------
def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


def test_file_values_candle_lib_drops_are_honoured(data_dir, tmp_path):
    """candle_lib keeps the common default of verbose/profiling/logfile (flags with a short form) and the
    definition default of an ``action`` definition even when the defaults file sets them."""
    write(tmp_path / "d.txt", """
        [Global_Params]
        model_name = 'q'
        verbose = True
        profiling = True
        logfile = 'run.log'
        stored = 'from the file'
        """)
    params = candle.finalize_parameters(candle.Benchmark(str(tmp_path), "d.txt", "keras", additional_definitions=[
        {"name": "stored", "action": "store", "default": "from the definition"}]))
    assert (params["verbose"], params["profiling"], params["logfile"]) == (True, True, "run.log")
    assert params["stored"] == "from the file"


def test_text_that_is_not_a_literal_is_kept_or_typed(data_dir, tmp_path):
    """candle_lib evals values (and fails on plain words); here nothing is evaluated, text is kept, and a
    definition's type converts it."""
    marker = tmp_path / "pwned"
    write(tmp_path / "d.txt", """
        [Global_Params]
        model_name = 'q'
        attack = __import__('os').system('touch %s')
        activation = relu
        epochs = 7
        flag = true
        sizes = 64 32
        """ % marker)
    params = candle.finalize_parameters(candle.Benchmark(str(tmp_path), "d.txt", "keras", additional_definitions=[
        {"name": "flag", "type": candle.str2bool}, {"name": "sizes", "type": int, "nargs": "+"}]))
    assert not marker.exists()
    assert params["attack"].startswith("__import__")
    assert (params["activation"], params["epochs"], params["flag"], params["sizes"]) == ("relu", 7, True, [64, 32])


def test_bad_text_for_a_typed_parameter_names_file_line_and_value(data_dir, tmp_path):
    write(tmp_path / "d.txt", "[Global_Params]\nmodel_name = 'q'\n\nepochs = ten\n")
    with pytest.raises(ParameterError) as info:
        candle.finalize_parameters(candle.Benchmark(str(tmp_path), "d.txt", "keras"))
    assert "d.txt:4:" in str(info.value) and "epochs" in str(info.value) and "ten" in str(info.value)


def test_untyped_definitions_are_accepted_on_the_command_line(data_dir, tmp_path, monkeypatch):
    write(tmp_path / "d.txt", "[Global_Params]\nmodel_name = 'q'\ncell_types = None\n")
    monkeypatch.setattr(sys, "argv", ["b", "--cell_types", "BRCA", "LUAD", "--agg", "x", "--sizes", "1", "2"])
    params = candle.finalize_parameters(candle.Benchmark(str(tmp_path), "d.txt", "keras", additional_definitions=[
        {"name": "cell_types", "nargs": "+"}, {"name": "agg"}, {"name": "sizes", "nargs": "+", "type": int,
                                                                "default": [5]}]))
    assert params["cell_types"] == ["BRCA", "LUAD"] and params["agg"] == "x" and params["sizes"] == [1, 2]


def test_data_dir_is_one_folder_per_job(tmp_path, monkeypatch):
    """Without CANDLE_DATA_DIR the current directory stands in; with it (what the workers set), every run
    of a benchmark gets the same data_dir whatever its output_dir."""
    write(tmp_path / "d.txt", "[Global_Params]\nmodel_name = 'q'\n")
    monkeypatch.setattr(sys, "argv", ["b"])
    monkeypatch.setenv("CANDLE_DATA_DIR", "")  # unset for the layer, and restored afterwards (set_default sets it)
    monkeypatch.chdir(tmp_path)
    bmk = candle.Benchmark(str(tmp_path), "d.txt", "keras")
    assert candle.finalize_parameters(bmk)["data_dir"] == str(tmp_path / "q" / "Data")
    folder = candle.set_default_data_dir(str(tmp_path / "exp"))
    assert folder == str(tmp_path / "exp" / "data") and os.environ["CANDLE_DATA_DIR"] == folder
    seen = set()
    for run in ("r1", "r2"):
        with run_context({"output_dir": str(tmp_path / "exp" / "runs" / run), "run_id": run}):
            params = candle.finalize_parameters(bmk)
        assert params["output_dir"] == str(tmp_path / "exp" / "runs" / run)
        seen.add(params["data_dir"])
    assert seen == {str(tmp_path / "exp" / "data" / "q" / "Data")}
    assert candle.set_default_data_dir(str(tmp_path / "other")) == folder  # a value already set is kept


def test_required_parameters_may_come_from_the_run(data_dir, tmp_path):
    write(tmp_path / "d.txt", "[Global_Params]\nmodel_name = 'q'\n")
    bmk = candle.Benchmark(str(tmp_path), "d.txt", "keras", required=["learning_rate", "dense"])
    with pytest.raises(ParameterError, match="dense, learning_rate"):
        candle.finalize_parameters(bmk)
    with run_context({"learning_rate": "0.5", "dense": "[8, 4]"}):
        params = candle.finalize_parameters(bmk)
    assert params["learning_rate"] == 0.5 and params["dense"] == [8, 4]


def test_flag_conflicts_are_refused(data_dir, tmp_path):
    write(tmp_path / "d.txt", "[Global_Params]\nmodel_name = 'q'\nclr_flag = True\nwarmup_lr = True\n")
    with pytest.raises(ParameterError, match="clr_flag and warmup_lr"):
        candle.finalize_parameters(candle.Benchmark(str(tmp_path), "d.txt", "keras"))
    candle.check_flag_conflicts({"clr_flag": True, "reduce_lr": False})


# -- run values (UPF lines, HPO proposals) ------------------------------------------------------------------
INT_LIST = {"name": "dense", "type": int, "nargs": "+"}


@pytest.mark.parametrize("definition, value, expected", [
    (INT_LIST, "[64,32]", [64, 32]),
    (INT_LIST, "[64, 32]", [64, 32]),
    (INT_LIST, "64 32", [64, 32]),
    (INT_LIST, "64,32", [64, 32]),
    (INT_LIST, 64, [64]),
    (INT_LIST, 64.0, [64]),
    (INT_LIST, [64.0, "32"], [64, 32]),
    (INT_LIST, "64", [64]),
    ({"name": "d", "default": [1]}, "[2, 3]", [2, 3]),
    ({"name": "d", "default": [1]}, "2 3", [2, 3]),
    ({"name": "d", "default": [1]}, 5, [5]),
    ({"name": "d", "type": float, "default": [1.0]}, "2 3", [2.0, 3.0]),
    ({"name": "cells", "nargs": "+"}, "rnaseq", ["rnaseq"]),
    ({"name": "cells", "nargs": "+"}, "A B", ["A", "B"]),
    ({"name": "cells", "nargs": "+"}, "['Primary site', 'grade']", ["Primary site", "grade"]),
    ({"name": "epochs", "type": int}, 2.0, 2),
    ({"name": "epochs", "type": int}, "2.0", 2),
    ({"name": "epochs", "type": int}, "4", 4),
    ({"name": "lr", "type": float}, 1, 1.0),
    ({"name": "lr", "type": float}, "0.5", 0.5),
    ({"name": "flag", "type": candle.str2bool}, "yes", True),
    ({"name": "flag", "type": candle.str2bool}, 0, False),
    ({"name": "shape", "type": int, "action": "list-of-lists"}, "1,2:3", [[1, 2], [3]]),
    ({"name": "free"}, "text", "text"),
    ({"name": "free"}, 3, 3),
    (INT_LIST, None, None),
])
def test_run_values_are_coerced_as_candle_hands_them_over(definition, value, expected):
    assert typed(coerce_value(definition, value)) == typed(expected)


@pytest.mark.parametrize("definition, value", [
    ({"name": "epochs", "type": int}, 2.5),
    ({"name": "epochs", "type": int}, "2.5"),
    (INT_LIST, [64, 2.5]),
    (INT_LIST, "[64, x]"),
    ({"name": "flag", "type": candle.str2bool}, "maybe"),
])
def test_bad_run_values_name_the_parameter(definition, value):
    with pytest.raises(ParameterError) as info:
        coerce_value(definition, value, "run parameter ")
    assert str(info.value).startswith("run parameter %s = " % definition["name"])


def test_supervisor_style_values_reach_run_on_top_of_the_defaults(data_dir, monkeypatch):
    """initialize_parameters() first, then the proposal's values on top, as Supervisor's model runner does."""
    baseline = load_baseline("uno", monkeypatch)
    with run_context({"dense": "[1000,500]", "epochs": 2.0, "learning_rate": 0.01, "cell_types": "BRCA",
                      "output_dir": os.path.join(data_dir, "run1")}):
        params = baseline.initialize_parameters()
    assert params["dense"] == [1000, 500] and params["epochs"] == 2 and isinstance(params["epochs"], int)
    assert params["cell_types"] == ["BRCA"] and params["learning_rate"] == 0.01
    assert params["train_sources"] == ["GDSC", "CTRP"]  # untouched defaults stay as candle_lib gives them
    assert params["output_dir"] == os.path.join(data_dir, "run1")
    baseline.run(params)


def test_definitions_without_default_keep_argparse_suppress_out(data_dir, tmp_path):
    write(tmp_path / "d.txt", "[Global_Params]\nmodel_name = 'q'\n")
    params = candle.finalize_parameters(candle.Benchmark(str(tmp_path), "d.txt", "keras", additional_definitions=[
        {"name": "absent", "type": float, "default": argparse.SUPPRESS}, {"name": "none", "default": None},
        {"name": "typed_text_default", "type": int, "default": "5"}]))
    assert "absent" not in params and params["none"] is None and params["typed_text_default"] == 5


def test_run_values_follow_the_shape_the_benchmark_resolved(data_dir, monkeypatch):
    """NT3's pool is declared as one int but defaults to a list its code indexes; P3B1's feature_names is
    declared nargs='+' but defaults to one string its code splits. Run values keep those shapes."""
    nt3 = load_baseline("nt3", monkeypatch)
    with run_context({"pool": 4, "output_dir": os.path.join(data_dir, "r1")}) as context:
        params = nt3.initialize_parameters()
    assert params["pool"] == [4] and context["definitions"]["pool"]["nargs"] == "+"
    p3b1 = load_baseline("p3b1", monkeypatch)
    with run_context({"feature_names": "Primary site:Histological grade:Stage",
                      "output_dir": os.path.join(data_dir, "r2")}) as context:
        params = p3b1.initialize_parameters()
    assert params["feature_names"] == "Primary site:Histological grade:Stage"
    assert coerce_value(context["definitions"]["feature_names"], "a b:c") == "a b:c"  # the runner's second pass
    p3b1.run(params)
