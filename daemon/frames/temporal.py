"""Frames mode: stylize frame t starting from the stylized frame t-1 (Ruder et al. 2016).

For each frame after the first, :func:`plan_frame` computes the optical flow between the
previous and the current *content* frames at the working size (:mod:`.flow`), warps the
previous stylized frame onto the current one, and returns

* the start image: that warped result where it is reliable, the content elsewhere (at the
  content's size, as ``init``), and
* the temporal term: the warped result as a target with Ruder's reliability mask (0 at
  disocclusions, motion boundaries and what enters the frame) and a weight; the engine adds
  ``weight · mean(mask · (x - target)²)`` (:func:`~neural_style.daemon.engine.losses.temporal_loss`)
  to its loss at the working size;
* the parameters of a continuation: one scale (no coarse-to-fine ladder: the start is
  already at the working size and close to a minimum) and :data:`FRAME_SHARE` of the steps.

A scene cut (the flow's consistency collapses: :attr:`.flow.FramePair.cut`) gives none of
these: the frame runs as an independent one, from its content.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from neural_style.daemon.frames.flow import FramePair, frame_pair, warp
from neural_style.shared import defaults

#: Default weight of the temporal loss (mean squared deviation in [0, 1] pixel units, over
#: the reliable pixels) against the content weight 1e4 and style weight 1e-2: see
#: docs/frames.md for how it was chosen.
TEMPORAL_WEIGHT = defaults.TEMPORAL_WEIGHT
#: Steps of a continuation frame, as a share of the job's ``iterations``.
FRAME_SHARE = 0.3


@dataclass(frozen=True)
class TemporalTerm:
    """Ruder et al.'s temporal loss for one frame, at the working size."""

    target: np.ndarray
    """(h, w, 3) float32: the previous stylized frame warped onto this one."""
    mask: np.ndarray
    """(h, w) float32 in [0, 1]: where the warp is reliable."""
    weight: float


@dataclass
class FramePlan:
    """How to run one frame of a sequence."""

    params: Any
    """The job's StyleParams, or a continuation's (one scale, fewer steps)."""
    init: np.ndarray | None = None
    """The start at the content's size (float32 RGB), None: the job's own init."""
    temporal: TemporalTerm | None = None
    pair: FramePair | None = None

    @property
    def info(self) -> dict[str, Any]:
        """For reports: whether it continued from the previous frame, and the flow check."""
        out: dict[str, Any] = {"continued": self.init is not None}
        if self.pair is not None:
            out.update(self.pair.to_dict())
        return out


def _rgb(image: np.ndarray) -> np.ndarray:
    from neural_style.daemon.engine import images

    return images.split_alpha(images.to_float(images.as_hwc(image)))[0]


def continuation_params(params: Any, share: float = FRAME_SHARE) -> Any:
    """``params`` for a frame that starts from the warped previous result: the working size
    only, ``share`` of the steps (at least 1)."""
    steps = max(1, round(params.iterations * share))
    return dataclasses.replace(params, scales=None, iterations=steps)


def plan_frame(
    previous_content: np.ndarray | None,
    previous_result: np.ndarray | None,
    content: np.ndarray,
    params: Any,
    temporal_weight: float = TEMPORAL_WEIGHT,
    share: float = FRAME_SHARE,
) -> FramePlan:
    """How to run ``content`` given the previous frame's content and stylized result (any
    channels and dtype; the content's size). No previous frame: the job as it is."""
    from neural_style.daemon.engine import images

    if previous_content is None or previous_result is None:
        return FramePlan(params)
    cur = _rgb(content)
    h, w = cur.shape[:2]
    for name, image in (("previous content", previous_content), ("previous result",
                                                                  previous_result)):  # fmt: skip
        if image.shape[:2] != (h, w):
            raise images.bad(
                f"The {name} is {image.shape[1]}x{image.shape[0]}; it must have the "
                f"content's size {w}x{h}."
            )
    work = images.fit_long_side(w, h, min(params.size, max(w, h)))
    cur_w = images.resize(cur, work)
    prev_w = images.resize(_rgb(previous_content), work)
    pair = frame_pair(prev_w, cur_w)
    if pair.cut:
        return FramePlan(params, pair=pair)
    result_w = images.resize(_rgb(previous_result), work)
    warped = np.clip(warp(result_w, pair.backward), 0.0, 1.0).astype(np.float32)
    # Where the warp has no source (what a pan brings in, disocclusions) it repeats edge
    # pixels into streaks that the few steps of a continuation do not paint over: start
    # there from the content, as an independent frame would.
    keep = pair.mask[..., None]
    start = (keep * warped + (1.0 - keep) * cur_w).astype(np.float32)
    init = start if work == (w, h) else images.resize(start, (w, h))
    term = TemporalTerm(warped, pair.mask, float(temporal_weight)) if temporal_weight else None
    return FramePlan(continuation_params(params, share), init, term, pair)


def stylize_frame(
    engine: Any,
    content: np.ndarray,
    styles: list[np.ndarray],
    params: Any,
    callback: Callable[[Any], str | None] | None = None,
    *,
    previous: tuple[np.ndarray, np.ndarray] | None = None,
    temporal_weight: float = TEMPORAL_WEIGHT,
    mask: np.ndarray | None = None,
) -> Any:
    """One frame on ``engine`` (a StyleTransfer): :func:`plan_frame`, then the job. The
    result's ``frame`` says whether it continued from the previous frame and the flow's
    reliability."""
    prev_content, prev_result = previous if previous is not None else (None, None)
    plan = plan_frame(prev_content, prev_result, content, params, temporal_weight)
    result = engine.stylize(
        content, styles, plan.params, callback, mask=mask, init=plan.init,
        temporal=plan.temporal,
    )  # fmt: skip
    result.frame = plan.info
    return result


__all__ = [
    "FRAME_SHARE",
    "TEMPORAL_WEIGHT",
    "FramePlan",
    "TemporalTerm",
    "continuation_params",
    "plan_frame",
    "stylize_frame",
]
