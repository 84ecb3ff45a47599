"""Tiled feature extraction and tiled loss + gradient, for images too big for one pass.

Why: a forward + backward pass of the truncated VGG-19 keeps every activation for the
backward pass; at 4096x2731 px the block1 activations alone are ~11 GB, and the whole pass
needs far more than this machine's 24 GiB. Tiling bounds the peak memory by the size of one
tile instead of the image.

How (pure functions over a :class:`~neural_style.daemon.engine.vgg.VGGFeatures`, so every network
variant — pooling, padding — works the same way):

* The image is cut into a grid of *interiors* (multiples of 16 px: block5 features are at
  1/16 resolution, so every interior maps exactly onto whole feature-map cells at every
  layer). Each tile's *input* is its interior plus ``halo`` px on every side, clipped at the
  image border, where the network pads exactly as it does for the whole image.
* **Exactness of the halo.** A block5_conv2 cell covering pixels ``[16i, 16i+16)`` depends
  on the input pixels ``[16i-86, 16i+16+86)`` (3x3 convolutions and 2x2 pools; see
  :func:`receptive_margin`). With ``halo >= 86`` every interior cell of every style and
  content layer is computed from exactly the same pixels through exactly the same
  arithmetic as in the untiled pass: the padding at a tile's cut edges never reaches an
  interior cell. The tiled results then equal the untiled ones up to float summation order
  (measured: relative errors ~1e-7 — see below). :data:`DEFAULT_HALO` is 96, the next
  multiple of 16. Smaller halos are an approximation whose error grows as the halo shrinks.
* **Grams** are sums over positions, so each tile contributes its interior's FᵀF and the
  sum is divided by the whole layer's H·W at the end.
* **Gradient.** The style loss couples the whole image through the Grams, so
  :func:`tiled_loss_and_grad` makes two passes. Pass 1 (forward only) computes the whole
  image's Grams and content features; the losses and their gradients with respect to the
  Grams (``dL/dG_l = w_s·2(G_l − A_l)/(n_layers·C_l²)``) and the content features
  (``w_c·2(F − T)/N``) are then known in closed form. Pass 2 runs, per tile, forward +
  backward of the linear surrogate ``Σ_l ⟨stop_grad(dL/dG_l), F_lᵀF_l / (H_l·W_l)⟩ +
  ⟨stop_grad(dL/dF), F⟩`` over the tile's interior cells, whose gradient is the true one.
  The gradient with respect to the tile's *whole input* (halo included) is added into the
  full gradient: the loss is the sum of the interiors' shares, and a pixel near a tile edge
  also feeds cells in the neighbouring tiles' interiors, which only their own tiles' backward
  passes see. (Keeping only each tile's interior gradient instead drops those contributions:
  measured below, that is 19 % wrong whatever the halo.)
* Total variation is elementwise and cheap: it and its gradient are computed untiled.

Measured on this machine (2 cores, 24 GiB, TensorFlow 2.21 CPU, synthetic weights), a
256x192 image (random pixels, content and style targets from other random images, weights
(1, 1, 1e-3)) in 128 px tiles (6 tiles), relative L2 error of the gradient against the
untiled ``loss_and_grad``, and the worst relative error of the loss terms:

====  ====================  ====================  ======================  ==============
halo  max/zero: gradient    max/zero: worst term  avg/reflect: gradient   interior-only
====  ====================  ====================  ======================  ==============
0     2.9                   150 (style)           0.15                    -
32    5.4e-2                1.7 (style)           2.2e-3                  0.20
64    1.6e-4                2.0e-3 (style)        1.8e-6                  0.19
80    2.0e-7                1.0e-6                2.3e-7                  -
96    2.0e-7                1.1e-7                2.3e-7                  0.19
128   2.0e-7                1.1e-7                2.3e-7                  0.19
====  ====================  ====================  ======================  ==============

("interior-only": max/zero, each tile writing only its interior's gradient.) From 96 px on
the tiled pass is exact to float rounding, hence :data:`DEFAULT_HALO` = 96.

Memory model (peak RSS, ``ru_maxrss``, of one untiled ``loss_and_grad`` in a fresh
subprocess, square images, synthetic weights; the process holds ~0.74 GB before it):

=====  ==========  =========
side   pixels      peak RSS
=====  ==========  =========
512    262 144     2.02 GB
768    589 824     3.06 GB
1024   1 048 576   4.75 GB
=====  ==========  =========

A least-squares line gives 1.07 GB + 3487 B/px (residuals under 70 MB); the slope grows a
little with size (3168 B/px from 512 to 768, 3690 from 768 to 1024), so :data:`MEMORY_MODEL`
rounds it up to 3600 B/px. With the 6 GiB budget that admits a tile input of ~1220 px
square: :func:`auto_tile` gives 1024 px tiles (1216 px with the 96 px halo), and None (no
tiling) up to ~1.49 Mpx, e.g. 1024x1024 or 1440x1000.

Benchmark (``benchmarks/bench_tiling.py``: one tiled loss + gradient, 3:2 image, fresh
process, synthetic weights; the machine was shared with other jobs for part of the runs,
load 0-6 on its 2 cores; 1024 and 2048 were run twice, 57.7 / 59.0 s and 298 / 305 s):

=========  ====================  =======  ========  ==========
long side  tiles                 seconds  peak RSS  RSS before
=========  ====================  =======  ========  ==========
1024       1 (auto_tile: None)   58       3.04 GiB  0.68 GiB
2048       4 of <= 1024 px       300      3.79 GiB  0.72 GiB
4096       12 of <= 1024 px      825      5.65 GiB  1.07 GiB
=========  ====================  =======  ========  ==========

The model holds for the tiled pass: at 2048 the tile inputs (at most 1216x784 px) predict
4.5 GB and the whole step measured 4.07 GB; at 4096 (inputs at most 1216x1104 px) 5.9 GB
predicted, 6.06 GB measured, of which a few hundred MB are full-size arrays (image, its
gradient, content features) that grow with the image, not the tile. One step at 4096 px
thus needs ~6 GB of the 24 GiB. Time is ~60-80 s per million tile-input pixels (both
passes): the halo adds ~30 % at 1024 px tiles, pass 1 another forward (~1/3).
"""

