"""Facts every layer shares, each written once: endpoint, versions, names, dtypes.

Standard library only (this package is copied into the GIMP plug-in folder as
``nsg_shared``). Size bounds live in :mod:`.limits`, error codes in :mod:`.errors`; the
wire format itself in :mod:`.protocol`, which imports these.
"""

from __future__ import annotations

import ipaddress

#: The protocol's one version number: ``hello``/``welcome`` carry it and frame 0 of every
#: message is ``NS<version>``. Bump it when the header layout or the transport changes
#: incompatibly (2: CURVE on every endpoint, client keys from the connection file).
PROTOCOL_VERSION: int = 2
#: Frame 0 of every message, derived from :data:`PROTOCOL_VERSION`.
VERSION_FRAME: bytes = f"NS{PROTOCOL_VERSION}".encode("ascii")

#: Where the daemon listens unless told otherwise (documented in the README).
DEFAULT_PORT: int = 5599
DEFAULT_ENDPOINT: str = f"tcp://127.0.0.1:{DEFAULT_PORT}"
#: What to run when no daemon answers (shown in every "daemon unavailable" hint).
START_COMMAND: str = "neural-style serve"
#: The top-level name the plug-in installer gives its copy of this package.
SHARED_BUNDLE_NAME: str = "nsg_shared"
#: What downloads the VGG-19 weights (named in the hints of every "weights missing").
FETCH_WEIGHTS_COMMAND: str = "neural-style fetch-weights"

#: The GIMP plug-in: its folder and file name under ``plug-ins`` (GIMP needs folder == file).
PLUGIN_NAME: str = "neural_style"
#: ... its procedure (also the help id of its dialog's Help button) and help domain.
PLUGIN_PROCEDURE: str = "python-fu-neural-style"
PLUGIN_HELP_DOMAIN: str = "org.neural-style.gimp"
#: ... what installs it again (after a GIMP upgrade to another Python, a broken bundle).
INSTALL_PLUGIN_COMMAND: str = "neural-style install-plugin"
#: ... and the installer's record beside it (version, GIMP's Python, the serve command).
INSTALL_RECORD: str = "INSTALLED.json"

#: Long side of the progress previews a client asks for unless it says otherwise.
PREVIEW_SIDE: int = 256

#: Frames mode: the temporal loss weight when a client sends none (``submit.temporal_weight``;
#: ``neural-style batch --frames --temporal-weight``; the GIMP animation procedure's
#: default). How it was chosen: docs/frames.md.
TEMPORAL_WEIGHT: float = 1e9

#: Pixel sample types on the wire: code -> bytes per channel value.
DTYPE_SIZES: dict[str, int] = {"u8": 1, "u16": 2, "f32": 4}
#: The same codes as numpy dtype strings (little-endian), for the daemon's codec.
DTYPE_NUMPY: dict[str, str] = {"u8": "<u1", "u16": "<u2", "f32": "<f4"}

#: Host names that mean this machine (besides 127.0.0.0/8 and ::1).
LOOPBACK_NAMES: tuple[str, ...] = ("localhost", "lo", "ip6-localhost")


def is_loopback_host(host: str) -> bool:
    """True for a name or address of this machine (``localhost``, ``127.x``, ``::1``)."""
    host = host.strip("[]")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_endpoint(endpoint: str) -> bool:
    """True for tcp on a loopback address, ipc and inproc; False for anything reachable."""
    transport, _, rest = endpoint.partition("://")
    if transport in ("ipc", "inproc"):
        return True
    if transport != "tcp":
        return False
    return is_loopback_host(rest.rsplit(":", 1)[0])
