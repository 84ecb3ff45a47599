"""The wire protocol between the daemon and its clients (GIMP plug-in, CLI).

One place defines the protocol version, the message types and their fields, the
validation of every field, the size limits and how images travel. Standard library +
msgpack only: this module is copied into the GIMP plug-in folder.

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
import math
import re
import secrets
import struct
import sys
from array import array
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from . import __version__, defaults, limits, schema

# Re-exported: clients and the daemon have always read these from the protocol module.
from .defaults import DEFAULT_ENDPOINT as DEFAULT_ENDPOINT
from .defaults import DEFAULT_PORT as DEFAULT_PORT
from .defaults import PROTOCOL_VERSION as PROTOCOL_VERSION
from .defaults import START_COMMAND as START_COMMAND
from .errors import UNSIGNED_ERRORS, ErrorCode, NeuralStyleError
from .records import STEP_COLUMNS

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
MAX_STR_LEN: int = 4096
MAX_ARRAY_LEN: int = 256
MAX_MAP_LEN: int = 64
MAX_JOB_ID_LEN: int = 64
#: Length of the hex HMAC-SHA256 signature frame.
SIGNATURE_LEN: int = 64
#: How many recent message signatures a receiver remembers to refuse replays.
REPLAY_WINDOW: int = 16_384
_MID = r"[0-9a-f]{16,64}"
MAX_PREVIEW_SIDE: int = 4096
#: Rows of the per-step table sent with a result (coarse-to-fine may add steps).
MAX_ITERATE_ROWS: int = 2 * limits.MAX_ITERATIONS
#: Columns of that table (little-endian float64 each): the fields of ``records.Step``.
ITERATE_COLUMNS: tuple[str, ...] = STEP_COLUMNS
#: dtype code -> bytes per channel value.
DTYPES: dict[str, int] = defaults.DTYPE_SIZES
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


class ProtocolError(NeuralStyleError):
    """A frame that breaks the protocol; ``code`` is the error reply to send."""

    def __init__(
        self, code: ErrorCode, message: str, hint: str = "", *, fields: dict | None = None
    ):
        super().__init__(code, message, hint)
        #: What could be read of the header (``req``, ``job``) to address the reply.
        self.fields = fields or {}


def _bad(message: str, code: ErrorCode = ErrorCode.BAD_REQUEST) -> ProtocolError:
    return ProtocolError(code, message)


# --------------------------------------------------------------------------- images


@dataclass
class ImageBuf:
    """Pixels as they travel: little-endian, row-major, interleaved channels.

    A plain container so that the plug-in needs no numpy; the daemon converts to arrays.
    """

    width: int
    height: int
    channels: int
    dtype: str
    data: bytes | bytearray | memoryview = b""

    @property
    def itemsize(self) -> int:
        return DTYPES[self.dtype]

    @property
    def expected_nbytes(self) -> int:
        return self.width * self.height * self.channels * DTYPES[self.dtype]

    def describe(self) -> dict[str, Any]:
        """The header part that describes this buffer."""
        return {"w": self.width, "h": self.height, "c": self.channels, "dtype": self.dtype}

    def check(self, where: str = "image", max_pixels: int = limits.MAX_IMAGE_PIXELS) -> None:
        """Raise ProtocolError unless shape, dtype and byte length agree and fit the limits."""
        _image_desc(where, self.describe(), max_pixels)
        _check_length(where, self, _nbytes(self.data))


def _nbytes(data: Any) -> int:
    return memoryview(data).nbytes


def _check_length(where: str, img: ImageBuf, nbytes: int) -> None:
    if nbytes != img.expected_nbytes:
        raise _bad(
            f"{where}: buffer has {nbytes} bytes, expected {img.expected_nbytes} "
            f"({img.width}x{img.height}x{img.channels} {img.dtype})"
        )


# --------------------------------------------------------------------------- validators

Validator = Callable[[str, Any], Any]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(lo: int, hi: int) -> Validator:
    def check(where: str, value: Any) -> int:
        if not _is_int(value) or not lo <= value <= hi:
            raise _bad(f"{where}: expected an integer in [{lo}, {hi}], got {_show(value)}")
        return value

    return check


def _num(lo: float = -math.inf, hi: float = math.inf, *, finite: bool = True) -> Validator:
    def check(where: str, value: Any) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and math.isnan(value):
            ok = not finite
        elif ok:
            ok = (not finite or math.isfinite(value)) and lo <= value <= hi
        if not ok:
            kind = "a finite number" if finite else "a number"
            raise _bad(f"{where}: expected {kind} in [{lo:g}, {hi:g}], got {_show(value)}")
        return float(value)

    return check


def _str(max_len: int = MAX_STR_LEN, pattern: str | None = None) -> Validator:
    regex = re.compile(pattern) if pattern else None

    def check(where: str, value: Any) -> str:
        if not isinstance(value, str) or len(value) > max_len:
            raise _bad(f"{where}: expected a string of at most {max_len} characters")
        if regex is not None and not regex.fullmatch(value):
            raise _bad(f"{where}: {_show(value)} does not match {pattern}")
        return value

    return check


def _choice(*options: str) -> Validator:
    def check(where: str, value: Any) -> str:
        if value not in options:
            raise _bad(f"{where}: expected one of {', '.join(options)}, got {_show(value)}")
        return value

    return check


def _bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _bad(f"{where}: expected true or false, got {_show(value)}")
    return value


def _list(item: Validator, min_len: int, max_len: int) -> Validator:
    def check(where: str, value: Any) -> list:
        if not isinstance(value, list) or not min_len <= len(value) <= max_len:
            raise _bad(f"{where}: expected a list of {min_len} to {max_len} items")
        return [item(f"{where}[{i}]", v) for i, v in enumerate(value)]

    return check


def _plain(max_depth: int = 3) -> Validator:
    """A free-form map (parameters, statistics): string keys, JSON-like values, shallow."""

    def value_ok(value: Any, depth: int) -> bool:
        if value is None or isinstance(value, (bool, int, float, str)):
            return True
        if depth <= 0:
            return False
        if isinstance(value, list):
            return all(value_ok(v, depth - 1) for v in value)
        if isinstance(value, dict):
            return all(isinstance(k, str) and value_ok(v, depth - 1) for k, v in value.items())
        return False

    def check(where: str, value: Any) -> dict:
        if not isinstance(value, dict):
            raise _bad(f"{where}: expected a map, got {_show(value)}")
        for key, item in value.items():
            if not isinstance(key, str):
                raise _bad(f"{where}: keys must be strings, got {_show(key)}")
            if not value_ok(item, max_depth - 1):
                raise _bad(f"{where}.{key}: unsupported value {_show(item)}")
        return value

    return check


def _params(where: str, value: Any) -> dict:
    """A submit's job parameters: a shallow map whose keys, types and bounds are the
    parameter schema's (shared/schema.py); combinations are checked once merged."""
    _plain(2)(where, value)
    try:
        schema.check(value)
    except schema.ParamError as exc:
        # The daemon's own wording (as StyleParams says it), then the field's path.
        raise _bad(f"{exc.message.rstrip('.')} ({where}.{exc.field})") from None
    return value


