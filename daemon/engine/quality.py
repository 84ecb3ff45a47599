"""Picture-quality measures the optimised loss does not look at.

The loss can be fooled (high-frequency "confetti" lowers some Gram differences while it
destroys the photo), so ``neural-style bench`` and the regression tests also score each
result on three things a person sees:

* **structure**: how much of the photo's layout survives: Pearson correlation of the
  Gaussian-blurred luminance of result and content (1 = the same layout; the blur, σ = 1 %
  of the long side, ignores the brush strokes the style adds).
* **style match**, where the loss does not look: (a) ``texture``: relative Gram distance to
  the style image at VGG layers *not* among the five style layers (block1..4_conv2), as a
  fraction of the content photo's own distance (1 = no closer than the photo, 0 = the
  style's texture statistics); (b) ``color``: the 2-Wasserstein distance between Gaussians
  fitted to the RGB pixels of result and style, also relative to the photo's.
* **noise**: high-frequency energy (mean squared difference from a 3×3 box blur, on
  luminance) of the result divided by the style image's at the same size: confetti shows up
  as several times the painting's own fine detail.

All but ``texture`` are pure NumPy/SciPy functions of float RGB images in [0, 1].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import linalg, ndimage

#: VGG-19 layers between the style layers: trained filters in both the ImageNet file and the
#: stand-in (whose block3/4_conv4 are identities), and never in the loss.
HELD_OUT_LAYERS = ("block1_conv2", "block2_conv2", "block3_conv2", "block4_conv2")
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class Quality:
    structure: float
    """Correlation of blurred luminance with the content, in [-1, 1]; higher keeps more."""
    texture: float
    """Held-out-layer Gram distance to the style, relative to the photo's; lower = closer."""
    color: float
    """Colour-statistics distance to the style, relative to the photo's; lower = closer."""
    noise: float
    """High-frequency energy relative to the style image's; ~1 is the painting's own."""

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items()}


def luminance(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(rgb[..., :3], np.float32) @ _LUMA


def structure(result: np.ndarray, content: np.ndarray) -> float:
    """Pearson correlation of the blurred luminances (same size)."""
    sigma = max(result.shape[:2]) / 100.0
    a = ndimage.gaussian_filter(luminance(result), sigma).ravel()
    b = ndimage.gaussian_filter(luminance(content), sigma).ravel()
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def high_frequency(rgb: np.ndarray) -> float:
    """Mean squared difference of luminance from its 3×3 box blur."""
    y = luminance(rgb)
    return float(np.mean((y - ndimage.uniform_filter(y, 3, mode="reflect")) ** 2))


def noise(result: np.ndarray, style: np.ndarray) -> float:
    """``result``'s high-frequency energy over the style image's, resized to its size."""
    from neural_style.daemon.engine import images

    h, w = result.shape[:2]
    sh, sw = style.shape[:2]
    scaled = images.resize(style, images.fit_long_side(sw, sh, max(h, w)))
    return high_frequency(result) / max(high_frequency(scaled), 1e-12)


def color_distance(a: np.ndarray, b: np.ndarray) -> float:
    """2-Wasserstein distance between Gaussians fitted to the two images' RGB pixels."""
    pa = a[..., :3].reshape(-1, 3).astype(np.float64)
    pb = b[..., :3].reshape(-1, 3).astype(np.float64)
    ma, mb = pa.mean(0), pb.mean(0)
    ca, cb = np.cov(pa, rowvar=False), np.cov(pb, rowvar=False)
    root = linalg.sqrtm(ca)
    cross = linalg.sqrtm(root @ cb @ root)
    bures = np.trace(ca + cb - 2 * np.real(cross))
    return float(np.sqrt(max(float(np.sum((ma - mb) ** 2) + bures), 0.0)))


def relative_color(result: np.ndarray, content: np.ndarray, style: np.ndarray) -> float:
    return color_distance(result, style) / max(color_distance(content, style), 1e-12)


class TextureMeter:
    """Gram distances at :data:`HELD_OUT_LAYERS` (the engine's own fp32 weights)."""

    def __init__(self, conv_weights: dict[str, Any]) -> None:
        from neural_style.daemon.engine.vgg import VGGFeatures

        self._features = VGGFeatures(conv_weights, outputs=HELD_OUT_LAYERS)

    def grams(self, rgb: np.ndarray) -> list[np.ndarray]:
        import tensorflow as tf

        from neural_style.daemon.engine.losses import gram_matrix

        feats = self._features(tf.constant(rgb[None, ..., :3], tf.float32))
        return [gram_matrix(feats[name]).numpy()[0] for name in HELD_OUT_LAYERS]

    def distance(self, rgb: np.ndarray, style_grams: list[np.ndarray]) -> float:
        """Mean over the layers of ‖G − G_style‖ / ‖G_style‖."""
        got = self.grams(rgb)
        pairs = zip(got, style_grams, strict=True)
        return float(np.mean([np.linalg.norm(g - s) / np.linalg.norm(s) for g, s in pairs]))


def assess(
    result: np.ndarray,
    content: np.ndarray,
    style: np.ndarray,
    meter: TextureMeter | None = None,
) -> Quality:
    """All measures of ``result`` (float RGB, the content's size) against its inputs; the
    style image's statistics are taken at the result's long side, as the engine does."""
    from neural_style.daemon.engine import images

    h, w = result.shape[:2]
    sh, sw = style.shape[:2]
    style_at = images.resize(style[..., :3], images.fit_long_side(sw, sh, max(h, w)))
    texture = float("nan")
    if meter is not None:
        targets = meter.grams(style_at)
        texture = meter.distance(result, targets) / max(meter.distance(content, targets), 1e-12)
    return Quality(
        structure=structure(result, content),
        texture=texture,
        color=relative_color(result, content, style_at),
        noise=noise(result, style_at),
    )
