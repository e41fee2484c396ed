"""Who runs: the ranks and their roles, the worker pool's dispatch policy, the worker loop, the transport
between them, GPU and thread placement, the isolated runner process and the runner itself.

Nothing here knows about mlrMBO, UPF or the journal. The dispatcher's end is :class:`Pool`.
"""

from .policy import Pool, PoolError

__all__ = ["Pool", "PoolError"]
