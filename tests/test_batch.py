"""``neural-style batch`` end to end: real files, real subprocesses, a real daemon, random
weights at 64 px (plumbing, not pictures)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neural_style.daemon.cli.batch import expand_inputs, is_complete, plan
from neural_style.shared.errors import NeuralStyleError
from tests.daemon_helpers import daemon_env, running_daemon

SIZE = 64
SUFFIXES = frozenset({".png", ".jpg"})


def picture(path: Path, seed: int, size: tuple[int, int] = (SIZE, 48)) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)).save(path)
    return path


def batch_cmd(*args: str, weights: Path) -> list[str]:
    return [sys.executable, "-m", "neural_style.daemon.cli", "batch", *args,
            "--size", str(SIZE), "--weights", str(weights), "--quiet"]  # fmt: skip


def run_batch(
    *args: str, weights: Path, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        batch_cmd(*args, weights=weights), capture_output=True, text=True, timeout=timeout,
        env=env,
    )  # fmt: skip


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No daemon of the user's can answer: a private runtime dir."""
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    return daemon_env(run)


@pytest.fixture
def style(tmp_path: Path) -> Path:
    return picture(tmp_path / "style.png", seed=99, size=(40, 40))


def test_folder_with_a_corrupt_file_reports_it_and_writes_the_rest(
    tmp_path: Path, synthetic_weights: Path, env: dict[str, str], style: Path
) -> None:
    """Corrupt and too-thin inputs are failed rows with their reason; the good ones are
    written; exit 1; in-process, the style targets are computed once (cache hits after the
    first input); a re-run skips the written outputs and still reports the bad ones."""
    src, out, report = tmp_path / "in", tmp_path / "out", tmp_path / "report.json"
    src.mkdir()
    for i in range(3):
        picture(src / f"good{i}.png", seed=i)
    (src / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    picture(src / "thin.png", seed=5, size=(SIZE, 8))
    (src / "notes.txt").write_text("not an image suffix: not an input")
    args = (str(src), "--style", str(style), "-o", str(out), "--iterations", "3", "--local",
            "--report", str(report))  # fmt: skip
    res = run_batch(*args, weights=synthetic_weights, env=env)
    assert res.returncode == 1, res.stderr
    data = json.loads(report.read_text())
    rows = {Path(r["input"]).name: r for r in data["rows"]}
    assert list(rows) == ["corrupt.png", "good0.png", "good1.png", "good2.png", "thin.png"]
    assert data["mode"] == "local" and data["summary"] == {"ok": 3, "skipped": 0, "failed": 2}
    assert (
        rows["corrupt.png"]["status"] == "failed" and "not an image" in rows["corrupt.png"]["error"]
    )
    assert rows["thin.png"]["status"] == "failed" and "too thin" in rows["thin.png"]["error"]
    assert "corrupt.png" in res.stderr and "thin.png" in res.stderr
    for i in range(3):
        row = rows[f"good{i}.png"]
        assert row["status"] == "ok" and row["steps"] == 3 and row["seconds"] > 0
        assert row["output"] == str(out / f"good{i}.png")
        assert Image.open(out / f"good{i}.png").size == (SIZE, 48)
    assert [rows[f"good{i}.png"]["style_cache_hit"] for i in range(3)] == [False, True, True]
    assert sorted(p.name for p in out.iterdir()) == ["good0.png", "good1.png", "good2.png"]

    again = run_batch(*args, weights=synthetic_weights, env=env)
    assert again.returncode == 1, again.stderr
    data = json.loads(report.read_text())
    assert data["summary"] == {"ok": 0, "skipped": 3, "failed": 2}


def test_killed_batch_resumes_with_only_the_missing_outputs(
    tmp_path: Path, synthetic_weights: Path, env: dict[str, str], style: Path
) -> None:
    """SIGKILL once the first output appears: every output under its final name is a
    complete image; the re-run leaves those untouched, writes the rest, removes the
    killed run's temporary file, and exits 0."""
    src, out, report = tmp_path / "in", tmp_path / "out", tmp_path / "report.json"
    src.mkdir()
    count = 8
    for i in range(count):
        picture(src / f"frame{i}.png", seed=i)
    args = (str(src / "frame*.png"), "--style", str(style), "-o", str(out), "--iterations", "30",
            "--local")  # fmt: skip
    proc = subprocess.Popen(
        batch_cmd(*args, weights=synthetic_weights), env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    try:
        while not (out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir())):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no output after 300 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
    first = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if not p.name.startswith(".")}
    assert 1 <= len(first) < count
    assert all(is_complete(out / name) for name in first)

    res = run_batch(*args, "--report", str(report), weights=synthetic_weights, env=env)
    assert res.returncode == 0, res.stderr
    rows = json.loads(report.read_text())["rows"]
    status = {Path(r["input"]).name: r["status"] for r in rows}
    assert status == {f"frame{i}.png": ("skipped" if f"frame{i}.png" in first else "ok")
                      for i in range(count)}  # fmt: skip
    assert {name: (out / name).stat().st_mtime_ns for name in first} == first
    assert sorted(p.name for p in out.iterdir()) == sorted(f"frame{i}.png" for i in range(count))
    assert all(is_complete(out / f"frame{i}.png") for i in range(count))


