"""Frames mode's temporal term inside the job: Ruder et al. (2016)'s temporal loss
(:func:`~neural_style.daemon.engine.losses.temporal_loss`), weighted, added to every loss
and gradient evaluation at the finest scale. The frame tools that build the term (flow,
warp, reliability mask) are :mod:`neural_style.daemon.frames`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf

from neural_style.daemon.engine import color, images
from neural_style.daemon.engine.losses import temporal_loss
from neural_style.daemon.engine.params import ColorMode

if TYPE_CHECKING:
    from neural_style.daemon.engine.record import RunRecord

_IMAGE = tf.TensorSpec((1, None, None, 3), tf.float32)
_MASK = tf.TensorSpec((1, None, None, 1), tf.float32)
_SCALAR = tf.TensorSpec((), tf.float32)


@dataclass(frozen=True)
class TemporalInput:
    """The temporal term as the graph takes it."""

    target: tf.Tensor  # (1, h, w, 3)
    mask: tf.Tensor  # (1, h, w, 1)
    weight: tf.Tensor  # scalar


def temporal_input(term: Any, mode: ColorMode, work: tuple[int, int]) -> TemporalInput | None:
    """``term`` (``target`` (h, w, 3), ``mask`` (h, w), ``weight``) checked against the
    working size ``work`` (width, height), in the colours the optimisation sees (luminance in
    that mode); None without a term or with weight 0."""
    if term is None or not term.weight:
        return None
    target = np.asarray(term.target, np.float32)[..., :3]
    mask = np.asarray(term.mask, np.float32)
    w, h = work
    if target.shape[:2] != (h, w) or mask.shape[:2] != (h, w):
        raise images.bad(
            f"The temporal target is {target.shape[1]}x{target.shape[0]}; it must have the "
            f"working size {w}x{h}."
        )
    if mode is ColorMode.LUMINANCE:
        target = color.gray_rgb(color.luminance(target))
    return TemporalInput(
        tf.constant(target[None]), tf.constant(mask.reshape(1, h, w, 1)),
        tf.constant(float(term.weight), tf.float32),
    )  # fmt: skip


@tf.function(input_signature=[_IMAGE, _IMAGE, _MASK, _SCALAR], autograph=False)
def value_and_grad(x, target, mask, weight):
    """``weight · temporal_loss`` at ``x`` and its gradient."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = weight * temporal_loss(x, target, mask)
    return value, tape.gradient(value, x)


def add_temporal(run: RunRecord, x: tf.Tensor, out: tuple[Any, ...]) -> tuple[Any, ...]:
    """A loss evaluation's (total, content, style, tv, grad, x_content) with the run's
    temporal term (if any at this scale) added to the total and the gradient."""
    term = run.temporal
    if term is None:
        return out
    total, c, s, tv, grad, x_content = out
    value, g = value_and_grad(x, term.target, term.mask, term.weight)
    return total + value, c, s, tv, grad + tf.cast(g, grad.dtype), x_content
