"""The socket under a client: one DEALER socket to a daemon, the key and CURVE set-up,
sending, receiving, and routing replies and job messages to their :class:`~.client.Job`.

Standard library + pyzmq only (copied into the GIMP plug-in folder).
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import time
from typing import TYPE_CHECKING

import zmq

from . import connection, protocol
from .client_errors import DaemonUnavailable, InternalError, Unauthenticated, error_for, error_from
from .defaults import START_COMMAND
from .errors import ErrorCode, NeuralStyleError
from .keys import ENV_CURVE_SERVER_KEY, client_curve_keys, curve_server_key
from .protocol import Message, ProtocolError

if TYPE_CHECKING:
    from .client import Job

log = logging.getLogger(__name__)

#: Longest a send may wait for the connection to come up before the daemon counts as absent.
CONNECT_TIMEOUT_S = 2.0


class Channel:
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
        server_key = curve_server_key(info)
        self.curve = bool(server_key)
        if server_key:
            public, secret = client_curve_keys(info)
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
            raise error_from(reply)
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
            self._orphan = error_from(msg)  # e.g. unauthenticated, addressed to nobody

    def _raise_orphan(self) -> None:
        if self._orphan is not None:
            exc, self._orphan = self._orphan, None
            raise exc

    def _forget(self, job: Job) -> None:
        self._jobs.pop(job.id, None)
