"""A real Server (stand-in engine, no TensorFlow) reports its measured step times where an
older client accepts them (``welcome.limits``) and a new client reads them (``hello()``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from neural_style.daemon.params import Iterate, StylizeResult
from neural_style.daemon.service import Server, ServerConfig
from neural_style.daemon.service.speed import StepTimes
from neural_style.shared import protocol
from neural_style.shared.client import Client, Done
from neural_style.shared.records import Step
from tests.daemon_helpers import free_port, image
from tests.test_protocol_step_times import OLD_WELCOME

KEY = b"step-times-key"


class StepEngine:
    """Five 20 ms steps at a 64 px working size; returns the content."""

    device = "fake CPU"
    weights = SimpleNamespace(path="/fake.h5", sha256="00" * 32, synthetic=True)

    def stylize(self, content, styles, params, callback=None, mask=None, init=None):
        its = [Iterate(i, 5, 1.0, 0.1, 0.2, 0.3, 0.02 * i, 64, None) for i in range(1, 6)]
        for it in its:
            if callback is not None:
                callback(it)
        return StylizeResult(content, its, False, 0.1, False, (64, 48))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    cfg = ServerConfig(
        endpoint=f"tcp://127.0.0.1:{free_port()}", key=KEY, connection_file=tmp_path / "c.json"
    )
    srv = Server(cfg, StepEngine())
    srv.write_connection_file()
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    yield srv
    srv.request_stop()
    thread.join(10)
    assert not thread.is_alive()


def run_one_job(srv: Server) -> None:
    content = np.full((48, 64, 3), 10, np.uint8)
    with Client(srv.endpoint, key=KEY, timeout=5.0) as client:
        job = client.submit(image(content), [image(content)], {"size": 64, "iterations": 5})
        deadline = time.monotonic() + 20
        while not job.done:
            assert time.monotonic() < deadline, "job did not finish"
            events = job.poll(timeout_ms=50)
        assert isinstance(events[-1], Done)


def test_an_older_client_accepts_the_welcome_after_a_job(server, monkeypatch):
    run_one_job(server)
    # This process's client with the welcome fields an older plug-in's decoder knows.
    monkeypatch.setitem(protocol.SCHEMAS, "welcome", OLD_WELCOME)
    with Client(server.endpoint, key=KEY, timeout=5.0) as client:
        welcome = client.hello()
    assert welcome["limits"]["step_s_by_side"]["64"] == pytest.approx(0.02)
    assert welcome["device"] == "fake CPU"


def test_the_new_client_reads_the_step_times(server):
    with Client(server.endpoint, key=KEY, timeout=5.0) as client:
        before = client.hello()
        run_one_job(server)
        after = client.hello()
    assert "step_s_per_mpx" not in before and "step_s_per_mpx" not in before["limits"]
    # Top-level, where the plug-in's estimate (nsg_helpers.daemon_speed) reads it.
    mpx = 64 * 48 / 1e6
    assert after["step_s_per_mpx"] == pytest.approx(0.02 / mpx, rel=1e-3)
    assert after["step_s_by_side"] == {"64": pytest.approx(0.02)}
    assert after["limits"]["step_s_per_mpx"] == after["step_s_per_mpx"]
    with Client(server.endpoint, key=KEY, timeout=5.0) as client:
        info = client.status()
    assert info["step_s_per_mpx"] == after["step_s_per_mpx"]


def test_step_times_keep_the_most_recent_sides_only():
    """A long-lived daemon sees many sizes; the map must stay under 64 keys per map."""
    times = StepTimes(max_sides=3)
    for side in (64, 128, 192, 256, 64):
        steps = [Step(i, 3, 0, 0, 0, 0, 0.1 * i, side) for i in range(1, 4)]
        times.record(steps, [side, side])
    assert list(times.report()["step_s_by_side"]) == ["64", "192", "256"]
