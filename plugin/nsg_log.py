"""The plug-in's event log for tests: one JSON line per event in $NEURAL_STYLE_PLUGIN_LOG
(headless GIMP shows neither progress nor messages)."""

from __future__ import annotations

import json
import os
import time
from typing import Any


def log_event(event: str, **fields: Any) -> None:
    """Append one JSON line to $NEURAL_STYLE_PLUGIN_LOG (no-op when unset).

    Headless GIMP shows neither progress nor messages; tests read this instead.
    """
    path = os.environ.get("NEURAL_STYLE_PLUGIN_LOG")
    if not path:
        return
    record = {"t": round(time.time(), 3), "event": event, **fields}
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, default=str) + "\n")
    except OSError:
        pass
