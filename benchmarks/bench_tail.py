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
``ramp`` (15); ``stop`` (true: end at the target; false: run every phase to its end, for
the final loss at a fixed budget); ``ema``: iterate-average decays whose averages are
scored with the fp32 loss every ``--every`` steps (not counted as cost: in a job the average
is scored once, at the end). Each variant's JSON line: the first tail step whose iterate
is at or below the target (``reached``), the first scored step of each average at or
below it (``ema_reached``: an upper bound, to ``--every`` steps), and the curve.
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

    def loss_and_grad(x: tf.Tensor) -> tuple[float, tf.Tensor, tuple[float, float]]:
        total, _c, _s, tv, grad, _ = engine.loss_and_grad(
            fns, params, x, targets.content, targets.grams, weights
        )
        return float(total), grad, (float(tv), float(weights[2]))

    x0 = tf.constant(start[None])
    loss0, g0, _ = loss_and_grad(x0)
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
    """One tail variant from ``x0`` (gradient ``g0``): its phases in order (``phases``, or
    the variant itself as one Adam phase of ``steps``) until the iterate and every average
    reach ``target``, or the steps are spent. ``reached`` counts evaluations over all
    phases."""
    phases = variant.get("phases") or [{**variant, "steps": steps}]
    state = _State(x0, g0, target, loss_and_grad, variant.get("tv_eps", 0.0))
    state.stop = bool(variant.get("stop", True))
    t0 = time.perf_counter()
    for phase in phases:
        budget = state.used + int(phase["steps"])
        kind = phase.get("opt", "adam")
        if kind == "lbfgs":
            _lbfgs_phase(state, budget, int(phase.get("history", 20)))
        else:
            _adam_phase(state, phase, budget, every, kind == "sf")
        if state.done():
            break
    return {
        **variant,
        "reached": state.reached,
        "ema_reached": {str(d): r for d, r in state.avg_reached.items()},
        "final_loss": round(state.loss),
        "seconds": round(time.perf_counter() - t0, 1),
        "curve": state.curve,
    }


class _State:
    """The tail's iterate, its gradient and the counts shared by its phases."""

    def __init__(self, x0: Any, g0: Any, target: float, loss_and_grad: Any, tv_eps: float):
        self.x, self.g, self.target, self.tv_eps = x0, g0, target, float(tv_eps)
        self._loss_and_grad = loss_and_grad
        self.used = 0
        self.loss = float("nan")
        self.reached: int | None = None
        self.avg_reached: dict[float, int | None] = {}
        self.curve: list[list[float]] = []
        self.stop = True

    def done(self) -> bool:
        """Whether the iterate and every average reached the target (and the variant stops
        there)."""
        reached = self.reached is not None and all(r is not None for r in self.avg_reached.values())
        return self.stop and reached

    def evaluate(self, x: Any, count: bool = True) -> tuple[float, float, Any]:
        """The real fp32 loss at ``x``, the loss the optimiser sees (TV smoothed to
        sqrt(d² + eps²) − eps when ``tv_eps``), and that loss's gradient."""
        loss, g, tv_real = self._loss_and_grad(x)
        seen = loss
        if self.tv_eps > 0.0:
            smooth, g_smooth, g_real = _tv_smoothed(x, self.tv_eps)
            w = tv_real[1]
            seen = loss - tv_real[0] + w * float(smooth)
            g = g + w * (g_smooth - g_real)
        if count:
            if self.reached is None and loss <= self.target:
                self.reached = self.used
            self.used += 1
            self.loss = loss
            if self.used % 10 == 0:
                self.curve.append([self.used, round(loss)])
        return loss, seen, g


def _tv_smoothed(x: Any, eps: float) -> tuple[Any, Any, Any]:
    """Charbonnier-smoothed TV at ``x`` (the engine's normalisation) and the gradients of it
    and of the real TV."""
    import tensorflow as tf

    from neural_style.daemon.engine.losses import TV_REFERENCE_AREA, tv_loss

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        dy = x[:, 1:, :, :] - x[:, :-1, :, :]
        dx = x[:, :, 1:, :] - x[:, :, :-1, :]
        area = float(x.shape[1] * x.shape[2])

        def charb(d: Any) -> Any:
            return tf.reduce_sum(tf.sqrt(tf.square(d) + eps * eps) - eps)

        smooth = (charb(dy) + charb(dx)) * (TV_REFERENCE_AREA / area)
        real = tv_loss(x)
    g_s, g_r = tape.gradient(smooth, x), tape.gradient(real, x)
    return smooth, g_s, g_r


