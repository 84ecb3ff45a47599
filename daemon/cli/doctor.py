"""``neural-style doctor``: check the whole set-up in one go and say how to fix what is wrong.

Each check is one line, ✓ or ✗, with what was found and, for a ✗, the fix. Exit status 0
when the main job (``neural-style stylize``) can run: Python and the packages import,
TensorFlow imports, and a weights file is found and has Keras' VGG-19 layout. Everything
else (no GPU, no bf16 kernels, no GIMP 3, the plug-in not installed, no daemon answering, an
untrusted connection file) is a warning: a ✗ line that does not change the exit status, since
``stylize`` runs without any of them. ``--json`` prints the same as one object.

Fast on purpose: TensorFlow is imported once and no model is built; the weights file is read
once for its checksum plus a few layers for its kind.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import importlib.metadata
import json
import logging
import os
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: Distributions the CLI needs, as (what to show, names it may be installed under).
PACKAGES = (
    ("tensorflow", ("tensorflow", "tensorflow-cpu", "tensorflow-macos")),
    ("numpy", ("numpy",)),
    ("pyzmq", ("pyzmq",)),
    ("msgpack", ("msgpack",)),
    ("pillow", ("pillow",)),
)
MIN_PYTHON = (3, 10)  # pyproject.toml's requires-python
REINSTALL = "./install.sh (or: pip install -e .) in the neural-style checkout"
DOCTOR_COMMAND = "neural-style doctor"
#: Where tests/gimp/harness.py builds its Debian chroot with GIMP 3 (same default and
#: variable there; tests/test_doctor.py checks they agree).
TEST_CHROOT_ENV = "NEURAL_STYLE_GIMP_ROOT"
TEST_CHROOT_DEFAULT = "/var/cache/neural-style/gimp3root"
#: Kinds of weights file, as reported.
IMAGENET, STANDIN, SYNTHETIC = "ImageNet", "trained stand-in", "synthetic random"
#: CUDA libraries TensorFlow opens at start-up, by the build-info version that names them.
CUDA_LIBS = ("libcudart", "libcublas", "libcublasLt", "libcufft", "libcusparse", "libcusolver")
CUDNN_LIBS = ("libcudnn",)


@dataclass
class Check:
    """One line of the report; ``required`` checks decide the exit status."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = False


# --------------------------------------------------------------------------- the checks


def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    ok = sys.version_info[:2] >= MIN_PYTHON
    return Check(
        "python", ok, f"Python {version} ({sys.executable})",
        "" if ok else f"Use Python {'.'.join(map(str, MIN_PYTHON))} or newer: "
        f"PYTHON=python3.X ./install.sh", required=True,
    )  # fmt: skip


def check_packages() -> list[Check]:
    checks = []
    for shown, names in PACKAGES:
        found = ""
        for name in names:
            try:
                found = f"{name} {importlib.metadata.version(name)}"
                break
            except importlib.metadata.PackageNotFoundError:
                continue
        checks.append(Check(
            f"package {shown}", bool(found), found or f"{shown} is not installed",
            "" if found else f"Reinstall: {REINSTALL}", required=True,
        ))  # fmt: skip
    return checks


def import_tensorflow() -> tuple[Any, Check]:
    """(the tensorflow module or None, its check): the one import of TensorFlow."""
    start = time.monotonic()
    try:
        import tensorflow as tf
    except Exception as exc:  # a broken install raises anything (ImportError, OSError, …)
        return None, Check(
            "tensorflow import", False, f"import tensorflow failed: {exc}",
            f"Reinstall: {REINSTALL}", required=True,
        )  # fmt: skip
    took = time.monotonic() - start
    return tf, Check(
        "tensorflow import", True, f"TensorFlow {tf.__version__} imported in {took:.1f} s",
        required=True,
    )  # fmt: skip


def weights_kind(path: Path, md5: str) -> str:
    """ImageNet (Keras' checksum), the trained stand-in (its 4th convolutions of blocks 3-5
    are scaled identities, see daemon/engine/standin.py) or synthetic random (anything else)."""
    import h5py
    import numpy as np

    from neural_style.daemon.engine import standin, weights

    if md5 == weights.WEIGHTS_MD5:
        return IMAGENET
    with h5py.File(path, "r") as f:
        for name in standin.IDENTITY_LAYERS:
            group = f[name]
            kernel, bias = (np.asarray(group[w]) for w in group.attrs["weight_names"])
            centre = kernel[1, 1]
            scale = float(centre[0, 0])
            off_centre = np.delete(kernel.reshape(9, *kernel.shape[2:]), 4, axis=0)
            if (
                scale <= 0
                or bias.any()
                or off_centre.any()
                or not np.allclose(centre, scale * np.eye(centre.shape[0]), atol=1e-6 * scale)
            ):
                return SYNTHETIC
    return STANDIN


