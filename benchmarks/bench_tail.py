"""The Adam tail alone: steps from the L-BFGS ladder's iterate to the tutorial's loss.

    nice -n 10 .venv/bin/python benchmarks/bench_tail.py --weights /tmp/standin.h5 \\
        --size 256 --pair tubingen:starry_night --target 3146865.5 --steps 320 \\
        --out /tmp/tail.jsonl \\
        '{"name": "tail"}' '{"name": "tail-ema", "ema": [0.9, 0.95]}' \\
        '{"name": "lr 0.025", "lr": 0.025, "ema": [0.9]}'

``balanced`` spends most of its evaluations in its Adam tail (at 256 px: 32.5 512 px-
equivalent evaluations of L-BFGS ladder, then 175-271 tail steps to the tutorial's loss),
so this screens tail variants from one fixed start: the preset's L-BFGS ladder (its own
share of the steps, ``--size``, fp32; cached as .npy beside ``--out``), then the engine's
tail start (second moment at the square of the gradient there, first moment 0, step
counter 1000, step ramped up over ``ramp`` steps) and Keras' Adam update clipped to
[0, 1], written out here so its constants can vary. ``--target`` is the tutorial-1000
fp32 loss on the same pair and size (``bench_evals.py`` prints it as ``target_loss``).

A variant's JSON: ``name``; ``lr`` (0.02), ``b1`` (0.99), ``b2`` (0.999), ``eps`` (0.1),
``ramp`` (15); ``ema``: iterate-average decays whose averages are scored with the fp32 loss
every ``--every`` steps (not counted as cost: in a job the average is scored once, at the
end). Each variant's JSON line: the first tail step whose iterate is at or below the target
(``reached``), the first scored step of each average at or below it (``ema_reached``: an
upper bound, to ``--every`` steps), and the curve.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_evals import load_pair


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--weights", help="VGG-19 weights (the trained stand-in)")
    ap.add_argument("--size", type=int, default=256, help="working long side (default 256)")
    ap.add_argument("--pair", default="tubingen:starry_night", help="content:style")
    ap.add_argument("--target", type=float, required=True, help="the tutorial-1000 fp32 loss")
    ap.add_argument("--steps", type=int, default=320, help="tail steps at most")
    ap.add_argument("--every", type=int, default=10, help="score the averages every N steps")
    ap.add_argument("--out", type=Path, required=True, help="JSONL file rows are appended to")
    ap.add_argument("variants", nargs="+", help="JSON objects (see above)")
    args = ap.parse_args(argv)

    import tensorflow as tf

    from neural_style.daemon.engine import StyleTransfer, images
    from neural_style.daemon.engine.ladder import scale_budgets
    from neural_style.daemon.engine.params import StyleParams
    from neural_style.daemon.engine.targets import loss_weights
    from neural_style.shared import schema

    engine = StyleTransfer.load(args.weights)
    content, style = load_pair(args.pair, args.size)
    content_name, style_name = args.pair.split(":")
    preset = {**schema.preset_values("balanced"), "size": args.size, "precision": "fp32"}
    params = StyleParams(**preset)
    budgets = scale_budgets(params, len(params.ladder()))
    ladder_steps = sum(n for n, _ in budgets)
    cache = args.out.parent / f"tail-start-{content_name}-{style_name}-{args.size}.npy"
    if cache.exists():
        start = np.load(cache)
    else:
        ladder = StyleParams(**{**preset, "adam_tail": 0.0, "iterations": ladder_steps})
        start = images.to_float(engine.stylize(content, [style], ladder).image)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, start)

    fns = engine.functions(params)
    targets, _ = engine.targets(content, [style], [1.0], args.size, params)
    weights = loss_weights(params)

    def loss_and_grad(x: tf.Tensor) -> tuple[float, tf.Tensor]:
        total, _c, _s, _tv, grad, _ = engine.loss_and_grad(
            fns, params, x, targets.content, targets.grams, weights
        )
        return float(total), grad

    x0 = tf.constant(start[None])
    loss0, g0 = loss_and_grad(x0)
    g_abs = np.abs(g0.numpy())
    print(
        f"{args.pair} at {args.size} px: {ladder_steps} L-BFGS ladder evaluations -> "
        f"{loss0:.5g}; |gradient| median {np.median(g_abs):.3g} (Adam's eps is 0.1)",
        flush=True,
    )
    for variant in (json.loads(text) for text in args.variants):
        row = run_tail(variant, x0, g0, loss_and_grad, args.target, args.steps, args.every)
        row = {"pair": args.pair, "size": args.size, "target": args.target, "start": loss0, **row}
        print(json.dumps({k: v for k, v in row.items() if k != "curve"}), flush=True)
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
    return 0


def run_tail(
    variant: dict[str, Any],
    x0: Any,
    g0: Any,
    loss_and_grad: Any,
    target: float,
    steps: int,
    every: int,
) -> dict[str, Any]:
    """One tail variant from ``x0`` (gradient ``g0``) until its iterate and every average
    reach ``target``, or ``steps``."""
    import tensorflow as tf

    lr, b1, b2 = variant.get("lr", 0.02), variant.get("b1", 0.99), variant.get("b2", 0.999)
    eps, ramp = variant.get("eps", 0.1), variant.get("ramp", 15)
    decays = [float(d) for d in variant.get("ema", [])]
    x, m, v, t = x0, tf.zeros_like(x0), tf.square(g0), 1000
    averages = {d: x0 for d in decays}
    reached: int | None = None
    avg_reached: dict[float, int | None] = {d: None for d in decays}
    curve: list[list[float]] = []
    loss = float("nan")
    t0 = time.perf_counter()
    for k in range(steps):
        loss, g = loss_and_grad(x)
        if reached is None and loss <= target:
            reached = k
        t += 1
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * tf.square(g)
        alpha = lr * min(1.0, (k + 1) / ramp) * np.sqrt(1 - b2**t) / (1 - b1**t)
        x = tf.clip_by_value(x - alpha * m / (tf.sqrt(v) + eps), 0.0, 1.0)
        for d in decays:
            averages[d] = d * averages[d] + (1 - d) * x
        if (k + 1) % every == 0:
            point = [k + 1, round(loss)]
            for d in decays:
                scored, _ = loss_and_grad(averages[d])
                point.append(round(scored))
                if avg_reached[d] is None and scored <= target:
                    avg_reached[d] = k + 1
            curve.append(point)
        if reached is not None and all(r is not None for r in avg_reached.values()):
            break
    return {
        **variant,
        "reached": reached,
        "ema_reached": {str(d): r for d, r in avg_reached.items()},
        "final_loss": round(loss),
        "seconds": round(time.perf_counter() - t0, 1),
        "curve": curve,
    }


if __name__ == "__main__":
    raise SystemExit(main())
