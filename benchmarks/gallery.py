"""Contact sheet of the presets against the tutorial loop, on the trained stand-in.

    .venv/bin/neural-style synth-weights --trained-standin /tmp/standin.h5
    .venv/bin/python benchmarks/gallery.py --weights /tmp/standin.h5 --size 256 \
        --out docs/gallery.png

Rows: content/style pairs from ../shared/data; columns: content, style, the tutorial loop's
1000 fp32 steps, then each preset at the same working size, each labelled with its wall
time (and fp32 loss). The tutorial results are cached like the bench's baseline. The
sheet says that it was made with the stand-in, not the ImageNet weights. Also writes
OUT.json with every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PAIRS = (
    ("tubingen.jpg", "starry_night.jpg"),
    ("chelsea.jpg", "the_scream.jpg"),
    ("astronaut.jpg", "great_wave.jpg"),
    ("coffee.jpg", "composition_vii.jpg"),
    ("flower.jpg", "grande_jatte_study.jpg"),
    ("china.jpg", "shipwreck.jpg"),
)
PRESETS = ("fast", "balanced", "quality")
CELL = 256
LABEL = 30


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--size", type=int, default=256, help="working long side of every run")
    ap.add_argument("--baseline-steps", type=int, default=1000)
    ap.add_argument("--pairs", type=int, default=len(PAIRS), help="first N pairs")
    ap.add_argument("--out", type=Path, default=Path("docs/gallery.png"))
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--reverse", action="store_true", help="compute the last pair first")
    ap.add_argument(
        "--cached-only", action="store_true", help="draw only the pairs whose runs are all cached"
    )
    args = ap.parse_args()
    args.json = True  # progress on stderr

    from neural_style.daemon import images, quality
    from neural_style.daemon.bench import _at_size, _say, baseline, fp32_loss
    from neural_style.daemon.engine import StyleTransfer

    engine = StyleTransfer.load(args.weights)
    meter = quality.TextureMeter(engine._conv_weights)
    pairs = PAIRS[: args.pairs]
    rows: dict[int, list[tuple[np.ndarray, str]]] = {}
    report: dict[int, dict[str, object]] = {}
    # --reverse: compute the last pair first (a second process can fill the cache from the
    # front); the sheet keeps the listed order either way
    order = range(len(pairs) - 1, -1, -1) if args.reverse else range(len(pairs))
    for index in order:
        content_name, style_name = pairs[index]
        content = images.to_float(
            _at_size(images.load_image(DATA / "content" / content_name), args.size)
        )
        style = images.load_image(DATA / "styles" / style_name)
        style_rgb = images.split_alpha(images.to_float(style))[0]
        if args.cached_only and not _all_cached(engine, content, style, args):
            _say(args, f"{content_name} + {style_name}: not all cached, left out")
            continue
        base = baseline(engine, content, style, args.size, args)
        cells = [(content, content_name), (style_rgb, style_name)]
        entry: dict[str, object] = {"content": content_name, "style": style_name}
        runs = [("tutorial", base["image"], base["time_s"])]
        for name in PRESETS:
            image, took = _preset_run(engine, content, style, name, args)
            runs.append((name, image, took))
        cells_dir = args.out.with_suffix("")
        cells_dir.mkdir(parents=True, exist_ok=True)
        for name, image, took in runs:
            stem = f"{Path(content_name).stem}-{Path(style_name).stem}-{name}.png"
            _fit(image).save(cells_dir / stem)
            loss = fp32_loss(engine, image, content, style)
            q = quality.assess(image, content, style_rgb, meter).to_dict()
            entry[name] = {"time_s": round(took, 1), "fp32_loss": loss, "quality": q}
            label = f"{name} {took:.0f} s, loss {loss / 1e6:.2f}M"
            cells.append((image, label))
            _say(args, f"{content_name} + {style_name}: {label} {q}")
        rows[index] = cells
        report[index] = entry
    title = (
        f"Trained STAND-IN weights (HED VGG-16 calibrated), not ImageNet VGG-19; "
        f"{args.size} px, 2-core CPU"
    )
    sheet = _sheet([rows[i] for i in sorted(rows)], title)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    ordered = [report[i] for i in sorted(report)]
    args.out.with_suffix(".json").write_text(json.dumps(ordered, indent=1))
    print(json.dumps(ordered))
    return 0


def _all_cached(
    engine: object, content: np.ndarray, style: np.ndarray, args: argparse.Namespace
) -> bool:
    from neural_style.daemon.bench import baseline_stem

    stems = [baseline_stem(engine, content, style, args.size, args)]
    stems += [_preset_stem(engine, content, style, name, args) for name in PRESETS]
    return all(stem is not None and stem.with_suffix(".json").is_file() for stem in stems)


def _preset_stem(
    engine: object, content: np.ndarray, style: np.ndarray, name: str, args: argparse.Namespace
) -> Path | None:
    import hashlib

    from neural_style.daemon.bench import _cache_folder
    from neural_style.daemon.params import StyleParams

    params = StyleParams.from_dict({"preset": name, "size": args.size})
    key = hashlib.sha256(content.tobytes() + style.tobytes())
    key.update(json.dumps([params.to_dict(), engine.weights.sha256]).encode())  # type: ignore[attr-defined]
    folder = _cache_folder(args)
    return folder / f"preset-{key.hexdigest()[:24]}" if folder else None


def _preset_run(
    engine: object, content: np.ndarray, style: np.ndarray, name: str, args: argparse.Namespace
) -> tuple[np.ndarray, float]:
    """(result, seconds) of a preset at ``--size``, cached like the baseline (keyed by the
    pixels, the preset's parameters and the weights), so several processes can share the
    work and a last run only draws the sheet."""
    from neural_style.daemon.params import StyleParams

    params = StyleParams.from_dict({"preset": name, "size": args.size})
    stem = _preset_stem(engine, content, style, name, args)
    if stem is not None and stem.with_suffix(".json").is_file():
        took = json.loads(stem.with_suffix(".json").read_text())["time_s"]
        return np.load(stem.with_suffix(".npy")), float(took)
    run = engine.stylize(content, [style], params)  # type: ignore[attr-defined]
    image = np.clip(run.image, 0.0, 1.0).astype(np.float32)
    if stem is not None:
        stem.parent.mkdir(parents=True, exist_ok=True)
        np.save(stem.with_suffix(".npy"), image)
        stem.with_suffix(".json").write_text(json.dumps({"time_s": run.elapsed}))
    return image, float(run.elapsed)


def _fit(image: np.ndarray) -> Image.Image:
    """The image scaled (up or down) to fit a cell; results are small, so they are enlarged
    with nearest-neighbour sampling, which shows their pixels as they are."""
    pil = Image.fromarray((np.clip(image[..., :3], 0, 1) * 255 + 0.5).astype(np.uint8))
    scale = CELL / max(pil.size)
    size = (max(1, round(pil.width * scale)), max(1, round(pil.height * scale)))
    method = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS
    return pil.resize(size, method)


def _sheet(rows: list[list[tuple[np.ndarray, str]]], title: str) -> Image.Image:
    cols = max(len(r) for r in rows)
    sheet = Image.new("RGB", (cols * CELL, LABEL + len(rows) * (CELL + LABEL)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((6, 8), title, fill="black")
    for r, cells in enumerate(rows):
        top = LABEL + r * (CELL + LABEL)
        for c, (image, label) in enumerate(cells):
            pil = _fit(image)
            sheet.paste(pil, (c * CELL + (CELL - pil.width) // 2, top + (CELL - pil.height) // 2))
            draw.text((c * CELL + 4, top + CELL + 6), label, fill="black")
    return sheet


if __name__ == "__main__":
    sys.exit(main())
