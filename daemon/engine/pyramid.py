"""What the optimisers move: the pixels, or a Laplacian pyramid of the image
(``parametrization``; Olah et al., "Feature Visualization", Distill 2017, and Lucid's
``param/spatial.py`` and ``param/color.py``).

The pyramid's variable is one flat vector z holding L levels z_k, level k at 1/2^k of the
image's size, and the image is the linear synthesis

    x = C · Σ_k s_k · up^k(z_k)        s_k = decay^k,  up = bilinear ×2,

C the identity (``pyramid``) or the square root of ImageNet's colour correlation
(``pyramid_color``, Lucid's matrix). The loss is the pixels' loss at x; its gradient in z is
Sᵀ·∇ₓL (the tape through the synthesis). Why it preconditions: upᵀ sums the 2×2 pixels it
spreads to, so a step along -∇_z moves x by -S·Sᵀ·∇ₓL, and S·Sᵀ = Σ_k s_k² 4^k blur_k. With
s_k = 1 a band at 1/2^k of the highest frequency is amplified ~4^k: the 1/f² preconditioner
of Lucid's spectrum parametrisation, which moves the coarse bands that pixel-space descent
moves slowest. ``decay`` < 1 weakens it (0.7: about 1/f; 0.5: S·Sᵀ ≈ a multiple of the
identity again). Measured on the trained stand-in (docs/performance.md, "Evaluations to the
tutorial's loss"): decay 1 and the decorrelated colour slow both optimisers; decay 0.7 with
``learning_rate`` 0.01 cut ``balanced``'s count on one pair of two and lost on the other.

s_0 = 1 keeps a pixel's meaning at the finest level: L-BFGS's first step (0.02 in the
largest coefficient) and Adam's ``learning_rate`` (the step of every coefficient, which
Adam normalises per coefficient) move the finest band as they move pixels; each coarser
band moves by s_k times that over its 2^k × 2^k footprint.

The box [0, 1] is kept on x by :meth:`PyramidSpace.project`: the finest level takes the
clipping's correction, so x becomes exactly ``clip(x)`` (the pixels' projection) and the loss
of the iterate is the loss of the picture handed back.

Which z stands for an image does not matter to the optimisers: every z with S·z = x gives
the same gradients, steps and L-BFGS pairs in x, so each scale starts from the image's
ordinary Laplacian decomposition (:func:`analyze`).
"""

from __future__ import annotations

import functools
import math
from typing import Protocol

import numpy as np
import tensorflow as tf

from neural_style.daemon.engine import lbfgs
from neural_style.daemon.engine.params import Parametrization, StyleParams

#: Lucid's square root of ImageNet's colour correlation (param/color.py), its columns
#: scaled so the largest has norm 1: x_rgb = C · z_colour.
_LUCID_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float64)
COLOR_SQRT = (_LUCID_SQRT / np.linalg.norm(_LUCID_SQRT, axis=0).max()).astype(np.float32)

Shape = tuple[int, int]


def level_shapes(height: int, width: int, levels: int) -> list[Shape]:
    """(height, width) of every level, finest first: each the ceiling of half the last,
    down to ``levels`` levels or to a 1-pixel side, whichever comes first."""
    shapes = [(height, width)]
    while len(shapes) < levels and min(shapes[-1]) > 1:
        h, w = shapes[-1]
        shapes.append((math.ceil(h / 2), math.ceil(w / 2)))
    return shapes


def level_scales(levels: int, decay: float) -> list[float]:
    """s_k = decay^k: 1 at the finest level (see the module's docstring)."""
    return [decay**k for k in range(levels)]


def _up(t: tf.Tensor, shape: Shape) -> tf.Tensor:
    return tf.image.resize(t, shape, method="bilinear")


def synthesize(
    levels: list[tf.Tensor], scales: list[float], shapes: list[Shape], color: tf.Tensor | None
) -> tf.Tensor:
    """x = C · Σ_k s_k · up^k(z_k), upsampling level by level (Horner's scheme)."""
    acc = scales[-1] * levels[-1]
    for k in range(len(levels) - 2, -1, -1):
        acc = _up(acc, shapes[k]) + scales[k] * levels[k]
    return acc if color is None else tf.einsum("bhwc,dc->bhwd", acc, color)


def analyze(
    x: tf.Tensor, scales: list[float], shapes: list[Shape], color_inv: tf.Tensor | None
) -> list[tf.Tensor]:
    """The levels of x's Laplacian decomposition (area-downsampled Gaussian levels, each
    minus its coarser neighbour upsampled), so that :func:`synthesize` gives x back exactly
    (up to float rounding), whatever the downsampling."""
    y = x if color_inv is None else tf.einsum("bhwc,dc->bhwd", x, color_inv)
    gauss = [y]
    for shape in shapes[1:]:
        gauss.append(tf.image.resize(gauss[-1], shape, method="area"))
    out = [gauss[-1] / scales[-1]]
    for k in range(len(shapes) - 2, -1, -1):
        out.insert(0, (gauss[k] - _up(gauss[k + 1], shapes[k])) / scales[k])
    return out


