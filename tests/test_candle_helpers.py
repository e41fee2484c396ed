"""candle_lib's framework-free helpers as the Benchmarks call them: logging, files, plots, noise, omics
preprocessing, loaders and UQ statistics. Expected values are worked out by hand from what each function
is documented to do (small inputs), not taken from running candle_lib."""

import argparse
import hashlib
import logging
import os
import random
import signal
import subprocess
import sys
import tarfile
import threading

import numpy as np
import pandas as pd
import pytest

import candle


def test_import_candle_loads_no_framework_and_no_pandas():
    code = ("import sys, candle; heavy = [m for m in ('torch', 'tensorflow', 'pandas', 'scipy', 'matplotlib') "
            "if m in sys.modules]; print(heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr


@pytest.mark.parametrize("name", ["set_up_logger", "plot_history", "plot_array", "plot_scatter",
                                  "check_flag_conflicts", "parse_from_dictlist", "validate_file", "add_noise",
                                  "quantile_normalization", "generate_index_distribution",
                                  "generate_cross_validation_partition", "select_features_by_variation",
                                  "select_features_by_missing_values", "select_decorrelated_features",
                                  "load_csv_data", "load_Xy_data_noheader", "load_Xy_one_hot_data2",
                                  "generate_gene_set_data", "combat_batch_effect_removal",
                                  "compute_statistics_homoscedastic", "compute_statistics_homoscedastic_summary",
                                  "compute_statistics_heteroscedastic", "compute_statistics_quantile",
                                  "compute_empirical_calibration_interpolation",
                                  "split_data_for_empirical_calibration", "plot_contamination"])
def test_the_benchmarks_framework_free_names_are_provided(name):
    assert callable(getattr(candle, name))


# -- logging and files -----------------------------------------------------------------------------------
def test_set_up_logger_writes_file_and_stdout_and_can_be_called_every_run(tmp_path, capsys):
    logger = logging.getLogger("candle-test-logger")
    first, second = tmp_path / "a" / "run1.log", tmp_path / "run2.log"
    candle.set_up_logger(str(first), logger)
    logger.info("one")
    logger.debug("detail")
    candle.set_up_logger(str(second), logger, verbose=True)  # what a resident runner's second run does
    logger.info("two")
    logger.debug("more detail")
    out = capsys.readouterr().out.splitlines()
    assert out == ["one", "two", "more detail"]  # debug to stdout only when verbose; never twice
    assert "one" in first.read_text() and "detail" in first.read_text() and "two" not in first.read_text()
    assert "two" in second.read_text() and "more detail" in second.read_text()
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def test_validate_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"candle")
    assert candle.validate_file(str(path), hashlib.md5(b"candle").hexdigest())
    assert not candle.validate_file(str(path), hashlib.md5(b"other").hexdigest())


def _archive(tmp_path):
    source = tmp_path / "source"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg" / "data.csv").write_text("a,b\n1,2\n")
    archive = tmp_path / "pkg.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "pkg", arcname="pkg")
    return archive


def test_fetch_file_unpacks_archives_once_for_concurrent_workers(tmp_path, monkeypatch):
    """A .tar.gz is unpacked as candle_lib does even without unpack=True; workers asking at the same time
    get the same folder, unpacked once, and never a half-written file."""
    monkeypatch.setenv("CANDLE_DATA_DIR", str(tmp_path / "data"))
    archive = _archive(tmp_path)
    results, errors = [], []

    def fetch():
        try:
            results.append(candle.fetch_file("file://" + str(archive), "Pilot9"))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors and set(results) == {str(tmp_path / "data" / "Pilot9" / "pkg")}
    assert (tmp_path / "data" / "Pilot9" / "pkg" / "data.csv").read_text() == "a,b\n1,2\n"
    assert not [n for n in os.listdir(tmp_path / "data" / "Pilot9") if ".part" in n or n.endswith(".lock")]


# -- argument parsing helpers ----------------------------------------------------------------------------
def test_parse_from_dictlist_builds_an_argparse_parser():
    parser = candle.parse_from_dictlist([
        {"name": "dense", "type": int, "nargs": "+", "default": [8]},
        {"name": "shape", "type": int, "action": "list-of-lists"},
        {"name": "flag", "type": candle.str2bool, "default": False, "abv": "g"},
        {"name": "mode", "choices": ["a", "b"], "default": "a"},
        {"name": "absent"},
    ], argparse.ArgumentParser(prog="p"))
    args = vars(parser.parse_args(["--dense", "1", "2", "--shape", "1,2:3", "-g", "yes"]))
    assert args == {"dense": [1, 2], "shape": [[1, 2], [3]], "flag": True, "mode": "a"}
    with pytest.raises(SystemExit):
        parser.parse_args(["--mode", "c"])
    with pytest.raises(ValueError, match="str2bool"):
        candle.parse_from_dictlist([{"name": "x", "action": "store_true"}], argparse.ArgumentParser())


