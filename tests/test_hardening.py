"""Issue 13: hostile peers, squatters, planted files. Real sockets on loopback only; every
hostile loop is bounded in count and time. The daemon-process tests are at the end."""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from neural_style.shared import connection, protocol
from neural_style.shared.client import Client, DaemonUnavailable, Unauthenticated
from tests.daemon_helpers import free_port, image


def rgb(w: int, h: int, value: int = 10) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


@pytest.fixture
def private_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty, private runtime dir and no explicit connection file."""
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    monkeypatch.delenv(connection.ENV_FILE, raising=False)
    return run


class Squatter:
    """A process-less squatter: a ROUTER on the port that records what it gets and answers
    every message with an unsigned forged reply (a welcome, an all-red result)."""

    def __init__(self, endpoint: str | None = None) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.endpoint = endpoint or f"tcp://127.0.0.1:{free_port()}"
        self.sock.bind(self.endpoint)
        self.received: list[list[bytes]] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        deadline = time.monotonic() + 30
        while not self._stop.is_set() and time.monotonic() < deadline:
            if not self.sock.poll(50):
                continue
            ident, *frames = self.sock.recv_multipart()
            self.received.append(frames)
            for reply in self._forge(frames):
                self.sock.send_multipart([ident, *reply])

    def _forge(self, frames: list[bytes]) -> list[list[bytes]]:
        try:
            header = msgpack.unpackb(frames[2])
        except Exception:
            return []
        req, job = header.get("req"), header.get("job")
        if header.get("type") == "submit":
            w, h = header["content"]["w"], header["content"]["h"]
            red = np.zeros((h, w, 3), np.uint8)
            red[..., 0] = 255
            msg = protocol.Message("result", {"job": job, "image": image(red), "stats": {},
                                              "iterates": b""})  # fmt: skip
            return [protocol.encode(msg, None)]
        fields = {"protocol": 1, "server": "0", "device": "evil", "model": "vgg19",
                  "weights": {}, "limits": {}, "features": [], "heartbeat_s": 1.0}  # fmt: skip
        if req is not None:
            fields["req"] = req
        return [protocol.encode(protocol.Message("welcome", fields), None)]

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.sock.close()
        self.ctx.term()


# --------------------------------------------------------------------------- defect 1


def test_keyless_client_refuses_to_send_to_a_squatter(private_runtime: Path):
    squatter = Squatter()
    try:
        with Client(squatter.endpoint, timeout=2.0) as c:
            assert c.key is None
            with pytest.raises(Unauthenticated) as err:
                c.submit(image(rgb(32, 32)), [image(rgb(8, 8))], {"size": 32})
            with pytest.raises(Unauthenticated):
                c.hello()
        assert connection.ENV_FILE in err.value.hint
        assert "no key" in err.value.message
        time.sleep(0.3)
        assert squatter.received == []  # not one frame of the user's image left the client
    finally:
        squatter.close()


def test_keyless_client_with_nothing_listening_says_start_it(private_runtime: Path):
    c = Client(f"tcp://127.0.0.1:{free_port()}", timeout=2.0)
    with c, pytest.raises(DaemonUnavailable) as err:
        c.ping()
    assert "neural-style serve" in err.value.hint


# --------------------------------------------------------------------------- defect 2


def _plant(path: Path, endpoint: str, pid: int, pidns: str, mode: int = 0o600) -> None:
    info = connection.ConnectionInfo(endpoint, pid, b"k" * 32, "0", time.time(), "", pidns)
    connection.write(info, path)
    os.chmod(path, mode)


def _dead_pid() -> int:
    pid = 2**22 - 7
    while not _is_dead(pid):
        pid -= 1
    return pid


def _is_dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def test_discovery_keeps_a_live_daemon_whose_pid_it_cannot_see(private_runtime: Path):
    """A sandboxed reader sees another PID namespace: the pid looks dead, the daemon isn't."""
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        endpoint = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
        path = connection.path_for(endpoint)
        for pidns in ("pid:[1]", connection.pid_namespace()):  # other namespace, then ours
            _plant(path, endpoint, _dead_pid(), pidns)
            assert connection.discover(endpoint) is not None
            assert connection.discover() is not None
            assert path.exists(), f"deleted a live daemon's file ({pidns})"
    finally:
        listener.close()


def test_discovery_removes_a_file_only_when_the_daemon_is_proved_gone(private_runtime: Path):
    endpoint = f"tcp://127.0.0.1:{free_port()}"  # nothing listens
    path = connection.path_for(endpoint)
    _plant(path, endpoint, _dead_pid(), "pid:[1]")  # another namespace: not proved
    assert connection.discover() is None
    assert path.exists()
    _plant(path, endpoint, _dead_pid(), connection.pid_namespace())  # dead here + refused
    assert connection.discover() is None
    assert not path.exists()


# --------------------------------------------------------------------------- defect 3


@pytest.fixture
def tmp_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """XDG_RUNTIME_DIR unset: the /tmp fallback (here: a private temp root)."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.delenv(connection.ENV_FILE, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root / f"neural-style-{os.getuid()}"


def _attacker_file(folder: Path, mode: int = 0o666) -> Path:
    listener_port = free_port()
    path = folder / "daemon.json"
    path.write_text(json.dumps({"endpoint": f"tcp://127.0.0.1:{listener_port}", "pid": 1,
                                "key": "ab" * 32}))  # fmt: skip
    os.chmod(path, mode)
    return path


def test_discovery_ignores_a_world_writable_fallback_folder(tmp_fallback: Path):
    tmp_fallback.mkdir(mode=0o777)
    os.chmod(tmp_fallback, 0o777)
    _attacker_file(tmp_fallback, 0o600)
    problems: list[str] = []
    assert connection.discover(None, problems) is None
    assert any("0777" in p and str(tmp_fallback) in p for p in problems), problems


def test_discovery_ignores_a_planted_world_readable_file(tmp_fallback: Path):
    tmp_fallback.mkdir(mode=0o700)
    path = _attacker_file(tmp_fallback, 0o666)
    problems: list[str] = []
    assert connection.discover(None, problems) is None
    assert any("0666" in p and str(path) in p for p in problems), problems
    # The client says why, instead of using the attacker's endpoint and key.
    with Client(timeout=1.0) as c:
        assert c.key is None
        assert any(str(path) in p for p in c.discovery_problems)


def test_discovery_ignores_files_and_folders_of_another_user(
    tmp_fallback: Path, monkeypatch: pytest.MonkeyPatch
):
    tmp_fallback.mkdir(mode=0o700)
    path = _attacker_file(tmp_fallback, 0o600)
    assert connection.load(path) is not None
    monkeypatch.setattr(os, "getuid", lambda: os.geteuid() + 1)  # "we" are someone else
    problems: list[str] = []
    assert connection.load(path, problems) is None
    assert connection.discover(None, problems) is None
    assert any("belongs to uid" in p for p in problems), problems


def test_explicit_connection_file_must_be_private(tmp_path: Path, monkeypatch):
    path = _attacker_file(tmp_path, 0o644)
    monkeypatch.setenv(connection.ENV_FILE, str(path))
    problems: list[str] = []
    assert connection.discover(None, problems) is None
    assert "0644" in problems[0]
    os.chmod(path, 0o600)
    assert connection.discover(None) is not None
