"""The Laplacian-pyramid parametrisation (``parametrization``; daemon/engine/pyramid.py):
its synthesis inverts its analysis, its gradient is the synthesis's adjoint, its projection
is the pixels' clip, and both optimisers descend with it. Random weights: plumbing only."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from neural_style.daemon.engine import pyramid
from neural_style.daemon.engine.params import Parametrization, StyleParams
from neural_style.shared import schema
from tests.conftest import load_png


def _photo() -> np.ndarray:
    return load_png("chelsea_64.png")[..., :3].astype(np.float32) / 255.0


def test_level_shapes_halve_with_the_ceiling_and_stop_at_one_pixel() -> None:
    assert pyramid.level_shapes(45, 64, 4) == [(45, 64), (23, 32), (12, 16), (6, 8)]
    assert pyramid.level_shapes(3, 5, 8) == [(3, 5), (2, 3), (1, 2)]
    assert pyramid.level_scales(3, 0.5) == [1.0, 0.5, 0.25]


@pytest.mark.parametrize("levels,color", [(4, False), (4, True), (1, True)])
def test_synthesis_of_the_analysis_gives_the_image_back(levels: int, color: bool) -> None:
    x = _photo()[:45]  # odd height: levels of 45, 23, 12, 6 rows
    space = pyramid.PyramidSpace(45, 64, levels, 0.7, color)
    z = space.start(x)
    sizes = [45 * 64, 23 * 32, 12 * 16, 6 * 8][:levels]
    assert z.shape == (space.size,) and space.size == 3 * sum(sizes)
    np.testing.assert_allclose(space.image(z).numpy()[0], x, atol=1e-5)
    if levels > 1:  # the coarse levels hold the image's low frequencies: not all zero
        assert float(tf.reduce_max(tf.abs(z[space.sizes[0] :]))) > 0.05


def test_the_gradient_is_the_synthesis_adjoint_and_the_projection_the_pixels_clip() -> None:
    space = pyramid.PyramidSpace(64, 64, 4, 1.0, True)
    rng = np.random.default_rng(0)
    z = tf.constant(rng.normal(size=space.size).astype(np.float32))
    g = tf.constant(rng.normal(size=(1, 64, 64, 3)).astype(np.float32))
    lhs = float(tf.reduce_sum(space.image(z) * g))  # <S z, g> = <z, Sᵀ g>
    np.testing.assert_allclose(lhs, float(tf.reduce_sum(z * space.pullback(z, g))), rtol=1e-4)
    x = space.image(z).numpy()
    assert x.min() < -0.5 and x.max() > 1.5
    projected = space.image(space.project(z)).numpy()
    np.testing.assert_allclose(projected, np.clip(x, 0.0, 1.0), atol=1e-5)
    # only the finest level moves
    moved = space.project(z) - z
    assert float(tf.reduce_max(tf.abs(moved[space.sizes[0] :]))) == 0.0


def test_the_default_stays_pixels_and_the_fields_are_checked() -> None:
    p = StyleParams()
    assert p.parametrization is Parametrization.PIXELS
    assert isinstance(pyramid.space_for(p, 64, 64), pyramid.PixelSpace)
    for preset in schema.PRESETS:
        assert StyleParams.from_dict({"preset": preset}).parametrization is Parametrization.PIXELS
    q = StyleParams(parametrization="pyramid_color", pyramid_levels=3, pyramid_decay=0.5)
    space = pyramid.space_for(q, 40, 64)
    assert isinstance(space, pyramid.PyramidSpace) and space.scales == [1.0, 0.5, 0.25]
    assert pyramid.space_for(q, 40, 64) is space  # traced once per size
    with pytest.raises(schema.ParamError):
        StyleParams.from_dict({"parametrization": "fourier"})
    with pytest.raises(schema.ParamError):
        StyleParams(pyramid_levels=0)


@pytest.mark.parametrize(
    "extra",
    [
        {"optimizer": "lbfgs"},
        {"optimizer": "lbfgs", "adam_tail": 0.5, "parametrization": "pyramid_color"},
        {"optimizer": "adam"},
    ],
)
def test_a_pyramid_job_lowers_the_loss(engine, chelsea64, starry64, extra) -> None:  # type: ignore[no-untyped-def]
    fields = {"size": 64, "iterations": 16, "precision": "fp32", "preview_every": 4}
    p = StyleParams(**{**fields, "parametrization": "pyramid", **extra})
    previews: list[np.ndarray] = []
    out = engine.stylize(chelsea64, [starry64], p, lambda it: previews.append(it.preview))
    losses = [i.loss for i in out.iterates]
    assert len(losses) >= 15
    assert min(losses[-4:]) < 0.9 * losses[0]
    shown = [im for im in previews if im is not None]
    assert len(shown) >= 3  # the callbacks see the image, in the box
    assert all(
        im.shape == (64, 64, 3) and im.min() >= -1e-4 and im.max() <= 1 + 1e-4 for im in shown
    )
    assert out.image.shape == chelsea64.shape
