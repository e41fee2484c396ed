"""The search source and the dispatcher with simulated workers (bench/scale_sim.py's harness) and a
pure-Python optimizer: budget met exactly, every master used and told everything, batched requests."""

import logging
import os
import random
import sys
import time

import pytest

from candle_mbo.search.optimizer import Proposal

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
import scale_sim  # noqa: E402


class BoxOptimizer:
    """Random points in [0, 1]^2 behind the optimizer contract, remembering what it was told."""

    def __init__(self, index):
        self.index = index
        self.next_id = 0
        self.pending = {}
        self.told = []
        self.told_ids = []
        self.requests = []

    def _proposal(self, rng, prop_type):
        self.next_id += 1
        x = {"x1": rng.random(), "x2": rng.random()}
        proposal = Proposal(self.next_id, x, dict(x), prop_type, {})
        self.pending[proposal.id] = proposal
        return proposal

    def design(self, n, seed):
        rng = random.Random(seed)
        return [self._proposal(rng, "initdesign") for _ in range(n)]

    def propose(self, k, seed):
        time.sleep(0.02)  # a proposal takes time: meanwhile workers free, so the next request asks for more
        self.requests.append((k, len(self.pending)))
        rng = random.Random(seed)
        return [self._proposal(rng, "infill_cb") for _ in range(k)]

    def tell(self, results):
        for point, y in results:
            if isinstance(point, Proposal):
                self.pending.pop(point.id, None)
                self.told_ids.append(point.id)
            self.told.append(y)

    def adopt(self, x):
        self.next_id += 1
        proposal = Proposal(self.next_id, x, x, "adopted", {})
        self.pending[proposal.id] = proposal
        return proposal

    def discard(self, proposals):
        for proposal in proposals:
            self.pending.pop(proposal.id, None)

    def restore(self, items):
        """As the R side does: the path is rebuilt step by step, and the running points come back by step."""
        self.told += [i["y"] for i in items if not i["running"]]
        by_step = sorted((i for i in items if i["running"]), key=lambda i: i["step"])
        return [self.adopt(i["x"]) for i in by_step]

    def messages(self):
        return []


@pytest.mark.parametrize("workers, masters", [(8, 1), (64, 4)])
def test_an_async_search_meets_its_budget_exactly_and_every_master_learns_everything(workers, masters):
    made = []

    def make(index):
        made.append(BoxOptimizer(index))
        return made[-1]

    budget = workers * 3
    result = scale_sim.simulate(workers, masters, 0.2, budget, "branin", 1, make, logging.getLogger("test"))
    assert result["evaluations"] == budget
    for optimizer in made:
        assert len(optimizer.told) == budget  # every finished evaluation reached every master
        assert not optimizer.pending  # and every running point was told or dropped
    assert all(optimizer.requests for optimizer in made)  # every master proposed
    batches = [k for optimizer in made for k, _ in optimizer.requests]
    assert max(batches) > 1  # several points per proposal when several workers wait
    assert 0.5 < result["utilization"] <= 1.0


def test_a_sync_search_tells_whole_batches_in_proposal_order():
    made = []

    def make(index):
        made.append(BoxOptimizer(index))
        return made[-1]

    result = scale_sim.simulate(4, 1, 1.0, 15, "branin", 2, make, logging.getLogger("test"), mode="sync",
                                propose_points=3, design=6)
    assert result["evaluations"] == 15
    optimizer = made[0]
    assert [k for k, _ in optimizer.requests] == [3, 3, 3]  # 6 design + 3 + 3 + 3 = 15
    assert all(pending == 0 for _, pending in optimizer.requests)  # nothing running when a batch is proposed
    assert optimizer.told_ids == sorted(optimizer.told_ids)  # design, then each batch, in proposal order


def test_a_resume_pairs_each_interrupted_run_with_its_own_point_when_steps_were_dispatched_out_of_order():
    """Two masters dispatch their steps out of order; after a resume, each rerun's result must be told
    against its own point."""
    from candle_mbo.core.journal import Replay
    from candle_mbo.search.masters import MasterLogic
    from candle_mbo.core.sources import SearchSource

    def entry(run_id, step, x):
        return {"event": "dispatched", "run_id": run_id, "params": {"x1": x}, "x": {"x1": x}, "step": step,
                "prop_type": "infill_cb", "master": step % 2}

    journal = [entry("run-0001", 0, 0.1), entry("run-0002", 2, 0.2), entry("run-0003", 1, 0.3),
               {"run_id": "run-0001", "status": "ok", "objective": 1.0}]
    optimizer = BoxOptimizer(0)
    logic = MasterLogic(optimizer, 0)

    class Handle:
        index = 0
        busy = False
        last_seconds = None

        def restore(self, items, running_ids):
            logic.restore(items, running_ids)

        def dispatched(self, items):
            logic.dispatched(items)

        def requested(self):
            return 0

    settings = {"budget": 10, "design_size": 1, "mode": "async", "propose_points": 2, "seed": 1}
    source = SearchSource([Handle()], settings, logging.getLogger("test"))
    tasks = source.resume(Replay(journal))
    assert [t.run_id for t in tasks] == ["run-0003", "run-0002"]  # by step
    for run_id, x in (("run-0002", 0.2), ("run-0003", 0.3)):
        assert logic.running[run_id].x == {"x1": x}


