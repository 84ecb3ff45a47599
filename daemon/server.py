"""The daemon: a ZeroMQ ROUTER loop in front of one engine thread that owns VGG-19.

Why this shape: TensorFlow calls take seconds, but the daemon must keep answering pings,
status requests, cancels and heartbeats meanwhile. So the *socket loop* (main thread) only
decodes, validates, queues and forwards; a single *worker* thread runs the jobs one at a
time (the model is not thread-safe and one job already uses every core). They talk through
a ``queue.Queue`` plus an inproc PUSH/PULL socket that wakes the loop's ``zmq.Poller``.

Every job is addressed by (ROUTER identity, client-chosen id), so two clients may use the
same id. A job whose client cancels, disconnects or stops sending heartbeats gets
``"stop"`` from the engine callback and ends within one optimiser step.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import zmq
from zmq.utils import z85

from neural_style.daemon.params import STOP, StyleParams, StylizeResult
from neural_style.shared import __version__, connection, defaults, limits, protocol
from neural_style.shared.defaults import is_loopback_endpoint
from neural_style.shared.errors import UNSIGNED_ERRORS, ErrorCode, NeuralStyleError
from neural_style.shared.protocol import ImageBuf, Message, ProtocolError
from neural_style.shared.records import STEP_COLUMNS, JobStats, Step

log = logging.getLogger("neural_style.daemon.server")

#: Progress messages are sent at most this often (plus the first, last and preview steps).
PROGRESS_MIN_INTERVAL_S = 0.1
#: Replies to malformed or unauthenticated frames, at most this many per second (the rest
#: are dropped) so that a flood cannot make the daemon spend its time answering garbage.
ERROR_REPLIES_PER_S = 50
#: How long a graceful shutdown waits for the running job to reach its next step.
SHUTDOWN_GRACE_S = 30.0
#: After a time-limit cancel, how long the worker may take to reach its next step before
#: the watchdog gives up on the job (answers its client) and refuses new work.
WATCHDOG_GRACE_S = 600.0
#: A peer that has not finished the ZMTP handshake by then is dropped (libzmq: 30 s).
HANDSHAKE_IVL_MS = 5000
#: Where libzmq looks for the ZAP handler (RFC 27), and the domain the daemon asks it for.
ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_DOMAIN = b"neural-style"
#: Rough peak bytes per pixel, for the memory estimate at submit: a full-size content
#: image becomes float copies (RGB, alpha, output) on the way in and out; a style image
#: float RGB; one pixel of the working size costs VGG-19 activations and their gradients
#: (measured: 4096 px work size, 4.31 GiB; 4096^2 grey content at a small size, +864 MiB).
EST_CONTENT_BYTES_PER_PIXEL = 52
EST_STYLE_BYTES_PER_PIXEL = 28
EST_WORK_BYTES_PER_PIXEL = 400
EST_BASE_BYTES = 64 * 2**20
_NP_DTYPES = {code: np.dtype(name) for code, name in defaults.DTYPE_NUMPY.items()}


class Engine(Protocol):
    """What the server needs from :class:`neural_style.daemon.engine.StyleTransfer`."""

    weights: Any
    device: str

    def stylize(self, content, styles, params, callback=None, mask=None) -> StylizeResult: ...  # type: ignore[no-untyped-def]


@dataclass
class ServerConfig:
    endpoint: str = protocol.DEFAULT_ENDPOINT
    weights: str | None = None
    device: str = "auto"
    max_pixels: int = limits.MAX_IMAGE_PIXELS
    queue_size: int = 8
    #: None: ``NEURAL_STYLE_CONNECTION_FILE`` or the runtime dir's file for the endpoint.
    connection_file: Path | None = None
    curve_secret_key: Path | None = None
    #: None: a fresh random key (written to the connection file).
    key: bytes | None = None
    log_file: Path | None = None
    #: Folder of allowed CURVE client public keys (zmq.auth ``*.key`` files); None: the
    #: default folder (``~/.config/neural-style/authorized_keys``). The daemon's own
    #: user's client key is always allowed.
    authorized_keys: Path | None = None
    max_connections: int = limits.MAX_CONNECTIONS
    max_jobs_per_client: int = limits.MAX_JOBS_PER_CLIENT
    #: Largest estimated peak memory of one job, and bytes of received images that may
    #: wait in the queue; None: sized from the machine's RAM (80 % and 25 %).
    max_job_bytes: int | None = None
    max_queue_bytes: int | None = None
    #: A job running longer is stopped and answered ``timeout``; 0: no limit.
    job_time_limit_s: float = 48 * 3600.0


# --------------------------------------------------------------------------- images


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
    return ImageBuf(width, height, channels, code, memoryview(arr).cast("B"))


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


# --------------------------------------------------------------------------- jobs


@dataclass(eq=False)
class Job:
    """One accepted job, shared (carefully) by the loop and the worker."""

    ident: bytes
    job_id: str
    content: np.ndarray
    styles: list[np.ndarray]
    mask: np.ndarray | None
    params: StyleParams
    preview_max_side: int
    heartbeat_s: float
    submitted: float = field(default_factory=time.monotonic)
    cancel: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str = ""
    cancel_step: int = 0
    #: Written by the worker, read by the loop (ints: atomic enough for a status line).
    step: int = 0
    total: int = 0
    started: float = 0.0
    last_sent: float = field(default_factory=time.monotonic)
    #: Bytes of received images it holds, and its estimated peak memory while running.
    nbytes: int = 0
    estimate: int = 0
    #: When the worker last reached a step (monotonic), for the watchdog.
    last_step: float = 0.0
    #: Given up by the watchdog: its client was answered, later worker events are ignored.
    abandoned: bool = False

    @property
    def key(self) -> tuple[bytes, str]:
        return (self.ident, self.job_id)

    def request_cancel(self, reason: str) -> None:
        if not self.cancel.is_set():
            self.cancel_reason = reason
            self.cancel_step = self.step
            self.cancel.set()


class Worker(threading.Thread):
    """Runs jobs one at a time on the engine; reports through ``events`` + a wake-up."""

    def __init__(self, engine: Engine, context: zmq.Context, wake_endpoint: str) -> None:
        super().__init__(name="neural-style-engine", daemon=True)
        self.engine = engine
        self.jobs: queue.Queue[Job | None] = queue.Queue(maxsize=1)
        self.events: queue.Queue[tuple[str, Job, Any]] = queue.Queue()
        self._context = context
        self._wake_endpoint = wake_endpoint
        self._wake: zmq.Socket | None = None

    def run(self) -> None:
        self._wake = self._context.socket(zmq.PUSH)
        self._wake.setsockopt(zmq.LINGER, 0)
        self._wake.connect(self._wake_endpoint)
        try:
            while (job := self.jobs.get()) is not None:
                self._post(*self._run_job(job))
        finally:
            self._wake.close()

    def _post(self, kind: str, job: Job, payload: Any = None) -> None:
        self.events.put((kind, job, payload))
        if self._wake is not None:
            with contextlib.suppress(zmq.Again):
                self._wake.send(b"", zmq.NOBLOCK)

    def _run_job(self, job: Job) -> tuple[str, Job, Any]:
        """Run one job; return its terminal event (result, cancelled or error)."""
        job.started = job.last_step = time.monotonic()
        if job.cancel.is_set():
            return ("cancelled", job, 0)
        try:
            kwargs = {"mask": job.mask} if job.mask is not None else {}
            result = self.engine.stylize(
                job.content, job.styles, job.params, self._callback(job), **kwargs
            )
        except Exception as exc:  # the daemon must survive anything a job does
            return ("error", job, _job_error(exc, self.engine))
        if result.stopped and job.cancel.is_set():
            return ("cancelled", job, result.iterates[-1].step if result.iterates else job.step)
        return ("result", job, result)

    def _callback(self, job: Job) -> Callable[[Step], str | None]:
        state = {"last": 0.0, "t0": None, "s0": 0}

        def callback(it: Step) -> str | None:
            job.step, job.total = it.step, it.total
            job.last_step = time.monotonic()
            if job.cancel.is_set():
                return STOP
            now = time.monotonic()
            if state["t0"] is None:
                state["t0"], state["s0"] = now, it.step
            if it.preview is not None:
                self._post(
                    "preview", job, (it.step, preview_image(it.preview, job.preview_max_side))
                )
            due = now - state["last"] >= PROGRESS_MIN_INTERVAL_S
            if due or it.preview is not None or it.step in (1, it.total):
                state["last"] = now
                self._post("progress", job, (it, _eta(state["t0"], state["s0"], it, now)))
            return STOP if job.cancel.is_set() else None

        return callback


def _eta(t0: float, s0: int, it: Step, now: float) -> float:
    done = it.step - s0
    return 0.0 if done <= 0 else (now - t0) / done * max(0, it.total - it.step)


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(exc, tf.errors.ResourceExhaustedError)


def _job_error(exc: Exception, engine: Engine) -> NeuralStyleError:
    """Map whatever a job raised to the error the client sees."""
    if isinstance(exc, NeuralStyleError):
        return exc
    if _is_oom(exc):
        gc.collect()
        log.warning("job ran out of memory on %s: %s", engine.device, str(exc)[:300])
        on_gpu = "GPU" in str(engine.device).upper()
        hint = (
            "Lower the size parameter (the working long side), close programs that use "
            "GPU memory, or restart the daemon with --device cpu."
            if on_gpu
            else "Lower the size parameter (the working long side), use fewer or smaller "
            "style images, or close programs that use memory."
        )
        return NeuralStyleError(
            ErrorCode.OUT_OF_MEMORY, f"Out of memory on {engine.device} at this working size.", hint
        )
    log.error("job failed:\n%s", "".join(traceback.format_exception(exc)))
    return NeuralStyleError(
        ErrorCode.INTERNAL,
        f"Internal error in the daemon: {type(exc).__name__}: {str(exc)[:500]}",
        "The daemon keeps running; its log has the details. Please report this.",
    )


# --------------------------------------------------------------------------- server


class _RateLimit:
    """A token bucket: at most ``rate`` events per second, bursts up to ``rate``."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.stamp = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Server:
    """The socket loop. ``run()`` returns when a shutdown was requested and done."""

    def __init__(self, config: ServerConfig, engine: Engine) -> None:
        self.config = config
        self.engine = engine
        self.key = config.key or connection.new_key()
        self.context = zmq.Context()
        # The ZAP handler must exist before the router accepts anyone (RFC 27).
        self.zap = self.context.socket(zmq.REP)
        self.zap.setsockopt(zmq.LINGER, 0)
        self.zap.bind(ZAP_ENDPOINT)
        self._conns: set[int] = set()
        self._allowed_keys: set[bytes] = set()
        self._keys_stamp: float | None = None
        self.router = self._make_router()
        self.monitor = self.router.get_monitor_socket(
            zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED
        )
        self.endpoint = self._bind()
        self._wake_endpoint = f"inproc://neural-style-wake-{id(self)}"
        self.wake = self.context.socket(zmq.PULL)
        self.wake.bind(self._wake_endpoint)
        self.worker = Worker(engine, self.context, self._wake_endpoint)
        self.connection_path: Path | None = None
        self.started = time.time()
        self._jobs: dict[tuple[bytes, str], Job] = {}
        self._waiting: deque[Job] = deque()
        self._running: Job | None = None
        self._last_seen: dict[bytes, float] = {}
        self._backlog: deque[tuple[float, list[Any]]] = deque()
        self._error_replies = _RateLimit(ERROR_REPLIES_PER_S)
        self._replays = protocol.ReplayWindow()
        self._wedged = ""
        ram = _physical_memory()
        self.max_job_bytes = config.max_job_bytes or int(ram * 0.8)
        self.max_queue_bytes = config.max_queue_bytes or int(ram * 0.25)
        self._stop = threading.Event()
        self._stop_deadline: float | None = None
        self.counters = dict.fromkeys(
            ("done", "cancelled", "failed", "busy", "rejected", "style_cache_hits",
             "zap_denied", "replayed", "timed_out"), 0
        )

    # -- setup
    def _make_router(self) -> zmq.Socket:
        router = self.context.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 1000)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # unknown peer -> error, not silence
        router.setsockopt(zmq.MAXMSGSIZE, protocol.max_frame_bytes(self.config.max_pixels))
        router.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_IVL_MS)
        router.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
        if self.config.curve_secret_key is not None:
            public, secret = load_curve_keys(self.config.curve_secret_key)
            router.curve_server = True
            router.curve_publickey = public
            router.curve_secretkey = secret
            self.curve_public = public.decode("ascii")
        else:
            self.curve_public = ""
        return router

    def _bind(self) -> str:
        try:
            self.router.bind(self.config.endpoint)
        except zmq.ZMQError as exc:
            self.monitor.close(linger=0)
            self.zap.close(linger=0)
            self.context.destroy(linger=0)
            raise NeuralStyleError(
                ErrorCode.INTERNAL,
                f"Cannot listen on {self.config.endpoint}: {exc}.",
                "Is another daemon running there? `neural-style status` tells; else pick "
                "another --bind address.",
            ) from None
        return self.router.getsockopt_string(zmq.LAST_ENDPOINT)

    def write_connection_file(self) -> Path:
        path = self.config.connection_file or connection.path_for(self.endpoint)
        info = connection.make_info(self.endpoint, self.key, __version__, self.curve_public)
        self.connection_path = connection.write(info, Path(path))
        log.info("connection file: %s", self.connection_path)
        return self.connection_path

    def request_stop(self, *_: object) -> None:
        """Ask the loop to shut down gracefully (safe from a signal handler)."""
        self._stop.set()

    def _on_signal(self, signum: int, _frame: object) -> None:
        """First SIGTERM/SIGINT: graceful stop. A second one: leave now (a step can be long)."""
        if self._stop.is_set():
            connection.remove(self.connection_path, os.getpid())
            os._exit(128 + signum)
        log.info("signal %d: shutting down", signum)
        self.request_stop()

    # -- main loop
    def run(self) -> int:
        self.worker.start()
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.wake, zmq.POLLIN)
        poller.register(self.monitor, zmq.POLLIN)
        poller.register(self.zap, zmq.POLLIN)
        log.info("serving on %s (device %s)", self.endpoint, self.engine.device)
        try:
            while not self._finished():
                ready = dict(poller.poll(timeout=50))
                if self.monitor in ready:
                    self._drain_monitor()
                if self.zap in ready:
                    self._drain_zap()
                if self.wake in ready:
                    self._drain_wake()
                if self.router in ready:
                    self._drain_router()
                self._drain_events()
                self._tick()
        finally:
            self._close()
        return 0

    def _finished(self) -> bool:
        if not self._stop.is_set():
            return False
        if self._stop_deadline is None:
            log.info("shutting down: cancelling %d job(s)", len(self._jobs))
            self._stop_deadline = time.monotonic() + SHUTDOWN_GRACE_S
            for job in list(self._waiting):
                self._cancel_waiting(job, "shutdown")
            if self._running is not None:
                self._running.request_cancel("shutdown")
        idle = self._running is None and not self._backlog
        return idle or time.monotonic() > self._stop_deadline

    def _close(self) -> None:
        connection.remove(self.connection_path, os.getpid())
        with contextlib.suppress(queue.Full):
            self.worker.jobs.put_nowait(None)
        self.worker.join(timeout=2.0)
        with contextlib.suppress(zmq.ZMQError):
            self.router.disable_monitor()
        self.monitor.close(linger=0)
        self.router.close(linger=500)
        self.zap.close(linger=0)
        self.wake.close(linger=0)
        if not self.worker.is_alive():  # else its socket is still open: term() would hang
            self.context.term()
        log.info("stopped")

    def _drain_wake(self) -> None:
        with contextlib.suppress(zmq.Again):
            for _ in range(10_000):
                self.wake.recv(zmq.NOBLOCK)

    # -- connections: accounting (monitor) and admission (ZAP)
    def _drain_monitor(self) -> None:
        from zmq.utils.monitor import recv_monitor_message

        for _ in range(10_000):
            try:
                event = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            if event["event"] == zmq.EVENT_ACCEPTED:
                self._conns.add(int(event["value"]))
            else:
                self._conns.discard(int(event["value"]))

    def _drain_zap(self) -> None:
        for _ in range(1000):
            try:
                request = self.zap.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.zap.send_multipart(self._zap_reply(request))

    def _zap_reply(self, request: list[bytes]) -> list[bytes]:
        """Admit or refuse one handshake (RFC 27): connection cap, then CURVE allow-list."""
        if len(request) < 6:
            rid = request[1] if len(request) > 1 else b""
            return [b"1.0", rid, b"500", b"bad request", b"", b""]
        _version, request_id, _domain, address, _identity, mechanism, *credentials = request
        self._drain_monitor()  # the ACCEPTED event of this very connection

        def deny(code: bytes, why: str) -> list[bytes]:
            self.counters["zap_denied"] += 1
            if self._error_replies.allow():
                peer = address.decode("ascii", "replace")
                log.warning("refused a connection from %s: %s", peer, why)
            return [b"1.0", request_id, code, why.encode(), b"", b""]

        if len(self._conns) > self.config.max_connections:
            return deny(b"300", f"too many connections (limit {self.config.max_connections})")
        user = b""
        if mechanism == b"CURVE":
            public = z85.encode(credentials[0]) if credentials else b""
            if public not in self._allowed():
                return deny(b"400", f"unknown CURVE client key {public.decode()}")
            user = public
        return [b"1.0", request_id, b"200", b"OK", user, b""]

    def _allowed(self) -> set[bytes]:
        """Allowed CURVE client keys: the folder's ``*.key`` files (re-read when it changes)
        plus this user's own client key."""
        folder = self.config.authorized_keys or default_authorized_keys()
        try:
            stamp = folder.stat().st_mtime
        except OSError:
            stamp = -1.0
        if stamp != self._keys_stamp:
            self._keys_stamp = stamp
            keys = set(self._own_keys())
            if stamp >= 0:
                import zmq.auth

                with contextlib.suppress(OSError, ValueError):
                    keys |= set(zmq.auth.load_certificates(str(folder)))
            self._allowed_keys = keys
        return self._allowed_keys

    def _own_keys(self) -> set[bytes]:
        """This user's own stable client key (created on first use): always allowed."""
        from neural_style.shared.client import client_keypair

        try:
            return {client_keypair()[0]}
        except (OSError, NeuralStyleError) as exc:
            log.warning("cannot read or create this user's CURVE client key: %s", exc)
            return set()

    def _drain_router(self) -> None:
        for _ in range(200):  # bounded, so heartbeats and events still get their turn
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._on_frames(frames)

    def _on_frames(self, frames: list[zmq.Frame]) -> None:
        ident = frames[0].bytes
        try:
            msg = protocol.decode(
                [f.buffer for f in frames[1:]],
                self.key,
                max_pixels=self.config.max_pixels,
                allowed_types=protocol.CLIENT_TYPES,
            )
        except ProtocolError as exc:
            self.counters["rejected"] += 1
            self._reply_protocol_error(ident, exc)
            return
        try:
            self._replays.check(msg)
        except ProtocolError as exc:
            self.counters["replayed"] += 1
            self._reply_protocol_error(ident, exc)
            return
        self._last_seen[ident] = time.monotonic()
        address = {"req": msg.get("req"), "job": msg.get("job")}
        try:
            getattr(self, f"_on_{msg.type}")(ident, msg)
        except NeuralStyleError as exc:
            self._send_error(ident, exc, **address)
        except Exception as exc:  # a bug in a handler must not end the daemon
            self._send_error(ident, _job_error(exc, self.engine), **address)

    def _reply_protocol_error(self, ident: bytes, exc: ProtocolError) -> None:
        if not self._error_replies.allow():
            return
        log.debug("rejected a message: %s", exc.message)
        unsigned = exc.code in UNSIGNED_ERRORS
        msg = protocol.error_message(exc.code, exc.message, exc.hint, **exc.fields)
        self._send(ident, msg, droppable=True, key=None if unsigned else self.key)

    # -- handlers (one per client message type)
    def _on_hello(self, ident: bytes, msg: Message) -> None:
        self._reply(ident, msg, "welcome", self._welcome())

    def _on_ping(self, ident: bytes, msg: Message) -> None:
        fields = {"server_time": time.time()}
        if "t" in msg.fields:
            fields["t"] = msg.fields["t"]
        self._reply(ident, msg, "pong", fields)

    def _on_status(self, ident: bytes, msg: Message) -> None:
        self._reply(ident, msg, "status_reply", {"info": self.status_info()})

    def _on_shutdown(self, ident: bytes, msg: Message) -> None:
        log.info("shutdown requested by a client")
        self._reply(ident, msg, "shutdown_ack", {})
        self.request_stop()

    def _on_heartbeat(self, ident: bytes, msg: Message) -> None:
        """Nothing to do: receiving it refreshed the client's last-seen time."""

    def _on_cancel(self, ident: bytes, msg: Message) -> None:
        job = self._jobs.get((ident, msg.fields["job"]))
        if job is None:
            return  # already finished: the result or error is on its way
        if job is self._running:
            log.info("job %s: cancel requested at step %d", job.job_id, job.step)
            job.request_cancel("client")
        else:
            self._cancel_waiting(job, "client")

    def _on_submit(self, ident: bytes, msg: Message) -> None:
        f = msg.fields
        key = (ident, f["job"])
        if key in self._jobs:
            raise NeuralStyleError(ErrorCode.BAD_REQUEST, f"Job id {f['job']!r} is already in use.")
        if self._stop.is_set():
            raise NeuralStyleError(ErrorCode.BUSY, "The daemon is shutting down.")
        if self._wedged:
            raise NeuralStyleError(
                ErrorCode.INTERNAL,
                f"The daemon's worker is stuck ({self._wedged}); it accepts no new jobs.",
                f"Restart the daemon: neural-style stop, then {protocol.START_COMMAND}.",
            )
        mine = sum(1 for k in self._jobs if k[0] == ident)
        if mine >= self.config.max_jobs_per_client:
            self.counters["busy"] += 1
            raise NeuralStyleError(
                ErrorCode.BUSY,
                f"This client already has {mine} jobs open; the daemon allows "
                f"{self.config.max_jobs_per_client} per client, so other clients get a turn.",
                "Wait for one of your jobs to finish, or restart the daemon with a larger "
                "--max-jobs-per-client.",
            )
        if len(self._waiting) >= self.config.queue_size:
            self.counters["busy"] += 1
            raise NeuralStyleError(
                ErrorCode.BUSY,
                f"The daemon's queue is full ({len(self._waiting)} jobs waiting).",
                "Try again when a job has finished, or restart the daemon with a larger --queue.",
            )
        job = self._make_job(ident, f)
        self._check_memory(job)
        self._jobs[key] = job
        self._waiting.append(job)
        position = len(self._waiting) - 1 + (self._running is not None)
        self._send(ident, Message("accepted", {"job": job.job_id, "position": position}))
        log.info(
            "job %s: accepted %dx%d, %d style(s), %d steps at size %d, position %d",
            job.job_id,
            job.content.shape[1],
            job.content.shape[0],
            len(job.styles),
            job.params.iterations,
            job.params.size,
            position,
        )
        self._dispatch()

    def _make_job(self, ident: bytes, f: dict[str, Any]) -> Job:
        params = StyleParams.from_dict(f["params"])
        if f.get("preview_every"):
            params = replace(params, preview_every=f["preview_every"])
        content = _checked_array("content", f["content"])
        styles = [_checked_array(f"styles[{i}]", s) for i, s in enumerate(f["styles"])]
        mask = _checked_array("mask", f["mask"]) if "mask" in f else None
        work = check_work_sizes(content, styles, params)
        nbytes = content.nbytes + sum(s.nbytes for s in styles)
        nbytes += mask.nbytes if mask is not None else 0
        return Job(
            ident=ident,
            job_id=f["job"],
            content=content,
            styles=styles,
            mask=mask,
            params=params,
            preview_max_side=f.get("preview_max_side", defaults.PREVIEW_SIDE),
            heartbeat_s=f.get("heartbeat_s", protocol.DEFAULT_HEARTBEAT_S),
            nbytes=nbytes,
            estimate=estimate_job_bytes(content, styles, work),
        )

    def _check_memory(self, job: Job) -> None:
        """Refuse (too_large, with the figures) a job whose estimated peak memory cannot
        fit, or whose images would push the queue's bytes over its bound."""
        if job.estimate > self.max_job_bytes:
            raise NeuralStyleError(
                ErrorCode.TOO_LARGE,
                f"This job would need about {_gib(job.estimate)} of memory at its working "
                f"size; this daemon allows {_gib(self.max_job_bytes)} per job.",
                "Lower the size parameter, send smaller or fewer style images, or restart "
                "the daemon with a larger --max-job-memory.",
            )
        queued = sum(j.nbytes for j in self._waiting)
        if queued + job.nbytes > self.max_queue_bytes:
            self.counters["busy"] += 1
            raise NeuralStyleError(
                ErrorCode.TOO_LARGE if job.nbytes > self.max_queue_bytes else ErrorCode.BUSY,
                f"The queue holds {_gib(queued)} of images; this job's {_gib(job.nbytes)} "
                f"would exceed its bound of {_gib(self.max_queue_bytes)}.",
                "Try again when a job has finished, or send smaller images.",
            )

    # -- queue
    def _dispatch(self) -> None:
        if self._running is not None or not self._waiting or self._stop.is_set():
            return
        job = self._waiting.popleft()
        self._running = job
        self.worker.jobs.put_nowait(job)
        for position, waiting in enumerate(self._waiting, start=1):
            self._heartbeat(waiting, position)

    def _cancel_waiting(self, job: Job, reason: str) -> None:
        with contextlib.suppress(ValueError):
            self._waiting.remove(job)
        self._jobs.pop(job.key, None)
        self.counters["cancelled"] += 1
        log.info("job %s: cancelled while queued (%s)", job.job_id, reason)
        self._send(job.ident, Message("cancelled", {"job": job.job_id, "reason": reason}))

    # -- worker events
    def _drain_events(self) -> None:
        while True:
            try:
                kind, job, payload = self.worker.events.get_nowait()
            except queue.Empty:
                return
            if job.abandoned:
                if kind in ("result", "cancelled", "error"):
                    log.info("job %s: the stuck worker finished it after all", job.job_id)
                    self._wedged = ""
                continue
            getattr(self, f"_event_{kind}")(job, payload)

    def _event_progress(self, job: Job, payload: tuple[Step, float]) -> None:
        step, eta = payload
        fields = {**step.to_dict(), "job": job.job_id, "eta_s": eta}
        fields["elapsed_s"] = max(0.0, fields["elapsed_s"])
        self._send(job.ident, Message("progress", fields), droppable=True)

    def _event_preview(self, job: Job, payload: tuple[int, ImageBuf]) -> None:
        step, image = payload
        msg = Message("preview", {"job": job.job_id, "step": step, "image": image})
        self._send(job.ident, msg, droppable=True)

    def _event_result(self, job: Job, result: StylizeResult) -> None:
        self._end(job)
        self.counters["done"] += 1
        self.counters["style_cache_hits"] += bool(result.style_cache_hit)
        stats = self._stats(job, result)
        log.info(
            "job %s: done in %.2f s (%d steps, style cache %s)",
            job.job_id,
            result.elapsed,
            len(result.iterates),
            "hit" if result.style_cache_hit else "miss",
        )
        rows = [[row[c] for c in STEP_COLUMNS] for row in map(Step.to_dict, result.iterates)]
        fields = {
            "job": job.job_id,
            "image": image_from_array(result.image),
            "stats": stats.to_dict(),
            "iterates": protocol.pack_iterates(rows),
        }
        self._send(job.ident, Message("result", fields))

    def _event_cancelled(self, job: Job, step: int) -> None:
        if job.cancel_reason == "time_limit":
            self._end(job)
            self.counters["timed_out"] += 1
            limit = self.config.job_time_limit_s
            log.info("job %s: stopped at step %d by the %g s time limit", job.job_id, step, limit)
            exc = NeuralStyleError(
                ErrorCode.TIMEOUT,
                f"The job ran longer than this daemon's limit of {limit:g} s and was "
                f"stopped at step {step}.",
                "Lower the size or iterations, or restart the daemon with a larger "
                "--job-time-limit.",
            )
            self._send_error(job.ident, exc, job=job.job_id)
            return
        self._end(job)
        self.counters["cancelled"] += 1
        log.info(
            "job %s: cancelled (%s) at step %d, requested at step %d",
            job.job_id,
            job.cancel_reason,
            step,
            job.cancel_step,
        )
        fields = {
            "job": job.job_id,
            "reason": job.cancel_reason or "client",
            "step": int(step),
            "requested_at_step": int(job.cancel_step),
        }
        self._send(job.ident, Message("cancelled", fields))

    def _event_error(self, job: Job, exc: NeuralStyleError) -> None:
        self._end(job)
        self.counters["failed"] += 1
        log.info("job %s: failed (%s) %s", job.job_id, exc.code.value, exc.message)
        self._send_error(job.ident, exc, job=job.job_id)

    def _end(self, job: Job) -> None:
        self._jobs.pop(job.key, None)
        if self._running is job:
            self._running = None
        self._dispatch()

    def _stats(self, job: Job, result: StylizeResult) -> JobStats:
        its = result.iterates
        steady = [b.elapsed_s - a.elapsed_s for a, b in itertools.pairwise(its[-20:])]
        last = its[-1] if its else None
        return JobStats(
            elapsed_s=float(result.elapsed),
            queue_wait_s=max(0.0, job.started - job.submitted),
            steps=len(its),
            stopped=bool(result.stopped),
            style_cache_hit=bool(result.style_cache_hit),
            work_size=[int(v) for v in result.work_size],
            precision=result.precision,
            first_step_s=float(its[0].elapsed_s) if its else 0.0,
            step_s=float(sorted(steady)[len(steady) // 2]) if steady else 0.0,
            loss=float(last.loss) if last else 0.0,
            content=float(last.content) if last else 0.0,
            style=float(last.style) if last else 0.0,
            tv=float(last.tv) if last else 0.0,
            device=self.engine.device,
            weights=_weights_dict(self.engine),
        )

    # -- periodic duties
    def _tick(self) -> None:
        now = time.monotonic()
        self._retry_backlog(now)
        self._watchdog(now)
        for job in list(self._jobs.values()):
            seen = self._last_seen.get(job.ident, job.submitted)
            if now - seen > protocol.CLIENT_GONE_HEARTBEATS * job.heartbeat_s:
                self._client_gone(job, now - seen)
            elif now - job.last_sent >= job.heartbeat_s:
                position = 0 if job is self._running else self._position(job)
                self._heartbeat(job, position)
        if len(self._last_seen) > 1000:  # forget idle peers
            active = {job.ident for job in self._jobs.values()}
            self._last_seen = {i: t for i, t in self._last_seen.items() if i in active}

    def _watchdog(self, now: float) -> None:
        """The per-job time limit, and a worker that stops reaching its next step."""
        job = self._running
        if job is None or not job.started or job.abandoned:
            return
        limit = self.config.job_time_limit_s
        if limit and now - job.started > limit and not job.cancel.is_set():
            log.warning("job %s: over the %g s time limit, stopping it", job.job_id, limit)
            job.request_cancel("time_limit")
        stuck = now - max(job.last_step, job.started)
        if job.cancel.is_set() and stuck > WATCHDOG_GRACE_S + SHUTDOWN_GRACE_S:
            job.abandoned = True
            self._wedged = f"job {job.job_id} has not reached a step for {stuck:.0f} s"
            log.error("watchdog: %s; giving up on it", self._wedged)
            self._jobs.pop(job.key, None)
            self._running = None
            exc = NeuralStyleError(
                ErrorCode.TIMEOUT,
                f"The daemon's worker stopped making progress ({self._wedged}).",
                f"Restart the daemon: neural-style stop, then {protocol.START_COMMAND}.",
            )
            self._send_error(job.ident, exc, job=job.job_id)
            for waiting in list(self._waiting):
                self._cancel_waiting(waiting, "shutdown")

    def _client_gone(self, job: Job, silent: float) -> None:
        if job is self._running:
            if not job.cancel.is_set():
                log.info("job %s: client silent for %.1f s, cancelling", job.job_id, silent)
                job.request_cancel("client_gone")
        else:
            self._cancel_waiting(job, "client_gone")

    def _position(self, job: Job) -> int:
        try:
            return self._waiting.index(job) + (self._running is not None)
        except ValueError:
            return 0

    def _heartbeat(self, job: Job, position: int) -> None:
        state = "running" if job is self._running else "queued"
        fields = {"job": job.job_id, "state": state, "position": position}
        self._send(job.ident, Message("heartbeat", fields), droppable=True)

    # -- sending
    def _reply(self, ident: bytes, request: Message, kind: str, fields: dict[str, Any]) -> None:
        if "req" in request.fields:
            fields = {**fields, "req": request.fields["req"]}
        self._send(ident, Message(kind, fields))

    def _send_error(self, ident: bytes, exc: NeuralStyleError, **address: Any) -> None:
        self._send(ident, protocol.error_message(exc.code, exc.message, exc.hint, **address))

    def _send(
        self, ident: bytes, msg: Message, *, droppable: bool = False, key: bytes | None = b""
    ) -> None:
        """Send without ever blocking; keep undeliverable important messages for a while."""
        frames = [ident, *protocol.encode(msg, self.key if key == b"" else key)]
        job = self._jobs.get((ident, msg.get("job", "")))
        if job is not None:
            job.last_sent = time.monotonic()
        if not self._try_send(frames) and not droppable:
            self._backlog.append((time.monotonic() + 10.0, frames))

    def _try_send(self, frames: list[Any]) -> bool:
        try:
            self.router.send_multipart(frames, zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False  # the peer's queue is full
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            return True  # the peer is gone: nobody to deliver to
        return True

    def _retry_backlog(self, now: float) -> None:
        for _ in range(len(self._backlog)):
            deadline, frames = self._backlog.popleft()
            if not self._try_send(frames) and now < deadline:
                self._backlog.append((deadline, frames))

    # -- descriptions
    def _welcome(self) -> dict[str, Any]:
        return {
            "protocol": protocol.PROTOCOL_VERSION,
            "server": __version__,
            "pid": os.getpid(),
            "device": self.engine.device,
            "model": "vgg19",
            "weights": _weights_dict(self.engine),
            "limits": {
                "max_pixels": self.config.max_pixels,
                "max_side": limits.MAX_IMAGE_SIDE,
                "max_work_side": limits.MAX_WORK_SIDE,
                "max_styles": limits.MAX_STYLES,
                "max_iterations": limits.MAX_ITERATIONS,
                "queue": self.config.queue_size,
                "min_work_short_side": limits.MIN_WORK_SHORT_SIDE,
                "max_job_bytes": self.max_job_bytes,
                "max_queue_bytes": self.max_queue_bytes,
                "max_jobs_per_client": self.config.max_jobs_per_client,
            },
            "features": list(protocol.FEATURES),
            "heartbeat_s": protocol.DEFAULT_HEARTBEAT_S,
        }

    def status_info(self) -> dict[str, Any]:
        running = self._running
        info: dict[str, Any] = {
            "server": __version__,
            "protocol": protocol.PROTOCOL_VERSION,
            "pid": os.getpid(),
            "endpoint": self.endpoint,
            "uptime_s": time.time() - self.started,
            "device": self.engine.device,
            "model": "vgg19",
            "weights": _weights_dict(self.engine),
            "queue": {"waiting": len(self._waiting), "max": self.config.queue_size},
            "running": None,
            "jobs": dict(self.counters),
            "max_pixels": self.config.max_pixels,
            "connection_file": str(self.connection_path or ""),
            "log_file": str(self.config.log_file or ""),
            "curve": bool(self.curve_public),
            "rss_bytes": _rss(),
            "connections": len(self._conns),
            "max_connections": self.config.max_connections,
            "queue_bytes": sum(j.nbytes for j in self._waiting),
            "max_queue_bytes": self.max_queue_bytes,
            "wedged": self._wedged,
        }
        if running is not None:
            info["running"] = {
                "step": running.step,
                "total": running.total or running.params.iterations,
                "elapsed_s": time.monotonic() - running.started if running.started else 0.0,
            }
        return info


def _checked_array(where: str, img: ImageBuf) -> np.ndarray:
    arr = array_from_image(img)
    if img.dtype == "f32" and not np.isfinite(arr).all():
        raise NeuralStyleError(
            ErrorCode.BAD_REQUEST, f"submit.{where}: float pixels must be finite (no NaN/inf)."
        )
    return arr


def check_work_sizes(
    content: np.ndarray, styles: list[np.ndarray], params: StyleParams
) -> tuple[int, int]:
    """The working size; bad_request naming the minimum when any scale of the content or
    a style would have a side under ``limits.MIN_WORK_SHORT_SIDE`` (VGG-19 would fail).

    Mirrors the engine's ladder and style sizing (engine.StyleTransfer.stylize).
    """
    from neural_style.daemon.images import fit_long_side

    least = limits.MIN_WORK_SHORT_SIDE
    height, width = content.shape[:2]
    ladder = sorted({min(side, max(width, height)) for side in params.ladder()})
    sizes = [fit_long_side(width, height, side) for side in ladder]
    for w, h in sizes:
        if min(w, h) < least:
            raise NeuralStyleError(
                ErrorCode.BAD_REQUEST,
                f"The content image ({width}x{height}) is too thin: at the working size "
                f"{max(w, h)} it would be {w}x{h}, and every side must be at least {least} "
                "pixels.",
                f"Select an area at least {least} pixels high and wide (in proportion to the "
                "size), raise the size parameter, or use fewer coarse scales.",
            )
    for i, style in enumerate(styles):
        sh, sw = style.shape[:2]
        for w, h in sizes:
            side = round(max(w, h) * params.style_scale)
            side = int(np.clip(side, 16, 2 * limits.MAX_WORK_SIDE))
            tw, th = fit_long_side(sw, sh, side)
            if min(tw, th) < least:
                raise NeuralStyleError(
                    ErrorCode.BAD_REQUEST,
                    f"Style image {i + 1} ({sw}x{sh}) is too thin: at its working size it "
                    f"would be {tw}x{th}, and every side must be at least {least} pixels.",
                    "Use a less elongated style image, or a larger style scale.",
                )
    return sizes[-1]


def estimate_job_bytes(
    content: np.ndarray, styles: list[np.ndarray], work: tuple[int, int]
) -> int:
    """A job's rough peak memory: its full-size images as float copies plus the working
    size's activations (see the EST_* constants)."""
    content_px = content.shape[0] * content.shape[1]
    style_px = sum(s.shape[0] * s.shape[1] for s in styles)
    return (
        EST_BASE_BYTES
        + content_px * EST_CONTENT_BYTES_PER_PIXEL
        + style_px * EST_STYLE_BYTES_PER_PIXEL
        + work[0] * work[1] * EST_WORK_BYTES_PER_PIXEL
    )


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.0f} MiB"


def _physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def default_authorized_keys() -> Path:
    """``$XDG_CONFIG_HOME/neural-style/authorized_keys``: allowed CURVE client keys."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "neural-style" / "authorized_keys"


def _weights_dict(engine: Engine) -> dict[str, Any]:
    w = engine.weights
    return {
        "path": str(getattr(w, "path", "")),
        "sha256": str(getattr(w, "sha256", "")),
        "synthetic": bool(getattr(w, "synthetic", False)),
    }


def _rss() -> int:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # psutil missing or restricted: the status line just lacks it
        return 0


# --------------------------------------------------------------------------- binding policy


def load_curve_keys(path: Path) -> tuple[bytes, bytes]:
    """(public, secret) Z85 keys from a zmq certificate file (``zmq.auth`` format)."""
    import zmq.auth

    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise NeuralStyleError(
            ErrorCode.BAD_REQUEST,
            f"Cannot read the CURVE secret key file {path}: {exc}.",
            'Create one with: python -c "import zmq.auth; '
            "zmq.auth.create_certificates('.', 'server')\"",
        ) from None
    if not secret:
        raise NeuralStyleError(
            ErrorCode.BAD_REQUEST,
            f"{path} holds no secret key (pass the .key_secret file, not the .key file).",
        )
    return public, secret


# --------------------------------------------------------------------------- entry point


def serve(config: ServerConfig, engine_factory: Callable[[], Engine] | None = None) -> int:
    """Start the daemon in the foreground; returns the process exit status.

    2: refused configuration (non-loopback bind without CURVE); 1: could not start
    (weights missing, port in use); 0: clean shutdown (SIGTERM, SIGINT or ``shutdown``).
    """
    if not is_loopback_endpoint(config.endpoint) and config.curve_secret_key is None:
        print(
            f"neural-style serve: refusing to bind {config.endpoint}: it is not a loopback "
            "address, so anyone on the network could use this daemon.\n"
            "Bind tcp://127.0.0.1:PORT, or configure CURVE encryption with "
            "--curve-secret-key FILE.",
            file=sys.stderr,
        )
        return 2
    other = running_daemon_problem(config)
    if other:
        print(f"neural-style serve: {other}", file=sys.stderr)
        return 1
    _raise_fd_limit()
    if config.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"  # before TensorFlow is imported
    try:
        server = _start(config, engine_factory)
    except NeuralStyleError as exc:
        log.error("%s", exc)
        print(f"neural-style serve: {exc}", file=sys.stderr)
        return 1
    previous = {
        sig: signal.signal(sig, server._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        server.write_connection_file()
        return server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def running_daemon_problem(config: ServerConfig) -> str:
    """Why this daemon must not start: the connection file it would write names a daemon
    that still answers, or its ipc socket is already served. "" when free to start."""
    path = Path(config.connection_file or connection.path_for(config.endpoint))
    info = connection.read(path)
    if info is not None and info.pid != os.getpid() and not connection.endpoint_refuses(
        info.endpoint
    ):
        from neural_style.shared.client import Client

        with (
            contextlib.suppress(NeuralStyleError),
            Client(info.endpoint, key=info.key, timeout=1.5) as client,
        ):
            client.ping()
            return (
                f"another daemon (pid {info.pid}) answers at {info.endpoint} and owns the "
                f"connection file {path}; starting would take over that file and leave it "
                "impossible to stop. Stop it first (neural-style stop), or pick another "
                "--bind and --connection-file."
            )
    transport, _, address = config.endpoint.partition("://")
    if (
        transport == "ipc"
        and os.path.exists(address)
        and not connection.endpoint_refuses(config.endpoint)
    ):
        return (
            f"another process already serves the ipc socket {address} (libzmq would "
            "silently take it over). Stop that daemon first (neural-style stop)."
        )
    return ""


def _raise_fd_limit() -> None:
    """Raise the soft open-files limit to the hard one (each connection costs a descriptor),
    so that the connection cap, not the fd limit, is what a flood of connections meets."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 65536
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, 1 << 20), hard))
    except (ImportError, ValueError, OSError):
        pass


def _start(config: ServerConfig, engine_factory: Callable[[], Engine] | None) -> Server:
    """Load the model, then bind: the port is only taken once the daemon can serve."""
    t0 = time.monotonic()
    if engine_factory is None:
        from neural_style.daemon.engine import StyleTransfer

        def engine_factory() -> Engine:
            return StyleTransfer.load(config.weights)

    engine = engine_factory()
    if config.device == "gpu" and "GPU" not in engine.device.upper():
        raise NeuralStyleError(
            ErrorCode.INTERNAL,
            f"--device gpu was asked for, but TensorFlow sees no GPU (it would use "
            f"{engine.device}).",
            "Install the GPU build (pip install 'neural-style-gimp[gpu]') or use --device auto.",
        )
    log.info("model loaded in %.1f s on %s", time.monotonic() - t0, engine.device)
    return Server(config, engine)
