"""The daemon's socket loop: a ZeroMQ ROUTER in front of an executor that runs the jobs.

Why this shape: TensorFlow calls take seconds, but the daemon must keep answering pings,
status requests, cancels and heartbeats meanwhile. So the loop (main thread) only
decodes, validates, queues and forwards (:mod:`.handlers`, :mod:`.jobs`); an
:class:`~.executor.Executor` (by default the supervised worker process of
:mod:`.supervisor`) runs them, up to its ``capacity`` at once. Its events arrive on a
``queue.Queue`` plus an inproc PUSH/PULL socket that wakes the loop's ``zmq.Poller``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import threading
import time
from pathlib import Path

import zmq

from neural_style.daemon.service import curve_keys
from neural_style.daemon.service.config import ServerConfig
from neural_style.daemon.service.executor import Executor, ThreadExecutor
from neural_style.daemon.service.gatekeeper import ZAP_DOMAIN, Gatekeeper
from neural_style.daemon.service.handlers import Handlers
from neural_style.daemon.service.jobs import SHUTDOWN_GRACE_S, JobQueue
from neural_style.daemon.service.outbox import Outbox, RateLimit
from neural_style.daemon.service.speed import StepTimes
from neural_style.daemon.service.worker import TERMINAL_EVENTS, Engine, job_error
from neural_style.shared import __version__, connection, protocol
from neural_style.shared.errors import UNSIGNED_ERRORS, ErrorCode, NeuralStyleError
from neural_style.shared.protocol import ProtocolError

log = logging.getLogger("neural_style.daemon.service")

#: Replies to malformed or unauthenticated frames, at most this many per second (the rest
#: are dropped) so that a flood cannot make the daemon spend its time answering garbage.
ERROR_REPLIES_PER_S = 50
#: A peer that has not finished the ZMTP handshake by then is dropped (libzmq: 30 s).
HANDSHAKE_IVL_MS = 5000
COUNTERS = ("done", "cancelled", "failed", "busy", "rejected", "style_cache_hits",
            "zap_denied", "replayed", "timed_out")  # fmt: skip


class Server(Handlers):
    """The socket loop. ``run()`` returns when a shutdown was requested and done."""

    def __init__(self, config: ServerConfig, engine: Engine | Executor) -> None:
        """``engine``: an :class:`Executor`, or an engine to run in a thread of this
        process (:class:`ThreadExecutor`: the tests' stand-in engines)."""
        self.config = config
        self.executor: Executor = engine if isinstance(engine, Executor) else ThreadExecutor(engine)
        self.key = config.key or connection.new_key()
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.step_times = StepTimes()
        self._error_replies = RateLimit(ERROR_REPLIES_PER_S)
        self.context = zmq.Context()
        self.gate = Gatekeeper(self.context, config, self.counters, self._error_replies)
        self.router = self._make_router()
        self.monitor = self.gate.watch(self.router)
        self.endpoint = self._bind()
        wake_endpoint = f"inproc://neural-style-wake-{id(self)}"
        self.wake = self.context.socket(zmq.PULL)
        self.wake.bind(wake_endpoint)
        self._wake_endpoint = wake_endpoint
        self.outbox = Outbox(self.router, self.key)
        self._stop = threading.Event()
        self._stop_deadline: float | None = None
        self.queue = JobQueue(
            config,
            self.outbox,
            self.executor.submit,
            self.counters,
            stopping=self._stop.is_set,
            capacity=lambda: self.executor.capacity,
            unavailable=self.executor.unavailable,
        )
        self.connection_path: Path | None = None
        self.started = time.time()
        self._replays = protocol.ReplayWindow()

    # -- setup
    def _make_router(self) -> zmq.Socket:
        router = self.context.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 1000)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # unknown peer -> error, not silence
        router.setsockopt(zmq.MAXMSGSIZE, protocol.max_frame_bytes(self.config.max_pixels))
        router.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_IVL_MS)
        router.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
        self.curve_public = ""
        self.curve_client: tuple[str, str] = ("", "")
        if not self.config.insecure_null:
            keys = curve_keys.daemon_keys(self.config.state_dir, self.config.curve_secret_key)
            router.curve_server = True
            router.curve_publickey = keys.server_public
            router.curve_secretkey = keys.server_secret
            self.curve_public = keys.server_public.decode("ascii")
            self.curve_client = (keys.client_public.decode(), keys.client_secret.decode())
            self.gate.local_keys = {keys.client_public}
        return router

    def _bind(self) -> str:
        try:
            self.router.bind(self.config.endpoint)
        except zmq.ZMQError as exc:
            self.gate.close()
            self.context.destroy(linger=0)
            raise NeuralStyleError(
                ErrorCode.INTERNAL,
                f"Cannot listen on {self.config.endpoint}: {exc}.",
                "Is another daemon running there? `neural-style status` tells; else pick "
                "another --bind address.",
            ) from None
        return str(self.router.getsockopt_string(zmq.LAST_ENDPOINT))

    def write_connection_file(self) -> Path:
        path = self.config.connection_file or connection.path_for(self.endpoint)
        info = connection.make_info(
            self.endpoint, self.key, __version__, self.curve_public, self.curve_client
        )
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
        self.executor.start(self.context, self._wake_endpoint)
        poller = zmq.Poller()
        for sock in (self.router, self.wake, self.monitor, self.gate.zap):
            poller.register(sock, zmq.POLLIN)
        log.info("serving on %s (device %s)", self.endpoint, self.executor.device)
        try:
            while not self._finished():
                ready = dict(poller.poll(timeout=50))
                if self.monitor in ready:
                    self.gate.drain_monitor()
                if self.gate.zap in ready:
                    self.gate.drain_zap()
                if self.wake in ready:
                    self._drain_wake()
                if self.router in ready:
                    self._drain_router()
                self._drain_events()
                now = time.monotonic()
                self.outbox.retry(now)
                self.queue.tick(now)
                self.executor.tick(now)
        finally:
            self._close()
        return 0

    def _finished(self) -> bool:
        if not self._stop.is_set():
            return False
        if self._stop_deadline is None:
            log.info("shutting down: cancelling %d job(s)", len(self.queue.jobs))
            self._stop_deadline = time.monotonic() + SHUTDOWN_GRACE_S
            self.queue.stop_all()
        idle = not self.queue.active and not self.outbox.pending
        return idle or time.monotonic() > self._stop_deadline

    def _close(self) -> None:
        connection.remove(self.connection_path, os.getpid())
        stopped = self.executor.close(timeout=2.0)
        self.gate.close(self.router)
        self.router.close(linger=500)
        self.wake.close(linger=0)
        if stopped:  # else a worker's wake socket is still open: term() would hang
            self.context.term()
        log.info("stopped")

    def _drain_wake(self) -> None:
        with contextlib.suppress(zmq.Again):
            for _ in range(10_000):
                self.wake.recv(zmq.NOBLOCK)

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
            if exc.code is ErrorCode.VERSION_MISMATCH:
                exc, frame0 = version_mismatch(frames[1].bytes if len(frames) > 1 else b"")
                self._reply_protocol_error(ident, exc, frame0)
                return
            self._reply_protocol_error(ident, exc)
            return
        try:
            self._replays.check(msg)
        except ProtocolError as exc:
            self.counters["replayed"] += 1
            self._reply_protocol_error(ident, exc)
            return
        self.queue.last_seen[ident] = time.monotonic()
        address = {"req": msg.get("req"), "job": msg.get("job")}
        try:
            getattr(self, f"_on_{msg.type}")(ident, msg)
        except NeuralStyleError as exc:
            self.outbox.send_error(ident, exc, **address)
        except Exception as exc:  # a bug in a handler must not end the daemon
            self.outbox.send_error(ident, job_error(exc, self.executor.device), **address)

    def _reply_protocol_error(
        self, ident: bytes, exc: ProtocolError, frame0: bytes | None = None
    ) -> None:
        if not self._error_replies.allow():
            return
        log.debug("rejected a message: %s", exc.message)
        unsigned = exc.code in UNSIGNED_ERRORS
        msg = protocol.error_message(exc.code, exc.message, exc.hint, **exc.fields)
        key = None if unsigned else self.key
        self.outbox.send(ident, msg, droppable=True, key=key, frame0=frame0)

    def _drain_events(self) -> None:
        while True:
            try:
                kind, job, payload = self.executor.events.get_nowait()
            except queue.Empty:
                return
            if job.abandoned:
                if kind in TERMINAL_EVENTS:
                    log.info("job %s: the stuck worker finished it after all", job.job_id)
                    self.queue.wedged = ""
                continue
            getattr(self, f"_event_{kind.value}")(job, payload)


