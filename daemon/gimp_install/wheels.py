"""Vendoring: pyzmq + msgpack wheels downloaded for GIMP's Python and unpacked beside the
plug-in, or the check that GIMP's Python has them already."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

from neural_style.daemon.gimp_install.errors import InstallError
from neural_style.daemon.gimp_install.interpreter import TargetPython

#: Requirements vendored for GIMP's Python (kept in step with pyproject.toml).
VENDOR_REQUIREMENTS: tuple[str, ...] = ("pyzmq>=25,<28", "msgpack>=1.0,<2")


def download_wheels(target: TargetPython, dest: Path, wheel_dir: Path | None = None) -> list[Path]:
    """pip-download pyzmq + msgpack wheels for ``target`` into ``dest`` (binary only).

    ``wheel_dir`` makes it offline: only wheels already in that folder are considered.
    """
    cmd = [
        sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
        "--only-binary=:all:", "--no-deps", "--dest", str(dest),
        "--python-version", target.version,
        "--implementation", "pp" if target.implementation == "pypy" else "cp",
    ]  # fmt: skip
    for tag in target.pip_platforms():
        cmd += ["--platform", tag]
    if wheel_dir is not None:
        cmd += ["--no-index", "--find-links", str(wheel_dir)]
    cmd += list(VENDOR_REQUIREMENTS)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-4:])
        raise InstallError(f"pip download failed:\n{tail}")
    wheels = sorted(dest.glob("*.whl"))
    names = {w.name.split("-")[0].lower() for w in wheels}
    if not {"pyzmq", "msgpack"} <= names:
        raise InstallError(f"pip download returned {sorted(names)}, expected pyzmq and msgpack")
    return wheels


def unpack_wheels(wheels: Sequence[Path], dest: Path) -> None:
    """Unzip wheels into ``dest`` (a wheel is a zip laid out for site-packages)."""
    dest.mkdir(parents=True, exist_ok=True)
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            for member in zf.infolist():
                name = member.filename
                if name.startswith("/") or ".." in Path(name).parts:
                    raise InstallError(f"refusing unsafe path {name!r} in {wheel.name}")
                zf.extract(member, dest)
    (dest / "VENDORED.json").write_text(json.dumps({"wheels": [w.name for w in wheels]}, indent=1))


def target_can_import(target: TargetPython) -> bool:
    """Whether GIMP's Python already has pyzmq and msgpack (the fallback when not vendored)."""
    if not target.command:
        return False
    try:
        subprocess.run(
            [*target.command, "-c", "import zmq, msgpack"],
            capture_output=True,
            timeout=60,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return True
