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


# --------------------------------------------------------------------------- real daemons

import psutil  # noqa: E402

from neural_style.shared.client import Done  # noqa: E402
from tests.daemon_helpers import Daemon, cli, daemon_env  # noqa: E402

#: The documented bound on what the hostile floods below may cost the daemon.
RSS_BOUND = 64 * 2**20


def _job(c: Client, w: int = 40, h: int = 40) -> object:
    return c.stylize(image(rgb(w, h, 90)), [image(rgb(32, 32, 30))], {"size": 48, "iterations": 3})


def _raw(endpoint: str, **opts: object) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDTIMEO, 2000)
    for name, value in opts.items():
        setattr(sock, name, value)
    sock.connect(endpoint)
    return sock


@pytest.fixture(scope="module")
def null_daemon(synthetic_weights: Path, tmp_path_factory: pytest.TempPathFactory):
    """A ``--insecure-null`` daemon: what still bounds a peer that got past the handshake."""
    d = Daemon(synthetic_weights, tmp_path_factory.mktemp("null"), queue=3,
               extra=("--max-pixels", "1000000", "--max-connections", "24",
                      "--insecure-null"))  # fmt: skip
    try:
        yield d.wait_ready()
    finally:
        assert d.stop() == 0, d.stderr()


@pytest.fixture(scope="module")
def curve_daemon(synthetic_weights: Path, tmp_path_factory: pytest.TempPathFactory):
    """CURVE on loopback with a ZAP allow-list; the user's own key lives in a private
    config dir so that the test's 'unknown' keys really are unknown."""
    import zmq.auth

    work = tmp_path_factory.mktemp("curve")
    public_file, secret_file = zmq.auth.create_certificates(str(work), "server")
    allowed = work / "allowed"
    allowed.mkdir()
    config = work / "config"
    env_extra = {"XDG_CONFIG_HOME": str(config)}
    old = {k: os.environ.get(k) for k in env_extra}
    os.environ.update(env_extra)  # the daemon subprocess inherits it
    d = Daemon(synthetic_weights, work, extra=("--curve-secret-key", secret_file,
               "--authorized-keys", str(allowed), "--max-pixels", "1000000"))  # fmt: skip
    try:
        d.wait_ready()
        d.public_file = public_file
        d.allowed = allowed
        yield d
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        assert d.stop() == 0, d.stderr()


def _rss(d: Daemon) -> int:
    return psutil.Process(d.proc.pid).memory_info().rss


def test_replayed_signed_message_is_refused_over_the_wire(null_daemon: Daemon):
    sock = _raw(null_daemon.endpoint)
    try:
        frames = protocol.encode(protocol.Message("ping", {"req": 5, "t": 1.0}), null_daemon.key)
        codes = []
        for _ in range(2):
            sock.send_multipart(frames)
            assert sock.poll(3000), "no answer"
            msg = protocol.decode(sock.recv_multipart(), null_daemon.key,
                                  accept_unsigned_errors=True)  # fmt: skip
            codes.append((msg.type, msg.get("code"), msg.get("message", "")))
    finally:
        sock.close()
    assert codes[0][0] == "pong"
    assert codes[1][:2] == ("error", "unauthenticated") and "replayed" in codes[1][2]


def test_unauthenticated_flood_on_null_tcp_is_bounded(null_daemon: Daemon):
    """Oversized frame 0, 3,000-frame messages, bad signatures with big headers: each is
    refused before it is copied or unpacked; RSS stays under the bound, jobs still run."""
    with null_daemon.client(timeout=30) as c:
        assert isinstance(_job(c), Done)  # warm up
    before = _rss(null_daemon)
    t0 = time.monotonic()
    sock = _raw(null_daemon.endpoint)
    try:
        for _ in range(20):  # 20 x 15 MiB frame 0 (under MAXMSGSIZE, so it is received)
            sock.send_multipart([b"\x00" * (15 * 2**20), b"", b"\x80"])
        for _ in range(10):  # 10 x 3,000 frames
            sock.send_multipart([protocol.VERSION, b"", *[b"x" * 1024] * 2998])
        for _ in range(200):  # bad signature, big header: never unpacked
            sock.send_multipart([protocol.VERSION, b"0" * 64, b"\x81" + b"\xa1" * 60000])
        for _ in range(5):  # over MAXMSGSIZE (16 MiB here): the link is dropped
            sock.send_multipart([protocol.VERSION, b"", b"\x00" * (17 * 2**20)])
    finally:
        sock.close()
    assert time.monotonic() - t0 < 60
    time.sleep(1.0)
    with null_daemon.client(timeout=30) as c:
        assert isinstance(_job(c), Done)
        status = c.status()
    growth = _rss(null_daemon) - before
    print(f"\nNULL tcp flood: RSS {before / 2**20:.0f} -> {(before + growth) / 2**20:.0f} MiB "
          f"(+{growth / 2**20:.1f} MiB); rejected {status['jobs']['rejected']}")  # fmt: skip
    assert growth < RSS_BOUND, f"RSS grew by {growth / 2**20:.0f} MiB"


