"""The options measured for fewer evaluations (docs/performance.md, "Evaluations to the
tutorial's loss"): the colour-matched start, the ladder's fine share and the per-layer
normalised style loss."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from neural_style.daemon.engine import inputs, losses
from neural_style.daemon.engine.params import Init, StyleNorm, StyleParams
from neural_style.shared import schema
from tests.conftest import load_png


def test_matched_start_has_the_styles_colour_statistics_and_the_photos_layout() -> None:
    content = load_png("chelsea_64.png")[..., :3].astype(np.float32) / 255.0
    style = load_png("starry_night_64.png")[..., :3].astype(np.float32) / 255.0
    start = inputs.initial_image(StyleParams(size=64, init="matched"), content, style)
    assert start.shape == content.shape and start.dtype == np.float32
    # the style's mean colour (clipping to [0, 1] moves it a little), not the photo's
    np.testing.assert_allclose(start.mean(axis=(0, 1)), style.mean(axis=(0, 1)), atol=0.03)
    assert np.abs(content.mean(axis=(0, 1)) - style.mean(axis=(0, 1))).max() > 0.1
    # a per-pixel affine map of the photo: its luminance layout survives
    corr = np.corrcoef(start.mean(axis=2).ravel(), content.mean(axis=2).ravel())[0, 1]
    assert abs(corr) > 0.8


def test_the_new_fields_default_to_the_tutorials_behaviour() -> None:
    p = StyleParams()
    assert p.init is Init.CONTENT and p.style_norm is StyleNorm.NONE and p.fine_share is None
    assert schema.check_value(schema.BY_NAME["fine_share"], None) is None
    with pytest.raises(schema.ParamError):
        StyleParams(fine_share=1.0)
    with pytest.raises(schema.ParamError):
        StyleParams.from_dict({"style_norm": "gram"})


def test_fine_share_moves_the_steps_to_the_coarse_scale(engine, chelsea64, starry64) -> None:  # type: ignore[no-untyped-def]
    p = StyleParams(size=64, scales=(32, 64), iterations=12, optimizer="lbfgs", fine_share=0.25)
    out = engine.stylize(chelsea64, [starry64], p)
    assert [i.scale for i in out.iterates].count(64) == 3
    assert [i.scale for i in out.iterates].count(32) == 9


def test_normalised_style_loss_keeps_its_gradient_size_as_the_residual_shrinks() -> None:
    rng = np.random.default_rng(0)
    target = tf.constant(rng.uniform(0.5, 1.5, (1, 8, 8)), tf.float32)
    direction = tf.constant(rng.normal(size=(1, 8, 8)), tf.float32)

    def grad_l1(scale: float, normalised: bool) -> float:
        g = tf.Variable(target + scale * direction)
        with tf.GradientTape() as tape:
            loss = losses.style_loss([g], [target], normalised)
        return float(tf.reduce_sum(tf.abs(tape.gradient(loss, g))))

    # the plain loss's gradient shrinks with the residual, the normalised one's does not
    assert grad_l1(0.01, False) < 0.02 * grad_l1(1.0, False)
    assert 0.5 < grad_l1(0.01, True) / grad_l1(1.0, True) < 2.0
    # equal to the plain loss where the residual's mean size is the target's
    d = tf.fill((1, 8, 8), float(tf.reduce_mean(tf.abs(target))))
    plain = float(losses.style_loss([target + d], [target]))
    np.testing.assert_allclose(float(losses.style_loss([target + d], [target], True)), plain, 1e-4)


def test_a_normalised_run_descends(engine, chelsea64, starry64) -> None:  # type: ignore[no-untyped-def]
    p = StyleParams(size=64, iterations=15, optimizer="lbfgs", style_norm="layer", precision="fp32")
    out = engine.stylize(chelsea64, [starry64], p)
    assert out.iterates[-1].loss < 0.9 * out.iterates[1].loss


def test_budgets_put_the_adam_tail_at_the_finest_scale_or_at_every_scale() -> None:
    from neural_style.daemon.engine.ladder import scale_budgets

    p = StyleParams(size=512, iterations=520, optimizer="lbfgs", adam_tail=0.6, scales=())
    assert scale_budgets(p, 3) == [(52, 0), (52, 0), (104, 312)]  # the balanced preset
    every = StyleParams(**{**p.to_dict(), "tail_scales": "all", "fine_share": 0.5})
    assert scale_budgets(every, 3) == [(52, 78), (52, 78), (104, 156)]
    assert sum(a + b for a, b in scale_budgets(every, 3)) == 520
    adam = StyleParams(size=512, iterations=100, scales=())
    assert scale_budgets(adam, 3) == [(20, 0), (20, 0), (60, 0)]


def test_an_adam_tail_at_every_scale_runs_adam_on_the_coarse_scale(
    engine, chelsea64, starry64
) -> None:  # type: ignore[no-untyped-def]
    p = StyleParams(
        size=64, scales=(32, 64), iterations=20, optimizer="lbfgs", adam_tail=0.5,
        tail_scales="all", precision="fp32",
    )  # fmt: skip
    out = engine.stylize(chelsea64, [starry64], p)
    assert [i.scale for i in out.iterates].count(32) == 10
    coarse = [i.loss for i in out.iterates if i.scale == 32]
    assert min(coarse[5:]) <= min(coarse[:5])  # the Adam steps go on from L-BFGS's best


def test_polish_runs_lbfgs_after_the_adam_tail_within_the_same_steps(
    engine, chelsea64, starry64
) -> None:  # type: ignore[no-untyped-def]
    p = StyleParams(
        size=64, scales=(32, 64), iterations=40, optimizer="lbfgs", adam_tail=0.5,
        precision="fp32",
    )  # fmt: skip
    plain = [i.loss for i in engine.stylize(chelsea64, [starry64], p).iterates]
    polished = engine.stylize(chelsea64, [starry64], StyleParams(**{**p.to_dict(), "polish": 0.4}))
    losses_ = [i.loss for i in polished.iterates]
    assert len(losses_) == len(plain)  # the polish takes its steps from the tail
    # 20 L-BFGS evaluations (ladder), 12 Adam steps (its ramp is a third of them), then 8
    # L-BFGS evaluations from Adam's end point: the same ladder, another tail, and the
    # polish never above where it started.
    np.testing.assert_allclose(losses_[:20], plain[:20], rtol=1e-5)
    assert not np.allclose(losses_[32:], plain[32:], rtol=1e-5)
    assert min(losses_[32:]) <= losses_[32]
    assert schema.check_value(schema.BY_NAME["polish"], 0.0) is None  # valid
    with pytest.raises(schema.ParamError, match="polish"):
        StyleParams(polish=0.95)


def test_carry_scales_the_coarse_change_at_the_finest_start_only(
    engine, chelsea64, starry64
) -> None:  # type: ignore[no-untyped-def]
    p = StyleParams(size=64, scales=(32, 64), iterations=12, optimizer="lbfgs", precision="fp32")

    def first_fine_content(carry: float) -> tuple[list[float], float]:
        its = engine.stylize(
            chelsea64, [starry64], StyleParams(**{**p.to_dict(), "carry": carry})
        ).iterates
        coarse = [i.loss for i in its if i.scale < 64]
        return coarse, next(i.content for i in its if i.scale == 64)

    coarse_1, full = first_fine_content(1.0)
    coarse_h, half = first_fine_content(0.5)
    _, none = first_fine_content(0.0)
    np.testing.assert_allclose(coarse_h, coarse_1, rtol=1e-5)  # the coarser scales unchanged
    assert none == pytest.approx(0.0, abs=1e-6)  # the finest scale starts at its photo
    assert 0.0 < half < full
    with pytest.raises(schema.ParamError, match="carry"):
        StyleParams(carry=1.5)
