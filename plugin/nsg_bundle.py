"""The bundled shared package: ``nsg_shared`` beside this file (what install-plugin copies),
else a checkout's own ``neural_style.shared`` (tests, a development tree); the plug-in's
constants come from it (``defaults``), and so does the client, once pyzmq and msgpack load."""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

from nsg_errors import PluginError
from nsg_log import log_event

PLUGIN_DIR = os.path.dirname(os.path.abspath(__file__))
#: Where install-plugin puts its copy of the shared package (``defaults.SHARED_BUNDLE_NAME``,
#: which can only be read once this is found).
SHARED_PACKAGE = "nsg_shared"


def shared_module(name: str) -> ModuleType:
    """``nsg_shared.<name>``, else ``neural_style.shared.<name>``; ImportError saying how to
    reinstall when neither imports. The standard-library modules (defaults, schema, errors,
    flatpak) load before pyzmq and msgpack are checked."""
    errors = []
    for package in (SHARED_PACKAGE, "neural_style.shared"):
        try:
            return importlib.import_module(f"{package}.{name}")
        except ImportError as exc:
            errors.append(f"{package}.{name}: {exc}")
    raise ImportError(
        f"Neural Style's bundled package is missing ({'; '.join(errors)}); reinstall the "
        "plug-in with: neural-style install-plugin"
    )


defaults = shared_module("defaults")
#: Every range, default and preset figure of the dialog comes from the bundled schema (and
#: its limits), so the dialog offers what the daemon accepts.
schema = shared_module("schema")
flatpak = shared_module("flatpak")

PROC_NAME: str = defaults.PLUGIN_PROCEDURE
HELP_DOMAIN: str = defaults.PLUGIN_HELP_DOMAIN
REINSTALL_COMMAND: str = defaults.INSTALL_PLUGIN_COMMAND
START_COMMAND: str = defaults.START_COMMAND
FETCH_WEIGHTS_COMMAND: str = defaults.FETCH_WEIGHTS_COMMAND
INSTALL_RECORD: str = defaults.INSTALL_RECORD


def shared_errors() -> ModuleType:
    """shared/errors.py (its user texts); PluginError saying how to reinstall when missing."""
    try:
        return shared_module("errors")
    except ImportError:
        raise PluginError(
            f"The plug-in's bundled package is missing; reinstall: {REINSTALL_COMMAND}"
        ) from None


def load_client(vdir: str | None = None) -> ModuleType:
    """Import the bundled client module; PluginError telling how to reinstall if it can't.

    ``vdir``: the vendored wheels' folder in use (for the log).
    """
    try:
        import msgpack  # noqa: F401
        import zmq  # noqa: F401
    except ImportError as exc:
        ver = f"{sys.version_info[0]}.{sys.version_info[1]}"
        raise PluginError(
            f"Neural Style needs pyzmq and msgpack, which GIMP's Python {ver} cannot import "
            f"({exc}). Reinstall the plug-in so it bundles them for this Python:\n    "
            f"{REINSTALL_COMMAND}\n(or install them for GIMP's Python, e.g. on Debian/Ubuntu: "
            "apt install python3-zmq python3-msgpack)."
        ) from None
    errors: list[str] = []
    for name in (f"{SHARED_PACKAGE}.client", "neural_style.shared.client"):
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
            continue
        log_event("client", module=module.__file__, zmq=sys.modules["zmq"].__file__, vendor=vdir)
        return module
    raise PluginError(
        "The plug-in's bundled client package is missing or broken "
        f"({'; '.join(errors)}). Reinstall the plug-in with:\n    {REINSTALL_COMMAND}"
    )
