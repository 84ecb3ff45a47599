"""What the job commands write beside their pictures: the ``--report`` file (checked
before any work, written atomically), peak memory, and the synthetic-weights warning."""

from __future__ import annotations

import json
import os
import resource
from pathlib import Path
from typing import Any

from neural_style.shared import files


def write_json_atomic(data: dict[str, Any], path: Path) -> None:
    """``data`` as indented JSON at ``path``, through a temporary file and a rename."""
    files.write_atomic(path, json.dumps(data, indent=2) + "\n", mode=0o600)


def check_report_path(path: Path) -> Path:
    """``path`` when its folder exists and is writable (checked before the job runs)."""
    from neural_style.daemon.engine.images import bad

    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir() or not os.access(parent, os.W_OK) or path.is_dir():
        raise bad(f"Cannot write the report {path}: its folder is missing or not writable.")
    return path


def peak_rss_mb() -> float:
    """This process's peak resident memory (the daemon's own is in its status)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def synthetic_warning() -> str:
    """What a run on synthetic (random) weights prints: its pictures are no art."""
    from neural_style.daemon.engine.weights import SYNTHETIC_WARNING

    return SYNTHETIC_WARNING
