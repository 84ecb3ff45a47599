"""A real Server (stand-in engine, no TensorFlow) reports its measured step times where an
older client accepts them (``welcome.limits``) and a new client reads them (``hello()``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from neural_style.daemon.service import Server
from neural_style.daemon.service.speed import StepTimes
from neural_style.shared import protocol
from neural_style.shared.client import Done
from neural_style.shared.records import Step
from tests.daemon_helpers import image
from tests.service_fakes import client_for, running_server
from tests.test_protocol_step_times import OLD_WELCOME


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with running_server(tmp_path) as srv:
        yield srv


def run_one_job(srv: Server) -> None:
    content = image(np.full((48, 64, 3), 10, np.uint8))
    with client_for(srv) as client:
        assert isinstance(client.stylize(content, [content], {"size": 64, "iterations": 5}), Done)


def test_an_older_client_accepts_the_welcome_after_a_job(server, monkeypatch):
    run_one_job(server)
    # This process's client with the welcome fields an older plug-in's decoder knows.
    monkeypatch.setitem(protocol.SCHEMAS, "welcome", OLD_WELCOME)
    with client_for(server) as client:
        welcome = client.hello()
    assert welcome["limits"]["step_s_by_side"]["64"] == pytest.approx(0.02)
    assert welcome["device"] == "fake CPU"


def test_the_new_client_reads_the_step_times(server):
    with client_for(server) as client:
        before = client.hello()
        run_one_job(server)
        after = client.hello()
    assert "step_s_per_mpx" not in before and "step_s_per_mpx" not in before["limits"]
    # Top-level, where the plug-in's estimate (nsg_estimates.daemon_speed) reads it.
    mpx = 64 * 48 / 1e6
    assert after["step_s_per_mpx"] == pytest.approx(0.02 / mpx, rel=1e-3)
    assert after["step_s_by_side"] == {"64": pytest.approx(0.02)}
    assert after["limits"]["step_s_per_mpx"] == after["step_s_per_mpx"]
    with client_for(server) as client:
        info = client.status()
    assert info["step_s_per_mpx"] == after["step_s_per_mpx"]


def test_step_times_keep_the_most_recent_sides_only():
    """A long-lived daemon sees many sizes; the map must stay under 64 keys per map."""
    times = StepTimes(max_sides=3)
    for side in (64, 128, 192, 256, 64):
        steps = [Step(i, 3, 0, 0, 0, 0, 0.1 * i, side) for i in range(1, 4)]
        times.record(steps, [side, side])
    assert list(times.report()["step_s_by_side"]) == ["64", "192", "256"]
