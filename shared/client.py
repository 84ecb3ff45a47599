"""A small client for the daemon, used by the GIMP plug-in and the CLI.

Standard library + pyzmq + msgpack only (copied into the plug-in folder). One
:class:`Client` holds one DEALER socket; a job submitted on it is a :class:`Job` whose
``poll()`` is meant to be called from a GUI timer (every ~50 ms): it never blocks longer
than asked, sends the heartbeats that keep the job alive, and turns the daemon's messages
into events. :meth:`Client.stylize` wraps that in a blocking call for scripts.

Not thread-safe: use one Client per thread.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import zmq

from . import __version__, connection, limits, protocol
from .defaults import PREVIEW_SIDE, START_COMMAND
from .errors import ErrorCode, NeuralStyleError
from .files import write_atomic
from .protocol import ImageBuf, Message, ProtocolError
from .records import EventKind, JobStats, Step

log = logging.getLogger(__name__)

__all__ = [
    "Accepted",
    "BadRequest",
    "Busy",
    "Cancelled",
    "CancelledError",
    "Client",
    "DaemonDied",
    "DaemonUnavailable",
    "Done",
    "Event",
    "EventKind",
    "ImageBuf",
    "InternalError",
    "Job",
    "JobStats",
    "OutOfMemory",
    "Preview",
    "Progress",
    "Step",
    "TimeLimit",
    "Timeout",
    "TooLarge",
    "Unauthenticated",
    "VersionMismatch",
    "WeightsMissing",
    "WorkerCrashed",
    "error_for",
]

#: Environment variable: Z85 CURVE public key of a remote daemon (or a file holding it).
ENV_CURVE_SERVER_KEY = "NEURAL_STYLE_CURVE_SERVER_KEY"
#: Environment variable: this client's stable CURVE secret-key file (created 0600 if absent).
ENV_CLIENT_KEY = "NEURAL_STYLE_CLIENT_KEY"
#: Longest a send may wait for the connection to come up before the daemon counts as absent.
CONNECT_TIMEOUT_S = 2.0


# --------------------------------------------------------------------------- exceptions


class _CodedError(NeuralStyleError):
    """Base of the per-code exceptions: the class fixes the code."""

    CODE = ErrorCode.INTERNAL

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(self.CODE, message, hint)


class BadRequest(_CodedError):
    CODE = ErrorCode.BAD_REQUEST


class TooLarge(_CodedError):
    CODE = ErrorCode.TOO_LARGE


class Busy(_CodedError):
    CODE = ErrorCode.BUSY


class VersionMismatch(_CodedError):
    CODE = ErrorCode.VERSION_MISMATCH


class WeightsMissing(_CodedError):
    CODE = ErrorCode.WEIGHTS_MISSING


class OutOfMemory(_CodedError):
    CODE = ErrorCode.OUT_OF_MEMORY


class CancelledError(_CodedError):
    CODE = ErrorCode.CANCELLED
    #: The :class:`Cancelled` event, when :meth:`Job.wait` raised it.
    event: Cancelled | None = None


class InternalError(_CodedError):
    CODE = ErrorCode.INTERNAL


class Unauthenticated(_CodedError):
    CODE = ErrorCode.UNAUTHENTICATED


class Timeout(_CodedError):
    CODE = ErrorCode.TIMEOUT


class WorkerCrashed(_CodedError):
    """The daemon's engine process died during the job (the daemon started a new one)."""

    CODE = ErrorCode.WORKER_CRASHED


class TimeLimit(_CodedError):
    """The job ran past the daemon's ``--job-time-limit``."""

    CODE = ErrorCode.TIME_LIMIT


class DaemonUnavailable(_CodedError):
    """No daemon answers; the hint is the command that starts one."""

    CODE = ErrorCode.DAEMON_UNAVAILABLE

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message, hint or f"Start it with: {START_COMMAND}")


class DaemonDied(DaemonUnavailable):
    """The daemon stopped responding while a job was open."""


