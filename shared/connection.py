"""The connection file: how a client finds the daemon and the key that signs its messages.

The daemon writes ``{endpoint, pid, key, version, started}`` as JSON, readable only by the
user (0600), in ``$XDG_RUNTIME_DIR/neural-style/`` (else ``/tmp/neural-style-$UID/``, a
0700 directory the user owns). ``NEURAL_STYLE_CONNECTION_FILE`` names the file explicitly,
for clients that cannot see the runtime dir (the GIMP plug-in in a chroot or a Flatpak).

The default endpoint uses ``daemon.json``; any other endpoint uses its own file name, so
several daemons can run, and a client given only an endpoint finds the key by scanning the
directory for the file whose endpoint matches. Standard library only: this module is
copied into the GIMP plug-in folder.

Readers trust a file only under the writer's rules: the file and its folder belong to this
user, the file is not readable or writable by anyone else, and a scanned runtime folder is
0700 and not a symlink. Anything else is ignored, with the reason kept in ``problems``.
Readers never delete a file on a PID check alone (a sandboxed GIMP sees other PIDs): a
file is removed only when its PID is dead *in the same PID namespace* and its endpoint
refuses connections, i.e. the daemon is proved gone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .defaults import DEFAULT_ENDPOINT, is_loopback_host
from .files import write_atomic

ENV_FILE = "NEURAL_STYLE_CONNECTION_FILE"
DEFAULT_NAME = "daemon.json"
#: Largest connection file a reader parses (real ones are ~450 bytes).
MAX_FILE_BYTES = 64 * 1024
#: Length of a Z85-encoded CURVE key (32 bytes).
CURVE_KEY_CHARS = 40

log = logging.getLogger(__name__)


@dataclass
class ConnectionInfo:
    """One daemon's connection file."""

    endpoint: str
    pid: int
    key: bytes
    version: str = ""
    started: float = 0.0
    #: Z85 CURVE public key of the daemon (every TCP/ipc endpoint unless --insecure-null).
    curve_server_key: str = ""
    #: The writer's PID namespace (``/proc/self/ns/pid`` link), so readers know whether
    #: ``pid`` means anything to them.
    pidns: str = ""
    #: A CURVE client key pair (Z85) the daemon authorises: whoever can read this 0600 file
    #: may finish the handshake, a peer without it cannot send a single message.
    curve_client_public: str = ""
    curve_client_secret: str = ""
    path: Path | None = None

    def client_curve_keys(self) -> tuple[bytes, bytes] | None:
        """(public, secret) Z85 client keys from the file, or None when it has none."""
        public, secret = self.curve_client_public, self.curve_client_secret
        if not all(len(k) == CURVE_KEY_CHARS and k.isascii() for k in (public, secret)):
            return None
        return public.encode("ascii"), secret.encode("ascii")

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
        if self.pidns:
            data["pidns"] = self.pidns
        if self.curve_client_public and self.curve_client_secret:
            data["curve_client_public"] = self.curve_client_public
            data["curve_client_secret"] = self.curve_client_secret
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
    if is_loopback_host(host):
        host = "127.0.0.1"
    return f"tcp://{host}:{int(port)}"


def write(info: ConnectionInfo, path: Path) -> Path:
    """Write atomically with mode 0600 (never world-readable, not even for a moment)."""
    if path.parent == runtime_dir():
        _make_private_dir(path.parent)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, info.to_json(), mode=0o600, fsync=True)
    info.path = path
    return path


