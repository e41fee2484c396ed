"""The CANDLE-compatible API: parameter precedence, definitions, defaults files, helpers."""

import argparse
import os
import random
import sys
import textwrap
import warnings

import pytest

import candle
from candle import default_utils
from candle_mbo.candle_api._benchmark import ParameterError, coerce_value, parse_list_of_lists, run_context


@pytest.fixture
def bench_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["prog"])
    monkeypatch.delenv("CANDLE_DATA_DIR", raising=False)
    return tmp_path


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


def make(bench_dir, text, additional=None, required=None, argv=(), defmodel="params.txt"):
    write(bench_dir / defmodel, text)
    sys.argv = ["prog"] + list(argv)
    bmk = candle.Benchmark(str(bench_dir), defmodel, "pytorch", prog="p", additional_definitions=additional,
                           required=required)
    return candle.finalize_parameters(bmk)


def test_precedence_default_file_cli(bench_dir):
    additional = [{"name": "alpha", "type": float, "default": 1.0}, {"name": "beta", "type": int, "default": 5},
                  {"name": "gamma", "type": str, "default": "d"}]
    params = make(bench_dir, """
        [Global_Params]
        beta = 6
        gamma = 'file'
        """, additional, argv=["--gamma", "cli"])
    assert params["alpha"] == 1.0  # definition default
    assert params["beta"] == 6  # defaults file beats definition
    assert params["gamma"] == "cli"  # command line beats file


def test_common_parameters_and_short_flags(bench_dir):
    params = make(bench_dir, "[Global_Params]\nepochs = 3\n", argv=["-e", "7", "-z", "16", "-lr", "0.5", "-r", "9",
                                                                   "-v", "yes"])
    assert (params["epochs"], params["batch_size"], params["learning_rate"], params["rng_seed"]) == (7, 16, 0.5, 9)
    assert params["verbose"] is True
    for key, value in {"timeout": -1, "experiment_id": "EXP000", "run_id": "RUN000", "train_bool": True,
                       "shuffle": False, "profiling": False}.items():
        assert params[key] == value
    assert "output_dir" in params and os.path.isdir(params["output_dir"])
    assert params["data_type"].__name__ == "float32"


def test_always_present_rng_seed_default(bench_dir):
    params = make(bench_dir, "[Global_Params]\n")
    assert params["rng_seed"] == 7102


def test_every_common_parameter_is_defined():
    names = {d["name"] for d in candle.COMMON_DEFINITIONS}
    expected = """config_file data_type rng_seed train_bool eval_bool timeout gpus profiling save_path model_name
        home_dir train_data val_data test_data output_dir data_url experiment_id run_id verbose logfile scaling
        shuffle feature_subsample dense conv locally_connected activation out_activation lstm_size
        recurrent_dropout dropout pool batch_normalization loss optimizer metrics epochs batch_size
        learning_rate early_stop momentum initialization val_split train_steps val_steps test_steps
        train_samples val_samples clr_flag clr_mode clr_base_lr clr_max_lr clr_gamma ckpt_restart_mode
        ckpt_checksum ckpt_skip_epochs ckpt_directory ckpt_save_best ckpt_save_best_metric
        ckpt_save_weights_only ckpt_save_interval ckpt_keep_mode ckpt_keep_limit""".split()
    assert set(expected) <= names


def test_additional_definition_overrides_common(bench_dir):
    additional = [{"name": "pool", "type": int, "nargs": "+", "default": [2, 2]}]
    params = make(bench_dir, "[Global_Params]\n", additional, argv=["--pool", "3", "4", "5"])
    assert params["pool"] == [3, 4, 5]


def test_list_of_lists(bench_dir):
    additional = [{"name": "shape", "type": int, "action": "list-of-lists"}]
    params = make(bench_dir, "[Global_Params]\nshape = '1,2:3,4'\n", additional)
    assert params["shape"] == [[1, 2], [3, 4]]
    params = make(bench_dir, "[Global_Params]\n", additional, argv=["--shape", "5,6:7"])
    assert params["shape"] == [[5, 6], [7]]
    assert parse_list_of_lists("[1,2]:[3]") == [[1, 2], [3]]


@pytest.mark.parametrize("text, expected", [("yes", True), ("True", True), ("t", True), ("1", True), ("Y", True),
                                            ("no", False), ("false", False), ("F", False), ("0", False),
                                            ("n", False)])
def test_str2bool(text, expected):
    assert candle.str2bool(text) is expected


def test_str2bool_refuses_other_text():
    with pytest.raises(argparse.ArgumentTypeError):
        candle.str2bool("maybe")


