"""Artistic controls on 64 px images with synthetic weights: colour preservation, masks,
blending, style scale, coarse-to-fine, presets, and the optional network variants."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from neural_style.daemon.engine import adam_schedule, color, images, split_iterations
from neural_style.daemon.engine.params import (
    STOP,
    Schedule,
    StyleParams,
    auto_ladder,
    preset_values,
)
from neural_style.shared.errors import NeuralStyleError

from .conftest import load_png

SMALL = dict(size=64)


def test_luminance_preservation_keeps_the_content_chroma(engine, chelsea64, starry64) -> None:  # type: ignore[no-untyped-def]
    r = engine.stylize(
        chelsea64, [starry64], StyleParams(iterations=15, preserve_color="luminance", **SMALL)
    )
    out = images.to_float(r.image)
    src = images.to_float(chelsea64)
    iq_out, iq_src = color.rgb_to_yiq(out)[:, :, 1:], color.rgb_to_yiq(src)[:, :, 1:]
    # Where recombination did not clip (the usual case), chroma equals the content's up to
    # 8-bit rounding: |ΔI|, |ΔQ| <= 2/255.
    unclipped = ((out > 0.004) & (out < 0.996)).all(axis=2)
    assert unclipped.mean() > 0.8
    assert np.abs(iq_out - iq_src)[unclipped].max() <= 2 / 255
    # ... while the luminance did change
    y_out, y_src = color.luminance(out), color.luminance(src)
    assert np.abs(y_out - y_src).mean() > 0.01


def test_histogram_matching_moves_style_statistics_to_the_content(chelsea64, starry64) -> None:  # type: ignore[no-untyped-def]
    s, c = images.to_float(starry64), images.to_float(chelsea64)
    matched = color.match_color(s, c)

    def stats(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        flat = img.reshape(-1, 3).astype(np.float64)
        return flat.mean(axis=0), np.cov(flat, rowvar=False)

    (mu_s, cov_s), (mu_c, cov_c), (mu_m, cov_m) = stats(s), stats(c), stats(matched)
    assert np.abs(mu_m - mu_c).max() < 0.02 < np.abs(mu_s - mu_c).max()
    assert np.abs(cov_m - cov_c).max() < 0.25 * np.abs(cov_s - cov_c).max()


def test_histogram_mode_runs_and_changes_the_result(engine, chelsea64, starry64) -> None:  # type: ignore[no-untyped-def]
    plain = engine.stylize(chelsea64, [starry64], StyleParams(iterations=8, **SMALL))
    hist = engine.stylize(
        chelsea64, [starry64], StyleParams(iterations=8, preserve_color="histogram", **SMALL)
    )
    assert np.abs(plain.image.astype(int) - hist.image).mean() > 1


def test_feathered_mask_keeps_content_outside_and_blends_softly(
    engine, chelsea64, starry64
) -> None:  # type: ignore[no-untyped-def]
    ramp = np.clip((np.arange(64) - 24) / 16, 0, 1)  # 0 up to x=24, 1 from x=40
    mask = np.tile((ramp * 255).astype(np.uint8), (64, 1))
    r = engine.stylize(chelsea64, [starry64], StyleParams(iterations=10, **SMALL), mask=mask)
    diff = np.abs(r.image.astype(int) - chelsea64).mean(axis=(0, 2))
    assert diff[:24].max() <= 1  # mask 0: the content, within 1/255
    assert diff[42:].mean() > 3  # mask 1: stylized
    assert diff[26:31].mean() < diff[34:39].mean() < diff[42:].mean()  # soft edge


def test_blend_one_zero_equals_a_single_style_run(engine, chelsea64, starry64) -> None:  # type: ignore[no-untyped-def]
    wave = load_png("great_wave_64.png")
    single = engine.stylize(chelsea64, [starry64], StyleParams(iterations=6, **SMALL))
    blended = engine.stylize(
        chelsea64, [starry64, wave], StyleParams(iterations=6, style_blend=(1.0, 0.0), **SMALL)
    )
    a = [i.style for i in single.iterates]
    b = [i.style for i in blended.iterates]
    np.testing.assert_allclose(a, b, rtol=1e-4)


def test_half_half_blend_lies_between(engine, chelsea64, starry64) -> None:  # type: ignore[no-untyped-def]
    wave = load_png("great_wave_64.png")
    grams = {}
    for name, blend in [("a", (1.0, 0.0)), ("b", (0.0, 1.0)), ("mix", (0.5, 0.5))]:
        targets, _ = engine.targets(
            images.to_float(chelsea64), [images.to_float(starry64), images.to_float(wave)],
            list(blend), 64,
        )  # fmt: skip
        grams[name] = targets.grams[0].numpy()
    np.testing.assert_allclose(grams["mix"], (grams["a"] + grams["b"]) / 2, rtol=1e-5)
    # and a run with the mix has a style loss between running against either alone
    runs = {
        blend: engine.stylize(
            chelsea64, [starry64, wave], StyleParams(iterations=1, style_blend=blend, **SMALL)
        )
        .iterates[0]
        .style
        for blend in [(1.0, 0.0), (0.0, 1.0), (0.5, 0.5)]
    }
    assert runs[(0.5, 0.5)] < max(runs[(1.0, 0.0)], runs[(0.0, 1.0)])


def test_style_scale_equals_a_resized_style(engine, chelsea64) -> None:  # type: ignore[no-untyped-def]
    style = images.to_float(load_png("starry_night_128.png"))
    content = images.to_float(chelsea64)
    scaled, _ = engine.targets(content, [style], [1.0], 128)  # what style_scale=2 asks at 64
    direct, _ = engine.targets(content, [images.resize(style, (128, 128))], [1.0], 128)
    other, _ = engine.targets(content, [style], [1.0], 64)
    for g_scaled, g_direct in zip(scaled.grams, direct.grams, strict=True):
        np.testing.assert_allclose(g_scaled.numpy(), g_direct.numpy(), rtol=1e-3, atol=1e-2)
    assert any(
        np.abs(g1.numpy() - g2.numpy()).max() > 1e-2 * np.abs(g2.numpy()).max()
        for g1, g2 in zip(scaled.grams, other.grams, strict=True)
    )
    r1 = engine.stylize(chelsea64, [style], StyleParams(iterations=1, size=64))
    r2 = engine.stylize(chelsea64, [style], StyleParams(iterations=1, size=64, style_scale=2.0))
    assert r1.iterates[0].style != pytest.approx(r2.iterates[0].style, rel=1e-3)


def test_coarse_to_fine_visits_each_scale_in_order(engine) -> None:  # type: ignore[no-untyped-def]
    content = load_png("astronaut_128.png")
    style = load_png("great_wave_128.png")
    p = StyleParams(size=128, scales=(32, 64, 128), iterations=9)
    r = engine.stylize(content, [style], p)
    assert [i.scale for i in r.iterates] == [32] * 2 + [64] * 2 + [128] * 5
    assert [i.step for i in r.iterates] == list(range(1, 10))
    assert r.work_size == (128, 128) and r.image.shape == content.shape


def test_split_iterations_gives_the_finest_scale_60_percent() -> None:
    assert split_iterations(300, 2) == [120, 180]
    assert split_iterations(300, 3) == [60, 60, 180]
    assert split_iterations(7, 1) == [7]
    assert split_iterations(2, 3) == [1, 0, 1]
    for total in range(1, 40):
        for scales in range(1, 5):
            assert sum(split_iterations(total, scales)) == total


def test_cosine_schedule_anneals_from_the_learning_rate_towards_zero() -> None:
    lrs = adam_schedule(0.1, Schedule.COSINE, 50)
    assert len(lrs) == 50 and lrs[0] == pytest.approx(0.1)
    assert all(a > b for a, b in itertools.pairwise(lrs)) and 0 < lrs[-1] < 1e-3
    assert lrs[25] == pytest.approx(0.05)
    assert adam_schedule(0.02, Schedule.CONSTANT, 3) == [0.02] * 3


@pytest.mark.parametrize("beta2", [0.999, 0.9])
def test_adam_update_is_keras_adam(beta2: float) -> None:
    """The engine's Adam step is Keras' (ε 0.1 on the uncorrected √v, as the tutorial's
    optimiser), for the tutorial's β2 and another: three steps on the same gradients."""
    import tensorflow as tf

    from neural_style.daemon.engine.adam import ADAM_EPSILON, adam_update

    rng = np.random.default_rng(0)
    x0 = rng.uniform(0.3, 0.7, (1, 4, 4, 3)).astype(np.float32)
    grads = [rng.normal(0, 0.5, x0.shape).astype(np.float32) for _ in range(3)]
    keras_x = tf.Variable(x0)
    opt = tf.keras.optimizers.Adam(0.02, beta_1=0.9, beta_2=beta2, epsilon=ADAM_EPSILON)
    x, m, v = tf.constant(x0), tf.zeros_like(x0), tf.zeros_like(x0)
    for t, g in enumerate(grads, 1):
        opt.apply_gradients([(tf.constant(g), keras_x)])
        x, m, v = adam_update(
            x, m, v, tf.constant(g), tf.constant(float(t)), tf.constant(0.02),
            tf.constant(0.9), tf.constant(beta2),
        )  # fmt: skip
    np.testing.assert_allclose(x.numpy(), keras_x.numpy(), atol=1e-6)
    assert np.abs(x.numpy() - x0).max() > 0.01