def source_with_running(n, since, prop_type="infill_cb", step=0, masters=(), budget=1000, design_size=63):
    """An async SearchSource with ``n`` points running since ``since`` (in dispatch order), and a View."""
    from candle_mbo.core.dispatch import View
    from candle_mbo.core.sources import SearchSource, _Point

    source = SearchSource(list(masters), {"budget": budget, "design_size": design_size, "mode": "async",
                                          "propose_points": design_size, "seed": 1}, logging.getLogger("test"))
    for i in range(n):
        point = _Point("run-%04d" % i, 0, (i, {"x1": 0.0}, {"x1": 0.0}, prop_type, {}), step)
        point.since = since
        source.running[point.run_id] = point
    view = View()
    view.running, view.idle, view.queued = n, 0, 0
    return source, view


def test_the_batch_for_runs_that_end_together_is_asked_for_before_they_end():
    """63 runs of 20 s started together: the proposal for all of them (about 0.1 s a point) is asked for
    some 6 s before they end, not one point at a time once they have ended."""
    source, view = source_with_running(63, 100.0, step=1)
    source.durations.extend([20.0] * 10)
    source.point_s = 0.09
    for now, expected in ((105.0, 1), (112.0, 1), (114.5, 63), (119.0, 63)):
        source.now = view.now = now
        assert source._expected_frees(view) == expected, now


def test_runs_past_their_typical_end_are_a_tail_not_a_batch_to_ask_for():
    """Run times spread (lognormal): the first results are the short runs; the many still running are
    past the median but not about to end, so one point is asked for, not the rest of the budget."""
    source, view = source_with_running(60, 0.0, design_size=64)
    source.point_s = 0.09
    source.durations.extend([200.0])
    source.now = view.now = 200.0
    assert source._expected_frees(view) == 1  # one result says nothing yet
    source.durations.extend([210.0, 220.0, 230.0])
    source.now = view.now = 240.0
    assert source._expected_frees(view) == 1  # the 60 still running are past the median by far: a tail


def test_runs_a_moment_past_a_tight_cluster_of_run_times_are_ending_now():
    """Fixed-length runs started together: the first three results took 20 s; the other 60, 20.02 s in,
    are ending now (their batch is asked for at once), not a long tail."""
    source, view = source_with_running(60, 0.0, prop_type="initdesign")
    source.durations.extend([20.0, 20.0, 20.01])
    source.now = view.now = 20.02
    assert source._expected_frees(view) == 60
    source.now = view.now = 25.0  # well past the cluster: a tail after all
    assert source._expected_frees(view) == 1


def test_no_point_is_asked_for_while_queued_tasks_will_take_the_next_free_workers():
    """An 8-point design on 2 workers: 6 design points wait in the pool. A proposal made now would be
    made from the first results only (before the surrogate can be fitted); the design's rest takes the
    next frees, so no master is asked until the backlog is gone -- then one point ahead."""
    class Master:
        busy = False

        def __init__(self):
            self.asked = []

        def requested(self):
            return 0

        def request(self, k, step, seed):
            self.asked.append(k)

    master = Master()
    # dispatched: 2 running on the workers, the rest queued in the pool
    source, view = source_with_running(8, 0.0, prop_type="initdesign", masters=[master], budget=16, design_size=8)
    source.designed = True
    view.running = 2
    source.now = view.now = 1.0
    for queued in (6, 3, 1):
        view.queued = queued
        source._take_async(view)
        assert master.asked == [], queued
    view.queued = 0
    source._take_async(view)
    assert master.asked == [1]


# -- the cost model (bench/cost_model.py, scale_sim --cost-model) ------------------------------------------
def test_the_cost_fit_recovers_the_curve_it_was_measured_from():
    import cost_model

    truth = {"propose": [0.3, 0.002, 0.01, 0.004, 0.5], "tell": [0.01, 0.0, 0.001, 0.0003, 0.0001]}
    rows, rng = [], random.Random(3)
    for kind in cost_model.FEATURES:
        for _ in range(60):
            state = {"k": rng.choice([1, 4, 16, 64]), "n": rng.choice([300, 4000, 16000]),
                     "pending": rng.choice([0, 4000]), "estimate": rng.random() < 0.2}
            weights = truth.get(kind, [0.01] + [0.0] * (len(cost_model.FEATURES[kind]) - 1))
            seconds = cost_model.CostModel({kind: weights}).seconds(kind, **state) * rng.uniform(0.97, 1.03)
            rows.append(dict(state, kind=kind, seconds=seconds))
    fitted = cost_model.fit(rows)
    for kind, weights in truth.items():
        assert fitted[kind] == pytest.approx(weights, rel=0.15, abs=2e-4)


