"""Space semantics as plain ParamHelpers / mlrMBO define them (issue 21 items 1-6).

Each test puts candle_mbo next to what plain ParamHelpers (``generateDesign``, ``isFeasible``,
``dfRowToList``) or ``mbo()`` does with the same space, in the same R session (rpy2).
"""

import json
import os

import pytest

from conftest import FIXTURES
from test_mbo_bridge import mbo, settings

pytestmark = [pytest.mark.r, pytest.mark.usefixtures("mlrmbo")]


def plain_r(code):
    """Evaluate R ``code`` (ParamHelpers and mlrMBO attached) and return its value read as JSON."""
    import rpy2.robjects as robjects

    text = robjects.r("suppressMessages({library(ParamHelpers); library(mlrMBO)}); local({%s})" % code)
    return json.loads(text[0])


def write_space(tmp_path, body, name="space.R"):
    path = tmp_path / name
    path.write_text("param.set <- makeParamSet(\n%s\n)\n" % body)
    return str(path)


# -- item 6: numeric discrete levels keep one type ------------------------------------------------------
def test_numeric_discrete_levels_reach_run_with_one_type_each():
    space = os.path.join(FIXTURES, "numeric_levels_space.R")
    optimizer = mbo(space)
    points = optimizer.design(12, 1)
    optimizer.tell([(p, p.params["x"]) for p in points])
    points += optimizer.propose(2, 2)
    scale = [p.params["scale"] for p in points]
    units = [p.params["units"] for p in points]
    assert set(scale) == {0.5, 1.0, 2.0} and {type(v) for v in scale} == {float}, scale
    assert set(units) == {16, 32, 64} and {type(v) for v in units} == {int}, units
    assert {type(p.params["mixed"]) for p in points} == {int, str}  # levels of different types keep their own
    # plain ParamHelpers: every row's value of a numeric-level parameter has one class (numeric)
    classes = plain_r('''
        ps <- makeParamSet(makeDiscreteParam("scale", values = c(0.5, 1, 2)), makeNumericParam("x", 0, 1))
        d <- generateDesign(12, ps)
        jsonlite::toJSON(unique(vapply(seq_len(nrow(d)), function(i) class(dfRowToList(d, ps, i)$scale),
                                       character(1))))''')
    assert classes == ["numeric"]


# -- item 1: a constant discrete parameter in requires= is compared by its level's name ------------------
def test_a_constant_discrete_level_in_requires_is_its_name(tmp_path):
    body = ('  makeDiscreteParam("opt", values = list(adam = "Adam")),\n'
            '  makeNumericParam("mom", lower = 0, upper = 1, requires = quote(opt == "adam")),\n'
            '  makeNumericParam("lr", lower = 0, upper = 1),\n'
            '  makeNumericParam("beta", lower = 0, upper = 1, requires = quote(opt == "Adam"))')
    space = write_space(tmp_path, body)
    optimizer = mbo(space)
    points = optimizer.design(8, 1)
    optimizer.tell([(p, p.params["lr"]) for p in points])
    points += optimizer.propose(2, 2)
    assert all(p.params["opt"] == "Adam" for p in points)  # run() gets the value
    assert all(0 <= p.params["mom"] <= 1 for p in points)  # active, as plain ParamHelpers has it
    assert all("beta" not in p.params for p in points)  # a comparison with the value is false there too
    active = plain_r('''
        ps <- makeParamSet(makeDiscreteParam("opt", values = list(adam = "Adam")),
                           makeNumericParam("mom", lower = 0, upper = 1, requires = quote(opt == "adam")),
                           makeNumericParam("lr", lower = 0, upper = 1),
                           makeNumericParam("beta", lower = 0, upper = 1, requires = quote(opt == "Adam")))
        d <- generateDesign(8, ps)
        jsonlite::toJSON(list(mom = sum(!is.na(d$mom)), beta = sum(!is.na(d$beta))), auto_unbox = TRUE)''')
    assert active == {"mom": 8, "beta": 0}


def test_a_constant_with_requires_on_a_named_level_is_put_back_when_active(tmp_path):
    body = ('  makeDiscreteParam("opt", values = list(adam = "Adam", sgd = "SGD")),\n'
            '  makeNumericParam("lr", lower = 0, upper = 1),\n'
            '  makeNumericParam("eps", lower = 0.5, upper = 0.5, requires = quote(opt == "adam"))')
    optimizer = mbo(write_space(tmp_path, body))
    points = optimizer.design(8, 1)
    assert {p.params["opt"] for p in points} == {"Adam", "SGD"}
    for p in points:
        assert ("eps" in p.params) == (p.params["opt"] == "Adam"), p.params


# -- item 2: level names that differ from values, with requires= on them ----------------------------------
NAMED_LEVELS = ('  makeDiscreteParam("opt", values = list(adam = "Adam", sgd = "SGD")),\n'
                '  makeNumericParam("mom", lower = 0, upper = 1, requires = quote(opt == "adam")),\n'
                '  makeNumericParam("lr", lower = 0, upper = 1)')


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_named_levels_with_requires_are_searched_by_name_and_run_with_values(tmp_path, mode):
    optimizer = mbo(write_space(tmp_path, NAMED_LEVELS), mode=mode)
    points = optimizer.design(8, 1)
    optimizer.tell([(p, p.params["lr"] + (0.5 if p.params["opt"] == "SGD" else 0)) for p in points])
    for step in range(2, 5):
        proposed = optimizer.propose(2, step)
        optimizer.tell([(p, p.params["lr"]) for p in proposed])
        points += proposed
    assert {p.params["opt"] for p in points} == {"Adam", "SGD"}  # run() gets the values
    assert {p.x["opt"] for p in points} == {"adam", "sgd"}  # the surrogate sees the names
    for p in points:
        assert ("mom" in p.params) == (p.params["opt"] == "Adam"), p.params
    # plain ParamHelpers: a design's rows compare by name, so mom is active exactly where opt is adam
    plain = plain_r('''
        ps <- makeParamSet(%s)
        d <- generateDesign(8, ps)
        jsonlite::toJSON(all((d$opt == "adam") == !is.na(d$mom)))''' % NAMED_LEVELS)
    assert plain == [True]


