"""The optimizer contract: ask/tell, and nothing about MPI.

An optimizer hands out ``Proposal`` objects and is told their outcomes. It owns nothing durable: the
experiment's results log is the source of truth, and ``restore()`` rebuilds an optimizer from it.

Contract:
- ``initial_design(n, seed)`` and ``propose(k, seed)`` return Proposals whose ``params`` are plain
  Python values ready for ``run()`` (transformations applied, inactive parameters left out) and whose
  ``x`` is the untransformed point the optimizer needs back.
- ``tell(results)`` takes ``[(proposal_or_x, y)]`` with ``y`` a finite float, or None for a run that
  did not produce one (failed, timeout, crashed). The optimizer decides how to count those; it must
  never feed a non-finite value to its model.
- Proposals that were handed out and not yet told are *pending*; an optimizer may use them (async
  proposals avoid piling onto running points).
"""

import dataclasses
import random


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

    def initial_design(self, n, seed):
        raise NotImplementedError

    def propose(self, k, seed):
        raise NotImplementedError

    def tell(self, results):
        """Feed back ``[(Proposal or raw x dict, y or None)]``; returns the values the model received."""
        raise NotImplementedError

    def restore(self, results):
        """Rebuild state from finished results of an earlier run: ``[(raw x dict, y or None)]``."""
        return self.tell(results)

    def messages(self):
        """Notes for the log (fallbacks taken, ...) since the last call."""
        return []

    def save(self, folder):
        """Write the optimizer's own record of the search into ``folder`` (optional)."""

    def close(self):
        pass


class RandomOptimizer(Optimizer):
    """Uniform random search over a simple space: ``{name: (low, high) | [choices]}``.

    A test double with no R behind it, and the baseline of the quality benchmark's plain-Python runs.
    """

    name = "random"

    def __init__(self, space):
        self.space = dict(space)
        self._next = 0

    def _point(self, rng):
        point = {}
        for name, spec in self.space.items():
            if isinstance(spec, tuple):
                low, high = spec
                if isinstance(low, int) and isinstance(high, int):
                    point[name] = rng.randint(low, high)
                else:
                    point[name] = rng.uniform(low, high)
            else:
                point[name] = rng.choice(list(spec))
        return point

    def _proposals(self, k, seed, prop_type):
        rng = random.Random(seed)
        out = []
        for _ in range(k):
            self._next += 1
            point = self._point(rng)
            out.append(Proposal(self._next, dict(point), dict(point), prop_type))
        return out

    def initial_design(self, n, seed):
        return self._proposals(n, seed, "initdesign")

    def propose(self, k, seed):
        return self._proposals(k, seed, "random")

    def tell(self, results):
        return [y for _, y in results]
