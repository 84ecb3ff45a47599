"""The real ``neural-style`` commands print no TensorFlow start-up chatter unless --verbose:
no absl notice, no oneDNN line, no C++ INFO/WARNING log line (daemon/quiet.py,
daemon/cli/entry_point.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from neural_style.daemon.quiet import is_chatter
from neural_style.shared import connection
from tests.daemon_helpers import free_port

DATA = Path(__file__).resolve().parent / "data"
WORDS = ("oneDNN", "absl", "cpu_feature_guard", "TF-TRT")


def plain_env(tmp_path: Path) -> dict[str, str]:
    """A user's environment: none of TensorFlow's or absl's log variables set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "ABSL_"))}
    env.pop("NEURAL_STYLE_VERBOSE", None)
    env.pop(connection.ENV_FILE, None)
    env.update(XDG_RUNTIME_DIR=str(tmp_path), CUDA_VISIBLE_DEVICES="-1")
    return env


def chatter(stderr: str) -> list[str]:
    return [
        line for line in stderr.splitlines() if is_chatter(line) or any(w in line for w in WORDS)
    ]


def ns(*args: str) -> list[str]:
    return [sys.executable, "-m", "neural_style.daemon.cli", *args]


def test_chatter_pattern_matches_tensorflow_lines_and_not_errors() -> None:
    assert is_chatter("I0000 00:00:1796586813.766875   12765 port.cc:153] oneDNN custom ...")
    assert is_chatter("WARNING: All log messages before absl::InitializeLog() is called are")
    assert not is_chatter("E0000 00:00:1796586813.766875   12765 cuda_dnn.cc:8] Could not load")
    assert not is_chatter("neural-style: error: No VGG-19 weights found")


@pytest.mark.slow
def test_stylize_and_serve_print_no_tensorflow_chatter(
    synthetic_weights: Path, tmp_path: Path
) -> None:
    env = plain_env(tmp_path)
    proc = subprocess.run(
        ns("stylize", str(DATA / "chelsea_64.png"), str(DATA / "starry_night_64.png"), "-o",
           str(tmp_path / "out.png"), "--local", "--size", "32", "--iterations", "2",
           "--weights", str(synthetic_weights), "--quiet"),
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip(), "the synthetic-weights warning is expected on stderr"
    assert chatter(proc.stderr) == [], proc.stderr

    conn = tmp_path / "daemon.json"
    err = tmp_path / "serve.err"
    with open(err, "wb") as stderr:
        serve = subprocess.Popen(
            ns("serve", "--bind", f"tcp://127.0.0.1:{free_port()}", "--weights",
               str(synthetic_weights), "--connection-file", str(conn), "--log-file",
               str(tmp_path / "serve.log")),
            stdout=subprocess.DEVNULL, stderr=stderr,
            env={**env, "XDG_STATE_HOME": str(tmp_path / "state")},
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 180
            while connection.read(conn) is None and serve.poll() is None:
                assert time.monotonic() < deadline, err.read_text()
                time.sleep(0.2)
        finally:
            serve.send_signal(signal.SIGTERM)
            serve.wait(60)
    text = err.read_text(errors="replace")
    assert connection.read(conn) is not None or serve.returncode == 0, text
    assert chatter(text) == [], text


def test_fetch_weights_failing_offline_prints_no_chatter(tmp_path: Path) -> None:
    """install.sh's fetch-weights step: here it cannot download (or finds nothing to do)."""
    env = plain_env(tmp_path)
    env.update(KERAS_HOME=str(tmp_path / "keras"), HTTPS_PROXY="http://127.0.0.1:9",
               https_proxy="http://127.0.0.1:9")  # fmt: skip
    proc = subprocess.run(ns("fetch-weights"), capture_output=True, text=True, env=env,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Downloading the VGG-19 weights" in proc.stderr
    assert chatter(proc.stderr) == [], proc.stderr