def _adam_phase(state: _State, phase: dict[str, Any], budget: int, every: int, sf: bool) -> None:
    """Keras' Adam as the engine's tail runs it (v warmed to g², m 0, step counter 1000,
    step ramped over ``ramp``), optionally with Nesterov momentum (``nesterov``) or as
    schedule-free Adam (Defazio et al. 2024: gradients at y = (1 − b1)·z + b1·x, x the
    running average of z weighted by the squared step, ``sf``); averages scored every
    ``every`` steps (not counted)."""
    import tensorflow as tf

    lr, b1, b2 = phase.get("lr", 0.02), phase.get("b1", 0.99), phase.get("b2", 0.999)
    eps, ramp = phase.get("eps", 0.1), phase.get("ramp", 15)
    nesterov = bool(phase.get("nesterov", False))
    decays = [float(d) for d in phase.get("ema", [])]
    for d in decays:
        state.avg_reached.setdefault(d, None)
    x = state.x
    m, v, t = tf.zeros_like(x), tf.square(state.g), 1000
    z, weight_sum = x, 0.0
    averages = {d: x for d in decays}
    k = 0
    while state.used < budget:
        point = (1 - b1) * z + b1 * x if sf else x
        _loss, _seen, g = state.evaluate(point)
        t += 1
        v = b2 * v + (1 - b2) * tf.square(g)
        step = lr * min(1.0, (k + 1) / ramp)
        if sf:
            z = tf.clip_by_value(z - step * g / (tf.sqrt(v) + eps), 0.0, 1.0)
            weight_sum += step * step
            c = step * step / weight_sum
            x = (1 - c) * x + c * z
        else:
            m = b1 * m + (1 - b1) * g
            direction = b1 * m + (1 - b1) * g if nesterov else m
            alpha = step * np.sqrt(1 - b2**t) / (1 - b1**t)
            x = tf.clip_by_value(x - alpha * direction / (tf.sqrt(v) + eps), 0.0, 1.0)
        k += 1
        for d in decays:
            averages[d] = d * averages[d] + (1 - d) * x
        scored_points = ([("sf", x)] if sf else []) + [(d, averages[d]) for d in decays]
        if k % every == 0 and scored_points:
            for key, point_x in scored_points:
                scored, _, _ = state.evaluate(point_x, count=False)
                if key == "sf":
                    state.curve.append([state.used, round(scored), "x"])
                    if state.reached is None and scored <= state.target:
                        state.reached = state.used
                else:
                    state.curve.append([state.used, round(scored), f"ema {key}"])
                    if state.avg_reached[key] is None and scored <= state.target:
                        state.avg_reached[key] = state.used
        if state.done():
            break
    if sf:
        state.x = x
        _l, _s, state.g = state.evaluate(x, count=False)
    else:
        state.x, state.g = x, g


def _lbfgs_phase(state: _State, budget: int, history: int) -> None:
    """The engine's projected L-BFGS (daemon/engine/lbfgs.py) from the iterate, on the loss
    the optimiser sees, until ``budget`` evaluations are used; ends at its best point."""
    from neural_style.daemon.engine import lbfgs

    best: list[Any] = [state.loss if state.used else float("inf"), state.x, state.g]

    def evaluate(x: Any) -> tuple[float, Any]:
        if state.used >= budget or state.done():
            raise lbfgs.Stop
        loss, seen, g = state.evaluate(x)
        if loss < best[0]:
            best[:] = [loss, x, g]
        return seen, g

    lbfgs.minimize(evaluate, state.x, history)
    state.x, state.g = best[1], best[2]


if __name__ == "__main__":
    raise SystemExit(main())