_BY_CODE: dict[ErrorCode, type[_CodedError]] = {
    cls.CODE: cls
    for cls in (
        BadRequest,
        TooLarge,
        Busy,
        VersionMismatch,
        WeightsMissing,
        OutOfMemory,
        CancelledError,
        InternalError,
        Unauthenticated,
        Timeout,
        WorkerCrashed,
        TimeLimit,
        DaemonUnavailable,
    )
}


def error_for(code: ErrorCode | str, message: str, hint: str = "") -> NeuralStyleError:
    """The exception for an error code (``InternalError`` for codes this end doesn't know)."""
    try:
        cls = _BY_CODE[ErrorCode(code)]
    except (ValueError, KeyError):
        cls = InternalError
    return cls(message, hint)


# --------------------------------------------------------------------------- events


@dataclass
class Accepted:
    """The daemon queued the job; ``position`` jobs run before it (0 = running now).

    Repeats with a smaller position while the job waits.
    """

    KIND: ClassVar[EventKind] = EventKind.ACCEPTED
    position: int


@dataclass
class Progress:
    """A :class:`Step`'s fields (same names) plus the daemon's estimate of the time left."""

    KIND: ClassVar[EventKind] = EventKind.PROGRESS
    step: int
    total: int
    loss: float
    content: float
    style: float
    tv: float
    elapsed_s: float
    eta_s: float
    scale: int = 0

    def to_step(self, preview: Any = None) -> Step:
        """The step record this progress message carried."""
        return Step.from_dict(asdict(self), preview)


@dataclass
class Preview:
    """A downscaled RGB u8 snapshot of the image being optimised."""

    KIND: ClassVar[EventKind] = EventKind.PREVIEW
    image: ImageBuf
    step: int


@dataclass
class Done:
    """The result: same size, channels and dtype as the content (unless keep_size=False)."""

    KIND: ClassVar[EventKind] = EventKind.DONE
    image: ImageBuf
    #: ``result.stats`` as sent (a plain map); :attr:`job_stats` is the typed record.
    stats: dict[str, Any]
    #: Every step's record.
    iterates: list[Step] = field(default_factory=list)

    @property
    def job_stats(self) -> JobStats:
        return JobStats.from_dict(self.stats)


@dataclass
class Cancelled:
    """The job ended early: ``reason`` is client, client_gone or shutdown."""

    KIND: ClassVar[EventKind] = EventKind.CANCELLED
    reason: str = "client"
    #: Last step the engine ran, and the step it was at when the cancel arrived.
    step: int = 0
    requested_at_step: int = 0


Event = Accepted | Progress | Preview | Done | Cancelled


# --------------------------------------------------------------------------- client


