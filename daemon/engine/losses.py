"""The brief's losses as pure TensorFlow functions.

Normalisation (chosen so one set of weights works at every image size, and so that the
numbers equal TensorFlow's style-transfer tutorial at its 512x384 working size):

* Gram matrix: ``G = FᵀF / (H·W)`` for features F of shape (H·W, C): a mean over positions,
  so it does not grow with the image.
* Content loss: mean of squared feature differences at ``block5_conv2``.
* Style loss: per layer, the mean of squared Gram differences; averaged over the five layers.
* Total variation: ``tf.image.total_variation`` (sum of absolute neighbour differences,
  channels summed) scaled by ``TV_REFERENCE_AREA / (H·W)``; that is a per-pixel mean times
  the tutorial's reference area, so the tutorial's weight of 30 keeps its meaning.

Grams and losses are always computed in float32, whatever the convolutions ran in
(half-precision Grams overflow); only the Grams' gradient runs in the features' dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf

#: Pixel area at which the TV term equals tf.image.total_variation (the tutorial's 512x384).
TV_REFERENCE_AREA = 512 * 384


@tf.custom_gradient
def _gram_sum(flat: tf.Tensor) -> tuple[tf.Tensor, Callable[[tf.Tensor], tf.Tensor]]:
    """(B, N, C) -> (B, C, C) = FᵀF in float32, with a one-matmul gradient in F's dtype.

    Autodiff of ``FᵀF`` (or of the einsum) differentiates each operand separately: two
    N×C×C products on the way back. Both operands are the same F, so the gradient is
    ``F·(dG + dGᵀ)``, one product. That halves the backward cost of the Grams, which are
    the engine's main cost beyond the VGG floor (measured at 512x341: 480 ms -> 230 ms for
    the five layers' forward plus backward on a Zen 1 CPU).

    The Gram itself is always a float32 product (a bf16 Gram rounds each entry to 8 bits,
    and the loss is the small difference of two Grams). Its gradient is a product in F's
    own dtype: with bf16 features that is the bf16 convolutions' gradient precision anyway,
    and it spares the float32 copy of F and a float32 product (512x384, Zen 4 with
    AVX512_BF16: a bf16 loss+gradient 0.860 -> 0.816 s against a 0.744 s VGG floor; the
    gradient moved by 0.16 % of its norm; docs/performance.md, "Precision").

    With one image (the engine's case: batch 1 is static in its signatures) both products
    run as plain 2-D MatMuls: TensorFlow's batched kernel was 13 % slower for these
    tall-and-thin shapes (five layers at 512x341, forward + backward, AVX-512 CPU: 98 ms ->
    85 ms). Exploiting the Gram's symmetry (half-size blocks, 3/4 of the products) measured
    slower still at every block size (87-125 ms): smaller products run less efficiently.
    """
    wide = tf.cast(flat, tf.float32)
    if flat.shape[0] == 1:
        f2, w2 = flat[0], wide[0]
        gram = tf.matmul(w2, w2, transpose_a=True)[None]

        def grad(upstream: tf.Tensor) -> tf.Tensor:
            u = tf.cast(upstream[0] + tf.transpose(upstream[0]), flat.dtype)
            return tf.matmul(f2, u)[None]

        return gram, grad

    gram = tf.matmul(wide, wide, transpose_a=True)

    def grad_batched(upstream: tf.Tensor) -> tf.Tensor:
        u = tf.cast(upstream + tf.linalg.matrix_transpose(upstream), flat.dtype)
        return tf.matmul(flat, u)

    return gram, grad_batched


def gram_matrix(features: tf.Tensor) -> tf.Tensor:
    """(B, H, W, C) features (any float dtype) -> (B, C, C) float32 Grams divided by H·W."""
    shape = tf.shape(features)
    positions = tf.cast(shape[1] * shape[2], tf.float32)
    flat = tf.reshape(features, [shape[0], shape[1] * shape[2], shape[3]])
    return _gram_sum(flat) / positions


def masked_gram_matrix(features: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """Gram matrix over positions weighted by ``weights`` (B, H, W, 1), divided by their sum.

    With all weights 1 this equals :func:`gram_matrix`.
    """
    features = tf.cast(features, tf.float32)
    weighted = features * weights
    total = tf.maximum(tf.reduce_sum(weights, axis=[1, 2, 3]), 1e-8)
    gram = tf.einsum("bijc,bijd->bcd", weighted, features)
    return gram / total[:, None, None]


def content_loss(features: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """Mean squared difference of feature maps (scalar)."""
    diff = tf.cast(features, tf.float32) - tf.cast(target, tf.float32)
    return tf.reduce_mean(tf.square(diff))


def style_loss(
    grams: Sequence[tf.Tensor], targets: Sequence[tf.Tensor], normalised: bool = False
) -> tf.Tensor:
    """Mean over layers of the mean squared Gram difference (scalar).

    ``normalised``: each layer's term is instead ``mean(d²) / mean(|d|)`` (crowsonkb's
    style-transfer-pytorch, ``ScaledMSELoss``: its gradient's L1 norm is about constant, so
    no layer's scale dominates while its residual is large), times ``mean(|target|)`` so
    the term keeps the plain one's order of magnitude (they are equal where ``|d|`` is the
    target's size). A fixed function of the image, so L-BFGS's line search stays valid.
    """
    terms = []
    for g, t in zip(grams, targets, strict=True):
        d = g - t
        if normalised:
            scale = tf.reduce_mean(tf.abs(t))
            terms.append(
                tf.reduce_mean(tf.square(d)) * scale / (tf.reduce_mean(tf.abs(d)) + 1e-6 * scale)
            )
        else:
            terms.append(tf.reduce_mean(tf.square(d)))
    return tf.add_n(terms) / float(len(terms))


def tv_loss(image: tf.Tensor) -> tf.Tensor:
    """Total variation of (B, H, W, C) images, normalised to the reference area (scalar)."""
    image = tf.cast(image, tf.float32)
    dy = tf.reduce_sum(tf.abs(image[:, 1:, :, :] - image[:, :-1, :, :]))
    dx = tf.reduce_sum(tf.abs(image[:, :, 1:, :] - image[:, :, :-1, :]))
    shape = tf.shape(image)
    area = tf.cast(shape[1] * shape[2], tf.float32)
    return (dx + dy) * (TV_REFERENCE_AREA / area)


def temporal_loss(image: tf.Tensor, target: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Ruder et al. (2016)'s short-term temporal loss (scalar): the squared deviation of
    (B, H, W, C) ``image`` from ``target`` (the previous stylized frame warped onto this
    one) where ``mask`` (B, H, W, 1; 1 = the warp is reliable, 0 at disocclusions and
    motion boundaries) allows it, summed and divided by H·W·C: a per-pixel mean, so one
    weight works at every size."""
    image = tf.cast(image, tf.float32)
    diff = tf.square(image - tf.cast(target, tf.float32)) * tf.cast(mask, tf.float32)
    shape = tf.shape(image)
    count = tf.cast(shape[1] * shape[2] * shape[3], tf.float32)
    return tf.reduce_sum(diff) / count
