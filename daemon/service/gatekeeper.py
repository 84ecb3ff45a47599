"""Who may connect: the connection count (socket monitor) and the ZAP handler (RFC 27)
that refuses handshakes over the cap and CURVE keys not on the allow-list (the connection
file's client key, ``--authorized-keys`` and this user's own client key)."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import zmq
from zmq.utils import z85

from neural_style.daemon.service.config import ServerConfig
from neural_style.daemon.service.outbox import RateLimit
from neural_style.shared.errors import ErrorCode, NeuralStyleError

log = logging.getLogger("neural_style.daemon.service")

#: Where libzmq looks for the ZAP handler (RFC 27), and the domain the daemon asks it for.
ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_DOMAIN = b"neural-style"


class Gatekeeper:
    """Owns the ZAP socket and the router's monitor socket."""

    def __init__(
        self,
        context: zmq.Context,
        config: ServerConfig,
        counters: dict[str, int],
        log_limit: RateLimit,
    ) -> None:
        self.config = config
        self.counters = counters
        self._log_limit = log_limit
        # The ZAP handler must exist before the router accepts anyone (RFC 27).
        self.zap = context.socket(zmq.REP)
        self.zap.setsockopt(zmq.LINGER, 0)
        self.zap.bind(ZAP_ENDPOINT)
        self.monitor: zmq.Socket | None = None
        self.connections: set[int] = set()
        self._allowed_keys: set[bytes] = set()
        #: The client key of this daemon's connection file (set by the server).
        self.local_keys: set[bytes] = set()
        self._keys_stamp: float | None = None

    def watch(self, router: zmq.Socket) -> zmq.Socket:
        """Start counting the router's connections; returns the monitor socket to poll."""
        self.monitor = router.get_monitor_socket(
            zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED
        )
        return self.monitor

    def close(self, router: zmq.Socket | None = None) -> None:
        if router is not None:
            with contextlib.suppress(zmq.ZMQError):
                router.disable_monitor()
        if self.monitor is not None:
            self.monitor.close(linger=0)
        self.zap.close(linger=0)

    def drain_monitor(self) -> None:
        from zmq.utils.monitor import recv_monitor_message

        if self.monitor is None:
            return
        for _ in range(10_000):
            try:
                event = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            if event["event"] == zmq.EVENT_ACCEPTED:
                self.connections.add(int(event["value"]))
            else:
                self.connections.discard(int(event["value"]))

    def drain_zap(self) -> None:
        for _ in range(1000):
            try:
                request = self.zap.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.zap.send_multipart(self.zap_reply(request))

    def zap_reply(self, request: list[bytes]) -> list[bytes]:
        """Admit or refuse one handshake (RFC 27): connection cap, then CURVE allow-list."""
        if len(request) < 6:
            rid = request[1] if len(request) > 1 else b""
            return [b"1.0", rid, b"500", b"bad request", b"", b""]
        _version, request_id, _domain, address, _identity, mechanism, *credentials = request
        self.drain_monitor()  # the ACCEPTED event of this very connection

        def deny(code: bytes, why: str) -> list[bytes]:
            self.counters["zap_denied"] += 1
            if self._log_limit.allow():
                peer = address.decode("ascii", "replace")
                log.warning("refused a connection from %s: %s", peer, why)
            return [b"1.0", request_id, code, why.encode(), b"", b""]

        if len(self.connections) > self.config.max_connections:
            return deny(b"300", f"too many connections (limit {self.config.max_connections})")
        user = b""
        if mechanism == b"CURVE":
            public = z85.encode(credentials[0]) if credentials else b""
            if public not in self.local_keys and public not in self.allowed():
                return deny(b"400", f"unknown CURVE client key {public.decode()}")
            user = public
        return [b"1.0", request_id, b"200", b"OK", user, b""]

    def allowed(self) -> set[bytes]:
        """Allowed CURVE client keys: the folder's ``*.key`` files (re-read when it changes)
        plus this user's own client key."""
        folder = self.config.authorized_keys or default_authorized_keys()
        try:
            stamp = folder.stat().st_mtime
        except OSError:
            stamp = -1.0
        if stamp != self._keys_stamp:
            self._keys_stamp = stamp
            keys = set(_own_keys())
            if stamp >= 0:
                import zmq.auth

                with contextlib.suppress(OSError, ValueError):
                    keys |= set(zmq.auth.load_certificates(str(folder)))
            self._allowed_keys = keys
        return self._allowed_keys


def _own_keys() -> set[bytes]:
    """This user's own stable client key (created on first use): always allowed."""
    from neural_style.shared.keys import client_keypair

    try:
        return {client_keypair()[0]}
    except (OSError, NeuralStyleError) as exc:
        log.warning("cannot read or create this user's CURVE client key: %s", exc)
        return set()


def default_authorized_keys() -> Path:
    """``$XDG_CONFIG_HOME/neural-style/authorized_keys``: allowed CURVE client keys."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "neural-style" / "authorized_keys"


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