from __future__ import annotations

import itertools
import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from neural_style.daemon.engine.losses import content_loss, style_loss, tv_loss
from neural_style.daemon.engine.vgg import CONTENT_LAYERS, STYLE_LAYERS, VGG19_LAYERS

#: Tile origins and halos are multiples of this: block5 features are at 1/16 resolution.
ALIGN = 16

#: Default halo (px): the next multiple of 16 above block5_conv2's receptive margin (86 px),
#: which makes the tiled results exact up to float rounding.
DEFAULT_HALO = 96

#: Peak memory one tile's forward + backward may use (the machine has 24 GiB; leave room for
#: the full-size arrays, the daemon and whatever else runs).
TILE_BUDGET_BYTES = 6 * 2**30

#: Measured memory model, see the module docstring: (base bytes, bytes per input pixel).
MEMORY_MODEL: tuple[float, float] = (1.07e9, 3.6e3)


@dataclass(frozen=True)
class Tile:
    """One tile: its interior (the pixels it is responsible for) and its input window
    (interior + halo, clipped to the image), both as [start, stop) pixel ranges."""

    y0: int
    y1: int
    x0: int
    x1: int
    in_y0: int
    in_y1: int
    in_x0: int
    in_x1: int

    def bounds(self) -> np.ndarray:
        """The interior relative to the input window, (y0, y1, x0, x1) int32."""
        dy, dx = self.in_y0, self.in_x0
        return np.array([self.y0 - dy, self.y1 - dy, self.x0 - dx, self.x1 - dx], np.int32)


def _check_aligned(name: str, value: int) -> None:
    if value < 0 or value % ALIGN:
        raise ValueError(f"{name} must be a non-negative multiple of {ALIGN} px, got {value}.")


def _splits(length: int, tile: int) -> list[int]:
    """Boundaries 0 = b_0 < ... < b_n = length of n = ceil(length / tile) interiors, all
    but the last a multiple of 16 apart and none longer than ``tile`` (balanced sizes, so no
    tile is a sliver when ``tile`` is large)."""
    count = max(1, math.ceil(length / tile))
    step = min(tile, ALIGN * math.ceil(length / (count * ALIGN)))
    cuts = [k * step for k in range(count) if k * step < length]
    return [*cuts, length]


