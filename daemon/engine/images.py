"""Image files and arrays: loading with limits, channel handling, resizing, atomic saving.

Arrays are HxWxC with C in 1..4 (gray, gray+alpha, RGB, RGBA); the engine works on float32
in [0, 1] and hands results back in the caller's dtype (uint8, uint16 or float32).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from neural_style.shared import limits
from neural_style.shared.errors import ErrorCode, NeuralStyleError

# PIL's own bomb guard would fire with its own message; ours (below) names the limit.
Image.MAX_IMAGE_PIXELS = None

#: Output formats we write, by suffix.
WRITABLE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"}


def bad(message: str, hint: str = "") -> NeuralStyleError:
    return NeuralStyleError(ErrorCode.BAD_REQUEST, message, hint)


def check_dimensions(width: int, height: int, what: str) -> None:
    """Reject empty images and those beyond the documented pixel limits."""
    if width <= 0 or height <= 0:
        raise bad(f"The {what} has no pixels ({width}x{height}).")
    if (
        width * height > limits.MAX_IMAGE_PIXELS
        or width > limits.MAX_IMAGE_SIDE
        or height > limits.MAX_IMAGE_SIDE
    ):
        raise NeuralStyleError(
            ErrorCode.TOO_LARGE,
            f"The {what} is {width}x{height} = {width * height:,} pixels; the limit is "
            f"{limits.MAX_IMAGE_PIXELS:,} pixels and {limits.MAX_IMAGE_SIDE} px per side.",
            "Scale the image down first.",
        )


def load_image(path: str | os.PathLike[str], what: str = "image") -> np.ndarray:
    """Read an image file into HxWxC uint8 (or uint16 for 16-bit grayscale)."""
    path = Path(path)
    if not path.exists():
        raise bad(f"The {what} file does not exist: {path}.")
    if not path.is_file():
        raise bad(f"The {what} path is not a file: {path}.")
    try:
        with Image.open(path) as im:
            check_dimensions(im.width, im.height, f"{what} {path}")
            im = ImageOps.exif_transpose(im)
            return pil_to_array(im)
    except NeuralStyleError:
        raise
    except UnidentifiedImageError:
        raise bad(f"The {what} file is not an image PIL can read: {path}.") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated / broken files
        raise bad(f"The {what} file {path} could not be decoded: {exc}.") from None


def pil_to_array(im: Image.Image) -> np.ndarray:
    """PIL image -> HxWxC array, keeping alpha and 16-bit gray."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.int64)
        return np.clip(arr, 0, 65535).astype(np.uint16)[:, :, None]
    if im.mode == "F":
        return np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)[:, :, None]
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode == "1":
        im = im.convert("L")
    elif im.mode not in ("L", "LA", "RGB", "RGBA"):
        im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
    arr = np.asarray(im, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def as_hwc(image: np.ndarray, what: str = "image") -> np.ndarray:
    """Validate an array's shape/dtype and return it as HxWxC."""
    if not isinstance(image, np.ndarray):
        raise bad(f"The {what} must be an array, not {type(image).__name__}.")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in limits.ALLOWED_CHANNELS:
        raise bad(f"The {what} has shape {image.shape}; expected HxW or HxWxC with C in 1..4.")
    if image.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        raise bad(f"The {what} has dtype {image.dtype}; expected uint8, uint16 or float32.")
    check_dimensions(image.shape[1], image.shape[0], what)
    return image


def to_float(image: np.ndarray) -> np.ndarray:
    """Any supported dtype -> float32 in [0, 1]."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    out = np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(out, 0.0, 1.0)


def from_float(image: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """float [0, 1] -> the given dtype, rounded."""
    image = np.clip(image, 0.0, 1.0)
    if dtype == np.uint8:
        return np.round(image * 255.0).astype(np.uint8)
    if dtype == np.uint16:
        return np.round(image * 65535.0).astype(np.uint16)
    return image.astype(dtype)


def split_alpha(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """HxWxC float -> (RGB HxWx3, alpha HxWx1 or None, was_gray)."""
    channels = image.shape[2]
    alpha = image[:, :, -1:] if channels in (2, 4) else None
    color = image[:, :, :-1] if alpha is not None else image
    was_gray = color.shape[2] == 1
    if was_gray:
        color = np.repeat(color, 3, axis=2)
    return color, alpha, was_gray


#: Rec. 601 luma weights (what GIMP's desaturate-by-luma and PIL's "L" use).
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def join_alpha(rgb: np.ndarray, alpha: np.ndarray | None, was_gray: bool) -> np.ndarray:
    """Inverse of :func:`split_alpha`: gray comes back as luma, alpha re-attached."""
    color = (rgb @ LUMA)[:, :, None] if was_gray else rgb
    return color if alpha is None else np.concatenate([color, alpha], axis=2)


def fit_long_side(width: int, height: int, long_side: int) -> tuple[int, int]:
    """(w, h) scaled so max(w, h) == long_side, aspect kept, each side >= 1."""
    scale = long_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize HxWxC float32 to (width, height) with Lanczos per channel (clipped to [0,1])."""
    return np.clip(resize_signed(image, size), 0.0, 1.0)


def resize_signed(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """:func:`resize` without the clip (for differences of images)."""
    width, height = size
    if image.shape[1] == width and image.shape[0] == height:
        return image
    out = np.empty((height, width, image.shape[2]), dtype=np.float32)
    for c in range(image.shape[2]):
        channel = Image.fromarray(np.ascontiguousarray(image[:, :, c], dtype=np.float32), "F")
        out[:, :, c] = np.asarray(channel.resize((width, height), Image.Resampling.LANCZOS))
    return out


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Fail early (before minutes of work) if the output can't be written there."""
    path = Path(path)
    if path.suffix.lower() not in WRITABLE_SUFFIXES:
        raise bad(
            f"Cannot write {path}: unknown image type '{path.suffix}'.",
            f"Use one of {', '.join(sorted(WRITABLE_SUFFIXES))}.",
        )
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise bad(f"Cannot write {path}: the folder {parent} does not exist.")
    if path.is_dir():
        raise bad(f"Cannot write {path}: it is a folder.")
    try:
        fd, probe = tempfile.mkstemp(prefix=".neural-style-", dir=parent)
    except OSError as exc:
        raise bad(f"Cannot write {path}: {exc.strerror or exc}.") from None
    os.close(fd)
    os.unlink(probe)
    return path


def save_image(image: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write atomically (temp file + rename): a failed save never leaves a partial file."""
    path = check_writable(path)
    image = as_hwc(image, "result")
    suffix = path.suffix.lower()
    pil = array_to_pil(image, suffix)
    fd, tmp = tempfile.mkstemp(prefix=".neural-style-", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        pil.save(tmp, format=Image.registered_extensions()[suffix])
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def array_to_pil(image: np.ndarray, suffix: str) -> Image.Image:
    """HxWxC array -> PIL image, dropping what the format can't hold (alpha in JPEG)."""
    if image.dtype == np.uint16 and image.shape[2] == 1 and suffix in (".png", ".tif", ".tiff"):
        return Image.fromarray(image[:, :, 0], "I;16")
    if image.dtype != np.uint8:
        image = from_float(to_float(image), np.dtype(np.uint8))
    if suffix in (".jpg", ".jpeg", ".bmp") and image.shape[2] in (2, 4):
        image = image[:, :, :-1]
    modes = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
    channels = image.shape[2]
    data = image[:, :, 0] if channels == 1 else image
    return Image.fromarray(np.ascontiguousarray(data), modes[channels])