def test_boolean_from_file_and_cli(bench_dir):
    additional = [{"name": "flag", "type": candle.str2bool, "default": False}]
    assert make(bench_dir, "[Global_Params]\nflag = 'true'\n", additional)["flag"] is True
    assert make(bench_dir, "[Global_Params]\nflag = True\n", additional, argv=["--flag", "no"])["flag"] is False


def test_store_true_is_refused_with_advice(bench_dir):
    with pytest.raises(ParameterError, match="str2bool"):
        make(bench_dir, "[Global_Params]\n", [{"name": "flag", "action": "store_true"}])


def test_definition_without_name_is_refused_without_type_accepted(bench_dir):
    with pytest.raises(ParameterError, match="no 'name'"):
        make(bench_dir, "[Global_Params]\n", [{"type": int}])
    assert make(bench_dir, "[Global_Params]\nsize = [1, 'a']\n", [{"name": "size", "default": 3}])["size"] == [1, "a"]
    with pytest.raises(ParameterError, match="type=bool"):
        make(bench_dir, "[Global_Params]\n", [{"name": "flag", "type": bool}])


def test_required_names_every_missing_parameter(bench_dir):
    with pytest.raises(ParameterError) as info:
        make(bench_dir, "[Global_Params]\nepochs = 2\n", required=["epochs", "dense", "zeta"])
    assert "dense" in str(info.value) and "zeta" in str(info.value) and "epochs" not in str(info.value)


def test_file_values_are_literals_never_evaluated(bench_dir):
    marker = bench_dir / "pwned"
    params = make(bench_dir, """
        [Global_Params]
        attack = __import__('os').system('touch %s')
        numbers = [1, 2.5, 'a']
        word = adam
        """ % marker)
    assert not marker.exists()
    assert params["attack"].startswith("__import__")
    assert params["numbers"] == [1, 2.5, "a"]
    assert params["word"] == "adam"


def test_unknown_file_keys_warn_and_are_kept(bench_dir):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        params = make(bench_dir, "[Global_Params]\nmystery = 4\nother_thing = 'x'\n")
    messages = " ".join(str(w.message) for w in caught)
    assert "mystery" in messages and "other_thing" in messages
    assert params["mystery"] == 4


def test_all_sections_are_read(bench_dir):
    params = make(bench_dir, "[Global_Params]\nepochs = 2\n[Monitor_Params]\ntimeout = 30\n")
    assert params["epochs"] == 2 and params["timeout"] == 30


def test_config_file_option_replaces_defaults_file(bench_dir):
    write(bench_dir / "other.txt", "[Global_Params]\nepochs = 11\n")
    params = make(bench_dir, "[Global_Params]\nepochs = 2\nbatch_size = 8\n", argv=["--config_file",
                                                                                    str(bench_dir / "other.txt")])
    assert params["epochs"] == 11 and "batch_size" not in params


def test_bad_typed_value_in_file_names_file_and_value(bench_dir):
    with pytest.raises(ParameterError) as info:
        make(bench_dir, "[Global_Params]\nepochs = ten\n")
    assert "params.txt" in str(info.value) and "epochs" in str(info.value) and "ten" in str(info.value)


def test_malformed_ini_names_line(bench_dir):
    with pytest.raises(ParameterError, match=r"params.txt:2"):
        make(bench_dir, "[Global_Params]\nthis line has no equals sign\n")
    with pytest.raises(ParameterError, match="no section header"):
        make(bench_dir, "epochs = 1\n")


def test_missing_defaults_file(bench_dir):
    with pytest.raises(ParameterError, match="defaults file not found"):
        candle.Benchmark(str(bench_dir), "nope.txt", "keras")


def test_set_locals_pattern_and_legacy_spellings(bench_dir):
    write(bench_dir / "params.txt", "[Global_Params]\nunits = 12\n")
    definitions = [{"name": "units", "type": int, "help": "units"}]

    class Bench(candle.Benchmark):
        def set_locals(self):
            self.required = ["units"]
            self.additional_definitions = definitions

    for initialize in (candle.finalize_parameters, candle.initialize_parameters,
                       default_utils.initialize_parameters, default_utils.finalize_parameters):
        params = initialize(Bench(str(bench_dir), "params.txt", "keras", prog="b"))
        assert params["units"] == 12


