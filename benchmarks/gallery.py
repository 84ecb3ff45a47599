"""Gallery of the presets at real size, on the trained stand-in network.

    .venv/bin/neural-style synth-weights --trained-standin /tmp/standin.h5
    .venv/bin/python benchmarks/gallery.py --weights /tmp/standin.h5 --size 512 \
        --presets fast,balanced --out docs/gallery-512.png
    .venv/bin/python benchmarks/gallery.py --weights /tmp/standin.h5 --size 1024 --pairs 1 \
        --presets fast,balanced --out docs/gallery-1024.png

Rows: content/style pairs from ../shared/data; columns: content, style, then each preset at
``--size`` (optionally the tutorial loop's 1000 fp32 steps first, ``--baseline``). Every
tile is shown at the size it was computed at (long side = ``--size``), never scaled up, and
labelled with its preset, its time and the machine. Times are the process's CPU time divided
by the cores TensorFlow used, which is what the run takes alone on that machine even when
other work shares the CPU while the gallery is drawn; the wall time is in OUT.json too.

Runs are cached (keyed by pixels, parameters and weights), so an interrupted gallery resumes
and a last call only draws. README's strip (docs/gallery-strip.png) is cut from the 512 px
sheet by benchmarks/gallery_strip.py. The sheet says that it was made with the stand-in, not the
ImageNet weights, when the weights file is not the ImageNet one. Also writes OUT.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PAIRS = (
    ("tubingen.jpg", "starry_night.jpg"),
    ("chelsea.jpg", "the_scream.jpg"),
    ("astronaut.jpg", "great_wave.jpg"),
    ("coffee.jpg", "composition_vii.jpg"),
    ("flower.jpg", "grande_jatte_study.jpg"),
    ("china.jpg", "shipwreck.jpg"),
)
LABEL = 44
GAP = 8


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--size", type=int, default=512, help="working long side of every run")
    ap.add_argument("--presets", default="fast,balanced", help="comma-separated preset names")
    ap.add_argument("--baseline", action="store_true", help="add the tutorial's 1000 steps")
    ap.add_argument("--baseline-steps", type=int, default=1000)
    ap.add_argument("--pairs", default=str(len(PAIRS)), help="first N pairs, or indices 0,2,5")
    ap.add_argument("--out", type=Path, default=Path("docs/gallery-512.png"))
    ap.add_argument("--strip", type=Path, default=None, help="also a one-row strip (README)")
    ap.add_argument(
        "--strip-pairs", default="0,1,2", help="pairs whose last preset the strip shows"
    )
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--compute-only", action="store_true", help="fill the cache, draw nothing")
    args = ap.parse_args()
    args.json = True  # progress on stderr

    from neural_style.daemon.engine import StyleTransfer, images, quality
    from neural_style.daemon.engine.bench import at_size, baseline, fp32_loss, say

    presets = [p for p in args.presets.split(",") if p]
    indices = _indices(args.pairs)
    engine = StyleTransfer.load(args.weights)
    meter = quality.TextureMeter(engine._conv_weights)
    machine = machine_name()
    kind = "synthetic" if engine.weights.synthetic else "imagenet"
    inputs = {}
    for index in indices:
        content_name, style_name = PAIRS[index]
        content = images.to_float(
            at_size(images.load_image(DATA / "content" / content_name), args.size)
        )
        style = images.load_image(DATA / "styles" / style_name)
        inputs[index] = (content, style)
    # every pair's first preset before any pair's second: a partial cache already draws
    runs: dict[tuple[int, str], tuple[np.ndarray, dict[str, float]]] = {}
    for name in presets:
        for index in indices:
            content, style = inputs[index]
            image, times = _preset_run(engine, content, style, name, args)
            runs[index, name] = (image, times)
            say(args, f"{PAIRS[index]} {name}: {times}")
    if args.compute_only:
        return 0
    rows: list[list[tuple[np.ndarray, str]]] = []
    report: list[dict[str, Any]] = []
    for index in indices:
        content_name, style_name = PAIRS[index]
        content, style = inputs[index]
        style_rgb = images.split_alpha(images.to_float(style))[0]
        cells = [
            (content, f"content: {Path(content_name).stem}"),
            (_fit_height(style_rgb, content.shape[0]), f"style: {Path(style_name).stem}"),
        ]
        entry: dict[str, Any] = {"content": content_name, "style": style_name}
        if args.baseline:
            base = baseline(engine, content, style, args.size, args)
            cells.append((base["image"], f"tutorial 1000 Adam, {base['time_s']:.0f} s wall"))
            entry["tutorial"] = {"wall_s": round(base["time_s"], 1)}
        for name in presets:
            image, times = runs[index, name]
            loss = fp32_loss(engine, image, content, style)
            q = quality.assess(image, content, style_rgb, meter).to_dict()
            entry[name] = {**times, "fp32_loss": loss, "quality": q}
            cells.append((image, f"{name}: {_clock(times['alone_s'])} on {machine}"))
        rows.append(cells)
        report.append(entry)
    stand_in = (
        ""
        if kind == "imagenet"
        else "STAND-IN WEIGHTS (HED VGG-16, calibrated), not ImageNet VGG-19 — "
    )
    title = f"{stand_in}Neural Style for GIMP, {args.size} px, {machine}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    _sheet(rows, title).save(args.out, optimize=True)
    if args.strip is not None:
        picks = [indices.index(i) for i in _indices(args.strip_pairs) if i in indices]
        strip = [[rows[r][0], rows[r][-1]] for r in picks]
        cells = [cell for pair in strip for cell in pair]
        _sheet([cells], f"{stand_in}{presets[-1]}, {args.size} px").save(args.strip, optimize=True)
    doc = {"size": args.size, "machine": machine, "weights": kind, "pairs": report}
    args.out.with_suffix(".json").write_text(json.dumps(doc, indent=1))
    print(json.dumps(doc))
    return 0


def machine_name() -> str:
    """'2-core AMD EPYC (AVX512_BF16)': cores, model and the bf16 feature that decides the
    precision `auto` picks."""
    model, flags = "CPU", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "CPU":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    feature = (
        "AMX-BF16"
        if "amx_bf16" in flags
        else "AVX512_BF16"
        if "avx512_bf16" in flags
        else "fp32 only"
    )
    return f"{os.cpu_count()}-core {model} ({feature})"


def _indices(spec: str) -> list[int]:
    if "," in spec:
        return [int(i) for i in spec.split(",") if i]
    return list(range(min(int(spec), len(PAIRS))))


def _clock(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def _preset_run(
    engine: Any, content: np.ndarray, style: np.ndarray, name: str, args: argparse.Namespace
) -> tuple[np.ndarray, dict[str, float]]:
    """(result, times) of a preset at ``--size``, cached by pixels, parameters and weights.
    times: wall_s, cpu_s and alone_s (CPU time over the threads TensorFlow ran)."""
    import tensorflow as tf

    from neural_style.daemon.engine.bench import _cache_folder
    from neural_style.daemon.engine.params import StyleParams

    params = StyleParams.from_dict({"preset": name, "size": args.size})
    key = hashlib.sha256(content.tobytes() + style.tobytes())
    key.update(json.dumps([params.to_dict(), engine.weights.sha256]).encode())
    folder = _cache_folder(args)
    stem = folder / f"gallery-{key.hexdigest()[:24]}" if folder else None
    if stem is not None and stem.with_suffix(".json").is_file():
        return np.load(stem.with_suffix(".npy")), json.loads(stem.with_suffix(".json").read_text())
    threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count() or 1
    cpu0, wall0 = time.process_time(), time.perf_counter()
    run = engine.stylize(content, [style], params)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    times = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "alone_s": round(cpu / threads, 1)}
    image = np.clip(run.image, 0.0, 1.0).astype(np.float32)
    if stem is not None:
        stem.parent.mkdir(parents=True, exist_ok=True)
        np.save(stem.with_suffix(".npy"), image)
        stem.with_suffix(".json").write_text(json.dumps(times))
    return image, times


def _pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(image[..., :3], 0, 1) * 255 + 0.5).astype(np.uint8))


def _fit_height(image: np.ndarray, height: int) -> np.ndarray:
    """The style image at the row's height (downscaled with Lanczos; styles are large)."""
    pil = _pil(image)
    width = max(1, round(pil.width * height / pil.height))
    return np.asarray(pil.resize((width, height), Image.Resampling.LANCZOS)) / 255.0


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    for path in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",):
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size)


def _sheet(rows: list[list[tuple[np.ndarray, str]]], title: str) -> Image.Image:
    """Tiles at their own pixel size, left to right, one row per pair, label under each."""
    tiles = [[(_pil(image), label) for image, label in row] for row in rows]
    width = max(sum(t.width + GAP for t, _ in row) for row in tiles) + GAP
    heights = [max(t.height for t, _ in row) for row in tiles]
    sheet = Image.new("RGB", (width, LABEL + sum(h + LABEL for h in heights)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((GAP, 10), title, fill="black", font=_font(20))
    top = LABEL
    small = _font(16)
    for row, height in zip(tiles, heights, strict=True):
        left = GAP
        for tile, label in row:
            sheet.paste(tile, (left, top))
            draw.text((left + 2, top + height + 8), label, fill="black", font=small)
            left += tile.width + GAP
        top += height + LABEL
    return sheet


if __name__ == "__main__":
    sys.exit(main())
