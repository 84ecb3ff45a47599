"""CURVE on every endpoint (issue 27, part 1): real daemon processes, raw sockets.

A raw ZMTP 3 peer on a plain TCP socket is what a hostile local process (a sandboxed one
with no access to the connection file included) can do; a CURVE daemon refuses it at the
greeting. The ``--insecure-null`` daemon is the control that proves the peer works.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import numpy as np
import psutil
import pytest
import zmq

from neural_style.daemon.service import curve_keys
from neural_style.shared import connection, protocol
from neural_style.shared.client import Client, Done
from tests.daemon_helpers import Daemon, cli, daemon_env, free_port, image

#: What the never-finished multipart flood may cost the daemon (issue 27's bound).
FLOOD_RSS_BOUND = 16 * 2**20
FLOOD_BYTES = 192 * 2**20
FLOOD_FRAME = 64 * 1024


def rgb(w: int, h: int, value: int) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


def _job(c: Client) -> object:
    return c.stylize(
        image(rgb(40, 40, 90)), [image(rgb(32, 32, 30))], {"size": 48, "iterations": 3}
    )


def _rss(d: Daemon) -> int:
    return int(psutil.Process(d.proc.pid).memory_info().rss)


@pytest.fixture(scope="module")
def private_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An empty XDG_CONFIG_HOME for this module's daemons and clients: no user's own key
    exists there, so whatever connects does so with the connection file's key."""
    config = tmp_path_factory.mktemp("config")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CONFIG_HOME", str(config))
        mp.delenv(connection.ENV_FILE, raising=False)
        mp.delenv("NEURAL_STYLE_CLIENT_KEY", raising=False)
        mp.delenv("NEURAL_STYLE_CURVE_SERVER_KEY", raising=False)
        yield config


@pytest.fixture(scope="module")
def curve_default(
    synthetic_weights: Path, tmp_path_factory: pytest.TempPathFactory, private_config: Path
) -> Iterator[Daemon]:
    """A plain ``serve`` on loopback TCP: CURVE is what it serves without being asked."""
    d = Daemon(synthetic_weights, tmp_path_factory.mktemp("curve"), use_runtime_dir=True,
               extra=("--max-pixels", "1000000"))  # fmt: skip
    try:
        yield d.wait_ready()
    finally:
        assert d.stop() == 0, d.stderr()


# --------------------------------------------------------------------------- raw ZMTP 3


def _greeting(mechanism: bytes) -> bytes:
    """A ZMTP 3.0 greeting (RFC 23): signature, version 3.0, mechanism, as-server 0."""
    signature = b"\xff" + b"\x00" * 8 + b"\x7f"
    return signature + b"\x03\x00" + mechanism.ljust(20, b"\x00") + b"\x00" * 32


def _ready_command() -> bytes:
    """NULL's READY command with Socket-Type DEALER (RFC 23 NULL mechanism)."""
    body = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER"
    return b"\x04" + bytes([len(body)]) + body