def test_connection_cap_holds_and_service_resumes(null_daemon: Daemon):
    """Defect 8: connections beyond --max-connections are refused at the handshake, so
    idle peers cannot use up the daemon's descriptors; real clients work afterwards."""
    proc = psutil.Process(null_daemon.proc.pid)
    fds_before = proc.num_fds()
    socks = [_raw(null_daemon.endpoint) for _ in range(120)]
    raw = [socket.create_connection(("127.0.0.1", null_daemon.port)) for _ in range(200)]
    try:
        time.sleep(2.0)
        fds_during = proc.num_fds()
    finally:
        for s in socks:
            s.close()
        for r in raw:
            r.close()
    deadline = time.monotonic() + 30
    while True:
        try:
            with null_daemon.client(timeout=5) as c:
                status = c.status()
                assert isinstance(_job(c), Done)
            break
        except DaemonUnavailable:
            assert time.monotonic() < deadline, "service did not resume"
    print(f"\nconnections: fds {fds_before} -> {fds_during} with 320 peers; "
          f"zap_denied {status['jobs']['zap_denied']}")  # fmt: skip
    assert status["jobs"]["zap_denied"] > 0
    assert status["max_connections"] == 24


def test_second_daemon_refuses_to_take_over(null_daemon: Daemon, synthetic_weights: Path):
    out = cli("serve", "--bind", f"tcp://127.0.0.1:{free_port()}", "--weights",
              str(synthetic_weights), "--connection-file", str(null_daemon.connection_file),
              "--log-file", str(null_daemon.workdir / "second.log"),
              env=daemon_env(), timeout=60)  # fmt: skip
    assert out.returncode == 1 and "another daemon" in out.stderr, out.stderr
    assert connection.read(null_daemon.connection_file).pid == null_daemon.proc.pid
    with null_daemon.client() as c:
        assert c.ping() < 1.0


def test_thin_content_on_the_real_engine(null_daemon: Daemon):
    """Defect 6 with the real VGG-19: 64x15 is bad_request; 64x16 (the minimum) runs."""
    from neural_style.shared.client import BadRequest

    with null_daemon.client(timeout=30) as c:
        with pytest.raises(BadRequest, match="at least 16"):
            c.stylize(image(rgb(64, 15)), [image(rgb(32, 32))], {"size": 64, "iterations": 2})
        done = c.stylize(image(rgb(64, 16)), [image(rgb(32, 32))], {"size": 64, "iterations": 2})
        assert isinstance(done, Done)


def test_curve_zap_keeps_unknown_peers_out(curve_daemon: Daemon, tmp_path: Path, monkeypatch):
    """Defects 4+5: a NULL peer or an unknown CURVE key never gets a frame to the decoder
    (incomplete multipart floods cost nothing); authorising the key lets it in."""
    import zmq.auth

    server_public, _ = zmq.auth.load_certificate(curve_daemon.public_file)
    monkeypatch.setenv("NEURAL_STYLE_CURVE_SERVER_KEY", curve_daemon.public_file)
    before = _rss(curve_daemon)
    chunk = b"\x00" * (60 * 1024)
    null_peer = _raw(curve_daemon.endpoint)
    stranger_pub, stranger_sec = zmq.curve_keypair()
    stranger = _raw(curve_daemon.endpoint, curve_serverkey=server_public,
                    curve_publickey=stranger_pub, curve_secretkey=stranger_sec)  # fmt: skip
    sent = 0
    try:
        for peer in (null_peer, stranger):
            for _ in range(1000):  # 60 KiB frames with MORE and no last frame: ~59 MiB each
                try:
                    peer.send(chunk, zmq.SNDMORE | zmq.NOBLOCK)
                    sent += len(chunk)
                except zmq.Again:
                    break
        time.sleep(2.0)
    finally:
        null_peer.close()
        stranger.close()
    growth = _rss(curve_daemon) - before
    print(f"\nCURVE+ZAP flood: queued {sent / 2**20:.0f} MiB of incomplete multipart; RSS "
          f"{before / 2**20:.0f} -> {(before + growth) / 2**20:.0f} MiB")  # fmt: skip
    assert growth < RSS_BOUND
    # The stranger, as a real client: refused at the handshake, so it hears nothing.
    key_file = tmp_path / "stranger.key_secret"
    monkeypatch.setenv("NEURAL_STYLE_CLIENT_KEY", str(key_file))
    with (
        Client(curve_daemon.endpoint, key=curve_daemon.key, timeout=2.0) as c,
        pytest.raises(DaemonUnavailable, match="CURVE"),
    ):
        c.ping()
    from neural_style.shared.keys import client_keypair

    public, _ = client_keypair(key_file)
    out = cli("authorize-key", public.decode(), "--authorized-keys", str(curve_daemon.allowed),
              env=daemon_env())  # fmt: skip
    assert out.returncode == 0, out.stderr
    with Client(curve_daemon.endpoint, key=curve_daemon.key, timeout=10.0) as c:
        assert c.status()["jobs"]["zap_denied"] >= 2
        assert isinstance(_job(c), Done)