def _image_desc(where: str, value: Any, max_pixels: int = limits.MAX_IMAGE_PIXELS) -> ImageBuf:
    """Check an image descriptor ``{w, h, c, dtype}``; the data is attached later."""
    if not isinstance(value, dict):
        raise _bad(f"{where}: expected an image descriptor map, got {_show(value)}")
    _exact_keys(where, value, {"w", "h", "c", "dtype"}, set())
    width = _int(1, limits.MAX_IMAGE_SIDE)(f"{where}.w", value["w"])
    height = _int(1, limits.MAX_IMAGE_SIDE)(f"{where}.h", value["h"])
    channels = value["c"]
    if not _is_int(channels) or channels not in limits.ALLOWED_CHANNELS:
        raise _bad(
            f"{where}.c: expected channels in {limits.ALLOWED_CHANNELS}, got {_show(channels)}"
        )
    dtype = _choice(*DTYPES)(f"{where}.dtype", value["dtype"])
    if width * height > max_pixels:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            f"{where}: {width}x{height} is {width * height} pixels; this daemon accepts at most "
            f"{max_pixels}",
            "Scale the image down, or restart the daemon with a larger --max-pixels.",
        )
    return ImageBuf(width, height, channels, dtype)


def _exact_keys(where: str, value: dict, required: set[str], optional: set[str]) -> None:
    missing = sorted(required - value.keys())
    if missing:
        raise _bad(f"{where}: missing field(s) {', '.join(missing)}")
    unknown = sorted(str(k) for k in value.keys() - required - optional)
    if unknown:
        raise _bad(f"{where}: unknown field(s) {', '.join(unknown)}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------- step times

#: The daemon's measured step times (daemon/service/speed.py), carried in ``welcome``'s
#: open ``limits`` map so that a decoder which knows nothing of them still accepts the
#: welcome (unknown *fields* are refused; unknown keys of an open map are not). No version
#: bump: the header layout is unchanged. ``status_reply``'s ``info`` has them at its top.
STEP_S_PER_MPX = "step_s_per_mpx"
STEP_S_BY_SIDE = "step_s_by_side"
STEP_TIME_KEYS: tuple[str, ...] = (STEP_S_PER_MPX, STEP_S_BY_SIDE)


def _step_s_by_side(where: str, value: Any) -> dict:
    """``{"512": 0.74, ...}``: seconds per step per working long side (digits as keys)."""
    _plain(1)(where, value)
    for side, seconds in value.items():
        if not side.isdigit():
            raise _bad(f"{where}: keys must be long sides in pixels, got {_show(side)}")
        _num(0.0)(f"{where}.{side}", seconds)
    return value


def _limits(where: str, value: Any) -> dict:
    """``welcome.limits``: an open map of bounds; the step-time keys checked when present."""
    _plain(2)(where, value)
    if STEP_S_PER_MPX in value:
        _num(0.0)(f"{where}.{STEP_S_PER_MPX}", value[STEP_S_PER_MPX])
    if STEP_S_BY_SIDE in value:
        _step_s_by_side(f"{where}.{STEP_S_BY_SIDE}", value[STEP_S_BY_SIDE])
    return value


def step_times(welcome: dict[str, Any]) -> dict[str, Any]:
    """The measured step times of a decoded welcome's fields: ``{"step_s_per_mpx": s,
    "step_s_by_side": {side: s}}`` with what the daemon sent, ``{}`` before its first job.

    Read from ``limits`` (where daemons send them) or, for a daemon of the development
    tree that sent them as fields of their own, from the top level.
    """
    found = {k: welcome[k] for k in STEP_TIME_KEYS if k in welcome}
    bounds = welcome.get("limits")
    if isinstance(bounds, dict):
        found.update({k: bounds[k] for k in STEP_TIME_KEYS if k in bounds})
    return found


# --------------------------------------------------------------------------- schemas

_JOB = _str(MAX_JOB_ID_LEN, r"[A-Za-z0-9_.:-]+")
_REQ = _int(0, 2**53)
_IMAGE = "image"  # marker: an image descriptor whose pixels travel as a buffer
_IMAGES = "images"  # marker: a list of such descriptors
_TABLE = "table"  # marker: row count of the per-step float64 table (one buffer)

#: type -> field -> (validator or marker, required). ``type`` and ``req`` are implicit.
SCHEMAS: dict[str, dict[str, tuple[Validator | str, bool]]] = {
    # client -> daemon
    "hello": {"protocol": (_int(0, 2**16), True), "client": (_str(200), False)},
    "ping": {"t": (_num(), False)},
    "status": {},
    "shutdown": {},
    "submit": {
        "job": (_JOB, True),
        "params": (_params, True),
        "content": (_IMAGE, True),
        "styles": (_IMAGES, True),
        "mask": (_IMAGE, False),
        # The starting image instead of the content (refine an earlier result).
        "init": (_IMAGE, False),
        # Frames mode: the previous frame's content and stylized result (both the content's
        # size). The daemon starts from that result warped by optical flow and adds the
        # temporal loss with this weight (0: the warped start only); a scene cut runs the
        # frame on its own.
        "previous_content": (_IMAGE, False),
        "previous_result": (_IMAGE, False),
        "temporal_weight": (_num(0.0, 1e12), False),
        "preview_every": (_int(0, limits.MAX_ITERATIONS), False),
        "preview_max_side": (_int(16, MAX_PREVIEW_SIDE), False),
        "heartbeat_s": (_num(0.05, 60.0), False),
    },
    "cancel": {"job": (_JOB, True)},
    "heartbeat": {
        "job": (_JOB, False),
        "state": (_choice("queued", "running"), False),
        "position": (_int(0, 1_000_000), False),
    },
    # daemon -> client
    "welcome": {
        "protocol": (_int(0, 2**16), True),
        "server": (_str(200), True),
        "pid": (_int(0, 2**31), False),
        "device": (_str(200), True),
        "model": (_str(200), True),
        "weights": (_plain(2), True),
        # Bounds, and once a job has finished the measured step times (STEP_TIME_KEYS).
        "limits": (_limits, True),
        "features": (_list(_str(64), 0, 64), True),
        "heartbeat_s": (_num(0.05, 60.0), True),
        # Accepted, never sent: daemons of the 0.1.0 development tree put the step times
        # here, where a strict older decoder refuses them; they now travel in ``limits``.
        "step_s_per_mpx": (_num(0.0), False),
        "step_s_by_side": (_step_s_by_side, False),
    },
    "pong": {"t": (_num(), False), "server_time": (_num(), True)},
    "status_reply": {"info": (_plain(4), True)},
    "shutdown_ack": {},
    "accepted": {"job": (_JOB, True), "position": (_int(0, 1_000_000), True)},
    "progress": {
        "job": (_JOB, True),
        "step": (_int(0, MAX_ITERATE_ROWS), True),
        "total": (_int(0, MAX_ITERATE_ROWS), True),
        "loss": (_num(finite=False), True),
        "content": (_num(finite=False), True),
        "style": (_num(finite=False), True),
        "tv": (_num(finite=False), True),
        "elapsed_s": (_num(0.0), True),
        "eta_s": (_num(0.0, finite=False), True),
        "scale": (_int(0, limits.MAX_IMAGE_SIDE), False),
    },
    "preview": {
        "job": (_JOB, True),
        "step": (_int(0, MAX_ITERATE_ROWS), True),
        "image": (_IMAGE, True),
    },
    "result": {
        "job": (_JOB, True),
        "image": (_IMAGE, True),
        "stats": (_plain(3), True),
        "iterates": (_TABLE, True),
    },
    "cancelled": {
        "job": (_JOB, True),
        "reason": (_choice("client", "client_gone", "shutdown"), True),
        "step": (_int(0, MAX_ITERATE_ROWS), False),
        "requested_at_step": (_int(0, MAX_ITERATE_ROWS), False),
    },
    "error": {
        "code": (_choice(*(c.value for c in ErrorCode)), True),
        "message": (_str(), True),
        "hint": (_str(), False),
        "job": (_JOB, False),
    },
}

#: Types a client sends; the daemon answers anything else with bad_request.
CLIENT_TYPES: frozenset[str] = frozenset(
    {"hello", "ping", "status", "shutdown", "submit", "cancel", "heartbeat"}
)
SERVER_TYPES: frozenset[str] = frozenset(SCHEMAS) - CLIENT_TYPES | {"heartbeat"}
#: Errors a daemon may send unsigned, because it cannot sign for a peer it does not trust.
UNSIGNED_ERROR_CODES: frozenset[str] = frozenset(c.value for c in UNSIGNED_ERRORS)


# --------------------------------------------------------------------------- messages

Buffer = bytes | bytearray | memoryview


@dataclass
class Message:
    """One decoded (or to-be-encoded) message.

    ``fields`` holds the header without ``type``; image fields hold :class:`ImageBuf`
    objects with their data attached, and ``result``'s ``iterates`` holds the raw table.
    """

    type: str
    fields: dict[str, Any] = field(default_factory=dict)
    #: False when the message arrived without a valid signature (only unsigned errors).
    signed: bool = True
    #: The signature it arrived with (for replay detection); empty when unsigned.
    digest: bytes = b""

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)


