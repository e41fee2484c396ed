"""The mlrMBO bridge driven directly (MBOOptimizer / RandomSearch, the real mlrMBO in this process).

What run() receives, what the surrogate is told, batches of every criterion, progress for adacb,
resume by restore(), pending points, several optimizers in one R session.
"""

import json
import math
import os

import pytest

from conftest import FIXTURES

pytestmark = [pytest.mark.r, pytest.mark.usefixtures("mlrmbo")]

UNO = os.path.join(FIXTURES, "uno_quick_space.R")
PINNED = os.path.join(FIXTURES, "pinned_space.R")
BRANIN_SPACE = os.path.join(FIXTURES, "branin_space.R")
MIXED = os.path.join(FIXTURES, "mixed_space.R")


def settings(**over):
    base = {"propose_points": 2, "learner": "default", "crit": "default", "profile": "fast", "maximize": False,
            "mode": "sync", "lie": "believer", "random_lambda": False}
    base.update(over)
    return base


def mbo(space, **over):
    from candle_mbo.search.mbo import MBOOptimizer

    return MBOOptimizer(space, settings(**over))


def branin(p):
    x1, x2 = p.params["x1"], p.params["x2"]
    return (x2 - 5.1 / (4 * math.pi ** 2) * x1 ** 2 + 5 / math.pi * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * math.pi)) * \
        math.cos(x1) + 10


def uno_y(p):
    return (p.params["dropout"] - 0.2) ** 2 + math.log10(p.params["learning_rate"]) / 10 + \
        (0.1 if p.params["activations"][0] == "tanh" else 0)


def pending_ids(optimizer):
    return list(optimizer._env["cm"]["pending"])


def path_y(optimizer):
    """The objective column of mlrMBO's optimization path, as the surrogate sees it."""
    return list(optimizer._env["cm_path_y"]())


# -- item 1 and 7: what run() receives ------------------------------------------------------------------
def test_values_reach_run_as_plain_python_of_one_type_each():
    optimizer = mbo(UNO)
    points = optimizer.design(10, 1)
    optimizer.tell([(p, uno_y(p)) for p in points])
    points += optimizer.propose(2, 2)
    for p in points:
        params = p.params
        assert params["activations"] in (["relu", "relu"], ["relu", "tanh"], ["tanh", "relu"], ["tanh", "tanh"])
        assert params["dense"] in ([64, 32], [128, 64, 32]) and all(type(v) is int for v in params["dense"])
        assert type(params["batch_size"]) is int and 16 <= params["batch_size"] <= 128  # round(2^x): an int
        assert type(params["learning_rate"]) is float and type(params["dropout"]) is float
        assert params["epochs"] == 3 and type(params["epochs"]) is int  # constants put back
        assert params["cell_features"] == "expression" and params["warmup"] == 0.1
        assert set(p.x) == {"learning_rate", "batch_size", "dropout", "activations1", "activations2", "dense"}
        json.dumps(params)  # plain values only


def test_the_space_description_leaves_constants_out():
    optimizer = mbo(UNO)
    space = optimizer.space
    assert space["ids"] == ["epochs", "cell_features", "learning_rate", "batch_size", "dropout", "activations",
                            "dense", "warmup"]
    assert space["searched"] == ["learning_rate", "batch_size", "dropout", "activations1", "activations2", "dense"]
    assert space["constants"] == {"epochs": 3, "cell_features": "expression", "warmup": 0.1}
    assert space["dims"] == 6 and space["max_levels"] == 2


# -- item 2: constants and kriging ------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_pinned_parameters_leave_kriging_working(mode):
    optimizer = mbo(PINNED, mode=mode, profile="mlrmbo" if mode == "sync" else "fast")
    design = optimizer.design(6, 3)
    optimizer.tell([(p, branin(p)) for p in design])
    proposals = optimizer.propose(2, 4)
    assert [p.prop_type for p in proposals] == ["infill_cb", "infill_cb"], [p.info for p in proposals]
    assert all(p.params["epochs"] == 4 and p.params["optimizer"] == "adam" for p in proposals)
    assert optimizer.messages() == []


