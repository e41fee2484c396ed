"""Where each worker runs: its GPUs and its thread count, decided once by the dispatcher from what the
workers report about their node.

Each worker rank reports (:func:`node_info`) its host, the CPUs it may run on (its affinity, which the
launcher or Slurm's cpuset decides), ``SLURM_CPUS_PER_TASK`` and the GPUs it can see. The dispatcher then
plans every worker at once (:func:`plan`), so that the mapping is printed in one place, workers sharing a
GPU are a warning, and a mapping to GPUs that do not exist is refused before anything runs.

GPU rule, per node: when every worker of the node sees the same devices (CUDA_VISIBLE_DEVICES set for the
whole node by the scheduler, or unset: all devices), worker *i* of the node (by rank) gets devices
``i*K .. i*K+K-1`` of that list (K = ``--gpus-per-worker``); past the end of the list, workers share,
round-robin, with a warning. When the scheduler already gave each task its own devices (Slurm's
``--gpus-per-task``), each worker takes the first K devices it sees.

Threads rule: ``--threads-per-worker`` if given; else ``SLURM_CPUS_PER_TASK`` (the scheduler sized each
task); else the CPUs of the worker's affinity divided by the ranks (workers and masters) of the node that
share exactly that affinity.
"""

import os
import re
import socket

from ..errors import UsageError

GPU_VARIABLES = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "NUM_INTRA_THREADS", "NUM_INTER_THREADS", "MKL_NUM_THREADS",
                    "OPENBLAS_NUM_THREADS")


def visible_gpus(environ=None, dev="/dev"):
    """``(ids, source)``: the GPU ids this process may use, and where that answer came from."""
    environ = os.environ if environ is None else environ
    for name in GPU_VARIABLES:
        if name in environ:
            ids = [d.strip() for d in environ[name].split(",") if d.strip()]
            if ids in (["-1"], ["NoDevFiles"]):
                ids = []
            return ids, name
    try:
        names = os.listdir(dev)
    except OSError:
        names = []
    nvidia = sorted((n for n in names if re.fullmatch(r"nvidia\d+", n)), key=lambda n: int(n[6:]))
    if nvidia:
        return [n[6:] for n in nvidia], "%s/nvidia*" % dev
    return [], "no CUDA_VISIBLE_DEVICES and no %s/nvidia* device" % dev


def node_info():
    """What a rank reports about its place: host, pid, CPUs, Slurm's CPUs per task, visible GPUs."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = list(range(os.cpu_count() or 1))
    gpus, gpu_source = visible_gpus()
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "").strip()
    return {"host": socket.gethostname(), "pid": os.getpid(), "cpus": cpus,
            "slurm_cpus_per_task": int(slurm) if slurm.isdigit() and int(slurm) > 0 else None,
            "gpus": gpus, "gpu_source": gpu_source}


def plan(workers, masters, threads_per_worker=None, gpus_per_worker=0):
    """Plan every worker: ``({rank: env}, report_lines, warnings)``; raises UsageError for a bad mapping.

    ``workers`` and ``masters`` map ranks to their :func:`node_info`. ``env`` holds the variables a
    worker's runner gets (thread counts, CUDA_VISIBLE_DEVICES and its AMD twins).
    """
    envs = {rank: {} for rank in workers}
    warnings = []
    by_host = {}
    for rank in sorted(workers):
        by_host.setdefault(workers[rank]["host"], []).append(rank)
    for rank, threads in _threads(workers, masters, threads_per_worker).items():
        envs[rank].update({name: str(threads) for name in THREAD_VARIABLES})
    lines = []
    for host, ranks in by_host.items():
        if gpus_per_worker:
            mapping, shared = _gpus(host, ranks, workers, gpus_per_worker)
            for rank, devices in mapping.items():
                envs[rank].update({name: ",".join(devices) for name in GPU_VARIABLES})
            if shared:
                warnings.append("warning: %s: %d workers x %d GPU%s but %d visible GPU%s (%s): workers share GPUs"
                                % (host, len(ranks), gpus_per_worker, "s" if gpus_per_worker > 1 else "",
                                   shared, "s" if shared > 1 else "", workers[ranks[0]]["gpu_source"]))
            lines.append("%s: %s" % (host, ", ".join("worker %d -> GPU %s, %s threads"
                                                      % (r, ",".join(mapping[r]), envs[r]["OMP_NUM_THREADS"])
                                                      for r in ranks)))
        else:
            threads = "/".join(sorted({envs[r]["OMP_NUM_THREADS"] for r in ranks}))
            lines.append("%s: %d worker%s x %s threads" % (host, len(ranks), "" if len(ranks) == 1 else "s", threads))
    return envs, lines, warnings


def _threads(workers, masters, requested):
    if requested:
        return {rank: int(requested) for rank in workers}
    sharing = {}
    for info in list(workers.values()) + list(masters.values()):
        key = (info["host"], tuple(info["cpus"]))
        sharing[key] = sharing.get(key, 0) + 1
    out = {}
    for rank, info in workers.items():
        if info.get("slurm_cpus_per_task"):
            out[rank] = info["slurm_cpus_per_task"]
        else:
            out[rank] = max(1, len(info["cpus"]) // sharing[(info["host"], tuple(info["cpus"]))])
    return out


def _gpus(host, ranks, workers, per_worker):
    """``({rank: [device ids]}, shared)``: shared is the number of visible GPUs when workers must share, else 0."""
    seen = [tuple(workers[r]["gpus"]) for r in ranks]
    if not any(seen):
        raise UsageError("--gpus-per-worker %d: no GPU is visible on %s (%s); run where GPUs are, or leave "
                         "--gpus-per-worker out" % (per_worker, host, workers[ranks[0]]["gpu_source"]))
    mapping, shared = {}, 0
    if len(set(seen)) > 1:
        # the scheduler gave each task its own devices: each worker takes the first it sees
        for rank in ranks:
            own = list(workers[rank]["gpus"])
            if not own:
                raise UsageError("--gpus-per-worker %d: worker rank %d on %s sees no GPU (%s)"
                                 % (per_worker, rank, host, workers[rank]["gpu_source"]))
            if len(own) < per_worker:
                shared = max(shared, len(own))
            mapping[rank] = [own[i % len(own)] for i in range(per_worker)]
        return mapping, shared
    visible = list(seen[0])
    for index, rank in enumerate(ranks):
        first = index * per_worker
        mapping[rank] = [visible[(first + i) % len(visible)] for i in range(per_worker)]
    if len(ranks) * per_worker > len(visible):
        shared = len(visible)
    return mapping, shared
