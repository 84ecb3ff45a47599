"""Following a job: event kinds, the blocking wait of batch mode, the throttle of window
updates, and how big the previews asked for are (the canvas preview's side)."""

from __future__ import annotations

import time
from typing import Any

from nsg_bundle import defaults
from nsg_errors import UserCancelled

#: Long side of the progress window's previews (the protocol's default, shared/defaults.py).
PREVIEW_SIDE: int = defaults.PREVIEW_SIDE


CANVAS_PREVIEW_MAX = 1024


#: Poll period of the interactive progress window (ms); the client's heartbeats ride on it.
POLL_MS = 50


#: Response id of the progress window's "Stop and keep" button.
RESPONSE_KEEP = 1


class Throttle:
    """True at most every ``interval`` seconds (and always for the final step)."""

    def __init__(self, interval: float = 0.2, clock=time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.last = -1e9

    def ready(self, final: bool = False) -> bool:
        now = self.clock()
        if final or now - self.last >= self.interval:
            self.last = now
            return True
        return False


def canvas_preview_side(width: int, height: int) -> int:
    """Long side of the previews asked for: the area's, within [256, 1024] (the daemon never
    sends more than its working size); GIMP upscales them onto the canvas."""
    return max(PREVIEW_SIDE, min(max(width, height), CANVAS_PREVIEW_MAX))


def event_kind(event: Any) -> str:
    """A client event's kind ("accepted", "progress", "preview", "done", "cancelled"): the
    client's ``EventKind`` (a str enum) in the event class's ``KIND``; "" for anything else."""
    kind = getattr(event, "KIND", "")
    return str(getattr(kind, "value", kind) or "")


def run_job_blocking(job: Any, on_progress=None, on_preview=None, poll_ms: int = 100) -> Any:
    """Wait for a job with the client's ``Job.wait`` (batch mode: no main loop to keep
    alive); returns the Done event. Raises on errors, UserCancelled on cancel."""

    def on_event(event: Any) -> None:
        kind = event_kind(event)
        if kind == "progress" and on_progress:
            on_progress(event)
        elif kind == "preview" and on_preview:
            on_preview(event)

    try:
        return job.wait(on_event, poll_ms=poll_ms)
    except Exception as exc:
        event = getattr(exc, "event", None)
        if event is not None and event_kind(event) == "cancelled":
            raise UserCancelled() from None
        raise