def test_a_space_of_constants_only_is_refused(tmp_path):
    from candle_mbo.errors import UsageError

    space = tmp_path / "space.R"
    space.write_text('param.set <- makeParamSet(makeIntegerParam("epochs", lower = 2, upper = 2))\n')
    with pytest.raises(UsageError, match="every parameter is constant"):
        mbo(str(space))


# -- items 3 and 4: what the surrogate is told -----------------------------------------------------------
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_diverged_run_and_a_failure_keep_the_search_alive(mode):
    optimizer = mbo(BRANIN_SPACE, mode=mode)
    design = optimizer.design(6, 5)
    values = [branin(p) for p in design]
    values[1] = 1.7976931348623157e308  # a diverged run returning the largest float
    values[2] = None  # a failed run
    told = optimizer.tell(list(zip(design, values)))
    assert all(math.isfinite(v) for v in told)
    ordinary = [v for v in values if v is not None and v < 1e100]
    assert told[1] == told[2] > max(ordinary)  # both imputed as the worst plus a margin
    for step in range(2):
        proposals = optimizer.propose(2, 10 + step)
        assert {p.prop_type for p in proposals} == {"infill_cb"}, [p.info for p in proposals]
        optimizer.tell([(p, branin(p)) for p in proposals])
    assert all(math.isfinite(v) for v in path_y(optimizer))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_failures_are_reimputed_over_the_current_range(mode):
    optimizer = mbo(BRANIN_SPACE, mode=mode)
    design = optimizer.design(4, 7)
    first = optimizer.tell([(design[0], 1.0), (design[1], None), (design[2], 2.0), (design[3], 3.0)])
    assert first[1] == pytest.approx(3.2)  # worst 3 + 10% of the range 2
    later = optimizer.propose(2, 8)
    optimizer.tell([(later[0], 50.0), (later[1], 100.0)])
    y = path_y(optimizer)
    assert y[1] == pytest.approx(100 + 9.9)  # re-imputed: still the worst point, never among the best
    assert y[1] > max(v for i, v in enumerate(y) if i != 1)


# -- issue 21 item 9: diverged runs enter capped at the divergence fence ------------------------------------
def diverging_branin(p):
    """Branin, but a run in the corner x1 > 7, x2 > 10 diverges (val_loss 1e20)."""
    return 1e20 if p.params["x1"] > 7 and p.params["x2"] > 10 else branin(p)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_diverged_values_enter_capped_and_the_cap_follows_the_runs(mode):
    from candle_mbo.reporting.plots import divergence_fence

    optimizer = mbo(BRANIN_SPACE, mode=mode)
    design = optimizer.design(6, 7)
    raw = [1.0, 2.0, 3.0, 1.5, 1e20, None]
    optimizer.tell(list(zip(design, raw)))
    fence = divergence_fence([v for v in raw if v is not None])
    assert fence == pytest.approx(2 + 100 * 1.4826)  # median 2, MAD 1: R and the figures share the rule
    assert optimizer._env["cm_fence"](optimizer._r.FloatVector([1.0, 2.0, 3.0, 1.5, 1e20]), True)[0] == \
        pytest.approx(fence)
    y = path_y(optimizer)
    assert y[:4] == pytest.approx([1.0, 2.0, 3.0, 1.5])  # values within the fence are untouched
    assert y[4] == pytest.approx(fence)  # what the fit sees of the diverged run: the fence, not 1e20
    assert y[5] == pytest.approx(fence + 0.1 * (fence - 1.0))  # the failure: over the capped range
    # the cap is recomputed before every fit: a diverging corner, told in later steps
    for step in range(2):
        batch = optimizer.propose(2, 8 + step)
        optimizer.tell([(p, diverging_branin(p)) for p in batch])
    corner = [p for p in optimizer.propose(2, 20)]
    optimizer.tell([(corner[0], 1e25), (corner[1], 1e30)])
    y = path_y(optimizer)
    raw_now = [v for v in optimizer._env["cm"]["raw_y"] if not math.isnan(v)]
    fence_now = divergence_fence(raw_now)
    assert max(y) <= fence_now * 1.1 + 1e-9 and max(y) < 1e6
    assert y[-2:] == pytest.approx([fence_now, fence_now])


