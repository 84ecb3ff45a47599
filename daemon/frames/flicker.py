"""The flicker measure: how much a stylized sequence changes where the scene does not.

Temporal error of frame t (Ruder et al. 2016's measure, as mean absolute difference):
``mean |out_t - warp(out_{t-1})|`` over the pixels the content's flow marks reliable, in
[0, 1] RGB units, channels averaged. The flow, the mask and the warp all come from the
*content* frames, so the measure asks "did the picture change more than the scene moved?".
The same measure on the content frames themselves is the floor: what warping by the
estimated flow leaves even for a sequence that follows its motion exactly (interpolation,
flow error, lighting).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from neural_style.daemon.frames.flow import FramePair, frame_pair, warp


def temporal_error(previous: np.ndarray, current: np.ndarray, pair: FramePair) -> float:
    """Mean |current - warp(previous, pair.backward)| over ``pair.mask`` (float RGB)."""
    diff = np.abs(np.asarray(current, np.float32) - warp(previous, pair.backward))
    if diff.ndim == 3:
        diff = diff.mean(axis=-1)
    weight = pair.mask
    return float((diff * weight).sum() / max(float(weight.sum()), 1.0))


def resize_to(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Float (H, W[, C]) image resized to ``size`` (width, height), bicubic per channel."""
    image = np.asarray(image, np.float32)
    if (image.shape[1], image.shape[0]) == size:
        return image
    planes = image[..., None] if image.ndim == 2 else image
    bicubic = Image.Resampling.BICUBIC
    resized = [
        Image.fromarray(np.ascontiguousarray(planes[..., c])).resize(size, bicubic)
        for c in range(planes.shape[2])
    ]
    out = np.stack([np.asarray(p, np.float32) for p in resized], axis=-1)
    return out[..., 0] if image.ndim == 2 else out


@dataclass
class FlickerReport:
    """Temporal error per pair (t-1, t) of a sequence, for the outputs and for the contents."""

    output: list[float] = field(default_factory=list)
    content: list[float] = field(default_factory=list)
    """The floor: the content frames' own temporal error."""
    cuts: list[int] = field(default_factory=list)
    """Frames t detected as scene cuts (their pairs are left out of the means)."""

    @property
    def mean(self) -> float:
        kept = [e for e in self.output if np.isfinite(e)]
        return float(np.mean(kept)) if kept else float("nan")

    @property
    def floor(self) -> float:
        kept = [e for e in self.content if np.isfinite(e)]
        return float(np.mean(kept)) if kept else float("nan")

    def to_dict(self) -> dict[str, object]:
        return {
            "temporal_error": round(self.mean, 5),
            "floor": round(self.floor, 5),
            "per_frame": [round(e, 5) for e in self.output],
            "per_frame_floor": [round(e, 5) for e in self.content],
            "cuts": self.cuts,
        }


def sequence_flicker(
    outputs: Sequence[np.ndarray],
    contents: Sequence[np.ndarray],
    pairs: Sequence[FramePair | None] | None = None,
) -> FlickerReport:
    """Temporal error of each consecutive pair of ``outputs`` (float RGB in [0, 1]), with the
    flow of ``contents`` at the outputs' size (contents are resized to it). ``pairs``: the
    content pairs already computed at that size (``pairs[t]`` for frames t-1 -> t, None at
    t = 0). Pairs that are scene cuts count as NaN and are listed in ``cuts``."""
    if len(outputs) != len(contents):
        raise ValueError(f"{len(outputs)} outputs but {len(contents)} content frames")
    report = FlickerReport()
    if not outputs:
        return report
    size = (outputs[0].shape[1], outputs[0].shape[0])
    frames = [resize_to(c, size) for c in contents]
    for t in range(1, len(outputs)):
        pair = pairs[t] if pairs is not None else None
        if pair is None:
            pair = frame_pair(frames[t - 1], frames[t])
        if pair.cut:
            report.cuts.append(t)
            report.output.append(float("nan"))
            report.content.append(float("nan"))
            continue
        out_prev = resize_to(outputs[t - 1], size)
        out_cur = resize_to(outputs[t], size)
        report.output.append(temporal_error(out_prev, out_cur, pair))
        report.content.append(temporal_error(frames[t - 1], frames[t], pair))
    return report


__all__ = ["FlickerReport", "resize_to", "sequence_flicker", "temporal_error"]
