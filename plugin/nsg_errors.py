"""What stops a run: a failure shown to the user as is, the user's Cancel, and "Stop and keep"."""

from __future__ import annotations

from typing import Any


class PluginError(Exception):
    """A failure shown to the user as is: the text says what to do about it."""


class UserCancelled(Exception):
    """The user pressed Cancel (or closed the progress window)."""


class StoppedAndKept(UserCancelled):
    """The user pressed "Stop and keep": the job stopped, its latest image is to be kept."""

    def __init__(self, preview: Any, step: int, total: int) -> None:
        super().__init__("stopped and kept")
        self.preview, self.step, self.total = preview, step, total