def test_the_cap_can_be_turned_off_for_benchmarks():
    optimizer = mbo(BRANIN_SPACE, objective_cap=False)
    design = optimizer.design(5, 7)
    optimizer.tell(list(zip(design, [1.0, 2.0, 3.0, 1.5, 1e20])))
    assert path_y(optimizer)[4] == pytest.approx(1e20)


def test_log_transform_gives_the_surrogate_log10_and_keeps_ranks():
    optimizer = mbo(BRANIN_SPACE, objective_transform="log")
    design = optimizer.design(6, 7)
    told = optimizer.tell(list(zip(design, [0.01, 0.1, 1.0, 10.0, 0.0, None])))
    y = path_y(optimizer)
    assert y[:4] == pytest.approx([-2, -1, 0, 1])
    assert y[4] == pytest.approx(-3)  # 0: a decade below the smallest positive value, still the best
    assert y[5] == pytest.approx(1 + 0.1 * 4)  # the failure: worst + 10% of the (log) range
    assert told[0] == pytest.approx(-2)


def test_maximizing_imputes_below_the_worst():
    optimizer = mbo(BRANIN_SPACE, maximize=True)
    design = optimizer.design(3, 7)
    told = optimizer.tell([(design[0], 1.0), (design[1], None), (design[2], 2.0)])
    assert told[1] == pytest.approx(0.9)


# -- item 5: criteria in batches, refused where they cannot work -----------------------------------------
@pytest.mark.parametrize("mode, crit", [("sync", "cb"), ("sync", "adacb"), ("sync", "ei"), ("sync", "aei"),
                                        ("async", "adacb"), ("async", "ei"), ("async", "eqi"), ("async", "se")])
def test_batch_criteria_propose_distinct_points(mode, crit):
    optimizer = mbo(BRANIN_SPACE, mode=mode, crit=crit, propose_points=3)
    design = optimizer.design(6, 1)
    optimizer.tell([(p, branin(p)) for p in design])
    proposals = optimizer.propose(3, 2)
    assert len(proposals) == 3 and {p.prop_type for p in proposals} == {"infill_" + crit}, \
        [(p.prop_type, p.info) for p in proposals]
    assert len({(round(p.params["x1"], 6), round(p.params["x2"], 6)) for p in proposals}) == 3


@pytest.mark.parametrize("mode, crit", [("sync", "eqi"), ("sync", "mr"), ("sync", "se"), ("async", "mr")])
def test_criteria_that_cannot_batch_are_refused_before_r_starts(mode, crit):
    from candle_mbo.errors import UsageError

    with pytest.raises(UsageError) as info:
        mbo(os.path.join(FIXTURES, "no-such-space.R"), mode=mode, crit=crit, propose_points=4)
    message = str(info.value)
    assert message.startswith("--crit %s cannot choose several points at once" % crit)
    assert "choose one of default, cb, adacb, ei, aei" in message


def test_one_point_at_a_time_takes_every_criterion():
    optimizer = mbo(BRANIN_SPACE, crit="mr", propose_points=1)
    design = optimizer.design(5, 1)
    optimizer.tell([(p, branin(p)) for p in design])
    assert [p.prop_type for p in optimizer.propose(1, 2)] == ["infill_mean"]  # mlrMBO names mr "mean"