def test_clr_args():
    args = {"clr_mode": "trng1", "clr_base_lr": 1e-4, "clr_max_lr": 1e-3, "clr_gamma": 0.9, "warmup_lr": True}
    assert candle.clr_check_args(args) and not candle.clr_check_args({"clr_mode": "exp"})
    assert candle.clr_set_args(args) == {"mode": "trng1", "base_lr": 1e-4, "max_lr": 1e-3, "gamma": 0.9}
    assert args["warmup_lr"] is False
    assert candle.clr_set_args({})["mode"] is None


# -- plots -----------------------------------------------------------------------------------------------
class History:
    def __init__(self, history):
        self.history = history
        self.epoch = list(range(len(next(iter(history.values())))))


def _png(path):
    with open(path, "rb") as handle:
        return handle.read(8) == b"\x89PNG\r\n\x1a\n"


def test_plots_are_written_where_candle_lib_writes_them(tmp_path):
    history = History({"loss": [3.0, 2.0, 1.5], "val_loss": [3.5, 2.5, 2.0], "acc": [0.1, 0.2, 0.3],
                       "val_acc": [0.1, 0.15, 0.2]})
    out = str(tmp_path / "model")
    candle.plot_history(out, history, "loss")
    candle.plot_history(out, history, "acc", val=False, title="accuracy")
    assert _png(out + ".plot.loss.png") and _png(out + ".plot.acc.png")
    candle.plot_array(np.arange(5.0), "x", "y", "t", str(tmp_path / "array.png"))
    candle.plot_scatter(np.random.rand(10, 2), np.arange(10) % 3, str(tmp_path / "scatter"))
    assert _png(tmp_path / "array.png") and _png(tmp_path / "scatter.png")
    candle.plot_metrics(history, outdir=str(tmp_path))
    assert _png(tmp_path / "loss.png") and _png(tmp_path / "acc.png")
    y = np.linspace(0, 1, 20)
    candle.plot_contamination(y, y + 0.1, np.full(20, 0.05), pred_name="AUC", figprefix=str(tmp_path / "c"))
    memberships = np.column_stack([np.linspace(1, 0, 20), np.linspace(0, 1, 20)])
    candle.plot_contamination(y, y + 0.1, np.full(20, 0.05), T=memberships, pred_name="AUC",
                              figprefix=str(tmp_path / "c"))
    for name in ("c_outTest_contamination.png", "c_outTrain_contamination.png", "c_T_contamination.png"):
        assert _png(tmp_path / name)
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []  # every figure closed: a resident runner does not accumulate them


# -- noise -----------------------------------------------------------------------------------------------
NOISE_OFF = {"add_noise": True, "label_noise": 0, "noise_correlated": False, "noise_gaussian": False,
             "noise_cluster": False, "noise_column": False, "std_dev": 0.5, "feature_col": [1],
             "feature_threshold": 0.5, "noise_type": "gaussian", "sample_ids": [0]}


def test_add_noise_switches():
    x = np.arange(12, dtype=float).reshape(6, 2)
    y = np.eye(2, dtype=int)[[0, 1, 0, 1, 0, 1]]
    same_x, same_y = candle.add_noise(x.copy(), y.copy(), dict(NOISE_OFF, add_noise=False, label_noise=1.0))
    assert (same_x == x).all() and (same_y == y).all()
    _, flipped = candle.add_noise(x.copy(), y.copy(), dict(NOISE_OFF, label_noise=1.0))
    assert (flipped == 1 - y).all()  # every label flipped at level 1
    features = np.array([[0.9, 0.1], [0.1, 0.1], [0.8, 0.9]])
    labels = np.eye(2, dtype=int)[[0, 0, 0]]
    _, correlated = candle.add_noise(features, labels.copy(), dict(NOISE_OFF, label_noise=1.0, noise_correlated=True,
                                                                   feature_col=[0], feature_threshold=0.5))
    assert correlated.tolist() == [[0, 1], [1, 0], [0, 1]]  # only rows whose feature 0 is above 0.5
    np.random.seed(0)
    noisy, _ = candle.add_noise(x.copy(), y, dict(NOISE_OFF, noise_gaussian=True, std_dev=0.1))
    assert noisy.shape == x.shape and 0 < np.abs(noisy - x).max() < 1
    column, _ = candle.add_noise(x.copy(), y, dict(NOISE_OFF, noise_column=True, feature_col=[1],
                                                   noise_type="uniform", std_dev=0.2))
    assert (column[:, 0] == x[:, 0]).all() and (np.abs(column[:, 1] - x[:, 1]) <= 0.2).all()
    random.seed(0)
    cluster, _ = candle.add_noise(x.copy(), y, dict(NOISE_OFF, noise_cluster=True, label_noise=1.0,
                                                    sample_ids=[2, 4], feature_col=[0]))
    changed = np.argwhere(cluster != x)
    assert set(map(tuple, changed)) <= {(2, 0), (4, 0)}
    with pytest.raises(ValueError, match="gaussian or uniform"):
        candle.add_column_noise(x.copy(), noise_type="cauchy")


