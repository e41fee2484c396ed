"""The worker pool: rank 0 dispatches tasks, ranks 1..N-1 run them, results come back as they finish.

The pool knows nothing about mlrMBO or UPF. A task is ``{"run_id", "params", "run_dir"}``; a result is
the runner's record plus ``worker`` and ``host``. Dynamic load balancing: a task goes to the first idle
worker, and a worker that reports a result gets the next queued task at once.

Without mpiexec (or with a single rank) the same master code drives one local worker that runs
``worker_loop`` in a thread of this process.

Protocol (pickled tuples; ``mirror`` names: ``master_*`` / ``worker_*``)::

    worker -> master   ("hello", info)      at start: rank, host, pid, node-local index
    master -> worker   ("init", settings)   the resolved settings: model, isolation, timeout, ...
    worker -> master   ("ready", info) | ("error", message)   the model is imported (or could not be)
    master -> worker   ("run", task)        one task
    worker -> master   ("result", record)
    master -> worker   ("runs", [task, ...])        a chunk of tasks (runs of a few milliseconds)
    worker -> master   ("results", [record, ...])   their records, in completion order
    master -> worker   ("stop", None)       finish: close the runner, leave the loop

No rank ever blocks in an MPI receive: every wait polls with ``Iprobe``/``Test`` and sleeps through a
``Backoff``, because OpenMPI's blocking receive spins a full core.
"""

import collections
import logging
import os
import queue
import signal
import socket
import threading
import time

from .status import CRASHED, FAILED, TIMEOUT

log = logging.getLogger("candle_mbo.pool")

TAG = 17
_MPI_ENV = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK", "MV2_COMM_WORLD_SIZE",
            "MPI_LOCALNRANKS", "SLURM_STEP_NUM_TASKS")


class Backoff:
    """Sleep between polls: doubling from 1 µs to ``fast_max`` s, then to ``slow_max`` s after ``patience`` s.

    Reset after useful work. The fast phase keeps latency low while results stream in; the slow phase
    keeps an idle rank's CPU use near zero (a 10 s idle costs a few milliseconds of CPU).
    """

    def __init__(self, fast_max=0.001, slow_max=None, patience=1.0):
        self.fast_max = float(os.environ.get("CANDLE_MBO_BACKOFF", fast_max))
        self.slow_max = slow_max if slow_max is not None else max(self.fast_max, 0.05)
        self.patience = patience
        self.reset()

    def reset(self):
        self.delay = 0.0
        self.idle_since = None

    def sleep(self, limit=None):
        now = time.monotonic()
        if self.idle_since is None:
            self.idle_since = now
        ceiling = self.fast_max if now - self.idle_since < self.patience else self.slow_max
        delay = self.delay if limit is None else min(self.delay, max(limit, 0.0))
        if delay > 0:
            time.sleep(delay)
        self.delay = min(ceiling, max(1e-6, self.delay * 2))


def launched_by_mpi():
    """True when an MPI launcher started this process (so importing mpi4py joins a real job)."""
    return any(name in os.environ for name in _MPI_ENV)