# -- item 6: adacb adapts over the budget ----------------------------------------------------------------
def adacb_lambdas(budget):
    """adacb's batch lambdas at the first and the last step of a sync search (same seed at both)."""
    optimizer = mbo(BRANIN_SPACE, crit="adacb", propose_points=2)
    if budget:
        optimizer.set_budget(budget)
    design = optimizer.design(6, 1)
    optimizer.tell([(p, branin(p)) for p in design])
    first = optimizer.propose(2, 99)
    optimizer.tell([(p, branin(p)) for p in first])
    for step in range(2):
        batch = optimizer.propose(2, 50 + step)
        optimizer.tell([(p, branin(p)) for p in batch])
    last = optimizer.propose(2, 99)
    return [p.info["lambda"] for p in first], [p.info["lambda"] for p in last]


def test_adacb_moves_from_exploring_to_exploiting_over_the_budget():
    first, last = adacb_lambdas(budget=6 + 4 * 2)
    # mlrMBO's progress is step/iters: 1/4 at the first step, 4/4 at the last; lambda goes from 2 to 0.5
    # (x the cb lambda 1 of a numeric space) as progress goes from 0 to 1; the Exp(1) draws cancel out
    expected = (0.5) / (0.75 * 2 + 0.25 * 0.5)
    assert [b / a for a, b in zip(first, last)] == pytest.approx([expected, expected], rel=1e-9)


# -- resume: restore() ------------------------------------------------------------------------------------
def run_steps(optimizer, seeds, order=None):
    """Design then sync steps; each step told in ``order`` (result arrival); returns the journal."""
    journal = []
    design = optimizer.design(8, seeds[0])
    told = [(p, uno_y(p)) for p in design]
    optimizer.tell(told[::-1])  # results arrive in any order; the batch enters in proposal order
    journal += [dict(x=p.x, y=y, step=0, prop_type=p.prop_type, info=p.info) for p, y in told]
    for step, seed in enumerate(seeds[1:], 1):
        batch = optimizer.propose(3, seed)
        told = [(p, uno_y(p)) for p in batch]
        optimizer.tell(told[::-1])
        journal += [dict(x=p.x, y=y, step=step, prop_type=p.prop_type, info=p.info) for p, y in told]
    return journal


def same_points(a, b):
    return [p.x for p in a] == [p.x for p in b]


def test_a_restored_sync_search_proposes_what_the_uninterrupted_one_proposes():
    uninterrupted = mbo(UNO, propose_points=3)
    journal = run_steps(uninterrupted, [1, 2, 3])
    expected = uninterrupted.propose(3, 4)

    resumed = mbo(UNO, propose_points=3)
    assert resumed.restore(journal) == []
    assert same_points(resumed.propose(3, 4), expected)

    # killed while step 2 ran: its middle task is rerun, the step enters the path once it is told
    rerun = mbo(UNO, propose_points=3)
    items = [dict(item) for item in journal]
    items[-2]["running"] = True
    pending = rerun.restore(items)
    assert [p.x for p in pending] == [journal[-2]["x"]] and pending[0].prop_type == journal[-2]["prop_type"]
    rerun.tell([(pending[0], journal[-2]["y"])])
    assert same_points(rerun.propose(3, 4), expected)


# -- pending points: adopt, discard, async batches ---------------------------------------------------------
def test_adopted_points_are_pending_and_discarded_ones_are_not():
    optimizer = mbo(BRANIN_SPACE, mode="async", propose_points=4)
    design = optimizer.design(6, 1)
    optimizer.tell([(p, branin(p)) for p in design])
    adopted = optimizer.adopt({"x1": 9.0, "x2": 2.0})
    assert adopted.params == {"x1": 9.0, "x2": 2.0} and adopted.prop_type == "adopted"
    assert pending_ids(optimizer) == [adopted.id]
    proposals = optimizer.propose(2, 2)
    optimizer.discard(proposals)
    assert pending_ids(optimizer) == [adopted.id]
    optimizer.tell([(adopted, 1.5)])
    assert path_y(optimizer)[-1] == 1.5


