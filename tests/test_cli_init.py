"""``neural-style stylize --init IMAGE``: start from an image (an earlier result), the CLI's
counterpart of the plug-in's Refine. In-process runs on the random-weights engine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neural_style.daemon.cli import entry_point, job_options
from neural_style.daemon.engine import StyleTransfer
from tests.test_cli import CONTENT, DATA, STYLE, _stylize_parser, run_cli

#: Tiny and quick: 32 px, 3 Adam steps, no coarse scales.
FAST = ["--preset", "none", "--size", "32", "--iterations", "3", "--local", "--quiet"]


@pytest.fixture
def stylize(engine: StyleTransfer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Run ``neural-style stylize CONTENT STYLE ... ARGS`` in this process on the session's
    engine; returns (report, result pixels)."""
    monkeypatch.setattr(StyleTransfer, "load", classmethod(lambda cls, *a, **k: engine))
    for name, value in {**entry_point.QUIET_ENV, "KERAS_BACKEND": "tensorflow"}.items():
        monkeypatch.setenv(name, value)  # main() sets them; restored afterwards
    runs = iter(range(100))

    def run(*args: str, content: Path = CONTENT) -> tuple[dict, np.ndarray]:
        n = next(runs)
        out, report = tmp_path / f"out{n}.png", tmp_path / f"r{n}.json"
        argv = ["stylize", str(content), str(STYLE), "-o", str(out), "--report", str(report)]
        assert entry_point.main([*argv, *FAST, *args]) == 0
        with Image.open(out) as im:
            return json.loads(report.read_text()), np.asarray(im).astype(int)

    return run


def test_init_image_changes_the_start(stylize, tmp_path: Path):  # type: ignore[no-untyped-def]
    plain, plain_px = stylize()
    # A different picture at another size (64 px for a 128 px content): resized to fit.
    wave = DATA / "great_wave_64.png"
    started, started_px = stylize("--init", str(wave))
    assert plain["iterations"][0]["content"] == 0.0  # the default starts from the content
    assert started["iterations"][0]["content"] > 0.0  # this one from the wave
    assert np.abs(started_px - plain_px).max() > 10
    assert started["init_image"] == str(wave.resolve()) and "init_image" not in plain
    assert started["params"]["init"] == "content"  # the mode is untouched
    # Starting from a copy of the content is the default run.
    copy = tmp_path / "copy.png"
    copy.write_bytes(CONTENT.read_bytes())
    same, same_px = stylize("--init", str(copy))
    for a, b in zip(same["iterations"], plain["iterations"], strict=True):
        assert a["total"] == pytest.approx(b["total"], rel=1e-3, abs=1e-6)
    assert np.abs(same_px - plain_px).max() <= 2


def test_init_modes_are_still_parameters():
    parser = _stylize_parser()

    def parse(*argv: str):  # type: ignore[no-untyped-def]
        return parser.parse_args(["stylize", "c", "s", "-o", "o", *argv])

    assert job_options.params_from_args(parse("--init", "noise")).init.value == "noise"
    assert job_options.init_image_path(parse("--init", "noise")) is None
    assert job_options.init_image_path(parse("--init", "./noise")) == "./noise"
    image_args = parse("--init", "earlier.png", "--preset", "none")
    assert job_options.init_image_path(image_args) == "earlier.png"
    assert job_options.params_from_args(image_args).init.value == "content"


@pytest.mark.parametrize(
    ("init", "message"),
    [("nosie", "--init nosie: no such image file"), ("notes.png", "not an image")],
)
def test_an_unreadable_init_is_a_clear_error(init: str, message: str, tmp_path: Path):
    (tmp_path / "notes.png").write_text("not an image")
    out = tmp_path / "out.png"
    proc = run_cli(
        "stylize", str(CONTENT), str(STYLE), "-o", str(out), "--init", init, *FAST,
        tmp_path=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()
