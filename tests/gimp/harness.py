"""Get a real GIMP 3 (gimp-console-3.0) to run batch scripts, on Debian 12 or 13.

* ``gimp-console-3.0`` on PATH, or a Debian >= 13 host (then apt installs it): run it natively.
* Otherwise (Debian 12, root): a Debian 13 chroot built once with mmdebstrap into
  ``${NEURAL_STYLE_GIMP_ROOT:-/var/cache/neural-style/gimp3root}`` (outside the repo so it is
  kept between checkouts and runs), assembled in ``ROOT.new`` and moved into place only after
  ``gimp-console-3.0 --version`` works, with a stamp file naming its package set. Each GIMP run
  happens inside private pid + mount namespaces (``unshare``), so the /proc, /sys, /dev and
  work-dir mounts and every plug-in process vanish with it.

Also a CLI, so CI can build the chroot in its set-up step: ``python tests/gimp/harness.py ensure``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

#: What GIMP needs to run our plug-in. python3-zmq/msgpack are the fallback when the plug-in's
#: vendored wheels are absent (the tests check that the vendored ones are used); xvfb gives
#: the plug-in's dialogs a display so the interactive path runs for real too.
GIMP_PACKAGES = (
    "gimp", "python3-gi", "gir1.2-gimp-3.0", "python3-zmq", "python3-msgpack", "xvfb",
)  # fmt: skip
DISPLAY = ":99"
SUITE = os.environ.get("NEURAL_STYLE_GIMP_SUITE", "trixie")
MIRROR = os.environ.get("NEURAL_STYLE_GIMP_MIRROR", "http://deb.debian.org/debian")
DEFAULT_ROOT = "/var/cache/neural-style/gimp3root"
STAMP = ".neural-style-gimp3-stamp"
GIMP_FLAGS = ("-i", "-n", "-d", "-f")  # no UI, new instance, no data (brushes...), no fonts
#: stderr lines GIMP prints on success too (filtered when showing a log)
NOISE = (
    "scriptfu-WARNING", "cannot open display", "gimp_wire_read(): unexpected EOF",
    "Welcome to GIMP", "gimp_flush(): error: Broken pipe", "g_object_unref: assertion",
    "stale context", "contexts not empty upon exit", "Failed to parse tag cache", "stray image",
)  # fmt: skip

_NS_SETUP = r"""
R=$1; W=$2; X=$3; shift 3
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
mount --bind /dev "$R/dev"
mount -t tmpfs -o mode=1777,size=512m shm "$R/dev/shm"
# a private /tmp: X locks and sockets, GIMP's temp files vanish with this run
mount -t tmpfs -o mode=1777 tmp "$R/tmp"
mkdir -p "$R/tmp/.X11-unix" "$R$W"
mount --bind "$W" "$R$W"
if [ -n "$X" ]; then
  # a private X server for the plug-in's dialogs; dies with this pid namespace
  chroot "$R" Xvfb "$X" -nolisten tcp -screen 0 1024x768x24 >"$W/xvfb.log" 2>&1 &
  n=0; while [ ! -S "$R/tmp/.X11-unix/X${X#:}" ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done
fi
exec chroot "$R" "$@"
"""


class GimpUnavailable(Exception):
    """Neither a native GIMP 3 nor the means to build the chroot (the reason says which)."""


class GimpSetupFailed(RuntimeError):
    """Getting GIMP 3 was possible here but failed (apt, mmdebstrap): a real error, not a skip."""


def log(msg: str) -> None:
    print(f"[gimp-harness {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def gimp_root() -> Path:
    return Path(os.environ.get("NEURAL_STYLE_GIMP_ROOT") or DEFAULT_ROOT)


def debian_major() -> int:
    try:
        return int(Path("/etc/debian_version").read_text().strip().split(".")[0])
    except (OSError, ValueError):
        return 0


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@dataclass
class GimpEnv:
    """A runnable GIMP 3: natively (``root`` None) or in a chroot."""

    mode: str  # "host" | "chroot"
    root: Path | None = None
    setup_seconds: float = 0.0
    built: bool = False

    @property
    def has_xvfb(self) -> bool:
        """Whether run_batch(xvfb=True) can give plug-ins a display."""
        if self.root is not None:
            return (self.root / "usr/bin/Xvfb").exists()
        return shutil.which("Xvfb") is not None

    def host_path(self, inside: str | Path) -> Path:
        """Where a path as GIMP sees it lives on the host."""
        inside = Path(inside)
        if self.root is None:
            return inside
        return self.root / inside.relative_to("/")

    def python_command(self) -> list[str]:
        """Command running GIMP's Python (for install-plugin --python)."""
        if self.root is None:
            return ["/usr/bin/python3"]
        return ["chroot", str(self.root), "/usr/bin/python3"]

    def version(self) -> str:
        return self._run_plain(["gimp-console-3.0", "--version"]).stdout.strip().splitlines()[-1]

    def _run_plain(self, argv: list[str]) -> subprocess.CompletedProcess:
        if self.root is not None:
            argv = ["chroot", str(self.root), *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)

    def run_batch(
        self,
        batch: str,
        *,
        work: Path,
        profile: Path,
        env: Mapping[str, str] | None = None,
        timeout: int = 300,
        xvfb: bool = False,
    ) -> subprocess.CompletedProcess:
        """Run ``gimp-console-3.0 --batch-interpreter=python-fu-eval -b BATCH --quit``.

        ``work`` is visible at the same path inside the chroot; ``profile`` (GIMP3_DIRECTORY)
        must lie under it. Only ``env`` and a fixed minimal environment reach GIMP (LANG fixed:
        a changed locale makes GIMP re-query every plug-in). ``xvfb`` starts a private X
        server and sets DISPLAY, so plug-ins can open their dialogs.
        """
        base = {
            "HOME": "/root" if self.root is not None else os.environ.get("HOME", "/root"),
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "GIMP3_DIRECTORY": str(profile),
            **({"DISPLAY": DISPLAY} if xvfb else {}),
            **(env or {}),
        }
        gimp = [
            "env", "-i", *(f"{k}={v}" for k, v in base.items()),
            "timeout", "-k", "10", str(timeout), "gimp-console-3.0", *GIMP_FLAGS,
            "--batch-interpreter=python-fu-eval", "-b", batch, "--quit",
        ]  # fmt: skip
        if self.root is not None:
            argv = [
                "unshare", "--pid", "--mount", "--propagation", "private", "--fork",
                "--kill-child", "--", "/bin/sh", "-ec", _NS_SETUP, "gimp-ns",
                str(self.root), str(work), DISPLAY if xvfb else "", *gimp,
            ]  # fmt: skip
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 60)
        xserver = None
        if xvfb:
            display = _free_display()
            gimp = [f"DISPLAY={display}" if a == f"DISPLAY={DISPLAY}" else a for a in gimp]
            with open(work / "xvfb.log", "w") as xlog:
                xserver = subprocess.Popen(
                    ["Xvfb", display, "-nolisten", "tcp", "-screen", "0", "1024x768x24"],
                    stdout=xlog, stderr=subprocess.STDOUT,
                )  # fmt: skip
            sock = Path(f"/tmp/.X11-unix/X{display[1:]}")
            for _ in range(100):
                if sock.exists():
                    break
                time.sleep(0.1)
        try:
            return subprocess.run(gimp, capture_output=True, text=True, timeout=timeout + 60)
        finally:
            if xserver is not None:
                xserver.terminate()
                xserver.wait(10)