class _Connection:
    """The socket under a :class:`Client`: discovery, the key, sending, receiving and
    routing replies and job messages (what :class:`Job` uses)."""

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        key: bytes | None = None,
        timeout: float = 10.0,
        heartbeat_interval: float = protocol.DEFAULT_HEARTBEAT_S,
        info: connection.ConnectionInfo | None = None,
    ) -> None:
        #: Why connection files were ignored (owner, mode), for the error messages.
        self.discovery_problems: list[str] = []
        if info is None:  # else the caller read the daemon's file itself
            info = connection.discover(endpoint, self.discovery_problems)
        self.endpoint = endpoint or (info.endpoint if info else protocol.DEFAULT_ENDPOINT)
        self.key = key if key else (info.key if info else None)
        self.connection_info = info
        self.timeout = float(timeout)
        self.heartbeat_interval = max(0.05, float(heartbeat_interval))
        self._jobs: dict[str, Job] = {}
        self._replies: dict[int, Message] = {}
        self._orphan: NeuralStyleError | None = None
        self._next_req = itertools.count(1)
        self._probed = False
        self.last_heard = time.monotonic()
        self._socket = self._make_socket(info)

    def _make_socket(self, info: connection.ConnectionInfo | None) -> zmq.Socket:
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        # Not IMMEDIATE: with it, libzmq drops messages already received but not yet read
        # when the daemon disconnects (e.g. the ``cancelled`` sent just before it exits).
        # An absent daemon is detected by probing the port once instead (see _probe).
        sock.setsockopt(zmq.SNDTIMEO, int(min(self.timeout, CONNECT_TIMEOUT_S) * 1000))
        sock.setsockopt(zmq.MAXMSGSIZE, protocol.max_frame_bytes())
        server_key = _curve_server_key(info)
        self.curve = bool(server_key)
        if server_key:
            public, secret = _client_curve_keys(info)
            sock.curve_serverkey = server_key.encode("ascii")
            sock.curve_publickey = public
            sock.curve_secretkey = secret
        sock.connect(self.endpoint)
        return sock

    def _request(self, msg: Message, expect: str, timeout: float | None = None) -> Message:
        """Send a request and wait for its reply, storing other jobs' messages meanwhile."""
        self._raise_orphan()
        req = next(self._next_req)
        msg.fields["req"] = req
        self._send(msg)
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while req not in self._replies:
            self._raise_orphan()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DaemonUnavailable(
                    f"No answer from the neural-style daemon at {self.endpoint} "
                    f"within {limit:g} s.",
                    self._silence_hint(),
                )
            self._receive(int(remaining * 1000) + 1)
        reply = self._replies.pop(req)
        if reply.type == "error":
            raise _error_from(reply)
        if reply.type != expect:
            raise InternalError(f"The daemon answered {msg.type} with {reply.type}.")
        return reply

    def _silence_hint(self) -> str:
        """What to check when something listens but never answers."""
        if self.curve:
            return (
                "The daemon uses CURVE: check that this client's key is authorised there "
                f"(on this machine: neural-style client-key; on the daemon's: neural-style "
                f"authorize-key KEY), then retry. Else restart it: {START_COMMAND}"
            )
        return (
            "Something listens there but does not answer. If the daemon uses CURVE (status "
            "shows '(CURVE)'), give this client its public key: the connection file "
            f"(set {connection.ENV_FILE}) or {ENV_CURVE_SERVER_KEY}. Else restart it with: "
            f"{START_COMMAND}"
        )

    def _require_key(self) -> None:
        """Refuse to send anything without the daemon's key (no fail-open)."""
        if self.key:
            return
        where = os.environ.get(connection.ENV_FILE) or str(connection.runtime_dir())
        ignored = "".join(f"\n  - {p}" for p in self.discovery_problems)
        raise Unauthenticated(
            f"No trusted connection file for the neural-style daemon at {self.endpoint} was "
            f"found (looked in {where}), so this client has no key and will not send "
            "anything: an unkeyed client could be talking to any process on that port."
            + (f"\nIgnored:{ignored}" if ignored else ""),
            f"Point the client at the daemon's connection file: set {connection.ENV_FILE}="
            "/path/to/daemon.json (`neural-style status` on the daemon's side prints it), "
            f"or start a daemon with: {START_COMMAND}",
        )

    def _send(self, msg: Message, *, droppable: bool = False) -> None:
        if self._socket.closed:
            raise DaemonUnavailable("The client is closed.")
        if not self._probed:
            self._probe()
        self._require_key()
        frames = protocol.encode(msg, self.key)
        try:
            self._socket.send_multipart(frames, flags=zmq.NOBLOCK if droppable else 0, copy=False)
        except zmq.Again:
            if droppable:
                return
            raise DaemonUnavailable(
                f"Cannot reach the neural-style daemon at {self.endpoint}."
            ) from None

    def _probe(self) -> None:
        """Fail fast when nothing listens on a tcp/ipc endpoint (ZeroMQ would just wait)."""
        transport, _, address = self.endpoint.partition("://")
        try:
            if transport == "tcp":
                host, _, port = address.rpartition(":")
                timeout = min(self.timeout, CONNECT_TIMEOUT_S)
                socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
            elif transport == "ipc" and hasattr(socket, "AF_UNIX"):
                with socket.socket(socket.AF_UNIX) as probe:
                    probe.settimeout(min(self.timeout, CONNECT_TIMEOUT_S))
                    probe.connect(address)
        except (OSError, ValueError) as exc:
            raise DaemonUnavailable(
                f"No neural-style daemon listens at {self.endpoint} "
                f"({getattr(exc, 'strerror', None) or exc})."
            ) from None
        self._probed = True

    def _receive(self, timeout_ms: int) -> None:
        """Wait up to ``timeout_ms`` for messages, then drain what is there and route it."""
        if self._socket.closed:
            return
        if not self._socket.poll(max(0, timeout_ms), zmq.POLLIN):
            return
        for _ in range(10_000):  # drain, but never loop forever on a chatty socket
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._route([f.buffer for f in frames])

    def _route(self, frames: list[memoryview]) -> None:
        if not self.key:
            return  # never accept anything unsigned (we never sent without a key either)
        try:
            msg = protocol.decode(
                frames,
                self.key,
                allowed_types=protocol.SERVER_TYPES,
                accept_unsigned_errors=True,
            )
        except ProtocolError as exc:
            if exc.code is ErrorCode.VERSION_MISMATCH:  # a daemon of another version
                self._orphan = error_for(exc.code, exc.message, exc.hint)
            log.warning("dropped a malformed message from the daemon: %s", exc.message)
            return
        self.last_heard = time.monotonic()
        job = self._jobs.get(msg.get("job", ""))
        if job is not None:
            job._inbox.append(msg)
        elif isinstance(msg.get("req"), int):
            self._replies[msg.fields["req"]] = msg
        elif msg.type == "error":
            self._orphan = _error_from(msg)  # e.g. unauthenticated, addressed to nobody

    def _raise_orphan(self) -> None:
        if self._orphan is not None:
            exc, self._orphan = self._orphan, None
            raise exc

    def _forget(self, job: Job) -> None:
        self._jobs.pop(job.id, None)