# -- omics preprocessing ---------------------------------------------------------------------------------
def test_quantile_normalization_gives_every_row_the_mean_distribution():
    data = np.array([[1.0, 3.0, 2.0], [4.0, 6.0, 8.0]])
    # sorted rows [1, 2, 3] and [4, 6, 8] -> reference [2.5, 4, 5.5], placed by each row's ranks
    assert np.allclose(candle.quantile_normalization(data), [[2.5, 5.5, 4.0], [2.5, 4.0, 5.5]])
    frame = pd.DataFrame(data, index=["s1", "s2"], columns=["g1", "g2", "g3"])
    normed = candle.quantile_normalization(frame)
    assert list(normed.index) == ["s1", "s2"] and list(normed.columns) == ["g1", "g2", "g3"]
    with_gap = np.array([[1.0, np.nan, 2.0], [4.0, 6.0, 8.0]])
    assert np.isnan(candle.quantile_normalization(with_gap)[0, 1])


def test_cross_validation_partition_keeps_groups_and_balances_folds():
    labels = ["a", "a", "b", "c", "c", "c"]
    # largest group first into the emptiest fold: c -> fold 0, a -> fold 1, b -> fold 1
    assert candle.generate_cross_validation_partition(labels, n_folds=2) == [[[3, 4, 5], [0, 1, 2]],
                                                                           [[0, 1, 2], [3, 4, 5]]]
    trials = candle.generate_cross_validation_partition(list("aabbccddeeff"), n_folds=3, n_repeats=2,
                                                        portions=[1, 1, 1], random_seed=1)
    assert len(trials) == 6
    for sets in trials:
        assert sorted(i for s in sets for i in s) == list(range(12)) and len(sets) == 3
        for s in sets:
            assert all((i ^ 1) in s for i in s)  # the two samples of a group (2g, 2g+1) travel together
    with pytest.raises(ValueError, match="groups"):
        candle.generate_cross_validation_partition(["a", "b"], n_folds=3)


def test_feature_selection():
    data = np.array([[1.0, 0.0, 5.0, np.nan, 2.0],
                     [2.0, 0.0, 5.0, np.nan, 4.0],
                     [3.0, 0.0, 5.1, 1.0, 6.0],
                     [4.0, 0.0, 5.0, 2.0, 8.0]])
    assert candle.select_features_by_missing_values(data, threshold=0.3).tolist() == [0, 1, 2, 4]
    variances = np.nanvar(data, axis=0)  # [1.25, 0, 0.001875, 0.25, 5]
    assert candle.select_features_by_variation(data, threshold=0.2).tolist() == [0, 3, 4]
    assert candle.select_features_by_variation(data, portion=0.4).tolist() == [0, 4]
    assert candle.select_features_by_variation(data, "std", threshold=1.0).tolist() == [0, 4]
    assert candle.select_features_by_variation(data, "mad", threshold=0.75).tolist() == [0, 4]
    assert candle.select_features_by_variation(data).size == 0
    assert variances[4] > variances[0] > variances[3]
    with pytest.raises(ValueError):
        candle.select_features_by_variation(data, threshold=1, portion=0.5)


