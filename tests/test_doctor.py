"""``neural-style doctor`` in real processes: stand-in and synthetic weights, no weights, a
running daemon, a planted connection file, a GIMP profile, ``--json``; and its kind check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from neural_style.daemon.cli import doctor
from neural_style.shared import connection
from tests.daemon_helpers import Daemon, free_port, load_file_module

HERE = Path(__file__).resolve().parent
CHECK_FIELDS = {"name", "ok", "detail", "fix", "required"}


def doctor_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No weights anywhere (an empty Keras home), a private empty runtime dir, no GIMP."""
    run = tmp_path / "run"
    run.mkdir(mode=0o700, exist_ok=True)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(run), KERAS_HOME=str(tmp_path / "keras"),
               HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "config"),
               NEURAL_STYLE_GIMP_ROOT=str(tmp_path / "no-chroot"))  # fmt: skip
    for name in ("NEURAL_STYLE_WEIGHTS", connection.ENV_FILE, "GIMP3_DIRECTORY",
                 "NEURAL_STYLE_VERBOSE"):  # fmt: skip
        env.pop(name, None)
    env.update(extra)
    return env


def run_doctor(
    *args: str, env: dict[str, str], timeout: float = 180
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "neural_style.daemon.cli", "doctor", *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


def report(*args: str, env: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, dict]]:
    """(exit status, the JSON object, its checks by name)."""
    proc = run_doctor("--json", *args, env=env)
    assert proc.returncode in (0, 1), proc.stderr
    data = json.loads(proc.stdout)
    return proc.returncode, data, {c["name"]: c for c in data["checks"]}


