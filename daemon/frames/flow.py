"""Dense optical flow between frames, warping by it, and where a warp can be trusted.

Flow convention (OpenCV's): ``flow = dense_flow(a, b)`` gives, at each pixel x of ``a``,
the displacement to where that point is in ``b``: ``a(x) ≈ b(x + flow(x))``. So
``warp(b, dense_flow(a, b))`` looks like ``a``. For a sequence, the *backward* flow of frame
t is ``dense_flow(frame_t, frame_{t-1})``: it warps anything aligned with frame t-1 (its
stylized result) onto frame t.

The flow is OpenCV's DIS (Kroeger et al. 2016, "Fast optical flow using dense inverse
search"): a maintained, CPU-fast method with variational refinement (512x384 in about
20 ms on one core), shipped in ``opencv-python-headless``.

Where the warp cannot be trusted (Ruder, Dosovitskiy & Brox 2016, "Artistic style transfer
for videos", section 3.2, after Sundaram et al. 2010), the mask is 0:

* **disocclusions**: the forward flow, warped to frame t, is not the opposite of the
  backward flow: ``|w̃ + ŵ|² > 0.01 (|w̃|² + |ŵ|²) + 0.5``;
* **motion boundaries**: ``|∇û|² + |∇v̂|² > 0.01 |ŵ|² + 0.002``;
* pixels whose source ``x + ŵ(x)`` lies outside frame t-1 (what a pan brings in).

A **scene cut** is where this consistency collapses: less than :data:`CUT_RELIABLE` of
frame t is reliable, or the reliable part does not look like the warped frame t-1
(mean absolute difference above :data:`CUT_PHOTOMETRIC`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

#: A pair is a scene cut when less than this share of frame t is reliable ...
CUT_RELIABLE = 0.35
#: ... or when the reliable pixels differ from the warped frame t-1 by more than this
#: (mean absolute difference of [0, 1] luminance; a warped pan measures ~0.01).
CUT_PHOTOMETRIC = 0.08

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise ImportError(
            "Optical flow needs OpenCV: pip install 'neural-style-gimp[frames]' "
            "(or ./install.sh, which installs it)."
        ) from None
    return cv2


def luminance(rgb: np.ndarray) -> np.ndarray:
    """(H, W) float32 luminance of (H, W, 3) RGB, or the image itself when it is (H, W)."""
    rgb = np.asarray(rgb, np.float32)
    return rgb if rgb.ndim == 2 else rgb[..., :3] @ _LUMA


def dense_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(H, W, 2) float32 flow (dx, dy) from ``a`` to ``b`` (same size): ``a(x) ≈ b(x + flow)``.

    DIS at its ``medium`` preset on 8-bit luminance.
    """
    if a.shape[:2] != b.shape[:2]:
        raise ValueError(f"frames of different sizes: {a.shape[:2]} and {b.shape[:2]}")
    cv2 = _cv2()
    ga = np.clip(luminance(a) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    gb = np.clip(luminance(b) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = dis.calc(ga, gb, None)
    return np.asarray(flow, np.float32)


def _grid(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    return xs, ys


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``out(x) = image(x + flow(x))``: bilinear, edges repeated. ``image`` is (H, W) or
    (H, W, C) with the flow's height and width; the result has its shape and float32."""
    if image.shape[:2] != flow.shape[:2]:
        raise ValueError(f"image {image.shape[:2]} and flow {flow.shape[:2]} differ in size")
    xs, ys = _grid(flow.shape)
    coords = np.stack([ys + flow[..., 1], xs + flow[..., 0]])
    img = np.asarray(image, np.float32)
    if img.ndim == 2:
        return ndimage.map_coordinates(img, coords, order=1, mode="nearest")
    return np.stack(
        [
            ndimage.map_coordinates(img[..., c], coords, order=1, mode="nearest")
            for c in range(img.shape[2])
        ],
        axis=-1,
    )


def outside(flow: np.ndarray) -> np.ndarray:
    """(H, W) bool: where ``x + flow(x)`` falls outside the frame (more than half a pixel)."""
    xs, ys = _grid(flow.shape)
    h, w = flow.shape[:2]
    tx, ty = xs + flow[..., 0], ys + flow[..., 1]
    return (tx < -0.5) | (tx > w - 0.5) | (ty < -0.5) | (ty > h - 0.5)


def disocclusions(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """(H, W) bool on frame t: the forward flow (t-1 -> t) warped to frame t is not the
    opposite of the backward flow (t -> t-1)."""
    fwd_at_t = warp(forward, backward)
    total = np.sum((fwd_at_t + backward) ** 2, axis=-1)
    scale = np.sum(fwd_at_t**2, axis=-1) + np.sum(backward**2, axis=-1)
    return np.asarray(total > 0.01 * scale + 0.5)


def motion_boundaries(backward: np.ndarray) -> np.ndarray:
    """(H, W) bool: ``|∇û|² + |∇v̂|² > 0.01 |ŵ|² + 0.002`` (central differences)."""
    du_y, du_x = np.gradient(backward[..., 0])
    dv_y, dv_x = np.gradient(backward[..., 1])
    gradient = du_x**2 + du_y**2 + dv_x**2 + dv_y**2
    return np.asarray(gradient > 0.01 * np.sum(backward**2, axis=-1) + 0.002)


@dataclass(frozen=True)
class FramePair:
    """What one step of a sequence (frame t-1 -> frame t) gives, all at frame t's pixels."""

    backward: np.ndarray
    """(H, W, 2) flow t -> t-1: ``warp(anything_at_t-1, backward)`` is aligned with t."""
    forward: np.ndarray
    """(H, W, 2) flow t-1 -> t (at frame t-1's pixels)."""
    mask: np.ndarray
    """(H, W) float32: 1 where the warp from t-1 is reliable, 0 at disocclusions, motion
    boundaries and what came in from outside the frame."""
    reliable: float
    """Share of frame t that is reliable (the mask's mean)."""
    photometric: float
    """Mean |frame_t - warp(frame_{t-1})| of luminance over the reliable pixels."""

    @property
    def cut(self) -> bool:
        """True when the flow's consistency collapsed: a scene cut."""
        return self.reliable < CUT_RELIABLE or self.photometric > CUT_PHOTOMETRIC

    def to_dict(self) -> dict[str, float | bool]:
        return {
            "reliable": round(self.reliable, 4),
            "photometric": round(self.photometric, 4),
            "cut": self.cut,
        }


def reliability_mask(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """(H, W) float32 mask of frame t (Ruder et al. 2016): 0 at disocclusions, motion
    boundaries and sources outside the frame, 1 elsewhere."""
    bad = disocclusions(forward, backward) | motion_boundaries(backward) | outside(backward)
    return (~bad).astype(np.float32)


def frame_pair(previous: np.ndarray, current: np.ndarray) -> FramePair:
    """Flows both ways, the reliability mask and the scene-cut measures of two content
    frames (same size; float in [0, 1])."""
    backward = dense_flow(current, previous)
    forward = dense_flow(previous, current)
    mask = reliability_mask(forward, backward)
    reliable = float(mask.mean())
    diff = np.abs(luminance(current) - warp(luminance(previous), backward))
    photometric = float((diff * mask).sum() / max(mask.sum(), 1.0))
    return FramePair(backward, forward, mask, reliable, photometric)


__all__ = [
    "CUT_PHOTOMETRIC",
    "CUT_RELIABLE",
    "FramePair",
    "dense_flow",
    "disocclusions",
    "frame_pair",
    "motion_boundaries",
    "outside",
    "reliability_mask",
    "warp",
]
