"""Seconds per optimiser step per working size, measured from finished jobs' iterates.

Reported in ``welcome`` (inside its open ``limits`` map, which older clients accept) and
``status`` so that a client can say "about 1 min" for *this* daemon: ``step_s_per_mpx``
(seconds per step per megapixel of working size, over the recent jobs, weighted by pixels
so the large sizes that matter count most) and ``step_s_by_side`` (seconds per step at each
measured long side, e.g. ``{"512": 0.74}``). The first step of each scale is left out: it
also computes the targets (or the style cache's misses).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence
from typing import Any

from neural_style.shared.records import Step

#: Measurements kept per long side (the most recent jobs).
KEEP_PER_SIDE = 8
#: Long sides kept (the most recently measured): ``step_s_by_side`` must stay well under
#: the protocol's 64 keys per map, or a long-lived daemon's welcome could not be unpacked.
MAX_SIDES = 16


class StepTimes:
    """Recent per-size step times; :meth:`report` gives the welcome/status fields."""

    def __init__(self, keep: int = KEEP_PER_SIDE, max_sides: int = MAX_SIDES) -> None:
        self.keep = keep
        self.max_sides = max_sides
        #: long side -> recent (median seconds per step, megapixels at that side)
        self._by_side: dict[int, deque[tuple[float, float]]] = {}

    def record(self, iterates: Sequence[Step], work_size: Sequence[int]) -> None:
        """Add one finished job's steps (``work_size``: its finest (width, height))."""
        width, height = (int(v) for v in work_size)
        longest = max(width, height)
        if longest <= 0:
            return
        samples: dict[int, list[float]] = {}
        for prev, step in itertools.pairwise(iterates):
            dt = step.elapsed_s - prev.elapsed_s
            side = int(step.scale or longest)
            if step.scale == prev.scale and dt > 0 and side > 0:
                samples.setdefault(side, []).append(dt)
        for side, dts in samples.items():
            median = sorted(dts)[len(dts) // 2]
            mpx = side * side * (width * height) / (longest * longest) / 1e6
            runs = self._by_side.pop(side, None) or deque(maxlen=self.keep)
            runs.append((median, mpx))
            self._by_side[side] = runs  # re-inserted: the dict's order is recency
        while len(self._by_side) > self.max_sides:
            del self._by_side[next(iter(self._by_side))]

    def report(self) -> dict[str, Any]:
        """``{"step_s_per_mpx": float, "step_s_by_side": {side: s}}``; {} before any job."""
        if not self._by_side:
            return {}
        seconds = sum(s for runs in self._by_side.values() for s, _ in runs)
        mpx = sum(m for runs in self._by_side.values() for _, m in runs)
        by_side = {
            str(side): round(sorted(s for s, _ in runs)[len(runs) // 2], 5)
            for side, runs in sorted(self._by_side.items())
        }
        if mpx <= 0:
            return {}
        return {"step_s_per_mpx": round(seconds / mpx, 5), "step_s_by_side": by_side}
