"""The optimizer contract: ask/tell, and nothing about MPI.

An optimizer hands out ``Proposal`` objects and is told their outcomes. It owns nothing durable: the
task journal is the source of truth, and ``restore()`` rebuilds an optimizer from it. All calls come
from one thread. Two implementations exist, both in ``candle_mbo.search.mbo`` (both load the ParamHelpers
space through R): ``MBOOptimizer`` (mlrMBO) and ``RandomSearch`` (``--optimizer random``).

Attributes and methods:

``space``
    The space as the optimizer sees it: ``ids`` (every parameter of the space file, in order),
    ``searched`` (those searched: constants left out), ``columns`` (the keys of a point ``x``: searched
    parameters, vectors element-wise), ``constants`` ({id: value run() receives}), ``dims`` (searched
    dimensions), ``max_levels`` (most levels of a searched discrete parameter), ``params`` (one
    description per parameter), ``numeric_only``, ``has_requires``, ``has_forbidden``.
``design(n, seed) -> [Proposal]``
    The initial design: a Latin hypercube in which every level of every discrete and logical
    parameter appears (step 0).
``propose(k, seed) -> [Proposal]``
    ``k`` points; one surrogate fit serves the ``k`` where the method allows it. Pending points (handed
    out, neither told nor discarded: own proposals and adopted points) are taken into account.
``tell([(Proposal | x dict, y | None)]) -> [float | None]``
    Results; ``y`` None for a run that produced no value (failed, timeout, crashed). Returns the values
    the surrogate receives for them now (a failure is re-imputed before every fit; None while no run
    has succeeded). A Proposal is told once; an x dict (a point never handed out here) is just data.
``adopt(x) -> Proposal``
    Registers a point made elsewhere (a point another master proposed and is running) as pending;
    tell it later through the returned Proposal.
``adopt_many([x]) -> [Proposal]``
    ``adopt`` for many points in one call (another master's batch); the Proposals carry no params.
``discard([Proposal])``
    Proposals that will never run (budget reached, job ending): no longer pending.
``restore(items) -> [Proposal]``
    Resume. ``items``: the journal's tasks in dispatch order, each ``{"x", "y" (None: failed),
    "step", "prop_type", "info", "running"}``; ``running`` true for a task dispatched and not
    finished (it runs again). Rule: items are grouped by step (dispatch order kept within a step);
    step 0 is the design (mlrMBO's initSMBO design); each later step enters the optimization path as
    one loop, in dispatch order, with the extras its proposal had (``prop_type``, ``info``). In sync
    mode the last step, when it has running items, stays open and enters the path (dispatch order)
    once they are told. So a seeded sync search resumed after a kill proposes the same next points
    as the uninterrupted one. Returns the running items as pending Proposals, in the given order.
``set_budget(evaluations, design_size=None)``
    How many evaluations the search makes in all, design included (``--iterations`` applied), and the
    design's size: the progress adaptive criteria (adacb) use and the async warm-up (half the design).
    Every master is given both, also those that did not make the design. Without it, progress stays
    near 0 and the design size is what this optimizer designed or was first told.
``messages() -> [str]``, ``versions() -> str``, ``save(folder) -> path | None``, ``close()``

``Proposal``: ``id`` (the optimizer's own), ``x`` (the untransformed point, keys ``space["columns"]``),
``params`` (what run() receives: trafo applied, inactive parameters left out, constants put back,
plain Python values: whole-valued parameters as int, vectors as lists), ``prop_type`` ('initdesign',
'infill_<crit>', 'random', 'random_fallback', 'adopted'), ``info`` (``crit``, ``lambda``, ``error``).
"""

import dataclasses

# What a proposal type says about where a point came from (the summary's counts).
DESIGN, MODEL, RANDOM, FALLBACK = "design", "model-based", "random", "random fallback"


@dataclasses.dataclass
class Proposal:
    """A point to evaluate. ``id`` is the optimizer's own; ``info`` carries crit value, lambda, errors."""

    id: int
    x: dict
    params: dict
    prop_type: str
    info: dict = dataclasses.field(default_factory=dict)


class Optimizer:
    """Base class (see the module docstring for the contract)."""

    name = "optimizer"
    space = None

    def design(self, n, seed):
        raise NotImplementedError

    def propose(self, k, seed):
        raise NotImplementedError

    def tell(self, results):
        raise NotImplementedError

    def adopt(self, x):
        raise NotImplementedError

    def adopt_many(self, xs):
        return [self.adopt(x) for x in xs]

    def discard(self, proposals):
        raise NotImplementedError

    def restore(self, items):
        raise NotImplementedError

    def set_budget(self, evaluations, design_size=None):
        """Optional: optimizers without progress-driven behaviour ignore it."""

    def messages(self):
        """Notes for the log (fallbacks taken, ...) since the last call."""
        return []

    def versions(self):
        return ""

    def save(self, folder):
        """Write the optimizer's own record of the search into ``folder`` (optional); return its path."""
        return None

    def close(self):
        pass


def origin(prop_type):
    """Where a point came from, for the summary: design, model-based, random (search) or random fallback."""
    if prop_type in ("initdesign", None):
        return DESIGN
    if prop_type == "random":
        return RANDOM
    if prop_type == "random_fallback":
        return FALLBACK
    return MODEL


def small_budget_note(budget, design_size):
    """A warning when fewer than a third of the evaluations can be model-based, else None."""
    model_based = max(0, budget - design_size)
    if model_based * 3 >= budget:
        return None
    return ("only %d of the %d evaluations will be model-based (the design takes %d); raise --budget or lower "
            "--design-size for the surrogate to matter" % (model_based, budget, design_size))