class RawPeer:
    """A plain TCP socket speaking ZMTP 3 NULL: greeting, READY, then long frames with
    the MORE flag and never a last frame (libzmq buffers such a message until its end)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.sendall(_greeting(b"NULL"))
        self.server_greeting = self._read(64)
        self.sent = 0
        self.refused = ""
        self.server_ready = b""

    def _read(self, n: int) -> bytes:
        data = b""
        deadline = time.monotonic() + 5
        while len(data) < n and time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(n - len(data))
            except (TimeoutError, OSError):
                break
            if not chunk:
                break
            data += chunk
        return data

    def _read_command(self) -> bytes:
        """One ZMTP command frame (short or long), or b"" when the server closed."""
        head = self._read(1)
        if not head:
            return b""
        size = self._read(8 if head[0] & 0x02 else 1)
        if not size:
            return b""
        return self._read(struct.unpack(">Q", size)[0] if len(size) == 8 else size[0])

    @property
    def server_mechanism(self) -> bytes:
        return self.server_greeting[12:32].rstrip(b"\x00")

    def flood(self, total: int = FLOOD_BYTES, frame: int = FLOOD_FRAME) -> None:
        """Send READY, then ``total`` bytes in MORE frames; stops at the first error."""
        header = b"\x03" + struct.pack(">Q", frame)  # LONG | MORE
        payload = header + b"\x00" * frame
        try:
            self.sock.sendall(_ready_command())
            # A conforming peer sends messages only after the server's READY (ZMTP 3.0,
            # which libzmq sends once ZAP has answered); one sent earlier is a protocol
            # error and the server drops the connection.
            self.server_ready = self._read_command()
            while self.sent < total:
                self.sock.sendall(payload)
                self.sent += frame
        except OSError as exc:
            self.refused = type(exc).__name__

    def close(self) -> None:
        self.sock.close()


# --------------------------------------------------------------------------- tests


def test_raw_null_peer_is_refused_at_the_handshake(curve_default: Daemon):
    """The 192 MiB never-finished multipart flood on the default endpoint: the CURVE
    daemon drops the NULL peer at the greeting, so its RSS stays put."""
    with curve_default.client(timeout=30) as c:
        assert isinstance(_job(c), Done)  # warm up the job path
    before = _rss(curve_default)
    peers = [RawPeer(curve_default.port) for _ in range(2)]
    try:
        for peer in peers:
            peer.flood()
        time.sleep(1.0)
        growth = _rss(curve_default) - before  # measured while the peers are still open
    finally:
        for peer in peers:
            peer.close()
    print(f"\nCURVE default, 2 raw NULL peers x {FLOOD_BYTES >> 20} MiB: sent "
          f"{[p.sent >> 10 for p in peers]} KiB before refusal ({peers[0].refused}); RSS "
          f"+{growth / 2**20:.1f} MiB")  # fmt: skip
    # libzmq sends its signature, reads the peer's NULL greeting and closes the link
    # before it would name its mechanism: no NULL handshake is ever completed.
    assert all(p.server_mechanism != b"NULL" for p in peers)
    assert all(p.refused and p.sent < FLOOD_BYTES for p in peers), "the handshake went on"
    assert growth < FLOOD_RSS_BOUND, f"RSS grew by {growth / 2**20:.1f} MiB"
    with curve_default.client(timeout=30) as c:
        assert isinstance(_job(c), Done)


def test_cli_status_and_stylize_connect(curve_default: Daemon, tmp_path: Path):
    """The CLI finds the keys in the connection file: status says CURVE, a stylize runs."""
    from PIL import Image

    env = daemon_env(curve_default.runtime_dir)
    out = cli("status", "--endpoint", curve_default.endpoint, "--json", env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["curve"] is True
    content, style, result = tmp_path / "c.png", tmp_path / "s.png", tmp_path / "out.png"
    Image.fromarray(rgb(48, 40, 120)).save(content)
    Image.fromarray(rgb(30, 30, 40)).save(style)
    out = subprocess.run(
        [sys.executable, "-m", "neural_style.daemon.cli", "stylize", str(content), str(style),
         "-o", str(result), "--size", "48", "--iterations", "2", "--preset", "none",
         "--daemon", curve_default.endpoint],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert Image.open(result).size == (48, 40)


def _copy_connection_file(d: Daemon, folder: Path) -> Path:
    """What a Flatpak GIMP has: a copy of the daemon's file somewhere else."""
    folder.mkdir(mode=0o700)
    assert d.connection_file is not None
    copy = folder / "daemon.json"
    shutil.copyfile(d.connection_file, copy)
    os.chmod(copy, 0o600)
    return copy


