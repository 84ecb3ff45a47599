"""The settings remembered across runs in GIMP's profile folder (whatever the outcome)."""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

from nsg_log import log_event

#: Remembered across runs in GIMP's profile folder, whatever the outcome (GIMP itself keeps
#: the last values only after a successful run, and never keeps layer arguments).
SETTINGS_FILE = "neural-style.json"


SAVED_KEYS = (
    "iterations", "max-size", "style-strength", "preserve-color", "endpoint", "style-blend",
    "style-scale", "preset", "color-mode",
)  # fmt: skip


def load_settings(path: str) -> dict[str, Any]:
    """The remembered settings ({} when missing or unreadable: never an error)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_settings(path: str, data: dict[str, Any]) -> None:
    """Write the settings atomically (a crash mid-write keeps the previous file)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, default=str)
        os.replace(tmp, path)
    except OSError as exc:
        log_event("settings_not_saved", error=repr(exc))
        with contextlib.suppress(OSError):
            os.remove(tmp)