def sign(key: bytes | None, frames: Sequence[Buffer]) -> bytes:
    """Hex HMAC-SHA256 over length-prefixed frames; empty without a key."""
    if not key:
        return b""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for frame in frames:
        mac.update(struct.pack(">Q", _nbytes(frame)))
        mac.update(frame)
    return mac.hexdigest().encode("ascii")


def encode(msg: Message, key: bytes | None) -> list[Buffer]:
    """Frames for ``msg``: version, signature, header, buffers (zero-copy where possible)."""
    header, buffers = _header_and_buffers(msg)
    if key:
        header["mid"] = secrets.token_hex(8)
    packed = msgpack.packb(header, use_bin_type=True)
    frames: list[Buffer] = [VERSION, packed, *buffers]
    return [VERSION, sign(key, frames), packed, *buffers]


def validate(msg: Message, *, max_pixels: int = limits.MAX_IMAGE_PIXELS) -> None:
    """Check an outgoing message with the receiver's rules (no hashing, no packing).

    Lets a client refuse a bad request locally, with the same message the daemon would send.
    """
    if msg.type not in SCHEMAS:
        raise _bad(f"unknown message type {_show(msg.type)}")
    header, buffers = _header_and_buffers(msg)
    del header["type"]
    _check_fields(msg.type, header, buffers, max_pixels)