def test_run_context_overrides_and_satisfies_required(bench_dir):
    write(bench_dir / "params.txt", "[Global_Params]\n")
    bmk = candle.Benchmark(str(bench_dir), "params.txt", "keras", required=["learning_rate"],
                           additional_definitions=[{"name": "dense", "type": int, "nargs": "+"}])
    with run_context({"learning_rate": "0.5", "dense": "3 4", "output_dir": str(bench_dir / "run")}):
        params = candle.finalize_parameters(bmk)
    assert params["learning_rate"] == 0.5 and params["dense"] == [3, 4]
    assert params["output_dir"] == str(bench_dir / "run")


def test_coercion_rules():
    nargs = {"name": "dense", "type": int, "nargs": "+"}
    assert coerce_value(nargs, "50 50 1") == [50, 50, 1]
    assert coerce_value({"name": "d", "type": float, "default": [1.0]}, "2 3") == [2.0, 3.0]
    assert coerce_value({"name": "d", "default": [1]}, "2 3") == [2, 3]
    assert coerce_value({"name": "lr", "type": float}, 1) == 1.0
    assert coerce_value({"name": "e", "type": int}, "4") == 4
    with pytest.raises(ParameterError):
        coerce_value({"name": "e", "type": int}, "four")


def test_helpers(tmp_path):
    args = candle.ArgumentStruct(a=1, b="x")
    assert (args.a, args.b) == (1, "x")
    target = tmp_path / "deep" / "er" / "file.txt"
    candle.verify_path(str(target))
    assert target.parent.is_dir()
    assert candle.keras_default_config()["rho"] == 0.9


def test_set_seed_repeats_random_numbers():
    import numpy
    import torch

    candle.set_seed(5)
    first = (random.random(), numpy.random.rand(), float(torch.rand(1)))
    candle.set_seed(5)
    assert (random.random(), numpy.random.rand(), float(torch.rand(1))) == first


def test_set_parallelism_threads(monkeypatch):
    import torch

    monkeypatch.setenv("NUM_INTRA_THREADS", "1")
    monkeypatch.setenv("NUM_INTER_THREADS", "1")
    before = torch.get_num_threads()
    try:
        candle.set_parallelism_threads()
        candle.set_parallelism_threads()  # twice: a resident runner calls it every run
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_fetch_file_caches_and_fails_clearly_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("CANDLE_DATA_DIR", str(tmp_path / "data"))
    source = tmp_path / "source.csv"
    source.write_text("a,b\n1,2\n")
    path = candle.fetch_file("file://" + str(source), "sub")
    assert path == str(tmp_path / "data" / "sub" / "source.csv") and open(path).read() == "a,b\n1,2\n"
    assert os.listdir(tmp_path / "data" / "sub") == ["source.csv"]  # nothing else beside the data (no .lock)
    source.unlink()
    assert candle.fetch_file("file://" + str(source), "sub") == path  # cached: no access needed
    with pytest.raises(OSError, match="place the file at"):
        candle.get_file("missing.csv", "file://" + str(tmp_path / "missing.csv"), cache_subdir="sub")


def test_tensorflow_helpers_only_with_tensorflow():
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        assert not hasattr(candle, "build_optimizer")
        with pytest.raises(ImportError):
            from candle import TerminateOnTimeOut  # noqa: F401
    else:
        assert callable(candle.build_optimizer)


def test_import_candle_needs_no_framework():
    import subprocess

    code = "import sys, candle; assert 'torch' not in sys.modules and 'tensorflow' not in sys.modules; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr


def test_user_guide_table_matches_what_candle_provides():
    from candle_mbo.candle_api import _catalog

    guide = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "user-guide.md")
    text = open(guide, encoding="utf-8").read()
    table = text[text.index("| candle_lib name | here |"):]
    rows = {}
    for line in table.splitlines()[2:]:
        if not line.startswith("| `"):
            break
        name, status = [cell.strip() for cell in line.strip("|").split("|")]
        rows[name.strip("`")] = status
    tensorflow = {n for n, s in rows.items() if s == "needs TensorFlow"}
    missing = {n for n, s in rows.items() if s == "use candle_lib"}
    provided = {n for n, s in rows.items() if s.startswith("provided here")}
    assert len(rows) == len(tensorflow) + len(missing) + len(provided)
    assert tensorflow == set(_catalog.LAZY_TENSORFLOW) and missing == set(_catalog.CANDLE_LIB_ONLY)
    assert provided == set(candle.__all__) - {"ParameterError", "parse_list_of_lists", "coerce_value",
                                              "COMMON_DEFINITIONS", "DEFAULT_SEED", "DEFAULT_TIMEOUT"} \
        | set(_catalog.LAZY) | set(_catalog.LAZY_PYTORCH)
    for name in provided:
        assert getattr(candle, name) is not None
