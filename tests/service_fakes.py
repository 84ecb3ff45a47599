"""A real :class:`Server` in a thread over a stand-in engine (no TensorFlow, milliseconds),
for the service tests that need the socket loop but not the model."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from neural_style.daemon.engine.params import Iterate, StylizeResult
from neural_style.daemon.service import Server, ServerConfig
from neural_style.shared import connection
from neural_style.shared.client import Client
from tests.daemon_helpers import free_port

KEY = b"service-fakes-key"


class StepEngine:
    """Five steps 20 ms apart (by their clocks) at a 64 px scale; returns the content.

    Records the ``init`` each job was given, so a test can see what reached the engine.
    """

    device = "fake CPU"
    weights = SimpleNamespace(path="/fake.h5", sha256="00" * 32, synthetic=True)

    def __init__(self) -> None:
        self.inits: list[Any] = []

    def stylize(self, content, styles, params, callback=None, mask=None, init=None):
        self.inits.append(init)
        its = [Iterate(i, 5, 1.0, 0.1, 0.2, 0.3, 0.02 * i, 64, None) for i in range(1, 6)]
        for it in its:
            if callback is not None:
                callback(it)
        return StylizeResult(content, its, False, 0.1, False, (64, 48))


@contextlib.contextmanager
def running_server(tmp_path: Path, engine: Any = None, **config: Any) -> Iterator[Server]:
    """A Server on a free loopback port until the block ends (then stopped and joined)."""
    cfg = ServerConfig(
        endpoint=f"tcp://127.0.0.1:{free_port()}",
        key=KEY,
        connection_file=tmp_path / "c.json",
        **config,
    )
    srv = Server(cfg, engine or StepEngine())
    srv.write_connection_file()
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.request_stop()
        thread.join(10)
        assert not thread.is_alive()


def client_for(srv: Server) -> Client:
    """A client holding the server's connection file (its CURVE keys)."""
    return Client(srv.endpoint, key=KEY, timeout=5.0, info=info_of(srv))


def info_of(srv: Server) -> connection.ConnectionInfo | None:
    return connection.read(srv.connection_path) if srv.connection_path else None
