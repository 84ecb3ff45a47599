"""Synthetic frame sequences whose true motion is known, for tests and benchmarks.

Each is cut from stills (a photo, a painting) by a moving window or a moving patch, so the
backward flow of every frame (t -> t-1, the convention of :mod:`.flow`) and the pixels
that have no source in frame t-1 are known exactly:

* :func:`pan`: a window sliding over a still (a camera pan);
* :func:`zoom`: a window shrinking about the still's centre (a zoom in);
* :func:`moving_object`: a textured patch moving over a still background;
* :func:`scene_cut`: a pan over one still, then a pan over another.

Frames are float32 RGB in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

#: The stills shipped with the package (daemon/samples).
SAMPLES = Path(__file__).resolve().parents[1] / "samples"


@dataclass
class Sequence:
    """Frames with their known motion."""

    name: str
    frames: list[np.ndarray]
    flows: list[np.ndarray | None]
    """``flows[t]``: the true backward flow (H, W, 2) of frame t; None at t = 0 and at cuts."""
    unreliable: list[np.ndarray | None]
    """``unreliable[t]``: (H, W) bool, pixels of frame t with no source in frame t-1."""
    cuts: list[int] = field(default_factory=list)
    """Frames that start a new scene."""

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.frames[0].shape[1], self.frames[0].shape[0]

    def save(self, folder: Path, stem: str = "frame") -> list[Path]:
        """Write the frames as ``folder/<stem>_0001.png`` ... (8-bit RGB)."""
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for t, frame in enumerate(self.frames):
            path = folder / f"{stem}_{t + 1:04d}.png"
            Image.fromarray(to_uint8(frame)).save(path)
            paths.append(path)
        return paths


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(np.clip(rgb * 255.0 + 0.5, 0, 255), np.uint8)


def load_still(path: str | Path) -> np.ndarray:
    """An image file as float32 RGB in [0, 1]."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), np.float32) / 255.0


def sample_still(name: str = "chelsea.jpg") -> np.ndarray:
    """One of the package's sample stills (``chelsea.jpg``, ``starry_night.jpg``)."""
    return load_still(SAMPLES / name)


def fit_still(still: np.ndarray, width: int, height: int) -> np.ndarray:
    """``still`` scaled (Lanczos, keeping its proportions) so that it covers width x height."""
    h, w = still.shape[:2]
    scale = max(width / w, height / h)
    size = (max(width, round(w * scale + 0.49)), max(height, round(h * scale + 0.49)))
    if size == (w, h):
        return np.asarray(still, np.float32)
    im = Image.fromarray(to_uint8(still)).resize(size, Image.Resampling.LANCZOS)
    return np.asarray(im, np.float32) / 255.0


