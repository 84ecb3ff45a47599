"""The engine's worker process under fire: a real ``serve`` daemon, real TensorFlow with
synthetic weights, and real signals sent to its worker process mid-job (SIGKILL as the OOM
killer sends it, SIGABRT as a failed TensorFlow check raises it, SIGSTOP for a step that
never returns). Each time only the running job fails, with its own error; the job queued
behind it completes on a new worker; ``status`` counts the restart; no client hangs.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from neural_style.shared.client import Done, Progress, TimeLimit, WorkerCrashed
from tests.daemon_helpers import Daemon, image

pytestmark = pytest.mark.slow

SIZE = 48
LONG = {"size": SIZE, "iterations": 5000}
SHORT = {"size": SIZE, "iterations": 3}


def pic(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)


def worker_pid(d: Daemon) -> int:
    with d.client() as c:
        worker = c.status()["worker"]
    assert worker["kind"] == "process" and worker["state"] == "ready", worker
    assert worker["pid"] != d.proc.pid
    return int(worker["pid"])


def wait_for_status(d: Daemon, pred, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with d.client() as c:
            info = c.status()
        if pred(info):
            return info
        time.sleep(0.2)
    raise AssertionError(f"status never matched: {info}")


def running_and_queued(d: Daemon, c):  # type: ignore[no-untyped-def]
    """A long job that has reached step 2, and a short one queued behind it."""
    long_job = c.submit(image(pic(1)), [image(pic(2))], dict(LONG))
    deadline = time.monotonic() + 120
    while not any(isinstance(e, Progress) and e.step >= 2 for e in long_job.poll(100)):
        assert time.monotonic() < deadline, "the long job never started"
    short_job = c.submit(image(pic(3)), [image(pic(4))], dict(SHORT))
    return long_job, short_job


def finish(job, timeout: float):  # type: ignore[no-untyped-def]
    """Poll until the job ends; return its last event or the exception it raised."""
    deadline = time.monotonic() + timeout
    last = None
    while not job.done:
        assert time.monotonic() < deadline, "a client hung"
        try:
            events = job.poll(100)
        except Exception as exc:  # the job's error reply
            return exc
        last = events[-1] if events else last
    return last


@pytest.fixture
def daemon(synthetic_weights: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    d = Daemon(synthetic_weights, tmp_path, extra=("--job-time-limit", "20"))
    try:
        yield d.wait_ready()
    finally:
        assert d.stop() == 0, d.stderr()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGABRT])
def test_a_dead_worker_costs_one_job(daemon: Daemon, sig: signal.Signals) -> None:
    pid = worker_pid(daemon)
    with daemon.client() as c:
        long_job, short_job = running_and_queued(daemon, c)
        os.kill(pid, sig)
        crashed = finish(long_job, 30)
        assert isinstance(crashed, WorkerCrashed), crashed
        assert sig.name in crashed.message and "new one" in crashed.message
        assert isinstance(finish(short_job, 120), Done)
    info = wait_for_status(daemon, lambda i: i["worker"]["state"] == "ready")
    assert info["worker"]["restarts"] == 1 and info["worker"]["pid"] != pid
    assert sig.name in info["worker"]["last_exit"]
    assert info["jobs"]["failed"] == 1 and info["jobs"]["done"] == 1


def test_a_step_that_never_returns_is_stopped_at_the_time_limit(daemon: Daemon) -> None:
    pid = worker_pid(daemon)
    with daemon.client() as c:
        long_job, short_job = running_and_queued(daemon, c)
        started = time.monotonic()
        os.kill(pid, signal.SIGSTOP)  # the step in progress never finishes
        stopped = finish(long_job, 90)
        assert isinstance(stopped, TimeLimit), stopped
        # 20 s limit, then the kill grace (10 s, or 4 of its slowest steps)
        assert time.monotonic() - started < 60
        assert isinstance(finish(short_job, 120), Done)
    info = wait_for_status(daemon, lambda i: i["worker"]["state"] == "ready")
    assert info["worker"]["restarts"] == 1
    assert not info["wedged"]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the stopped worker was killed, not left behind


def test_the_front_end_holds_no_tensorflow(daemon: Daemon) -> None:
    """The daemon's own process stays small: TensorFlow lives in the worker."""
    import psutil

    front = psutil.Process(daemon.proc.pid)
    worker = psutil.Process(worker_pid(daemon))
    assert worker.ppid() == front.pid
    front_maps = {m.path for m in front.memory_maps()}
    assert not any("tensorflow" in p for p in front_maps)
    assert any("tensorflow" in m.path for m in worker.memory_maps())