@pytest.fixture(scope="module")
def cheap_standin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in's layout (HED's VGG-16 with identity 4th convolutions) at fixed scales:
    what the kind check looks at, without the ~30 s calibration of the real build."""
    from neural_style.daemon.engine import standin
    from neural_style.daemon.engine.weights import write_keras_layout

    try:
        base = standin.vgg19_layout(standin.read_hed_vgg16(standin.find_hed_weights()))
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    scales = {name: 1.5 ** (i % 4) for i, name in enumerate(base)}
    return write_keras_layout(tmp_path_factory.mktemp("standin") / "standin.h5",
                              standin.rescale(base, scales))  # fmt: skip


def test_json_with_the_stand_in_says_its_kind_and_checksum(cheap_standin: Path, tmp_path: Path):
    from neural_style.daemon.engine.weights import file_digests

    started = time.monotonic()
    code, data, checks = report("--weights", str(cheap_standin), env=doctor_env(tmp_path))
    took = time.monotonic() - started
    assert code == 0 and data["ok"] is True
    assert all(set(c) == CHECK_FIELDS for c in data["checks"]), data["checks"]
    assert all(isinstance(c["ok"], bool) and isinstance(c["detail"], str) for c in data["checks"])
    weights = checks["weights"]
    assert weights["ok"] and doctor.STANDIN in weights["detail"]
    assert file_digests(cheap_standin)[1] in weights["detail"]
    assert "fetch-weights" in weights["fix"]  # not ImageNet: how to get the real file
    for name in ("python", "package tensorflow", "package pyzmq", "tensorflow import",
                 "devices", "bf16", "gimp", "connection file", "daemon"):  # fmt: skip
        assert name in checks, name
    assert not checks["gimp"]["ok"] and not checks["gimp"]["required"]  # a warning only
    assert not checks["daemon"]["ok"] and "neural-style serve" in checks["daemon"]["fix"]
    assert took < 60, f"doctor took {took:.0f} s"


def test_kinds_synthetic_and_stand_in(synthetic_weights: Path, cheap_standin: Path) -> None:
    from neural_style.daemon.engine.weights import file_digests

    assert doctor.weights_kind(synthetic_weights, file_digests(synthetic_weights)[0]) == (
        doctor.SYNTHETIC
    )
    assert doctor.weights_kind(cheap_standin, file_digests(cheap_standin)[0]) == doctor.STANDIN


def test_no_weights_is_fatal_and_names_the_fetch_command(tmp_path: Path) -> None:
    proc = run_doctor(env=doctor_env(tmp_path, PYTHONIOENCODING="utf-8"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    weights = next(i for i, line in enumerate(lines) if line.startswith("✗ weights:"))
    assert "No VGG-19 weights found" in lines[weights]
    assert (
        lines[weights + 1].startswith("    fix:")
        and "neural-style fetch-weights" in (lines[weights + 1])
    )
    assert any(line.startswith("✓ tensorflow import:") for line in lines)
    assert "cannot run" in lines[-1]
    assert "oneDNN" not in proc.stderr and "absl" not in proc.stderr, proc.stderr


def test_ascii_fallback_where_stdout_cannot_write_the_marks(tmp_path: Path) -> None:
    proc = run_doctor(env=doctor_env(tmp_path, PYTHONIOENCODING="ascii"))
    assert proc.returncode == 1, proc.stderr
    assert "XX weights:" in proc.stdout and "OK python:" in proc.stdout
    assert "✓" not in proc.stdout


def test_a_running_daemon_answers_and_its_file_is_trusted(
    synthetic_weights: Path, tmp_path: Path
) -> None:
    daemon = Daemon(synthetic_weights, tmp_path / "d").wait_ready()
    try:
        env = doctor_env(tmp_path, **{connection.ENV_FILE: str(daemon.connection_file)})
        code, data, checks = report("--weights", str(synthetic_weights), env=env)
        assert code == 0, data
        assert checks["connection file"]["ok"], checks["connection file"]
        assert "trusted" in checks["connection file"]["detail"]
        assert checks["daemon"]["ok"], checks["daemon"]
        assert daemon.endpoint in checks["daemon"]["detail"]
        assert f"pid {daemon.proc.pid}" in checks["daemon"]["detail"]
        # --endpoint names it too (the key from the matching file, as `status` does)
        _, _, by_endpoint = report("--weights", str(synthetic_weights), "--endpoint",
                                   daemon.endpoint, env=env)  # fmt: skip
        assert by_endpoint["daemon"]["ok"], by_endpoint["daemon"]
    finally:
        daemon.stop()


def test_a_planted_world_readable_connection_file_is_shown_untrusted(
    synthetic_weights: Path, tmp_path: Path
) -> None:
    env = doctor_env(tmp_path)
    folder = Path(env["XDG_RUNTIME_DIR"]) / "neural-style"
    folder.mkdir(mode=0o700)
    planted = folder / "daemon.json"
    planted.write_text(json.dumps({"endpoint": f"tcp://127.0.0.1:{free_port()}", "pid": 1,
                                   "key": "ab" * 32}))  # fmt: skip
    os.chmod(planted, 0o644)
    code, data, checks = report("--weights", str(synthetic_weights), env=env)
    trust = checks["connection file"]
    assert not trust["ok"] and str(planted) in trust["detail"] and "0644" in trust["detail"]
    assert "delete it" in trust["fix"]
    assert not checks["daemon"]["ok"]  # its endpoint and key were not used
    assert code == 0 and data["ok"]  # a warning: stylize runs without a daemon


def test_a_gimp_profile_without_and_with_the_plug_in(tmp_path: Path) -> None:
    profile = tmp_path / "profile" / "GIMP" / "3.0"
    profile.mkdir(parents=True)
    env = doctor_env(tmp_path, GIMP3_DIRECTORY=str(profile))
    # this machine's python3 stands in for GIMP's: no gimp binary, no pygimp.interp
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                  if Path(sys.prefix) not in Path(p).parents)  # fmt: skip
    _, _, checks = report(env=env)
    line = checks[f"plug-in in {profile}"]
    assert not line["ok"] and "not installed" in line["detail"]
    assert f"install-plugin --gimp-dir {profile}" in line["fix"]
    installed = subprocess.run(
        [sys.executable, "-m", "neural_style.daemon.cli", "install-plugin", "--gimp-dir",
         str(profile), "--python-version", "3.0", "--no-vendor"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    _, _, checks = report(env=env)
    line = checks[f"plug-in in {profile}"]
    assert not line["ok"] and "installed for Python 3.0, but GIMP runs Python 3." in line["detail"]


def test_the_test_chroot_is_looked_for_where_the_gimp_harness_builds_it() -> None:
    harness = load_file_module("nsg_gimp_harness", HERE / "gimp" / "harness.py")
    assert harness.DEFAULT_ROOT == doctor.TEST_CHROOT_DEFAULT
    assert doctor.TEST_CHROOT_ENV in (HERE / "gimp" / "harness.py").read_text()