def test_annealed_adam_beats_the_tutorials_adam_in_equal_steps(engine) -> None:  # type: ignore[no-untyped-def]
    """The presets' optimiser (β1 0.9, cosine from 0.1) against the tutorial's constant-step
    Adam (lr 0.02, β1 0.99), same steps from the same start: lower final loss."""
    content, style = load_png("chelsea_128.png"), load_png("starry_night_128.png")
    tutorial = engine.stylize(content, [style], StyleParams(size=96, iterations=40))
    annealed = engine.stylize(
        content, [style],
        StyleParams(size=96, iterations=40, learning_rate=0.1, adam_beta1=0.9,
                    lr_schedule="cosine"),
    )  # fmt: skip
    t, a = tutorial.iterates[-1].loss, annealed.iterates[-1].loss
    print(f"40 steps at 96 px: tutorial Adam {t:.4g}, annealed Adam {a:.4g}")
    assert a < 0.95 * t


def test_coarse_to_fine_beats_one_scale_in_equal_wall_time(engine) -> None:  # type: ignore[no-untyped-def]
    """Three scales to 128 px against one scale at 128 px stopped when it has used the
    ladder's wall time; both losses are fp32 at 128 px. (The same comparison at 512 px is
    ``neural-style bench --ladder 128,256,512``: 512 px steps are too slow for CI.)"""
    content, style = load_png("chelsea_128.png"), load_png("starry_night_128.png")
    annealed = dict(learning_rate=0.1, adam_beta1=0.9, lr_schedule="cosine", size=128)
    engine.stylize(content, [style], StyleParams(iterations=3, **annealed))  # trace 128 px
    ladder = engine.stylize(
        content, [style], StyleParams(iterations=160, scales=(32, 64, 128), **annealed)
    )
    budget = ladder.elapsed
    single = engine.stylize(
        content, [style], StyleParams(iterations=10_000, **annealed),
        lambda it: STOP if it.elapsed >= budget else None,
    )  # fmt: skip
    at_128 = min(i.loss for i in ladder.iterates if i.scale == 128)
    alone = min(i.loss for i in single.iterates)
    print(f"{budget:.1f} s each: ladder {at_128:.4g}, one scale {alone:.4g} "
          f"({len(single.iterates)} steps)")  # fmt: skip
    assert at_128 < alone


