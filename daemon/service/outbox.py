"""Sending from the ROUTER without ever blocking the loop.

An important message (a result, an error) that cannot be delivered now (the peer's queue
is full) waits in a backlog for a while; droppable ones (progress, heartbeats) are dropped.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq

from neural_style.shared import protocol
from neural_style.shared.errors import NeuralStyleError
from neural_style.shared.protocol import Message

#: How long an undeliverable important message is retried.
BACKLOG_S = 10.0


class RateLimit:
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


class Outbox:
    """Signs and sends messages to peers; ``on_sent(ident, job)`` hears of each one."""

    def __init__(self, router: zmq.Socket, key: bytes) -> None:
        self.router = router
        self.key = key
        self.on_sent: Callable[[bytes, str], None] | None = None
        self._backlog: deque[tuple[float, list[Any]]] = deque()

    @property
    def pending(self) -> bool:
        return bool(self._backlog)

    def reply(self, ident: bytes, request: Message, kind: str, fields: dict[str, Any]) -> None:
        """Answer ``request`` (echoing its ``req``)."""
        if "req" in request.fields:
            fields = {**fields, "req": request.fields["req"]}
        self.send(ident, Message(kind, fields))

    def send_error(self, ident: bytes, exc: NeuralStyleError, **address: Any) -> None:
        self.send(ident, protocol.error_message(exc.code, exc.message, exc.hint, **address))

    def send(
        self,
        ident: bytes,
        msg: Message,
        *,
        droppable: bool = False,
        key: bytes | None = b"",
        frame0: bytes | None = None,
    ) -> None:
        """Send without ever blocking; keep undeliverable important messages for a while.

        ``key=None`` sends unsigned (only for the errors a peer may receive unsigned);
        ``frame0`` replaces the version frame (an unsigned error to an older peer).
        """
        frames = [ident, *protocol.encode(msg, self.key if key == b"" else key)]
        if frame0 is not None and key is None:
            frames[1] = frame0
        if self.on_sent is not None:
            self.on_sent(ident, msg.get("job", ""))
        if not self._try_send(frames) and not droppable:
            self._backlog.append((time.monotonic() + BACKLOG_S, frames))

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

    def retry(self, now: float) -> None:
        for _ in range(len(self._backlog)):
            deadline, frames = self._backlog.popleft()
            if not self._try_send(frames) and now < deadline:
                self._backlog.append((deadline, frames))
