"""Space semantics as plain ParamHelpers / mlrMBO define them (issue 21 items 1-6).

Each test puts candle_mbo next to what plain ParamHelpers (``generateDesign``, ``isFeasible``,
``dfRowToList``) or ``mbo()`` does with the same space, in the same R session (rpy2).
"""

import json
import os

import pytest

from conftest import FIXTURES

pytestmark = [pytest.mark.r, pytest.mark.usefixtures("mlrmbo")]


def settings(**over):
    base = {"propose_points": 2, "learner": "default", "crit": "default", "profile": "fast", "maximize": False,
            "mode": "sync", "lie": "believer", "random_lambda": False}
    base.update(over)
    return base


def mbo(space, **over):
    from candle_mbo.search.mbo import MBOOptimizer

    return MBOOptimizer(space, settings(**over))


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
