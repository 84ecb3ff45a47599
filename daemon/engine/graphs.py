"""The traced TensorFlow functions of one network variant: features, losses, gradient and
the fused Adam step."""

from __future__ import annotations

from typing import TypeAlias

import tensorflow as tf

from neural_style.daemon.engine.adam import adam_update
from neural_style.daemon.engine.losses import content_loss, gram_matrix, style_loss, tv_loss
from neural_style.daemon.engine.vgg import CONTENT_LAYERS, STYLE_LAYERS, VGGFeatures

IMAGE = tf.TensorSpec((1, None, None, 3), tf.float32)
SCALAR = tf.TensorSpec((), tf.float32)
_CONTENT = tf.TensorSpec((1, None, None, None), tf.float32)
_GRAMS = tuple(tf.TensorSpec((1, None, None), tf.float32) for _ in STYLE_LAYERS)
_WEIGHTS = tf.TensorSpec((3,), tf.float32)

T: TypeAlias = tf.Tensor
Grams: TypeAlias = tuple[tf.Tensor, ...]


class Functions:
    """The traced TensorFlow functions for one network variant (pooling, padding, and the
    style loss's per-layer normalisation).

    Input signatures have free height and width, so each is traced once for every size.
    """

    def __init__(
        self, features: VGGFeatures, pooling: str, padding: str, style_norm: str = "none"
    ) -> None:
        normalised = style_norm == "layer"

        def feats(x: tf.Tensor) -> dict[str, tf.Tensor]:
            return features(x, pooling=pooling, padding=padding)

        def losses(x: T, content_target: T, gram_targets: Grams, weights: T) -> tuple[T, ...]:
            f = feats(x)
            x_content = tf.cast(f[CONTENT_LAYERS[0]], tf.float32)
            c = weights[0] * content_loss(x_content, content_target)
            s = weights[1] * style_loss(
                [gram_matrix(f[n]) for n in STYLE_LAYERS], gram_targets, normalised
            )
            t = weights[2] * tv_loss(x)
            return c + s + t, c, s, t, x_content

        def loss_and_grad(
            x: T, content_target: T, gram_targets: Grams, weights: T
        ) -> tuple[T, ...]:
            """Loss terms, gradient, and x's own content features (free: already computed;
            they are the content target when x is the content image)."""
            with tf.GradientTape() as tape:
                tape.watch(x)
                total, c, s, t, x_content = losses(x, content_target, gram_targets, weights)
            return total, c, s, t, tape.gradient(total, x), x_content

        def adam_step(
            x: T, m: T, v: T, t: T, content_target: T, gram_targets: Grams, weights: T,
            lr: T, beta1: T, beta2: T,
        ) -> tuple[T, ...]:  # fmt: skip
            """Loss, gradient and one Adam update, fused into one graph."""
            total, c, s, tv, grad, x_content = loss_and_grad(
                x, content_target, gram_targets, weights
            )
            x_new, m, v = adam_update(x, m, v, grad, t, lr, beta1, beta2)
            return x_new, m, v, total, c, s, tv, x_content

        def extract(x: tf.Tensor) -> tuple[tf.Tensor, tuple[tf.Tensor, ...]]:
            f = feats(x)
            content = tf.cast(f[CONTENT_LAYERS[0]], tf.float32)
            return content, tuple(gram_matrix(f[name]) for name in STYLE_LAYERS)

        self.extract = tf.function(extract, input_signature=[IMAGE], autograph=False)
        self.loss_and_grad = tf.function(
            loss_and_grad, input_signature=[IMAGE, _CONTENT, _GRAMS, _WEIGHTS], autograph=False
        )
        self.adam_step = tf.function(
            adam_step,
            input_signature=[
                IMAGE, IMAGE, IMAGE, SCALAR, _CONTENT, _GRAMS, _WEIGHTS, SCALAR, SCALAR,
                SCALAR,
            ],
            autograph=False,  # no tensor-dependent Python control flow: plain tracing
        )  # fmt: skip
