"""``neural-style batch --frames``: the inputs as one sequence, each frame started from the
previous stylized frame (frames mode: :mod:`.temporal`).

:class:`SequenceFrames` is the batch's per-input hook: it hands each frame's job the previous
frame's content and stylized result. Resumable like any batch: when frame t-1's output was
already written by an earlier run (skipped now), it is read back from its file, so a re-run
continues the sequence where it stopped rather than starting frame t from its content.

Through a daemon with several workers (a Ray-backed one) the sequence is cut into that many
runs (``--chunks``), run side by side: each run's first frame starts afresh from its content
(a seam: one frame pair with the flicker of independent frames), every other frame from its
predecessor as above.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from neural_style.shared import defaults

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np


def natural_key(path: Path) -> list[Any]:
    """Sort key that puts ``frame_2`` before ``frame_10`` (numbers compared as numbers)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def add_options(p: argparse.ArgumentParser) -> None:
    """``batch``'s frames-mode options."""
    g = p.add_argument_group("frames mode (an animation's frames; docs/frames.md)")
    g.add_argument(
        "--frames", action="store_true",
        help="the inputs are one sequence of frames (sorted by name, frame_2 before "
        "frame_10): each frame starts from the previous stylized frame warped by optical "
        "flow and keeps close to it (temporal loss), so strokes do not flicker; scene cuts "
        "start afresh",
    )  # fmt: skip
    g.add_argument(
        "--temporal-weight", type=float, metavar="W",
        help=f"weight of the temporal loss (default {defaults.TEMPORAL_WEIGHT:g}; 0: only the "
        "warped start)",
    )  # fmt: skip
    g.add_argument(
        "--chunks", type=int, metavar="N",
        help="with --frames through a daemon with several workers: cut the sequence into at "
        "most N runs stylized side by side, each starting afresh at its first frame (a seam); "
        "default: one per worker; 1: one run, no seams",
    )  # fmt: skip
    g.add_argument(
        "--independent", action="store_true",
        help="with --frames: stylize every frame on its own (sorted as a sequence; the "
        "flicker baseline)",
    )  # fmt: skip


def sequence_order(args: argparse.Namespace, inputs: list[Path]) -> list[Path]:
    """With ``--frames``: the inputs in natural name order (their options checked)."""
    from neural_style.daemon.engine import images

    chunks = getattr(args, "chunks", None)
    if (args.temporal_weight is not None or args.independent or chunks) and not args.frames:
        raise images.bad("--temporal-weight, --chunks and --independent go with --frames.")
    if chunks is not None and chunks < 1:
        raise images.bad("--chunks must be 1 or more.")
    if not args.frames:
        return inputs
    if args.temporal_weight is not None and args.temporal_weight < 0:
        raise images.bad("--temporal-weight must be 0 or more.")
    return sorted(inputs, key=natural_key)


def hook_for(args: argparse.Namespace, items: Sequence[Any]) -> SequenceFrames | None:
    """The per-input hook of frames mode (None: every input on its own)."""
    if args.frames and not args.independent:
        return SequenceFrames(items, args.temporal_weight, getattr(args, "chunks", None))
    return None


def run_local(
    engine: Any, content: np.ndarray, styles: list[np.ndarray], params: Any, on_step: Any,
    extras: Any,
) -> Any:  # fmt: skip
    """A frame with its previous frame (``extras``), in this process."""
    from neural_style.daemon.frames import temporal

    weight = extras.temporal_weight
    return temporal.stylize_frame(
        engine, content, styles, params, on_step, previous=extras.previous,
        temporal_weight=temporal.TEMPORAL_WEIGHT if weight is None else weight,
    )  # fmt: skip


class SequenceFrames:
    """Frame t's job gets frame t-1's (content, result), at frame t's size; the first frame
    of each run (:meth:`chunk`), and a frame whose previous one failed, get none (they run
    as independent frames)."""

    #: Frames may run at once, one per run of the sequence; :meth:`ready` says which.
    parallel = True

    def __init__(
        self, items: Sequence[Any], temporal_weight: float | None, chunks: int | None = None
    ) -> None:
        self.items = list(items)
        self.temporal_weight = temporal_weight
        self.chunks = chunks
        #: The first frame of each run but the first (none: one run).
        self.heads: set[Any] = set()
        self._done: dict[Any, tuple[np.ndarray, np.ndarray]] = {}  # item: (content, result)
        self._content: dict[Any, np.ndarray] = {}

    def chunk(self, workers: int) -> int:
        """Cut the sequence into one run per worker (at most ``--chunks``), of equal
        length; returns how many frames to keep in flight."""
        n = len(self.items)
        k = max(1, min(workers, self.chunks or workers, n))
        self.heads = {self.items[i * n // k] for i in range(1, k)}
        return k

    def ready(self, item: Any, finished: Any) -> bool:
        """Whether ``item`` may start now: the first frame of a run, or its predecessor
        has ended (``finished``: the inputs with a row: done, skipped or failed)."""
        index = self.items.index(item)
        return index == 0 or item in self.heads or self.items[index - 1] in finished

    def _previous(self, item: Any) -> tuple[np.ndarray, np.ndarray] | None:
        from neural_style.daemon.cli import batch
        from neural_style.daemon.engine import images

        index = self.items.index(item)
        if index == 0 or item in self.heads:
            return None
        before = self.items[index - 1]
        if before in self._done:
            return self._done.pop(before)
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
        self._done[item] = (self._content.pop(item), result.image)


__all__ = ["SequenceFrames", "add_options", "hook_for", "natural_key", "sequence_order"]
