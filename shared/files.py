"""Writing a file so that readers see the old content or the new one, never a part.

Standard library only (copied into the GIMP plug-in folder with the rest of the package).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str], *, mode: int = 0o644, suffix: str = ".tmp"
) -> Iterator[Path]:
    """Yield an empty temporary file beside ``path``, created with ``mode`` (so a secret is
    never readable by others, not even for a moment); rename it over ``path`` when the
    block succeeds, remove it when the block raises.

    For writers that need a file name (PIL, h5py, numpy); :func:`write_atomic` for text
    and bytes.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    tmp = Path(name)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        os.close(fd)
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_atomic(
    path: str | os.PathLike[str],
    data: str | bytes,
    *,
    mode: int = 0o644,
    fsync: bool = False,
) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` through a temporary file and a rename."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path, mode=mode) as tmp, open(tmp, "wb") as fh:
        fh.write(raw)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)
