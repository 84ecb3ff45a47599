"""Frames mode against independent frames on a camera pan with known motion.

A ``--size`` px window pans ``--step`` px per frame over a still (tubingen from the
workplace's photos, else the package's chelsea), ``--frames`` frames. Each frame is
stylized twice in this process with the same engine and preset: independently, and in
frames mode (from the previous stylized frame warped by optical flow, with the temporal
loss at each ``--temporal-weight``). Reported per mode: the temporal error (mean
|out_t - warp(out_{t-1})| over the reliable pixels, [0, 1] RGB; daemon/frames/flicker.py)
and its floor (the content frames' own), each frame's picture measures
(daemon/quality.py: structure, texture, color, noise), its evaluations (loss + gradient
evaluations, the engine's steps) and its time.

    nice -n 10 .venv/bin/python benchmarks/bench_frames.py --weights /tmp/standin.h5 \\
        --size 512 --frames 6 --preset fast --json docs/frames-bench.json \\
        --gif docs/frames-pan.gif

Judge pictures only with the trained stand-in (``neural-style synth-weights
--trained-standin``). Prints a table, then the JSON record.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return platform.processor()
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def still_path(name: str) -> Path:
    for cand in (SHARED / "content" / name, REPO / "daemon" / "samples" / name):
        if cand.is_file():
            return cand
    return REPO / "daemon" / "samples" / "chelsea.jpg"


def style_path(name: str) -> Path:
    for cand in (SHARED / "styles" / name, REPO / "daemon" / "samples" / name):
        if cand.is_file():
            return cand
    return REPO / "daemon" / "samples" / "starry_night.jpg"


def run_mode(
    engine: Any, seq: Any, style: Any, params: Any, meter: Any, weight: float | None
) -> dict[str, Any]:
    """One pass over the sequence: ``weight`` None = independent frames."""
    import numpy as np

    from neural_style.daemon.engine import quality
    from neural_style.daemon.frames import temporal
    from neural_style.daemon.frames.flicker import sequence_flicker

    outs, rows, previous = [], [], None
    for t, frame in enumerate(seq.frames):
        start = time.perf_counter()
        result = temporal.stylize_frame(
            engine, frame, [style], params, previous=previous,
            temporal_weight=weight if weight is not None else 0.0,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        out = np.asarray(result.image, np.float32)
        outs.append(out)
        q = quality.assess(out, frame, style, meter)
        rows.append({"frame": t + 1, "evaluations": len(result.iterates),
                     "seconds": round(seconds, 2), "loss": round(result.iterates[-1].loss, 1),
                     "quality": q.to_dict(), "info": result.frame})  # fmt: skip
        print(f"  frame {t + 1}: {len(result.iterates)} evaluations, {seconds:.1f} s, "
              f"{q.to_dict()} {result.frame}", flush=True)  # fmt: skip
        if weight is not None:
            previous = (frame, out)
    flicker = sequence_flicker(outs, seq.frames)
    later = rows[1:]
    return {
        "temporal_weight": weight,
        "flicker": flicker.to_dict(),
        "frames": rows,
        "evaluations_later_mean": float(np.mean([r["evaluations"] for r in later])),
        "seconds_later_mean": round(float(np.mean([r["seconds"] for r in later])), 2),
        "quality_mean": {
            k: round(float(np.mean([r["quality"][k] for r in rows])), 4)
            for k in ("structure", "texture", "color", "noise")
        },
        "_outputs": outs,
    }


def save_gif(path: Path, left: list[Any], right: list[Any], width: int, ms: int) -> None:
    """Side by side (independent | frames mode), ``width`` px each, looping."""
    import numpy as np
    from PIL import Image

    pics = []
    for a, b in zip(left, right, strict=True):
        h = round(a.shape[0] * width / a.shape[1])
        pa = Image.fromarray(np.uint8(np.clip(a, 0, 1) * 255 + 0.5)).resize((width, h), 1)
        pb = Image.fromarray(np.uint8(np.clip(b, 0, 1) * 255 + 0.5)).resize((width, h), 1)
        both = Image.new("RGB", (2 * width + 4, h), "white")
        both.paste(pa, (0, 0))
        both.paste(pb, (width + 4, 0))
        pics.append(both.quantize(colors=255, method=Image.Quantize.MEDIANCUT))
    path.parent.mkdir(parents=True, exist_ok=True)
    pics[0].save(path, save_all=True, append_images=pics[1:], duration=ms, loop=0,
                 optimize=True)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", required=True, help="VGG-19 weights (the trained stand-in)")
    ap.add_argument("--size", type=int, default=512, help="frame width (long side), px")
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--step", type=int, default=8, help="pan step, px per frame")
    ap.add_argument("--still", default="tubingen.jpg")
    ap.add_argument("--style", default="starry_night.jpg")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--iterations", type=int, help="instead of the preset's")
    ap.add_argument("--temporal-weight", default="", help="comma list (default: the product's)")
    ap.add_argument("--json", type=Path, help="write the record here too")
    ap.add_argument("--gif", type=Path, help="write independent | frames mode side by side")
    ap.add_argument("--gif-width", type=int, default=240)
    ap.add_argument("--save-frames", type=Path, help="folder for every output frame (PNG)")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import numpy as np
    from PIL import Image

    from neural_style.daemon.engine import StyleTransfer, quality
    from neural_style.daemon.engine.params import StyleParams, preset_values
    from neural_style.daemon.frames import sequences, temporal

    weights = [float(w) for w in args.temporal_weight.split(",") if w] or [temporal.TEMPORAL_WEIGHT]
    values = {**preset_values(args.preset), "size": args.size}
    if args.iterations:
        values["iterations"] = args.iterations
    params = StyleParams.from_dict(values)
    width, height = args.size, round(args.size * 3 / 4)
    seq = sequences.pan(sequences.load_still(still_path(args.still)), (width, height),
                        args.frames, (args.step, 0))  # fmt: skip
    style = sequences.load_still(style_path(args.style))
    engine = StyleTransfer.load(args.weights)
    meter = quality.TextureMeter(engine._conv_weights)
    record: dict[str, Any] = {
        "cpu": cpu_model(), "cores": os.cpu_count(), "device": engine.device,
        "weights": engine.weights.to_dict(), "sequence": {
            "kind": "pan", "still": still_path(args.still).name, "size": [width, height],
            "frames": args.frames, "step_px": args.step},
        "style": style_path(args.style).name, "preset": args.preset,
        "params": params.to_dict(), "frame_share": temporal.FRAME_SHARE,
        "date": time.strftime("%Y-%m-%d"),
    }  # fmt: skip
    print(f"{record['cpu']} ({record['cores']} cores), {args.preset} preset at {width}x{height}, "
          f"{params.iterations} steps, {args.frames} frames, pan {args.step} px/frame")  # fmt: skip
    print("independent frames:")
    modes = {"independent": run_mode(engine, seq, style, params, meter, None)}
    for w in weights:
        print(f"frames mode, temporal weight {w:g}:")
        modes[f"frames_{w:g}"] = run_mode(engine, seq, style, params, meter, w)
    base = modes["independent"]
    first_evals = base["frames"][0]["evaluations"]
    print("\nmode                 temporal error (floor)  ratio  evals/frame after 1st  "
          "s/frame after 1st  structure texture color noise")  # fmt: skip
    for name, m in modes.items():
        ratio = base["flicker"]["temporal_error"] / max(m["flicker"]["temporal_error"], 1e-9)
        m["error_cut"] = round(ratio, 2)
        m["evaluations_share"] = round(m["evaluations_later_mean"] / first_evals, 3)
        q = m["quality_mean"]
        print(f"{name:20s} {m['flicker']['temporal_error']:.4f} ({m['flicker']['floor']:.4f})"
              f"       {ratio:5.2f}x  {m['evaluations_later_mean']:5.1f} "
              f"({m['evaluations_share']:.2f}x)          {m['seconds_later_mean']:6.1f}"
              f"          {q['structure']:.3f} {q['texture']:.3f} {q['color']:.3f} "
              f"{q['noise']:.2f}")  # fmt: skip
    if args.save_frames:
        args.save_frames.mkdir(parents=True, exist_ok=True)
        for name, m in modes.items():
            for t, out in enumerate(m["_outputs"]):
                Image.fromarray(np.uint8(np.clip(out, 0, 1) * 255 + 0.5)).save(
                    args.save_frames / f"{name}_{t + 1:02d}.png"
                )
    if args.gif:
        best = modes[f"frames_{weights[0]:g}"]
        save_gif(args.gif, base["_outputs"], best["_outputs"], args.gif_width, 150)
        record["gif"] = str(args.gif)
    for m in modes.values():
        del m["_outputs"]
    record["modes"] = modes
    text = json.dumps(record, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
