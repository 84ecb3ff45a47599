"""Pixels between the wire and the engine: ``ImageBuf`` (raw little-endian bytes) <->
numpy arrays (H x W x C), without a copy where possible."""

from __future__ import annotations

import numpy as np

from neural_style.shared import defaults
from neural_style.shared.errors import ErrorCode, NeuralStyleError
from neural_style.shared.protocol import ImageBuf

_NP_DTYPES = {code: np.dtype(name) for code, name in defaults.DTYPE_NUMPY.items()}


def array_from_image(img: ImageBuf) -> np.ndarray:
    """A zero-copy, read-only HxWxC view of a received buffer."""
    flat = np.frombuffer(img.data, dtype=_NP_DTYPES[img.dtype])
    return flat.reshape(img.height, img.width, img.channels)


def image_from_array(arr: np.ndarray) -> ImageBuf:
    """An ImageBuf over a little-endian copy (or view) of ``arr`` (HxW or HxWxC)."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.dtype == np.uint8:
        code = "u8"
    elif arr.dtype == np.uint16:
        code = "u16"
    else:
        code = "f32"
    arr = np.ascontiguousarray(arr, dtype=_NP_DTYPES[code])
    height, width, channels = arr.shape
    return ImageBuf(width, height, channels, code, arr.data.cast("B"))


def preview_image(rgb: np.ndarray, max_side: int) -> ImageBuf:
    """RGB u8 at most ``max_side`` on its long side (area-averaged), for a quick look."""
    from PIL import Image

    u8 = (np.clip(np.nan_to_num(rgb[:, :, :3]), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    height, width = u8.shape[:2]
    scale = max_side / max(height, width)
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        u8 = np.asarray(Image.fromarray(u8).resize(size, Image.Resampling.BOX))
    return image_from_array(u8)


def checked_array(where: str, img: ImageBuf) -> np.ndarray:
    """:func:`array_from_image`, refusing float pixels that are not finite."""
    arr = array_from_image(img)
    if img.dtype == "f32" and not np.isfinite(arr).all():
        raise NeuralStyleError(
            ErrorCode.BAD_REQUEST, f"submit.{where}: float pixels must be finite (no NaN/inf)."
        )
    return arr
