"""The optimizer contract's pure-Python parts: settings refused before R starts, origins, the budget note."""

import pytest

from candle_mbo.errors import UsageError
from candle_mbo.search.mbo import BATCH_CRITS, CRITS, check_settings
from candle_mbo.search.optimizer import DESIGN, FALLBACK, MODEL, RANDOM, origin, small_budget_note


def test_every_criterion_works_one_point_at_a_time():
    for mode in ("sync", "async"):
        for crit in CRITS:
            check_settings({"mode": mode, "crit": crit, "propose_points": 1})


def test_batch_criteria_per_mode():
    for mode, allowed in BATCH_CRITS.items():
        for crit in CRITS:
            settings = {"mode": mode, "crit": crit, "propose_points": 8}
            if crit in allowed:
                check_settings(settings)
            else:
                with pytest.raises(UsageError, match="choose one of %s" % ", ".join(allowed)):
                    check_settings(settings)


@pytest.mark.parametrize("key, value, option", [("crit", "pi", "--crit"), ("learner", "gp", "--learner"),
                                                ("lie", "min", "--lie"), ("batch", "all", "batch"),
                                                ("objective_transform", "sqrt", "--objective-transform")])
def test_unknown_values_name_the_option_and_the_choices(key, value, option):
    with pytest.raises(UsageError, match="^%s %s: unknown; choose one of " % (option, value)):
        check_settings({key: value})


def test_origins_for_the_summary():
    assert [origin(t) for t in ("initdesign", "infill_cb", "infill_adacb", "random", "random_fallback", "adopted")] \
        == [DESIGN, MODEL, MODEL, RANDOM, FALLBACK, MODEL]


def test_small_budgets_are_noted():
    assert small_budget_note(20, 18) == ("only 2 of the 20 evaluations will be model-based (the design takes 18); "
                                         "raise --budget or lower --design-size for the surrogate to matter")
    assert small_budget_note(30, 20) is None  # 10 of 30: a third


def test_the_objective_transform_is_an_hpo_option_recorded_for_resume():
    """Issue 21 item 9: --objective-transform none|log reaches R's settings; anything else is exit 2."""
    from candle_mbo import hpo

    parser = hpo.build_parser()
    assert parser.parse_args([]).objective_transform == "none"
    assert parser.parse_args(["--objective-transform", "log"]).objective_transform == "log"
    with pytest.raises(UsageError, match="--objective-transform: invalid choice: 'sqrt'"):  # exit 2
        parser.parse_args(["--objective-transform", "sqrt"])
    assert "objective_transform" in hpo.IDENTITY
    for value in ("none", "log"):
        check_settings({"objective_transform": value})