def tile_grid(height: int, width: int, tile: int, halo: int = DEFAULT_HALO) -> list[Tile]:
    """The tiles covering a height x width image, row by row. ``tile`` (the largest interior
    side) and ``halo`` must be multiples of 16; a tile larger than the image gives one tile."""
    if tile <= 0:
        raise ValueError(f"tile must be positive, got {tile}.")
    _check_aligned("tile", tile)
    _check_aligned("halo", halo)
    rows, cols = _splits(height, tile), _splits(width, tile)
    return [
        Tile(y0, y1, x0, x1, *_window(y0, y1, height, halo), *_window(x0, x1, width, halo))
        for y0, y1 in itertools.pairwise(rows)
        for x0, x1 in itertools.pairwise(cols)
    ]


def _window(start: int, stop: int, length: int, halo: int) -> tuple[int, int]:
    return max(0, start - halo), min(length, stop + halo)


def layer_scale(layer: str) -> int:
    """Downsampling factor of a VGG-19 layer's feature map (1, 2, 4, 8 or 16)."""
    return 2 ** VGG19_LAYERS[: VGG19_LAYERS.index(layer)].count("pool")


def receptive_margin(layer: str) -> int:
    """Pixels beyond its own ``scale``-px block on each side that one cell of ``layer``
    depends on (86 for block5_conv2, 54 for block5_conv1, 2 for block1_conv2).

    Walks the network backwards: a 3x3 "same" convolution widens the dependency by one cell
    each side; a 2x2 stride-2 pool maps cells [a, b] to [2a, 2b + 1] one level up.
    """
    lo, hi = 0, 0  # the cell range, relative to the cell itself, at the current level
    for name in reversed(VGG19_LAYERS[: VGG19_LAYERS.index(layer) + 1]):
        if name == "pool":
            lo, hi = 2 * lo, 2 * hi + 1
        else:
            lo, hi = lo - 1, hi + 1
    scale = layer_scale(layer)
    return max(-lo, hi - (scale - 1))


# ---------------------------------------------------------------------- traced functions
_IMAGE = tf.TensorSpec((1, None, None, 3), tf.float32)
_BOUNDS = tf.TensorSpec((4,), tf.int32)
_FEATS = tf.TensorSpec((1, None, None, None), tf.float32)
_GRAM = tf.TensorSpec((1, None, None), tf.float32)


class _TileFunctions:
    """Per-tile forward and surrogate backward, traced once for free tile sizes."""

    def __init__(
        self,
        features: Any,
        pooling: str,
        padding: str,
        content_layer: str,
        style_layers: tuple[str, ...],
    ) -> None:
        scales = {name: layer_scale(name) for name in (content_layer, *style_layers)}

        def interior(f: dict[str, tf.Tensor], name: str, bounds: tf.Tensor) -> tf.Tensor:
            s = scales[name]
            # Origins are multiples of 16, so these are exact; a stop at the image's edge
            # floors like the network's own VALID pools.
            y0, y1, x0, x1 = bounds[0] // s, bounds[1] // s, bounds[2] // s, bounds[3] // s
            return tf.cast(f[name][:, y0:y1, x0:x1, :], tf.float32)

        def forward(x: tf.Tensor, bounds: tf.Tensor) -> tuple[tf.Tensor, tuple[tf.Tensor, ...]]:
            """Interior content features and interior Gram *sums* (FᵀF, not yet divided)."""
            f = features(x, pooling=pooling, padding=padding)
            content = interior(f, content_layer, bounds)
            sums = []
            for name in style_layers:
                fi = interior(f, name, bounds)
                sums.append(tf.einsum("bijc,bijd->bcd", fi, fi))
            return content, tuple(sums)

        def backward(
            x: tf.Tensor,
            bounds: tf.Tensor,
            gram_grads: tuple[tf.Tensor, ...],
            content_grad: tf.Tensor,
        ) -> tf.Tensor:
            """Gradient of the tile's surrogate with respect to the tile's whole input.

            ``gram_grads[l]`` is dL/dG_l already divided by the whole layer's H·W, so
            ⟨gram_grads[l], FᵀF⟩ has the true gradient; ``content_grad`` is dL/dF on the
            interior's content cells.
            """
            with tf.GradientTape() as tape:
                tape.watch(x)
                content, sums = forward(x, bounds)
                surrogate = tf.reduce_sum(content * content_grad)
                for d, g in zip(gram_grads, sums, strict=True):
                    surrogate += tf.reduce_sum(d * g)
            return tape.gradient(surrogate, x)

        grams = tuple(_GRAM for _ in style_layers)
        self.forward = tf.function(forward, input_signature=[_IMAGE, _BOUNDS])
        self.backward = tf.function(backward, input_signature=[_IMAGE, _BOUNDS, grams, _FEATS])


