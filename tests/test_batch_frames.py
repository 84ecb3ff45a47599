"""``neural-style batch --frames`` end to end: generated sequences with known motion written
as frame files, real subprocesses, a real daemon, random weights at 64 px (plumbing and the
flicker measure, not pictures: the stand-in benchmark is benchmarks/bench_frames.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neural_style.daemon.frames import sequences
from neural_style.daemon.frames.batch_mode import natural_key
from neural_style.daemon.frames.flicker import sequence_flicker
from tests.daemon_helpers import daemon_env, running_daemon

SIZE = (64, 48)
DATA = Path(__file__).resolve().parent / "data"


def batch(*args: str, weights: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "neural_style.daemon.cli", "batch", *args, "--size", "64",
           "--weights", str(weights), "--quiet", "--optimizer", "lbfgs",
           "--iterations", "12"]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    return daemon_env(run)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return sequences.load_still(DATA / "chelsea_128.png")


@pytest.fixture
def style(tmp_path: Path) -> Path:
    path = tmp_path / "style.png"
    path.write_bytes((DATA / "starry_night_64.png").read_bytes())
    return path


def outputs(folder: Path) -> list[np.ndarray]:
    return [sequences.load_still(p) for p in sorted(folder.glob("*.png"), key=natural_key)]


def rows(report: Path) -> list[dict]:
    return list(json.loads(report.read_text())["rows"])


def test_frames_mode_flickers_less_than_independent_frames(
    tmp_path: Path, synthetic_weights: Path, env: dict[str, str], style: Path, photo: np.ndarray
) -> None:
    """A 6-frame pan: frames after the first continue from the previous one (fewer steps),
    and the temporal error of the outputs is lower than with --independent."""
    seq = sequences.pan(photo, SIZE, frames=6, step=(3, 1))
    seq.save(tmp_path / "in")
    results = {}
    for mode, extra in (("frames", ()), ("independent", ("--independent",))):
        out, report = tmp_path / mode, tmp_path / f"{mode}.json"
        res = batch(str(tmp_path / "in"), "--style", str(style), "-o", str(out), "--frames",
                    *extra, "--local", "--report", str(report), weights=synthetic_weights,
                    env=env)  # fmt: skip
        assert res.returncode == 0, res.stderr
        results[mode] = (rows(report), sequence_flicker(outputs(out), seq.frames))
    frames_rows, frames_flicker = results["frames"]
    indep_rows, indep_flicker = results["independent"]
    assert [r["frame"].get("continued") for r in frames_rows] == [None] + [True] * 5
    assert all(not r["frame"] for r in indep_rows)
    assert [r["steps"] for r in indep_rows] == [12] * 6
    assert [r["steps"] for r in frames_rows] == [12] + [4] * 5  # FRAME_SHARE of 12
    assert all(r["frame"]["reliable"] > 0.9 for r in frames_rows[1:])
    assert frames_flicker.mean < 0.75 * indep_flicker.mean, (frames_flicker, indep_flicker)
    assert frames_flicker.floor < 0.01


def test_scene_cut_restarts_from_the_content(
    tmp_path: Path, synthetic_weights: Path, env: dict[str, str], style: Path, photo: np.ndarray
) -> None:
    """A cut at frame 4 (frame_0004.png): that frame runs on its own, the ones after it
    continue again; numbered names sort as numbers (frame_10 after frame_9)."""
    painting = sequences.load_still(DATA / "great_wave_128.png")
    seq = sequences.scene_cut(photo, painting, SIZE, frames=6, cut_at=3)
    seq.save(tmp_path / "in")
    report = tmp_path / "r.json"
    res = batch(str(tmp_path / "in" / "frame_*.png"), "--style", str(style), "-o",
                str(tmp_path / "out"), "--frames", "--local", "--report", str(report),
                weights=synthetic_weights, env=env)  # fmt: skip
    assert res.returncode == 0, res.stderr
    got = rows(report)
    assert [Path(r["input"]).name for r in got] == [f"frame_{t:04d}.png" for t in range(1, 7)]
    assert [r["frame"].get("cut", False) for r in got] == [False, False, False, True, False, False]
    assert [r["frame"].get("continued") for r in got] == [None, True, True, False, True, True]
    assert got[3]["steps"] == 12 and got[4]["steps"] == 4
    assert [p.name for p in sorted([Path("frame_10.png"), Path("frame_9.png")],
                                   key=natural_key)] == ["frame_9.png", "frame_10.png"]  # fmt: skip


def test_resumed_sequence_continues_from_the_frame_on_disk(
    tmp_path: Path, synthetic_weights: Path, env: dict[str, str], style: Path, photo: np.ndarray
) -> None:
    """Outputs 4-6 removed after a run: the re-run skips 1-3 and frame 4 continues from
    frame 3's output file; --temporal-weight alone is a usage error."""
    sequences.pan(photo, SIZE, frames=6, step=(3, 1)).save(tmp_path / "in")
    out, report = tmp_path / "out", tmp_path / "r.json"
    args = (str(tmp_path / "in"), "--style", str(style), "-o", str(out), "--frames", "--local",
            "--report", str(report), "--temporal-weight", "1e4")  # fmt: skip
    assert batch(*args, weights=synthetic_weights, env=env).returncode == 0
    for t in (4, 5, 6):
        (out / f"frame_{t:04d}.png").unlink()
    res = batch(*args, weights=synthetic_weights, env=env)
    assert res.returncode == 0, res.stderr
    got = rows(report)
    assert [r["status"] for r in got] == ["skipped"] * 3 + ["ok"] * 3
    assert [r["frame"].get("continued") for r in got[3:]] == [True] * 3
    bad = batch(str(tmp_path / "in"), "--style", str(style), "-o", str(tmp_path / "x"),
                "--temporal-weight", "5", "--local", weights=synthetic_weights,
                env=env)  # fmt: skip
    assert bad.returncode == 2 and "go with --frames" in bad.stderr