def test_decorrelated_features():
    rs = np.random.RandomState(0)
    base = rs.rand(20, 3)
    data = np.column_stack([base[:, 0], base[:, 1], base[:, 0], np.ones(20), base[:, 1] * 3 + 0.01 * rs.rand(20),
                            base[:, 2]])
    # exact duplicate (column 2 of 0) and the constant column 3 go; the near copy 4 stays without a threshold
    assert candle.select_decorrelated_features(data).tolist() == [0, 1, 4, 5]
    assert candle.select_decorrelated_features(data, threshold=0.95).tolist() == [0, 1, 5]
    assert candle.select_decorrelated_features(pd.DataFrame(data), method="spearman", threshold=0.95).tolist() \
        == [0, 1, 5]


def test_gene_set_data(tmp_path):
    (tmp_path / "c6.all.v7.0.entrez.gmt").write_text("S1\turl\t1\t2\nS2\turl\t3\nS3\turl\t99\n")
    data = pd.DataFrame([[1.0, 3.0, -5.0], [2.0, 6.0, 7.0]], index=["x", "y"], columns=["1", "2", "3"])
    mean = candle.generate_gene_set_data(data, [1, 2, 3], data_dir=str(tmp_path))
    assert list(mean.columns) == ["S1", "S2"] and list(mean.index) == ["x", "y"]  # S3 has no gene here
    assert mean.values.tolist() == [[2.0, -5.0], [4.0, 7.0]]
    assert candle.generate_gene_set_data(data.values, [1, 2, 3], metric="abs_maximum",
                                         data_dir=str(tmp_path)).values.tolist() == [[3.0, 5.0], [6.0, 7.0]]
    assert candle.generate_gene_set_data(data, [1, 2, 3], metric="sum",
                                         data_dir=str(tmp_path)).values.tolist() == [[4.0, -5.0], [8.0, 7.0]]


def test_combat_removes_batch_shifts_and_scales():
    rs = np.random.RandomState(2)
    genes, samples = 40, ["s%d" % i for i in range(18)]
    truth = rs.normal(8, 1, size=(genes, 1)) + rs.normal(0, 0.5, size=(genes, 18))
    observed = truth.copy()
    observed[:, 6:12] += 3.0
    observed[:, 12:] = observed[:, 12:] * 2.0 - 6.0
    batches = pd.Series(["a"] * 6 + ["b"] * 6 + ["c"] * 6, index=samples)
    frame = pd.DataFrame(observed, index=["g%d" % i for i in range(genes)], columns=samples)
    corrected = candle.combat_batch_effect_removal(frame, batches)
    assert list(corrected.index) == list(frame.index) and list(corrected.columns) == samples

    def spread_of_batch_means(values):
        means = np.stack([values[:, 0:6].mean(axis=1), values[:, 6:12].mean(axis=1), values[:, 12:].mean(axis=1)])
        return np.abs(means - means.mean(axis=0)).mean()

    assert spread_of_batch_means(corrected.values) < 0.1 * spread_of_batch_means(observed)
    ratio = corrected.values[:, 12:].std(axis=1).mean() / corrected.values[:, 0:6].std(axis=1).mean()
    assert 0.7 < ratio < 1.4  # the doubled scale of batch c is undone too


# -- loaders ---------------------------------------------------------------------------------------------
def test_load_xy_data_noheader(tmp_path):
    np.savetxt(tmp_path / "train.csv", [[0, 1.0, 10.0], [1, 2.0, 20.0], [2, 3.0, 30.0]], delimiter=",")
    np.savetxt(tmp_path / "test.csv", [[1, 5.0, 50.0]], delimiter=",")
    x_train, y_train, x_test, y_test = candle.load_Xy_data_noheader(str(tmp_path / "train.csv"),
                                                                    str(tmp_path / "test.csv"), 3, scaling="minmax")
    assert y_train.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]] and y_test.tolist() == [[0, 1, 0]]
    assert np.allclose(x_train, [[0, 0], [0.25, 0.25], [0.5, 0.5]]) and np.allclose(x_test, [[1, 1]])
    assert x_train.dtype == np.float32


def test_load_xy_one_hot_data2(tmp_path):
    frame = pd.DataFrame({"id": range(10), "f": np.arange(10.0), "label": list("ababababab")})
    frame.to_csv(tmp_path / "train.csv", index=False)
    frame.head(4).to_csv(tmp_path / "test.csv", index=False)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = candle.load_Xy_one_hot_data2(
        str(tmp_path / "train.csv"), str(tmp_path / "test.csv"), class_col="label", drop_cols=["id", "label"],
        validation_split=0.2)
    assert x_val.tolist() == [[0.0], [1.0]] and x_train[:, 0].tolist() == list(range(2, 10))
    assert y_val.tolist() == [[1, 0], [0, 1]] and y_test.shape == (4, 2) and x_test.shape == (4, 1)


