"""GIMP in a Flatpak: its app id, how to tell the sandbox, how to reach the host, and the
connection file the sandboxed plug-in and the host's daemon share.

Standard library only: the installer on the host and the plug-in inside the sandbox read
these facts from here (the plug-in through its bundled copy, ``nsg_shared.flatpak``).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

from .connection import DEFAULT_NAME, ENV_FILE

#: GIMP's Flatpak application id.
FLATPAK_APP = "org.gimp.GIMP"
#: Written by Flatpak into every sandbox (FLATPAK_ID is set there too).
FLATPAK_INFO = "/.flatpak-info"
#: How a Flatpak app runs a command outside its sandbox (the daemon's virtual environment,
#: its Python and TensorFlow are on the host, invisible from inside).
HOST_SPAWN = ("flatpak-spawn", "--host")
#: What the user runs so that the sandbox may start the daemon on the host.
FLATPAK_PERMISSION = (
    "GIMP's Flatpak may start programs outside its sandbox only with permission: run "
    f"'flatpak override --user --talk-name=org.freedesktop.Flatpak {FLATPAK_APP}' and "
    "restart GIMP."
)


def app_dir(home: Path) -> Path:
    """The Flatpak GIMP's own folder on the host: ``~/.var/app/org.gimp.GIMP``."""
    return home / ".var" / "app" / FLATPAK_APP


def in_flatpak(env: MutableMapping[str, str] | None = None, info: str = FLATPAK_INFO) -> bool:
    """Whether this process runs in a Flatpak sandbox."""
    env = os.environ if env is None else env
    return bool(env.get("FLATPAK_ID")) or os.path.exists(info)


def use_sandbox_connection_file(
    env: MutableMapping[str, str] | None = None, flatpak: bool | None = None
) -> str:
    """The connection file a Flatpak GIMP shares with the daemon on the host ("" outside a
    Flatpak): $NEURAL_STYLE_CONNECTION_FILE when set, else neural-style/daemon.json in the
    app's own config folder ($XDG_CONFIG_HOME, ~/.var/app/org.gimp.GIMP/config: the same
    path inside and outside the sandbox). The sandbox cannot see the host's runtime folder,
    where the daemon writes its key by default; set in ``env`` (this process's environment),
    so every client the plug-in makes reads that file."""
    env = os.environ if env is None else env
    if not (in_flatpak(env) if flatpak is None else flatpak):
        return ""
    if not env.get(ENV_FILE):
        config = env.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
        env[ENV_FILE] = os.path.join(config, "neural-style", DEFAULT_NAME)
    return str(env[ENV_FILE])


def host_command(
    command: list[str], env: MutableMapping[str, str] | None = None, flatpak: bool | None = None
) -> list[str]:
    """The argv that starts ``command`` on this computer: as is, or from a Flatpak GIMP
    through ``flatpak-spawn --host``, handing on the shared connection file so that the
    daemon writes its key where the sandboxed plug-in reads it."""
    conn = use_sandbox_connection_file(env, flatpak)
    if not conn:
        return list(command)
    return [*HOST_SPAWN, f"--env={ENV_FILE}={conn}", *command]
