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
``ramp`` (15); ``rna`` (k: every ``rna_every`` (10) steps, regularized nonlinear
acceleration of the last k + 1 iterates, regularisation ``rna_lam`` (1e-6), tried for one
evaluation and taken when lower; Adam's moments kept); ``v0`` (``"photo"``: the second
moment starts at g² plus ``v0_scale`` (1) times the square of the photo's gradient, the
memory the tutorial's v keeps); ``stop`` (true: end at the target; false: run every phase
to its end, for the final loss at a fixed budget); ``ema``: iterate-average decays whose
averages are scored with the fp32 loss every ``--every`` steps (not counted as cost: in a
job the average is scored once, at the end). Each variant's JSON line: how far the tail
moved the image (``moved``, the largest pixel change), the first tail step whose iterate
is at or below the target (``reached``), the first scored step of each average at or
below it (``ema_reached``: an upper bound, to ``--every`` steps), and the curve.

``phases`` chains optimisers, each ``{"opt": ..., "steps": N, ...}`` with its own settings,
the evaluations counted over all of them: ``adam`` (the keys above, ``nesterov``), ``sf``
(schedule-free Adam), ``lbfgs`` (the engine's projected L-BFGS, ``history``), ``gn``
(Gauss-Newton with conjugate gradient, Levenberg-Marquardt damping: ``cg``, ``lam``,
``down``, ``up``, ``precond``; each product is counted at its measured cost in
evaluations, so ``reached`` and ``used`` can be fractional), ``mg`` (the Adam tail with
MG/OPT's coarse-grid corrections at half size: ``cycle``, ``inner``, ``trials``, ``first``;
a coarse evaluation counts its share of the pixels; the last curve entry lists each
correction as [Adam step, evaluations used, fine loss gained]), and the two sign-step
methods ``rprop`` (iRprop-: ``step0``, ``up``, ``down``, ``step_min``, ``step_max``) and
``lion`` (``lr``, ``b1``, ``b2``). ``tv_eps`` hands every phase a Charbonnier-smoothed TV
(the real loss is scored).
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
    variants = [json.loads(text) for text in args.variants]
    photo_grad = None
    if any(p.get("v0") == "photo" for v in variants for p in [v, *v.get("phases", [])]):
        _l, photo_grad, _ = loss_and_grad(tf.constant(images.to_float(content)[None]))
    g_abs = np.abs(g0.numpy())
    print(
        f"{args.pair} at {args.size} px: {ladder_steps} L-BFGS ladder evaluations -> "
        f"{loss0:.5g}; |gradient| median {np.median(g_abs):.3g} (Adam's eps is 0.1)",
        flush=True,
    )
    gn = None
    if any(p.get("opt") == "gn" for v in variants for p in v.get("phases", [])):
        gn = _gauss_newton(engine, params, targets, weights, x0, loss_and_grad, loss0)
    coarse = None
    if any(p.get("opt") == "mg" for v in variants for p in v.get("phases", [])):
        coarse = _coarse_model(engine, params, fns, content, style, weights)
    for variant in variants:
        row = run_tail(
            variant, x0, g0, loss_and_grad, args.target, args.steps, args.every, gn, photo_grad,
            coarse,
        )  # fmt: skip
        row = {"pair": args.pair, "size": args.size, "target": args.target, "start": loss0, **row}
        print(json.dumps({k: v for k, v in row.items() if k != "curve"}), flush=True)
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
    return 0


def _gauss_newton(
    engine: Any, params: Any, targets: Any, weights: Any, x0: Any, loss_and_grad: Any, loss0: float
) -> GaussNewton:
    """The Gauss-Newton product of the engine's content and style terms (fp32), checked
    against the engine's loss at ``x0``, with its cost in evaluations timed here."""
    import tensorflow as tf

    from neural_style.daemon.engine.losses import tv_loss
    from neural_style.daemon.engine.vgg import CONTENT_LAYERS, STYLE_LAYERS

    wc, ws, wt = (float(w) for w in weights.numpy())

    def residuals(x: Any) -> list[Any]:
        f = engine.features(x, pooling=params.pooling.value, padding=params.padding.value)
        xc = f[CONTENT_LAYERS[0]]
        out = [tf.sqrt(wc / tf.cast(tf.size(xc), tf.float32)) * (xc - targets.content)]
        for name, target in zip(STYLE_LAYERS, targets.grams, strict=True):
            # A plain product, not losses.gram_matrix: forward mode then differentiates the
            # Gram itself rather than going through gram_matrix's custom backward.
            shape = tf.shape(f[name])
            flat = tf.reshape(f[name], [shape[1] * shape[2], shape[3]])
            gram = tf.matmul(flat, flat, transpose_a=True) / tf.cast(
                shape[1] * shape[2], tf.float32
            )
            c = tf.cast(shape[3], tf.float32)
            out.append(tf.sqrt(ws / (len(STYLE_LAYERS) * c * c)) * (gram[None] - target))
        return out

    least_squares = sum(float(tf.reduce_sum(tf.square(r))) for r in residuals(x0))
    rebuilt = least_squares + wt * float(tv_loss(x0))
    if abs(rebuilt - loss0) > 1e-3 * loss0:
        raise SystemExit(f"residuals give {rebuilt:.6g}, the engine {loss0:.6g}")
    product = residual_product(residuals)
    v = tf.random.normal(x0.shape, seed=1)
    product(x0, v)
    loss_and_grad(x0)
    t0 = time.perf_counter()
    for _ in range(3):
        product(x0, v).numpy()
    t1 = time.perf_counter()
    for _ in range(3):
        loss_and_grad(x0)
    t2 = time.perf_counter()
    cost = (t1 - t0) / (t2 - t1)
    print(f"Gauss-Newton product: {cost:.2f} evaluations (residuals rebuild {rebuilt:.6g})")
    return GaussNewton(product, cost)


def run_tail(
    variant: dict[str, Any],
    x0: Any,
    g0: Any,
    loss_and_grad: Any,
    target: float,
    steps: int,
    every: int,
    gauss_newton: GaussNewton | None = None,
    photo_grad: Any = None,
    coarse: Coarse | None = None,
) -> dict[str, Any]:
    """One tail variant from ``x0`` (gradient ``g0``): its phases in order (``phases``, or
    the variant itself as one Adam phase of ``steps``) until the iterate and every average
    reach ``target``, or the steps are spent. ``reached`` counts evaluations over all
    phases."""
    phases = variant.get("phases") or [{**variant, "steps": steps}]
    state = _State(x0, g0, target, loss_and_grad, variant.get("tv_eps", 0.0), photo_grad)
    state.stop = bool(variant.get("stop", True))
    t0 = time.perf_counter()
    for phase in phases:
        budget = state.used + int(phase["steps"])
        kind = phase.get("opt", "adam")
        if kind == "lbfgs":
            _lbfgs_phase(state, budget, int(phase.get("history", 20)))
        elif kind == "mg":
            if coarse is None:
                raise SystemExit("an mg phase needs the coarse model")
            _mg_phase(state, phase, budget, coarse)
        elif kind == "gn":
            if gauss_newton is None:
                raise SystemExit("a gn phase needs the Gauss-Newton product")
            _gn_phase(state, phase, budget, gauss_newton)
        elif kind in ("rprop", "lion"):
            _sign_phase(state, phase, budget, kind)
        else:
            _adam_phase(state, phase, budget, every, kind == "sf")
        if state.done():
            break
    return {
        **variant,
        "reached": state.reached,
        "ema_reached": {str(d): r for d, r in state.avg_reached.items()},
        "final_loss": round(state.loss),
        "used": round(state.used, 2),
        "moved": round(float(np.max(np.abs(np.asarray(state.x) - np.asarray(x0)))), 6),
        "seconds": round(time.perf_counter() - t0, 1),
        "curve": state.curve,
    }


class _State:
    """The tail's iterate, its gradient and the counts shared by its phases."""

    def __init__(
        self,
        x0: Any,
        g0: Any,
        target: float,
        loss_and_grad: Any,
        tv_eps: float,
        photo_grad: Any = None,
    ):
        self.x, self.g, self.target, self.tv_eps = x0, g0, target, float(tv_eps)
        self.photo_grad = photo_grad  # the photo's gradient, for ``v0: photo``
        self._loss_and_grad = loss_and_grad
        self.used = 0.0
        self.loss = float("nan")
        self.reached: float | None = None
        self.avg_reached: dict[float, float | None] = {}
        self.curve: list[list[Any]] = []
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
                self.reached = round(self.used, 2)
            self.loss = loss
            self.spend(1.0)
        return loss, seen, g

    def spend(self, cost: float) -> None:
        """Count ``cost`` evaluations; the curve gets a point every 10."""
        before = self.used
        self.used += cost
        if int(self.used // 10) > int(before // 10) and self.loss == self.loss:
            self.curve.append([round(self.used, 2), round(self.loss)])


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


def _adam_settings(phase: dict[str, Any]) -> tuple[float, float, float, float, float]:
    """A phase's Adam constants (lr, b1, b2, eps, ramp), the engine's tail's by default."""
    return (
        phase.get("lr", 0.02), phase.get("b1", 0.99), phase.get("b2", 0.999),
        phase.get("eps", 0.1), phase.get("ramp", 15),
    )  # fmt: skip


def _adam_update(
    x: Any, m: Any, v: Any, g: Any, t: int, step: float, b1: float, b2: float, eps: float,
    nesterov: bool = False,
) -> tuple[Any, Any]:  # fmt: skip
    """Keras' Adam step (v already updated with g), clipped to [0, 1]: (new x, new m)."""
    import tensorflow as tf

    m = b1 * m + (1 - b1) * g
    direction = b1 * m + (1 - b1) * g if nesterov else m
    alpha = step * np.sqrt(1 - b2**t) / (1 - b1**t)
    return tf.clip_by_value(x - alpha * direction / (tf.sqrt(v) + eps), 0.0, 1.0), m


def _adam_phase(state: _State, phase: dict[str, Any], budget: float, every: int, sf: bool) -> None:
    """Keras' Adam as the engine's tail runs it (v warmed to g², m 0, step counter 1000,
    step ramped over ``ramp``), optionally with Nesterov momentum (``nesterov``) or as
    schedule-free Adam (Defazio et al. 2024: gradients at y = (1 − b1)·z + b1·x, x the
    running average of z weighted by the squared step, ``sf``); averages scored every
    ``every`` steps (not counted)."""
    import tensorflow as tf

    lr, b1, b2, eps, ramp = _adam_settings(phase)
    nesterov = bool(phase.get("nesterov", False))
    decays = [float(d) for d in phase.get("ema", [])]
    for d in decays:
        state.avg_reached.setdefault(d, None)
    x = state.x
    m, v, t = tf.zeros_like(x), tf.square(state.g), 1000
    if phase.get("v0") == "photo":
        v = v + float(phase.get("v0_scale", 1.0)) * tf.square(state.photo_grad)
    z, weight_sum = x, 0.0
    averages = {d: x for d in decays}
    rna, rna_every = int(phase.get("rna", 0)), int(phase.get("rna_every", 10))
    rna_lam = float(phase.get("rna_lam", 1e-6))
    history: list[Any] = []
    k = 0
    while state.used < budget:
        point = (1 - b1) * z + b1 * x if sf else x
        loss, _seen, g = state.evaluate(point)
        if rna and not sf:
            history = [*history[-rna:], x]
            if len(history) == rna + 1 and k % rna_every == 0 and not state.done():
                x, g, jumped = _rna_jump(state, history, rna_lam, x, g, loss)
                if jumped:
                    history = [x]
                    state.curve.append([round(state.used, 2), round(state.loss), "rna"])
        t += 1
        v = b2 * v + (1 - b2) * tf.square(g)
        step = lr * min(1.0, (k + 1) / ramp)
        if sf:
            z = tf.clip_by_value(z - step * g / (tf.sqrt(v) + eps), 0.0, 1.0)
            weight_sum += step * step
            c = step * step / weight_sum
            x = (1 - c) * x + c * z
        else:
            x, m = _adam_update(x, m, v, g, t, step, b1, b2, eps, nesterov)
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


def _sign_phase(state: _State, phase: dict[str, Any], budget: float, kind: str) -> None:
    """Two sign-step tails. ``rprop`` (Riedmiller and Braun 1993, iRprop-: each pixel's
    step grows by ``up`` (1.2) while its gradient keeps its sign and shrinks by ``down``
    (0.5) and skips the step where it flips, within [``step_min``, ``step_max``], from
    ``step0``): made for full-batch gradients, which the tail's are. ``lion`` (Chen et al.
    2023, "Symbolic Discovery of Optimization Algorithms"): x -= lr·sign(b1·m + (1 − b1)·g),
    then m = b2·m + (1 − b2)·g, m started at g."""
    import tensorflow as tf

    x, g = state.x, state.g
    if kind == "rprop":
        up, down = float(phase.get("up", 1.2)), float(phase.get("down", 0.5))
        lo, hi = float(phase.get("step_min", 1e-5)), float(phase.get("step_max", 0.05))
        delta = tf.fill(tf.shape(x), float(phase.get("step0", 0.005)))
        prev = tf.zeros_like(x)
        while state.used < budget:
            _loss, _seen, g = state.evaluate(x)
            agree = tf.sign(g) * tf.sign(prev)
            delta = tf.where(agree > 0, tf.minimum(delta * up, hi), delta)
            delta = tf.where(agree < 0, tf.maximum(delta * down, lo), delta)
            g_step = tf.where(agree < 0, tf.zeros_like(g), g)
            x = tf.clip_by_value(x - tf.sign(g_step) * delta, 0.0, 1.0)
            prev = g_step
            if state.done():
                break
    else:
        lr, b1, b2 = phase.get("lr", 0.003), phase.get("b1", 0.9), phase.get("b2", 0.99)
        m = g
        while state.used < budget:
            _loss, _seen, g = state.evaluate(x)
            x = tf.clip_by_value(x - lr * tf.sign(b1 * m + (1 - b1) * g), 0.0, 1.0)
            m = b2 * m + (1 - b2) * g
            if state.done():
                break
    state.x, state.g = x, g


def rna_weights(history: list[Any], lam: float) -> np.ndarray:
    """Regularized nonlinear acceleration's weights (Scieur, d'Aspremont and Bach,
    "Regularized Nonlinear Acceleration", NeurIPS 2016): with residuals rᵢ = xᵢ₊₁ − xᵢ of
    the last k + 1 iterates, c = argmin ‖R·c‖² + λ·‖RᵀR‖·‖c‖² subject to Σc = 1; the
    extrapolation is Σ cᵢ·xᵢ₊₁."""
    flat = np.stack([np.asarray(h, np.float64).ravel() for h in history])
    r = np.diff(flat, axis=0)
    gram = r @ r.T
    gram = gram / max(float(np.linalg.norm(gram, 2)), 1e-300)
    z = np.linalg.solve(gram + lam * np.eye(len(gram)), np.ones(len(gram)))
    return z / z.sum()


def _rna_jump(
    state: _State, history: list[Any], lam: float, x: Any, g: Any, loss: float
) -> tuple[Any, Any, bool]:
    """Try RNA's extrapolation of ``history`` (ending at x, its loss ``loss``, gradient g):
    one evaluation; taken when its loss is lower."""
    import tensorflow as tf

    c = rna_weights(history, lam)
    stacked = np.stack([np.asarray(h, np.float32) for h in history[1:]])
    guess = tf.constant(np.clip(np.tensordot(c.astype(np.float32), stacked, 1), 0.0, 1.0))
    tried, _seen, g_tried = state.evaluate(guess)
    if tried < loss:
        return guess, g_tried, True
    state.loss = loss
    return x, g, False


def _lbfgs_phase(state: _State, budget: float, history: int) -> None:
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


class Coarse:
    """The job's loss at half the working size (its own content features and style Grams,
    as the ladder's coarser scale has them): the coarse model of MG/OPT's correction."""

    def __init__(self, loss_and_grad: Any, size: tuple[int, int], cost: float) -> None:
        self.loss_and_grad = loss_and_grad  # y (1×h×w×3) -> (loss, gradient)
        self.size = size  # (height, width)
        self.cost = cost  # one coarse evaluation in fine evaluations (its share of the pixels)


def _coarse_model(
    engine: Any, params: Any, fns: Any, content: Any, style: Any, weights: Any
) -> Coarse:
    """The job's loss at half size, built as the ladder builds its coarser scale's."""
    from neural_style.daemon.engine import images

    height, width = content.shape[:2]
    cw, ch = images.fit_long_side(width, height, max(width, height) // 2)
    coarse_content = images.resize(content, (cw, ch))
    targets, _ = engine.targets(coarse_content, [style], [1.0], max(cw, ch), params)

    def loss_and_grad(y: Any) -> tuple[float, Any]:
        total, _c, _s, _tv, grad, _ = engine.loss_and_grad(
            fns, params, y, targets.content, targets.grams, weights
        )
        return float(total), grad

    return Coarse(loss_and_grad, (ch, cw), cw * ch / float(width * height))


def _mg_phase(state: _State, phase: dict[str, Any], budget: float, coarse: Coarse) -> None:
    """The Adam tail with MG/OPT's coarse-grid corrections (Nash, "A multigrid approach to
    discretized optimization problems", 2000): every ``cycle`` Adam steps, at the point
    Adam just evaluated (x, gradient g), the image is restricted to half size (y0, area
    mean), the coarse loss is shifted by a linear term so that its gradient at y0 is
    Pᵀg (P the bilinear upsampling: the gradient of the fine loss along coarse changes),
    ``inner`` evaluations of the engine's L-BFGS minimise that model from y0, and
    x + α·P(y − y0) is tried at α = 1 (then ½, ``trials`` in all); a trial that lowers the
    fine loss is taken and its gradient is Adam's next. Adam's moments carry across."""
    import tensorflow as tf

    lr, b1, b2, eps, ramp = _adam_settings(phase)
    cycle, inner = int(phase.get("cycle", 20)), int(phase.get("inner", 10))
    trials, first = int(phase.get("trials", 2)), int(phase.get("first", 0))
    height, width = int(state.x.shape[1]), int(state.x.shape[2])
    x = state.x
    m, v, t = tf.zeros_like(x), tf.square(state.g), 1000
    k = 0
    taken: list[list[Any]] = []
    _loss, _seen, g = state.evaluate(x)
    while state.used < budget and not state.done():
        if k >= first and (k - first) % cycle == 0:
            x, g, gain = _correction(state, x, g, coarse, inner, trials, (height, width))
            taken.append([k, round(state.used, 2), gain])
            if state.used >= budget or state.done():
                break
        t += 1
        v = b2 * v + (1 - b2) * tf.square(g)
        x, m = _adam_update(x, m, v, g, t, lr * min(1.0, (k + 1) / ramp), b1, b2, eps)
        k += 1
        _loss, _seen, g = state.evaluate(x)
    state.x, state.g = x, g
    state.curve.append(["corrections", taken])


def _correction(
    state: _State,
    x: Any,
    g: Any,
    coarse: Coarse,
    inner: int,
    trials: int,
    fine: tuple[int, int],
) -> tuple[Any, Any, float]:
    """One MG/OPT coarse-grid correction at x (fine loss state.loss, gradient g); returns
    the new point, its gradient and the fine loss gained (0 when no trial was taken)."""
    import tensorflow as tf

    from neural_style.daemon.engine import lbfgs

    def up(y: Any) -> Any:
        return tf.image.resize(y, fine, method="bilinear")

    y0 = tf.image.resize(x, coarse.size, method="area")
    probe = tf.zeros_like(y0)
    with tf.GradientTape() as tape:
        tape.watch(probe)
        pulled = tf.reduce_sum(up(probe) * g)
    pt_g = tape.gradient(pulled, probe)  # Pᵀg
    f0 = state.loss
    used = [0]
    best: list[Any] = [float("inf"), y0]
    shift: list[Any] = [None]

    def evaluate(y: Any) -> tuple[float, Any]:
        if used[0] >= inner:
            raise lbfgs.Stop
        fc, gc = coarse.loss_and_grad(y)
        state.spend(coarse.cost)
        used[0] += 1
        if shift[0] is None:  # first-order coherence: the model's gradient at y0 is Pᵀg
            shift[0] = gc - pt_g
        h = fc - float(tf.reduce_sum(shift[0] * (y - y0)))
        if h < best[0]:
            best[:] = [h, y]
        return h, gc - shift[0]

    lbfgs.minimize(evaluate, y0, 20)
    change = up(best[1] - y0)
    step = 1.0
    for _ in range(max(1, trials)):
        trial = tf.clip_by_value(x + step * change, 0.0, 1.0)
        loss, _seen, g_trial = state.evaluate(trial)
        if loss < f0:
            return trial, g_trial, f0 - loss
        step *= 0.5
    state.loss = f0  # no trial taken: the iterate stays at x
    return x, g, 0.0


class GaussNewton:
    """The Gauss-Newton matrix-vector product of the loss's least-squares part: the content
    and style terms are Σ r(x)² for residuals r (feature differences, Gram differences), so
    their Gauss-Newton matrix is 2·JᵀJ, J = ∂r/∂x; the TV term (a sum of absolute values)
    contributes its gradient only. ``product(x, v)`` = 2·Jᵀ(J·v): one forward-mode pass for
    J·v and one backward pass for Jᵀ(·), with no second derivative of the network.

    ``cost`` is what one product counts in loss + gradient evaluations (the bench measures
    the ratio of their times on the machine it runs on)."""

    def __init__(self, product: Any, cost: float) -> None:
        self.product, self.cost = product, float(cost)


def residual_product(residuals: Any) -> Any:
    """The traced 2·Jᵀ(J·v) of ``residuals`` (x -> list of tensors whose squares sum to the
    least-squares part of the loss)."""
    import tensorflow as tf

    def product(x: Any, v: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(x)
            with tf.autodiff.ForwardAccumulator(primals=x, tangents=v) as acc:
                r = residuals(x)
            jv = [acc.jvp(ri) for ri in r]
        return 2.0 * tape.gradient(r, x, output_gradients=jv)

    return tf.function(product, autograph=False, reduce_retracing=True)


def _gn_phase(state: _State, phase: dict[str, Any], budget: float, gn: GaussNewton) -> None:
    """Levenberg-Marquardt on the Gauss-Newton model (Martens 2010, "Deep learning via
    Hessian-free optimization": conjugate gradient on (2·JᵀJ + λ·I)·d = −g, warm-started
    from the last step, λ adapted from the ratio of actual to predicted decrease). Each
    outer step costs one evaluation (the new point's loss and gradient) plus ``cg``
    products; a step that raises the loss is rejected (its evaluation still counts). λ
    starts where the first step is a gradient step moving no pixel by more than 0.02
    (``lam`` sets it) and is multiplied by ``down`` (2/3) or ``up`` (1.5) when the ratio is
    over 3/4 or under 1/4.
    ``precond: adam`` preconditions CG with Adam's diagonal (sqrt of an average of g²)."""
    import tensorflow as tf

    cg_iters = int(phase.get("cg", 10))
    lam = phase.get("lam")
    precond = phase.get("precond", "none")
    down, up = float(phase.get("down", 2.0 / 3.0)), float(phase.get("up", 1.5))
    x, g, f = state.x, state.g, state.loss
    if f != f:  # nothing evaluated yet: the start's loss (the ladder already had it)
        f, _seen, g = state.evaluate(x, count=False)
    if lam is None:  # the first step a gradient step whose largest pixel change is 0.02
        lam = float(tf.reduce_max(tf.abs(g))) / 0.02
    lam = float(lam)
    v = tf.square(g)
    m_inv = None
    d_prev = tf.zeros_like(x)
    while state.used + gn.cost * cg_iters + 1 <= budget + 1e-9 and not state.done():
        if precond == "adam":
            v = 0.999 * v + 0.001 * tf.square(g)
            m_inv = 1.0 / (tf.sqrt(v) + 0.1)
        d, q = _cg(gn, state, x, g, lam, d_prev * 0.95, cg_iters, m_inv)
        x_new = tf.clip_by_value(x + d, 0.0, 1.0)
        f_new, _seen, g_new = state.evaluate(x_new)
        rho = (f_new - f) / q if q < 0 else -1.0
        if rho < 0.25:
            lam *= up
        elif rho > 0.75:
            lam *= down
        state.curve.append([round(state.used, 2), round(f_new), f"gn lam {lam:.3g} rho {rho:.2f}"])
        if f_new < f:
            x, g, f, d_prev = x_new, g_new, f_new, d
        else:
            d_prev = tf.zeros_like(x)
    state.x, state.g, state.loss = x, g, f


def _cg(
    gn: GaussNewton,
    state: _State,
    x: Any,
    g: Any,
    lam: float,
    d0: Any,
    iters: int,
    m_inv: Any | None,
) -> tuple[Any, float]:
    """(Preconditioned) conjugate gradient on (G + λ·I)·d = −g from ``d0``, ``iters``
    products; returns d and the Gauss-Newton model's predicted change gᵀd + ½·dᵀG·d."""
    import tensorflow as tf

    def apply(p: Any) -> Any:
        state.spend(gn.cost)
        return gn.product(x, p) + lam * p

    def dot(a: Any, b: Any) -> float:
        return float(tf.reduce_sum(a * b))

    d, warm = d0, dot(d0, d0) > 0
    r = -g - apply(d) if warm else -g
    z = r * m_inv if m_inv is not None else r
    p, rz = z, dot(r, z)
    for _ in range(iters - (1 if warm else 0)):
        ap = apply(p)
        pap = dot(p, ap)
        if pap <= 0:
            break
        alpha = rz / pap
        d, r = d + alpha * p, r - alpha * ap
        z = r * m_inv if m_inv is not None else r
        rz_new = dot(r, z)
        p, rz = z + (rz_new / rz) * p, rz_new
    # (G + λ·I)·d = −g − r, so dᵀG·d = dᵀ(−g − r) − λ·dᵀd: the undamped model's change.
    return d, dot(g, d) + 0.5 * (dot(d, -g - r) - lam * dot(d, d))


if __name__ == "__main__":
    raise SystemExit(main())
