"""GIMP's Python: which command runs it for a profile, and what it is (version, platform,
libc) as far as choosing wheels is concerned."""

from __future__ import annotations

import json
import os
import platform as _platform
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from neural_style.daemon.gimp_install.discovery import (
    find_chroot_root,
    gimp_prefixes,
    home,
    interp_python,
    interp_python_with_source,
)
from neural_style.daemon.gimp_install.errors import InstallError
from neural_style.shared.flatpak import FLATPAK_APP, app_dir

#: Printed by the target Python: everything pip needs to pick matching wheels.
_QUERY = (
    "import json, platform, sys, sysconfig;"
    "print(json.dumps({'version': '%d.%d' % sys.version_info[:2],"
    " 'implementation': sys.implementation.name,"
    " 'platform': sysconfig.get_platform(),"
    " 'machine': platform.machine(),"
    " 'libc': list(platform.libc_ver()),"
    " 'executable': sys.executable}))"
)


@dataclass
class TargetPython:
    """GIMP's Python as far as choosing wheels is concerned."""

    version: str  # "3.13"
    implementation: str = "cpython"
    platform: str = ""  # sysconfig.get_platform(), e.g. "linux-x86_64"
    machine: str = ""
    libc: tuple[str, str] = ("", "")
    command: list[str] = field(default_factory=list)
    how: str = ""  # how it was found, for the report

    @property
    def tag(self) -> str:
        """Folder name under vendor/: ``py313`` (the plug-in computes the same name)."""
        major, minor = self.version.split(".")[:2]
        return f"py{major}{minor}"

    def pip_platforms(self) -> list[str]:
        """Platform tags pip may accept for this interpreter, most specific first."""
        plat = self.platform or ""
        machine = self.machine or _platform.machine()
        if plat.startswith("linux"):
            arch = plat.split("-", 1)[1] if "-" in plat else machine
            arch = arch.replace("-", "_")
            libc_name, libc_ver = self.libc
            tags: list[str] = []
            if libc_name == "glibc" and re.fullmatch(r"\d+\.\d+", libc_ver or ""):
                major, minor = (int(x) for x in libc_ver.split("."))
                tags += [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 16, -1)]
            else:  # unknown libc version: the widely compatible tags only
                tags += [f"manylinux_2_{m}_{arch}" for m in (28, 27, 26, 24, 17)]
            tags += [f"manylinux2014_{arch}", f"linux_{arch}"]
            return tags
        if plat.startswith("macosx"):
            _, ver, arch = plat.split("-", 2)
            major = int(ver.split(".")[0])
            archs = [arch] if arch != "universal2" else ["arm64", "x86_64"]
            tags = []
            for a in archs:
                tags += [f"macosx_{v}_0_{a}" for v in range(max(major, 11), 10, -1)]
                tags += [f"macosx_10_{m}_{a}" for m in range(15, 8, -1)]
            tags += [f"macosx_{max(major, 11)}_0_universal2", "macosx_10_9_universal2"]
            return tags
        if plat.startswith("win"):
            return [plat.replace("-", "_").replace(".", "_")]
        return [plat.replace("-", "_").replace(".", "_")] if plat else []


def system_python3() -> str | None:
    """``python3`` on PATH outside this virtual environment (what ``#!/usr/bin/env python3``
    gives a distribution's GIMP), or None. The venv's own Python is never GIMP's."""
    venv_bins = {str(Path(sys.prefix) / "bin"), str(Path(sys.prefix) / "Scripts")}
    if os.environ.get("VIRTUAL_ENV"):
        venv_bins.add(str(Path(os.environ["VIRTUAL_ENV"]) / "bin"))
    path = os.pathsep.join(
        d for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and os.path.realpath(d) not in {os.path.realpath(v) for v in venv_bins}
    )  # fmt: skip
    return shutil.which("python3", path=path)


def python_command_for(gimp_dir: Path, override: str | None) -> tuple[list[str], str]:
    """Command that runs GIMP's Python for this profile, and a note on how it was chosen.

    InstallError says exactly why when no candidate is found.
    """
    if override:
        return shlex.split(override), "--python"
    resolved = str(gimp_dir.resolve())
    flatpak_base = str(app_dir(home()).resolve())
    if resolved.startswith(flatpak_base):
        if not shutil.which("flatpak"):
            raise InstallError(
                f"{gimp_dir} is the Flatpak GIMP's profile, but the 'flatpak' command is not "
                "on PATH to ask it for its Python. Name it with --python CMD, or give "
                "--python-version X.Y (GIMP 3.0's Flatpak runtime has Python 3.12 or later)."
            )
        return ["flatpak", "run", "--command=python3", FLATPAK_APP], "Flatpak runtime"
    root = find_chroot_root(gimp_dir)
    if root is not None and hasattr(os, "geteuid") and os.geteuid() == 0:
        exe = interp_python(root) or "/usr/bin/python3"
        return ["chroot", str(root), exe], f"chroot {root}"
    found = interp_python_with_source()
    if found is not None:
        return [found[0]], f"GIMP's {found[1]}"
    on_path = system_python3()
    if on_path:
        return [on_path], "python3 on PATH (no pygimp.interp: GIMP runs #!/usr/bin/env python3)"
    searched = ", ".join(str(p) for p in gimp_prefixes()) or "none"
    raise InstallError(
        "Could not tell which Python GIMP runs plug-ins with: no pygimp.interp in GIMP's "
        f"prefixes ({searched}) and no python3 on PATH outside this virtual environment "
        f"(its Python {sys.version_info[0]}.{sys.version_info[1]} is not GIMP's). Name it "
        "with --python CMD, or give --python-version X.Y."
    )


def query_python(command: list[str], how: str = "") -> TargetPython:
    """Ask the target interpreter for its version and platform."""
    try:
        out = subprocess.run(
            [*command, "-c", _QUERY], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        info = json.loads(out.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        raise InstallError(
            f"Could not run GIMP's Python ({shlex.join(command)}): {exc}. "
            "Name it with --python CMD, or give --python-version X.Y."
        ) from None
    return TargetPython(
        version=info["version"],
        implementation=info.get("implementation", "cpython"),
        platform=info.get("platform", ""),
        machine=info.get("machine", ""),
        libc=tuple(info.get("libc") or ("", "")),
        command=command,
        how=how,
    )


def host_like_target(version: str) -> TargetPython:
    """A target with the given version and this machine's platform (for --python-version)."""
    import sysconfig

    return TargetPython(
        version=version,
        platform=sysconfig.get_platform(),
        machine=_platform.machine(),
        libc=_platform.libc_ver(),
        how="--python-version",
    )
