"""README's gallery strip: chosen tiles of docs/gallery-512.png, cut out at their real size.

    .venv/bin/python benchmarks/gallery_strip.py --pairs 0,1,3 --preset balanced \
        --out docs/gallery-strip.png

The sheet and its JSON come from ``benchmarks/gallery.py`` (trained stand-in, 512 px). Its
layout (tiles at their computed size, ``GAP`` px apart, a ``LABEL`` px band under each row
and above the first) is recomputed from the sample images, so nothing is recomputed and no
pixel is rescaled: each tile is copied as it is. Labels: pair, preset and the time the
gallery measured; the title says the weights were the stand-in when they were.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gallery import DATA, GAP, LABEL, _clock, _font


def _fit_long_side(width: int, height: int, long_side: int) -> tuple[int, int]:
    scale = long_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sheet", type=Path, default=Path("docs/gallery-512.png"))
    ap.add_argument("--pairs", default="0,1,3", help="indices of the gallery's pairs")
    ap.add_argument("--preset", default="balanced")
    ap.add_argument("--out", type=Path, default=Path("docs/gallery-strip.png"))
    args = ap.parse_args()

    doc = json.loads(args.sheet.with_suffix(".json").read_text())
    size = int(doc["size"])
    presets = [k for k in doc["pairs"][0] if k not in ("content", "style", "tutorial")]
    column = 2 + (1 if "tutorial" in doc["pairs"][0] else 0) + presets.index(args.preset)
    sheet = Image.open(args.sheet).convert("RGB")
    top = LABEL
    boxes: dict[int, tuple[int, int, int, int]] = {}
    for index, entry in enumerate(doc["pairs"]):
        with Image.open(DATA / "content" / entry["content"]) as content:
            width, height = _fit_long_side(content.width, content.height, size)
        with Image.open(DATA / "styles" / entry["style"]) as style:
            style_width = max(1, round(style.width * height / style.height))
        widths = [width, style_width] + [width] * (column - 1)
        left = GAP + sum(w + GAP for w in widths[:column])
        boxes[index] = (left, top, left + width, top + height)
        top += height + LABEL

    picks = [int(i) for i in args.pairs.split(",") if i]
    tiles = [sheet.crop(boxes[i]) for i in picks]
    width = sum(t.width + GAP for t in tiles) + GAP
    height = max(t.height for t in tiles)
    strip = Image.new("RGB", (width, LABEL + height + LABEL), "white")
    draw = ImageDraw.Draw(strip)
    stand_in = (
        "" if doc["weights"] == "imagenet" else "trained stand-in weights, not ImageNet VGG-19 · "
    )
    title = f"{stand_in}{args.preset}, {size} px, times on a {doc['machine']}"
    draw.text((GAP, 12), title, fill="black", font=_font(18))
    left = GAP
    small = _font(16)
    for index, tile in zip(picks, tiles, strict=True):
        entry = doc["pairs"][index]
        strip.paste(tile, (left, LABEL))
        name = f"{Path(entry['content']).stem} + {Path(entry['style']).stem}"
        label = f"{name}: {_clock(entry[args.preset]['alone_s'])}"
        draw.text((left + 2, LABEL + height + 8), label, fill="black", font=small)
        left += tile.width + GAP
    args.out.parent.mkdir(parents=True, exist_ok=True)
    strip.save(args.out, optimize=True)
    print(args.out, strip.size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