def test_load_csv_data(tmp_path):
    frame = pd.DataFrame({"y": [0.1, 0.2, 0.3, 0.4, 0.5], "a": [1, 2, 3, 4, 5], "c": ["u", "v", "u", "v", "u"]})
    frame.to_csv(tmp_path / "train.csv", index=False)
    frame.tail(2).to_csv(tmp_path / "test.csv", index=False)
    x_train, y_train, x_val, y_val, x_test, y_test, x_names, y_names = candle.load_csv_data(
        str(tmp_path / "train.csv"), str(tmp_path / "test.csv"), y_cols=["y"], onehot_cols=["c"],
        validation_split=0.4, return_header=True)
    assert x_names == ["c:u", "c:v", "a"] and y_names == ["y"]
    assert x_train["a"].tolist() == [1, 2, 3] and x_val["a"].tolist() == [4, 5]  # validation: the last rows
    assert y_val["y"].tolist() == [0.4, 0.5] and x_test["a"].tolist() == [4, 5] and len(y_test) == 2
    only = candle.load_csv_data(str(tmp_path / "train.csv"), x_cols=["a"], return_dataframe=False)
    assert isinstance(only, list) and only[0].tolist() == [[1], [2], [3], [4], [5]]


# -- uncertainty quantification --------------------------------------------------------------------------
def _inference_table():
    rs = np.random.RandomState(3)
    table = pd.DataFrame(rs.rand(30, 12), columns=["c%d" % i for i in range(12)])
    table["c4"] = np.linspace(0, 1, 30)
    return table.rename(columns={"c4": "AUC"})


def test_statistics_of_inference_tables(capsys):
    table = _inference_table()
    y, mean, error, sigma, std, name = candle.compute_statistics_homoscedastic(table)
    realizations = table.iloc[:, 6:].values
    assert name == "AUC" and np.allclose(mean, realizations.mean(axis=1)) and np.allclose(std, realizations.std(axis=1))
    assert np.allclose(error, y - mean) and sigma is std
    assert "MSE:" in capsys.readouterr().out
    y, mean, error, sigma, std, name = candle.compute_statistics_heteroscedastic(table)
    assert np.allclose(mean, table.iloc[:, 6::2].values.mean(axis=1))
    assert np.allclose(sigma, np.sqrt(np.exp(table.iloc[:, 7::2].values.mean(axis=1))))
    result = candle.compute_statistics_quantile(table)
    low, high = table.iloc[:, 7::3].values.mean(axis=1), table.iloc[:, 8::3].values.mean(axis=1)
    assert len(result) == 8 and np.allclose(result[3], (high - low) / 2.56)
    assert np.allclose(result[6], low) and np.allclose(result[7], high)
    y, mean, error, sigma, std, name = candle.compute_statistics_homoscedastic_summary(table, col_true=4)
    assert name == "AUC" and np.allclose(mean, table.iloc[:, 6]) and np.allclose(sigma, table.iloc[:, 7])


def test_index_distribution():
    np.random.seed(0)
    train, valid, test = candle.generate_index_distribution(60, 20, 20, {"uq_train_fr": 0.6, "uq_valid_fr": 0.2,
                                                                         "uq_test_fr": 0.2})
    assert (len(train), len(valid), len(test)) == (60, 20, 20)
    assert sorted(np.concatenate([train, valid, test]).tolist()) == list(range(100))
    train, valid, test = candle.generate_index_distribution(60, 20, 20, {"uq_train_fr": 0.8, "uq_valid_fr": 0.2,
                                                                         "uq_test_fr": 0.0})
    assert test is None and len(train) + len(valid) == 80  # no test share: only train + validation data
    train, valid, test = candle.generate_index_distribution(
        60, 20, 20, {"uq_train_vec": [0, 2], "uq_valid_vec": [1], "uq_test_vec": [3, 4]})
    assert train.tolist() == list(range(0, 20)) + list(range(40, 60)) and valid.tolist() == list(range(20, 40))
    assert test.tolist() == list(range(60, 100))
    train, valid, test = candle.generate_index_distribution(
        60, 20, 20, {"uq_train_bks": 3, "uq_valid_bks": 1, "uq_test_bks": 1})
    assert (len(train), len(valid), len(test)) == (60, 20, 20)
    with pytest.raises(KeyError):
        candle.generate_index_distribution(1, 1, 1, {"uq_train_fr": 1.0})
    with pytest.raises(ValueError):
        candle.generate_index_distribution(1, 1, 1, {"uq_train_fr": 0.5, "uq_valid_fr": 0.2, "uq_test_fr": 0.2})


