"""``neural-style stylize`` end to end in a subprocess: a real run, and every bad input
ending with exit code 2, a specific message, no traceback and no output file."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neural_style.daemon.engine.params import PRESETS, StyleParams

DATA = Path(__file__).resolve().parent / "data"
CONTENT = DATA / "chelsea_128.png"
STYLE = DATA / "starry_night_128.png"


def run_cli(*args: str, tmp_path: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path), TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("NEURAL_STYLE_WEIGHTS", None)
    env.pop("NEURAL_STYLE_CONNECTION_FILE", None)
    return subprocess.run(
        [sys.executable, "-m", "neural_style.daemon.cli", *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp_path,
    )  # fmt: skip


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A syntactically valid PNG whose header claims width x height (no real pixels)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )  # fmt: skip
    return path


def test_stylize_end_to_end_with_report(synthetic_weights: Path, tmp_path: Path) -> None:
    out, report = tmp_path / "out.png", tmp_path / "r.json"
    proc = run_cli(
        "stylize", str(CONTENT), str(STYLE), "-o", str(out), "--size", "96",
        "--iterations", "30", "--weights", str(synthetic_weights), "--report", str(report),
        "--local", tmp_path=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "not art" in proc.stderr  # synthetic weights are announced
    with Image.open(out) as im:
        assert im.size == (128, 128)  # --keep-size: back to the content's size
    r = json.loads(report.read_text())
    assert r["synthetic"] is True and r["weights"]["synthetic"] is True
    assert len(r["weights"]["sha256"]) == 64
    assert r["weights"]["path"] == str(synthetic_weights.resolve())
    assert r["device"].startswith(("CPU", "GPU"))
    assert r["params"]["size"] == 96 and r["params"]["iterations"] == 30
    its = r["iterations"]
    assert [i["step"] for i in its] == list(range(1, 31))
    assert set(its[0]) >= {"step", "total", "content", "style", "tv", "time_s"}
    assert its[-1]["total"] < 0.7 * its[0]["total"]
    assert r["total_time_s"] > 0
    assert r["output"] == {"path": str(out.resolve()), "width": 128, "height": 128}
    assert r["work_size"] == {"width": 96, "height": 96}
    # the default preset's `auto`, reported as what it resolved to here (bf16 on CPUs with
    # bf16 kernels, for L-BFGS too)
    from neural_style.daemon.engine import resolve_precision
    from neural_style.daemon.engine.params import Precision

    assert r["precision"] == resolve_precision(Precision.AUTO).value


def test_no_keep_size_writes_the_working_size(synthetic_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "small.jpg"
    proc = run_cli(
        "stylize", str(CONTENT), str(STYLE), "-o", str(out), "--size", "48", "--iterations", "2",
        "--no-keep-size", "--weights", str(synthetic_weights), "--local", "--quiet",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as im:
        assert im.size == (48, 48) and im.format == "JPEG"


def test_controls_from_the_command_line(synthetic_weights: Path, tmp_path: Path) -> None:
    mask = tmp_path / "mask.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 128).astype(np.uint8), (128, 1))).save(mask)
    out, report = tmp_path / "ctl.png", tmp_path / "ctl.json"
    proc = run_cli(
        "stylize", str(CONTENT), str(STYLE), str(DATA / "great_wave_64.png"), "-o", str(out),
        "--preset", "fast", "--scales", "32,64", "--iterations", "4", "--preserve-color",
        "--adam-beta1", "0.8",
        "--mask", str(mask), "--style-blend", "0.7,0.3", "--style-scale", "1.5",
        "--weights", str(synthetic_weights), "--report", str(report), "--local", "--quiet",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    r = json.loads(report.read_text())
    p = r["params"]
    assert (p["optimizer"], p["precision"]) == ("lbfgs", "auto")  # the preset's
    assert p["adam_beta1"] == 0.8  # a flag is kept (unused by L-BFGS)
    assert (p["size"], p["scales"], p["iterations"]) == (64, [32, 64], 4)  # flags win
    assert p["preserve_color"] == "luminance" and p["style_blend"] == [0.7, 0.3]
    assert [i["scale"] for i in r["iterations"]] == [32, 32, 64, 64]
    assert r["peak_rss_mb"] > 100
    with Image.open(out) as im:
        result = np.asarray(im.convert("RGB")).astype(int)
    with Image.open(CONTENT) as im:
        original = np.asarray(im.convert("RGB")).astype(int)
    assert np.abs(result[:, :2] - original[:, :2]).max() <= 1  # mask is black there


def _bad_cases(tmp: Path) -> list[tuple[list[str], str]]:
    text = tmp / "notes.png"
    text.write_text("not an image")
    empty = tmp / "empty.png"
    empty.write_bytes(b"")
    zero = png_header_only(tmp / "zero.png", 0, 10)
    huge = png_header_only(tmp / "huge.png", 20000, 20000)
    thin = tmp / "thin.png"
    Image.new("RGB", (64, 15), (120, 80, 40)).save(thin)
    thin_style = tmp / "thin_style.png"
    Image.new("RGB", (400, 6), (20, 80, 140)).save(thin_style)
    ok = [str(CONTENT), str(STYLE)]
    return [
        ([str(tmp / "missing.png"), str(STYLE)], "does not exist"),
        ([str(CONTENT), str(tmp / "missing_style.png")], "does not exist"),
        ([str(text), str(STYLE)], "not an image"),
        ([str(empty), str(STYLE)], "not an image"),
        ([str(zero), str(STYLE)], "zero.png"),
        ([str(huge), str(STYLE)], "the limit is"),
        ([str(tmp), str(STYLE)], "not a file"),
        ([str(thin), str(STYLE)], "at least 16 pixels"),
        ([str(CONTENT), str(thin_style)], "at least 16 pixels"),
        ([*ok, "-o", str(tmp / "no_such_dir" / "out.png")], "does not exist"),
        ([*ok, "-o", str(tmp / "out.xyz")], "unknown image type"),
        ([*ok, "--size", "5"], "Invalid parameter size"),
        ([*ok, "--iterations", "0"], "Invalid parameter iterations"),
        ([*ok, "--style-weight", "-1"], "Invalid parameter style_weight"),
        ([*ok, "--content-weight", "nan"], "Invalid parameter content_weight"),
        ([*ok, "--learning-rate", "1e9"], "Invalid parameter learning_rate"),
        ([*ok, "--optimizer", "sgd"], "invalid choice"),
        ([*ok, "--iterations", "many"], "not an integer"),
        ([*ok, "--style-blend", "0.5,0.5"], "style_blend has 2 weights"),
        ([*ok, "--weights", str(tmp / "missing.h5")], "fetch-weights"),
        ([*ok, "--scales", "512,256"], "Invalid parameter scales"),
        ([*ok, "--scales", "big"], "not 'auto' or a list"),
        ([*ok, "--style-scale", "0"], "Invalid parameter style_scale"),
        ([*ok, "--preset", "ultra"], "invalid choice"),
        ([*ok, "--preserve-color", "sepia"], "invalid choice"),
        ([*ok, "--adam-beta1", "1"], "Invalid parameter adam_beta1"),
        ([*ok, "--lr-schedule", "linear"], "invalid choice"),
        ([*ok, "--mask", str(tmp / "no_mask.png")], "does not exist"),
        ([*ok, "--weights", str(text)], "HDF5 could not open"),
    ]


def test_bad_inputs_exit_2_with_a_message_and_no_output(
    synthetic_weights: Path, tmp_path: Path
) -> None:
    failures = []
    for args, message in _bad_cases(tmp_path):
        out = tmp_path / "out.png"
        cmd = ["stylize", *args]
        if "-o" not in args:
            cmd += ["-o", str(out)]
        if "--weights" not in args:
            cmd += ["--weights", str(synthetic_weights)]
        proc = run_cli(*cmd, "--local", tmp_path=tmp_path)
        problems = []
        if proc.returncode != 2:
            problems.append(f"exit {proc.returncode}")
        if message not in proc.stderr:
            problems.append(f"message {message!r} missing")
        if "Traceback" in proc.stderr:
            problems.append("traceback")
        if out.exists() or list(tmp_path.glob("*.xyz")):
            problems.append("an output file was written")
        if problems:
            failures.append(f"{args}: {', '.join(problems)}\n{proc.stderr[-600:]}")
    assert not failures, "\n\n".join(failures)


def test_synth_and_check_weights_commands(tmp_path: Path) -> None:
    path = tmp_path / "w.h5"
    proc = run_cli("synth-weights", str(path), "--seed", "1", tmp_path=tmp_path)
    assert proc.returncode == 0 and path.stat().st_size > 70_000_000
    proc = run_cli("check-weights", "--weights", str(path), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["synthetic"] is True


@pytest.mark.parametrize("argv", [["--version"], ["stylize", "--help"]])
def test_help_and_version(argv: list[str], tmp_path: Path) -> None:
    proc = run_cli(*argv, tmp_path=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip()


def _within_rounding(
    ratio: float, num: float, den: float, decimals: int = 3, ratio_decimals: int = 4
) -> bool:
    """The printed ratio lies where ``num / den`` can be, given that the ratio was computed
    before the two values were rounded to ``decimals`` (a 0.26 s baseline rounded to 10 ms
    once moved a ratio by 1 %) and was itself rounded to ``ratio_decimals``."""
    half, half_ratio = 0.5 * 10.0**-decimals, 0.5 * 10.0**-ratio_decimals
    low, high = (num - half) / (den + half), (num + half) / (den - half)
    return low - half_ratio - 1e-9 <= ratio <= high + half_ratio + 1e-9


def test_bench_json_has_the_documented_fields(synthetic_weights: Path, tmp_path: Path) -> None:
    """A tiny ``bench --json`` run: the object docs/performance.md documents, on stdout alone
    (progress goes to stderr), with the synthetic flag set. Numbers are printed, not judged."""
    proc = run_cli(
        "bench", "--json", "--sizes", "64", "--steps", "2", "--warmup", "1",
        "--presets", "fast", "--preset-size", "64", "--baseline-steps", "15",
        "--ladder", "32,64", "--ladder-iterations", "6",
        "--weights", str(synthetic_weights), "--cache", str(tmp_path / "cache"),
        "--pictures", str(tmp_path / "pics"), tmp_path=tmp_path, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    tutorial = report["tutorial"]
    assert tutorial["cpu_s"] > 0
    pictures = {p.name for p in (tmp_path / "pics").glob("*.png")}
    assert pictures == {"tutorial.png"} | {f"fast-{p['precision']}.png" for p in report["presets"]}
    assert (tutorial["steps"], tutorial["precision"], tutorial["cached"]) == (15, "fp32", False)
    assert set(tutorial["quality"]) == {"structure", "texture", "color", "noise"}
    assert len(list((tmp_path / "cache").glob("baseline-*.npy"))) == 1  # kept for next time
    assert report["synthetic"] is True and report["device"].startswith(("CPU", "GPU"))
    assert report["peak_rss_mb"] > 100
    # one fp32 row per size and optimiser; a bf16 row too where the CPU has bf16 kernels
    (row,) = [r for r in report["sizes"] if r["precision"] == "fp32"]
    assert (row["size"], row["optimizer"]) == (64, "adam")
    assert {r["precision"] for r in report["sizes"]} <= {"fp32", "bf16"}
    for row in report["sizes"]:
        assert row["step_s"] > 0 and row["floor_s"] > 0
        assert _within_rounding(row["ratio"], row["step_s"], row["floor_s"], 4, 3)
    presets = report["presets"]
    assert [p["precision"] for p in presets][:1] == ["fp32"]  # fp32 first: the gap's reference
    assert sum(p["auto"] for p in presets) == 1  # exactly one row is the preset as it runs here
    for preset in presets:
        assert preset["name"] == "fast" and preset["size"] == 64
        assert isinstance(preset["reached"], bool) and preset["baseline_time_s"] > 0
        assert preset["reached"] == (preset["final_loss"] <= preset["target_loss"])
        assert _within_rounding(preset["ratio"], preset["time_s"], preset["baseline_time_s"])
        assert _within_rounding(preset["cpu_ratio"], preset["cpu_s"], tutorial["cpu_s"])
        steps = PRESETS["fast"]["iterations"]
        assert sum(preset["steps_per_scale"].values()) == steps  # the preset's steps, all run
        assert preset["target_loss"] == tutorial["final_loss"]
        assert -1.0 <= preset["quality"]["structure"] <= 1.0 and preset["quality"]["noise"] > 0
    assert presets[0]["gap_vs_fp32"] == 0.0
    for preset in presets[1:]:
        gap = preset["final_loss"] / presets[0]["final_loss"] - 1
        assert preset["gap_vs_fp32"] == pytest.approx(gap, abs=1e-4)
    assert report["ladder"]["scales"] == [32, 64]
    assert "synthetic" in proc.stderr


def test_bench_baseline_is_cached_per_pair_size_and_weights(engine, chelsea64, starry64, tmp_path):  # type: ignore[no-untyped-def]
    """The tutorial baseline (~30 min at 512 px) is computed once per pair, size, steps and
    weights file, then read back with the time it took."""
    import argparse

    from neural_style.daemon.engine.bench import baseline

    args = argparse.Namespace(baseline_steps=4, cache=tmp_path, json=True)
    first = baseline(engine, chelsea64, starry64, 48, args)
    again = baseline(engine, chelsea64, starry64, 48, args)
    assert (first["cached"], again["cached"]) == (False, True)
    assert again["loss"] == first["loss"] and again["time_s"] == first["time_s"]
    np.testing.assert_array_equal(again["image"], first["image"])
    other = baseline(engine, chelsea64, starry64, 40, args)  # another size: another entry
    assert other["cached"] is False and len(list(tmp_path.glob("baseline-*.json"))) == 2


def _stylize_parser():  # type: ignore[no-untyped-def]
    import argparse

    from neural_style.daemon.cli import stylize

    parser = argparse.ArgumentParser()
    stylize.add_commands(parser.add_subparsers())
    return parser


def test_stylize_flags_come_from_the_parameter_schema() -> None:
    from neural_style.daemon.cli import job_options as cli
    from neural_style.shared import schema

    parser = _stylize_parser()
    stylize = parser._subparsers._group_actions[0].choices["stylize"]  # type: ignore[union-attr]
    by_dest = {a.dest: a for a in stylize._actions}
    for field in schema.FIELDS:
        if field.name in cli.NOT_FLAGS:
            assert field.name not in by_dest
            continue
        action = by_dest[field.name]
        assert action.option_strings[0] == "--" + field.name.replace("_", "-")
        assert field.help in (action.help or "")
        if field.default is not None:
            assert f"(default {cli._show_default(field.default)})" in (action.help or "")
        if field.name == cli.INIT_FLAG:  # a choice or an image file (test_cli_init.py)
            assert action.choices is None and all(c in str(action.metavar) for c in field.choices)
        elif field.choices:
            assert list(action.choices or ()) == list(field.choices)

    def params(*argv: str):  # type: ignore[no-untyped-def]
        return cli.params_from_args(parser.parse_args(["stylize", "c", "s", "-o", "o", *argv]))

    assert params() == StyleParams.from_dict({"preset": "balanced"})
    assert params("--preset", "none") == StyleParams()
    assert params("--preset", "fast", "--size", "256").size == 256
    assert params("--preserve-color").preserve_color.value == "luminance"
    assert params("--scales", "64,128", "--preset", "none").size == 128
    assert params("--no-keep-size").keep_size is False
