"""What the generated image is compared with: content features, blended style Grams, the
loss weights, and the cache that keeps style Grams across jobs."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from neural_style.daemon.engine.params import StyleParams


@dataclass(frozen=True)
class Targets:
    """What the generated image is compared with, for one job at one working size."""

    content: tf.Tensor | None
    """(1, h, w, C) block5_conv2 features of the content; None = take them from the first
    step, whose image is the content itself (saves one forward pass per job)."""
    grams: tuple[tf.Tensor, ...]  # (1, C, C) blended style Grams, one per style layer


def loss_weights(params: StyleParams) -> tf.Tensor:
    """(content, style, total variation) weights as one tensor, the traced losses' input."""
    return tf.constant([params.content_weight, params.style_weight, params.tv_weight], tf.float32)


def content_target(
    targets: Targets, x: tf.Tensor, weights: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """(content target, loss weights) for the next evaluation. With the target deferred, x
    is the content image: the content term and its gradient are 0 there whatever the
    target, so evaluate with content weight 0 and a placeholder of the right rank."""
    if targets.content is not None:
        return targets.content, weights
    return tf.zeros((1, 1, 1, 1), tf.float32), weights * tf.constant([0.0, 1.0, 1.0])


def blend_grams(
    grams: Sequence[tuple[tf.Tensor, ...]], blend: Sequence[float]
) -> tuple[tf.Tensor, ...]:
    """The weighted sum of several styles' Grams, layer by layer."""
    blended: list[tf.Tensor] | None = None
    for one, weight in zip(grams, blend, strict=True):
        scaled = [g * weight for g in one]
        blended = (
            scaled if blended is None else [a + b for a, b in zip(blended, scaled, strict=True)]
        )
    assert blended is not None
    return tuple(blended)


class GramCache:
    """A small LRU cache of style Grams, keyed by the style's pixels, size and network
    variant: what makes a warm daemon's second job with the same style start at once."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._grams: OrderedDict[tuple[Any, ...], tuple[tf.Tensor, ...]] = OrderedDict()

    @staticmethod
    def key(style_rgb: np.ndarray, long_side: int, variant: tuple[str, ...]) -> tuple[Any, ...]:
        """The cache key of one style image at one size and network variant."""
        digest = hashlib.blake2b(style_rgb.tobytes(), digest_size=16)
        digest.update(repr(style_rgb.shape).encode())
        return (digest.hexdigest(), long_side, variant)

    def get(self, key: tuple[Any, ...]) -> tuple[tf.Tensor, ...] | None:
        """The Grams under ``key`` (now the most recently used), or None."""
        cached = self._grams.get(key)
        if cached is not None:
            self._grams.move_to_end(key)
        return cached

    def put(self, key: tuple[Any, ...], grams: tuple[tf.Tensor, ...]) -> None:
        """Keep ``grams``; the least recently used entries go beyond ``size``."""
        self._grams[key] = grams
        while len(self._grams) > self.size:
            self._grams.popitem(last=False)
