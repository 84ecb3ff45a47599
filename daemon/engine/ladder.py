"""The coarse-to-fine ladder: working sizes, steps per scale, and the start of each finer scale."""

from __future__ import annotations

import numpy as np

from neural_style.daemon.engine import images
from neural_style.daemon.engine.params import Optimizer, StyleParams

#: Share of a coarse-to-fine job's steps that the finest scale gets, per optimiser. A coarse
#: step costs 1/4 of the next finer one. Adam (random weights, 128 px): the final loss hangs
#: on the finest scale's step count far more than on the coarse ones'. L-BFGS on the trained
#: stand-in (docs/performance.md): half the evaluations at the coarse scales.
FINE_SHARE = {Optimizer.ADAM: 0.6, Optimizer.LBFGS: 0.5}


def ladder_sizes(params: StyleParams, width: int, height: int) -> list[tuple[int, int]]:
    """(width, height) of every scale, coarse to fine; none larger than the content."""
    longest = max(width, height)
    ladder = sorted({min(side, longest) for side in params.ladder()})
    return [images.fit_long_side(width, height, side) for side in ladder]


def split_iterations(total: int, scales: int, fine_share: float = 0.6) -> list[int]:
    """Steps per scale, coarse to fine: ``fine_share`` at the finest, the rest shared
    equally by the coarser scales (remainder to the coarsest)."""
    if scales == 1:
        return [total]
    fine = max(1, round(total * fine_share))
    base, extra = divmod(total - fine, scales - 1)
    return [base + (1 if k < extra else 0) for k in range(scales - 1)] + [fine]


def upsample_result(
    x: np.ndarray, coarse_content: np.ndarray, fine_content: np.ndarray
) -> np.ndarray:
    """The start of a finer scale: the finer content plus the coarse scale's *change* to its
    content, upsampled. Plain upsampling blurs away the photo's fine detail, which the
    content term must then rebuild at full cost (on a trained VGG the upsampled coarse
    result started the finer scale with a higher loss than the photo itself)."""
    h, w = fine_content.shape[:2]
    delta = images.resize_signed(x - coarse_content, (w, h))
    return np.clip(fine_content + delta, 0.0, 1.0).astype(np.float32)