def test_frames_mode_through_a_daemon(
    tmp_path: Path, synthetic_weights: Path, style: Path, photo: np.ndarray
) -> None:
    """The daemon does the flow and the temporal loss: the jobs after the first carry the
    previous frame and come back continued, with the flow's check in the report."""
    sequences.pan(photo, SIZE, frames=4, step=(3, 1)).save(tmp_path / "in")
    report = tmp_path / "r.json"
    with running_daemon(synthetic_weights, tmp_path / "d", use_runtime_dir=True) as daemon:
        res = batch(str(tmp_path / "in"), "--style", str(style), "-o", str(tmp_path / "out"),
                    "--frames", "--report", str(report), weights=synthetic_weights,
                    env=daemon_env(daemon.runtime_dir))  # fmt: skip
    assert res.returncode == 0, res.stderr
    data = json.loads(report.read_text())
    assert data["mode"] == "daemon"
    assert [r["frame"].get("continued") for r in data["rows"]] == [None, True, True, True]
    assert [r["steps"] for r in data["rows"]] == [12, 4, 4, 4]
    assert all(0.9 < r["frame"]["reliable"] <= 1 for r in data["rows"][1:])


def test_chunks_cut_the_sequence_into_runs_that_start_afresh(tmp_path: Path) -> None:
    """Two workers: two runs of equal length; a frame may start once its predecessor has a
    row, the first frame of each run at once, and only those start without a previous
    frame; --chunks caps the runs."""
    from neural_style.daemon.cli.batch import Item
    from neural_style.daemon.frames.batch_mode import SequenceFrames

    items = [Item(tmp_path / f"f{i}.png", tmp_path / "out" / f"f{i}.png") for i in range(7)]
    seq = SequenceFrames(items, None)
    assert seq.chunk(2) == 2 and seq.heads == {items[3]}
    assert [seq.ready(it, set()) for it in items] == [True, False, False, True] + [False] * 3
    assert seq.ready(items[4], {items[3]}) and not seq.ready(items[5], {items[3]})
    assert seq._previous(items[3]) is None  # a run's first frame: afresh
    frame = np.zeros((4, 4, 3), np.float32)
    seq._content[items[3]] = frame
    seq.after(items[3], type("Result", (), {"image": frame + 1})())
    previous = seq._previous(items[4])
    assert previous is not None and float(previous[1].mean()) == 1.0
    assert SequenceFrames(items, None, chunks=1).chunk(4) == 1
    capped = SequenceFrames(items, None, chunks=3)
    assert capped.chunk(8) == 3 and capped.heads == {items[2], items[4]}
