"""The pipe between the daemon and its worker process: a Unix socketpair carrying
messages of one msgpack header plus arrays; large arrays as shared memory.

Why not ``multiprocessing``'s pickling pipes: the daemon never unpickles, and a 4096 px
image should cross with one copy: large arrays are copied once into an anonymous
shared-memory file (memfd) whose descriptor rides with the header, and the other side maps
it; small ones follow as length-prefixed frames read with ``recv_into``. The two ends are
the daemon and the child it started; nothing else holds the sockets.
"""

from __future__ import annotations

import array
import mmap
import os
import socket
import struct
import threading
from collections.abc import Sequence
from typing import Any

import msgpack
import numpy as np

from neural_style.shared import limits

_LENGTH = struct.Struct("<Q")
#: A header is a small map (job fields, a step record, an error text).
MAX_HEADER_BYTES = 1 << 20
#: Array dtypes that cross the pipe (images and masks as the protocol carries them).
DTYPES = frozenset({"|u1", "<u2", "<f4", "<f8", "|b1"})
#: No array is larger than the largest image the daemon accepts, as float64 RGBA.
MAX_ARRAY_BYTES = limits.MAX_IMAGE_PIXELS * 4 * 8


#: Arrays this big cross as shared memory (one copy in, none out); smaller ones inline.
SHARED_MIN_BYTES = 16 << 20
#: Descriptors one message may carry (content, styles, mask, init, a previous frame).
MAX_FDS = 16
CAN_SHARE = hasattr(os, "memfd_create") and hasattr(socket, "SCM_RIGHTS")


def _shared_copy(a: np.ndarray) -> int:
    """An anonymous shared-memory file holding a copy of ``a`` (its descriptor)."""
    fd = os.memfd_create("neural-style-image", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, a.nbytes)
        with mmap.mmap(fd, a.nbytes) as m:
            np.frombuffer(m, dtype=np.uint8, count=a.nbytes)[:] = a.reshape(-1).view(np.uint8)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _map_shared(fd: int, nbytes: int) -> mmap.mmap:
    """Map a received shared-memory file (private: writes stay in this process)."""
    if os.fstat(fd).st_size < nbytes:
        raise PipeClosed("a shared array's file is shorter than its shape")
    return mmap.mmap(fd, nbytes, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)


class PipeClosed(EOFError):
    """The other end has gone (exited, crashed or closed the socket)."""


class Pipe:
    """One end: ``send`` from any one thread at a time (locked), ``recv`` from one reader."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()
        self._prefix = b""

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, header: dict[str, Any], arrays: Sequence[np.ndarray] = ()) -> None:
        """Send a header and its arrays as one message (raises PipeClosed when gone).

        Arrays of :data:`SHARED_MIN_BYTES` or more are copied once into an anonymous
        shared-memory file whose descriptor travels with the header (SCM_RIGHTS); the
        receiver maps it without a copy. Smaller ones follow the header as frames."""
        flat = [np.ascontiguousarray(a) for a in arrays]
        shared = [a.nbytes >= SHARED_MIN_BYTES and CAN_SHARE for a in flat]
        header = {
            **header,
            "arrays": [
                [a.dtype.str, list(a.shape), sh] for a, sh in zip(flat, shared, strict=True)
            ],
        }
        packed = msgpack.packb(header, use_bin_type=True)
        fds = [_shared_copy(a) for a, sh in zip(flat, shared, strict=True) if sh]
        try:
            with self._send_lock:
                data = _LENGTH.pack(len(packed)) + packed
                if fds:
                    sent = self.sock.sendmsg(
                        [data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
                    )
                    data = data[sent:]
                self.sock.sendall(data)
                for a, sh in zip(flat, shared, strict=True):
                    if sh:
                        continue
                    self.sock.sendall(_LENGTH.pack(a.nbytes))
                    if a.nbytes:
                        self.sock.sendall(a.data.cast("B"))
        except OSError as exc:
            raise PipeClosed(str(exc)) from None
        finally:
            for fd in fds:
                os.close(fd)

    def recv(self) -> tuple[dict[str, Any], list[np.ndarray]]:
        """The next message: its header and arrays (raises PipeClosed at the end)."""
        fds = self._recv_prefix()
        try:
            size = self._length(MAX_HEADER_BYTES, self._prefix)
            header = msgpack.unpackb(self._exact(bytearray(size)), raw=False)
            if not isinstance(header, dict):
                raise PipeClosed("malformed header")
            arrays = []
            for dtype, shape, shared in header.pop("arrays", []):
                if dtype not in DTYPES or not all(isinstance(n, int) and n >= 0 for n in shape):
                    raise PipeClosed(f"malformed array {dtype} {shape}")
                dt = np.dtype(dtype)
                nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
                if nbytes > MAX_ARRAY_BYTES:
                    raise PipeClosed(f"an array of {nbytes} bytes is over the bound")
                if shared:
                    if not fds:
                        raise PipeClosed("a shared array came without its descriptor")
                    buf: Any = _map_shared(fds.pop(0), nbytes)
                else:
                    if self._length(MAX_ARRAY_BYTES) != nbytes:
                        raise PipeClosed("array length does not match its shape")
                    buf = self._exact(bytearray(nbytes))
                arrays.append(
                    np.frombuffer(buf, dtype=dt, count=nbytes // dt.itemsize).reshape(shape)
                )
            return header, arrays
        finally:
            for fd in fds:
                os.close(fd)

    def close(self) -> None:
        self.sock.close()

    def _recv_prefix(self) -> list[int]:
        """Read the header's length prefix and the descriptors that came with it."""
        fds: list[int] = []
        got = b""
        while len(got) < _LENGTH.size:
            try:
                data, ancdata, _flags, _addr = self.sock.recvmsg(
                    _LENGTH.size - len(got), socket.CMSG_SPACE(MAX_FDS * 4)
                )
            except OSError as exc:
                raise PipeClosed(str(exc)) from None
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds += array.array("i", payload[: len(payload) - len(payload) % 4])
            if not data:
                for fd in fds:
                    os.close(fd)
                raise PipeClosed("the other end closed the pipe")
            got += data
        self._prefix = got
        return fds

    def _length(self, bound: int, raw: bytes | None = None) -> int:
        (n,) = _LENGTH.unpack(raw if raw is not None else self._exact(bytearray(_LENGTH.size)))
        if n > bound:
            raise PipeClosed(f"a frame of {n} bytes is over the bound of {bound}")
        return int(n)

    def _exact(self, buf: bytearray) -> bytearray:
        view = memoryview(buf)
        while view.nbytes:
            try:
                got = self.sock.recv_into(view)
            except OSError as exc:
                raise PipeClosed(str(exc)) from None
            if got == 0:
                raise PipeClosed("the other end closed the pipe")
            view = view[got:]
        return buf


