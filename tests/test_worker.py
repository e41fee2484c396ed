"""A worker rank's loop on its own (no MPI): it never leaves silently, and it says it is alive while it runs."""

import os
import signal
import time

import pytest

from conftest import FIXTURES

from candle_mbo.pool import worker as worker_module
from candle_mbo.pool.transport import queue_pair

FAULTY = os.path.join(FIXTURES, "faulty.py")


class FakeExecutor:
    """An executor whose runs never end (until cancelled)."""

    def __init__(self):
        self.tasks = []

    @property
    def busy(self):
        return bool(self.tasks)

    def submit(self, tasks):
        self.tasks = list(tasks)

    def poll(self, timeout=0.0):
        time.sleep(min(timeout, 0.01))
        return []

    def cancel(self):
        tasks, self.tasks = self.tasks, []
        return tasks

    def take_reports(self):
        return []  # its runs report no epochs

    def close(self):
        pass


def running_worker():
    """A worker state whose executor is running task r0; returns (dispatcher's end, state)."""
    dispatcher, end = queue_pair()
    state = worker_module._WorkerState(end, 0, {"host": "node1"})
    state.executor = FakeExecutor()
    dispatcher.send(1, ("run", {"run_id": "r0", "params": {}, "run_dir": None}))
    state.step()  # the task message
    state.step()  # its start
    assert state.executor.busy
    return dispatcher, state


def received(dispatcher):
    messages = []
    while True:
        got = dispatcher.poll()
        if got is None:
            return messages
        messages.append(got[1])


def test_a_worker_that_hears_a_stop_signal_tells_the_dispatcher_and_never_leaves_silently():
    """20.2: the signal reached this worker and not rank 0: the worker reports it at once; if the dispatcher
    still says nothing, the worker kills its run and says so before it leaves."""
    dispatcher, state = running_worker()
    state.signals.first = (signal.SIGUSR1, time.monotonic())
    state.step()
    assert ("signal", {"signum": int(signal.SIGUSR1)}) in received(dispatcher)
    assert not state.stopped and state.executor.busy
    state.signals.first = (signal.SIGUSR1, time.monotonic() - state.grace - 11)
    for _ in range(3):  # (a message in the way is read first)
        if not state.stopped:
            state.step()
    assert state.stopped and not state.executor.busy
    left = [payload for kind, payload in received(dispatcher) if kind == "left"]
    assert len(left) == 1 and left[0]["interrupted"] == ["r0"] and "SIGUSR1" in left[0]["reason"]


def test_a_busy_worker_says_it_is_alive(monkeypatch):
    monkeypatch.setattr(worker_module, "HEARTBEAT_S", 0.05)
    dispatcher, state = running_worker()
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        state.step()
    alive = [m for m in received(dispatcher) if m[0] == "alive"]
    assert 3 <= len(alive) <= 12, alive


def test_a_run_in_the_worker_process_beats_while_it_runs(monkeypatch, tmp_path):
    """--isolation none: the run blocks the worker's loop, so a thread says 'alive' meanwhile."""
    monkeypatch.setattr(worker_module, "HEARTBEAT_S", 0.05)
    beats = []
    settings = {"runner": {"model": FAULTY, "objective": "val_loss", "reduction": "last", "require_objective": False,
                           "scratch_dir": str(tmp_path)},
                "isolation": "none", "run_dirs": False}
    executor = worker_module.make_executor(settings, 1, True, heartbeat=lambda: beats.append(time.monotonic()))
    executor.submit([{"run_id": "r0", "params": {"sleep": 0.4}, "run_dir": None}])
    began = time.monotonic()
    records = executor.poll()
    took = time.monotonic() - began
    assert records[0]["status"] == "ok"
    count = len(beats)
    assert 3 <= count <= took / 0.05 + 1, (beats, took)
    time.sleep(0.2)
    assert len(beats) == count  # it stops with the run


def test_a_runner_that_loads_the_model_again_lets_its_worker_be_heard():
    """A restart after a crash blocks the worker's loop while the model loads (minutes, for some frameworks):
    the runner calls back about once a second meanwhile, and the worker says 'alive' when it is due."""
    from candle_mbo.pool.isolation import IsolatedRunner, RunnerStartError

    calls = []
    config = {"model": FAULTY, "objective": "val_loss", "reduction": "last", "require_objective": False}
    runner = IsolatedRunner(config, env={"FAULTY_HUNG_GPU": "7", "CUDA_VISIBLE_DEVICES": "7"})  # a hung import
    runner.on_wait = lambda: calls.append(time.monotonic())
    runner.start()
    with pytest.raises(RunnerStartError):
        runner.wait_ready(timeout=2.5)
    assert len(calls) >= 2, calls
