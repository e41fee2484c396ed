"""How ranks exchange messages: MPI links (or queues inside one process), and the backoff behind every wait.

Messages are pickled tuples ``(kind, payload)``. The protocol between the dispatcher and its workers is
written down in :mod:`candle_mbo.pool.worker`; between the dispatcher and optimizer ranks in
:mod:`candle_mbo.search.masters`. This module only moves messages.

No rank ever blocks in an MPI receive: every wait polls with ``Iprobe``/``Test`` and sleeps through a
:class:`Backoff`, because OpenMPI's blocking receive spins a full core.
"""

import os
import queue
import threading
import time

TAG = 17
_MPI_ENV = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK", "MV2_COMM_WORLD_SIZE",
            "MPI_LOCALNRANKS", "SLURM_STEP_NUM_TASKS")


class Backoff:
    """Sleep between polls: doubling from 1 µs to ``fast_max`` s, then to ``slow_max`` s after ``patience`` s.

    Reset after useful work. The fast phase keeps latency low while results stream in; the slow phase
    keeps an idle rank's CPU use near zero (a 10 s idle costs a few milliseconds of CPU).
    ``CANDLE_MBO_BACKOFF`` overrides ``fast_max`` (seconds).
    """

    def __init__(self, fast_max=0.001, slow_max=None, patience=1.0):
        self.fast_max = float(os.environ.get("CANDLE_MBO_BACKOFF", fast_max))
        self.slow_max = slow_max if slow_max is not None else max(self.fast_max, 0.05)
        self.patience = patience
        self.reset()

    def reset(self):
        self.delay = 0.0
        self.idle_since = None

    def next_delay(self, limit=None):
        """The sleep the next ``sleep()`` would take (and advance the schedule), without sleeping."""
        now = time.monotonic()
        if self.idle_since is None:
            self.idle_since = now
        ceiling = self.fast_max if now - self.idle_since < self.patience else self.slow_max
        delay = self.delay if limit is None else min(self.delay, max(limit, 0.0))
        self.delay = min(ceiling, max(1e-6, self.delay * 2))
        return delay

    def sleep(self, limit=None):
        delay = self.next_delay(limit)
        if delay > 0:
            time.sleep(delay)


def launched_by_mpi():
    """True when an MPI launcher started this process (so importing mpi4py joins a real job)."""
    return any(name in os.environ for name in _MPI_ENV)


def world():
    """``(comm, rank, size)`` of the MPI job, or ``(None, 0, 1)`` without an MPI launcher."""
    if not launched_by_mpi():
        return None, 0, 1
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    return comm, comm.Get_rank(), comm.Get_size()


class MPILink:
    """One rank's end of point-to-point messaging over MPI: non-blocking sends, polled receives.

    ``peers`` are the ranks this end talks to (for a dispatcher: its workers and optimizer ranks). Sends may
    come from two threads of a worker (its heartbeat beside a run in the worker itself): they take a lock.
    """

    def __init__(self, comm, peers=()):
        from mpi4py import MPI

        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.peers = list(peers)
        self._sends = []
        self._sending = threading.Lock()
        self._status = MPI.Status()
        self._any = MPI.ANY_SOURCE

    def send(self, dest, message):
        with self._sending:
            self._sends.append(self.comm.isend(message, dest=dest, tag=TAG))
            if len(self._sends) > 64:
                self._sends = [r for r in self._sends if not r.Test()]

    def poll(self, source=None):
        """One received ``(source, message)`` or None, without blocking."""
        src = self._any if source is None else source
        if self.comm.Iprobe(source=src, tag=TAG, status=self._status):
            sender = self._status.Get_source()
            return sender, self.comm.recv(source=sender, tag=TAG)
        return None

    def wait(self, timeout, backoff, source=None):
        """A received ``(source, message)`` within ``timeout`` s, or None; sleeps through ``backoff``."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.poll(source)
            if message is not None:
                return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            backoff.sleep(remaining)

    def flush(self, timeout=5.0):
        """Wait (polling) until the sends have completed, at most ``timeout`` s."""
        deadline = time.monotonic() + timeout
        backoff = Backoff()
        while self._sends and time.monotonic() < deadline:
            with self._sending:
                self._sends = [r for r in self._sends if not r.Test()]
            if self._sends:
                backoff.sleep()

    def abort(self, code):
        self.comm.Abort(code)


class QueueLink:
    """One end of a pair of queues between two threads of this process (the pool without MPI).

    Make both ends with :func:`queue_pair`; the master's end talks to peer 1, the worker's to peer 0.
    """

    def __init__(self, rank, peer, inbox, outbox):
        self.rank = rank
        self.peers = [peer]
        self.size = 2
        self._peer = peer
        self._inbox = inbox
        self._outbox = outbox
        self.in_process = True

    def send(self, dest, message):
        self._outbox.put(message)

    def poll(self, source=None):
        try:
            return self._peer, self._inbox.get_nowait()
        except queue.Empty:
            return None

    def wait(self, timeout, backoff=None, source=None):
        try:
            return self._peer, self._inbox.get(timeout=max(timeout, 0.0)) if timeout > 0 else self._inbox.get_nowait()
        except queue.Empty:
            return None

    def flush(self, timeout=5.0):
        pass

    def abort(self, code):
        os._exit(code)


def queue_pair():
    """``(master_end, worker_end)``: the master is rank 0, the single worker rank 1."""
    to_worker, to_master = queue.Queue(), queue.Queue()
    return QueueLink(0, 1, to_master, to_worker), QueueLink(1, 0, to_worker, to_master)
