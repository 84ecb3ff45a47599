"""End-to-end: a real GIMP 3 runs Filters > Animation > Neural Style (all frames)… against a
real daemon (synthetic weights: plumbing, not pictures).

Animations are 4 frame layers cut from a photo by a moving window (a pan), named as GIMP's
animation convention names them (``Frame 1 (100ms) (replace)``); one case has its style
layer in the same image (it is not a frame). One gimp-console run (tests/gimp/frames_driver.py)
serves all cases; the cancel case runs the interactive path under Xvfb and presses the
progress window's Cancel during frame 3.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neural_style.daemon.frames import sequences
from tests.test_gimp_e2e import Daemon, _cli, harness

pytestmark = [pytest.mark.gimp, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
SIZE = (64, 48)
NAMES = [f"Frame {k} (100ms) (replace)" for k in range(1, 5)]


def _frames(folder: Path) -> list[dict[str, str]]:
    seq = sequences.pan(sequences.load_still(DATA / "chelsea_128.png"), SIZE, 4, (4, 1))
    paths = seq.save(folder)
    return [{"file": p.name, "name": n} for p, n in zip(paths, NAMES, strict=True)]


@pytest.fixture(scope="module")
def frames_run(tmp_path_factory: pytest.TempPathFactory, synthetic_weights: Path) -> dict:
    try:
        env = harness.ensure_gimp()
    except harness.GimpUnavailable as exc:
        pytest.skip(f"no GIMP 3 here and no way to get one: {exc}")
    work = tmp_path_factory.mktemp("gimp-frames")
    out, data, profile = work / "out", work / "data", work / "profile"
    out.mkdir()
    frames = _frames(data)
    shutil.copy(DATA / "starry_night_64.png", data / "style.png")
    proc = subprocess.run(
        _cli("install-plugin", "--gimp-dir", str(profile),
             "--python", shlex.join(env.python_command())),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, f"install-plugin failed:\n{proc.stdout}\n{proc.stderr}"
    args = {"preset": "custom", "iterations": 6, "max-size": 64}
    cases = [
        {"name": "consistent", "frames": frames, "style_in_image": True, "args": args},
        {"name": "independent", "frames": frames,
         "args": {**args, "independent": True, "new-image": True}},
        {"name": "cancel", "frames": frames, "cancel": True,
         "args": {**args, "iterations": 60}},
    ]  # fmt: skip
    daemon = Daemon(work, synthetic_weights)
    try:
        conn = daemon.wait_ready()
        shutil.copy(conn, work / "connection.json")
        plugin_dir = profile / "plug-ins" / "neural_style"
        cfg = {"out_dir": str(out), "data_dir": str(data), "style": str(data / "style.png"),
               "plugin_dir": str(plugin_dir), "cases": cases}  # fmt: skip
        (work / "cfg.json").write_text(json.dumps(cfg))
        shutil.copy(HERE / "gimp" / "frames_driver.py", work / "frames_driver.py")
        log = work / "plugin.log"
        t0 = time.monotonic()
        run = env.run_batch(
            f'exec(open("{work / "frames_driver.py"}").read())',
            work=work, profile=profile, timeout=420, xvfb=env.has_xvfb,
            env={"NSG_FRAMES_CFG": str(work / "cfg.json"), "NEURAL_STYLE_PLUGIN_LOG": str(log),
                 "NEURAL_STYLE_CONNECTION_FILE": str(work / "connection.json"),
                 "NEURAL_STYLE_TIMEOUT": "5"},
        )  # fmt: skip
        wall = time.monotonic() - t0
    finally:
        daemon_log = daemon.tail()
        daemon.stop()
    gimp_log = harness.show_log(run.stdout + run.stderr)
    results_path = out / "results.json"
    assert run.returncode == 0 and results_path.exists(), (
        f"gimp-console exit {run.returncode}\n{gimp_log}\n--- daemon ---\n{daemon_log}"
    )
    results = json.loads(results_path.read_text())
    events = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return {"results": results, "cases": {c["name"]: c for c in results["cases"]},
            "out": out, "events": events, "gimp_log": gimp_log, "daemon_log": daemon_log,
            "has_xvfb": env.has_xvfb, "wall_s": wall, "data": data}  # fmt: skip


def _ok(run: dict[str, Any], name: str) -> dict[str, Any]:
    rec = run["cases"].get(name)
    assert rec is not None, f"case {name} did not run"
    assert "driver_error" not in rec, rec["driver_error"]
    assert rec["status"] == "success", (
        f"{name}: {rec['status']}: {rec.get('error')}\n{run['gimp_log'][-3000:]}\n"
        f"--- daemon ---\n{run['daemon_log']}"
    )
    return rec


def _frame_events(run: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in run["events"] if e["event"] == kind]


def test_procedure_is_registered_under_filters_animation(frames_run: dict[str, Any]) -> None:
    res = frames_run["results"]
    assert res["registered"], frames_run["gimp_log"]
    assert res["menu_label"] == "Neural Style (_all frames)…"
    assert res["menu_paths"] == ["<Image>/Filters/Animation"]
    assert res["arguments"][-3:] == ["temporal-weight", "independent", "new-image"]
    assert "refine" not in res["arguments"] and res["return_values"] == ["new-group"]


def test_four_frames_give_a_group_of_four_with_the_names_kept(frames_run: dict) -> None:
    """The style layer in the image is not a frame; the result group is on top with the
    frames in order (first at the bottom), names and sizes kept; frames 2-4 were sent with
    the previous frame and continued from it on the daemon."""
    rec = _ok(frames_run, "consistent")
    assert rec["layers_before"] == ["the style", *reversed(NAMES)]
    group = rec["group"]
    assert group["is_group"] and group["top"] and group["visible"]
    # GIMP keeps names unique within an image (" #1"); the timing tags stay as they were
    assert group["children"] == [f"{n} #1" for n in NAMES]
    assert group["sizes"] == [list(SIZE)] * 4 and group["offsets"] == [[0, 0]] * 4
    assert group["name"] == "Frames in the style of the style (Neural Style)"
    assert rec["layers_after"] == [group["name"], *rec["layers_before"]]
    done = [e for e in _frame_events(frames_run, "frame_done")][:4]
    submitted = _frame_events(frames_run, "frame_submitted")[:4]
    assert [e["previous"] for e in submitted] == [False, True, True, True]
    assert [e["info"].get("continued", False) for e in done] == [False, True, True, True]
    # each result differs from its source frame (it was stylized)
    for k, frame in enumerate(sorted(frames_run["data"].glob("frame_*.png"))):
        got = np.fromfile(frames_run["out"] / f"consistent.{k}.raw", np.uint8)
        got = got.reshape(SIZE[1], SIZE[0], 4)[..., :3].astype(int)
        src = (sequences.load_still(frame) * 255).round().astype(int)
        assert np.abs(got - src).mean() > 2.0, frame.name


def test_independent_frames_into_a_new_image_keep_the_names_exactly(frames_run: dict) -> None:
    """new-image: the frames are a new image's layers, named exactly as their sources (ready
    to play back or export); this image is unchanged; no job carried a previous frame."""
    rec = _ok(frames_run, "independent")
    assert rec["new_image"] == {"same_image": False, "size": list(SIZE)}
    assert rec["group"]["children"] == NAMES and not rec["group"]["is_group"]
    assert rec["layers_after"] == rec["layers_before"]
    submitted = _frame_events(frames_run, "frame_submitted")[4:8]
    assert [e["previous"] for e in submitted] == [False] * 4


def test_cancel_during_frame_three_keeps_two_frames(frames_run: dict[str, Any]) -> None:
    if not frames_run["has_xvfb"]:
        pytest.skip("no Xvfb: the interactive progress window cannot open")
    rec = _ok(frames_run, "cancel")
    assert rec["window"]["windows"] == 1  # one progress window for the whole run
    assert rec["window"]["pressed_at"][0] == 2
    assert rec["group"]["children"] == [f"{n} #1" for n in NAMES[:2]]
    assert rec["group"]["name"].endswith("(2 of 4 frames) (Neural Style)")
    statuses = rec["window"]["statuses"]
    assert any(s.startswith("Frame 3 / 4 (Frame 3 (100ms) (replace)): step") for s in statuses)
    assert any(s.startswith("Frame 1 / 4") for s in statuses)