def _header_and_buffers(msg: Message) -> tuple[dict[str, Any], list[Buffer]]:
    header: dict[str, Any] = {"type": msg.type}
    buffers: list[Buffer] = []
    for name, value in msg.fields.items():
        if value is not None:
            header[name] = _describe(msg.type, name, value)
    # Buffers follow the schema's field order, whatever order the header is in.
    for name, (check, _) in SCHEMAS.get(msg.type, {}).items():
        value = msg.fields.get(name)
        if value is None or not isinstance(check, str):
            continue
        if check == _IMAGES:
            buffers.extend(img.data for img in value)
        else:
            buffers.append(value.data if check == _IMAGE else value)
    return header, buffers


def _describe(msg_type: str, name: str, value: Any) -> Any:
    """The header value of one field: buffers are replaced by their descriptors."""
    check = SCHEMAS.get(msg_type, {}).get(name, (None, False))[0]
    if check == _IMAGE:
        return value.describe()
    if check == _IMAGES:
        return [img.describe() for img in value]
    if check == _TABLE:
        return _nbytes(value) // (8 * len(ITERATE_COLUMNS))
    return value


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
        raise _bad(f"expected 3 to {3 + MAX_BUFFERS} frames, got {len(frames)}")
    version, signature, header_frame, *buffers = frames
    if _nbytes(version) != len(VERSION) or bytes(version) != VERSION:
        shown = bytes(memoryview(version)[:16])
        raise ProtocolError(
            ErrorCode.VERSION_MISMATCH,
            f"protocol version {_show(shown)} ({_nbytes(version)} bytes) is not supported; "
            f"this end speaks {VERSION.decode()} (neural-style {__version__})",
            "Upgrade the older side so that the daemon, the CLI and the GIMP plug-in are "
            "one neural-style version (pip install -U neural-style-gimp, then neural-style "
            "install-plugin).",
        )
    if _nbytes(header_frame) > MAX_HEADER_BYTES:
        raise _bad(f"header is {_nbytes(header_frame)} bytes; at most {MAX_HEADER_BYTES} allowed")
    signed = _check_signature(key, frames, signature, accept_unsigned_errors)
    header = _unpack_header(header_frame)
    msg_type = header.pop("type", None)
    addr = _address(header)
    try:
        known = isinstance(msg_type, str) and msg_type in SCHEMAS
        if not known or (allowed_types is not None and msg_type not in allowed_types):
            raise _bad(f"unknown message type {_show(msg_type)}")
        code = header.get("code")
        unsigned_ok = msg_type == "error" and isinstance(code, str) and code in UNSIGNED_ERROR_CODES
        if not signed and not unsigned_ok:
            raise ProtocolError(ErrorCode.UNAUTHENTICATED, "message is not signed")
        mid = header.pop("mid", None)
        if signed and key and (not isinstance(mid, str) or not re.fullmatch(_MID, mid)):
            raise ProtocolError(ErrorCode.UNAUTHENTICATED, "signed message without a valid id")
        fields = _check_fields(msg_type, header, buffers, max_pixels)
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
    for name, check in (("req", _REQ), ("job", _JOB)):
        with contextlib.suppress(KeyError, ProtocolError):
            addr[name] = check(name, header[name])
    return addr