_CACHE: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], _TileFunctions]] = (
    weakref.WeakKeyDictionary()
)


def _functions(
    features: Any, pooling: str, padding: str, content_layer: str, style_layers: Sequence[str]
) -> _TileFunctions:
    """The traced tile functions for this extractor and variant (cached per extractor)."""
    key = (pooling, padding, content_layer, tuple(style_layers))
    per_features = _CACHE.setdefault(features, {})
    if key not in per_features:
        per_features[key] = _TileFunctions(features, *key)
    return per_features[key]


# ---------------------------------------------------------------------- public API
def _as_image(image: Any) -> np.ndarray:
    array = np.asarray(image, dtype=np.float32)
    if array.ndim != 4 or array.shape[0] != 1 or array.shape[3] != 3:
        raise ValueError(f"expected a (1, H, W, 3) image, got shape {array.shape}.")
    return array


def _pass1(
    fns: _TileFunctions,
    x: np.ndarray,
    tiles: list[Tile],
    content_layer: str,
    style_layers: Sequence[str],
) -> tuple[np.ndarray, list[tf.Tensor]]:
    """Forward over every tile: the whole image's content features and Grams."""
    height, width = x.shape[1:3]
    cs = layer_scale(content_layer)
    content: np.ndarray | None = None
    sums: list[np.ndarray] | None = None
    for t in tiles:
        window = x[:, t.in_y0 : t.in_y1, t.in_x0 : t.in_x1, :]
        c_tile, s_tile = fns.forward(tf.constant(window), tf.constant(t.bounds()))
        c_tile = c_tile.numpy()
        if content is None:
            content = np.zeros((1, height // cs, width // cs, c_tile.shape[3]), np.float32)
        cy, cx = t.y0 // cs, t.x0 // cs
        content[:, cy : cy + c_tile.shape[1], cx : cx + c_tile.shape[2], :] = c_tile
        # float64 accumulation: a 4096 px image sums millions of positions over the tiles.
        tile_sums = [s.numpy().astype(np.float64) for s in s_tile]
        sums = tile_sums if sums is None else [a + b for a, b in zip(sums, tile_sums, strict=True)]
    assert content is not None and sums is not None
    grams = []
    for name, total in zip(style_layers, sums, strict=True):
        s = layer_scale(name)
        grams.append(tf.constant((total / ((height // s) * (width // s))).astype(np.float32)))
    return content, grams


def tiled_extract(
    features: Any,
    image: Any,
    tile: int,
    halo: int = DEFAULT_HALO,
    content_layer: str = CONTENT_LAYERS[0],
    style_layers: Sequence[str] = STYLE_LAYERS,
    pooling: str = "max",
    padding: str = "zero",
) -> tuple[tf.Tensor, tuple[tf.Tensor, ...]]:
    """What ``extract`` gives for the whole (1, H, W, 3) image, computed tile by tile:
    (content features (1, H/16, W/16, C) float32, Grams (1, C, C) per style layer).

    Exact up to float rounding when ``halo >= receptive_margin(content_layer)`` (86 px).
    """
    x = _as_image(image)
    fns = _functions(features, pooling, padding, content_layer, style_layers)
    tiles = tile_grid(x.shape[1], x.shape[2], tile, halo)
    content, grams = _pass1(fns, x, tiles, content_layer, style_layers)
    return tf.constant(content), tuple(grams)


def tiled_loss_and_grad(
    features: Any,
    x: Any,
    content_target: Any,
    gram_targets: Sequence[Any],
    weights: Any,
    tile: int,
    halo: int = DEFAULT_HALO,
    pooling: str = "max",
    padding: str = "zero",
    *,
    content_layer: str = CONTENT_LAYERS[0],
    style_layers: Sequence[str] = STYLE_LAYERS,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """The engine's ``loss_and_grad`` computed tile by tile: (total, content, style, tv,
    gradient (1, H, W, 3), x's content features).

    ``weights`` = (content, style, tv) weights. ``content_target`` is (1, H/16, W/16, C) or
    anything that broadcasts against it (the engine's (1, 1, 1, 1) placeholder with content
    weight 0). Peak memory is one tile's forward + backward plus a few full-size arrays.
    """
    xa = _as_image(x)
    w_c, w_s, w_t = (float(v) for v in np.asarray(weights, np.float32).reshape(3))
    fns = _functions(features, pooling, padding, content_layer, style_layers)
    tiles = tile_grid(xa.shape[1], xa.shape[2], tile, halo)

    # Pass 1: the whole image's features, hence the losses and dL/d(features) in closed form.
    content, grams = _pass1(fns, xa, tiles, content_layer, style_layers)
    x_content = tf.constant(content)
    target = tf.cast(tf.convert_to_tensor(content_target), tf.float32)
    targets = [tf.cast(tf.convert_to_tensor(a), tf.float32) for a in gram_targets]
    c = w_c * content_loss(x_content, target)
    s = w_s * style_loss(grams, targets)
    # d/dF of w_c·mean((F − T)²); broadcast to F's shape whatever T's shape.
    content_grad = (w_c * 2.0 / float(content.size)) * (content - target.numpy())
    content_grad = np.broadcast_to(content_grad, content.shape)
    height, width = xa.shape[1:3]
    gram_grads = []
    for name, g, a in zip(style_layers, grams, targets, strict=True):
        d = w_s * 2.0 * (g - a) / float(len(grams) * int(tf.size(g)))
        ls = layer_scale(name)
        gram_grads.append(d / float((height // ls) * (width // ls)))
    gram_grads_t = tuple(gram_grads)

    # Pass 2: per tile, forward + backward of the surrogate; scatter-add whole-input grads.
    grad = np.zeros_like(xa)
    cs = layer_scale(content_layer)
    for t in tiles:
        window = tf.constant(xa[:, t.in_y0 : t.in_y1, t.in_x0 : t.in_x1, :])
        cy0, cy1 = t.y0 // cs, t.y1 // cs
        cx0, cx1 = t.x0 // cs, t.x1 // cs
        cg = tf.constant(np.ascontiguousarray(content_grad[:, cy0:cy1, cx0:cx1, :]))
        g_tile = fns.backward(window, tf.constant(t.bounds()), gram_grads_t, cg)
        grad[:, t.in_y0 : t.in_y1, t.in_x0 : t.in_x1, :] += g_tile.numpy()

    # Total variation: elementwise, cheap, untiled.
    x_t = tf.constant(xa)
    with tf.GradientTape() as tape:
        tape.watch(x_t)
        tv = w_t * tv_loss(x_t)
    grad += tape.gradient(tv, x_t).numpy()
    total = c + s + tv
    return total, c, s, tv, tf.constant(grad), x_content


def predicted_peak_bytes(pixels: int) -> float:
    """Peak RSS of one untiled forward + backward over ``pixels`` input pixels (the model)."""
    base, per_pixel = MEMORY_MODEL
    return base + per_pixel * pixels


def auto_tile(
    height: int, width: int, halo: int = DEFAULT_HALO, budget: int = TILE_BUDGET_BYTES
) -> int | None:
    """Tile side for an image of this size, or None when the whole image fits the budget.

    Picks the largest multiple of 16 whose tile input ((tile + 2·halo)²) stays within the
    budget by the measured memory model.
    """
    if predicted_peak_bytes(height * width) <= budget:
        return None
    base, per_pixel = MEMORY_MODEL
    side = math.isqrt(int(max(0.0, budget - base) / per_pixel)) - 2 * halo
    return max(ALIGN, (side // ALIGN) * ALIGN)
