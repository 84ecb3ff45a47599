"""The run record: step count, iterates, previews and the stop request, for both optimisers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from neural_style.daemon.engine.params import STOP, Iterate, StyleParams
from neural_style.shared.errors import ErrorCode, NeuralStyleError

#: Called with every step's :class:`Iterate`; returning ``"stop"`` ends the run.
Callback = Callable[[Iterate], "str | None"]


class RunRecord:
    """Bookkeeping shared by both optimisers: step count, iterates, previews, stop."""

    def __init__(self, params: StyleParams, callback: Callback | None, start: float) -> None:
        self.params = params
        self.callback = callback
        self.start = start
        self.scale = params.size
        self.step = 0
        self.iterates: list[Iterate] = []
        self.stopped = False
        #: Frames mode: the temporal term at the scale now running (the finest only), a
        #: daemon.engine.temporal.TemporalInput.
        self.temporal: Any = None

    def report(self, loss: float, c: float, s: float, tv: float, x: tf.Tensor) -> bool:
        """Record a step and call the callback; True when the run must stop now."""
        self.step += 1
        step = self.step
        if not np.isfinite(loss):
            raise NeuralStyleError(
                ErrorCode.INTERNAL,
                f"The loss became {loss} at step {step}: the optimisation diverged.",
                "Lower the learning rate or the style weight.",
            )
        total = self.params.iterations
        elapsed = time.perf_counter() - self.start
        it = Iterate(step, total, loss, c, s, tv, elapsed, self.scale)
        self.iterates.append(it)
        if self.callback is None:
            return False
        every = self.params.preview_every
        if every and step % every == 0:
            it = Iterate(step, total, loss, c, s, tv, elapsed, self.scale, preview=x.numpy()[0])
        if self.callback(it) == STOP and step < total:
            self.stopped = True
            return True
        return False