def _check_signature(
    key: bytes | None, frames: Sequence[Buffer], signature: Buffer, accept_unsigned: bool
) -> bool:
    if not key:
        return True  # no key on this end: nothing to check (tests and key-less setups)
    if _nbytes(signature) == SIGNATURE_LEN:
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
    if _nbytes(frame) > MAX_HEADER_BYTES:
        raise _bad(f"header is {_nbytes(frame)} bytes; at most {MAX_HEADER_BYTES} allowed")
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
        raise _bad(f"header is not valid msgpack ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise _bad(f"header must be a map, got {type(header).__name__}")
    return header


def _check_fields(
    msg_type: str, header: dict[str, Any], buffers: Sequence[Buffer], max_pixels: int
) -> dict[str, Any]:
    schema = SCHEMAS[msg_type]
    required = {name for name, (_, req) in schema.items() if req}
    _exact_keys(msg_type, header, required, set(schema) - required | {"req"})
    out: dict[str, Any] = {}
    if "req" in header:
        out["req"] = _REQ(f"{msg_type}.req", header["req"])
    for name, value in header.items():
        check = schema.get(name, (None, False))[0]
        if name != "req" and callable(check):  # not a buffer marker
            out[name] = check(f"{msg_type}.{name}", value)
    pending = list(buffers)
    for name, (check, _) in schema.items():  # buffers in schema order
        if name not in header or not isinstance(check, str):
            continue
        where, value = f"{msg_type}.{name}", header[name]
        if check == _IMAGE:
            out[name] = _attach(where, _image_desc(where, value, max_pixels), pending)
        elif check == _IMAGES:
            descs = _list(lambda w, v: _image_desc(w, v, max_pixels), 1, limits.MAX_STYLES)(
                where, value
            )
            out[name] = [_attach(f"{where}[{i}]", d, pending) for i, d in enumerate(descs)]
        else:
            rows = _int(0, MAX_ITERATE_ROWS)(where, value)
            out[name] = _take_table(where, rows, pending)
    if pending:
        raise _bad(f"{msg_type}: {len(pending)} buffer(s) more than the header describes")
    _check_cross_fields(msg_type, out)
    return out


def _attach(where: str, img: ImageBuf, pending: list[Buffer]) -> ImageBuf:
    if not pending:
        raise _bad(f"{where}: its pixel buffer is missing")
    data = pending.pop(0)
    _check_length(where, img, _nbytes(data))
    img.data = data
    return img


def _take_table(where: str, rows: int, pending: list[Buffer]) -> Buffer:
    if not pending:
        raise _bad(f"{where}: its table buffer is missing")
    data = pending.pop(0)
    expected = rows * 8 * len(ITERATE_COLUMNS)
    if _nbytes(data) != expected:
        raise _bad(f"{where}: table has {_nbytes(data)} bytes, expected {expected} ({rows} rows)")
    return data


def _check_cross_fields(msg_type: str, fields: dict[str, Any]) -> None:
    """Constraints between fields that single validators cannot see."""
    if msg_type == "submit" and "mask" in fields:
        mask, content = fields["mask"], fields["content"]
        if (mask.width, mask.height) != (content.width, content.height) or mask.channels != 1:
            raise _bad(
                f"submit.mask: must be one channel at the content's size "
                f"{content.width}x{content.height}, got {mask.width}x{mask.height}x{mask.channels}"
            )
    if msg_type == "submit" and "init" in fields:
        init, content = fields["init"], fields["content"]
        if (init.width, init.height) != (content.width, content.height):
            raise _bad(
                f"submit.init: must have the content's size {content.width}x{content.height}, "
                f"got {init.width}x{init.height}"
            )
    if msg_type == "submit" and ("previous_content" in fields) != ("previous_result" in fields):
        raise _bad("submit.previous_content and submit.previous_result go together")
    for name in ("previous_content", "previous_result"):
        if msg_type == "submit" and name in fields:
            image, content = fields[name], fields["content"]
            if (image.width, image.height) != (content.width, content.height):
                raise _bad(
                    f"submit.{name}: must have the content's size "
                    f"{content.width}x{content.height}, got {image.width}x{image.height}"
                )
    if msg_type == "progress" and fields["step"] > fields["total"]:
        raise _bad(f"progress.step: {fields['step']} exceeds total {fields['total']}")


# --------------------------------------------------------------------------- iterate table


def pack_iterates(rows: Sequence[Sequence[float]]) -> bytes:
    """Per-step records as a little-endian float64 table (one row per step)."""
    flat = array("d", (float(v) for row in rows for v in row))
    if sys.byteorder == "big":
        flat.byteswap()
    return flat.tobytes()


def unpack_iterates(data: Buffer) -> list[dict[str, float]]:
    """Inverse of :func:`pack_iterates`, as dicts keyed by ``ITERATE_COLUMNS``."""
    flat = array("d")
    flat.frombytes(bytes(data))
    if sys.byteorder == "big":
        flat.byteswap()
    width = len(ITERATE_COLUMNS)
    return [
        dict(zip(ITERATE_COLUMNS, flat[i : i + width], strict=True))
        for i in range(0, len(flat), width)
    ]


def error_message(code: ErrorCode | str, message: str, hint: str = "", **address: Any) -> Message:
    """An ``error`` reply; ``address`` carries ``req``/``job`` to match the request."""
    fields: dict[str, Any] = {"code": ErrorCode(code).value, "message": message[:MAX_STR_LEN]}
    if hint:
        fields["hint"] = hint[:MAX_STR_LEN]
    fields.update({k: v for k, v in address.items() if v is not None})
    return Message("error", fields)
