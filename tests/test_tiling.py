"""Tiled extraction and tiled loss + gradient equal the untiled computation.

With a halo at least the deepest layer's receptive margin, tiling is exact up to float
summation order, so the tolerances here are tight (1e-4 relative, against ~1e-7 measured).
Most variants run on a shallow extractor (block1..block3, receptive margin 10 px) so that
small images still have tiles whose halo is cut inside the image; the full network
(block5_conv2, margin 86 px) is checked against the engine's own traced functions.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from neural_style.daemon.engine import tiling
from neural_style.daemon.engine.losses import content_loss, gram_matrix, style_loss, tv_loss
from neural_style.daemon.engine.params import StyleParams
from neural_style.daemon.engine.vgg import VGGFeatures, load_keras_vgg19

SHALLOW_CONTENT = "block3_conv1"
SHALLOW_STYLE = ("block1_conv1", "block2_conv1", "block3_conv1")
WEIGHTS = tf.constant([1.0, 1.0, 1e-3])
TOL = 1e-4  # relative; measured errors are ~1e-7


def rel(a: object, b: object) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def image(height: int, width: int, seed: int) -> np.ndarray:
    """Smooth-ish random image (noise plus a gradient), (1, H, W, 3) float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, None, :, None]
    noise = rng.uniform(0.0, 1.0, (1, height, width, 3)).astype(np.float32)
    return (0.5 * noise + 0.5 * ramp).astype(np.float32)


@pytest.fixture(scope="module")
def shallow(synthetic_weights: Path) -> VGGFeatures:
    return VGGFeatures(load_keras_vgg19(synthetic_weights), outputs=SHALLOW_STYLE)


def reference(
    features: VGGFeatures,
    x: np.ndarray,
    target: tf.Tensor,
    grams: tuple[tf.Tensor, ...],
    pooling: str,
    padding: str,
) -> tuple[tf.Tensor, ...]:
    """Untiled loss_and_grad for the shallow layer set (the engine's, with other layers)."""
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        f = features(xt, pooling=pooling, padding=padding)
        xc = f[SHALLOW_CONTENT]
        c = WEIGHTS[0] * content_loss(xc, target)
        s = WEIGHTS[1] * style_loss([gram_matrix(f[n]) for n in SHALLOW_STYLE], grams)
        t = WEIGHTS[2] * tv_loss(xt)
        total = c + s + t
    return total, c, s, t, tape.gradient(total, xt), xc


def shallow_targets(
    features: VGGFeatures, height: int, width: int, pooling: str, padding: str
) -> tuple[tf.Tensor, tuple[tf.Tensor, ...]]:
    fc = features(tf.constant(image(height, width, 1)), pooling=pooling, padding=padding)
    fs = features(tf.constant(image(80, 96, 2)), pooling=pooling, padding=padding)
    return fc[SHALLOW_CONTENT], tuple(gram_matrix(fs[n]) for n in SHALLOW_STYLE)


def assert_same(out: tuple[tf.Tensor, ...], ref: tuple[tf.Tensor, ...]) -> None:
    for name, a, b in zip(("total", "content", "style", "tv"), out[:4], ref[:4], strict=True):
        assert float(a) == pytest.approx(float(b), rel=TOL), name
    assert out[4].shape == ref[4].shape
    assert rel(out[4], ref[4]) < TOL
    assert rel(out[5], ref[5]) < TOL


# ---------------------------------------------------------------------- the grid
def test_grid_covers_the_image_once_with_aligned_clipped_windows() -> None:
    height, width, tile, halo = 300, 517, 128, 96
    tiles = tiling.tile_grid(height, width, tile, halo)
    cover = np.zeros((height, width), int)
    for t in tiles:
        cover[t.y0 : t.y1, t.x0 : t.x1] += 1
        assert t.y0 % 16 == 0 and t.x0 % 16 == 0
        assert t.in_y0 % 16 == 0 and t.in_x0 % 16 == 0
        assert 0 < t.y1 - t.y0 <= tile and 0 < t.x1 - t.x0 <= tile
        assert (t.in_y0, t.in_y1) == (max(0, t.y0 - halo), min(height, t.y1 + halo))
        assert (t.in_x0, t.in_x1) == (max(0, t.x0 - halo), min(width, t.x1 + halo))
    assert (cover == 1).all()
    assert len(tiles) == math.ceil(height / tile) * math.ceil(width / tile)


def test_a_tile_larger_than_the_image_is_one_tile() -> None:
    assert tiling.tile_grid(70, 50, 256, 96) == [tiling.Tile(0, 70, 0, 50, 0, 70, 0, 50)]


@pytest.mark.parametrize(("tile", "halo"), [(100, 96), (128, 90), (0, 96), (128, -16)])
def test_unaligned_tiles_and_halos_are_refused(tile: int, halo: int) -> None:
    with pytest.raises(ValueError, match=r"tile|halo"):
        tiling.tile_grid(256, 256, tile, halo)


def test_receptive_margins_and_default_halo() -> None:
    assert tiling.receptive_margin("block5_conv2") == 86
    assert tiling.receptive_margin(SHALLOW_CONTENT) == 10
    assert [tiling.layer_scale(n) for n in tiling.STYLE_LAYERS] == [1, 2, 4, 8, 16]
    assert tiling.DEFAULT_HALO % 16 == 0
    assert tiling.receptive_margin("block5_conv2") <= tiling.DEFAULT_HALO


