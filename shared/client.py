"""A small client for the daemon, used by the GIMP plug-in and the CLI.

Standard library + pyzmq + msgpack only (copied into the plug-in folder). One
:class:`Client` holds one DEALER socket; a job submitted on it is a :class:`Job` whose
``poll()`` is meant to be called from a GUI timer (every ~50 ms): it never blocks longer
than asked, sends the heartbeats that keep the job alive, and turns the daemon's messages
into events. :meth:`Client.stylize` wraps that in a blocking call for scripts.

Not thread-safe: use one Client per thread. Beside it: the socket under it (channel.py),
its events (events.py), one exception per error code (client_errors.py), its CURVE keys
(keys.py); the events and exceptions are importable from here too.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from . import __version__, limits, protocol
from .channel import Channel
from .client_errors import (
    BadRequest,
    Busy,
    CancelledError,
    DaemonDied,
    DaemonUnavailable,
    InternalError,
    OutOfMemory,
    TimeLimit,
    Timeout,
    TooLarge,
    Unauthenticated,
    VersionMismatch,
    WeightsMissing,
    WorkerCrashed,
    error_for,
    error_from,
)
from .defaults import PREVIEW_SIDE, START_COMMAND
from .errors import NeuralStyleError
from .events import Accepted, Cancelled, Done, Event, Preview, Progress
from .protocol import ImageBuf, Message, ProtocolError
from .records import EventKind, JobStats, Step

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


class Client(Channel):
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
        on_progress: Callable[[Progress], object] | None = None,
        on_preview: Callable[[Preview], object] | None = None,
        **options: Any,
    ) -> Done:
        """Run a job to the end: :meth:`submit` (``options``: its ``mask``, ``init``,
        ``preview_every``, ``preview_max_side``), then :meth:`Job.wait`. A callback
        returning ``"stop"`` cancels the job.

        Raises the error's exception, :class:`CancelledError` when cancelled, and
        :class:`DaemonDied` when the daemon goes silent. Ctrl-C cancels the job first.
        """
        job = self.submit(content, styles, params, **options)
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
            raise error_from(msg)
        if msg.type == "accepted" or (msg.type == "heartbeat" and "position" in f):
            return self._position_event(f.get("position", 0))
        if msg.type == "progress":
            return Progress.from_message(f)
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


def _client_name() -> str:
    return f"neural-style-client/{__version__}"


def max_pixels() -> int:
    """The pixel limit this client checks before sending (the daemon may allow fewer)."""
    return limits.MAX_IMAGE_PIXELS