class Client(_Connection):
    """A connection to one daemon.

    ``endpoint=None`` finds a running daemon through its connection file (else the default
    endpoint); with an explicit endpoint and no ``key`` the key is looked up in the
    connection file whose endpoint matches. The connection file is read even when ``key``
    is given, for the daemon's CURVE public key.

    Never fail-open: without a key (no trusted connection file found) nothing is sent; the
    first request raises :class:`Unauthenticated` saying where the file was looked for.
    """

    # -- context manager / lifetime
    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket; open jobs are abandoned (the daemon cancels them)."""
        if not self._socket.closed:
            self._socket.close(linger=0)

    # -- simple requests
    def hello(self) -> dict[str, Any]:
        """Handshake: protocol and server versions, device, model, limits, features.

        The daemon's measured step times (``step_s_per_mpx``, ``step_s_by_side``, once it
        has finished a job) travel inside ``limits``, where older clients tolerate them;
        they are also returned at the top level, where callers (the plug-in's estimate)
        read them.
        """
        reply = self._request(
            Message("hello", {"protocol": protocol.PROTOCOL_VERSION, "client": _client_name()}),
            "welcome",
        )
        if reply.fields["protocol"] != protocol.PROTOCOL_VERSION:
            raise VersionMismatch(
                f"The daemon speaks protocol {reply.fields['protocol']}, this client "
                f"{protocol.PROTOCOL_VERSION}.",
                "Install the same neural-style version for the daemon and the plug-in.",
            )
        return {**reply.fields, **protocol.step_times(reply.fields)}

    def ping(self) -> float:
        """Round-trip time in seconds."""
        start = time.monotonic()
        self._request(Message("ping", {"t": time.time()}), "pong")
        return time.monotonic() - start

    def status(self) -> dict[str, Any]:
        """The daemon's state: versions, device, weights, queue, running job, counters."""
        return dict(self._request(Message("status"), "status_reply").fields["info"])

    def shutdown(self) -> None:
        """Ask the daemon to cancel its jobs and exit (returns once it acknowledged)."""
        self._request(Message("shutdown"), "shutdown_ack")

    # -- jobs
    def submit(
        self,
        content: ImageBuf,
        styles: list[ImageBuf],
        params: dict[str, Any],
        *,
        mask: ImageBuf | None = None,
        init: ImageBuf | None = None,
        preview_every: int = 0,
        preview_max_side: int = PREVIEW_SIDE,
        previous: tuple[ImageBuf, ImageBuf] | None = None,
        temporal_weight: float | None = None,
    ) -> Job:
        """Send a job and return at once; follow it with :meth:`Job.poll`.

        ``previous``: frames mode, the previous frame's (content, stylized result): the
        daemon starts from that result warped to this frame by optical flow and adds the
        temporal loss (``temporal_weight``; the daemon's default when None). Daemons that
        list the ``frames`` feature take it."""
        job_id = uuid.uuid4().hex[:16]
        msg = Message(
            "submit",
            {
                "job": job_id,
                "params": dict(params),
                "content": content,
                "styles": list(styles),
                "mask": mask,
                "init": init,
                "preview_every": int(preview_every),
                "preview_max_side": int(preview_max_side),
                "heartbeat_s": self.heartbeat_interval,
            },
        )
        if previous is not None:
            msg.fields["previous_content"], msg.fields["previous_result"] = previous
        if temporal_weight is not None:
            msg.fields["temporal_weight"] = float(temporal_weight)
        try:
            protocol.validate(msg)
        except ProtocolError as exc:
            raise error_for(exc.code, exc.message, exc.hint) from None
        self._raise_orphan()
        job = Job(self, job_id)
        self._jobs[job_id] = job
        self._send(msg)
        self.last_heard = time.monotonic()  # the silence clock starts now
        return job

    def stylize(
        self,
        content: ImageBuf,
        styles: list[ImageBuf],
        params: dict[str, Any],
        *,
        mask: ImageBuf | None = None,
        init: ImageBuf | None = None,
        on_progress: Callable[[Progress], object] | None = None,
        on_preview: Callable[[Preview], object] | None = None,
        preview_every: int = 0,
        preview_max_side: int = PREVIEW_SIDE,
        previous: tuple[ImageBuf, ImageBuf] | None = None,
        temporal_weight: float | None = None,
    ) -> Done:
        """Run a job to the end. A callback returning ``"stop"`` cancels the job.

        Raises the error's exception, :class:`CancelledError` when cancelled, and
        :class:`DaemonDied` when the daemon goes silent. Ctrl-C cancels the job first.
        """
        job = self.submit(
            content,
            styles,
            params,
            mask=mask,
            init=init,
            preview_every=preview_every,
            preview_max_side=preview_max_side,
            previous=previous,
            temporal_weight=temporal_weight,
        )
        return job.wait(lambda event: _notify(event, on_progress, on_preview))


class Job:
    """One submitted job. Call :meth:`poll` regularly (at least once per heartbeat)."""

    def __init__(self, client: Client, job_id: str) -> None:
        self._client = client
        self.id = job_id
        self.done = False
        self.result: Done | None = None
        self._inbox: deque[Message] = deque()
        self._last_heartbeat = time.monotonic()
        self._position: int | None = None
        self._cancel_sent = False

    def poll(self, timeout_ms: int = 0) -> list[Event]:
        """Events that arrived since the last call, waiting up to ``timeout_ms`` for one.

        Raises the exception for an error reply, and :class:`DaemonDied` when the daemon
        has been silent for more than a few heartbeat intervals.
        """
        if self.done and not self._inbox:
            return []
        client = self._client
        self._maybe_heartbeat()
        if not self._inbox:
            client._receive(timeout_ms)
            if not self._inbox and client._orphan is not None:
                self._finish()
                client._raise_orphan()
        events: list[Event] = []
        while self._inbox:
            event = self._to_event(self._inbox.popleft())
            if event is not None:
                events.append(event)
        if not self.done:
            self._check_alive()
        return events

    def wait(
        self,
        on_event: Callable[[Event], object] | None = None,
        *,
        poll_ms: int | None = None,
    ) -> Done:
        """Poll until the job ends and return its :class:`Done`: the one such loop.

        ``on_event`` sees every other event (Accepted, Progress, Preview); returning
        ``"stop"`` cancels the job. Raises :class:`CancelledError` (with ``.event``, the
        :class:`Cancelled`) when the job was cancelled, the error's exception for an error
        reply, and :class:`DaemonDied` when the daemon goes silent. Ctrl-C cancels the job
        on the daemon first.
        """
        timeout_ms = int(self._client.heartbeat_interval * 500) if poll_ms is None else poll_ms
        try:
            while True:
                for event in self.poll(timeout_ms=timeout_ms):
                    if isinstance(event, Done):
                        return event
                    if isinstance(event, Cancelled):
                        exc = CancelledError(f"The job was cancelled ({event.reason}).")
                        exc.event = event
                        raise exc
                    if on_event is not None and on_event(event) == "stop":
                        self.cancel()
        except KeyboardInterrupt:
            self.cancel_and_wait(timeout=5.0)
            raise

    def cancel(self) -> None:
        """Ask the daemon to stop; a :class:`Cancelled` (or ``Done``) event follows."""
        if self.done or self._cancel_sent:
            return
        self._cancel_sent = True
        self._client._send(Message("cancel", {"job": self.id}), droppable=True)

    def cancel_and_wait(self, timeout: float = 5.0) -> None:
        """Cancel and wait (bounded) until the daemon confirms; errors are swallowed."""
        self.cancel()
        deadline = time.monotonic() + timeout
        while not self.done and time.monotonic() < deadline:
            try:
                self.poll(timeout_ms=100)
            except NeuralStyleError:
                return

    def _maybe_heartbeat(self) -> None:
        now = time.monotonic()
        if now - self._last_heartbeat >= self._client.heartbeat_interval:
            self._last_heartbeat = now
            self._client._send(Message("heartbeat", {"job": self.id}), droppable=True)

    def _check_alive(self) -> None:
        interval = self._client.heartbeat_interval
        silent = time.monotonic() - self._client.last_heard
        if silent > protocol.MISSED_HEARTBEATS * interval + 0.5:
            self._finish()
            raise DaemonDied(
                f"The neural-style daemon at {self._client.endpoint} stopped responding "
                f"mid-job (silent for {silent:.1f} s).",
                f"Check its log, then restart it with: {START_COMMAND}",
            )

    def _to_event(self, msg: Message) -> Event | None:
        f = msg.fields
        if msg.type == "error":
            self._finish()
            raise _error_from(msg)
        if msg.type == "accepted" or (msg.type == "heartbeat" and "position" in f):
            return self._position_event(f.get("position", 0))
        if msg.type == "progress":
            return Progress(**{k: v for k, v in f.items() if k in _PROGRESS_FIELDS})
        if msg.type == "preview":
            return Preview(f["image"], f["step"])
        if msg.type == "result":
            steps = [Step.from_dict(row) for row in protocol.unpack_iterates(f["iterates"])]
            self.result = Done(f["image"], f["stats"], steps)
            self._finish()
            return self.result
        if msg.type == "cancelled":
            self._finish()
            return Cancelled(f["reason"], f.get("step", 0), f.get("requested_at_step", 0))
        return None  # heartbeat

    def _position_event(self, position: int) -> Accepted | None:
        if position == self._position:
            return None
        self._position = position
        return Accepted(position)

    def _finish(self) -> None:
        self.done = True
        self._client._forget(self)


_PROGRESS_FIELDS = frozenset(Progress.__dataclass_fields__) - {"KIND"}


def _notify(
    event: Event,
    on_progress: Callable[[Progress], object] | None,
    on_preview: Callable[[Preview], object] | None,
) -> object:
    if isinstance(event, Progress) and on_progress is not None:
        return on_progress(event)
    if isinstance(event, Preview) and on_preview is not None:
        return on_preview(event)
    return None


def _error_from(msg: Message) -> NeuralStyleError:
    return error_for(msg.fields["code"], msg.fields["message"], msg.get("hint", ""))


def _client_name() -> str:
    return f"neural-style-client/{__version__}"


def _curve_server_key(info: connection.ConnectionInfo | None) -> str:
    """Z85 public key of a CURVE daemon: environment (key or file) or connection file."""
    value = os.environ.get(ENV_CURVE_SERVER_KEY, "").strip()
    if value and os.path.isfile(value):
        value = _read_public_key(value)
    if not value and info is not None:
        value = info.curve_server_key
    return value


def _client_curve_keys(info: connection.ConnectionInfo | None) -> tuple[bytes, bytes]:
    """This client's CURVE pair: ``$NEURAL_STYLE_CLIENT_KEY`` when set, else the pair in
    the daemon's connection file (what a sandboxed plug-in has), else the user's own key."""
    from_file = info.client_curve_keys() if info is not None else None
    if from_file is not None and not os.environ.get(ENV_CLIENT_KEY):
        return from_file
    return client_keypair()


def default_client_key_path() -> Path:
    """Where this user's stable CURVE client key lives (``$NEURAL_STYLE_CLIENT_KEY`` or
    ``$XDG_CONFIG_HOME/neural-style/client.key_secret``)."""
    explicit = os.environ.get(ENV_CLIENT_KEY)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "neural-style" / "client.key_secret"


def client_keypair(path: Path | None = None, *, create: bool = True) -> tuple[bytes, bytes]:
    """(public, secret) Z85 CURVE keys of this client: stable, so a daemon can allow-list it.

    Created once (0600 secret file, 0644 ``.key`` public file beside it, in the zmq.auth
    certificate format); a folder of such ``.key`` files is what ``serve
    --authorized-keys`` reads.
    """
    path = Path(path) if path is not None else default_client_key_path()
    if path.exists():
        return _load_keypair(path)
    if not create:
        raise FileNotFoundError(path)
    public, secret = zmq.curve_keypair()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, _cert_text(public, secret), mode=0o600)
    public_path = public_key_path(path)
    public_path.write_text(_cert_text(public, None), encoding="utf-8")
    return public, secret