def sample(still: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """``still`` at fractional (row, column) positions: cubic spline, clipped to [0, 1]."""
    out = [
        ndimage.map_coordinates(still[..., c], [ys, xs], order=3, mode="reflect") for c in range(3)
    ]
    return np.clip(np.stack(out, axis=-1), 0.0, 1.0).astype(np.float32)


def _outside(flow: np.ndarray) -> np.ndarray:
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    tx, ty = xs + flow[..., 0], ys + flow[..., 1]
    return np.asarray((tx < 0) | (tx > w - 1) | (ty < 0) | (ty > h - 1))


def pan(
    still: np.ndarray,
    size: tuple[int, int] = (128, 96),
    frames: int = 6,
    step: tuple[int, int] = (4, 1),
    name: str = "pan",
) -> Sequence:
    """A ``size`` (width, height) window moving ``step`` (dx, dy) pixels per frame over
    ``still`` (scaled to just hold the whole path). Integer steps: each frame is an exact
    crop, and frame t(x) = frame t-1(x + step)."""
    w, h = size
    dx, dy = step
    big = fit_still(still, w + abs(dx) * (frames - 1), h + abs(dy) * (frames - 1))
    x0 = 0 if dx >= 0 else abs(dx) * (frames - 1)
    y0 = 0 if dy >= 0 else abs(dy) * (frames - 1)
    out: list[np.ndarray] = []
    flows: list[np.ndarray | None] = []
    unreliable: list[np.ndarray | None] = []
    flow = np.zeros((h, w, 2), np.float32)
    flow[..., 0], flow[..., 1] = dx, dy
    for t in range(frames):
        x, y = x0 + dx * t, y0 + dy * t
        out.append(np.ascontiguousarray(big[y : y + h, x : x + w]))
        flows.append(None if t == 0 else flow.copy())
        unreliable.append(None if t == 0 else _outside(flow))
    return Sequence(name, out, flows, unreliable)


def zoom(
    still: np.ndarray,
    size: tuple[int, int] = (128, 96),
    frames: int = 6,
    factor: float = 1.03,
    name: str = "zoom",
) -> Sequence:
    """Zoom in about the centre: each frame magnifies the previous one by ``factor``.
    Frame t(x) = frame t-1(c + (x - c) / factor), c the frame's centre."""
    w, h = size
    big = fit_still(still, w, h)
    bh, bw = big.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    bcx, bcy = (bw - 1) / 2.0, (bh - 1) / 2.0
    flow = np.stack([(xs - cx) * (1 / factor - 1), (ys - cy) * (1 / factor - 1)], -1)
    flow = flow.astype(np.float32)
    out: list[np.ndarray] = []
    flows: list[np.ndarray | None] = []
    unreliable: list[np.ndarray | None] = []
    for t in range(frames):
        r = factor ** (-t)
        out.append(sample(big, bcy + (ys - cy) * r, bcx + (xs - cx) * r))
        flows.append(None if t == 0 else flow.copy())
        unreliable.append(None if t == 0 else _outside(flow))
    return Sequence(name, out, flows, unreliable)


def moving_object(
    background: np.ndarray,
    texture: np.ndarray,
    size: tuple[int, int] = (128, 96),
    frames: int = 6,
    velocity: tuple[int, int] = (6, 2),
    side: int | None = None,
    name: str = "object",
) -> Sequence:
    """A square patch of ``texture`` (``side`` px, a third of the height by default) moving
    ``velocity`` pixels per frame over a still background cut from ``background``.

    Inside the patch the backward flow is ``-velocity``, elsewhere 0; the background the
    patch uncovers has no source in the previous frame."""
    w, h = size
    side = side or max(8, h // 3)
    vx, vy = velocity
    bg = fit_still(background, w, h)[:h, :w]
    patch = fit_still(texture, side, side)[:side, :side]
    start_x = max(0, min(w - side, (w - side - vx * (frames - 1)) // 2))
    start_y = max(0, min(h - side, (h - side - vy * (frames - 1)) // 2))

    def where(t: int) -> tuple[int, int]:
        return start_x + vx * t, start_y + vy * t

    out: list[np.ndarray] = []
    flows: list[np.ndarray | None] = []
    unreliable: list[np.ndarray | None] = []
    for t in range(frames):
        px, py = where(t)
        if not (0 <= px <= w - side and 0 <= py <= h - side):
            raise ValueError("the patch leaves the frame: fewer frames or a slower velocity")
        frame = bg.copy()
        frame[py : py + side, px : px + side] = patch
        out.append(frame)
        if t == 0:
            flows.append(None)
            unreliable.append(None)
            continue
        inside = np.zeros((h, w), bool)
        inside[py : py + side, px : px + side] = True
        qx, qy = where(t - 1)
        before = np.zeros((h, w), bool)
        before[qy : qy + side, qx : qx + side] = True
        flow = np.zeros((h, w, 2), np.float32)
        flow[inside] = (-vx, -vy)
        flows.append(flow)
        unreliable.append(before & ~inside)
    return Sequence(name, out, flows, unreliable)


def scene_cut(
    first: np.ndarray,
    second: np.ndarray,
    size: tuple[int, int] = (128, 96),
    frames: int = 6,
    cut_at: int = 3,
    step: tuple[int, int] = (4, 1),
    name: str = "cut",
) -> Sequence:
    """A pan over ``first`` for frames 0 .. cut_at-1, then a pan over ``second``."""
    a = pan(first, size, cut_at, step)
    b = pan(second, size, frames - cut_at, step)
    flows = [*a.flows, None, *b.flows[1:]]
    unreliable = [*a.unreliable, None, *b.unreliable[1:]]
    return Sequence(name, a.frames + b.frames, flows, unreliable, cuts=[cut_at])


__all__ = [
    "Sequence",
    "fit_still",
    "load_still",
    "moving_object",
    "pan",
    "sample_still",
    "scene_cut",
    "zoom",
]