def test_empirical_calibration():
    rs = np.random.RandomState(5)
    sigma = np.sort(rs.uniform(0.1, 1.0, 400))
    y_true = rs.rand(400)
    y_pred = y_true + 2.0 * sigma * rs.choice([-1, 1], 400)  # |error| is exactly 2 sigma
    order, s_cal, s_test, p_cal, p_test, t_cal, t_test = candle.split_data_for_empirical_calibration(
        y_true, y_pred, sigma, 0.75)
    assert len(s_cal) == 300 and len(s_test) == 100 and sorted(order.tolist()) == list(range(400))
    assert np.allclose(s_cal, sigma[order[:300]]) and np.allclose(t_test, y_true[order[300:]])
    np.random.seed(1)
    best, smooth = candle.compute_empirical_calibration_interpolation(s_cal, p_cal, t_cal, cv=5)
    grid = np.linspace(0.2, 0.9, 8)
    assert np.allclose(best(grid), 2 * grid, atol=0.05) and np.allclose(smooth(grid), 2 * grid, atol=0.05)


def test_not_provided_names_fail_with_one_clear_sentence():
    for name in ("abstention_loss", "plot_model", "no_such_function"):
        with pytest.raises(AttributeError) as info:
            getattr(candle, name)
        message = str(info.value)
        assert type(info.value) is not AttributeError and "candle.%s" % name in message
        assert "install candle_lib" in message and "\n" not in message
    assert not hasattr(candle, "abstention_loss")


def test_keras_names_say_tensorflow_is_needed():
    pytest.importorskip("numpy")
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        for name in ("CandleCkptKeras", "compute_trainable_params", "LoggingCallback", "MultiGPUCheckpoint", "r2",
                     "mae", "build_optimizer", "TerminateOnTimeOut"):
            with pytest.raises(AttributeError, match="candle.%s needs TensorFlow 2" % name):
                getattr(candle, name)
    else:
        assert callable(candle.r2) and callable(candle.CandleCkptKeras)


def test_star_import_and_dir():
    namespace = {}
    exec("from candle import *", namespace)  # noqa: S102 - what old benchmark code does
    assert {"finalize_parameters", "Benchmark", "str2bool", "set_up_logger"} <= set(namespace)
    assert {"CandleCkptPyTorch", "plot_history", "r2"} <= set(dir(candle))


WAITER = """
import os, sys, time
import candle
target, url = sys.argv[1], sys.argv[2]
print("ready", flush=True)
deadline = time.monotonic() + 60
while not os.path.exists(target) and time.monotonic() < deadline:
    time.sleep(0.0002)
path = candle.fetch_file(url, "Pilot9")
big = os.path.join(path, "z_big.bin")
print(os.path.getsize(big) if os.path.exists(big) else -1, flush=True)
"""


def test_a_second_process_never_gets_a_half_unpacked_folder(tmp_path):
    """20.12: one process unpacks a large archive; another asks for it the moment its folder appears, and must
    get the whole of it (unpacked aside and renamed into place), never a folder still being written."""
    from conftest import env

    source = tmp_path / "src" / "pkg"
    source.mkdir(parents=True)
    (source / "a_first.txt").write_text("first\n")
    (source / "z_big.bin").write_bytes(b"\0" * (48 << 20))  # unpacked last, over a noticeable time
    archive = tmp_path / "pkg.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname="pkg")
    url = "file://" + str(archive)
    variables = env(CANDLE_DATA_DIR=tmp_path / "data")
    target = tmp_path / "data" / "Pilot9" / "pkg"
    waiter = subprocess.Popen([sys.executable, "-c", WAITER, str(target), url], env=variables, text=True,
                              stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert waiter.stdout.readline().strip() == "ready"
        unpacker = subprocess.run([sys.executable, "-c", "import candle, sys; candle.fetch_file(sys.argv[1], 'Pilot9')",
                                   url], env=variables, timeout=120, capture_output=True, text=True)
        assert unpacker.returncode == 0, unpacker.stderr
        seen, _ = waiter.communicate(timeout=120)
    finally:
        if waiter.poll() is None:
            os.killpg(waiter.pid, signal.SIGKILL)
    assert seen.strip() == str(48 << 20)
    assert sorted(os.listdir(target)) == ["a_first.txt", "z_big.bin"]
    assert [n for n in os.listdir(target.parent) if n.startswith(".")] == []  # no temporary folder left