def free_calls(**weights):
    """A cost model where every call is free but the ``weights`` given."""
    import cost_model

    return cost_model.CostModel(dict({kind: [0.0] * len(names) for kind, names in cost_model.FEATURES.items()},
                                     **weights))


def cost_model_sim(propose_weights, workers=64, budget=256):
    import cost_model

    model = free_calls(propose=propose_weights)
    made = []

    def make(index):
        made.append(cost_model.StandIn(model, "branin", index))
        return made[-1]

    result = scale_sim.simulate(workers, 1, 1.0, budget, "branin", 1, make, logging.getLogger("test"))
    return result, made[0]


def test_a_cost_model_simulation_charges_the_fitted_cost_on_the_virtual_clock():
    """Free proposals keep 64 workers with 1 s runs busy; at 0.5 s + 0.05 s a point one master cannot
    (the stand-in's own time is nothing either way: only the model's seconds move the clock)."""
    cheap, optimizer = cost_model_sim([0.0, 0.0, 0.0, 0.0, 0.0])
    dear, _ = cost_model_sim([0.5, 0.05, 0.0, 0.0, 0.0])
    assert cheap["evaluations"] == dear["evaluations"] == 256
    assert optimizer.told == 256 and optimizer.pending == 0
    assert cheap["busy_while_work"] > 0.9
    assert dear["busy_while_work"] < cheap["busy_while_work"] - 0.2
    assert cheap["mean_proposal_s"] == 0.0 and dear["mean_proposal_s"] > 0.2  # warm-up proposals cost nothing here


def test_the_stand_in_keeps_the_warm_up_and_the_estimate_rule_of_the_r_side():
    import cost_model

    model = free_calls(random=[1.0, 0.0, 0.0], propose=[10.0, 0.0, 0.0, 0.0, 100.0])
    optimizer = cost_model.StandIn(model, "hartmann6", 1)
    design = optimizer.design(40, 1)
    optimizer.tell([(p, 1.0) for p in design[:19]])
    optimizer.propose(2, 1)
    assert optimizer.take_charge() == 1.0  # 19 of 40 back: still the random warm-up
    charges = []
    for told in range(19, 23):
        optimizer.tell([(design[told], 1.0)])
        optimizer.propose(2, told)
        charges.append(optimizer.take_charge())
    # the first fit (20 told) estimates; 21 < 1.1 x 20 keeps the hyperparameters; 22 estimates again
    assert charges == [110.0, 10.0, 110.0, 10.0]


# -- results that queue up behind a proposal are told in one call ------------------------------------------
class CallLog:
    """An optimizer that records its calls; propose waits for ``release`` (a long proposal)."""

    def __init__(self):
        import threading

        self.calls = []
        self.release = threading.Event()

    def propose(self, k, seed):
        self.release.wait(10)
        self.calls.append(("propose", k))
        return []

    def tell(self, results):
        self.calls.append(("tell", len(results)))

    def adopt(self, x):
        self.calls.append(("adopt", x["x1"]))
        return Proposal(0, x, x, "adopted", {})

    def messages(self):
        return []


def test_master_zero_tells_the_results_that_queued_behind_a_proposal_in_one_call_in_order():
    from candle_mbo.search.masters import LocalMaster

    optimizer = CallLog()
    master = LocalMaster()
    master.begin(lambda settings: optimizer, {})
    master.ready()
    master.request(4, 1, 7)  # busy in R
    for i in range(5):
        master.tell([("run-%d" % i, {"x1": i}, 0.5)])
    master.dispatched([("run-9", 1, 3, {"x1": 9.0})])  # another master's point: an adopt, in between
    master.tell([("run-7", {"x1": 7}, 0.5)])
    master.tell([("run-8", {"x1": 8}, 0.5)])
    optimizer.release.set()
    master.call(lambda: None)  # everything queued before this has run
    assert optimizer.calls == [("propose", 4), ("tell", 5), ("adopt", 9.0), ("tell", 2)]


def test_an_optimizer_rank_tells_the_results_that_queued_up_in_one_call_in_order():
    from candle_mbo.pool.transport import queue_pair
    from candle_mbo.search.masters import optimizer_rank

    optimizer = CallLog()
    dispatcher, rank = queue_pair()
    for i in range(3):
        dispatcher.send(1, ("tell", [("run-%d" % i, {"x1": i}, 0.5)]))
    dispatcher.send(1, ("dispatched", [("run-9", 0, 3, {"x1": 9.0})]))
    dispatcher.send(1, ("tell", [("run-7", {"x1": 7}, 0.5)]))
    dispatcher.send(1, ("tell", [("run-8", {"x1": 8}, 0.5)]))
    dispatcher.send(1, ("stop", None))
    optimizer_rank(rank, {"master_index": 1}, lambda settings: optimizer)
    assert optimizer.calls == [("tell", 3), ("adopt", 9.0), ("tell", 2)]