def test_a_discarded_point_does_not_hold_a_sync_batch_open():
    optimizer = mbo(BRANIN_SPACE, propose_points=3)
    design = optimizer.design(5, 1)
    optimizer.tell([(p, branin(p)) for p in design])
    batch = optimizer.propose(3, 2)
    optimizer.discard(batch[2:])
    optimizer.tell([(p, branin(p)) for p in batch[:2]])
    assert len(path_y(optimizer)) == 7


def test_async_propose_k_draws_k_distinct_lambdas_from_one_fit():
    optimizer = mbo(BRANIN_SPACE, mode="async", propose_points=8, random_lambda=True)
    design = optimizer.design(6, 1)
    optimizer.tell([(p, branin(p)) for p in design[:4]])  # two design points still running
    proposals = optimizer.propose(4, 2)
    assert [p.prop_type for p in proposals] == ["infill_cb"] * 4
    assert len({p.info["lambda"] for p in proposals}) == 4
    assert len({(p.x["x1"], p.x["x2"]) for p in proposals}) == 4


@pytest.mark.parametrize("space, y", [(BRANIN_SPACE, branin), (MIXED, lambda p: p.x["learning_rate"] + p.x["weights1"])])
def test_a_batchs_later_points_come_from_one_pool_and_lie_where_the_model_says(space, y):
    """The pool picks, for each lambda, a candidate whose confidence bound is close to what a focus search
    of its own finds (the criterion value of the pool's point is at most a little worse), on a numeric and
    on a mixed space with requires= (every point inside the space, none a fallback)."""
    def propose(later_infill):
        optimizer = mbo(space, mode="async", propose_points=12, random_lambda=True, later_infill=later_infill)
        optimizer.set_budget(60, 16)
        design = optimizer.design(16, 3)
        optimizer.tell([(p, y(p)) for p in design])
        return optimizer.propose(12, 5)

    pooled, searched = propose("pool"), propose("focussearch")
    for batch in (pooled, searched):
        assert [p.prop_type for p in batch] == ["infill_cb"] * 12, [p.info for p in batch]
        assert len({json.dumps(p.x, sort_keys=True) for p in batch}) == 12
    # the same lambdas (one draw per batch), each with a criterion value near its own focus search's
    by_lambda = {round(p.info["lambda"], 12): p.info["crit"] for p in searched}
    spread = max(by_lambda.values()) - min(by_lambda.values())
    for p in pooled:
        assert by_lambda[round(p.info["lambda"], 12)] - p.info["crit"] > -0.25 * spread


def test_a_batch_larger_than_a_small_discrete_space_still_comes_back_whole(tmp_path):
    space = tmp_path / "small.R"
    space.write_text('param.set <- makeParamSet(makeDiscreteParam("opt", c("adam", "sgd", "rmsprop")),\n'
                     '                          makeLogicalParam("bn"))\n')
    optimizer = mbo(str(space), mode="async", propose_points=8, random_lambda=True)
    optimizer.set_budget(40, 6)
    design = optimizer.design(6, 1)
    optimizer.tell([(p, {"adam": 0.1, "sgd": 0.5, "rmsprop": 0.3}[p.params["opt"]] + 0.1 * p.params["bn"])
                    for p in design])
    batch = optimizer.propose(8, 2)
    assert [p.prop_type for p in batch] == ["infill_cb"] * 8, [p.info for p in batch]
    assert len({(p.x["opt"], p.x["bn"]) for p in batch}) == 6  # every point of the space before any repeats


