"""The trained stand-in: exact VGG-19 layout, calibrated activation scales."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from neural_style.daemon.engine import standin
from neural_style.daemon.engine.vgg import VGG19_CHANNELS, load_keras_vgg19
from neural_style.daemon.engine.weights import inspect_weights
from tests.conftest import SHARED_DATA


def test_identity_layers_are_exact_after_a_relu() -> None:
    rng = np.random.default_rng(0)
    x = tf.nn.relu(tf.constant(rng.standard_normal((1, 9, 7, 256)), tf.float32) * 50.0)
    w = standin.identity_conv(256)
    y = tf.nn.relu(tf.nn.conv2d(x, w.kernel, strides=1, padding="SAME") + w.bias)
    np.testing.assert_array_equal(y.numpy(), x.numpy())


def test_rescale_multiplies_each_layer_exactly_by_its_scale() -> None:
    rng = np.random.default_rng(1)
    order = ("block1_conv1", "block1_conv2")
    base = {
        name: standin.ConvWeights(
            (rng.standard_normal((3, 3, cin, 64)) * 0.1).astype(np.float32),
            rng.standard_normal(64).astype(np.float32),
        )
        for name, cin in zip(order, (3, 64), strict=True)
    }
    scaled = standin.rescale(base, {"block1_conv1": 3.0, "block1_conv2": 0.5}, order)
    image = tf.constant(rng.uniform(0, 1, (1, 8, 8, 3)), tf.float32)

    def run(weights: dict[str, standin.ConvWeights]) -> list[np.ndarray]:
        x, outs = image, []
        for name in order:
            x = tf.nn.relu(tf.nn.conv2d(x, weights[name].kernel, 1, "SAME") + weights[name].bias)
            outs.append(x.numpy())
        return outs

    (a1, a2), (b1, b2) = run(scaled), run(base)
    np.testing.assert_allclose(a1, 3.0 * b1, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a2, 0.5 * b2, rtol=1e-5, atol=1e-5)


def test_calibration_meets_vgg19_figures_and_loads_as_keras_layout(
    standin_weights: Path,
) -> None:
    weights = load_keras_vgg19(standin_weights)  # the same path as Keras' own file
    assert set(weights) == set(VGG19_CHANNELS)
    for name in standin.IDENTITY_LAYERS:
        k = weights[name].kernel
        assert np.count_nonzero(k[0]) == np.count_nonzero(k[2]) == 0
        assert not weights[name].bias.any()
        centre = k[1, 1] / k[1, 1].max()
        np.testing.assert_allclose(centre, np.eye(k.shape[2]), atol=1e-6)
    photos = standin.calibration_photos(SHARED_DATA / "content")
    assert len(photos) >= 6
    got = standin.layer_statistics(weights, photos)
    for name, want in standin.VGG19_REFERENCE.items():
        assert got[name] == pytest.approx(want, rel=1e-4), name
    assert inspect_weights(standin_weights).synthetic  # never mistaken for ImageNet


def test_hed_file_layout_is_vgg16() -> None:
    try:
        path = standin.find_hed_weights()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    vgg16 = standin.read_hed_vgg16(path)
    assert len(vgg16) == 13
    assert vgg16["block1_conv1"].kernel.shape == (3, 3, 3, 64)
    assert vgg16["block5_conv3"].kernel.shape == (3, 3, 512, 512)


def test_default_photo_folder_is_the_reference_photos_beside_the_repository() -> None:
    """`synth-weights --trained-standin` without --photos calibrates on these photos."""
    folder = standin.default_photo_folder()
    assert folder == (SHARED_DATA / "content").resolve()
    assert any(folder.glob("*.jpg"))
