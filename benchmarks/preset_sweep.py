"""Try optimiser settings on one content/style pair: loss curve, fp32 loss, quality, picture.

    .venv/bin/python benchmarks/preset_sweep.py --weights standin.h5 --size 256 \
        --content ../shared/data/content/tubingen.jpg \
        --style ../shared/data/styles/starry_night.jpg \
        --out /tmp/sweep '{"name": "tutorial", "iterations": 1000}' '{"name": "lbfgs", ...}'

Each argument is a JSON object of StyleParams fields plus "name" (and optionally
"preset"). Prints one JSON line per run and writes OUT/NAME.png. This is how the presets
were chosen (docs/performance.md); judge with the trained stand-in, never random weights.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--content", required=True)
    ap.add_argument("--style", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("configs", nargs="+")
    args = ap.parse_args()

    from neural_style.daemon.engine import StyleTransfer, images, quality
    from neural_style.daemon.engine.bench import at_size, fp32_loss
    from neural_style.daemon.engine.params import StyleParams

    engine = StyleTransfer.load(args.weights)
    meter = quality.TextureMeter(engine._conv_weights)
    content = images.to_float(at_size(images.load_image(args.content), args.size))
    style = images.load_image(args.style)
    style_f = images.split_alpha(images.to_float(style))[0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for text in args.configs:
        cfg = json.loads(text)
        name = cfg.pop("name")
        env = cfg.pop("env", {})  # experiment switches read by the engine, if any
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        cfg.setdefault("size", args.size)
        params = StyleParams.from_dict(cfg)
        marks = {100, 200, 300, 400, 500, 600, 700, 800, 900, 1000}
        curve: list[list[float]] = []

        def cb(it, curve=curve, marks=marks, name=name):  # type: ignore[no-untyped-def]
            if it.step in marks or it.step == it.total:
                curve.append([it.step, round(it.loss), round(it.elapsed, 1), it.scale])
            if it.step % 50 == 0:
                print(f"{name} {it.step}: {it.loss:.4g} {it.elapsed:.0f} s", file=sys.stderr)

        t0 = time.perf_counter()
        run = engine.stylize(content, [style], params, cb)
        took = time.perf_counter() - t0
        img = np.clip(run.image, 0, 1).astype(np.float32)
        loss = fp32_loss(engine, img, content, style)
        q = quality.assess(img, content, style_f, meter)
        images.save_image(images.from_float(img, np.dtype(np.uint8)), out / f"{name}.png")
        row = {"name": name, "env": env, "time_s": round(took, 1), "fp32_loss": round(loss),
               "quality": q.to_dict(), "curve": curve, "params": cfg}  # fmt: skip
        print(json.dumps(row), flush=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return 0


if __name__ == "__main__":
    sys.exit(main())