# --------------------------------------------------------------------------- the messages
# daemon -> worker: {"op": "job", ...fields, arrays: content, styles..., mask?, init?,
#                   previous content and result?}
#                   {"op": "cancel", "job": id, "reason": r}, {"op": "stop"}
# worker -> daemon: {"op": "ready", "device", "weights", "pid"} or {"op": "failed", error}
#                   and one event message per WorkerEvent (below).


def job_message(job: Any) -> tuple[dict[str, Any], list[np.ndarray]]:
    """A :class:`~.jobs.ServiceJob` as the worker needs it (its images as arrays)."""
    arrays = [job.content, *job.styles]
    header: dict[str, Any] = {
        "op": "job",
        "job": job.job_id,
        "params": job.params.to_dict(),
        "styles": len(job.styles),
        "mask": job.mask is not None,
        "init": job.init is not None,
        "preview_max_side": job.preview_max_side,
        "previous": job.previous is not None,  # frames mode: previous content and result
        "temporal_weight": job.temporal_weight,
    }
    arrays += [a for a in (job.mask, job.init) if a is not None]
    arrays += list(job.previous) if job.previous is not None else []
    return header, arrays


def error_fields(exc: Any) -> dict[str, str]:
    return {"code": exc.code.value, "message": exc.message, "hint": exc.hint}


def event_message(kind: Any, job: Any, payload: Any) -> tuple[dict[str, Any], list[np.ndarray]]:
    """A worker event (:class:`~.worker.WorkerEvent`, job, payload) as a pipe message."""
    from neural_style.daemon.service.codec import array_from_image

    head: dict[str, Any] = {"op": kind.value, "job": job.job_id}
    if kind.value == "progress":
        step, eta = payload
        return {**head, "step": step.to_dict(), "eta": float(eta)}, []
    if kind.value == "preview":
        step, image = payload
        return {**head, "step": int(step)}, [array_from_image(image)]
    if kind.value == "result":
        r = payload
        fields = {
            "iterates": [s.to_dict() for s in r.iterates],
            "stopped": bool(r.stopped),
            "elapsed": float(r.elapsed),
            "style_cache_hit": bool(r.style_cache_hit),
            "work_size": [int(v) for v in r.work_size],
            "precision": str(r.precision),
            "frame": dict(r.frame),
        }
        return {**head, **fields}, [r.image]
    if kind.value == "cancelled":
        return {**head, "step": int(payload)}, []
    return {**head, **error_fields(payload)}, []


def event_payload(header: dict[str, Any], arrays: list[np.ndarray]) -> Any:
    """The payload of an event message, as :class:`~.worker.JobRunner` posted it."""
    from neural_style.daemon.engine.params import StylizeResult
    from neural_style.daemon.service.codec import image_from_array
    from neural_style.shared.errors import ErrorCode, NeuralStyleError
    from neural_style.shared.records import Step

    op = header["op"]
    if op == "progress":
        return Step(**header["step"]), float(header["eta"])
    if op == "preview":
        return int(header["step"]), image_from_array(arrays[0])
    if op == "result":
        return StylizeResult(
            image=arrays[0],
            iterates=[Step(**s) for s in header["iterates"]],
            stopped=bool(header["stopped"]),
            elapsed=float(header["elapsed"]),
            style_cache_hit=bool(header["style_cache_hit"]),
            work_size=(int(header["work_size"][0]), int(header["work_size"][1])),
            precision=str(header["precision"]),
            frame=dict(header.get("frame") or {}),
        )
    if op == "cancelled":
        return int(header["step"])
    return NeuralStyleError(ErrorCode(header["code"]), header["message"], header["hint"])