def test_through_a_daemon_the_style_targets_are_computed_once(
    tmp_path: Path, synthetic_weights: Path, style: Path
) -> None:
    """No --local, no --daemon: the batch finds the running daemon as stylize does, and the
    daemon's own counter shows every input after the first reusing the style's Grams."""
    src, out, report = tmp_path / "in", tmp_path / "out", tmp_path / "report.json"
    src.mkdir()
    count = 4
    for i in range(count):
        picture(src / f"p{i}.jpg", seed=i)
    with running_daemon(synthetic_weights, tmp_path / "d", use_runtime_dir=True) as daemon:
        with daemon.client() as c:
            before = c.status()["jobs"]
        res = run_batch(str(src), "--style", str(style), "-o", str(out), "--iterations", "3",
                        "--report", str(report), weights=synthetic_weights,
                        env=daemon_env(daemon.runtime_dir))  # fmt: skip
        assert res.returncode == 0, res.stderr
        with daemon.client() as c:
            after = c.status()["jobs"]
    data = json.loads(report.read_text())
    assert data["mode"] == "daemon" and data["endpoint"] == daemon.endpoint
    assert data["weights"]["synthetic"] is True
    assert after["done"] - before.get("done", 0) == count
    assert after["style_cache_hits"] - before.get("style_cache_hits", 0) == count - 1
    assert [r["style_cache_hit"] for r in data["rows"]] == [False] + [True] * (count - 1)
    assert sorted(p.name for p in out.iterdir()) == [f"p{i}.png" for i in range(count)]


def test_usage_errors_exit_2_before_anything_runs(
    tmp_path: Path, synthetic_weights: Path, env: dict[str, str], style: Path
) -> None:
    """Same stem twice, a missing path, an --init image: exit 2, named, nothing written."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one, two = picture(tmp_path / "a" / "cat.png", 1), picture(tmp_path / "b" / "cat.jpg", 2)
    out = tmp_path / "out"
    cases = [
        ((str(one), str(two)), "same name"),
        ((str(one), str(tmp_path / "missing.png")), "No such input"),
        ((str(tmp_path / "none*.png"),), "No file matches"),
        ((str(one), "--init", str(two)), "--init as a mode only"),
    ]
    for inputs, message in cases:
        res = run_batch(*inputs, "--style", str(style), "-o", str(out), "--local",
                        weights=synthetic_weights, env=env)  # fmt: skip
        assert res.returncode == 2, res.stderr
        assert message in res.stderr
    assert not out.exists() or not any(out.iterdir())


def test_inputs_expand_in_order_once_each(tmp_path: Path) -> None:
    """Folders give their image files sorted (hidden and other suffixes left out), globs
    sorted, a file named twice counts once; an output that would replace its input is
    refused."""
    for name in ("b.png", "a.jpg", ".hidden.png", "c.txt"):
        (tmp_path / name).write_bytes(b"")
    found = expand_inputs([str(tmp_path), str(tmp_path / "*.png"), str(tmp_path / "a.jpg")],
                          SUFFIXES)  # fmt: skip
    assert [p.name for p in found] == ["a.jpg", "b.png"]
    items = plan(found, tmp_path / "out")
    assert [(i.input.name, i.output.name) for i in items] == [
        ("a.jpg", "a.png"),
        ("b.png", "b.png"),
    ]
    with pytest.raises(NeuralStyleError, match="overwrite the input"):
        plan(found, tmp_path)
