"""`neural-style install-plugin` / `uninstall-plugin`: put the GIMP 3 plug-in where GIMP finds it.

Layout written into every GIMP 3 ``plug-ins`` folder found (or named with ``--gimp-dir``)::

    plug-ins/neural_style/neural_style.py      the plug-in (0755; GIMP needs folder == file name)
    plug-ins/neural_style/nsg_shared/          copy of neural_style.shared (protocol + client)
    plug-ins/neural_style/vendor/py3XX/        pyzmq + msgpack unpacked from wheels for Python 3.XX
    plug-ins/neural_style/INSTALLED.json       what was installed, from where, for which Python

Why vendoring: GIMP runs plug-ins with *its* Python (bundled on Windows, macOS and Flatpak, the
system one on Linux distributions), which does not see the virtual environment the daemon lives
in. Wheels are kept per Python version, so after a GIMP upgrade to a newer Python the plug-in
falls back to importable system packages, or tells the user to re-run this command.

Which Python is GIMP's: ``--python CMD`` names it (a command line, so
``"chroot /srv/trixie /usr/bin/python3"`` or ``"flatpak run --command=python3 org.gimp.GIMP"``
work). Without it: a Flatpak profile uses ``flatpak run --command=python3 org.gimp.GIMP``; a
profile inside a chroot (a parent folder holding ``usr/bin/gimp-console-3.0``) uses
``chroot ROOT python3`` when running as root; otherwise the interpreter named in GIMP's
``<prefix>/lib/gimp/3.0/interpreters/pygimp.interp`` (prefix: where the ``gimp-3.0`` on PATH
lives, else /usr, /usr/local, /opt/gimp, the macOS bundle), else ``python3`` on PATH outside
the virtual environment this command runs in (never the venv's own Python). When none is
found it stops and says what it searched. ``--python-version X.Y`` skips the query.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform as _platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from neural_style.shared.defaults import SHARED_BUNDLE_NAME

PLUGIN_NAME = "neural_style"
SHARED_NAME = SHARED_BUNDLE_NAME
MARKER = "INSTALLED.json"
FLATPAK_APP = "org.gimp.GIMP"
#: Requirements vendored for GIMP's Python (kept in step with pyproject.toml).
VENDOR_REQUIREMENTS: tuple[str, ...] = ("pyzmq>=25,<28", "msgpack>=1.0,<2")

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


class InstallError(Exception):
    """A problem the user fixes by changing the command line (message says how)."""


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


# --------------------------------------------------------------------------- locating GIMP


def _home() -> Path:
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
    config = Path(os.environ.get("XDG_CONFIG_HOME") or _home() / ".config")
    dirs += versions(config / "GIMP")
    dirs += versions(_home() / ".var" / "app" / FLATPAK_APP / "config" / "GIMP")
    if sys.platform == "darwin":
        dirs += versions(_home() / "Library" / "Application Support" / "GIMP")
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
    found = _interp_python_with_source(root)
    return found[0] if found else None


def _interp_python_with_source(root: Path = Path("/")) -> tuple[str, Path] | None:
    for interp in interp_files(root):
        try:
            exe = parse_interp(interp.read_text(errors="replace"))
        except OSError:
            continue
        if exe:
            return exe, interp
    return None


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
    flatpak_base = str((_home() / ".var" / "app" / FLATPAK_APP).resolve())
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
    found = _interp_python_with_source()
    if found is not None:
        return [found[0]], f"GIMP's {found[1]}"
    exe = system_python3()
    if exe:
        return [exe], "python3 on PATH (no pygimp.interp: GIMP runs #!/usr/bin/env python3)"
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
        libc=tuple(info.get("libc") or ("", "")),  # type: ignore[arg-type]
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
        libc=tuple(_platform.libc_ver()),  # type: ignore[arg-type]
        how="--python-version",
    )


# --------------------------------------------------------------------------- sources


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


# --------------------------------------------------------------------------- vendoring


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


#: A record of the presets, derived from shared/schema.py. The plug-in no longer reads it
#: (it takes the presets from its bundled nsg_shared/schema.py); it stays only because the
#: GIMP e2e check and docs/plugin.md still name it. Drop it when they follow.
PRESETS_NAME = "presets.json"
HELP_ID = "python-fu-neural-style"


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


def docs_source() -> Path | None:
    """docs/plugin.md of this checkout (absent from a wheel install)."""
    path = plugin_source().parent.parent / "docs" / "plugin.md"
    return path if path.is_file() else None


def write_help(folder: Path) -> None:
    """GIMP help domain: help/en/gimp-help.xml mapping the procedure to plugin.html (made
    from docs/plugin.md, with its pictures), so the dialog's Help button opens this page."""
    src = docs_source()
    en = folder / "en"
    en.mkdir(parents=True, exist_ok=True)
    text = (
        src.read_text(encoding="utf-8")
        if src
        else ("# Neural Style\n\nSee the project's docs/plugin.md.\n")
    )
    (en / "plugin.md").write_text(text, encoding="utf-8")
    (en / "plugin.html").write_text(markdown_to_html(text), encoding="utf-8")
    if src is not None:
        for img in re.findall(r"!\[[^\]]*\]\(([^)\s]+\.png)\)", text):
            pic = src.parent / img
            if pic.is_file() and "/" not in img:
                shutil.copy2(pic, en / img)
    (en / "gimp-help.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<gimp-help>\n'
        f'  <help-item help-id="{HELP_ID}" help-page="plugin.html"/>\n</gimp-help>\n'
    )