# ---------------------------------------------------------------------- shallow network
@pytest.mark.parametrize("pooling", ["max", "avg"])
@pytest.mark.parametrize("padding", ["zero", "reflect"])
def test_shallow_tiled_loss_and_grad_equals_untiled(
    shallow: VGGFeatures, pooling: str, padding: str
) -> None:
    # 100x84 is no multiple of the 32 px tile (nor of 16): the last tiles are partial and
    # the deepest maps floor; halo 16 >= the 10 px margin, cut inside the image.
    height, width = 100, 84
    target, grams = shallow_targets(shallow, height, width, pooling, padding)
    x = image(height, width, 0)
    out = tiling.tiled_loss_and_grad(
        shallow, x, target, grams, WEIGHTS, 32, 16, pooling, padding,
        content_layer=SHALLOW_CONTENT, style_layers=SHALLOW_STYLE,
    )  # fmt: skip
    assert_same(out, reference(shallow, x, target, grams, pooling, padding))

    content, tiled_grams = tiling.tiled_extract(
        shallow, x, 32, 16, SHALLOW_CONTENT, SHALLOW_STYLE, pooling, padding
    )
    f = shallow(tf.constant(x), pooling=pooling, padding=padding)
    assert rel(content, f[SHALLOW_CONTENT]) < TOL
    for name, g in zip(SHALLOW_STYLE, tiled_grams, strict=True):
        assert rel(g, gram_matrix(f[name])) < TOL


def test_a_halo_below_the_receptive_margin_is_measurably_wrong(shallow: VGGFeatures) -> None:
    """The comparison above is sensitive: without a halo the gradient is visibly off."""
    target, grams = shallow_targets(shallow, 100, 84, "max", "zero")
    x = image(100, 84, 0)
    out = tiling.tiled_loss_and_grad(
        shallow, x, target, grams, WEIGHTS, 32, 0,
        content_layer=SHALLOW_CONTENT, style_layers=SHALLOW_STYLE,
    )  # fmt: skip
    assert rel(out[4], reference(shallow, x, target, grams, "max", "zero")[4]) > 1e-2


# ---------------------------------------------------------------------- full network
@pytest.mark.parametrize(("pooling", "padding"), [("max", "zero"), ("avg", "reflect")])
def test_full_network_tiled_equals_the_engine(engine, pooling: str, padding: str) -> None:  # type: ignore[no-untyped-def]
    # 212x40 in 64 px tiles with the default 96 px halo: 4 tiles in a column, the first's
    # window cut at its bottom and the last's at its top inside the image; neither side is
    # a multiple of the tile or of 16. (A narrow strip keeps the full network cheap.)
    fns = engine.functions(StyleParams(pooling=pooling, padding=padding))
    height, width = 212, 40
    target, _ = fns.extract(tf.constant(image(height, width, 1)))
    _, grams = fns.extract(tf.constant(image(96, 112, 2)))
    x = image(height, width, 0)

    content, tiled_grams = tiling.tiled_extract(
        engine.features, x, 64, pooling=pooling, padding=padding
    )
    ref_content, ref_grams = fns.extract(tf.constant(x))
    assert content.shape == ref_content.shape
    assert rel(content, ref_content) < TOL
    for g, r in zip(tiled_grams, ref_grams, strict=True):
        assert rel(g, r) < TOL

    out = tiling.tiled_loss_and_grad(
        engine.features, x, target, grams, WEIGHTS, 64, pooling=pooling, padding=padding
    )
    assert_same(out, fns.loss_and_grad(tf.constant(x), target, grams, WEIGHTS))


def test_full_network_one_tile_and_deferred_content_target(engine) -> None:  # type: ignore[no-untyped-def]
    """A tile larger than the image degenerates to the untiled pass; the engine's deferred
    content target (a (1, 1, 1, 1) placeholder with content weight 0) is accepted."""
    fns = engine.functions(StyleParams())
    _, grams = fns.extract(tf.constant(image(64, 64, 2)))
    x = image(72, 56, 0)
    placeholder = tf.zeros((1, 1, 1, 1))
    weights = WEIGHTS * tf.constant([0.0, 1.0, 1.0])
    out = tiling.tiled_loss_and_grad(engine.features, x, placeholder, grams, weights, 256)
    ref = fns.loss_and_grad(tf.constant(x), placeholder, grams, weights)
    assert float(out[1]) == 0.0
    assert_same(out, ref)


# ---------------------------------------------------------------------- auto_tile
def test_auto_tile_none_when_it_fits_else_an_aligned_tile_within_budget() -> None:
    assert tiling.auto_tile(512, 768) is None
    assert tiling.auto_tile(1024, 1024) is None
    for height, width in [(1365, 2048), (2731, 4096), (4096, 4096)]:
        tile = tiling.auto_tile(height, width)
        assert tile is not None and tile % 16 == 0 and tile >= 256
        side = tile + 2 * tiling.DEFAULT_HALO
        assert tiling.predicted_peak_bytes(side * side) <= tiling.TILE_BUDGET_BYTES
    # a smaller budget gives smaller tiles, never below 16 px
    assert tiling.auto_tile(4096, 4096, budget=2 * 2**30) < tiling.auto_tile(4096, 4096)
    assert tiling.auto_tile(4096, 4096, budget=0) == 16
