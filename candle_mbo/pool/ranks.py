"""The ranks of a job and their roles: rank 0 dispatches; the others say hello and wait for a role.

Every rank but 0 starts in :func:`follower`: it reports where it runs (``("hello", node_info)``) and waits
for its first message, which gives it a role: ``("init", settings)`` makes it a worker
(:func:`candle_mbo.pool.worker.worker_loop`), ``("optimize", settings)`` an optimizer rank
(:func:`candle_mbo.search.masters.optimizer_rank`), ``("stop", ...)`` ends it (bad input, or nothing to run).
Roles are given by rank 0 after it has read the command line (``--masters``): ranks 1..M-1 optimize,
the rest work.

Every rank always ends: :class:`Ranks` is the one owner of the ranks' lifecycle. Every stop goes through
:meth:`Ranks.stop` (the pool's for its workers, a remote master's for its optimizer rank), which sends
each rank one ``("stop", {"now": bool})`` whatever its role, and :meth:`Ranks.release`, which every exit
path of rank 0 calls (done, bad input, a signal, an error; at any phase: hello, roles, optimizers
starting R, design, dispatch, summary), stops every rank not stopped yet.

Without an MPI launcher (or with one rank), the same code runs with one local worker: a thread of this
process talking to rank 0 through queues.
"""

import signal
import threading
import time

from .._trace import phase
from ..errors import UsageError
from .placement import node_info
from .transport import Backoff, MPILink, queue_pair, world

HELLO_TIMEOUT_S = 300.0


class Ranks:
    """Rank 0's handle on the other ranks (see the module docstring). Use ``Ranks.create()``."""

    def __init__(self, link, others, local):
        self.link = link
        self.others = list(others)
        self.local = local
        self.infos = {}
        self.stopped = set()

    @classmethod
    def create(cls):
        """``(ranks, None)`` on rank 0; ``(None, exit code)`` on every other rank, after its whole life."""
        comm, rank, size = world()
        if size > 1:
            if rank != 0:
                return None, follower(MPILink(comm, [0]))
            return cls(MPILink(comm, range(1, size)), range(1, size), local=False), None
        master_end, worker_end = queue_pair()
        thread = threading.Thread(target=follower, args=(worker_end,), name="local-worker", daemon=True)
        thread.start()
        ranks = cls(master_end, [1], local=True)
        ranks.thread = thread
        return ranks, None

    @property
    def size(self):
        return len(self.others) + 1

    @property
    def launched(self):
        """The number of ranks the launcher started (1 without one: the local worker is a thread)."""
        return 1 if self.local else self.size

    def gather(self, route=None):
        """Wait for every other rank's hello; returns ``{rank: node_info}``. Other messages go to ``route``."""
        phase("hello")
        backoff = Backoff()
        waiting = set(self.others) - set(self.infos)
        deadline = time.monotonic() + HELLO_TIMEOUT_S
        while waiting:
            received = self.link.wait(max(0.0, deadline - time.monotonic()), backoff)
            if received is None:
                raise RuntimeError("ranks %s did not report within %d s" % (sorted(waiting), HELLO_TIMEOUT_S))
            rank, (kind, payload) = received
            if kind == "hello":
                self.infos[rank] = payload
                waiting.discard(rank)
            elif route is not None:
                route(rank, (kind, payload))
        return self.infos

    def roles(self, masters):
        """``(optimizer ranks, worker ranks)`` for ``masters`` masters (rank 0 is master 0)."""
        if masters > 1 and self.local:
            raise UsageError("--masters %d needs MPI ranks (mpiexec -n N with N > %d)" % (masters, masters))
        if masters >= self.size:
            raise UsageError("--masters %d leaves no worker among %d ranks; use at most %d masters, or more ranks"
                             % (masters, self.size, max(1, self.size - 1)))
        return self.others[:masters - 1], self.others[masters - 1:]

    def stop(self, ranks, now=False):
        """Tell each of ``ranks`` not stopped yet to end (with ``now``: killing what it runs); return those
        told now. Every role and a rank without one take the same message."""
        todo = [rank for rank in ranks if rank not in self.stopped]
        for rank in todo:
            self.link.send(rank, ("stop", {"now": now}))
        self.stopped.update(todo)
        if todo:
            self.link.flush()
        return todo

    def release(self, now=False):
        """Stop every rank not stopped yet, whatever its role and the job's phase (idempotent)."""
        self.stop(self.others, now)
        if self.local and getattr(self, "thread", None) is not None:
            self.thread.join(timeout=10)

    def abort(self, code):
        self.link.abort(code)


def _note_signal(signum, frame):
    """A stop signal before this rank has a role: rank 0 decides what it means (it sends a stop)."""
    _note_signal.first = _note_signal.first or (signum, time.monotonic())


_note_signal.first = None


def follower(link, master=0):
    """Every rank but 0: hello, then the role rank 0 gives; returns the rank's exit code.

    Stop signals (SIGTERM, SIGINT, SIGUSR1: a launcher passes them to every rank) never kill a rank
    outright: rank 0 decides, and stops every rank through its messages (a worker that hears nothing
    leaves on its own, see worker.py).
    """
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            signal.signal(sig, _note_signal)
    info = node_info()
    link.send(master, ("hello", info))
    backoff = Backoff()
    received = None
    while received is None:
        received = link.wait(60.0, backoff, source=master)
    kind, payload = received[1]
    if kind == "init":
        from .worker import worker_loop

        return worker_loop(link, payload, info, master, early_signal=_note_signal.first)
    if kind == "optimize":
        from ..search.masters import make_optimizer, optimizer_rank
        from ..reporting.progress import setup_logging

        setup_logging(rank=link.rank)
        return optimizer_rank(link, payload, make_optimizer, master)
    return 0
