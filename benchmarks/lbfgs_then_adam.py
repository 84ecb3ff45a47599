"""The engine's L-BFGS ladder, then the tutorial's Adam with a ramped step at the finest scale.

    .venv/bin/python benchmarks/lbfgs_then_adam.py --weights standin.h5 --size 512 \
        --lbfgs 200 --adam 350 --content ../shared/data/content/tubingen.jpg \
        --style ../shared/data/styles/starry_night.jpg --out /tmp/hybrid.png

The lead of docs/performance.md "Can any optimiser reach the tutorial's loss in a quarter of
its time? (session 7)": at 512 px, 200 L-BFGS evaluations (50 + 50 + 100 over 128/256/512 px)
and then 350 Adam steps reach the tutorial's 1000-step loss in 0.45 of its time. Adam started
cold at an L-BFGS iterate first moves every pixel by ~lr and loses ~200 steps climbing back;
so its second moment starts at g² of the start, its step counter at 1000 (bias corrections
~1 and ~0.8) and its step size ramps from 0 to lr over ``--ramp`` steps. Prints the fp32 loss
every 50 Adam steps and one JSON line at the end; judge with the trained stand-in.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--lbfgs", type=int, default=200, help="L-BFGS evaluations (the ladder)")
    ap.add_argument("--adam", type=int, default=350, help="Adam steps at the finest scale")
    ap.add_argument("--ramp", type=int, default=100, help="steps over which Adam's lr ramps up")
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--content", required=True)
    ap.add_argument("--style", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import tensorflow as tf

    from neural_style.daemon import images, quality
    from neural_style.daemon.bench import _at_size
    from neural_style.daemon.engine import StyleTransfer, _loss_weights, adam_update
    from neural_style.daemon.params import StyleParams

    engine = StyleTransfer.load(args.weights)
    content = images.to_float(_at_size(images.load_image(args.content), args.size))[..., :3]
    style = images.split_alpha(images.to_float(images.load_image(args.style)))[0]
    fp32 = StyleParams(size=args.size, precision="fp32")
    targets, _ = engine.targets(content, [style], [1.0], args.size, fp32)
    fns, weights = engine.functions(fp32), _loss_weights(fp32)

    def loss_and_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        total, _, _, _, grad, _ = fns.loss_and_grad(
            tf.constant(x[None], tf.float32), targets.content, targets.grams, weights
        )
        return float(total), grad.numpy()[0]

    start = time.perf_counter()
    ladder = StyleParams.from_dict(
        {"size": args.size, "iterations": args.lbfgs, "optimizer": "lbfgs", "scales": []}
    )
    x = images.to_float(engine.stylize(content, [style], ladder).image)[..., :3]
    x = x.astype(np.float32)
    print(f"L-BFGS ladder, {args.lbfgs} evaluations: {loss_and_grad(x)[0]:.4g}", flush=True)

    # The engine's Keras-form update (the tutorial's β2 and ε), its step counter warmed.
    beta1, t0 = tf.constant(0.99), 1000
    m, v = tf.zeros_like(x), tf.constant(loss_and_grad(x)[1] ** 2)
    for k in range(1, args.adam + 1):
        loss, g = loss_and_grad(x)
        if (k - 1) % 50 == 0:
            print(f"Adam step {k - 1}: {loss:.4g}", flush=True)
        lr = tf.constant(args.lr * min(1.0, k / args.ramp))
        new_x, m, v = adam_update(tf.constant(x), m, v, tf.constant(g), float(t0 + k), lr, beta1)
        x = new_x.numpy()
    elapsed = time.perf_counter() - start
    meter = quality.TextureMeter(engine._conv_weights) if engine._conv_weights else None
    measures = quality.assess(x, content, style, meter).to_dict()
    images.save_image(images.from_float(x, np.dtype(np.uint8)), args.out)
    result = {"loss": loss_and_grad(x)[0], "time_s": round(elapsed, 1), "quality": measures}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
