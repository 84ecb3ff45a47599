"""This client's CURVE keys: the stable key pair a daemon can allow-list (zmq.auth's
certificate files), and the daemon's public key from the environment or its connection file.
"""

from __future__ import annotations

import os
from pathlib import Path

import zmq

from . import connection
from .client_errors import Unauthenticated
from .files import write_atomic

#: Environment variable: Z85 CURVE public key of a remote daemon (or a file holding it).
ENV_CURVE_SERVER_KEY = "NEURAL_STYLE_CURVE_SERVER_KEY"
#: Environment variable: this client's stable CURVE secret-key file (created 0600 if absent).
ENV_CLIENT_KEY = "NEURAL_STYLE_CLIENT_KEY"


def curve_server_key(info: connection.ConnectionInfo | None) -> str:
    """Z85 public key of a CURVE daemon: environment (key or file) or connection file."""
    value = os.environ.get(ENV_CURVE_SERVER_KEY, "").strip()
    if value and os.path.isfile(value):
        value = read_public_key(value)
    if not value and info is not None:
        value = info.curve_server_key
    return value


def client_curve_keys(info: connection.ConnectionInfo | None) -> tuple[bytes, bytes]:
    """This client's CURVE pair: ``$NEURAL_STYLE_CLIENT_KEY`` when set, else the pair in
    the daemon's connection file (what a sandboxed plug-in has), else the user's own key."""
    from_file = info.client_curve_keys() if info is not None else None
    if from_file is not None and not os.environ.get(ENV_CLIENT_KEY):
        return from_file
    return client_keypair()


def default_client_key_path() -> Path:
    """Where this user's stable CURVE client key lives (``$NEURAL_STYLE_CLIENT_KEY`` or
    ``$XDG_CONFIG_HOME/neural-style/client.key_secret``)."""
    explicit = os.environ.get(ENV_CLIENT_KEY)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "neural-style" / "client.key_secret"


def client_keypair(path: Path | None = None, *, create: bool = True) -> tuple[bytes, bytes]:
    """(public, secret) Z85 CURVE keys of this client: stable, so a daemon can allow-list it.

    Created once (0600 secret file, 0644 ``.key`` public file beside it, in the zmq.auth
    certificate format); a folder of such ``.key`` files is what ``serve
    --authorized-keys`` reads.
    """
    path = Path(path) if path is not None else default_client_key_path()
    if path.exists():
        return load_keypair(path)
    if not create:
        raise FileNotFoundError(path)
    public, secret = zmq.curve_keypair()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, cert_text(public, secret), mode=0o600)
    public_path = public_key_path(path)
    public_path.write_text(cert_text(public, None), encoding="utf-8")
    return public, secret


def public_key_path(secret_path: Path) -> Path:
    """``client.key_secret`` -> ``client.key`` (zmq.auth's naming)."""
    name = secret_path.name
    stem = name[: -len("_secret")] if name.endswith("_secret") else name + ".pub"
    return secret_path.with_name(stem)


def cert_text(public: bytes, secret: bytes | None) -> str:
    lines = [
        "#   neural-style CURVE client certificate (zmq.auth format)",
        "#   The secret key must stay private: anyone holding it is this client.",
        "metadata",
        "curve",
        f'    public-key = "{public.decode("ascii")}"',
    ]
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode("ascii")}"')
    return "\n".join(lines) + "\n"


def load_keypair(path: Path) -> tuple[bytes, bytes]:
    import stat as _stat

    info = path.stat()
    if hasattr(os, "getuid") and (info.st_uid != os.getuid() or info.st_mode & 0o077):
        raise Unauthenticated(
            f"The CURVE client key {path} is readable by others or not yours (mode "
            f"{_stat.S_IMODE(info.st_mode):04o}); it is not used.",
            f"chmod 600 {path}, or remove it to make a new one (then authorise the new key).",
        )
    public = secret = b""
    for line in path.read_text(encoding="utf-8").splitlines():
        name, _, value = line.strip().partition("=")
        if name.strip() == "public-key":
            public = value.strip().strip('"').encode("ascii")
        elif name.strip() == "secret-key":
            secret = value.strip().strip('"').encode("ascii")
    if len(public) != 40 or len(secret) != 40:
        raise Unauthenticated(
            f"{path} is not a CURVE secret key file.", "Remove it to make a new one."
        )
    return public, secret


def read_public_key(path: str) -> str:
    """The ``public-key = "..."`` line of a zmq certificate file, or the file's text."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    for line in text.splitlines():
        if line.strip().startswith("public-key"):
            return line.split("=", 1)[1].strip().strip('"')
    return text.strip()
