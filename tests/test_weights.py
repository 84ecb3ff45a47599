"""Weights: the synthetic file loads through the production path; each fault is named."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from neural_style.daemon.engine import weights as W
from neural_style.shared.errors import ErrorCode, NeuralStyleError


def test_synthetic_file_has_keras_legacy_layout(synthetic_weights: Path) -> None:
    with h5py.File(synthetic_weights, "r") as f:
        names = [n.decode() for n in f.attrs["layer_names"]]
        assert names[0] == "input_1" and names[-1] == "block5_pool"
        assert len(names) == 1 + 16 + 5
        wn = [n.decode() for n in f["block3_conv2"].attrs["weight_names"]]
        assert wn == ["block3_conv2_W_1:0", "block3_conv2_b_1:0"]
        assert f["block3_conv2"][wn[0]].shape == (3, 3, 256, 256)
        assert len(f["block2_pool"].attrs["weight_names"]) == 0


def test_synthetic_weights_are_seeded(tmp_path: Path) -> None:
    a = W.write_synthetic_weights(tmp_path / "a.h5", seed=3)
    b = W.write_synthetic_weights(tmp_path / "b.h5", seed=3)
    c = W.write_synthetic_weights(tmp_path / "c.h5", seed=4)
    assert W.file_digests(a) == W.file_digests(b) != W.file_digests(c)


def test_synthetic_file_loads_through_keras_and_is_flagged(synthetic_weights: Path) -> None:
    from neural_style.daemon.engine.vgg import load_keras_vgg19

    info = W.inspect_weights(synthetic_weights)
    assert info.synthetic is True
    assert len(info.sha256) == 64 and info.md5 != W.WEIGHTS_MD5
    conv = load_keras_vgg19(synthetic_weights)
    with h5py.File(synthetic_weights, "r") as f:
        np.testing.assert_array_equal(
            conv["block4_conv3"].kernel, f["block4_conv3"]["block4_conv3_W_1:0"][()]
        )
        np.testing.assert_array_equal(
            conv["block1_conv1"].bias, f["block1_conv1"]["block1_conv1_b_1:0"][()]
        )


def test_engine_reports_synthetic_weights(engine) -> None:  # type: ignore[no-untyped-def]
    assert engine.weights.synthetic is True


def _expect(code: ErrorCode, fn, *args, match: str) -> NeuralStyleError:  # type: ignore[no-untyped-def]
    with pytest.raises(NeuralStyleError) as info:
        fn(*args)
    assert info.value.code is code
    assert match in info.value.message
    assert "fetch-weights" in info.value.hint
    return info.value


def test_missing_file(tmp_path: Path) -> None:
    _expect(
        ErrorCode.WEIGHTS_MISSING, W.resolve_weights, tmp_path / "nope.h5", match="does not exist"
    )


def test_truncated_file(synthetic_weights: Path, tmp_path: Path) -> None:
    bad = tmp_path / "truncated.h5"
    data = synthetic_weights.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    _expect(ErrorCode.WEIGHTS_MISSING, W.inspect_weights, bad, match="truncated or corrupt")


def test_not_hdf5(tmp_path: Path) -> None:
    bad = tmp_path / "text.h5"
    bad.write_text("this is not HDF5")
    _expect(ErrorCode.WEIGHTS_MISSING, W.inspect_weights, bad, match="HDF5 could not open")


def test_wrong_layout_missing_layer(synthetic_weights: Path, tmp_path: Path) -> None:
    bad = tmp_path / "missing_layer.h5"
    shutil.copy(synthetic_weights, bad)
    with h5py.File(bad, "a") as f:
        del f["block4_conv2"]
    _expect(ErrorCode.WEIGHTS_MISSING, W.inspect_weights, bad, match="block4_conv2 is missing")


def test_wrong_layout_wrong_shapes(tmp_path: Path) -> None:
    bad = W.write_synthetic_weights(tmp_path / "shapes.h5")
    with h5py.File(bad, "a") as f:
        g = f["block2_conv1"]
        del g["block2_conv1_W_1:0"]
        g.create_dataset("block2_conv1_W_1:0", data=np.zeros((3, 3, 64, 64), np.float32))
    _expect(ErrorCode.WEIGHTS_MISSING, W.inspect_weights, bad, match="shapes")


def test_wrong_layout_not_keras(tmp_path: Path) -> None:
    bad = tmp_path / "plain.h5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    _expect(ErrorCode.WEIGHTS_MISSING, W.inspect_weights, bad, match="not Keras")


def test_file_with_classifier_top_is_rejected(synthetic_weights: Path, tmp_path: Path) -> None:
    bad = tmp_path / "top.h5"
    shutil.copy(synthetic_weights, bad)
    with h5py.File(bad, "a") as f:
        f.attrs["layer_names"] = np.array([*f.attrs["layer_names"], b"fc1"], dtype="S")
        g = f.create_group("fc1")
        g.attrs["weight_names"] = np.array([b"fc1_W_1:0", b"fc1_b_1:0"], dtype="S")
        g.create_dataset("fc1_W_1:0", data=np.zeros((4, 2), np.float32))
        g.create_dataset("fc1_b_1:0", data=np.zeros(2, np.float32))
    _expect(ErrorCode.WEIGHTS_MISSING, W.inspect_weights, bad, match="notop")


def test_resolution_order(
    synthetic_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_copy = tmp_path / "env.h5"
    shutil.copy(synthetic_weights, env_copy)
    keras_home = tmp_path / "keras"
    (keras_home / "models").mkdir(parents=True)
    cached = keras_home / "models" / W.WEIGHTS_FILENAME
    shutil.copy(synthetic_weights, cached)
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.setenv(W.ENV_VAR, str(env_copy))
    assert W.resolve_weights(synthetic_weights) == synthetic_weights  # explicit first
    assert W.resolve_weights(None) == env_copy  # then the environment
    monkeypatch.delenv(W.ENV_VAR)
    assert W.resolve_weights(None) == cached  # then Keras' cache
    cached.unlink()
    err = _expect(ErrorCode.WEIGHTS_MISSING, W.resolve_weights, None, match="No VGG-19 weights")
    assert str(cached) in err.message
    monkeypatch.setenv(W.ENV_VAR, str(tmp_path / "gone.h5"))
    _expect(ErrorCode.WEIGHTS_MISSING, W.resolve_weights, None, match=W.ENV_VAR)


@pytest.mark.realweights
def test_real_imagenet_weights_are_recognised() -> None:
    path = W.keras_cache_path()
    if not path.is_file():
        pytest.skip(f"real ImageNet weights not present at {path} (no network on CI)")
    info = W.inspect_weights(path)
    assert info.synthetic is False and info.md5 == W.WEIGHTS_MD5