def public_key_path(secret_path: Path) -> Path:
    """``client.key_secret`` -> ``client.key`` (zmq.auth's naming)."""
    name = secret_path.name
    stem = name[: -len("_secret")] if name.endswith("_secret") else name + ".pub"
    return secret_path.with_name(stem)


def _cert_text(public: bytes, secret: bytes | None) -> str:
    lines = [
        "#   neural-style CURVE client certificate (zmq.auth format)",
        "#   The secret key must stay private: anyone holding it is this client.",
        "metadata",
        "curve",
        f'    public-key = "{public.decode("ascii")}"',
    ]
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode("ascii")}"')
    return "\n".join(lines) + "\n"


def _load_keypair(path: Path) -> tuple[bytes, bytes]:
    import stat as _stat

    info = path.stat()
    if hasattr(os, "getuid") and (info.st_uid != os.getuid() or info.st_mode & 0o077):
        raise Unauthenticated(
            f"The CURVE client key {path} is readable by others or not yours (mode "
            f"{_stat.S_IMODE(info.st_mode):04o}); it is not used.",
            f"chmod 600 {path}, or remove it to make a new one (then authorise the new key).",
        )
    public = secret = b""
    for line in path.read_text(encoding="utf-8").splitlines():
        name, _, value = line.strip().partition("=")
        if name.strip() == "public-key":
            public = value.strip().strip('"').encode("ascii")
        elif name.strip() == "secret-key":
            secret = value.strip().strip('"').encode("ascii")
    if len(public) != 40 or len(secret) != 40:
        raise Unauthenticated(
            f"{path} is not a CURVE secret key file.", "Remove it to make a new one."
        )
    return public, secret


def _read_public_key(path: str) -> str:
    """The ``public-key = "..."`` line of a zmq certificate file, or the file's text."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    for line in text.splitlines():
        if line.strip().startswith("public-key"):
            return line.split("=", 1)[1].strip().strip('"')
    return text.strip()


def max_pixels() -> int:
    """The pixel limit this client checks before sending (the daemon may allow fewer)."""
    return limits.MAX_IMAGE_PIXELS