#: Frame 0 of the protocol versions this daemon can still answer in (``NS<n>``, n >= 1):
#: frames 0-2 of an unsigned error keep one layout in every version.
_VERSION_FRAME = re.compile(rb"NS([1-9][0-9]{0,3})")


def version_mismatch(peer_frame0: bytes) -> tuple[ProtocolError, bytes | None]:
    """The error for a peer speaking another protocol version, and the frame 0 to send it
    with: an older client gets the reply in its own version, so that it can decode it and
    show the daemon's words ("upgrade") rather than a version error about the reply."""
    match = _VERSION_FRAME.fullmatch(peer_frame0[:16])
    ours = protocol.PROTOCOL_VERSION
    if match is None:
        shown = peer_frame0[:16].decode("ascii", "replace")
        return ProtocolError(
            ErrorCode.VERSION_MISMATCH,
            f"The client's first frame ({shown!r}) names no protocol version; the daemon "
            f"speaks {protocol.VERSION.decode()} (neural-style {__version__}).",
            "Use a neural-style client (the CLI or the GIMP plug-in) of the daemon's version.",
        ), None
    theirs = int(match.group(1))
    older = theirs < ours
    side = "client (CLI or GIMP plug-in)" if older else "daemon"
    return ProtocolError(
        ErrorCode.VERSION_MISMATCH,
        f"This client speaks protocol {theirs}, the daemon protocol {ours} (neural-style "
        f"{__version__}): {'upgrade' if older else 'the client is newer; upgrade'} the {side}.",
        f"Upgrade it to neural-style {__version__} (pip install -U neural-style-gimp), then "
        "reinstall the plug-in (neural-style install-plugin) and restart GIMP.",
    ), (peer_frame0 if older else None)
