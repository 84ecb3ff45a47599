"""Time estimates: the dialog's expected time per preset (measured speed once known) and the
progress window's time left, in words."""

from __future__ import annotations

from typing import Any

from nsg_params import DEFAULT_MAX_SIZE, PRESET_ITERATIONS

#: Seconds per optimiser step per megapixel of working size (fp32, 2 CPU cores: 0.74 s per
#: step at 512x384); replaced by what this computer measured once a job has finished.
DEFAULT_STEP_S_PER_MPX = 3.8


#: Coarse-to-fine presets spend part of their steps at smaller sizes.
LADDER_FACTOR = 0.65


def estimate_seconds(preset: str, work_side: int, iterations: int, speed: float | None) -> float:
    """Expected job time: steps x working megapixels (4:3) x seconds per step and Mpx."""
    steps = PRESET_ITERATIONS.get(preset, iterations)
    mpx = work_side * work_side * 0.75 / 1e6
    factor = LADDER_FACTOR if preset in PRESET_ITERATIONS and not speed else 1.0
    return steps * mpx * (speed or DEFAULT_STEP_S_PER_MPX) * factor


def about(seconds: float) -> str:
    """'about 40 s', 'about 3 min', 'about 1 h 10 min' (what a person reads)."""
    if seconds < 55:
        return f"about {max(5, round(seconds / 5) * 5)} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60:02d} min"


def preset_label(name: str) -> str:
    """'Fast (about 1 min)': the preset menu's entry, timed for the default Max size."""
    return f"{name.capitalize()} ({about(estimate_seconds(name, DEFAULT_MAX_SIZE, 0, None))})"


def estimate_text(preset: str, max_size: int, iterations: int, speed: float | None) -> str:
    """The dialog's line under the preset."""
    when = "on this computer" if speed else "estimated for a 2-core CPU"
    return f"Expected time: {about(estimate_seconds(preset, max_size, iterations, speed))} ({when})"


def daemon_speed(hello: dict[str, Any] | None) -> float | None:
    """The daemon's own measure of seconds per step per megapixel (``step_s_per_mpx`` in
    welcome's ``limits``, once it has finished a job; ``Client.hello`` lifts it to the top
    level), or None."""
    try:
        value = float((hello or {})["step_s_per_mpx"])
    except (KeyError, TypeError, ValueError):
        return None
    return value if value == value and value > 0 else None


def measured_speed(stats: dict[str, Any] | None) -> float | None:
    """Seconds per step per megapixel from a finished job's statistics (None if unknown)."""
    if not stats:
        return None
    try:
        w, h = stats["work_size"]
        value = float(stats["elapsed_s"]) / (int(stats["steps"]) * w * h / 1e6)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return value if value == value and value > 0 else None


def format_eta(seconds: float | None) -> str:
    """'About 1 min 5 s left' style text; empty when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return ""
    seconds = round(seconds)
    if seconds < 60:
        return f"About {seconds} s left"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"About {minutes} min {secs:02d} s left"
    hours, minutes = divmod(minutes, 60)
    return f"About {hours} h {minutes:02d} min left"


def progress_note(step: int, total: int, eta_s: float | None) -> str:
    """The progress window's second line: the time left, in words (no optimiser figures)."""
    if step >= total:
        return "Finishing…"
    if eta_s is None or eta_s != eta_s or eta_s <= 0:
        return "Estimating the time left…"
    return format_eta(eta_s)
