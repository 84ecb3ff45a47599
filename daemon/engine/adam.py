"""Adam: the update (Keras' form, clipped to [0, 1]), its step-size schedules, the Adam
tail of L-BFGS jobs, and the Adam loop over one scale."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from neural_style.daemon.engine.params import Optimizer, Schedule, StyleParams
from neural_style.daemon.engine.pyramid import space_for
from neural_style.daemon.engine.record import RunRecord
from neural_style.daemon.engine.targets import Targets, content_target, loss_weights
from neural_style.daemon.engine.temporal import add_temporal

if TYPE_CHECKING:
    from neural_style.daemon.engine.transfer import StyleTransfer

#: Adam's epsilon: TensorFlow's tutorial's (ε 0.1); β1, β2 and the step size are parameters
#: (StyleParams.adam_beta1, adam_beta2, learning_rate, lr_schedule).
ADAM_EPSILON = 0.1

#: The Adam tail's step size ramps up from 0 over this many steps (at most a third of the
#: tail). Started cold (moments 0) at full size from an L-BFGS iterate, Adam's first steps
#: move every pixel by about the step size and undo much of what L-BFGS did (measured: 4.8e6
#: -> 8.4e6 at 256 px). With its second moment warmed (below) a short ramp is enough: after
#: 200 L-BFGS evaluations at 512 px and 200 Adam steps, ramps of 1, 15, 40 and 100 steps
#: reached 3.27e6, 3.26e6, 3.31e6 and 3.42e6 (docs/performance.md, "Optimisers").
ADAM_TAIL_RAMP = 15
#: ... and its step counter starts here, so that Keras' bias corrections are ~1: its second
#: moment starts at the square of L-BFGS's last gradient rather than at 0.
ADAM_TAIL_T0 = 1000

_IMAGE = tf.TensorSpec((1, None, None, 3), tf.float32)
_SCALAR = tf.TensorSpec((), tf.float32)
_FLAT = tf.TensorSpec((None,), tf.float32)


@dataclass
class AdamState:
    """Adam's moments, step counter and (with ``ema``) the iterate average."""

    m: tf.Tensor
    v: tf.Tensor
    t: int
    ema: tf.Tensor | None = None


def adam_moments(
    m: tf.Tensor,
    v: tf.Tensor,
    grad: tf.Tensor,
    t: tf.Tensor,
    lr: tf.Tensor,
    beta1: tf.Tensor,
    beta2: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Keras' Adam step (ε added to the uncorrected √v, as the tutorial's
    ``tf.keras.optimizers.Adam`` does): (the step to subtract, m, v). ``lr`` and the decays
    are tensors so that a schedule or a job's settings do not re-trace."""
    m = m + (grad - m) * (1.0 - beta1)
    v = v + (tf.square(grad) - v) * (1.0 - beta2)
    alpha = lr * tf.sqrt(1.0 - tf.pow(beta2, t)) / (1.0 - tf.pow(beta1, t))
    return alpha * m / (tf.sqrt(v) + ADAM_EPSILON), m, v