def test_rows_bound_once_make_the_same_path_as_rows_added_one_by_one():
    """cm_appending (a tell's rows bound to the path once) leaves the table, births, deaths, errors, run
    times and extras exactly as addOptPathEl row by row does."""
    optimizer = mbo(MIXED)
    build = optimizer._r.r("""function(appending) {
      ps <- makeParamSet(makeNumericParam("a", 0, 1), makeDiscreteParam("b", c("u", "v")),
                         makeNumericParam("c", 0, 1, requires = quote(b == "u")))
      make <- function() {
        op <- makeOptPathDF(ps, "y", TRUE, include.error.message = TRUE, include.exec.time = TRUE,
                            include.extra = TRUE)
        addOptPathEl(op, x = list(a = 0.5, b = "u", c = 0.1), y = 1, dob = 0L, extra = list(e = 1))
        op
      }
      rows <- list(list(a = 0.1, b = "v", c = NA), list(a = 0.2, b = "u", c = 0.3), list(a = 0.9, b = "v", c = NA))
      add <- function(op) for (i in seq_along(rows)) {
        addOptPathEl(op, x = rows[[i]], y = i, dob = i, error.message = if (i == 2) "boom" else NA_character_,
                     exec.time = i / 10, extra = list(e = i * 2))
      }
      one <- make()
      add(one)
      bound <- make()
      appending(bound, add(bound))
      fields <- c("path", "dob", "eol", "error.message", "exec.time", "extra")
      c(vapply(fields, function(f) identical(one$env[[f]], bound$env[[f]]), logical(1)), rows = nrow(bound$env$path))
    }""")
    same = build(optimizer._env["cm_appending"])
    assert dict(zip(same.names, list(same))) == {"path": 1, "dob": 1, "eol": 1, "error.message": 1,
                                                 "exec.time": 1, "extra": 1, "rows": 4}


def test_points_adopted_in_one_call_are_pending_until_told_or_discarded():
    optimizer = mbo(BRANIN_SPACE, mode="async", propose_points=8)
    design = optimizer.design(6, 1)
    optimizer.tell([(p, branin(p)) for p in design])
    xs = [{"x1": 1.0 + i, "x2": 2.0} for i in range(4)]
    adopted = optimizer.adopt_many(xs)
    assert [p.x for p in adopted] == xs and [p.prop_type for p in adopted] == ["adopted"] * 4
    assert sorted(pending_ids(optimizer)) == sorted(p.id for p in adopted)
    assert optimizer.tell([(adopted[0], 3.0)]) and optimizer.discard([adopted[1]]) is None
    assert sorted(pending_ids(optimizer)) == sorted(p.id for p in adopted[2:])
    assert path_y(optimizer)[-1] == 3.0  # the told one entered the path
    assert optimizer.adopt_many([]) == []


def test_later_infill_is_checked_before_r_starts():
    from candle_mbo.search.mbo import UsageError, check_settings

    with pytest.raises(UsageError, match="later_infill focus: unknown; choose one of pool, focussearch"):
        check_settings(settings(later_infill="focus"))


# -- several optimizers in one R session -------------------------------------------------------------------
def test_optimizers_in_one_process_are_independent():
    def drive(optimizers):
        out = {}
        for name, optimizer in optimizers:
            out[name] = optimizer.design(6, 1 if name == "a" else 2)
        for name, optimizer in optimizers:
            optimizer.tell([(p, branin(p)) for p in out[name]])
        for name, optimizer in optimizers:
            out[name] = [p.x for p in optimizer.propose(2, 3 if name == "a" else 4)]
        return out

    together = drive([("a", mbo(BRANIN_SPACE)), ("b", mbo(BRANIN_SPACE))])
    alone = {**drive([("a", mbo(BRANIN_SPACE))]), **drive([("b", mbo(BRANIN_SPACE))])}
    assert together == alone and together["a"] != together["b"]