def test_auto_ladder_and_presets() -> None:
    assert auto_ladder(512) == (128, 256, 512)
    assert auto_ladder(384) == (192, 384)
    assert auto_ladder(2048) == (128, 256, 512, 1024, 2048)
    assert auto_ladder(250) == (250,)
    assert StyleParams(size=512, scales=()).ladder() == (128, 256, 512)
    for name in ("fast", "balanced", "quality"):
        p = StyleParams.from_dict({"preset": name})
        assert p.size == preset_values(name)["size"]
    assert StyleParams.from_dict({"preset": "fast", "iterations": 7}).iterations == 7
    with pytest.raises(NeuralStyleError, match="Unknown preset"):
        StyleParams.from_dict({"preset": "ultra"})
    with pytest.raises(NeuralStyleError, match="scales"):
        StyleParams(size=512, scales=(512, 256))


def test_stop_during_a_coarse_scale_returns_a_full_size_image(engine) -> None:  # type: ignore[no-untyped-def]
    content = load_png("astronaut_128.png")
    r = engine.stylize(
        content, [load_png("great_wave_64.png")],
        StyleParams(size=128, scales=(64, 128), iterations=20),
        lambda it: "stop" if it.step == 2 else None,
    )  # fmt: skip
    assert r.stopped and r.image.shape == content.shape and len(r.iterates) <= 3


@pytest.mark.parametrize(
    "variant",
    [dict(pooling="avg"), dict(padding="reflect"), dict(ema=0.9), dict(adam_beta2=0.9)],
)
def test_optional_variants_change_the_result_and_still_optimise(
    engine, chelsea64, starry64, variant
) -> None:  # type: ignore[no-untyped-def]
    base = engine.stylize(chelsea64, [starry64], StyleParams(iterations=12, **SMALL))
    other = engine.stylize(chelsea64, [starry64], StyleParams(iterations=12, **SMALL, **variant))
    assert other.iterates[-1].loss < other.iterates[0].loss
    assert np.abs(base.image.astype(int) - other.image).mean() > 0.3


