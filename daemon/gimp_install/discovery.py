"""Finding GIMP 3: its profile folders (native, Flatpak, macOS, Windows), a chroot it lives
in, its install prefixes and the interpreter files that name its Python."""

from __future__ import annotations

import glob
import os
import re
import shutil
import sys
from pathlib import Path

from neural_style.shared.flatpak import app_dir


def home() -> Path:
    """$HOME (what GIMP's profile folders are under)."""
    return Path(os.environ.get("HOME") or Path.home())


def candidate_gimp_dirs() -> list[Path]:
    """GIMP 3 profile folders that exist on this machine (newest version first per place)."""

    def versions(base: Path) -> list[Path]:
        found = [Path(p) for p in glob.glob(str(base / "3.*")) if Path(p).is_dir()]
        return sorted(found, key=lambda p: _version_key(p.name), reverse=True)

    dirs: list[Path] = []
    env = os.environ.get("GIMP3_DIRECTORY")
    if env and Path(env).is_dir():
        dirs.append(Path(env))
    config = Path(os.environ.get("XDG_CONFIG_HOME") or home() / ".config")
    dirs += versions(config / "GIMP")
    dirs += versions(app_dir(home()) / "config" / "GIMP")
    if sys.platform == "darwin":
        dirs += versions(home() / "Library" / "Application Support" / "GIMP")
    if os.name == "nt" and os.environ.get("APPDATA"):
        dirs += versions(Path(os.environ["APPDATA"]) / "GIMP")
    unique: list[Path] = []
    for d in dirs:
        if d.resolve() not in {u.resolve() for u in unique}:
            unique.append(d)
    return unique


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", name))


def plugins_dir(gimp_dir: Path) -> Path:
    """``DIR/plug-ins``, or DIR itself when it already is a ``plug-ins`` folder."""
    return gimp_dir if gimp_dir.name == "plug-ins" else gimp_dir / "plug-ins"


def find_chroot_root(path: Path) -> Path | None:
    """The root of a chroot that ``path`` lives in (a parent with GIMP 3 installed), or None."""
    for parent in path.resolve().parents:
        if parent == Path("/"):
            return None
        if (parent / "usr/bin/gimp-console-3.0").exists() or (parent / "usr/bin/gimp-3.0").exists():
            return parent
    return None


#: GIMP binaries whose ``<prefix>`` (the folder above ``bin/``) holds ``lib/gimp/3.0``.
GIMP_BINARIES = ("gimp-3.0", "gimp-3", "gimp", "gimp-console-3.0", "gimp-console")
#: Where GIMP installs itself when it is not on PATH (upstream builds, macOS bundle).
KNOWN_PREFIXES = (
    "/usr", "/usr/local", "/opt/gimp", "/opt/gimp-3.0",
    "/Applications/GIMP.app/Contents/Resources",
)  # fmt: skip
INTERP_GLOBS = (
    "lib/gimp/3.0/interpreters/*.interp",
    "lib/*/gimp/3.0/interpreters/*.interp",  # Debian multiarch
    "lib64/gimp/3.0/interpreters/*.interp",
)


def gimp_prefixes(root: Path = Path("/")) -> list[Path]:
    """Install prefixes of GIMP 3 found on PATH (or inside ``root``), then the usual ones."""
    found: list[Path] = []
    if root == Path("/"):
        for name in GIMP_BINARIES:
            exe = shutil.which(name)
            if exe:
                found.append(Path(os.path.realpath(exe)).parent.parent)
        found += [Path(p) for p in KNOWN_PREFIXES]
    else:
        found += [root / p.lstrip("/") for p in KNOWN_PREFIXES]
    unique: list[Path] = []
    for p in found:
        if p not in unique and p.is_dir():
            unique.append(p)
    return unique


def interp_files(root: Path = Path("/")) -> list[Path]:
    """GIMP's interpreter files (``<prefix>/lib/gimp/3.0/interpreters/*.interp``)."""
    files: list[Path] = []
    for prefix in gimp_prefixes(root):
        for pattern in INTERP_GLOBS:
            files += [Path(p) for p in sorted(glob.glob(str(prefix / pattern)))]
    return files


def parse_interp(text: str) -> str | None:
    """The Python a ``pygimp.interp`` names: ``python3=PATH`` (or ``python=``)."""
    names: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith(("#", ":")) and value.strip():
            names[key.strip()] = value.strip()
    for key in ("python3", "/usr/bin/python3", "python", "/usr/bin/python"):
        if key in names:
            return names[key]
    return None


def interp_python(root: Path = Path("/")) -> str | None:
    """The Python that GIMP's ``pygimp.interp`` names, or None."""
    found = interp_python_with_source(root)
    return found[0] if found else None


def interp_python_with_source(root: Path = Path("/")) -> tuple[str, Path] | None:
    """The Python the first readable interpreter file names, and that file; or None."""
    for interp in interp_files(root):
        try:
            exe = parse_interp(interp.read_text(errors="replace"))
        except OSError:
            continue
        if exe:
            return exe, interp
    return None