class Space(Protocol):
    """Where an optimiser's variable lives and how it maps to the image: ``start`` (the
    variable of an image), ``image``, ``pullback`` (a gradient in x to one in the variable),
    ``project`` (onto the images in [0, 1]) and ``free`` (the gradient L-BFGS's direction
    starts from: the variables not held at a bound)."""

    pixels: bool
    """The variable is the image itself (the fused Adam step applies)."""

    def start(self, x: np.ndarray) -> tf.Tensor: ...
    def image(self, z: tf.Tensor) -> tf.Tensor: ...
    def pullback(self, z: tf.Tensor, grad_x: tf.Tensor) -> tf.Tensor: ...
    def project(self, z: tf.Tensor) -> tf.Tensor: ...
    def free(self, z: tf.Tensor, g: tf.Tensor) -> tf.Tensor: ...


class PixelSpace:
    """The pixels themselves (the default): the box is a clip, held pixels are frozen."""

    pixels = True

    def start(self, x: np.ndarray) -> tf.Tensor:
        return tf.constant(x[None])

    def image(self, z: tf.Tensor) -> tf.Tensor:
        return z

    def pullback(self, z: tf.Tensor, grad_x: tf.Tensor) -> tf.Tensor:
        return grad_x

    def project(self, z: tf.Tensor) -> tf.Tensor:
        return tf.clip_by_value(z, 0.0, 1.0)

    def free(self, z: tf.Tensor, g: tf.Tensor) -> tf.Tensor:
        return lbfgs.free_gradient(z, g)


_FLAT = tf.TensorSpec((None,), tf.float32)
_IMG = tf.TensorSpec((1, None, None, 3), tf.float32)


class PyramidSpace:
    """One image size's pyramid: its traced synthesis, adjoint, analysis and projection."""

    pixels = False

    def __init__(self, height: int, width: int, levels: int, decay: float, color: bool):
        self.shapes = level_shapes(height, width, levels)
        self.scales = level_scales(len(self.shapes), decay)
        self.sizes = [h * w * 3 for h, w in self.shapes]
        c = tf.constant(COLOR_SQRT) if color else None
        c_inv = tf.constant(np.linalg.inv(COLOR_SQRT).astype(np.float32)) if color else None

        def split(z: tf.Tensor) -> list[tf.Tensor]:
            parts = tf.split(z, self.sizes)
            return [
                tf.reshape(p, (1, h, w, 3)) for p, (h, w) in zip(parts, self.shapes, strict=True)
            ]

        def synth(z: tf.Tensor) -> tf.Tensor:
            return synthesize(split(z), self.scales, self.shapes, c)

        def pullback(z: tf.Tensor, grad_x: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as tape:
                tape.watch(z)
                x = synth(z)
            return tape.gradient(x, z, output_gradients=grad_x)

        def analysis(x: tf.Tensor) -> tf.Tensor:
            levels = analyze(x, self.scales, self.shapes, c_inv)
            return tf.concat([tf.reshape(p, (-1,)) for p in levels], 0)

        def project(z: tf.Tensor) -> tf.Tensor:
            x = synth(z)
            d = tf.clip_by_value(x, 0.0, 1.0) - x  # the finest level absorbs the clipping
            if c_inv is not None:
                d = tf.einsum("bhwc,dc->bhwd", d, c_inv)
            coarse = tf.zeros((sum(self.sizes[1:]),), tf.float32)
            return z + tf.concat([tf.reshape(d, (-1,)) / self.scales[0], coarse], 0)

        self._synth = tf.function(synth, input_signature=[_FLAT], autograph=False)
        self._pullback = tf.function(pullback, input_signature=[_FLAT, _IMG], autograph=False)
        self._analysis = tf.function(analysis, input_signature=[_IMG], autograph=False)
        self._project = tf.function(project, input_signature=[_FLAT], autograph=False)

    @property
    def size(self) -> int:
        return sum(self.sizes)

    def start(self, x: np.ndarray) -> tf.Tensor:
        return self._analysis(tf.constant(x[None]))

    def image(self, z: tf.Tensor) -> tf.Tensor:
        return self._synth(z)

    def pullback(self, z: tf.Tensor, grad_x: tf.Tensor) -> tf.Tensor:
        return self._pullback(z, tf.cast(grad_x, tf.float32))

    def project(self, z: tf.Tensor) -> tf.Tensor:
        return self._project(z)

    def free(self, z: tf.Tensor, g: tf.Tensor) -> tf.Tensor:
        return g  # no coefficient has a bound of its own


@functools.lru_cache(maxsize=16)
def _pyramid(height: int, width: int, levels: int, decay: float, color: bool) -> PyramidSpace:
    return PyramidSpace(height, width, levels, decay, color)


_PIXELS = PixelSpace()


def space_for(params: StyleParams, height: int, width: int) -> Space:
    """The job's space at one scale (pyramids cached: their functions trace once per size)."""
    if params.parametrization is Parametrization.PIXELS:
        return _PIXELS
    color = params.parametrization is Parametrization.PYRAMID_COLOR
    return _pyramid(height, width, params.pyramid_levels, params.pyramid_decay, color)
