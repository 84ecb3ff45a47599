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
    args = ap.parse_args()
    args.json = True  # progress on stderr

    from neural_style.daemon import images, quality
    from neural_style.daemon.bench import _at_size, _say, baseline, fp32_loss
    from neural_style.daemon.engine import StyleTransfer
    from neural_style.daemon.params import StyleParams

    engine = StyleTransfer.load(args.weights)
    meter = quality.TextureMeter(engine._conv_weights)
    rows: list[list[tuple[np.ndarray, str]]] = []
    report: list[dict[str, object]] = []
    for content_name, style_name in PAIRS[: args.pairs]:
        content = images.to_float(
            _at_size(images.load_image(DATA / "content" / content_name), args.size)
        )
        style = images.load_image(DATA / "styles" / style_name)
        style_rgb = images.split_alpha(images.to_float(style))[0]
        base = baseline(engine, content, style, args.size, args)
        cells = [(content, content_name), (style_rgb, style_name)]
        entry: dict[str, object] = {"content": content_name, "style": style_name}
        runs = [("tutorial", base["image"], base["time_s"])]
        for name in PRESETS:
            params = StyleParams.from_dict({"preset": name, "size": args.size})
            run = engine.stylize(content, [style], params)
            runs.append((name, np.clip(run.image, 0.0, 1.0), run.elapsed))
        for name, image, took in runs:
            loss = fp32_loss(engine, image, content, style)
            q = quality.assess(image, content, style_rgb, meter).to_dict()
            entry[name] = {"time_s": round(took, 1), "fp32_loss": loss, "quality": q}
            label = f"{name} {took:.0f} s, loss {loss / 1e6:.2f}M"
            cells.append((image, label))
            _say(args, f"{content_name} + {style_name}: {label} {q}")
        rows.append(cells)
        report.append(entry)
    sheet = _sheet(rows, f"Trained STAND-IN weights (HED VGG-16 calibrated), not ImageNet "
                   f"VGG-19; {args.size} px, 2-core CPU")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))
    return 0


def _fit(image: np.ndarray) -> Image.Image:
    pil = Image.fromarray((np.clip(image[..., :3], 0, 1) * 255 + 0.5).astype(np.uint8))
    pil.thumbnail((CELL, CELL), Image.Resampling.LANCZOS)
    return pil


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
