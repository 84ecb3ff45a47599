"""VGG-19 cut after the deepest layer the losses use, as a plain TensorFlow function.

The weights are loaded through Keras (``keras.applications.VGG19``) from the standard
ImageNet file, then copied into constants so the forward pass is a short chain of
``tf.nn.conv2d`` calls we control (precision, padding, pooling) with no Keras bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

#: The brief's layers.
CONTENT_LAYERS: tuple[str, ...] = ("block5_conv2",)
STYLE_LAYERS: tuple[str, ...] = (
    "block1_conv1",
    "block2_conv1",
    "block3_conv1",
    "block4_conv1",
    "block5_conv1",
)

#: The layer that sees the pixels: always float32 (see VGGFeatures).
FIRST_CONV = "block1_conv1"
#: VGG-19's convolution layers in order; "pool" marks a 2x2 max-pool.
VGG19_LAYERS: tuple[str, ...] = (
    "block1_conv1", "block1_conv2", "pool",
    "block2_conv1", "block2_conv2", "pool",
    "block3_conv1", "block3_conv2", "block3_conv3", "block3_conv4", "pool",
    "block4_conv1", "block4_conv2", "block4_conv3", "block4_conv4", "pool",
    "block5_conv1", "block5_conv2", "block5_conv3", "block5_conv4", "pool",
)  # fmt: skip

#: Channels of each convolution layer (input 3).
VGG19_CHANNELS: dict[str, int] = {
    name: {"1": 64, "2": 128, "3": 256, "4": 512, "5": 512}[name[5]]
    for name in VGG19_LAYERS
    if name != "pool"
}

#: ImageNet mean in RGB order, on the 0..255 scale ("caffe" preprocessing).
IMAGENET_MEAN_RGB = np.array([123.68, 116.779, 103.939], dtype=np.float32)


def layers_needed(outputs: tuple[str, ...]) -> tuple[str, ...]:
    """The prefix of VGG19_LAYERS up to the deepest layer in ``outputs``."""
    last = max(VGG19_LAYERS.index(name) for name in outputs)
    return VGG19_LAYERS[: last + 1]


@dataclass(frozen=True)
class ConvWeights:
    kernel: np.ndarray  # (3, 3, in, out) float32
    bias: np.ndarray  # (out,) float32


def load_keras_vgg19(path: Path) -> dict[str, ConvWeights]:
    """Load the notop weights file through Keras' own VGG19 and return the conv weights.

    Raises whatever Keras raises; :mod:`weights` checks the layout first and turns
    failures into user-facing errors.
    """
    import keras

    model = keras.applications.VGG19(
        include_top=False, weights=str(path), input_shape=(None, None, 3)
    )
    out: dict[str, ConvWeights] = {}
    for name in VGG19_CHANNELS:
        kernel, bias = model.get_layer(name).get_weights()
        out[name] = ConvWeights(np.asarray(kernel, np.float32), np.asarray(bias, np.float32))
    del model
    keras.backend.clear_session()
    return out


class VGGFeatures:
    """Feature extractor: images in [0, 1] RGB -> the activations the losses need.

    Preprocessing matches Keras' ``vgg19.preprocess_input`` ("caffe": RGB->BGR, 0..255,
    minus the ImageNet mean); the BGR swap is folded into the first kernel once.

    With ``compute_dtype=bfloat16`` the first convolution still runs in float32 and its
    output is cast: bf16's 8-bit mantissa would otherwise round the *pixels* themselves
    (spacing 1.0 on the 0..255 scale above 128, a full 1/255 step), hiding small updates
    from the optimiser. That layer has 3 input channels, under 0.5 % of the FLOPs.
    """

    def __init__(
        self,
        weights: dict[str, ConvWeights],
        outputs: tuple[str, ...] = STYLE_LAYERS + CONTENT_LAYERS,
        compute_dtype: tf.DType = tf.float32,
    ) -> None:
        self.outputs = outputs
        self.layers = layers_needed(outputs)
        self.compute_dtype = compute_dtype
        self._kernels: dict[str, tf.Tensor] = {}
        self._biases: dict[str, tf.Tensor] = {}
        for name in self.layers:
            if name == "pool":
                continue
            kernel = weights[name].kernel
            dtype = compute_dtype
            if name == FIRST_CONV:
                kernel = kernel[:, :, ::-1, :]  # accept RGB input where Keras expects BGR
                dtype = tf.float32  # see the class docstring
            self._kernels[name] = tf.constant(np.ascontiguousarray(kernel), dtype=dtype)
            self._biases[name] = tf.constant(weights[name].bias, dtype=dtype)
        self._mean = tf.constant(IMAGENET_MEAN_RGB)

    def __call__(
        self, images: tf.Tensor, pooling: str = "max", padding: str = "zero"
    ) -> dict[str, tf.Tensor]:
        """(B, H, W, 3) float32 in [0, 1] -> {layer name: (B, h, w, C) activations}.

        ``pooling="avg"`` swaps VGG's max pools for average pools (Gatys et al. found the
        results slightly smoother); ``padding="reflect"`` pads every convolution by
        mirroring the edge instead of with zeros, so the network sees no frame around the
        image and does not paint one.
        """
        x = images * 255.0 - self._mean
        found: dict[str, tf.Tensor] = {}
        pool = tf.nn.avg_pool2d if pooling == "avg" else tf.nn.max_pool2d
        for name in self.layers:
            if name == "pool":
                x = pool(x, ksize=2, strides=2, padding="VALID")
                continue
            if padding == "reflect":
                # SYMMETRIC (the edge pixel mirrored) rather than REFLECT: identical in
                # spirit, and defined even where a deep feature map is 1 pixel wide.
                x = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
                x = tf.nn.conv2d(x, self._kernels[name], strides=1, padding="VALID")
            else:
                x = tf.nn.conv2d(x, self._kernels[name], strides=1, padding="SAME")
            x = tf.nn.relu(tf.nn.bias_add(x, self._biases[name]))
            if name == FIRST_CONV:
                x = tf.cast(x, self.compute_dtype)  # no-op in float32
            if name in self.outputs:
                found[name] = x
        return found
