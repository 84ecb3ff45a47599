"""The loss maths against an independent numpy reference, on random tensors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

tf = pytest.importorskip("tensorflow")

from neural_style.daemon.engine import losses  # noqa: E402

shapes = st.tuples(
    st.integers(1, 2), st.integers(1, 9), st.integers(1, 9), st.integers(1, 6)
)  # B, H, W, C


def _features(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32) * 3.0


def ref_gram(f: np.ndarray) -> np.ndarray:
    b, h, w, c = f.shape
    out = np.zeros((b, c, c), np.float64)
    for k in range(b):
        flat = f[k].reshape(h * w, c).astype(np.float64)
        for i in range(c):
            for j in range(c):
                out[k, i, j] = sum(flat[p, i] * flat[p, j] for p in range(h * w)) / (h * w)
    return out


@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_gram_matches_loop_reference(shape: tuple[int, ...], seed: int) -> None:
    f = _features(shape, seed)
    np.testing.assert_allclose(
        losses.gram_matrix(tf.constant(f)).numpy(), ref_gram(f), rtol=1e-4, atol=1e-4
    )


@settings(max_examples=20, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_gram_gradient_equals_autodiff_of_the_einsum(shape: tuple[int, ...], seed: int) -> None:
    """The hand-written one-matmul gradient must equal plain autodiff (non-symmetric upstream)."""
    f = tf.constant(_features(shape, seed))
    upstream = tf.constant(
        np.random.default_rng(seed + 1).normal(size=(shape[0], shape[3], shape[3])), tf.float32
    )
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(f)
        ours = tf.reduce_sum(losses.gram_matrix(f) * upstream)
        n = float(shape[1] * shape[2])
        plain = tf.reduce_sum(tf.einsum("bijc,bijd->bcd", f, f) / n * upstream)
    np.testing.assert_allclose(
        tape.gradient(ours, f).numpy(), tape.gradient(plain, f).numpy(), rtol=1e-4, atol=1e-4
    )


@settings(max_examples=15, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_masked_gram_with_unit_mask_equals_gram(shape: tuple[int, ...], seed: int) -> None:
    f = _features(shape, seed)
    ones = np.ones((*shape[:3], 1), np.float32)
    np.testing.assert_allclose(
        losses.masked_gram_matrix(tf.constant(f), tf.constant(ones)).numpy(),
        ref_gram(f),
        rtol=1e-4,
        atol=1e-4,
    )


@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_content_loss_is_mean_squared_error(shape: tuple[int, ...], seed: int) -> None:
    a, b = _features(shape, seed), _features(shape, seed + 1)
    expected = np.mean((a.astype(np.float64) - b) ** 2)
    got = float(losses.content_loss(tf.constant(a), tf.constant(b)))
    assert got == pytest.approx(expected, rel=1e-5)
    assert float(losses.content_loss(tf.constant(a), tf.constant(a))) == 0.0


@settings(max_examples=15, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16), layers=st.integers(1, 5))
def test_style_loss_is_mean_over_layers_of_mean_squared_gram_error(
    shape: tuple[int, ...], seed: int, layers: int
) -> None:
    fs = [_features(shape, seed + k) for k in range(layers)]
    ts = [_features(shape, seed + 100 + k) for k in range(layers)]
    expected = np.mean(
        [np.mean((ref_gram(f) - ref_gram(t)) ** 2) for f, t in zip(fs, ts, strict=True)]
    )
    grams = [losses.gram_matrix(tf.constant(f)) for f in fs]
    targets = [losses.gram_matrix(tf.constant(t)) for t in ts]
    assert float(losses.style_loss(grams, targets)) == pytest.approx(expected, rel=1e-4)


@settings(max_examples=25, deadline=None)
@given(h=st.integers(2, 12), w=st.integers(2, 12), c=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_tv_loss_is_reference_area_scaled_total_variation(
    h: int, w: int, c: int, seed: int
) -> None:
    img = np.random.default_rng(seed).uniform(size=(1, h, w, c)).astype(np.float32)
    tv = np.abs(np.diff(img, axis=1)).sum() + np.abs(np.diff(img, axis=2)).sum()
    expected = tv * losses.TV_REFERENCE_AREA / (h * w)
    assert float(losses.tv_loss(tf.constant(img))) == pytest.approx(expected, rel=1e-4)


def test_tv_equals_tensorflow_total_variation_at_reference_size() -> None:
    img = np.random.default_rng(0).uniform(size=(1, 384, 512, 3)).astype(np.float32)
    expected = float(tf.reduce_sum(tf.image.total_variation(tf.constant(img))))
    assert float(losses.tv_loss(tf.constant(img))) == pytest.approx(expected, rel=1e-4)


def test_losses_are_size_invariant_for_a_scaled_pattern() -> None:
    """A flat-coloured image has the same Gram at any size: the normalisation's point."""
    f_small = np.ones((1, 4, 4, 3), np.float32) * [1.0, 2.0, 3.0]
    f_big = np.ones((1, 32, 16, 3), np.float32) * [1.0, 2.0, 3.0]
    np.testing.assert_allclose(
        losses.gram_matrix(tf.constant(f_small)).numpy(),
        losses.gram_matrix(tf.constant(f_big)).numpy(),
        rtol=1e-6,
    )


def test_gram_of_bf16_features_is_float32_and_its_gradient_bf16_and_close() -> None:
    """bf16 features: the Gram is the float32 product of the (exact) widened values, and
    the gradient, a bf16 product, is within bf16 rounding of the float32 one."""
    f32 = tf.constant(_features((1, 12, 10, 16), 5))
    f16 = tf.cast(f32, tf.bfloat16)
    upstream = tf.constant(np.random.default_rng(6).normal(size=(1, 16, 16)), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([f16])
        tape.watch([f32])
        g16 = losses.gram_matrix(f16)
        g32 = losses.gram_matrix(tf.cast(f16, tf.float32))
        low = tf.reduce_sum(g16 * upstream)
        wide = tf.reduce_sum(losses.gram_matrix(f32) * upstream)
    assert g16.dtype == tf.float32
    np.testing.assert_array_equal(g16.numpy(), g32.numpy())
    d16 = tape.gradient(low, f16)
    assert d16.dtype == tf.bfloat16
    d32 = tape.gradient(wide, f32).numpy()
    err = np.linalg.norm(tf.cast(d16, tf.float32).numpy() - d32) / np.linalg.norm(d32)
    assert 0 < err < 1e-2
