"""The coarse-to-fine ladder: working sizes, steps per scale, and the start of each finer scale."""

from __future__ import annotations

import numpy as np

from neural_style.daemon.engine import images
from neural_style.daemon.engine.adam import has_adam_tail, split_tail
from neural_style.daemon.engine.params import Optimizer, StyleParams, TailScales

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


def scale_budgets(params: StyleParams, scales: int) -> list[tuple[int, int]]:
    """(steps, Adam tail steps) of every scale, coarse to fine: the first number is L-BFGS
    evaluations (Adam steps for an Adam job), the second the Adam steps after them.

    ``adam_tail`` with ``tail_scales`` finest: the tail's share of all steps runs at the
    finest scale, the rest is shared by ``fine_share``; with ``all``: the steps are shared
    by ``fine_share`` and every scale ends in its own Adam tail of that share."""
    share = FINE_SHARE[params.optimizer] if params.fine_share is None else params.fine_share
    if not has_adam_tail(params):
        return [(n, 0) for n in split_iterations(params.iterations, scales, share)]
    if params.tail_scales is TailScales.ALL:
        return [
            split_tail(n, params.adam_tail) if n > 1 else (n, 0)
            for n in split_iterations(params.iterations, scales, share)
        ]
    lbfgs_total, tail = split_tail(params.iterations, params.adam_tail, scales)
    steps = split_iterations(lbfgs_total, scales, share)
    return [(n, 0) for n in steps[:-1]] + [(steps[-1], tail)]


def upsample_result(
    x: np.ndarray, coarse_content: np.ndarray, fine_content: np.ndarray, carry: float = 1.0
) -> np.ndarray:
    """The start of a finer scale: the finer content plus the coarse scale's *change* to its
    content, upsampled. Plain upsampling blurs away the photo's fine detail, which the
    content term must then rebuild at full cost (on a trained VGG the upsampled coarse
    result started the finer scale with a higher loss than the photo itself). ``carry``
    scales the change (StyleParams.carry)."""
    h, w = fine_content.shape[:2]
    delta = images.resize_signed(carry * (x - coarse_content), (w, h))
    return np.clip(fine_content + delta, 0.0, 1.0).astype(np.float32)
