"""Hide TensorFlow's start-up chatter that no environment variable reaches.

``TF_CPP_MIN_LOG_LEVEL`` silences TensorFlow's C++ logging once absl has read it, but two
lines are written while ``import tensorflow`` loads its shared libraries, before that:
"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
and, on CPUs where TensorFlow turns oneDNN on (AVX-512 VNNI / BF16 / AMX), "I0000 ...
port.cc:153] oneDNN custom operations are on ..." (each printed twice with tensorflow-cpu
2.21 on Linux, measured with ``python -c 'import tensorflow'``). ``TF_ENABLE_ONEDNN_OPTS=0``
would silence the second but also turn off the bf16 kernels, so instead the first import of
``tensorflow`` runs with file descriptor 2 sent to a scratch file; afterwards every line of
it that is not an INFO/WARNING log line is written back to stderr, so errors still show.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from types import ModuleType

#: absl/glog INFO and WARNING lines (``I0000 00:00:1796586813.766875   12765 port.cc:153] …``)
#: and absl's notice that it logs to stderr until initialised.
CHATTER = re.compile(
    r"^(?:[IW]\d{4} [\d:.]+\s+\d+ [\w.-]+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called)"
)


def is_chatter(line: str) -> bool:
    """Whether ``line`` is TensorFlow start-up chatter (never an error or a fatal line)."""
    return CHATTER.match(line) is not None


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Send fd 2 to a scratch file for the block, then replay all but the chatter."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as scratch:
        os.dup2(scratch.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            scratch.seek(0)
            text = scratch.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if not is_chatter(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    """The real loader of ``tensorflow``, its module run under :func:`filtered_stderr`."""

    def __init__(self, inner: importlib.abc.Loader) -> None:
        self._inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self._inner  # the module looks as if imported plainly
        if module.__spec__ is not None:
            module.__spec__.loader = self._inner
        with filtered_stderr():
            self._inner.exec_module(module)


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` once (then removes itself), wrapping its loader."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "tensorflow":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def hide_tensorflow_start_up() -> None:
    """Make the first ``import tensorflow`` of this process (wherever it happens) quiet.

    Harmless when TensorFlow is already imported (then nothing is left to hide) or when
    called twice.
    """
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietFinder())
