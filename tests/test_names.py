"""Space parameter names against the benchmark's definitions: typos refused, other names passed through."""

import pytest

from candle_mbo.errors import UsageError
from candle_mbo.search.names import check_names, close_match, edit_distance, name_line

DESCRIPTION = {"definitions": {"learning_rate": {}, "batch_size": {}, "epochs": {}, "dropout": {},
                               "warmup_epochs": {}, "dense": {}},
               "params": {"learning_rate": 0.01, "model_file": "m.h5"}}


def space(tmp_path, *names):
    path = tmp_path / "space.R"
    lines = ["# a comment naming 'learnig_rate' does not count", "param.set <- makeParamSet("]
    lines += ['  makeNumericParam("%s", lower = 0, upper = 1),' % n for n in names]
    lines += [")"]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_a_typo_is_refused_with_file_line_and_suggestion(tmp_path):
    path = space(tmp_path, "dropout", "learnig_rate")
    with pytest.raises(UsageError) as info:
        check_names(["dropout", "learnig_rate"], DESCRIPTION, path)
    assert str(info.value) == ("%s:4: parameter 'learnig_rate' is not defined by the benchmark; did you mean "
                               "learning_rate? (if 'learnig_rate' is meant, pass --allow-unknown-params)" % path)


@pytest.mark.parametrize("typo, meant", [("learning_rat", "learning_rate"), ("batch_szie", "batch_size"),
                                         ("epoch", "epochs"), ("Learning_Rate", "learning_rate"),
                                         ("model_fle", "model_file")])
def test_typos_of_defined_names_and_of_default_keys(typo, meant):
    assert close_match(typo, set(DESCRIPTION["definitions"]) | set(DESCRIPTION["params"])) == meant


@pytest.mark.parametrize("name", ["warmup_lr", "drop", "residual", "dense_feature_layers", "lr", "cell_features"])
def test_names_without_a_close_match_pass_with_one_warning_line(tmp_path, name):
    path = space(tmp_path, "dropout", name)
    warning = check_names(["dropout", name], DESCRIPTION, path)
    assert warning == ("warning: %s sets a parameter the benchmark does not define (passed to run() as given): %s"
                       % (path, name))


def test_allow_unknown_params_lets_a_typo_through(tmp_path):
    path = space(tmp_path, "learnig_rate", "epohcs")
    warning = check_names(["learnig_rate", "epohcs"], DESCRIPTION, path, allow_unknown=True)
    assert warning.endswith("sets 2 parameters the benchmark does not define (passed to run() as given): "
                            "learnig_rate, epohcs")


def test_known_names_need_no_word():
    assert check_names(["learning_rate", "model_file"], DESCRIPTION, "space.R") is None


def test_name_line_falls_back_to_the_file(tmp_path):
    path = space(tmp_path, "x")
    assert name_line(path, "y") == path and name_line(str(tmp_path / "missing.R"), "x").endswith("missing.R")


@pytest.mark.parametrize("typo, meant", [("widht", "width"), ("dpeth", "depth"), ("epcohs", "epochs"),
                                         ("learnign_rate", "learning_rate"), ("batch_siez", "batch_size"),
                                         ("dorpout", "dropout")])
def test_a_transposed_letter_is_one_edit_and_refused(tmp_path, typo, meant):
    """Issue 21 item 7: ``widht`` for ``width`` (difflib 0.80) was one warning and a whole search at the default."""
    description = {"definitions": dict(DESCRIPTION["definitions"], width={}, depth={}), "params": {}}
    path = space(tmp_path, typo)
    with pytest.raises(UsageError) as info:
        check_names([typo], description, path)
    assert ("%s:3: parameter '%s' is not defined by the benchmark; did you mean %s?" % (path, typo, meant)
            in str(info.value))
    # a UPF file's keys go through the same check (upf.py calls check_names with the UPF file as source)
    upf = tmp_path / "runs.upf"
    upf.write_text('{"id": "a", "%s": 3}\n' % typo)
    with pytest.raises(UsageError, match="%s:1: parameter '%s'.*did you mean %s" % (upf, typo, meant)):
        check_names([typo], description, str(upf))
    assert check_names([typo], description, path, allow_unknown=True).endswith(typo)


@pytest.mark.parametrize("a, b, distance", [("widht", "width", 1), ("width", "width", 0), ("ab", "ba", 1),
                                            ("dense_1", "dense", 2), ("drop", "dropout", 3), ("ca", "abc", 3),
                                            ("", "abc", 3)])
def test_edit_distance_counts_a_transposition_as_one(a, b, distance):
    assert edit_distance(a, b) == distance == edit_distance(b, a)