def check_weights(explicit: str | None) -> Check:
    """Found by stylize's own order (--weights, $NEURAL_STYLE_WEIGHTS, Keras' cache),
    loadable (Keras' layout), its kind and sha256."""
    from neural_style.daemon.engine import weights
    from neural_style.shared.errors import NeuralStyleError

    try:
        path = weights.resolve_weights(explicit)
        info = weights.inspect_weights(path)
        kind = weights_kind(path, info.md5)
    except NeuralStyleError as exc:
        return Check("weights", False, exc.message, exc.hint, required=True)
    detail = f"{info.path}: {kind}, sha256 {info.sha256}"
    fix = ""
    if kind != IMAGENET:
        detail += " (runs, but results are not ImageNet VGG-19's)"
        fix = "For real pictures: neural-style fetch-weights (80 MB, once)"
    return Check("weights", True, detail, fix, required=True)


def missing_libraries(build: dict[str, Any]) -> list[str]:
    """The CUDA/cuDNN libraries this TensorFlow build wants that the loader cannot open."""
    wanted = []
    cuda = str(build.get("cuda_version") or "").split(".")[0]
    cudnn = str(build.get("cudnn_version") or "").split(".")[0]
    if cuda:
        wanted += [f"{lib}.so.{cuda}" for lib in CUDA_LIBS]
    if cudnn:
        wanted += [f"{lib}.so.{cudnn}" for lib in CUDNN_LIBS]
    missing = []
    for name in wanted:
        try:
            ctypes.CDLL(name)
        except OSError:
            # pip's nvidia-* wheels (tensorflow[and-cuda]) keep them where TF looks itself
            pattern = str(Path(sys.prefix) / "lib/python3*/site-packages/nvidia/*/lib" / name)
            if not glob.glob(pattern):
                missing.append(name)
    return missing


def check_devices(tf: Any) -> Check:
    devices = tf.config.list_physical_devices()
    gpus = [d for d in devices if d.device_type == "GPU"]
    names = ", ".join(d.name.replace("/physical_device:", "") for d in devices)
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return Check("devices", True, f"{names}; GPU:0 is {details.get('device_name', 'a GPU')}")
    if not shutil.which("nvidia-smi"):
        return Check("devices", True, f"{names} (no NVIDIA driver here: CPU only)")
    build = dict(tf.sysconfig.get_build_info())
    if not build.get("is_cuda_build"):
        return Check(
            "devices", False, f"{names}: nvidia-smi exists, but this TensorFlow is a CPU-only "
            "build", "pip install 'tensorflow[and-cuda]' into the venv (it replaces "
            "tensorflow-cpu; the CUDA libraries come as pip packages)",
        )  # fmt: skip
    missing = missing_libraries(build)
    wants = f"CUDA {build.get('cuda_version')}, cuDNN {build.get('cudnn_version')}"
    if missing:
        return Check(
            "devices", False, f"{names}: no GPU seen; this TensorFlow wants {wants}; missing: "
            + ", ".join(missing),
            "pip install 'tensorflow[and-cuda]' (pip's CUDA libraries), or install those "
            "versions and add their folder to LD_LIBRARY_PATH",
        )  # fmt: skip
    return Check(
        "devices", False, f"{names}: no GPU seen although nvidia-smi exists and the CUDA "
        f"libraries ({wants}) load", "Check nvidia-smi's output and CUDA_VISIBLE_DEVICES; "
        f"{DOCTOR_COMMAND} --verbose shows TensorFlow's own messages",
    )  # fmt: skip


def check_bf16() -> Check:
    from neural_style.daemon.engine.precision import _cpu_has_bf16

    if _cpu_has_bf16():
        return Check("bf16", True, "this CPU has native bf16 kernels (AVX512_BF16 / AMX): "
                     "--precision auto runs bf16 on it")  # fmt: skip
    return Check(
        "bf16", False, "no native bf16 kernels on this CPU (no AVX512_BF16 / AMX): "
        "--precision auto runs fp32", "None needed (a warning only): bf16 would be emulated "
        "here, slower than fp32",
    )  # fmt: skip


# --------------------------------------------------------------------------- GIMP


