"""``install-plugin`` against a real GIMP 3 install: it must find *GIMP's* Python, not its own.

The CLI runs under this checkout's venv (a Python 3.11 here); our real GIMP is a Debian 13
chroot whose plug-ins run under its Python 3.13 (Debian's GIMP ships no ``pygimp.interp``:
its plug-ins start with ``#!/usr/bin/env python3``, the chroot's 3.13). Given a
profile inside that GIMP's file system and no ``--python``, ``install-plugin`` must bundle
pyzmq and msgpack built for 3.13 (and that GIMP's glibc), and GIMP's own interpreter must
import them from the bundle with its site-packages switched off.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.daemon_helpers import load_file_module

pytestmark = [pytest.mark.gimp, pytest.mark.slow]

HERE = Path(__file__).resolve().parent


harness = load_file_module("nsg_gimp_harness", HERE / "gimp" / "harness.py")


def test_install_plugin_finds_the_real_gimps_python_and_bundles_for_it() -> None:
    try:
        env = harness.ensure_gimp()
    except harness.GimpUnavailable as exc:
        pytest.skip(f"no GIMP 3 here and no way to get one: {exc}")
    if env.root is None:
        pytest.skip("a native GIMP: this test is about a GIMP whose Python is not the host's")
    version = subprocess.run(
        [*env.python_command(), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert version != f"{sys.version_info[0]}.{sys.version_info[1]}", "the test needs two"
    profile = env.host_path(f"/tmp/nsg-install-{uuid.uuid4().hex[:8]}/GIMP/3.0")
    profile.mkdir(parents=True)
    try:
        code = "import sys; from neural_style.daemon.cli import main; sys.exit(main())"
        proc = subprocess.run(
            [sys.executable, "-c", code, "install-plugin", "--gimp-dir", str(profile)],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        said = proc.stdout + proc.stderr
        assert proc.returncode == 0, said
        assert f"chroot {env.root}" in said and version in said, said
        tag = "py" + version.replace(".", "")
        vendor = profile / "plug-ins" / "neural_style" / "vendor" / tag
        assert (vendor / "zmq").is_dir() and (vendor / "msgpack").is_dir(), said
        # GIMP's interpreter, its own site-packages off (-S), imports the bundled copies
        inside = "/" + str(vendor.relative_to(env.root))
        check = (
            f"import sys; sys.path.insert(0, {inside!r}); import zmq, msgpack, json; "
            "print(json.dumps([zmq.__file__, msgpack.__file__, zmq.zmq_version()]))"
        )
        got = subprocess.run(
            [*env.python_command(), "-S", "-c", check], capture_output=True, text=True
        )
        assert got.returncode == 0, got.stderr
        files = json.loads(got.stdout.strip().splitlines()[-1])
        assert all(f.startswith(inside) for f in files[:2]), files
    finally:
        shutil.rmtree(profile.parent.parent, ignore_errors=True)
