"""The style-transfer engine: images + parameters in, image + statistics out.

(Contract written first so the server and plug-in can be built against it; the body
follows in the same module.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from neural_style.daemon.params import Iterate, StyleParams, StylizeResult

Callback = Callable[[Iterate], "str | None"]


class StyleTransfer:
    """Owns one loaded VGG-19 feature extractor; runs one job at a time (not thread-safe).

    ``StyleTransfer.load(weights=None)`` resolves and loads the weights;
    ``.weights`` (WeightsInfo: path, sha256, synthetic) and ``.device`` (str) describe it.
    """

    def stylize(
        self,
        content: np.ndarray,
        styles: Sequence[np.ndarray],
        params: StyleParams,
        callback: Callback | None = None,
    ) -> StylizeResult:
        """content: HxW or HxWxC (C in 1..4), uint8/uint16/float32 in [0,1].
        styles: one or more such arrays (alpha ignored). Returns the same dtype/channels."""
        raise NotImplementedError
