"""The daemon's CURVE keys: its server key pair and the local client key pair it hands to
whoever can read its connection file.

Why: on NULL TCP any local process (a sandboxed one included) can complete the ZMTP
handshake and make libzmq buffer a multipart message without bound before the daemon sees
a byte of it. With CURVE on every endpoint and ZAP admitting only known client keys, a
peer without the 0600 connection file fails the handshake and sends no message at all.

Both pairs live in the state dir (``$XDG_STATE_HOME/neural-style``, else
``~/.local/state/neural-style``; 0700), each in a 0600 zmq.auth certificate file, so they
stay the same across restarts. A file that is not private (or not this user's) is
replaced by a fresh pair: its secret may have been read.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import zmq

from neural_style.shared import connection
from neural_style.shared.errors import ErrorCode, NeuralStyleError
from neural_style.shared.files import write_atomic

log = logging.getLogger("neural_style.daemon.service")

#: File names of the two certificates inside the state dir.
SERVER_CERT = "server.key_secret"
LOCAL_CLIENT_CERT = "local-client.key_secret"


@dataclass(frozen=True)
class DaemonKeys:
    """Z85 keys: the server pair the router serves with, the client pair it authorises."""

    server_public: bytes
    server_secret: bytes
    client_public: bytes
    client_secret: bytes


def state_dir() -> Path:
    """``$XDG_STATE_HOME/neural-style`` (default ``~/.local/state/neural-style``)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "neural-style"


def daemon_keys(folder: Path | None = None, server_cert: Path | None = None) -> DaemonKeys:
    """Load (or create once) the daemon's keys; ``server_cert`` (``--curve-secret-key``)
    replaces the stored server pair."""
    folder = folder or state_dir()
    _private_dir(folder)
    if server_cert is not None:
        from neural_style.daemon.service.gatekeeper import load_curve_keys

        server = load_curve_keys(server_cert)
    else:
        server = keypair(folder / SERVER_CERT)
    client = keypair(folder / LOCAL_CLIENT_CERT)
    return DaemonKeys(*server, *client)


def keypair(path: Path) -> tuple[bytes, bytes]:
    """(public, secret) Z85 from a private certificate file, created when absent or unsafe."""
    problem = connection.file_problem(path)
    if problem is None:
        pair = _read_cert(path)
        if pair is not None:
            return pair
        problem = "it is not a CURVE certificate"
    if problem != "it does not exist":
        log.warning("replacing the CURVE key file %s with a new key pair: %s", path, problem)
    public, secret = zmq.curve_keypair()
    write_atomic(path, _cert_text(public, secret), mode=0o600, fsync=True)
    return public, secret


def _private_dir(folder: Path) -> None:
    """Create ``folder`` 0700 (parents as needed); refuse one that is not this user's."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    problem = connection.dir_problem(folder)
    if problem is not None and "mode" in problem:
        os.chmod(folder, 0o700)
        problem = connection.dir_problem(folder)
    if problem is not None:
        raise NeuralStyleError(
            ErrorCode.INTERNAL,
            f"Cannot keep the daemon's CURVE keys in {folder}: {problem}.",
            "Remove that folder (or set XDG_STATE_HOME to a private one) and restart.",
        )


def _read_cert(path: Path) -> tuple[bytes, bytes] | None:
    public = secret = b""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None
    for line in text.splitlines():
        name, _, value = line.strip().partition("=")
        if name.strip() == "public-key":
            public = value.strip().strip('"').encode("ascii")
        elif name.strip() == "secret-key":
            secret = value.strip().strip('"').encode("ascii")
    if len(public) != connection.CURVE_KEY_CHARS or len(secret) != connection.CURVE_KEY_CHARS:
        return None
    try:
        if zmq.curve_public(secret) != public:
            return None
    except (ValueError, zmq.ZMQError):
        return None
    return public, secret


def _cert_text(public: bytes, secret: bytes) -> str:
    return (
        "#   neural-style daemon CURVE certificate (zmq.auth format); keep it private\n"
        "metadata\n"
        "curve\n"
        f'    public-key = "{public.decode("ascii")}"\n'
        f'    secret-key = "{secret.decode("ascii")}"\n'
    )
