"""The L-BFGS orchestration: projected L-BFGS over one scale (lbfgs.py does the method),
its restarts, and the finest scale of an ``adam_tail`` job (L-BFGS, then Adam)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf

from neural_style.daemon.engine import lbfgs
from neural_style.daemon.engine.adam import run_adam, tail_params, tail_schedule, tail_state
from neural_style.daemon.engine.params import StyleParams
from neural_style.daemon.engine.pyramid import space_for
from neural_style.daemon.engine.record import RunRecord
from neural_style.daemon.engine.targets import Targets, content_target, loss_weights
from neural_style.daemon.engine.temporal import add_temporal

if TYPE_CHECKING:
    from neural_style.daemon.engine.transfer import StyleTransfer

#: L-BFGS's correction pairs (m). 20 measured better than 10 (256 px, tubingen + starry
#: night, stand-in, 100 evaluations: 4.47e6 vs 4.55e6) at the same time per evaluation.
LBFGS_HISTORY = 20
#: ... and the pairs (2·m float32 images) are capped at this many bytes (at 4096x2731 px,
#: 20 pairs would need 5.4 GB).
LBFGS_HISTORY_BYTES = 2 * 1024**3


def run_lbfgs(
    engine: StyleTransfer,
    x0: np.ndarray,
    targets: Targets,
    params: StyleParams,
    steps: int,
    run: RunRecord,
) -> tuple[np.ndarray, Targets, tf.Tensor | None]:
    """Projected L-BFGS on [0, 1] (engine/lbfgs.py); one step = one loss+gradient evaluation.
    It moves the job's variable (pyramid.space_for: the pixels, or a pyramid's coefficients).

    Returns the best image, the targets (with the content's features filled in when they
    were deferred) and the gradient in the variable at the best point (None if nothing was
    evaluated)."""
    fns = engine.functions(params)
    weights = loss_weights(params)
    space = space_for(params, x0.shape[0], x0.shape[1])
    z0 = space.start(x0)
    history = int(
        np.clip(LBFGS_HISTORY_BYTES // (8 * int(z0.shape.num_elements())), 3, LBFGS_HISTORY)
    )
    best: dict[str, Any] = {"loss": float("inf"), "x": z0, "g": None}
    current = {"targets": targets}
    evaluations = 0

    def evaluate(z: tf.Tensor) -> tuple[float, tf.Tensor]:
        nonlocal evaluations
        if evaluations >= steps:
            raise lbfgs.Stop
        evaluations += 1
        x = space.image(z)
        target, step_weights = content_target(current["targets"], x, weights)
        total, c, s, tv, grad, x_content = add_temporal(
            run, x, engine.loss_and_grad(fns, params, x, target, targets.grams, step_weights)
        )
        grad = space.pullback(z, grad)
        if current["targets"].content is None:  # the first evaluation is at the content
            current["targets"] = Targets(x_content, targets.grams)
        loss = float(total)
        if loss < best["loss"]:
            best["loss"], best["x"], best["g"] = loss, z, grad
        if run.report(loss, float(c), float(s), float(tv), x):
            raise lbfgs.Stop
        return loss, grad

    # The method gives up only where not even a gradient step decreases the loss (float32
    # round-off on a plateau): restart it from the best point while steps remain, and stop
    # when a restart itself makes no progress.
    while evaluations < steps and not run.stopped:
        before, start_loss = evaluations, best["loss"]
        lbfgs.minimize(evaluate, best["x"], history, space.project, space.free)
        if evaluations - before <= 2 or not best["loss"] < start_loss:
            break
    return space.image(best["x"]).numpy()[0], current["targets"], best["g"]


def run_lbfgs_then_adam(
    engine: StyleTransfer,
    x: np.ndarray,
    targets: Targets,
    params: StyleParams,
    lbfgs_steps: int,
    adam_steps: int,
    run: RunRecord,
) -> np.ndarray:
    """The finest scale of an ``adam_tail`` job: L-BFGS, then Adam from its best point,
    then (``polish``) L-BFGS again from Adam's end point.

    Adam's second moment starts at the square of L-BFGS's gradient there, its first at 0,
    its step counter at ADAM_TAIL_T0 and its step size ramps up (tail_schedule): started
    cold, Adam's first steps would undo what L-BFGS found.
    """
    x, targets, grad = run_lbfgs(engine, x, targets, params, lbfgs_steps, run)
    if run.stopped or grad is None:
        return x
    polish = min(adam_steps - 1, round(adam_steps * params.polish))
    adam = tail_params(params)
    schedule = tail_schedule(adam.learning_rate, adam.lr_schedule, adam_steps - polish)
    x, _ = run_adam(engine, x, tail_state(grad), targets, adam, adam_steps - polish, run, schedule)
    if polish > 0 and not run.stopped:
        x, _, _ = run_lbfgs(engine, x, targets, params, polish, run)
    return x