@dataclass
class GimpInstall:
    """One GIMP 3 installation and the profiles (plug-in folders) that belong to it."""

    kind: str  # "native" | "Flatpak" | "test chroot"
    where: str
    profiles: list[Path]


def find_gimp_installs() -> list[GimpInstall]:
    """Native, Flatpak and the test chroot, with install-plugin's own profile discovery."""
    from neural_style.daemon.gimp_install import discovery as gimp
    from neural_style.shared.flatpak import FLATPAK_APP, app_dir

    profiles = gimp.candidate_gimp_dirs()
    flatpak_base = app_dir(gimp.home())
    in_flatpak = [p for p in profiles if str(p.resolve()).startswith(str(flatpak_base.resolve()))]
    chrooted = [p for p in profiles if gimp.find_chroot_root(p) is not None]
    native = [p for p in profiles if p not in in_flatpak and p not in chrooted]
    installs = []
    prefixes = [p for p in gimp.gimp_prefixes() if any(
        (p / "bin" / name).exists() for name in gimp.GIMP_BINARIES)]  # fmt: skip
    if prefixes or native:
        installs.append(GimpInstall("native", ", ".join(map(str, prefixes)) or "?", native))
    if flatpak_base.is_dir() or in_flatpak:
        installs.append(GimpInstall("Flatpak", FLATPAK_APP, in_flatpak))
    root = Path(os.environ.get(TEST_CHROOT_ENV) or TEST_CHROOT_DEFAULT)
    if (root / "usr/bin/gimp-console-3.0").exists() or chrooted:
        found = [Path(p) for p in glob.glob(str(root / "root/.config/GIMP/3.*"))]
        installs.append(GimpInstall("test chroot", str(root), chrooted + found))
    return installs


def check_profile(profile: Path) -> Check:
    """Installed there, and for the Python that GIMP runs plug-ins with in that profile."""
    from neural_style.daemon.gimp_install.discovery import plugins_dir
    from neural_style.daemon.gimp_install.errors import InstallError
    from neural_style.daemon.gimp_install.install import MARKER, PLUGIN_NAME
    from neural_style.daemon.gimp_install.interpreter import python_command_for, query_python
    from neural_style.daemon.gimp_install.wheels import target_can_import

    folder = plugins_dir(profile) / PLUGIN_NAME
    name = f"plug-in in {profile}"
    fix = f"neural-style install-plugin --gimp-dir {shlex.quote(str(profile))}"
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return Check(name, False, f"not installed ({folder} has no {MARKER})", fix)
    try:
        command, how = python_command_for(profile, None)
        target = query_python(command, how)
    except InstallError as exc:
        return Check(name, False, f"installed for Python {marker.get('python_version')}, "
                     f"but GIMP's Python could not be asked: {exc}", fix)  # fmt: skip
    vendored = (folder / "vendor" / target.tag / "zmq").is_dir()
    if marker.get("python_version") != target.version:
        return Check(name, False, f"installed for Python {marker.get('python_version')}, but "
                     f"GIMP runs Python {target.version} ({how})", fix)  # fmt: skip
    if not vendored and not target_can_import(target):
        return Check(name, False, f"installed, but GIMP's Python {target.version} has no "
                     "pyzmq/msgpack (none vendored, none of its own)", fix)  # fmt: skip
    source = "vendored" if vendored else "GIMP's own"
    return Check(name, True, f"installed (version {marker.get('version')}) for GIMP's "
                 f"Python {target.version} ({how}); pyzmq/msgpack: {source}")  # fmt: skip


def check_gimp() -> list[Check]:
    installs = find_gimp_installs()
    if not installs:
        return [Check(
            "gimp", False, "no GIMP 3 installation found (native, Flatpak or test chroot)",
            "Install GIMP 3 and start it once (it creates its profile), then: "
            "neural-style install-plugin",
        )]  # fmt: skip
    checks = []
    for install in installs:
        checks.append(Check(
            f"gimp {install.kind}", bool(install.profiles),
            f"GIMP 3 at {install.where}; profiles: "
            + (", ".join(map(str, install.profiles)) or "none"),
            "" if install.profiles else "Start this GIMP once so it creates its profile, "
            "then: neural-style install-plugin",
        ))  # fmt: skip
        checks += [check_profile(p) for p in install.profiles]
    return checks


# --------------------------------------------------------------------------- daemon


