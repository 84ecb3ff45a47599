"""The wire format between the daemon and its clients (GIMP plug-in, CLI), like Jupyter's
``Session``: frames, signing, the strict decode and replay refusal.

What each message holds is :mod:`.messages` (:data:`SCHEMAS`), how each field is checked
:mod:`.validators`, how images travel :mod:`.imagebuf`; their public names are re-exported
here, the one module clients and the daemon import. Standard library + msgpack only: the
package is copied into the GIMP plug-in folder.

Frames (ZeroMQ multipart; a ROUTER prepends the peer identity)::

    [version, signature, header, *buffers]

- ``version``: ``VERSION`` (``b"NS2"``, from ``defaults.PROTOCOL_VERSION``). Frames 0
  and 1 keep this layout in every future version so that a mismatch can always be reported.
- ``signature``: hex HMAC-SHA256, keyed with the connection file's key, over the
  version, the header and every buffer, each preceded by its length (8 bytes, big endian),
  so frame boundaries cannot be shifted. Empty when the sender has no key.
- ``header``: a msgpack map with ``type`` and the type's fields (see ``SCHEMAS``), plus
  ``mid``, a random message id that makes every signed message unique, so a receiver can
  refuse a replayed one (see :class:`ReplayWindow`).
- ``buffers``: raw pixels, one per image named in the header, in the order of
  ``IMAGE_FIELDS``; little-endian; row-major, interleaved channels (H x W x C).

Nothing from the network is unpickled or evaluated: msgpack is unpacked with explicit
length limits and every field is checked before anyone uses it. Every problem raises
:class:`ProtocolError`, whose ``code`` says which error reply to send.

Compatibility: decoders refuse unknown *fields*, so a new field a peer does not need to
understand must not be added to a message an older peer decodes; put it in one of the open
maps (``welcome.limits``, ``welcome.weights``, ``status_reply.info``, ``result.stats``),
whose unknown keys every version accepts (see :data:`STEP_TIME_KEYS`). Only a change of the
header layout that older peers cannot read bumps ``defaults.PROTOCOL_VERSION``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
import struct
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import msgpack

from . import __version__, defaults, limits

# Re-exported: clients and the daemon read these from the protocol module.
from .defaults import DEFAULT_ENDPOINT as DEFAULT_ENDPOINT
from .defaults import DEFAULT_PORT as DEFAULT_PORT
from .defaults import PROTOCOL_VERSION as PROTOCOL_VERSION
from .defaults import START_COMMAND as START_COMMAND
from .errors import ErrorCode
from .imagebuf import DTYPES as DTYPES
from .imagebuf import ImageBuf as ImageBuf
from .imagebuf import nbytes
from .messages import CLIENT_TYPES as CLIENT_TYPES
from .messages import ITERATE_COLUMNS as ITERATE_COLUMNS
from .messages import JOB, REQ, UNSIGNED_ERROR_CODES, check_fields, header_and_buffers
from .messages import MAX_ITERATE_ROWS as MAX_ITERATE_ROWS
from .messages import MAX_JOB_ID_LEN as MAX_JOB_ID_LEN
from .messages import MAX_PREVIEW_SIDE as MAX_PREVIEW_SIDE
from .messages import SCHEMAS as SCHEMAS
from .messages import SERVER_TYPES as SERVER_TYPES
from .messages import STEP_S_BY_SIDE as STEP_S_BY_SIDE
from .messages import STEP_S_PER_MPX as STEP_S_PER_MPX
from .messages import STEP_TIME_KEYS as STEP_TIME_KEYS
from .messages import Buffer as Buffer
from .messages import Message as Message
from .messages import error_message as error_message
from .messages import pack_iterates as pack_iterates
from .messages import step_times as step_times
from .messages import unpack_iterates as unpack_iterates
from .messages import validate as validate
from .validators import MAX_STR_LEN as MAX_STR_LEN
from .validators import ProtocolError as ProtocolError
from .validators import bad, show

#: Frame 0 of every message (``b"NS2"``): ``defaults.PROTOCOL_VERSION`` is the one number.
VERSION: bytes = defaults.VERSION_FRAME
#: Default seconds between heartbeats, both directions, while a job is open.
DEFAULT_HEARTBEAT_S: float = 1.0
#: A peer silent for this many heartbeat intervals is considered gone.
MISSED_HEARTBEATS: int = 3
#: The daemon cancels a job whose client has been silent this many of its intervals.
CLIENT_GONE_HEARTBEATS: int = 5
#: Upper bound of a header frame; real headers are a few hundred bytes.
MAX_HEADER_BYTES: int = 64 * 1024
MAX_ARRAY_LEN: int = 256
MAX_MAP_LEN: int = 64
#: Length of the hex HMAC-SHA256 signature frame.
SIGNATURE_LEN: int = 64
#: How many recent message signatures a receiver remembers to refuse replays.
REPLAY_WINDOW: int = 16_384
_MID = r"[0-9a-f]{16,64}"
#: Most buffers one message can carry: content + styles + mask + init + the previous
#: frame's content and result.
MAX_BUFFERS: int = 5 + limits.MAX_STYLES
FEATURES: tuple[str, ...] = (
    "preview", "mask", "cancel", "heartbeat", "style_cache", "iterates", "curve", "init",
    "frames",
)  # fmt: skip


def max_frame_bytes(max_pixels: int = limits.MAX_IMAGE_PIXELS) -> int:
    """Largest frame a peer may send: one float32 RGBA image at the pixel limit.

    Used for ZeroMQ's MAXMSGSIZE so that an oversized frame is refused by libzmq before
    Python ever allocates it.
    """
    return max(max_pixels * 4 * DTYPES["f32"], MAX_HEADER_BYTES)


def sign(key: bytes | None, frames: Sequence[Buffer]) -> bytes:
    """Hex HMAC-SHA256 over length-prefixed frames; empty without a key."""
    if not key:
        return b""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for frame in frames:
        mac.update(struct.pack(">Q", nbytes(frame)))
        mac.update(frame)
    return mac.hexdigest().encode("ascii")


def encode(msg: Message, key: bytes | None) -> list[Buffer]:
    """Frames for ``msg``: version, signature, header, buffers (zero-copy where possible)."""
    header, buffers = header_and_buffers(msg)
    if key:
        header["mid"] = secrets.token_hex(8)
    packed = msgpack.packb(header, use_bin_type=True)
    frames: list[Buffer] = [VERSION, packed, *buffers]
    return [VERSION, sign(key, frames), packed, *buffers]


def decode(
    frames: Sequence[Buffer],
    key: bytes | None,
    *,
    max_pixels: int = limits.MAX_IMAGE_PIXELS,
    allowed_types: frozenset[str] | None = None,
    accept_unsigned_errors: bool = False,
) -> Message:
    """Check and decode one message; raise :class:`ProtocolError` for anything wrong.

    Order matters: the frame count, then frame 0's length and value (a future version may
    sign differently, and the user should hear "version mismatch", not
    "unauthenticated"), then the signature's length, then the signature, and only then
    is the header unpacked: an unauthenticated peer costs one HMAC, no copy and no
    unpacking.
    """
    if not 3 <= len(frames) <= 3 + MAX_BUFFERS:
        raise bad(f"expected 3 to {3 + MAX_BUFFERS} frames, got {len(frames)}")
    version, signature, header_frame, *buffers = frames
    if nbytes(version) != len(VERSION) or bytes(version) != VERSION:
        shown = bytes(memoryview(version)[:16])
        raise ProtocolError(
            ErrorCode.VERSION_MISMATCH,
            f"protocol version {show(shown)} ({nbytes(version)} bytes) is not supported; "
            f"this end speaks {VERSION.decode()} (neural-style {__version__})",
            "Upgrade the older side so that the daemon, the CLI and the GIMP plug-in are "
            "one neural-style version (pip install -U neural-style-gimp, then neural-style "
            "install-plugin).",
        )
    if nbytes(header_frame) > MAX_HEADER_BYTES:
        raise bad(f"header is {nbytes(header_frame)} bytes; at most {MAX_HEADER_BYTES} allowed")
    signed = _check_signature(key, frames, signature, accept_unsigned_errors)
    header = _unpack_header(header_frame)
    msg_type = header.pop("type", None)
    addr = _address(header)
    try:
        known = isinstance(msg_type, str) and msg_type in SCHEMAS
        if not known or (allowed_types is not None and msg_type not in allowed_types):
            raise bad(f"unknown message type {show(msg_type)}")
        code = header.get("code")
        unsigned_ok = msg_type == "error" and isinstance(code, str) and code in UNSIGNED_ERROR_CODES
        if not signed and not unsigned_ok:
            raise ProtocolError(ErrorCode.UNAUTHENTICATED, "message is not signed")
        mid = header.pop("mid", None)
        if signed and key and (not isinstance(mid, str) or not re.fullmatch(_MID, mid)):
            raise ProtocolError(ErrorCode.UNAUTHENTICATED, "signed message without a valid id")
        fields = check_fields(msg_type, header, buffers, max_pixels)
    except ProtocolError as exc:
        exc.fields = addr
        raise
    digest = bytes(signature) if signed and key else b""
    return Message(msg_type, fields, signed, digest)


class ReplayWindow:
    """The signatures of the last ``size`` accepted messages: a repeat is a replay.

    Signatures are unique per message because every signed header carries a random
    ``mid`` (as Jupyter's Session keeps a digest history). Bounded: ``size`` x ~200 bytes.
    """

    def __init__(self, size: int = REPLAY_WINDOW) -> None:
        self.size = size
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    def check(self, msg: Message) -> None:
        """Raise ProtocolError(unauthenticated) for a replayed message; remember it."""
        if not msg.digest:
            return
        if msg.digest in self._seen:
            raise ProtocolError(
                ErrorCode.UNAUTHENTICATED,
                "replayed message (its signature was already used)",
                fields=_address(msg.fields),
            )
        self._seen[msg.digest] = None
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)


def _address(header: dict[str, Any]) -> dict[str, Any]:
    """``req``/``job`` of a header that may be invalid, kept only when well-formed."""
    addr = {}
    for name, check in (("req", REQ), ("job", JOB)):
        with contextlib.suppress(KeyError, ProtocolError):
            addr[name] = check(name, header[name])
    return addr


def _check_signature(
    key: bytes | None, frames: Sequence[Buffer], signature: Buffer, accept_unsigned: bool
) -> bool:
    if not key:
        return True  # no key on this end: nothing to check (tests and key-less setups)
    if nbytes(signature) == SIGNATURE_LEN:
        expected = sign(key, [frames[0], *frames[2:]])
        if hmac.compare_digest(expected, bytes(signature)):
            return True
    if accept_unsigned:
        return False  # the caller accepts only unsigned errors; decode() enforces that
    raise ProtocolError(
        ErrorCode.UNAUTHENTICATED,
        "message signature is missing or wrong",
        "Use the key from the daemon's connection file (neural-style status shows where it "
        "is), or set NEURAL_STYLE_CONNECTION_FILE to that file.",
    )


def _unpack_header(frame: Buffer) -> dict[str, Any]:
    if nbytes(frame) > MAX_HEADER_BYTES:
        raise bad(f"header is {nbytes(frame)} bytes; at most {MAX_HEADER_BYTES} allowed")
    try:
        header = msgpack.unpackb(
            frame,
            raw=False,
            strict_map_key=True,
            max_str_len=MAX_STR_LEN,
            max_bin_len=0,
            max_array_len=MAX_ARRAY_LEN,
            max_map_len=MAX_MAP_LEN,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises a zoo of types for malformed input
        raise bad(f"header is not valid msgpack ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise bad(f"header must be a map, got {type(header).__name__}")
    return header
