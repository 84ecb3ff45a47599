"""Pixels between GIMP and the wire: babl formats for each precision, alpha kept, masks,
sizes, and any ImageBuf as RGB u8 for the preview thumbnail. No numpy."""

from __future__ import annotations

import struct
from typing import Any

from nsg_errors import PluginError

#: babl sample type -> (ImageBuf dtype, bytes per sample)
_SAMPLES = {"u8": ("u8", 1), "u16": ("u16", 2), "float": ("f32", 4)}


_DTYPE_TO_BABL = {"u8": "u8", "u16": "u16", "f32": "float"}


_CHANNEL_MODELS = {1: "Y'", 2: "Y'A", 3: "R'G'B'", 4: "R'G'B'A"}


def sample_type(precision_nick: str) -> str:
    """babl sample type for a GIMP precision nick ('u8-non-linear', 'half-linear', ...)."""
    nick = precision_nick.lower()
    if nick.startswith("u8"):
        return "u8"
    if nick.startswith(("u16", "u32")):
        return "u16"
    return "float"


def pixel_format(gray: bool, precision_nick: str) -> tuple[str, int, str, int]:
    """(babl format, channels, ImageBuf dtype, bytes per sample) for reading the content."""
    sample = sample_type(precision_nick)
    dtype, bps = _SAMPLES[sample]
    channels = 2 if gray else 4
    return f"{_CHANNEL_MODELS[channels]} {sample}", channels, dtype, bps


def babl_format_for(channels: int, dtype: str) -> str:
    """babl format describing an ImageBuf's bytes (used to write the result back)."""
    try:
        return f"{_CHANNEL_MODELS[channels]} {_DTYPE_TO_BABL[dtype]}"
    except KeyError:
        raise PluginError(
            f"The daemon sent an image with {channels} channels of {dtype!r}, which the "
            "plug-in cannot read. Reinstall the plug-in and the daemon from the same version."
        ) from None


def restore_alpha(result: bytes, original: bytes, channels: int, bps: int) -> bytes:
    """Copy the original's alpha samples into the result (same layout, same size).

    The daemon keeps alpha itself; doing it here as well makes "alpha is kept" hold exactly,
    whatever resampling happened on the way.
    """
    if channels not in (2, 4) or len(result) != len(original):
        return result
    out = bytearray(result)
    stride = channels * bps
    first = (channels - 1) * bps
    for k in range(bps):
        out[first + k :: stride] = original[first + k :: stride]
    return bytes(out)


def is_opaque_mask(mask: bytes) -> bool:
    """True when every mask sample is 255 (a rectangular selection): no need to send it."""
    return mask.count(255) == len(mask)


def fit_within(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Size scaled down (never up) so that the long side is at most ``max_side``."""
    long_side = max(width, height)
    if long_side <= max_side:
        return width, height
    scale = max_side / long_side
    return max(1, round(width * scale)), max(1, round(height * scale))


def to_rgb8(width: int, height: int, channels: int, dtype: str, data: bytes) -> bytes:
    """Any ImageBuf layout -> packed RGB u8 (for the preview thumbnail; small images only)."""
    n = width * height * channels
    if dtype == "u8":
        samples: Any = data[:n]
    elif dtype == "u16":
        samples = bytes(v >> 8 for v in struct.unpack(f"<{n}H", data[: 2 * n]))
    elif dtype == "f32":
        samples = bytes(
            0 if v != v else max(0, min(255, int(v * 255.0 + 0.5)))
            for v in struct.unpack(f"<{n}f", data[: 4 * n])
        )
    else:
        raise PluginError(f"unknown preview sample type {dtype!r}")
    if channels == 3:
        return bytes(samples)
    out = bytearray(width * height * 3)
    if channels == 4:
        for c in range(3):
            out[c::3] = samples[c::4]
    elif channels in (1, 2):
        gray = samples[0::channels]
        for c in range(3):
            out[c::3] = gray
    else:
        raise PluginError(f"unknown preview channel count {channels}")
    return bytes(out)