def test_reflect_padding_removes_the_border_response(engine) -> None:  # type: ignore[no-untyped-def]
    """A flat image has no edges; zero padding invents a frame around it (the border
    activations differ from the interior), reflect padding does not."""
    import tensorflow as tf

    flat = tf.fill((1, 16, 16, 3), 0.6)

    def border_contrast(padding: str) -> float:
        act = engine.features(flat, padding=padding)["block2_conv1"].numpy()[0]
        return float(np.abs(act[0] - act[act.shape[0] // 2]).max())

    assert border_contrast("reflect") < 1e-3 < border_contrast("zero")


def test_ema_smooths_the_returned_image(engine, chelsea64, starry64) -> None:  # type: ignore[no-untyped-def]
    """Iterate averaging returns an average of recent iterates: less high-frequency noise
    (lower total variation) than the last iterate of the same run."""
    plain = engine.stylize(chelsea64, [starry64], StyleParams(iterations=15, **SMALL))
    ema = engine.stylize(chelsea64, [starry64], StyleParams(iterations=15, ema=0.8, **SMALL))

    def tv(img: np.ndarray) -> float:
        f = img.astype(float)
        return float(np.abs(np.diff(f, axis=0)).mean() + np.abs(np.diff(f, axis=1)).mean())

    assert tv(ema.image) < tv(plain.image)


def test_bf16_convolutions_keep_fp32_losses_close(engine, chelsea64, starry64) -> None:  # type: ignore[no-untyped-def]
    # (2 steps: bf16 is emulated, slowly, on CPUs without AVX512_BF16 such as CI's)
    fp32 = engine.stylize(chelsea64, [starry64], StyleParams(iterations=2, **SMALL))
    bf16 = engine.stylize(
        chelsea64, [starry64], StyleParams(iterations=2, precision="bf16", **SMALL)
    )
    # same starting image: only the convolutions' rounding differs (bf16 has 8 bits of
    # mantissa, so a few per cent on a loss made of squared differences)
    assert bf16.iterates[0].loss == pytest.approx(fp32.iterates[0].loss, rel=0.05)
    assert bf16.iterates[0].loss != fp32.iterates[0].loss  # it really ran in bf16
    assert all(np.isfinite(i.loss) for i in bf16.iterates)
    assert StyleParams(precision="auto").precision.value == "auto"


def test_bf16_features_keep_the_first_convolution_in_fp32(synthetic_weights) -> None:  # type: ignore[no-untyped-def]
    """The layer that sees the pixels runs in fp32 and is rounded to bf16 only afterwards:
    in bf16 the pixels themselves (0..255 scale) would round to a full 1/255 step."""
    import tensorflow as tf

    from neural_style.daemon.engine.vgg import FIRST_CONV, VGGFeatures, load_keras_vgg19

    conv = load_keras_vgg19(synthetic_weights)
    fp32 = VGGFeatures(conv, outputs=(FIRST_CONV, "block2_conv1"))
    bf16 = VGGFeatures(conv, outputs=(FIRST_CONV, "block2_conv1"), compute_dtype=tf.bfloat16)
    x = tf.constant(np.random.default_rng(1).uniform(0, 1, (1, 24, 24, 3)).astype(np.float32))
    a, b = fp32(x), bf16(x)
    assert b[FIRST_CONV].dtype == tf.bfloat16 and b["block2_conv1"].dtype == tf.bfloat16
    np.testing.assert_array_equal(
        tf.cast(a[FIRST_CONV], tf.bfloat16).numpy(), b[FIRST_CONV].numpy()
    )
    # and a change of a tenth of a grey level still reaches the first layer's output
    nudged = bf16(x + np.float32(0.1 / 255))[FIRST_CONV]
    assert not np.array_equal(nudged.numpy(), b[FIRST_CONV].numpy())


def test_auto_precision_is_bf16_only_on_cpus_with_bf16_kernels(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from neural_style.daemon.engine import precision as engine_module
    from neural_style.daemon.engine.params import Precision

    monkeypatch.setattr(engine_module, "_cpu_has_bf16", lambda: True)
    assert engine_module.resolve_precision(Precision.AUTO) is Precision.BF16
    lbfgs = StyleParams(optimizer="lbfgs", precision="auto")  # L-BFGS too (validated)
    assert engine_module.job_precision(lbfgs) is Precision.BF16
    monkeypatch.setattr(engine_module, "_cpu_has_bf16", lambda: False)
    assert engine_module.resolve_precision(Precision.AUTO) is Precision.FP32
    for explicit in (Precision.FP32, Precision.BF16):  # explicit choices are kept
        assert engine_module.resolve_precision(explicit) is explicit
    assert preset_values("balanced")["precision"] == "auto"


def test_the_result_says_which_precision_ran(engine, chelsea64, starry64) -> None:  # type: ignore[no-untyped-def]
    from neural_style.daemon.engine import resolve_precision
    from neural_style.daemon.engine.params import Precision

    auto = engine.stylize(
        chelsea64, [starry64], StyleParams(iterations=1, precision="auto", **SMALL)
    )
    assert auto.precision == resolve_precision(Precision.AUTO).value
    assert engine.stylize(chelsea64, [starry64], StyleParams(iterations=1, **SMALL)).precision == (
        "fp32"
    )
