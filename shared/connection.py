"""The connection file: how a client finds the daemon and the key that signs its messages.

The daemon writes ``{endpoint, pid, key, version, started}`` as JSON, readable only by the
user (0600), in ``$XDG_RUNTIME_DIR/neural-style/`` (else ``/tmp/neural-style-$UID/``, a
0700 directory the user owns). ``NEURAL_STYLE_CONNECTION_FILE`` names the file explicitly,
for clients that cannot see the runtime dir (the GIMP plug-in in a chroot or a Flatpak).

The default endpoint uses ``daemon.json``; any other endpoint uses its own file name, so
several daemons can run, and a client given only an endpoint finds the key by scanning the
directory for the file whose endpoint matches. Files whose process has died are ignored and
removed. Standard library only: this module is copied into the GIMP plug-in folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import stat
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ENV_FILE = "NEURAL_STYLE_CONNECTION_FILE"
DEFAULT_NAME = "daemon.json"
#: Mirrors protocol.DEFAULT_ENDPOINT (kept literal so this module imports nothing else).
DEFAULT_ENDPOINT = "tcp://127.0.0.1:5599"
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]", "ip6-localhost")


@dataclass
class ConnectionInfo:
    """One daemon's connection file."""

    endpoint: str
    pid: int
    key: bytes
    version: str = ""
    started: float = 0.0
    #: Z85 CURVE public key of the daemon, when it serves CURVE (non-loopback binds).
    curve_server_key: str = ""
    path: Path | None = None

    def to_json(self) -> str:
        data = {
            "endpoint": self.endpoint,
            "pid": self.pid,
            "key": self.key.hex(),
            "version": self.version,
            "started": self.started,
        }
        if self.curve_server_key:
            data["curve_server_key"] = self.curve_server_key
        return json.dumps(data, indent=1)


def new_key() -> bytes:
    """32 random bytes: the shared secret for message signatures."""
    return secrets.token_bytes(32)


def runtime_dir(create: bool = False) -> Path:
    """The per-user directory for connection files (created 0700 when asked)."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and Path(base).is_dir():
        path = Path(base) / "neural-style"
    else:
        path = Path(tempfile.gettempdir()) / f"neural-style-{_user_tag()}"
    if create:
        _make_private_dir(path)
    return path


def _user_tag() -> str:
    if hasattr(os, "getuid"):
        return str(os.getuid())
    return re.sub(r"[^A-Za-z0-9_.-]", "_", os.environ.get("USERNAME", "user"))


def _make_private_dir(path: Path) -> None:
    """Create ``path`` 0700, refusing one that is a symlink or belongs to someone else.

    In a shared /tmp another user could pre-create the directory to read our key.
    """
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700, parents=False)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise OSError(f"{path} is not a directory; remove it and retry")
    if hasattr(os, "getuid"):
        if info.st_uid != os.getuid():
            raise OSError(f"{path} belongs to another user; remove it and retry")
        if info.st_mode & 0o077:
            os.chmod(path, 0o700)


def path_for(endpoint: str | None) -> Path:
    """Where the daemon serving ``endpoint`` writes its connection file."""
    explicit = os.environ.get(ENV_FILE)
    if explicit:
        return Path(explicit)
    if endpoint is None or normalize(endpoint) == normalize(DEFAULT_ENDPOINT):
        return runtime_dir() / DEFAULT_NAME
    tag = re.sub(r"[^A-Za-z0-9]+", "-", endpoint.split("://", 1)[-1]).strip("-")
    return runtime_dir() / f"daemon-{tag}.json"


def normalize(endpoint: str) -> str:
    """Compare endpoints by meaning: ``localhost`` and ``127.0.0.1`` are the same host."""
    endpoint = endpoint.strip()
    match = re.fullmatch(r"tcp://(.+):(\d+)", endpoint)
    if not match:
        return endpoint
    host, port = match.groups()
    if host in _LOOPBACK_NAMES or host.startswith("127."):
        host = "127.0.0.1"
    return f"tcp://{host}:{int(port)}"


def write(info: ConnectionInfo, path: Path) -> Path:
    """Write atomically with mode 0600 (never world-readable, not even for a moment)."""
    if path.parent == runtime_dir():
        _make_private_dir(path.parent)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(info.to_json())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    info.path = path
    return path


def read(path: Path) -> ConnectionInfo | None:
    """Parse one file; None when missing or malformed (never raises for bad content)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        info = ConnectionInfo(
            endpoint=str(data["endpoint"]),
            pid=int(data["pid"]),
            key=bytes.fromhex(str(data["key"])),
            version=str(data.get("version", "")),
            started=float(data.get("started", 0.0)),
            curve_server_key=str(data.get("curve_server_key", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    info.path = Path(path)
    return info


def remove(path: Path | None, pid: int | None = None) -> None:
    """Delete the file, but only if it is still ours (``pid``) when one is given."""
    if path is None:
        return
    if pid is not None:
        info = read(path)
        if info is not None and info.pid != pid:
            return
    with contextlib.suppress(FileNotFoundError):
        Path(path).unlink()


def pid_alive(pid: int) -> bool:
    """Whether a process exists; True when it cannot be told (another OS, no permission)."""
    if sys.platform == "win32":
        return True  # os.kill(pid, 0) would terminate it on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def discover(endpoint: str | None = None) -> ConnectionInfo | None:
    """The connection info to use for ``endpoint`` (any daemon when None).

    An explicit ``NEURAL_STYLE_CONNECTION_FILE`` is trusted as is (its pid may live in
    another pid namespace). Otherwise the endpoint's own file, then a scan of the runtime
    dir; files whose pid is dead are removed on the way.
    """
    explicit = os.environ.get(ENV_FILE)
    if explicit:
        info = read(Path(explicit))
        if info and (endpoint is None or normalize(info.endpoint) == normalize(endpoint)):
            return info
        if endpoint is None:
            return None
    candidates = [path_for(endpoint)] if not explicit else []
    directory = runtime_dir()
    if directory.is_dir():
        candidates += sorted(directory.glob("daemon*.json"), key=_mtime, reverse=True)
    for path in candidates:
        info = read(path)
        if info is None:
            continue
        if not pid_alive(info.pid):
            remove(path, info.pid)
            continue
        if endpoint is None or normalize(info.endpoint) == normalize(endpoint):
            return info
    return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def make_info(
    endpoint: str, key: bytes, version: str, curve_server_key: str = ""
) -> ConnectionInfo:
    """Info for the current process, stamped now."""
    return ConnectionInfo(endpoint, os.getpid(), key, version, time.time(), curve_server_key)