# ---------------------------------------------------------------------------------------------------
# Transports: how the master and workers exchange messages (MPI, or queues inside one process).
# ---------------------------------------------------------------------------------------------------
class MPIMasterLink:
    """Master end over MPI: non-blocking sends, polled receives."""

    def __init__(self, comm):
        self.comm = comm
        self.size = comm.Get_size()
        self._sends = []
        from mpi4py import MPI

        self._status = MPI.Status()
        self._any = MPI.ANY_SOURCE

    def workers(self):
        return list(range(1, self.size))

    def send(self, worker, message):
        self._sends.append(self.comm.isend(message, dest=worker, tag=TAG))
        if len(self._sends) > 64:
            self._sends = [r for r in self._sends if not r.Test()]

    def poll(self):
        """One received ``(worker, message)`` or None, without blocking."""
        if self.comm.Iprobe(source=self._any, tag=TAG, status=self._status):
            source = self._status.Get_source()
            return source, self.comm.recv(source=source, tag=TAG)
        return None

    def flush(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        backoff = Backoff()
        while self._sends and time.monotonic() < deadline:
            self._sends = [r for r in self._sends if not r.Test()]
            if self._sends:
                backoff.sleep()

    def abort(self, code):
        self.comm.Abort(code)


class MPIWorkerLink:
    """Worker end over MPI."""

    def __init__(self, comm):
        self.comm = comm
        self.rank = comm.Get_rank()

    def send(self, message):
        request = self.comm.isend(message, dest=0, tag=TAG)
        backoff = Backoff()
        while not request.Test():
            backoff.sleep()

    def receive(self):
        backoff = Backoff()
        while not self.comm.Iprobe(source=0, tag=TAG):
            backoff.sleep()
        return self.comm.recv(source=0, tag=TAG)


class LocalMasterLink:
    """Master end of a pool with one worker thread in this process (no MPI)."""

    def __init__(self):
        self.to_worker = queue.Queue()
        self.from_worker = queue.Queue()
        self.thread = None

    def workers(self):
        return [1]

    def start_worker(self):
        link = LocalWorkerLink(self)
        self.thread = threading.Thread(target=worker_loop, args=(link,), name="local-worker", daemon=True)
        self.thread.start()

    def send(self, worker, message):
        self.to_worker.put(message)

    def poll(self, timeout=0.0):
        try:
            return 1, (self.from_worker.get(timeout=timeout) if timeout else self.from_worker.get_nowait())
        except queue.Empty:
            return None

    def flush(self, timeout=5.0):
        if self.thread is not None:
            self.thread.join(timeout)

    def abort(self, code):
        os._exit(code)


class LocalWorkerLink:
    rank = 1

    def __init__(self, master):
        self.master = master
        self.in_process = True

    def send(self, message):
        self.master.from_worker.put(message)

    def receive(self):
        return self.master.to_worker.get()


# ---------------------------------------------------------------------------------------------------
# Master side
# ---------------------------------------------------------------------------------------------------
class PoolError(RuntimeError):
    """The pool cannot go on (no worker could load the model)."""


class Pool:
    """Master end of the worker pool. Use ``Pool.create()``; then ``start``, ``submit``, ``poll``, ``close``.

    One task per worker at a time -- except while runs are very short (under ``PIPELINE_BELOW_S`` on
    average), when each worker gets a second message queued behind its current one, so that it never
    waits for the master between two runs; and runs of a few milliseconds (under ``CHUNK_BELOW_S``)
    travel in chunks of about ``CHUNK_S`` seconds of work, so that handling messages does not cost more
    than the runs. Chunks shrink as the queue empties, so that the last runs still spread over every
    worker. Long runs are never queued behind each other: a task goes to the first free worker.
    """

    PIPELINE_BELOW_S = 0.05
    CHUNK_BELOW_S = 0.005
    CHUNK_S = 0.01
    MAX_CHUNK = 64

    def __init__(self, link, world_size):
        self.link = link
        self.world_size = world_size
        self.workers = {}  # rank -> info from hello/ready
        self.inflight = {w: collections.deque() for w in link.workers()}  # run ids sent, oldest first
        self.tasks = {}  # run_id -> task, for tasks sent and not finished
        self.idle = collections.deque()  # workers with nothing in flight
        self.single = collections.deque()  # workers with one message in flight (may take a second)
        self.messages = {w: 0 for w in link.workers()}  # messages of tasks in flight per worker
        self.queue = collections.deque()
        self.dead = set()
        self.started = False
        self.closed = False
        self.mean_duration = None
        self._backoff = Backoff()
        self._local = isinstance(link, LocalMasterLink)

    @classmethod
    def create(cls):
        """A pool over MPI when launched by mpiexec with 2+ ranks, else a local one-worker pool.

        Returns ``(pool, None)`` on rank 0 and ``(None, exit_code)`` on worker ranks, which run
        ``worker_loop`` to completion inside this call.
        """
        if launched_by_mpi():
            from mpi4py import MPI

            comm = MPI.COMM_WORLD
            if comm.Get_size() > 1:
                if comm.Get_rank() != 0:
                    return None, worker_loop(MPIWorkerLink(comm))
                node_layout()  # collective with the workers' call in worker_loop
                return cls(MPIMasterLink(comm), comm.Get_size()), None
        link = LocalMasterLink()
        return cls(link, 1), None

    @property
    def n_workers(self):
        return len(self.link.workers()) - len(self.dead)

    def start(self, settings):
        """Send the settings to every worker; they start their runners (imports) in parallel."""
        if self._local:
            self.link.start_worker()
        for worker in self.link.workers():
            self.link.send(worker, ("init", settings))
            self.idle.append(worker)
        self.started = True

    def stop_unstarted(self):
        """Release workers that never got settings (bad input found, or nothing left to run)."""
        self.closed = True
        if self._local:
            return
        for worker in self.link.workers():
            self.link.send(worker, ("stop", None))
        self.link.flush()

    def release(self):
        """Let every worker rank finish, whatever state the pool is in (idempotent)."""
        if self.closed:
            return
        if self.started:
            self.close()
        else:
            self.stop_unstarted()

    def submit(self, task):
        """Queue a task; it goes to a worker at once if one is free."""
        self.queue.append(task)
        self._dispatch()

    def _next_worker(self):
        while self.idle:
            worker = self.idle.popleft()
            if worker not in self.dead and not self.messages[worker]:
                return worker
        if self.mean_duration is not None and self.mean_duration < self.PIPELINE_BELOW_S:
            while self.single:
                worker = self.single.popleft()
                if worker not in self.dead and self.messages[worker] == 1:
                    return worker
        return None

    def _chunk_size(self):
        """Tasks per message: 1, or for runs of a few milliseconds, about CHUNK_S seconds of them."""
        mean = self.mean_duration
        if mean is None or mean >= self.CHUNK_BELOW_S:
            return 1
        fair = len(self.queue) // (2 * max(1, self.n_workers))
        return max(1, min(self.MAX_CHUNK, int(self.CHUNK_S / max(mean, 1e-6)), fair))

    def _dispatch(self):
        while self.queue:
            worker = self._next_worker()
            if worker is None:
                return
            chunk = [self.queue.popleft() for _ in range(min(self._chunk_size(), len(self.queue)))]
            for task in chunk:
                self.tasks[task["run_id"]] = task
                self.inflight[worker].append(task["run_id"])
            self.messages[worker] += 1
            if self.messages[worker] == 1:
                self.single.append(worker)
            self.link.send(worker, ("run", chunk[0]) if len(chunk) == 1 else ("runs", chunk))

    @property
    def pending(self):
        """Tasks submitted and not finished (queued or running)."""
        return len(self.queue) + len(self.tasks)

    def idle_workers(self):
        """Workers with nothing to do right now."""
        return sum(1 for w in self.link.workers() if w not in self.dead and not self.messages[w])

    def cancel_queued(self):
        """Drop the tasks not yet sent to a worker; return them."""
        dropped = list(self.queue)
        self.queue.clear()
        return dropped

    def poll(self, timeout=0.0):
        """Return the results that arrived (possibly none) within ``timeout`` seconds.

        Returns as soon as at least one result is in. Sleeps between polls through the backoff.
        """
        deadline = time.monotonic() + timeout
        results = []
        while True:
            message = self.link.poll(min(timeout, 0.05)) if self._local and timeout else self.link.poll()
            while message is not None:
                results += self._handle(*message)
                message = self.link.poll()
            if results:
                self._backoff.reset()
                return results
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return results
            if not self._local:
                self._backoff.sleep(remaining)

    def _handle(self, worker, message):
        """Update the pool's state for one message; return the records it brings (maybe none)."""
        kind, payload = message
        if kind == "hello":
            self.workers.setdefault(worker, {}).update(payload)
        elif kind == "ready":
            self.workers.setdefault(worker, {}).update(payload)
            log.debug("worker %d ready: %s", worker, payload)
        elif kind == "error":
            log.error("worker %d cannot run the model and is left out: %s", worker, payload)
            self.dead.add(worker)
            for run_id in reversed(self.inflight[worker]):
                self.queue.appendleft(self.tasks.pop(run_id))
            self.inflight[worker].clear()
            self.messages[worker] = 0
            if self.n_workers == 0:
                raise PoolError("no worker could load the model: %s" % payload)
            self._dispatch()
        elif kind in ("result", "results"):
            records = [payload] if kind == "result" else payload
            for record in records:
                self._finish(worker, record)
            self.messages[worker] -= 1
            if not self.messages[worker]:
                self.idle.append(worker)
            elif self.messages[worker] == 1:
                self.single.append(worker)
            self._dispatch()
            return records
        return []

    def _finish(self, worker, record):
        """Book one finished task: out of flight, into the mean duration, its task attached."""
        task = self.tasks.pop(record["run_id"], None)
        flight = self.inflight[worker]
        if flight and flight[0] == record["run_id"]:
            flight.popleft()
        elif record["run_id"] in flight:
            flight.remove(record["run_id"])
        duration = record.get("duration_s")
        if isinstance(duration, (int, float)):
            self.mean_duration = duration if self.mean_duration is None else \
                0.9 * self.mean_duration + 0.1 * duration
        record.setdefault("worker", worker)
        if task is not None:
            record["task"] = task

    def close(self):
        """Stop every worker (after their current task) and wait for the stop messages to go out."""
        self.closed = True
        for worker in self.link.workers():
            if worker not in self.dead or self._local:
                self.link.send(worker, ("stop", None))
        self.link.flush()

    def abort(self, code=1):
        """End the whole job now (every rank, every runner): used after a fatal error on the master."""
        self.link.abort(code)


# ---------------------------------------------------------------------------------------------------
# Worker side
# ---------------------------------------------------------------------------------------------------
def node_layout():
    """(index of this worker among the worker ranks on its node, ranks on the node); (0, 1) without MPI.

    The index drives CUDA_VISIBLE_DEVICES; rank 0 (the master) takes no GPU and is not counted.
    """
    if not launched_by_mpi():
        return 0, 1
    from mpi4py import MPI

    world_rank = MPI.COMM_WORLD.Get_rank()
    local = MPI.COMM_WORLD.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        ranks = sorted(local.allgather(world_rank))
        workers = [r for r in ranks if r != 0]
        index = workers.index(world_rank) if world_rank in workers else 0
        return index, len(ranks)
    finally:
        local.Free()


def worker_environment(settings, local_index, local_size):
    """Thread counts and GPU visibility for one worker, from the settings and its place on the node."""
    env = {}
    threads = settings.get("threads_per_worker") or max(1, (os.cpu_count() or 1) // max(1, local_size))
    for name in ("OMP_NUM_THREADS", "NUM_INTRA_THREADS", "NUM_INTER_THREADS", "MKL_NUM_THREADS",
                 "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    gpus = settings.get("gpus_per_worker") or 0
    if gpus:
        # Devices the scheduler gave this node (Slurm/PBS set CUDA_VISIBLE_DEVICES), else 0, 1, ...
        given = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        first = local_index * gpus
        if given:
            # more workers than GPUs on the node: they share, round-robin
            env["CUDA_VISIBLE_DEVICES"] = ",".join(given[(first + i) % len(given)] for i in range(gpus))
        else:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(first + i) for i in range(gpus))
    return env


class InProcessExecutor:
    """``--isolation none``: the worker runs the model itself (fastest; a crash ends the job).

    The timeout is enforced with SIGALRM, which interrupts Python code only: a run stuck in C code
    or ignoring exceptions cannot be stopped. Use the default isolation when that matters.
    """

    def __init__(self, config, env, fd_capture, timeout):
        from .runner import Runner

        os.environ.update(env)
        self.runner = Runner.from_config(config, fd_capture=fd_capture)
        self.timeout = timeout if timeout and timeout > 0 else None
        self.use_alarm = self.timeout and threading.current_thread() is threading.main_thread()
        if self.timeout and not self.use_alarm:
            log.warning("warning: --timeout is not enforced with --isolation none without mpiexec (the local "
                        "worker is a thread); use the default isolation to enforce it")

    def run(self, task):
        if not self.use_alarm:
            return self.runner.run(task)

        def expire(signum, frame):
            raise _RunTimeout()

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, self.timeout)
        try:
            record = self.runner.run(task)
        except _RunTimeout:
            record = {"run_id": str(task["run_id"]), "status": TIMEOUT, "objective": None,
                      "error": "stopped after %g s (--timeout)" % self.timeout}
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        if record.get("status") == FAILED and "_RunTimeout" in str(record.get("error")):
            record["status"] = TIMEOUT
            record["error"] = "stopped after %g s (--timeout)" % self.timeout
        return record

    def run_many(self, tasks):
        return [self.run(task) for task in tasks]

    def close(self):
        pass


class _RunTimeout(BaseException):
    """Raised into a run by SIGALRM (a BaseException so that user code's `except Exception` lets it by)."""


def _make_executor(settings, link, rank):
    from .isolation import IsolatedRunner

    local_index, local_size = settings.get("_layout", (0, 1))
    env = worker_environment(settings, local_index, local_size)
    config = dict(settings["runner"])
    log_dir = settings.get("log_dir")
    isolated = settings.get("isolation", "process") != "none"
    log_path = os.path.join(log_dir, "runner-%d.log" % rank) if log_dir else None
    if not settings.get("run_dirs", True):
        # --no-run-dirs: one scratch folder per worker is every run's output_dir; run output goes to the
        # runner's log (isolated) or to logs/worker-<rank>.log (in-process)
        if settings.get("scratch_dir"):
            config["scratch_dir"] = os.path.join(settings["scratch_dir"], "worker-%d" % rank)
        if not isolated and log_dir:
            config["run_log"] = os.path.join(log_dir, "worker-%d.log" % rank)
    if not isolated:
        return InProcessExecutor(config, env, fd_capture=not getattr(link, "in_process", False),
                                 timeout=settings.get("timeout"))
    executor = IsolatedRunner(config, env=env, log_path=log_path, timeout=settings.get("timeout"))
    executor.start()
    executor.wait_ready()
    return executor


def _run_tasks(executor, tasks, rank, host):
    """One record per task, whatever happens (a framework bug is recorded as the runs' crash)."""
    try:
        records = executor.run_many(tasks)
    except Exception as exc:  # noqa: BLE001 - a framework bug must not lose the result slots
        records = [{"run_id": str(task["run_id"]), "status": CRASHED, "objective": None,
                    "error": "worker error: %s" % exc} for task in tasks]
    for record in records:
        record["worker"] = rank
        record["host"] = host
    return records


def worker_loop(link):
    """Run tasks from the master until told to stop; returns the rank's exit code."""
    rank = link.rank
    host = socket.gethostname()
    in_process = getattr(link, "in_process", False)
    layout = (0, 1) if in_process else node_layout()
    link.send(("hello", {"host": host, "pid": os.getpid(), "local_index": layout[0], "local_size": layout[1]}))
    kind, settings = link.receive()
    if kind != "init":
        return 0
    settings = dict(settings)
    settings["_layout"] = layout
    try:
        executor = _make_executor(settings, link, rank)
    except Exception as exc:  # noqa: BLE001 - the master decides what a broken worker means
        link.send(("error", "%s (rank %d on %s)" % (exc, rank, host)))
        executor = None
    else:
        link.send(("ready", {"host": host, "pid": os.getpid()}))
    while True:
        kind, payload = link.receive()
        if kind == "stop":
            break
        if kind in ("run", "runs"):
            if executor is None:
                continue
            records = _run_tasks(executor, [payload] if kind == "run" else payload, rank, host)
            link.send(("result", records[0]) if kind == "run" else ("results", records))
    if executor is not None:
        executor.close()
    return 0
