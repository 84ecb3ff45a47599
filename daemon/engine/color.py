"""Colour preservation (Gatys et al. 2017, "Controlling Perceptual Factors in Neural Style
Transfer"), as pure numpy functions on HxWx3 float32 images in [0, 1].

* Luminance-only transfer: optimise on luminance images, then give the result the content's
  chroma (YIQ), so colours stay the content's exactly.
* Colour histogram matching: a linear map that gives the style's pixels the mean and
  covariance of the content's (the paper's "colour histogram matching"; the symmetric
  square-root variant), applied to the style before optimising.
"""

from __future__ import annotations

import numpy as np

#: RGB -> YIQ (FCC NTSC); Y is Rec. 601 luma.
RGB_TO_YIQ = np.array(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]],
    dtype=np.float64,
)
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ)


def rgb_to_yiq(image: np.ndarray) -> np.ndarray:
    return (image.astype(np.float64) @ RGB_TO_YIQ.T).astype(np.float32)


def yiq_to_rgb(image: np.ndarray) -> np.ndarray:
    return (image.astype(np.float64) @ YIQ_TO_RGB.T).astype(np.float32)


def luminance(image: np.ndarray) -> np.ndarray:
    """HxWx3 -> HxWx1 luma."""
    return rgb_to_yiq(image)[:, :, :1]


def gray_rgb(y: np.ndarray) -> np.ndarray:
    """HxWx1 luma -> HxWx3 gray image (what VGG sees for luminance-only transfer)."""
    return np.repeat(np.clip(y, 0.0, 1.0), 3, axis=2).astype(np.float32)


def match_luminance(style_y: np.ndarray, content_y: np.ndarray) -> np.ndarray:
    """Shift and scale the style's luma to the content's mean and standard deviation
    (the paper's luminance matching, so style and content luma are comparable)."""
    s_mean, s_std = float(style_y.mean()), float(style_y.std())
    c_mean, c_std = float(content_y.mean()), float(content_y.std())
    scale = c_std / s_std if s_std > 1e-6 else 1.0
    return ((style_y - s_mean) * scale + c_mean).astype(np.float32)


def recombine_luminance(result_rgb: np.ndarray, content_rgb: np.ndarray) -> np.ndarray:
    """The result's luma with the content's chroma (both HxWx3, same size), in [0, 1]."""
    yiq = rgb_to_yiq(content_rgb)
    yiq[:, :, :1] = luminance(result_rgb)
    return np.clip(yiq_to_rgb(yiq), 0.0, 1.0)


def _sqrtm(cov: np.ndarray, inverse: bool = False) -> np.ndarray:
    values, vectors = np.linalg.eigh(cov)
    values = np.maximum(values, 1e-8)
    power = -0.5 if inverse else 0.5
    return (vectors * values**power) @ vectors.T


def match_color(style_rgb: np.ndarray, content_rgb: np.ndarray) -> np.ndarray:
    """Style pixels mapped to the content's colour mean and covariance, clipped to [0, 1]."""
    s = style_rgb.reshape(-1, 3).astype(np.float64)
    c = content_rgb.reshape(-1, 3).astype(np.float64)
    mu_s, mu_c = s.mean(axis=0), c.mean(axis=0)
    cov_s = np.cov(s, rowvar=False) + 1e-5 * np.eye(3)
    cov_c = np.cov(c, rowvar=False) + 1e-5 * np.eye(3)
    transform = _sqrtm(cov_c) @ _sqrtm(cov_s, inverse=True)
    out = (s - mu_s) @ transform.T + mu_c
    return np.clip(out, 0.0, 1.0).reshape(style_rgb.shape).astype(np.float32)