def test_sandboxed_client_with_a_copy_of_the_file_connects(
    curve_default: Daemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Only the copied file, an empty runtime dir and an empty config dir: the client takes
    the key pair from the file (it creates no key of its own), in-process and from another
    pid namespace (``unshare --pid``, where the file's pid means nothing)."""
    copy = _copy_connection_file(curve_default, tmp_path / "sandbox")
    empty_run, empty_config = tmp_path / "run", tmp_path / "config"
    empty_run.mkdir(mode=0o700)
    empty_config.mkdir()
    monkeypatch.setenv(connection.ENV_FILE, str(copy))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(empty_run))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(empty_config))
    with Client(None, timeout=10) as c:
        assert c.curve and c.status()["curve"] is True
    assert not any(empty_config.rglob("*")), "the client made a key instead of the file's"
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed to test another pid namespace")
    env = {**daemon_env(), connection.ENV_FILE: str(copy), "XDG_RUNTIME_DIR": str(empty_run),
           "XDG_CONFIG_HOME": str(empty_config)}  # fmt: skip
    out = subprocess.run(
        ["unshare", "--user", "--map-current-user", "--pid", "--fork", "--mount-proc",
         sys.executable, "-c",
         "import os, sys; from neural_style.shared.client import Client\n"
         "with Client(None, timeout=10) as c: s = c.status()\n"
         "print(os.getpid(), os.readlink('/proc/self/ns/pid'), s['curve'])"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    _pid, pidns, curve = out.stdout.split()
    assert pidns != connection.pid_namespace() and curve == "True"


def test_wrong_client_key_is_refused(curve_default: Daemon):
    """The right server key but a client key the daemon never authorised: ZAP refuses the
    handshake, a signed ping gets no answer, the refusal is counted."""
    with curve_default.client() as c:
        denied = c.status()["jobs"]["zap_denied"]
    public, secret = zmq.curve_keypair()
    options = {**curve_default.curve_options(), "curve_publickey": public,
               "curve_secretkey": secret}  # fmt: skip
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    for name, value in options.items():
        setattr(sock, name, value)
    sock.connect(curve_default.endpoint)
    try:
        ping = protocol.Message("ping", {"req": 1, "t": 1.0})
        sock.send_multipart(protocol.encode(ping, curve_default.key), zmq.NOBLOCK)
        answered = sock.poll(2000)
    except zmq.Again:
        answered = 0
    finally:
        sock.close()
    assert not answered
    with curve_default.client() as c:
        assert c.status()["jobs"]["zap_denied"] > denied


def test_old_protocol_client_hears_upgrade(curve_default: Daemon, monkeypatch):
    """A protocol-1 client (frame 0 ``NS1``) gets an unsigned version_mismatch framed as
    ``NS1``, which a protocol-1 decoder reads, saying to upgrade the client."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    for name, value in curve_default.curve_options().items():
        setattr(sock, name, value)
    sock.connect(curve_default.endpoint)
    try:
        hello = protocol.Message("hello", {"protocol": 1, "client": "old", "req": 1})
        _, _, header, *buffers = protocol.encode(hello, curve_default.key)
        frames = [b"NS1", protocol.sign(curve_default.key, [b"NS1", header, *buffers]), header]
        sock.send_multipart(frames)
        assert sock.poll(5000), "no answer to an old client"
        reply = sock.recv_multipart()
    finally:
        sock.close()
    assert reply[0] == b"NS1" and reply[1] == b""
    fields = msgpack.unpackb(reply[2])
    assert fields["type"] == "error" and fields["code"] == "version_mismatch"
    assert "upgrade the client" in fields["message"] and "protocol 1" in fields["message"]
    monkeypatch.setattr(protocol, "VERSION", b"NS1")  # how a protocol-1 client decodes it
    msg = protocol.decode(reply, curve_default.key, accept_unsigned_errors=True)
    assert msg.type == "error" and "neural-style" in msg.fields["hint"]


def test_insecure_null_warns_and_serves_null(
    synthetic_weights: Path, tmp_path: Path, private_config: Path
):
    """``--insecure-null``: a warning on stderr, no CURVE key in the file, a NULL client
    works, and the same raw flood now goes through (why it is not the default)."""
    d = Daemon(synthetic_weights, tmp_path, extra=("--insecure-null",)).wait_ready()
    try:
        assert d.info is not None and d.info.curve_server_key == ""
        assert d.info.client_curve_keys() is None
        with d.client(timeout=30) as c:
            assert not c.curve and c.status()["curve"] is False
            assert isinstance(_job(c), Done)
        before = _rss(d)
        peer = RawPeer(d.port)
        try:
            peer.flood()
            time.sleep(1.0)
            growth = _rss(d) - before
        finally:
            peer.close()
        print(f"\n--insecure-null, 1 raw NULL peer: sent {peer.sent >> 20} MiB, RSS "
              f"+{growth / 2**20:.0f} MiB")  # fmt: skip
        assert peer.server_mechanism == b"NULL" and peer.server_ready.startswith(b"\x05READY")
        assert peer.sent == FLOOD_BYTES, peer.refused
    finally:
        assert d.stop() == 0
    assert "WARNING: --insecure-null" in d.stderr()


def test_insecure_null_is_refused_off_loopback(synthetic_weights: Path, tmp_path: Path):
    out = cli("serve", "--bind", f"tcp://0.0.0.0:{free_port()}", "--insecure-null",
              "--weights", str(synthetic_weights), "--log-file", str(tmp_path / "log"),
              env=daemon_env(), timeout=60)  # fmt: skip
    assert out.returncode == 2
    assert "refusing --insecure-null" in out.stderr and "loopback" in out.stderr


def test_daemon_keys_persist_private_and_replace_exposed_ones(tmp_path: Path):
    """The pairs survive a restart (same files), are 0600 in a 0700 folder, and a file
    others could read is replaced by a fresh pair."""
    folder = tmp_path / "state" / "neural-style"
    first = curve_keys.daemon_keys(folder)
    assert curve_keys.daemon_keys(folder) == first
    assert first.server_public != first.client_public
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    for name in (curve_keys.SERVER_CERT, curve_keys.LOCAL_CLIENT_CERT):
        assert oct((folder / name).stat().st_mode & 0o777) == "0o600"
    os.chmod(folder / curve_keys.LOCAL_CLIENT_CERT, 0o644)
    again = curve_keys.daemon_keys(folder)
    assert again.server_public == first.server_public
    assert again.client_public != first.client_public
    assert oct((folder / curve_keys.LOCAL_CLIENT_CERT).stat().st_mode & 0o777) == "0o600"
