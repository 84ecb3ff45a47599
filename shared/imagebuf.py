"""How images travel: :class:`ImageBuf` (little-endian, row-major, interleaved channels)
and the checks of an image descriptor ``{w, h, c, dtype}`` against its buffer.

Standard library only: the plug-in needs no numpy; the daemon converts to arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import defaults, limits
from .errors import ErrorCode
from .validators import ProtocolError, bad, choice, exact_keys, integer, is_int, show

#: dtype code -> bytes per channel value.
DTYPES: dict[str, int] = defaults.DTYPE_SIZES


@dataclass
class ImageBuf:
    """Pixels as they travel: little-endian, row-major, interleaved channels.

    A plain container so that the plug-in needs no numpy; the daemon converts to arrays.
    """

    width: int
    height: int
    channels: int
    dtype: str
    data: bytes | bytearray | memoryview = b""

    @property
    def itemsize(self) -> int:
        return DTYPES[self.dtype]

    @property
    def expected_nbytes(self) -> int:
        return self.width * self.height * self.channels * DTYPES[self.dtype]

    def describe(self) -> dict[str, Any]:
        """The header part that describes this buffer."""
        return {"w": self.width, "h": self.height, "c": self.channels, "dtype": self.dtype}

    def check(self, where: str = "image", max_pixels: int = limits.MAX_IMAGE_PIXELS) -> None:
        """Raise ProtocolError unless shape, dtype and byte length agree and fit the limits."""
        image_desc(where, self.describe(), max_pixels)
        check_length(where, self, nbytes(self.data))


def nbytes(data: Any) -> int:
    """Bytes in a buffer (bytes, bytearray, memoryview, zmq frame buffer)."""
    return memoryview(data).nbytes


def check_length(where: str, img: ImageBuf, size: int) -> None:
    """The buffer's ``size`` in bytes is what the descriptor says."""
    if size != img.expected_nbytes:
        raise bad(
            f"{where}: buffer has {size} bytes, expected {img.expected_nbytes} "
            f"({img.width}x{img.height}x{img.channels} {img.dtype})"
        )


def image_desc(where: str, value: Any, max_pixels: int = limits.MAX_IMAGE_PIXELS) -> ImageBuf:
    """Check an image descriptor ``{w, h, c, dtype}``; the data is attached later."""
    if not isinstance(value, dict):
        raise bad(f"{where}: expected an image descriptor map, got {show(value)}")
    exact_keys(where, value, {"w", "h", "c", "dtype"}, set())
    width = integer(1, limits.MAX_IMAGE_SIDE)(f"{where}.w", value["w"])
    height = integer(1, limits.MAX_IMAGE_SIDE)(f"{where}.h", value["h"])
    channels = value["c"]
    if not is_int(channels) or channels not in limits.ALLOWED_CHANNELS:
        raise bad(
            f"{where}.c: expected channels in {limits.ALLOWED_CHANNELS}, got {show(channels)}"
        )
    dtype = choice(*DTYPES)(f"{where}.dtype", value["dtype"])
    if width * height > max_pixels:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            f"{where}: {width}x{height} is {width * height} pixels; this daemon accepts at most "
            f"{max_pixels}",
            "Scale the image down, or restart the daemon with a larger --max-pixels.",
        )
    return ImageBuf(width, height, channels, dtype)
