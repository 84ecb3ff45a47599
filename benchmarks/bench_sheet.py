"""Contact sheet of one ``neural-style bench --json --pictures DIR`` run (docs/bench-512.png).

    .venv/bin/neural-style bench --json ... --pictures /tmp/pics > /tmp/bench.json
    .venv/bin/python benchmarks/bench_sheet.py /tmp/bench.json /tmp/pics \
        --content ../shared/data/content/tubingen.jpg \
        --style ../shared/data/styles/starry_night.jpg --out docs/bench-512.png

Cells: content, style, the tutorial loop's result, then each preset in the precision
``auto`` picked (the one a user gets), each labelled with its wall time, ratio to the
tutorial's time and fp32 loss. The title says the weights are the stand-in whenever the
report says ``synthetic``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

CELL_WIDTH = 512
LABEL = 24
COLUMNS = 3


def cells(report: dict[str, Any], pictures: Path) -> list[tuple[Path, str]]:
    """(picture, label) for the tutorial and every preset row ``auto`` chose."""
    tutorial = report["tutorial"]
    out = [
        (
            pictures / "tutorial.png",
            f"tutorial {tutorial['steps']} fp32 steps, {tutorial['time_s']:.0f} s, "
            f"{tutorial['final_loss'] / 1e6:.2f}M",
        )
    ]
    for row in report["presets"]:
        if not row["auto"]:
            continue
        out.append(
            (
                pictures / f"{row['name']}-{row['precision']}.png",
                f"{row['name']} ({row['precision']}) {row['time_s']:.0f} s "
                f"({row['ratio']:.3f}), {row['final_loss'] / 1e6:.2f}M",
            )
        )
    return out


def sheet(entries: Sequence[tuple[Image.Image, str]], title: str) -> Image.Image:
    """The cells in rows of COLUMNS, each scaled to CELL_WIDTH wide, a label under each."""
    scaled = [
        (im.convert("RGB").resize((CELL_WIDTH, round(im.height * CELL_WIDTH / im.width))), text)
        for im, text in entries
    ]
    cell_height = max(im.height for im, _ in scaled)
    rows = -(-len(scaled) // COLUMNS)
    out = Image.new("RGB", (COLUMNS * CELL_WIDTH, LABEL + rows * (cell_height + LABEL)), "white")
    draw = ImageDraw.Draw(out)
    draw.text((6, 6), title, fill="black")
    for i, (im, text) in enumerate(scaled):
        left, top = (i % COLUMNS) * CELL_WIDTH, LABEL + (i // COLUMNS) * (cell_height + LABEL)
        out.paste(im, (left, top))
        draw.text((left + 4, top + cell_height + 5), text, fill="black")
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("report", type=Path, help="the bench's --json output")
    ap.add_argument("pictures", type=Path, help="the bench's --pictures folder")
    ap.add_argument("--content", type=Path, required=True)
    ap.add_argument("--style", type=Path, required=True)
    ap.add_argument("--machine", default="", help="e.g. '2-core Zen 4 CPU'")
    ap.add_argument("--out", type=Path, default=Path("docs/bench-512.png"))
    args = ap.parse_args()
    report = json.loads(args.report.read_text())
    weights = (
        "Trained STAND-IN weights (HED VGG-16 calibrated), not ImageNet VGG-19"
        if report["synthetic"]
        else "ImageNet VGG-19"
    )
    size = report["tutorial"]["size"]
    machine = f", {args.machine}" if args.machine else ""
    title = f"{weights}; {size} px{machine}; presets in the precision auto picks"
    entries: list[tuple[Image.Image, str]] = [
        (Image.open(args.content), "content"),
        (Image.open(args.style), "style"),
    ]
    entries += [(Image.open(path), text) for path, text in cells(report, args.pictures)]
    sheet(entries, title).save(args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
