"""``neural-style bench``: its flags, and the report of seconds per step next to the VGG floor.

The measuring itself is daemon/engine/bench.py.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import sys
from pathlib import Path

from neural_style.daemon.engine.bench import (
    at_size,
    ladder_vs_single,
    precisions_to_time,
    say,
    step_and_floor_seconds,
    time_presets,
)
from neural_style.shared import limits

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
BENCH_DOC = "``neural-style bench``: seconds per step of the engine next to the VGG floor."


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like 256,512") from None
    lo, hi = limits.MIN_WORK_SIDE, limits.MAX_WORK_SIDE
    if not sizes or any(s < lo or s > hi for s in sizes):
        raise argparse.ArgumentTypeError(f"sizes must lie in [{lo}, {hi}]")
    return sizes


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="measure seconds per step against the VGG floor",
        description=BENCH_DOC,
    )
    p.add_argument("--sizes", type=_sizes, default=[256, 512], help="long sides, e.g. 256,512")
    p.add_argument("--steps", type=int, default=10, help="timed steps per size (median)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--optimizers", default="adam", help="adam,lbfgs")
    p.add_argument(
        "--presets",
        default="balanced",
        help="presets to time against the tutorial baseline (comma list; '' = none)",
    )
    p.add_argument(
        "--preset-size",
        type=int,
        default=512,
        help="long side the presets and the baseline run at (default 512)",
    )
    p.add_argument(
        "--baseline-steps",
        type=int,
        default=1000,
        help="steps of the tutorial's Adam loop whose final loss is the target "
        "(default 1000, as the tutorial)",
    )
    p.add_argument(
        "--ladder",
        type=_sizes,
        default=None,
        help="also compare this coarse-to-fine ladder (e.g. 128,256,512) with a single-scale "
        "run at its last size given the same wall time",
    )
    p.add_argument("--ladder-iterations", type=int, default=90, help="steps of the ladder run")
    p.add_argument("--content", type=Path, default=SAMPLES / "chelsea.jpg", help="content photo")
    p.add_argument("--style", type=Path, default=SAMPLES / "starry_night.jpg", help="style image")
    p.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="folder for the tutorial baseline's result, reused for the same pair, size, steps "
        "and weights file (default: the user cache folder; '' = no cache)",
    )
    p.add_argument(
        "--pictures",
        type=Path,
        default=None,
        help="write the tutorial's and every preset's result here as PNG, to look at",
    )
    p.add_argument("--weights", help="VGG-19 weights (as for stylize)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from neural_style.daemon.engine import StyleTransfer, images
    from neural_style.daemon.engine.weights import SYNTHETIC_WARNING

    engine = StyleTransfer.load(args.weights)
    if engine.weights.synthetic:
        print(
            SYNTHETIC_WARNING + " (timings are the same as with the real weights)", file=sys.stderr
        )
    content = images.load_image(args.content, "content image")
    style = images.load_image(args.style, "style image")
    precisions = precisions_to_time()
    rows = []
    for size in args.sizes:
        big = at_size(content, size)
        work = (big.shape[1], big.shape[0])
        for precision, optimizer in itertools.product(precisions, args.optimizers.split(",")):
            step, floor = step_and_floor_seconds(
                engine, big, style, size, optimizer, args.steps, args.warmup, precision
            )
            rows.append(
                {
                    "size": size,
                    "width": work[0],
                    "height": work[1],
                    "precision": precision,
                    "optimizer": optimizer,
                    "step_s": round(step, 4),
                    "floor_s": round(floor, 4),
                    "ratio": round(step / floor, 3),
                }
            )
            say(
                args,
                f"{size:>5} px ({work[0]}x{work[1]}) {precision} {optimizer:<6} "
                f"step {step:.3f} s  floor {floor:.3f} s  ratio {step / floor:.3f}",
            )
    presets = [name for name in args.presets.split(",") if name.strip()]
    tutorial, preset_rows = (
        time_presets(engine, content, style, presets, args) if presets else (None, [])
    )
    ladder = ladder_vs_single(engine, content, style, args) if args.ladder else None
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    report = {
        "synthetic": engine.weights.synthetic,
        "device": engine.device,
        "peak_rss_mb": round(peak_mb, 1),
        "sizes": rows,
        "content": args.content.name,
        "style": args.style.name,
        **({"tutorial": tutorial} if tutorial else {}),
        "presets": preset_rows,
        **({"ladder": ladder} if ladder else {}),
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"device {engine.device}; peak RSS {peak_mb:.0f} MB"
            + ("; synthetic weights" if engine.weights.synthetic else "")
        )
    return 0
