"""``neural-style batch --frames``: the inputs as one sequence, each frame started from the
previous stylized frame (frames mode: :mod:`.temporal`).

:class:`SequenceFrames` is the batch's per-input hook: it hands each frame's job the previous
frame's content and stylized result. Resumable like any batch: when frame t-1's output was
already written by an earlier run (skipped now), it is read back from its file, so a re-run
continues the sequence where it stopped rather than starting frame t from its content.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np


def natural_key(path: Path) -> list[Any]:
    """Sort key that puts ``frame_2`` before ``frame_10`` (numbers compared as numbers)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


class SequenceFrames:
    """Frame t's job gets frame t-1's (content, result), at frame t's size; the first frame,
    and a frame whose previous one failed, get none (they run as independent frames)."""

    def __init__(self, items: Sequence[Any], temporal_weight: float | None) -> None:
        self.items = list(items)
        self.temporal_weight = temporal_weight
        self._last: tuple[Any, np.ndarray, np.ndarray] | None = None  # (item, content, result)
        self._content: dict[Any, np.ndarray] = {}

    def _previous(self, item: Any) -> tuple[np.ndarray, np.ndarray] | None:
        from neural_style.daemon.cli import batch
        from neural_style.daemon.engine import images

        index = self.items.index(item)
        if index == 0:
            return None
        before = self.items[index - 1]
        if self._last is not None and self._last[0] == before:
            return self._last[1], self._last[2]
        if not batch.is_complete(before.output):  # failed, or not run: start afresh
            return None
        try:  # written by an earlier run
            return images.load_image(before.input), images.load_image(before.output)
        except Exception:
            return None

    def before(self, item: Any, content: np.ndarray) -> Any:
        from neural_style.daemon.cli import batch
        from neural_style.daemon.engine import images

        previous = self._previous(item)
        self._content[item] = content
        if previous is None:
            return batch.Extras()
        prev_content, prev_result = previous
        h, w = content.shape[:2]
        if prev_content.shape[:2] != (h, w):  # a frame of another size: no continuity
            return batch.Extras()
        if prev_result.shape[:2] != (h, w):  # outputs at the working size
            prev_result = images.resize(images.to_float(images.as_hwc(prev_result)), (w, h))
        return batch.Extras(previous=(prev_content, prev_result),
                            temporal_weight=self.temporal_weight)  # fmt: skip

    def after(self, item: Any, result: Any) -> None:
        self._last = (item, self._content.pop(item), result.image)


__all__ = ["SequenceFrames", "natural_key"]