def read(path: Path) -> ConnectionInfo | None:
    """Parse one file; None when missing or malformed (never raises for bad content).

    No trust checks: :func:`load` is what readers use.
    """
    try:
        with open(path, "rb") as fh:
            text = fh.read(MAX_FILE_BYTES + 1)
        if len(text) > MAX_FILE_BYTES:
            return None
        data = json.loads(text.decode("utf-8"))
        info = ConnectionInfo(
            endpoint=str(data["endpoint"]),
            pid=int(data["pid"]),
            key=bytes.fromhex(str(data["key"])),
            version=str(data.get("version", "")),
            started=float(data.get("started", 0.0)),
            curve_server_key=str(data.get("curve_server_key", "")),
            pidns=str(data.get("pidns", "")),
            curve_client_public=str(data.get("curve_client_public", "")),
            curve_client_secret=str(data.get("curve_client_secret", "")),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    info.path = Path(path)
    return info


def file_problem(path: Path, *, follow: bool = False) -> str | None:
    """Why ``path`` must not be trusted as a connection file, or None when it may be.

    The writer's rules: a regular file owned by this user, no group/other permission
    bits. ``follow`` accepts a symlink to such a file (for an explicitly named file).
    """
    return _trust_problem(
        path,
        follow,
        stat.S_ISREG,
        "it is not a regular file",
        "its mode is {mode:04o}; others could read or change it (the daemon writes 0600)",
    )


def dir_problem(path: Path) -> str | None:
    """Why the folder ``path`` must not be trusted to hold connection files, or None."""
    return _trust_problem(
        path, False, stat.S_ISDIR, "it is not a directory", "its mode is {mode:04o}, not 0700"
    )


def _trust_problem(
    path: Path, follow: bool, kind_ok: Callable[[int], bool], wrong_kind: str, loose_mode: str
) -> str | None:
    """The rules files and folders share: it exists, is no symlink, is of the right kind,
    belongs to this user and has no group/other permission bits."""
    try:
        info = os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        return "it does not exist"
    except OSError as exc:
        return f"it cannot be read ({exc.strerror or exc})"
    if stat.S_ISLNK(info.st_mode):
        return "it is a symbolic link"
    if not kind_ok(info.st_mode):
        return wrong_kind
    if hasattr(os, "getuid"):
        if info.st_uid != os.getuid():
            return f"it belongs to uid {info.st_uid}, not to this user (uid {os.getuid()})"
        if info.st_mode & 0o077:
            return loose_mode.format(mode=stat.S_IMODE(info.st_mode))
    return None


def load(
    path: Path, problems: list[str] | None = None, *, follow: bool = False
) -> ConnectionInfo | None:
    """Read ``path`` if the writer's owner/mode rules hold; else None, saying why."""
    problem = file_problem(Path(path), follow=follow)
    if problem is None:
        info = read(Path(path))
        if info is not None:
            return info
        problem = "it is not a valid connection file"
    if problem != "it does not exist":
        _note(problems, f"ignored {path}: {problem}")
    return None


def _note(problems: list[str] | None, text: str) -> None:
    log.warning("connection file %s", text)
    if problems is not None and text not in problems:
        problems.append(text)


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


def pid_namespace() -> str:
    """This process's PID namespace id (``pid:[4026531836]``), or "" where unknown."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def endpoint_refuses(endpoint: str, timeout: float = 0.5) -> bool:
    """True only when ``endpoint`` provably has no listener (connection refused/no socket).

    Anything uncertain (timeouts, remote hosts, other transports) counts as "may be alive".
    """
    transport, _, address = endpoint.partition("://")
    try:
        if transport == "tcp":
            host, _, port = address.rpartition(":")
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
        elif transport == "ipc" and hasattr(socket, "AF_UNIX"):
            with socket.socket(socket.AF_UNIX) as probe:
                probe.settimeout(timeout)
                probe.connect(address)
        else:
            return False
    except (ConnectionRefusedError, FileNotFoundError):
        return True
    except (OSError, ValueError):
        return False
    return False


def proved_gone(info: ConnectionInfo) -> bool:
    """The daemon that wrote ``info`` is certainly gone: its endpoint refuses connections,
    and its PID is dead in our own PID namespace (never decided on the PID alone)."""
    return _same_namespace(info) and not pid_alive(info.pid) and endpoint_refuses(info.endpoint)


def discover(
    endpoint: str | None = None, problems: list[str] | None = None
) -> ConnectionInfo | None:
    """The connection info to use for ``endpoint`` (any daemon when None).

    An explicit ``NEURAL_STYLE_CONNECTION_FILE`` comes first (its pid may live in another
    pid namespace). Otherwise the endpoint's own file, then a scan of the runtime dir.
    Files that break the owner/mode rules are ignored; the reasons are appended to
    ``problems`` (and logged). A file whose endpoint refuses connections is skipped when
    scanning for any daemon, and deleted only when its daemon is :func:`proved_gone`.
    """
    explicit = os.environ.get(ENV_FILE)
    if explicit:
        info = load(Path(explicit), problems, follow=True)
        if info and (endpoint is None or normalize(info.endpoint) == normalize(endpoint)):
            return info
        if endpoint is None:
            return None
    directory = runtime_dir()
    problem = dir_problem(directory)
    if problem is not None:
        if problem != "it does not exist":
            _note(problems, f"ignored the folder {directory}: {problem}")
        return None
    candidates = [] if explicit else [path_for(endpoint)]
    candidates += sorted(directory.glob("daemon*.json"), key=_mtime, reverse=True)
    seen: set[Path] = set()
    for path in candidates:
        if path in seen:
            continue
        seen.add(path)
        info = load(path, problems)
        if info is None:
            continue
        if endpoint is not None and normalize(info.endpoint) != normalize(endpoint):
            continue
        if endpoint_refuses(info.endpoint):
            if _same_namespace(info) and not pid_alive(info.pid):
                remove(path, info.pid)  # proved gone: dead PID here and nothing listens
                continue
            if endpoint is None:
                continue  # nothing listens there now; look for another daemon
        return info
    return None


def _same_namespace(info: ConnectionInfo) -> bool:
    return bool(info.pidns) and info.pidns == pid_namespace()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def make_info(
    endpoint: str,
    key: bytes,
    version: str,
    curve_server_key: str = "",
    curve_client: tuple[str, str] = ("", ""),
) -> ConnectionInfo:
    """Info for the current process, stamped now; ``curve_client``: (public, secret) Z85."""
    return ConnectionInfo(
        endpoint,
        os.getpid(),
        key,
        version,
        time.time(),
        curve_server_key,
        pid_namespace(),
        *curve_client,
    )