def test_plain_mbo_fails_on_named_levels_with_requires(tmp_path):
    """What plain mbo() does with the same space (the failure candle_mbo used to hit after its design)."""
    message = plain_r('''
        ps <- makeParamSet(%s)
        ctrl <- makeMBOControl()
        ctrl <- setMBOControlTermination(ctrl, iters = 1L)
        f <- smoof::makeSingleObjectiveFunction(fn = function(x) x$lr, par.set = ps, has.simple.signature = FALSE)
        set.seed(1)
        out <- tryCatch({ mbo(f, design = generateDesign(6, ps), control = ctrl, show.info = FALSE); "ok" },
                        error = function(e) conditionMessage(e))
        jsonlite::toJSON(out)''' % NAMED_LEVELS)
    assert "infeasible" in message[0], message


# -- item 5: async --crit mr is checked against what a request can ask for --------------------------------
def test_async_mr_is_refused_when_a_request_can_ask_for_several_points():
    from candle_mbo.errors import UsageError
    from candle_mbo.search.mbo import check_settings

    base = settings(mode="async", crit="mr", propose_points=1)
    with pytest.raises(UsageError, match="--crit mr cannot choose several points at once: async mode with 3"):
        check_settings(dict(base, request_points=3))  # 3 workers: a request can ask for 3 points
    check_settings(dict(base, request_points=1))  # one worker: one point at a time, mr is fine
    check_settings(dict(base, request_points=3, crit="cb"))
    # plain mbo() refuses a mean-response proposal of several points as well
    message = plain_r('''
        ps <- makeParamSet(makeNumericParam("x", 0, 1))
        f <- smoof::makeSingleObjectiveFunction(fn = function(x) x^2, par.set = ps)
        ctrl <- makeMBOControl(propose.points = 3L)
        ctrl <- setMBOControlInfill(ctrl, crit = makeMBOInfillCritMeanResponse())
        ctrl <- setMBOControlTermination(ctrl, iters = 1L)
        set.seed(1)
        jsonlite::toJSON(tryCatch({ mbo(f, control = ctrl, show.info = FALSE); "ok" },
                                  error = function(e) conditionMessage(e)))''')
    assert message != ["ok"], message


# -- item 3: every master knows the design size and the budget --------------------------------------------
def test_masters_given_the_same_results_are_in_the_same_state():
    from candle_mbo.search.masters import MasterLogic, make_optimizer

    space = os.path.join(FIXTURES, "branin_space.R")
    common = settings(mode="async", crit="adacb", propose_points=4, optimizer="mbo", space=space, budget=30,
                      design_size=10)
    master0 = MasterLogic(make_optimizer(common), 0)
    master1 = MasterLogic(make_optimizer(dict(common, master_index=1)), 1)
    design = master0.design(10, 1)
    for index, (proposal_id, x, params, _, _) in enumerate(design):  # all 10 run; master 0 proposed them
        master0.dispatched([("r%d" % index, 0, proposal_id, x)])
        master1.dispatched([("r%d" % index, 0, proposal_id, x)])
    told = [("r%d" % i, design[i][1], design[i][2]["x1"] + design[i][2]["x2"]) for i in range(3)]
    master0.tell(told)
    master1.tell(told)

    def state(logic):
        cm = logic.opt._env["cm"]
        return {"n_design": cm["n_design"][0], "budget": cm["budget"][0], "warmup": logic.opt._env["cm_warmup"]()[0],
                "pending": len(cm["pending"])}

    assert state(master0) == state(master1) == {"n_design": 10, "budget": 30, "warmup": 5, "pending": 7}
    # 3 of the 10 results are in, the warm-up is half the design: both propose random points
    assert [p[3] for p in master0.propose(1, 5)] == [p[3] for p in master1.propose(1, 6)] == ["random"]


# -- item 4: a proposal is pending for every master the moment it is made ---------------------------------
def test_other_masters_proposals_are_pending_from_their_proposal_on():
    from candle_mbo.search.masters import MasterLogic, make_optimizer

    space = os.path.join(FIXTURES, "branin_space.R")
    common = settings(mode="async", propose_points=4, optimizer="mbo", space=space, budget=30, design_size=8)
    masters = [MasterLogic(make_optimizer(dict(common, master_index=i)), i) for i in (0, 1)]
    design = masters[0].design(8, 1)
    running = [("r%d" % i, 0, item[0], item[1]) for i, item in enumerate(design)]
    for m in masters:
        m.dispatched(running)
        m.tell([(run_id, x, x["x1"] + x["x2"]) for run_id, _, _, x in running[:6]])

    def pending(logic):
        return len(logic.opt._env["cm"]["pending"])

    assert pending(masters[0]) == pending(masters[1]) == 2
    proposed = masters[0].propose(2, 5)
    masters[1].proposed([(0, item[0], item[1]) for item in proposed])
    assert pending(masters[0]) == pending(masters[1]) == 4  # the same picture of the search
    masters[1].dispatched([("r8", 0, proposed[0][0], proposed[0][1])])  # adopted once, not again
    assert pending(masters[1]) == 4
    masters[1].withdraw([(0, proposed[1][0])])  # will never run
    assert pending(masters[1]) == 3
