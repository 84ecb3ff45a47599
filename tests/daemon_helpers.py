"""Helpers for the tests that run a real daemon subprocess on a free port.

The subprocess harness itself is ``neural_style.daemon.service.harness`` (the benchmarks
use it too); images travel through the service's codec.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

from neural_style.daemon.service.codec import array_from_image as to_array
from neural_style.daemon.service.codec import image_from_array as image
from neural_style.daemon.service.harness import (
    Daemon,
    daemon_env,
    free_port,
    running_daemon,
    synthetic_weights,
)

REPO = Path(__file__).resolve().parents[1]

__all__ = [
    "Daemon",
    "cli",
    "daemon_env",
    "free_port",
    "image",
    "running_daemon",
    "synthetic_weights",
    "to_array",
]


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run ``neural-style <args>`` through the service CLI's standalone entry."""
    return subprocess.run(
        [sys.executable, "-m", "neural_style.daemon.cli.serve", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )


def load_file_module(name: str, path: Path) -> Any:
    """Import a file that is not in a package (tests/gimp/*.py run inside GIMP's chroot too)
    under ``name``, once: later calls return the module already loaded."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