def adam_update(
    x: tf.Tensor,
    m: tf.Tensor,
    v: tf.Tensor,
    grad: tf.Tensor,
    t: tf.Tensor,
    lr: tf.Tensor,
    beta1: tf.Tensor,
    beta2: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Keras' Adam update of the pixels (:func:`adam_moments`), then clip to [0, 1]."""
    step, m, v = adam_moments(m, v, grad, t, lr, beta1, beta2)
    return tf.clip_by_value(x - step, 0.0, 1.0), m, v


#: The update alone, for the tiled path (the gradient comes from tiling.py). Compiling it
#: with XLA (one fused kernel instead of a dozen element-wise ops) measured no faster inside
#: the engine's step (512x341, 2-core CPU: 1.078 vs 1.076 of the floor), so it is not.
_adam_update = tf.function(
    adam_update,
    input_signature=[_IMAGE, _IMAGE, _IMAGE, _IMAGE, _SCALAR, _SCALAR, _SCALAR, _SCALAR],
    autograph=False,
)  # fmt: skip
#: ... and the step alone, for a pyramid's coefficients (pyramid.py projects them after it).
_adam_moments = tf.function(
    adam_moments, input_signature=[_FLAT, _FLAT, _FLAT, _SCALAR, _SCALAR, _SCALAR, _SCALAR],
    autograph=False,
)  # fmt: skip


def adam_schedule(lr: float, schedule: Schedule, steps: int) -> list[float]:
    """Adam's step size for each of ``steps`` steps. ``cosine`` anneals from ``lr`` towards 0
    (half a cosine, ending one step short of 0): the L1 total-variation term keeps a
    constant-step Adam jittering around its kinks, a shrinking step lets it settle."""
    if schedule is Schedule.CONSTANT:
        return [lr] * steps
    return [lr * 0.5 * (1.0 + math.cos(math.pi * k / steps)) for k in range(steps)]


def has_adam_tail(params: StyleParams) -> bool:
    """An L-BFGS job whose finest scale ends in Adam steps (``adam_tail``)."""
    return params.optimizer is Optimizer.LBFGS and params.adam_tail > 0


def tail_params(params: StyleParams) -> StyleParams:
    """The parameters the Adam tail runs with: the job's own, as an Adam job."""
    return dataclasses.replace(params, optimizer=Optimizer.ADAM, adam_tail=0.0)


def split_tail(steps: int, share: float, keep: int = 1) -> tuple[int, int]:
    """(L-BFGS evaluations, Adam steps) of a job of ``steps`` with an Adam tail of ``share``;
    L-BFGS keeps at least ``keep`` (one per scale: its last gradient warms Adam up)."""
    adam = max(0, min(steps - keep, round(steps * share)))
    return steps - adam, adam


def tail_schedule(lr: float, schedule: Schedule, steps: int) -> list[float]:
    """The Adam tail's step sizes: :func:`adam_schedule`, ramped up linearly over the first
    ``min(ADAM_TAIL_RAMP, steps // 3)`` steps."""
    ramp = max(1, min(ADAM_TAIL_RAMP, steps // 3))
    return [a * min(1.0, (k + 1) / ramp) for k, a in enumerate(adam_schedule(lr, schedule, steps))]


def tail_state(grad: tf.Tensor) -> AdamState:
    """The Adam tail's start: second moment at the square of L-BFGS's gradient, first at 0,
    step counter at ADAM_TAIL_T0."""
    g = tf.cast(grad, tf.float32)
    return AdamState(tf.zeros_like(g), tf.square(g), ADAM_TAIL_T0)


def run_adam(
    engine: StyleTransfer,
    x0: np.ndarray,
    state: AdamState | None,
    targets: Targets,
    params: StyleParams,
    steps: int,
    run: RunRecord,
    schedule: list[float] | None = None,
) -> tuple[np.ndarray, AdamState]:
    """``steps`` Adam updates from ``x0`` (and ``state``, else fresh moments); the step sizes
    are ``schedule`` or else the job's own (adam_schedule). The updates move the job's
    variable (pyramid.space_for: the pixels, or a pyramid's coefficients)."""
    fns = engine.functions(params)
    weights = loss_weights(params)
    space = space_for(params, x0.shape[0], x0.shape[1])
    z = space.start(x0)
    if state is None:
        state = AdamState(tf.zeros_like(z), tf.zeros_like(z), 0)
    m, v = state.m, state.v
    beta1 = tf.constant(params.adam_beta1, tf.float32)
    beta2 = tf.constant(params.adam_beta2, tf.float32)
    if schedule is None:
        schedule = adam_schedule(params.learning_rate, params.lr_schedule, steps)
    decay = params.ema
    ema = state.ema if decay else None
    best, best_loss = z, float("inf")
    t = state.t
    x = space.image(z)
    target, step_weights = content_target(targets, x, weights)
    # a temporal term is added outside the fused step: the step runs unfused then
    tiled = engine.tile_for(x0.shape[0], x0.shape[1]) is not None or run.temporal is not None
    for k in range(steps):
        t += 1
        lr = tf.constant(schedule[k], tf.float32)
        if space.pixels and not tiled:
            z_new, m, v, total, c, s, tv, x_content = fns.adam_step(
                z, m, v, tf.constant(float(t)), target, targets.grams, step_weights, lr, beta1,
                beta2,
            )  # fmt: skip
        else:
            total, c, s, tv, grad, x_content = add_temporal(
                run, x, engine.loss_and_grad(fns, params, x, target, targets.grams, step_weights)
            )
            grad = space.pullback(z, grad)
            if space.pixels:
                z_new, m, v = _adam_update(z, m, v, grad, tf.constant(float(t)), lr, beta1, beta2)
            else:
                step, m, v = _adam_moments(m, v, grad, tf.constant(float(t)), lr, beta1, beta2)
                z_new = space.project(z - step)
        if targets.content is None:  # x was the content image: these are its features
            targets = Targets(x_content, targets.grams)
            target, step_weights = targets.content, weights
        loss = float(total)
        if loss < best_loss:  # loss was evaluated at z (before this update)
            best, best_loss = z, loss
        stop = run.report(loss, float(c), float(s), float(tv), x)
        z = z_new
        x = space.image(z)
        if decay:
            ema = z if ema is None else decay * ema + (1.0 - decay) * z
        if stop:
            break
    else:
        if not decay:
            # The final update is usually the best image: evaluate it so it can win.
            total, *_ = add_temporal(
                run, x, engine.loss_and_grad(fns, params, x, target, targets.grams, weights)
            )
            if float(total) < best_loss:
                best = z
    result = ema if decay and ema is not None else best
    return space.image(result).numpy()[0], AdamState(m, v, t, ema)