def _free_display() -> str:
    """An X display number with no server (nor stale lock) on this host."""
    for n in range(99, 200):
        if not Path(f"/tmp/.X{n}-lock").exists() and not Path(f"/tmp/.X11-unix/X{n}").exists():
            return f":{n}"
    raise GimpSetupFailed("no free X display number between :99 and :199")


def _stamp_text() -> str:
    return f"{SUITE} {' '.join(GIMP_PACKAGES)}\n"


def chroot_ready(root: Path) -> bool:
    stamp = root / STAMP
    return (
        stamp.is_file()
        and stamp.read_text() == _stamp_text()
        and (root / "usr/bin/gimp-console-3.0").exists()
    )


def _mounts_under(path: Path) -> list[str]:
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    p = str(path)
    return [m for m in (ln.split()[1] for ln in lines) if m == p or m.startswith(p + "/")]


def _safe_rmtree(path: Path) -> None:
    if not path.exists():
        return
    if _mounts_under(path):
        raise GimpSetupFailed(f"refusing to delete {path}: something is mounted below it")
    shutil.rmtree(path)


def _apt_install(packages: list[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    missing = [
        p for p in packages
        if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0
    ]  # fmt: skip
    if not missing:
        return
    log(f"apt-get install {' '.join(missing)}")
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
    proc = subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        raise GimpSetupFailed(f"apt-get install {' '.join(missing)} failed:\n{proc.stderr[-2000:]}")


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_chroot(root: Path) -> None:
    """mmdebstrap a Debian 13 root with GIMP 3 into ROOT.new, check it, move it into place."""
    if not shutil.which("mmdebstrap"):
        _apt_install(["mmdebstrap"])
    new = root.with_name(root.name + ".new")
    _safe_rmtree(new)
    logfile = root.with_name(root.name + ".mmdebstrap.log")
    log(f"building a {SUITE} chroot with GIMP 3 at {root} (about a minute; log {logfile})")
    cmd = [
        "unshare", "--mount", "--propagation", "private", "--fork", "--kill-child", "--",
        "mmdebstrap", "--mode=root", "--variant=apt", "-q",
        "--aptopt=Acquire::Languages \"none\"", "--aptopt=APT::Install-Recommends \"false\"",
        "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        "--dpkgopt=path-exclude=/usr/share/locale/*", "--dpkgopt=path-exclude=/usr/share/info/*",
        f"--include={','.join(GIMP_PACKAGES)}", SUITE, str(new), MIRROR,
    ]  # fmt: skip
    with open(logfile, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=1500)
    if proc.returncode != 0:
        tail = "\n".join(logfile.read_text(errors="replace").splitlines()[-30:])
        raise GimpSetupFailed(f"mmdebstrap failed (exit {proc.returncode}):\n{tail}")
    check = subprocess.run(
        ["chroot", str(new), "gimp-console-3.0", "--version"], capture_output=True, text=True
    )
    if check.returncode != 0:
        raise GimpSetupFailed(f"gimp-console-3.0 does not run in the new chroot: {check.stderr}")
    _safe_rmtree(root)
    new.rename(root)
    (root / STAMP).write_text(_stamp_text())


def ensure_gimp() -> GimpEnv:
    """A GimpEnv ready to run, building or installing what is missing.

    Raises GimpUnavailable with the reason when that cannot be done here.
    """
    t0 = time.monotonic()
    if shutil.which("gimp-console-3.0"):
        if not shutil.which("Xvfb") and is_root() and shutil.which("apt-get"):
            with contextlib.suppress(GimpSetupFailed):
                _apt_install(["xvfb"])  # optional: only the interactive tests need it
        return GimpEnv("host", None, time.monotonic() - t0)
    if debian_major() >= 13:
        if not is_root():
            raise GimpUnavailable("GIMP 3 is not installed and installing it needs root")
        _apt_install(list(GIMP_PACKAGES))
        return GimpEnv("host", None, time.monotonic() - t0, built=True)
    if not is_root():
        raise GimpUnavailable(
            "no gimp-console-3.0 here, and building the Debian 13 chroot needs root"
        )
    if not shutil.which("unshare") or not shutil.which("chroot"):
        raise GimpUnavailable("unshare/chroot (util-linux, coreutils) are missing")
    if not shutil.which("apt-get") and not shutil.which("mmdebstrap"):
        raise GimpUnavailable("no mmdebstrap and no apt-get to install it")
    root = gimp_root()
    built = False
    with _lock(root.with_name(root.name + ".lock")):
        if not chroot_ready(root):
            build_chroot(root)
            built = True
    return GimpEnv("chroot", root, time.monotonic() - t0, built)


def show_log(text: str) -> str:
    """GIMP's output without the lines it prints on every successful run too."""
    lines = text.splitlines()
    return "\n".join(ln for ln in lines if ln.strip() and not any(n in ln for n in NOISE))


def main(argv: list[str]) -> int:
    if argv[:1] != ["ensure"]:
        print("usage: harness.py ensure   # install GIMP 3 or build its chroot", file=sys.stderr)
        return 2
    try:
        env = ensure_gimp()
    except (GimpUnavailable, GimpSetupFailed) as exc:
        print(f"GIMP 3 unavailable: {exc}", file=sys.stderr)
        return 1
    print(f"{env.version()} ({env.mode}{', ' + str(env.root) if env.root else ''}; "
          f"{env.setup_seconds:.1f} s{', built' if env.built else ''})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
