"""Starting the daemon for the user: the command install-plugin recorded, started detached
from GIMP, and from a Flatpak GIMP on the host (through ``flatpak-spawn --host``)."""

from __future__ import annotations

import os
import subprocess
from typing import Any

from nsg_bundle import INSTALL_RECORD, PLUGIN_DIR, START_COMMAND, flatpak
from nsg_errors import PluginError
from nsg_settings import load_settings


def installed_info(base: str = PLUGIN_DIR) -> dict[str, Any]:
    """INSTALLED.json written by install-plugin ({} in a checkout)."""
    return load_settings(os.path.join(base, INSTALL_RECORD))


def serve_command(endpoint: str, base: str = PLUGIN_DIR) -> list[str]:
    """The command that starts the daemon the plug-in would reach: the one install-plugin
    recorded (this installation's neural-style), with --bind for a chosen endpoint."""
    command = list(installed_info(base).get("serve_command") or START_COMMAND.split())
    return [*command, "--bind", endpoint] if endpoint else command


def start_daemon(command: list[str], log_path: str) -> subprocess.Popen[bytes]:
    """Start the daemon detached from GIMP (it keeps running after the plug-in exits); from
    a Flatpak GIMP on the host (see host_command)."""
    argv = host_command(command)
    try:
        with open(log_path, "ab") as log:
            return subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
            )  # fmt: skip
    except OSError as exc:
        raise PluginError(
            f"Could not start the Neural Style service ({' '.join(argv)}): {exc}. Start it "
            f"yourself with: {' '.join(command)}"
        ) from None


#: GIMP in a Flatpak (shared/flatpak.py: one place for these facts, the installer's too):
#: whether this GIMP runs in the sandbox, and the argv that starts a command on the host.
FLATPAK_PERMISSION: str = flatpak.FLATPAK_PERMISSION
in_flatpak = flatpak.in_flatpak
use_sandbox_connection_file = flatpak.use_sandbox_connection_file
host_command = flatpak.host_command