def _inline(text: str) -> str:
    import html

    out = html.escape(text, quote=False)
    out = re.sub(r"!\[([^\]]*)\]\(([^)\s]+)\)", r'<img alt="\1" src="\2">', out)
    out = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', out)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)


def markdown_to_html(text: str) -> str:
    """The little Markdown docs/plugin.md uses (headings, lists, tables, code, pictures)."""
    import html

    out: list[str] = []
    lines = text.splitlines()
    i = 0
    para: list[str] = []

    def flush() -> None:
        if para:
            out.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()

    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            flush()
            block = []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                block.append(html.escape(lines[i]))
                i += 1
            out.append("<pre>" + "\n".join(block) + "</pre>")
        elif m := re.match(r"(#{1,6}) (.*)", line):
            flush()
            n = len(m.group(1))
            out.append(f"<h{n}>{_inline(m.group(2))}</h{n}>")
        elif line.startswith("|"):
            flush()
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                    rows.append("".join(f"<td>{_inline(c)}</td>" for c in cells))
                i += 1
            out.append("<table border=1>" + "".join(f"<tr>{r}</tr>" for r in rows) + "</table>")
            continue
        elif re.match(r"\s*([-*]|\d+\.) ", line):
            flush()
            items = []
            while i < len(lines) and re.match(r"\s*([-*]|\d+\.) ", lines[i]):
                item = re.sub(r"\s*([-*]|\d+\.) ", "", lines[i], count=1)
                i += 1
                while i < len(lines) and lines[i].startswith("   ") and lines[i].strip():
                    item += " " + lines[i].strip()
                    i += 1
                items.append(f"<li>{_inline(item)}</li>")
            out.append("<ul>" + "".join(items) + "</ul>")
            continue
        elif not line.strip():
            flush()
        else:
            para.append(line.strip())
        i += 1
    flush()
    body = "\n".join(out)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Neural Style</title>'
        "<style>body{font-family:sans-serif;max-width:50em;margin:auto}img{max-width:100%}"
        "</style></head><body>\n" + body + "\n</body></html>\n"
    )


# --------------------------------------------------------------------------- install / uninstall


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
    rerun_hint: str = "neural-style install-plugin",
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
                    wheels = download_wheels(target, Path(tmp), wheel_dir)
                    unpack_wheels(wheels, vendor_root / target.tag)
                vendored = True
                log(f"  vendored {', '.join(w.name for w in wheels)} into vendor/{target.tag}")
            except (InstallError, OSError, subprocess.SubprocessError) as exc:
                has = target_can_import(target)
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


# --------------------------------------------------------------------------- CLI


