"""What a job may cost before it is queued: working sizes VGG-19 can take (the check
itself lives in daemon/engine/params.py, so ``stylize --local`` runs it too), and a rough
estimate of its peak memory (pure functions over the received arrays)."""

from __future__ import annotations

import os

import numpy as np

from neural_style.daemon.engine.params import check_work_sizes

__all__ = ["check_work_sizes", "estimate_job_bytes", "gib", "physical_memory"]

#: Rough peak bytes per pixel, for the memory estimate at submit: a full-size content
#: image becomes float copies (RGB, alpha, output) on the way in and out; a style image
#: float RGB; one pixel of the working size costs VGG-19 activations and their gradients
#: (measured: 4096 px work size, 4.31 GiB; 4096^2 grey content at a small size, +864 MiB).
EST_CONTENT_BYTES_PER_PIXEL = 52
EST_STYLE_BYTES_PER_PIXEL = 28
EST_WORK_BYTES_PER_PIXEL = 400
#: An init image (refine) at the content's size: its float copy is kept for the whole job
#: (12-16 B/px: RGB, or RGBA whose RGB is a view), and turning it into that copy peaks at
#: 32 B/px (64 with ``preserve_color=luminance``), before the activations exist (measured
#: with tracemalloc on engine._init_input, 1024^2, u8/u16/f32, 1-4 channels).
EST_INIT_BYTES_PER_PIXEL = 32
EST_BASE_BYTES = 64 * 2**20


def estimate_job_bytes(
    content: np.ndarray,
    styles: list[np.ndarray],
    work: tuple[int, int],
    init: np.ndarray | None = None,
) -> int:
    """A job's rough peak memory: its full-size images as float copies plus the working
    size's activations (see the EST_* constants). ``init``, the starting image a refine
    sends, is a second full-size image: left out, a refine of a large picture would be
    admitted with a figure hundreds of MiB short."""
    content_px = content.shape[0] * content.shape[1]
    style_px = sum(s.shape[0] * s.shape[1] for s in styles)
    init_px = init.shape[0] * init.shape[1] if init is not None else 0
    return (
        EST_BASE_BYTES
        + content_px * EST_CONTENT_BYTES_PER_PIXEL
        + style_px * EST_STYLE_BYTES_PER_PIXEL
        + init_px * EST_INIT_BYTES_PER_PIXEL
        + work[0] * work[1] * EST_WORK_BYTES_PER_PIXEL
    )


def gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.0f} MiB"


def physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30