# -- random search: one optimizer behind the same contract --------------------------------------------------
def test_random_search_samples_the_same_space():
    from candle_mbo.search.mbo import RandomSearch, make_optimizer

    optimizer = make_optimizer("random", UNO, {"mode": "async"})
    assert isinstance(optimizer, RandomSearch)
    design = optimizer.design(4, 1)
    optimizer.tell([(p, uno_y(p)) for p in design])
    proposals = optimizer.propose(3, 2)
    assert [p.prop_type for p in proposals] == ["random"] * 3
    assert all(p.params["epochs"] == 3 and len(p.params["activations"]) == 2 for p in proposals)
    optimizer.tell([(proposals[0], None)])
    optimizer.discard(proposals[1:])
    assert optimizer.save("/nonexistent") is None


# -- proposal latency: capped fits, hyperparameters kept between estimates ------------------------------------
def test_a_capped_fit_keeps_the_best_half_and_spreads_the_rest():
    optimizer = mbo(BRANIN_SPACE, mode="async", max_fit_rows=12)
    design = optimizer.design(40, 1)
    values = [branin(p) for p in design]
    optimizer.tell(list(zip(design, values)))
    kept = list(optimizer._r.r("function(env) { op <- env$cm_fit_path(env$cm$learner, 0L); "
                                "op$env$path$cm_objective }")(optimizer._env))
    assert len(kept) == 12
    assert sorted(values)[:6] == sorted(kept)[:6]  # the best half of the allowance
    assert max(kept) > sorted(values)[20]  # the rest spreads over the space, bad regions included
    proposals = optimizer.propose(3, 2)
    assert {p.prop_type for p in proposals} == {"infill_cb"}


def test_a_sync_search_past_the_cap_still_proposes_batches():
    optimizer = mbo(BRANIN_SPACE, max_fit_rows=10, propose_points=3)
    design = optimizer.design(12, 1)
    optimizer.tell([(p, branin(p)) for p in design])
    batch = optimizer.propose(3, 2)
    assert [p.prop_type for p in batch] == ["infill_cb"] * 3 and len({p.info["lambda"] for p in batch}) == 3
    optimizer.tell([(p, branin(p)) for p in batch])
    assert len(path_y(optimizer)) == 15


def test_async_kriging_estimates_again_only_after_ten_percent_more_results():
    optimizer = mbo(BRANIN_SPACE, mode="async", propose_points=4)
    design = optimizer.design(20, 1)
    optimizer.tell([(p, branin(p)) for p in design])
    estimated_at = lambda: int(optimizer._env["cm"]["hyper"].rx2("n")[0])  # noqa: E731
    first = optimizer.propose(1, 2)
    assert estimated_at() == 20
    optimizer.tell([(first[0], branin(first[0]))])
    second = optimizer.propose(1, 3)
    assert estimated_at() == 20  # 21 results: hyperparameters kept
    optimizer.tell([(second[0], branin(second[0]))])
    optimizer.propose(1, 4)
    assert estimated_at() == 22  # 10% more: estimated again


@pytest.mark.parametrize("batch", ["believer", "both"])
def test_the_sequential_believer_spreads_a_batch_too(batch):
    optimizer = mbo(BRANIN_SPACE, mode="async", propose_points=4, batch=batch, random_lambda=True)
    design = optimizer.design(8, 1)
    optimizer.tell([(p, branin(p)) for p in design])
    proposals = optimizer.propose(4, 2)
    assert [p.prop_type for p in proposals] == ["infill_cb"] * 4
    assert len({(p.x["x1"], p.x["x2"]) for p in proposals}) == 4
    assert ("lambda" in proposals[0].info) == (batch == "both")


def test_async_proposals_wait_for_half_the_design_to_succeed():
    optimizer = mbo(BRANIN_SPACE, mode="async", propose_points=4)
    design = optimizer.design(8, 1)
    optimizer.tell([(design[0], branin(design[0])), (design[1], None), (design[2], branin(design[2]))])
    assert [p.prop_type for p in optimizer.propose(2, 2)] == ["random", "random"]  # 2 of the 4 needed
    optimizer.tell([(p, branin(p)) for p in design[3:5]])
    assert [p.prop_type for p in optimizer.propose(1, 3)] == ["infill_cb"]