def _resolve_dirs(given: Sequence[str]) -> list[Path]:
    if given:
        return [Path(d).expanduser() for d in given]
    found = candidate_gimp_dirs()
    if not found:
        raise InstallError(
            "No GIMP 3 profile folder found (looked in $GIMP3_DIRECTORY, ~/.config/GIMP/3.*, "
            f"~/.var/app/{FLATPAK_APP}/config/GIMP/3.*). Start GIMP 3 once so it creates "
            "its profile, or name the folder with --gimp-dir DIR."
        )
    return found


def cmd_install(args: argparse.Namespace) -> int:
    """Entry point of ``neural-style install-plugin``; returns the exit status."""
    try:
        dirs = _resolve_dirs(args.gimp_dir)
        for gimp_dir in dirs:
            if args.python_version:
                target = host_like_target(args.python_version)
            else:
                command, how = python_command_for(gimp_dir, args.python)
                target = query_python(command, how)
            rerun = ["neural-style", "install-plugin", "--gimp-dir", str(gimp_dir)]
            if args.python:
                rerun += ["--python", args.python]
            print(f"Installing the Neural Style plug-in into {plugins_dir(gimp_dir)}")
            print(f"  GIMP's Python: {target.version} ({target.how}: {shlex.join(target.command)})")
            report = install_into(
                gimp_dir,
                target,
                vendor=not args.no_vendor,
                wheel_dir=Path(args.wheel_dir) if args.wheel_dir else None,
                rerun_hint=shlex.join(rerun),
            )
            print(f"  installed {report.plugin_dir / (PLUGIN_NAME + '.py')}")
        print("Restart GIMP; the filter is Filters > Artistic > Neural Style...")
        print("It needs the daemon running: neural-style serve")
        return 0
    except InstallError as exc:
        print(f"neural-style install-plugin: {exc}", file=sys.stderr)
        return 2


def cmd_uninstall(args: argparse.Namespace) -> int:
    """Entry point of ``neural-style uninstall-plugin``; returns the exit status."""
    try:
        dirs = _resolve_dirs(args.gimp_dir)
        removed = 0
        for gimp_dir in dirs:
            if uninstall_from(gimp_dir):
                removed += 1
                print(f"Removed {plugins_dir(gimp_dir) / PLUGIN_NAME}")
        if not removed:
            print("The Neural Style plug-in was not installed in: " + ", ".join(map(str, dirs)))
        return 0
    except InstallError as exc:
        print(f"neural-style uninstall-plugin: {exc}", file=sys.stderr)
        return 2


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``install-plugin`` and ``uninstall-plugin`` to the CLI.

    Each parser sets ``func`` (taking the parsed namespace, returning an exit status).
    """
    gimp_help = (
        "GIMP 3 profile folder (e.g. $GIMP3_DIRECTORY or ~/.config/GIMP/3.0) or its plug-ins "
        "folder; repeatable. Default: every GIMP 3 profile found."
    )
    p = subparsers.add_parser(
        "install-plugin",
        help="install the GIMP 3 plug-in (Filters > Artistic > Neural Style...)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--gimp-dir", action="append", default=[], metavar="DIR", help=gimp_help)
    p.add_argument(
        "--python",
        metavar="CMD",
        help="command running GIMP's Python, e.g. 'flatpak run --command=python3 org.gimp.GIMP' "
        "(default: detected, see the docs)",
    )
    p.add_argument(
        "--python-version", metavar="X.Y", help="GIMP's Python version, instead of running it"
    )
    p.add_argument(
        "--no-vendor",
        action="store_true",
        help="do not bundle pyzmq/msgpack (GIMP's Python must have them)",
    )
    p.add_argument(
        "--wheel-dir",
        metavar="DIR",
        help="take the pyzmq/msgpack wheels from DIR instead of downloading (offline)",
    )
    p.set_defaults(func=cmd_install)
    u = subparsers.add_parser("uninstall-plugin", help="remove the GIMP 3 plug-in")
    u.add_argument("--gimp-dir", action="append", default=[], metavar="DIR", help=gimp_help)
    u.set_defaults(func=cmd_uninstall)


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry: ``python -m neural_style.daemon.plugin_install install-plugin ...``."""
    parser = argparse.ArgumentParser(prog="neural-style")
    sub = parser.add_subparsers(dest="command", required=True)
    add_commands(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
