"""Assembling the plug-in folder (the plug-in, its helpers, nsg_shared, vendored wheels,
help, the INSTALLED.json record), swapping it in atomically, and removing it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from neural_style.daemon.gimp_install import wheels
from neural_style.daemon.gimp_install.discovery import plugins_dir
from neural_style.daemon.gimp_install.errors import InstallError
from neural_style.daemon.gimp_install.help_pages import write_help
from neural_style.daemon.gimp_install.interpreter import TargetPython
from neural_style.shared.defaults import (
    INSTALL_PLUGIN_COMMAND,
    INSTALL_RECORD,
    PLUGIN_NAME,
    SHARED_BUNDLE_NAME,
)

SHARED_NAME = SHARED_BUNDLE_NAME
MARKER = INSTALL_RECORD

#: A record of the presets, derived from shared/schema.py. The plug-in no longer reads it
#: (it takes the presets from its bundled nsg_shared/schema.py); it stays only because the
#: GIMP e2e check and docs/plugin.md still name it. Drop it when they follow.
PRESETS_NAME = "presets.json"


def plugin_source() -> Path:
    """plugin/neural_style.py of this installation."""
    import neural_style.plugin as plugin_pkg

    path = Path(plugin_pkg.__file__).resolve().parent / f"{PLUGIN_NAME}.py"
    if not path.is_file():
        raise InstallError(f"{path} is missing from this installation; reinstall neural-style.")
    return path


def shared_source() -> Path:
    """The neural_style.shared package folder of this installation."""
    import neural_style.shared as shared_pkg

    return Path(shared_pkg.__file__).resolve().parent


def _copy_package(src: Path, dst: Path) -> None:
    """Copy a package's .py files (no caches) so it imports under a new top-level name."""
    for path in sorted(src.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)


def write_presets(path: Path) -> None:
    """shared/schema.py's PRESETS as JSON (a record; see PRESETS_NAME)."""
    from neural_style.shared.schema import PRESETS

    path.write_text(json.dumps(PRESETS, indent=1, default=str))


def serve_command() -> list[str]:
    """The command that starts this installation's daemon (recorded for the plug-in)."""
    exe = Path(sys.executable)
    script = exe.parent / ("neural-style.exe" if os.name == "nt" else "neural-style")
    if script.is_file():
        return [str(script), "serve"]
    return [str(exe), "-m", "neural_style.daemon.cli", "serve"]


@dataclass
class InstallReport:
    plugin_dir: Path
    python: TargetPython
    vendored: bool
    note: str = ""


def install_into(
    gimp_dir: Path,
    target: TargetPython,
    *,
    vendor: bool = True,
    wheel_dir: Path | None = None,
    rerun_hint: str = INSTALL_PLUGIN_COMMAND,
    log=print,
) -> InstallReport:
    """Install the plug-in into one GIMP profile; returns what was done.

    The new tree is assembled next to the old one and swapped in, so a failure never leaves a
    half-written plug-in that GIMP would try to load. Vendored folders for *other* Python
    versions from an earlier install are kept.
    """
    pdir = plugins_dir(gimp_dir)
    pdir.mkdir(parents=True, exist_ok=True)
    final = pdir / PLUGIN_NAME
    staging = Path(tempfile.mkdtemp(prefix=f".{PLUGIN_NAME}.", dir=pdir))
    try:
        shutil.copy2(plugin_source(), staging / f"{PLUGIN_NAME}.py")
        os.chmod(staging / f"{PLUGIN_NAME}.py", 0o755)
        for helper in sorted(plugin_source().parent.glob("nsg_*.py")):  # the bundled helpers
            shutil.copy2(helper, staging / helper.name)
        _copy_package(shared_source(), staging / SHARED_NAME)
        write_presets(staging / PRESETS_NAME)
        write_help(staging / "help")
        vendor_root = staging / "vendor"
        vendor_root.mkdir()
        if (final / "vendor").is_dir():
            for old in (final / "vendor").iterdir():
                if old.is_dir() and old.name != target.tag:
                    shutil.copytree(old, vendor_root / old.name)
        vendored, note = False, ""
        if vendor:
            try:
                with tempfile.TemporaryDirectory(prefix="nsg-wheels-") as tmp:
                    got = wheels.download_wheels(target, Path(tmp), wheel_dir)
                    wheels.unpack_wheels(got, vendor_root / target.tag)
                vendored = True
                log(f"  vendored {', '.join(w.name for w in got)} into vendor/{target.tag}")
            except (InstallError, OSError, subprocess.SubprocessError) as exc:
                has = wheels.target_can_import(target)
                note = (
                    f"WARNING: could not vendor pyzmq/msgpack for Python {target.version}: {exc}\n"
                    + (
                        "  GIMP's Python has pyzmq and msgpack; the plug-in will use those.\n"
                        if has
                        else "  GIMP's Python has NO pyzmq/msgpack: the plug-in won't work yet.\n"
                    )
                    + f"  When online, re-run: {rerun_hint}"
                )
                log(note)
        info = {
            "version": _package_version(),
            "installed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "python_version": target.version,
            "python_command": target.command,
            "python_found_by": target.how,
            "vendored": {target.tag: vendored},
            "source": str(plugin_source()),
            # what the plug-in runs to start the daemon for the user (its "Start it" offer)
            "serve_command": serve_command(),
        }
        (staging / MARKER).write_text(json.dumps(info, indent=1))
        os.chmod(staging, 0o755)
        if final.exists():
            old = pdir / f".{PLUGIN_NAME}.old.{os.getpid()}"
            final.rename(old)
            staging.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return InstallReport(final, target, vendored, note)


def uninstall_from(gimp_dir: Path) -> bool:
    """Remove the plug-in from one profile; False when it was not there.

    Refuses to delete a ``neural_style`` folder that this command did not write.
    """
    final = plugins_dir(gimp_dir) / PLUGIN_NAME
    if not final.exists():
        return False
    if not (final / MARKER).exists() and not (final / f"{PLUGIN_NAME}.py").exists():
        raise InstallError(f"{final} was not installed by neural-style; not removing it.")
    shutil.rmtree(final)
    return True


def _package_version() -> str:
    try:
        from neural_style.shared import __version__

        return str(__version__)
    except ImportError:  # pragma: no cover - the package always has it
        return "unknown"