def check_daemon(endpoint: str | None, timeout: float) -> list[Check]:
    """The connection file's trust (the client's own rules), then whether a daemon answers."""
    from neural_style.shared import connection
    from neural_style.shared.client import Client
    from neural_style.shared.errors import NeuralStyleError

    logging.getLogger(connection.__name__).addHandler(logging.NullHandler())  # said below
    problems: list[str] = []
    info = connection.discover(endpoint, problems)
    where = os.environ.get(connection.ENV_FILE) or str(connection.runtime_dir())
    if problems:
        trust = Check(
            "connection file", False, "untrusted, not used: " + "; ".join(problems),
            "If the file is yours: chmod 600 it; if not, delete it (someone else planted "
            "it to get your jobs or images) and restart the daemon: neural-style serve",
        )  # fmt: skip
    elif info is not None:
        trust = Check("connection file", True, f"{info.path}: trusted (yours, mode 0600); "
                      f"names {info.endpoint}, pid {info.pid}")  # fmt: skip
    else:
        trust = Check("connection file", False, f"none found in {where}",
                      "Start the daemon: neural-style serve")  # fmt: skip
    if info is None and endpoint is None and not problems:
        return [
            trust,
            Check(
                "daemon",
                False,
                "no daemon is running",
                "Start it: neural-style serve (stylize runs without one)",
            ),
        ]
    try:
        with Client(endpoint, timeout=timeout, info=info) as client:
            status = client.status()
    except NeuralStyleError as exc:
        target = endpoint or (info.endpoint if info else "the default endpoint")
        return [trust, Check(
            "daemon", False, f"no answer from {target}: {exc.message}",
            exc.hint or "Start it: neural-style serve",
        )]  # fmt: skip
    weights_info = status.get("weights") or {}
    return [trust, Check(
        "daemon", True, f"answers at {client.endpoint}: version {status.get('version')}, pid "
        f"{status.get('pid')}, {status.get('device')}, weights "
        + ("synthetic" if weights_info.get("synthetic") else "ImageNet"),
    )]  # fmt: skip


# --------------------------------------------------------------------------- output


def marks() -> tuple[str, str]:
    """✓/✗, or ASCII where stdout's encoding cannot write them."""
    try:
        "✓✗".encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return "OK", "XX"
    return "✓", "✗"


def render(checks: list[Check]) -> str:
    yes, no = marks()
    lines = []
    for c in checks:
        lines.append(f"{yes if c.ok else no} {c.name}: {c.detail}")
        if c.fix:
            lines.append(f"    fix: {c.fix}" if not c.ok else f"    note: {c.fix}")
    ok = all_ok(checks)
    warnings = sum(1 for c in checks if not c.ok and not c.required)
    lines.append(
        ("The main job can run" if ok else "The main job cannot run: fix the required checks")
        + (f" ({warnings} warning{'s' * (warnings != 1)})." if warnings else ".")
    )
    return "\n".join(lines)


def all_ok(checks: list[Check]) -> bool:
    return all(c.ok for c in checks if c.required)


def run_checks(args: argparse.Namespace) -> list[Check]:
    checks = [check_python(), *check_packages()]
    tf, tf_check = import_tensorflow()
    checks.append(tf_check)
    checks.append(check_weights(args.weights))
    if tf is not None:
        checks += [check_devices(tf), check_bf16()]
    checks += check_gimp()
    checks += check_daemon(args.endpoint, args.timeout)
    return checks


def run(args: argparse.Namespace) -> int:
    """``neural-style doctor``: 0 when the main job can run, 1 otherwise."""
    checks = run_checks(args)
    if args.json:
        print(json.dumps({"ok": all_ok(checks), "checks": [asdict(c) for c in checks]},
                         indent=2))  # fmt: skip
    else:
        print(render(checks))
    return 0 if all_ok(checks) else 1


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="check the set-up (weights, TensorFlow, GPU, GIMP, daemon) and say how to fix it",
        description="Check what neural-style needs and say how to fix what is wrong. Exit "
        "status 0 when `stylize` can run (Python, packages, TensorFlow, weights), else 1; "
        "GPU, bf16, GIMP and daemon lines are warnings.",
    )
    p.add_argument("--weights", help="VGG-19 weights file to check (else $NEURAL_STYLE_WEIGHTS, "
                   "else Keras' cache, as stylize)")  # fmt: skip
    p.add_argument("--endpoint", metavar="ENDPOINT", help="daemon to check (default: from the "
                   "connection file, as status)")  # fmt: skip
    p.add_argument(
        "--timeout",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how long to wait for the daemon's answer (default %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object for scripts")
    p.set_defaults(func=run)
