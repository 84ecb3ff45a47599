"""The engine on 64 px images with synthetic weights: it optimises, obeys its callback,
and hands back what it was given (alpha, gray, dtype, aspect ratio)."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from neural_style.daemon.engine.params import STOP, Iterate, Schedule, StyleParams
from neural_style.shared.errors import ErrorCode, NeuralStyleError

from .conftest import load_png

SMALL = dict(size=64)


def test_adam_halves_the_total_loss_and_reduces_style(engine, chelsea64, starry64) -> None:  # type: ignore[no-untyped-def]
    r = engine.stylize(chelsea64, [starry64], StyleParams(iterations=40, **SMALL))
    first, last = r.iterates[0], r.iterates[-1]
    assert len(r.iterates) == 40 and not r.stopped
    assert last.loss < 0.5 * first.loss
    assert last.style < 0.5 * first.style
    assert r.image.shape == chelsea64.shape and r.image.dtype == np.uint8
    assert np.abs(r.image.astype(int) - chelsea64).mean() > 2  # it did change the picture


def test_lbfgs_beats_adam_in_the_same_number_of_evaluations(engine, chelsea64, starry64) -> None:  # type: ignore[no-untyped-def]
    adam = engine.stylize(chelsea64, [starry64], StyleParams(iterations=30, **SMALL))
    lbfgs = engine.stylize(
        chelsea64, [starry64], StyleParams(iterations=30, optimizer="lbfgs", **SMALL)
    )
    assert len(lbfgs.iterates) == 30
    assert min(i.loss for i in lbfgs.iterates) < min(i.loss for i in adam.iterates)


def test_same_seed_same_image_other_seed_other_image(engine, chelsea64, starry64) -> None:  # type: ignore[no-untyped-def]
    def run(seed: int) -> np.ndarray:
        p = StyleParams(iterations=5, init="noise", seed=seed, **SMALL)
        return engine.stylize(chelsea64, [starry64], p).image

    a, b, c = run(7), run(7), run(8)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c).mean() > 5


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_callback_stop_ends_the_run_by_the_next_step(
    engine, chelsea64, starry64, optimizer
) -> None:  # type: ignore[no-untyped-def]
    seen: list[Iterate] = []

    def callback(it: Iterate) -> str | None:
        seen.append(it)
        return STOP if it.step == 4 else None

    r = engine.stylize(
        chelsea64, [starry64], StyleParams(iterations=50, optimizer=optimizer, **SMALL), callback
    )
    assert r.stopped
    assert 4 <= len(r.iterates) <= 5 and seen[-1].step <= 5
    assert r.image.shape == chelsea64.shape
    # the record is immutable and complete
    it = seen[0]
    assert (it.step, it.total, it.scale) == (1, 50, 64)
    assert it.loss == pytest.approx(it.content + it.style + it.tv, rel=1e-4)
    with pytest.raises(AttributeError):
        it.step = 3  # type: ignore[misc]


def test_rgba_alpha_is_kept_untouched(engine, chelsea64, starry64) -> None:  # type: ignore[no-untyped-def]
    alpha = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1))[:, :, None]
    rgba = np.concatenate([chelsea64, alpha], axis=2)
    r = engine.stylize(rgba, [starry64], StyleParams(iterations=3, **SMALL))
    assert r.image.shape == (64, 64, 4)
    np.testing.assert_array_equal(r.image[:, :, 3], alpha[:, :, 0])
    assert np.abs(r.image[:, :, :3].astype(int) - chelsea64).mean() > 0.5


def test_gray_content_comes_back_gray(engine, chelsea64, starry64) -> None:  # type: ignore[no-untyped-def]
    gray = (chelsea64 @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)  # HxW
    r = engine.stylize(gray, [starry64], StyleParams(iterations=3, **SMALL))
    assert r.image.shape == (64, 64, 1) and r.image.dtype == np.uint8
    graya = np.stack([gray, np.full_like(gray, 200)], axis=2)
    r2 = engine.stylize(graya, [starry64], StyleParams(iterations=3, **SMALL))
    assert r2.image.shape == (64, 64, 2)
    assert (r2.image[:, :, 1] == 200).all()


def test_sixteen_bit_and_float_round_trip(engine, chelsea64, starry64) -> None:  # type: ignore[no-untyped-def]
    c16 = chelsea64.astype(np.uint16) * 257
    r = engine.stylize(c16, [starry64], StyleParams(iterations=2, **SMALL))
    assert r.image.dtype == np.uint16 and r.image.shape == c16.shape
    cf = chelsea64.astype(np.float32) / 255
    rf = engine.stylize(cf, [starry64], StyleParams(iterations=2, **SMALL))
    assert rf.image.dtype == np.float32 and rf.image.min() >= 0 and rf.image.max() <= 1


def test_different_sizes_and_aspect_ratios(engine) -> None:  # type: ignore[no-untyped-def]
    content = load_png("astronaut_128.png")[:, :80]  # 80x128 portrait
    style = load_png("great_wave_128.png")[:50]  # 128x50 landscape
    r = engine.stylize(content, [style], StyleParams(iterations=3, size=64))
    assert r.work_size == (40, 64)
    assert r.image.shape == content.shape  # keep_size: back to the content's size
    r2 = engine.stylize(content, [style], StyleParams(iterations=3, size=64, keep_size=False))
    assert r2.image.shape == (64, 40, 3)


def test_working_size_never_exceeds_the_content(engine, chelsea64, starry64) -> None:  # type: ignore[no-untyped-def]
    r = engine.stylize(chelsea64, [starry64], StyleParams(iterations=1, size=512))
    assert r.work_size == (64, 64) and r.image.shape == chelsea64.shape


def test_targets_once_per_job_and_style_grams_cached_across_jobs(engine, starry64) -> None:  # type: ignore[no-untyped-def]
    content = load_png("astronaut_64.png")
    calls = {"n": 0}
    original = engine._extract

    def counting(x):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return original(x)

    engine._extract = counting
    try:
        style = np.ascontiguousarray(starry64[::-1])  # a style no other test used
        r1 = engine.stylize(content, [style], StyleParams(iterations=6, **SMALL))
        # one pass for the style; none per step, and none for the content, whose
        # features come out of the first step (the first image is the content itself)
        assert calls["n"] == 1 and not r1.style_cache_hit
        r2 = engine.stylize(content, [style], StyleParams(iterations=6, **SMALL))
        assert calls["n"] == 1 and r2.style_cache_hit
        r3 = engine.stylize(content, [style], StyleParams(iterations=2, init="style", **SMALL))
        assert calls["n"] == 2 and r3.style_cache_hit  # other init: content pass needed
    finally:
        engine._extract = original


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_content_features_from_the_first_step_change_nothing(
    engine, chelsea64, starry64, optimizer
) -> None:  # type: ignore[no-untyped-def]
    params = StyleParams(iterations=6, optimizer=optimizer, **SMALL)
    deferred = engine.stylize(chelsea64, [starry64], params)
    original = engine.targets

    def upfront(*args, defer_content=False, **kwargs):  # type: ignore[no-untyped-def]
        return original(*args, defer_content=False, **kwargs)

    engine.targets = upfront
    try:
        explicit = engine.stylize(chelsea64, [starry64], params)
    finally:
        engine.targets = original
    assert [i.loss for i in deferred.iterates] == pytest.approx(
        [i.loss for i in explicit.iterates], rel=1e-6
    )
    assert deferred.iterates[1].content > 0  # the target is in place from step 2 on
    np.testing.assert_array_equal(deferred.image, explicit.image)


def test_init_style_and_noise_start_elsewhere(engine, chelsea64, starry64) -> None:  # type: ignore[no-untyped-def]
    content_start = engine.stylize(chelsea64, [starry64], StyleParams(iterations=1, **SMALL))
    style_start = engine.stylize(
        chelsea64, [starry64], StyleParams(iterations=1, init="style", **SMALL)
    )
    assert content_start.iterates[0].content == 0.0
    assert style_start.iterates[0].content > 0.0


def test_previews_arrive_on_schedule(engine, chelsea64, starry64) -> None:  # type: ignore[no-untyped-def]
    got: list[tuple[int, tuple[int, ...]]] = []

    def callback(it: Iterate) -> None:
        if it.preview is not None:
            got.append((it.step, it.preview.shape))

    engine.stylize(
        chelsea64, [starry64], StyleParams(iterations=6, preview_every=3, **SMALL), callback
    )
    assert got == [(3, (64, 64, 3)), (6, (64, 64, 3))]


def test_mask_zero_keeps_the_content(engine, chelsea64, starry64) -> None:  # type: ignore[no-untyped-def]
    mask = np.zeros((64, 64), np.uint8)
    mask[:, 32:] = 255
    r = engine.stylize(chelsea64, [starry64], StyleParams(iterations=5, **SMALL), mask=mask)
    np.testing.assert_array_equal(r.image[:, :30], chelsea64[:, :30])
    assert np.abs(r.image[:, 34:].astype(int) - chelsea64[:, 34:]).mean() > 0.5


@pytest.mark.parametrize(
    ("content", "styles", "code"),
    [
        (np.zeros((0, 5, 3), np.uint8), None, ErrorCode.BAD_REQUEST),
        (np.zeros((8, 8, 5), np.uint8), None, ErrorCode.BAD_REQUEST),
        (np.zeros((8, 8, 3), np.int32), None, ErrorCode.BAD_REQUEST),
        (np.zeros((8, 8, 3), np.uint8), [], ErrorCode.BAD_REQUEST),
        (np.zeros((9000, 9000, 1), np.uint8), None, ErrorCode.TOO_LARGE),
    ],
)
def test_bad_images_are_refused_with_a_code(engine, starry64, content, styles, code) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NeuralStyleError) as info:
        engine.stylize(
            content, [starry64] if styles is None else styles, StyleParams(iterations=1, **SMALL)
        )
    assert info.value.code is code


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(size=5),
        dict(iterations=0),
        dict(style_weight=-1.0),
        dict(tv_weight=float("nan")),
        dict(optimizer="sgd"),
        dict(init="zeros"),
        dict(learning_rate=0.0),
        dict(seed=-3),
        dict(content_weight=0.0, style_weight=0.0),
        dict(style_blend=(0.0, 0.0)),
    ],
)
def test_nonsense_parameters_are_refused(kwargs) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NeuralStyleError) as info:
        StyleParams(**kwargs)
    assert info.value.code is ErrorCode.BAD_REQUEST
    assert "parameter" in info.value.message.lower() or "not a valid" in info.value.message


def test_params_round_trip_and_reject_unknown_keys() -> None:
    p = StyleParams(size=96, optimizer="lbfgs", style_blend=(0.7, 0.3))
    assert StyleParams.from_dict(p.to_dict()) == p
    with pytest.raises(NeuralStyleError, match="Unknown parameter"):
        StyleParams.from_dict({"sise": 3})


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_tiled_run_equals_the_whole_image_run(engine, chelsea64, starry64, optimizer) -> None:  # type: ignore[no-untyped-def]
    """Images too big for memory are processed in tiles (tiling.py); with the default halo
    the optimisation is the same, so a forced 32 px tiling of a 64 px job must match."""
    params = StyleParams(iterations=3, optimizer=optimizer, style_scale=0.9, **SMALL)
    whole = engine.stylize(chelsea64, [starry64], params)
    engine.tile_for = lambda height, width: 32
    try:
        tiled = engine.stylize(chelsea64, [starry64], params)
    finally:
        del engine.tile_for
    assert [i.loss for i in tiled.iterates] == pytest.approx(
        [i.loss for i in whole.iterates], rel=1e-4
    )
    assert np.abs(tiled.image.astype(int) - whole.image).max() <= 1


def test_init_image_is_the_start(engine, chelsea64, starry64) -> None:  # type: ignore[no-untyped-def]
    """Refine: one step from an init image stays near it, far from the content."""
    first = engine.stylize(chelsea64, [starry64], StyleParams(iterations=20, **SMALL))
    init = first.image
    again = engine.stylize(chelsea64, [starry64], StyleParams(iterations=1, **SMALL), init=init)
    assert again.iterates[0].content > 0.0  # the start is not the content
    near_init = np.abs(again.image.astype(int) - init).mean()
    near_content = np.abs(again.image.astype(int) - chelsea64).mean()
    assert near_init < near_content / 2
    plain = engine.stylize(chelsea64, [starry64], StyleParams(iterations=1, **SMALL))
    assert np.abs(plain.image.astype(int) - chelsea64).mean() < near_content


def test_init_image_of_another_size_is_refused(engine, chelsea64, starry64) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NeuralStyleError) as err:
        engine.stylize(
            chelsea64, [starry64], StyleParams(iterations=1, **SMALL), init=chelsea64[:32]
        )
    assert err.value.code is ErrorCode.BAD_REQUEST


def test_split_tail_and_its_ramped_schedule() -> None:
    from neural_style.daemon.engine import ADAM_TAIL_RAMP, split_tail, tail_schedule

    assert split_tail(100, 0.0) == (100, 0)
    assert split_tail(100, 0.7) == (30, 70)
    assert split_tail(2, 0.9) == (1, 1)  # L-BFGS keeps one: its gradient warms Adam up
    assert split_tail(1, 0.9) == (1, 0)
    assert split_tail(10, 0.9, keep=3) == (3, 7)  # one per scale of a ladder
    lrs = tail_schedule(0.02, Schedule.CONSTANT, 600)
    assert lrs[0] == pytest.approx(0.02 / ADAM_TAIL_RAMP)
    assert lrs[ADAM_TAIL_RAMP - 1] == lrs[-1] == pytest.approx(0.02)
    assert all(a <= b for a, b in itertools.pairwise(lrs[:ADAM_TAIL_RAMP]))
    short = tail_schedule(0.02, Schedule.CONSTANT, 3 * ADAM_TAIL_RAMP - 3)  # at most a third
    assert short[ADAM_TAIL_RAMP - 2] == pytest.approx(0.02)
    assert short[0] == pytest.approx(0.02 / (ADAM_TAIL_RAMP - 1))
    cosine = tail_schedule(0.02, Schedule.COSINE, 600)
    assert cosine[-1] < 0.001 and max(cosine) <= 0.02


def test_lbfgs_with_an_adam_tail_runs_both_and_says_so(engine, chelsea64, starry64) -> None:  # type: ignore[no-untyped-def]
    params = StyleParams(
        size=64, iterations=40, optimizer="lbfgs", adam_tail=0.5, scales=(32, 64),
        precision="fp32",
    )  # fmt: skip
    out = engine.stylize(chelsea64, [starry64], params)
    assert len(out.iterates) == 40  # 10 L-BFGS at 32 px, then 10 L-BFGS + 20 Adam at 64 px
    assert [i.scale for i in out.iterates].count(64) == 30
    assert out.precision == "fp32"
    tail = [i.loss for i in out.iterates[-20:]]
    assert all(np.isfinite(tail))
    # the tail carries on from L-BFGS's best point: no jump back up (its step is ramped)
    assert max(tail) < 1.2 * min(i.loss for i in out.iterates[10:20])
    # an Adam job ignores the share: all its steps are Adam steps, over the ladder
    adam = engine.stylize(chelsea64, [starry64], dataclasses.replace(params, optimizer="adam"))
    assert [i.scale for i in adam.iterates].count(64) == 24  # FINE_SHARE of 40


def test_tiled_lbfgs_with_an_adam_tail_follows_the_untiled_run(
    engine, chelsea64, starry64, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """Print sizes run L-BFGS on the tiled loss+gradient (tiling.py): the optimiser must take
    the same path there, evaluation for evaluation, as on the whole image."""
    p = StyleParams(size=64, iterations=12, optimizer="lbfgs", adam_tail=0.5, scales=None)
    whole = engine.stylize(chelsea64, [starry64], p)
    monkeypatch.setattr(engine, "tile_for", lambda height, width: 32)
    tiled = engine.stylize(chelsea64, [starry64], p)
    assert len(tiled.iterates) == len(whole.iterates) == 12
    np.testing.assert_allclose(
        [i.loss for i in tiled.iterates], [i.loss for i in whole.iterates], rtol=2e-3
    )
    assert tiled.iterates[-1].loss < 0.9 * tiled.iterates[0].loss
