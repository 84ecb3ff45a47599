"""The CPU a benchmark ran on, for the line printed beside every figure."""

from __future__ import annotations

import platform


def cpu_name() -> str:
    """``model name`` from /proc/cpuinfo (the processor string elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
