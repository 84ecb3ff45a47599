"""The message types of the protocol and their fields (:data:`SCHEMAS`): which side sends
each, how every field is checked, the cross-field rules, where buffers go, the per-step
table of a result, and the step times a welcome carries.

Standard library only (copied into the GIMP plug-in folder with the rest of the package).
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import limits, schema
from .errors import UNSIGNED_ERRORS, ErrorCode
from .imagebuf import ImageBuf, check_length, image_desc, nbytes
from .records import STEP_COLUMNS
from .validators import (
    MAX_STR_LEN,
    Validator,
    bad,
    choice,
    exact_keys,
    integer,
    list_of,
    number,
    plain,
    show,
    string,
)

MAX_JOB_ID_LEN: int = 64
MAX_PREVIEW_SIDE: int = 4096
#: Rows of the per-step table sent with a result (coarse-to-fine may add steps).
MAX_ITERATE_ROWS: int = 2 * limits.MAX_ITERATIONS
#: Columns of that table (little-endian float64 each): the fields of ``records.Step``.
ITERATE_COLUMNS: tuple[str, ...] = STEP_COLUMNS

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


def params_field(where: str, value: Any) -> dict:
    """A submit's job parameters: a shallow map whose keys, types and bounds are the
    parameter schema's (shared/schema.py); combinations are checked once merged."""
    plain(2)(where, value)
    try:
        schema.check(value)
    except schema.ParamError as exc:
        # The daemon's own wording (as StyleParams says it), then the field's path.
        raise bad(f"{exc.message.rstrip('.')} ({where}.{exc.field})") from None
    return value


# --------------------------------------------------------------------------- step times

#: The daemon's measured step times (daemon/service/speed.py), carried in ``welcome``'s
#: open ``limits`` map so that a decoder which knows nothing of them still accepts the
#: welcome (unknown *fields* are refused; unknown keys of an open map are not). No version
#: bump: the header layout is unchanged. ``status_reply``'s ``info`` has them at its top.
STEP_S_PER_MPX = "step_s_per_mpx"
STEP_S_BY_SIDE = "step_s_by_side"
STEP_TIME_KEYS: tuple[str, ...] = (STEP_S_PER_MPX, STEP_S_BY_SIDE)


def step_s_by_side(where: str, value: Any) -> dict:
    """``{"512": 0.74, ...}``: seconds per step per working long side (digits as keys)."""
    plain(1)(where, value)
    for side, seconds in value.items():
        if not side.isdigit():
            raise bad(f"{where}: keys must be long sides in pixels, got {show(side)}")
        number(0.0)(f"{where}.{side}", seconds)
    return value


def limits_field(where: str, value: Any) -> dict:
    """``welcome.limits``: an open map of bounds; the step-time keys checked when present."""
    plain(2)(where, value)
    if STEP_S_PER_MPX in value:
        number(0.0)(f"{where}.{STEP_S_PER_MPX}", value[STEP_S_PER_MPX])
    if STEP_S_BY_SIDE in value:
        step_s_by_side(f"{where}.{STEP_S_BY_SIDE}", value[STEP_S_BY_SIDE])
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

JOB = string(MAX_JOB_ID_LEN, r"[A-Za-z0-9_.:-]+")
REQ = integer(0, 2**53)
IMAGE_MARK = "image"  # marker: an image descriptor whose pixels travel as a buffer
IMAGES_MARK = "images"  # marker: a list of such descriptors
TABLE_MARK = "table"  # marker: row count of the per-step float64 table (one buffer)

#: type -> field -> (validator or marker, required). ``type`` and ``req`` are implicit.
SCHEMAS: dict[str, dict[str, tuple[Validator | str, bool]]] = {
    # client -> daemon
    "hello": {"protocol": (integer(0, 2**16), True), "client": (string(200), False)},
    "ping": {"t": (number(), False)},
    "status": {},
    "shutdown": {},
    "submit": {
        "job": (JOB, True),
        "params": (params_field, True),
        "content": (IMAGE_MARK, True),
        "styles": (IMAGES_MARK, True),
        "mask": (IMAGE_MARK, False),
        # The starting image instead of the content (refine an earlier result).
        "init": (IMAGE_MARK, False),
        # Frames mode: the previous frame's content and stylized result (both the content's
        # size). The daemon starts from that result warped by optical flow and adds the
        # temporal loss with this weight (0: the warped start only); a scene cut runs the
        # frame on its own.
        "previous_content": (IMAGE_MARK, False),
        "previous_result": (IMAGE_MARK, False),
        "temporal_weight": (number(0.0, 1e12), False),
        "preview_every": (integer(0, limits.MAX_ITERATIONS), False),
        "preview_max_side": (integer(16, MAX_PREVIEW_SIDE), False),
        "heartbeat_s": (number(0.05, 60.0), False),
    },
    "cancel": {"job": (JOB, True)},
    "heartbeat": {
        "job": (JOB, False),
        "state": (choice("queued", "running"), False),
        "position": (integer(0, 1_000_000), False),
    },
    # daemon -> client
    "welcome": {
        "protocol": (integer(0, 2**16), True),
        "server": (string(200), True),
        "pid": (integer(0, 2**31), False),
        "device": (string(200), True),
        "model": (string(200), True),
        "weights": (plain(2), True),
        # Bounds, and once a job has finished the measured step times (STEP_TIME_KEYS).
        "limits": (limits_field, True),
        "features": (list_of(string(64), 0, 64), True),
        "heartbeat_s": (number(0.05, 60.0), True),
        # Accepted, never sent: daemons of the 0.1.0 development tree put the step times
        # here, where a strict older decoder refuses them; they now travel in ``limits``.
        "step_s_per_mpx": (number(0.0), False),
        "step_s_by_side": (step_s_by_side, False),
    },
    "pong": {"t": (number(), False), "server_time": (number(), True)},
    "status_reply": {"info": (plain(4), True)},
    "shutdown_ack": {},
    "accepted": {"job": (JOB, True), "position": (integer(0, 1_000_000), True)},
    "progress": {
        "job": (JOB, True),
        "step": (integer(0, MAX_ITERATE_ROWS), True),
        "total": (integer(0, MAX_ITERATE_ROWS), True),
        "loss": (number(finite=False), True),
        "content": (number(finite=False), True),
        "style": (number(finite=False), True),
        "tv": (number(finite=False), True),
        "elapsed_s": (number(0.0), True),
        "eta_s": (number(0.0, finite=False), True),
        "scale": (integer(0, limits.MAX_IMAGE_SIDE), False),
    },
    "preview": {
        "job": (JOB, True),
        "step": (integer(0, MAX_ITERATE_ROWS), True),
        "image": (IMAGE_MARK, True),
    },
    "result": {
        "job": (JOB, True),
        "image": (IMAGE_MARK, True),
        "stats": (plain(3), True),
        "iterates": (TABLE_MARK, True),
    },
    "cancelled": {
        "job": (JOB, True),
        "reason": (choice("client", "client_gone", "shutdown"), True),
        "step": (integer(0, MAX_ITERATE_ROWS), False),
        "requested_at_step": (integer(0, MAX_ITERATE_ROWS), False),
    },
    "error": {
        "code": (choice(*(c.value for c in ErrorCode)), True),
        "message": (string(), True),
        "hint": (string(), False),
        "job": (JOB, False),
    },
}

#: Types a client sends; the daemon answers anything else with bad_request.
CLIENT_TYPES: frozenset[str] = frozenset(
    {"hello", "ping", "status", "shutdown", "submit", "cancel", "heartbeat"}
)
SERVER_TYPES: frozenset[str] = frozenset(SCHEMAS) - CLIENT_TYPES | {"heartbeat"}
#: Errors a daemon may send unsigned, because it cannot sign for a peer it does not trust.
UNSIGNED_ERROR_CODES: frozenset[str] = frozenset(c.value for c in UNSIGNED_ERRORS)


def validate(msg: Message, *, max_pixels: int = limits.MAX_IMAGE_PIXELS) -> None:
    """Check an outgoing message with the receiver's rules (no hashing, no packing).

    Lets a client refuse a bad request locally, with the same message the daemon would send.
    """
    if msg.type not in SCHEMAS:
        raise bad(f"unknown message type {show(msg.type)}")
    header, buffers = header_and_buffers(msg)
    del header["type"]
    check_fields(msg.type, header, buffers, max_pixels)


def header_and_buffers(msg: Message) -> tuple[dict[str, Any], list[Buffer]]:
    """The header map (``type`` and the fields, buffers replaced by their descriptors) and
    the buffers of ``msg``, in the schema's order."""
    header: dict[str, Any] = {"type": msg.type}
    buffers: list[Buffer] = []
    for name, value in msg.fields.items():
        if value is not None:
            header[name] = describe(msg.type, name, value)
    # Buffers follow the schema's field order, whatever order the header is in.
    for name, (check, _) in SCHEMAS.get(msg.type, {}).items():
        value = msg.fields.get(name)
        if value is None or not isinstance(check, str):
            continue
        if check == IMAGES_MARK:
            buffers.extend(img.data for img in value)
        else:
            buffers.append(value.data if check == IMAGE_MARK else value)
    return header, buffers


def describe(msg_type: str, name: str, value: Any) -> Any:
    """The header value of one field: buffers are replaced by their descriptors."""
    check = SCHEMAS.get(msg_type, {}).get(name, (None, False))[0]
    if check == IMAGE_MARK:
        return value.describe()
    if check == IMAGES_MARK:
        return [img.describe() for img in value]
    if check == TABLE_MARK:
        return nbytes(value) // (8 * len(ITERATE_COLUMNS))
    return value


def check_fields(
    msg_type: str, header: dict[str, Any], buffers: Sequence[Buffer], max_pixels: int
) -> dict[str, Any]:
    """The checked fields of a ``msg_type`` header, its buffers attached in schema order."""
    fields = SCHEMAS[msg_type]
    required = {name for name, (_, req) in fields.items() if req}
    exact_keys(msg_type, header, required, set(fields) - required | {"req"})
    out: dict[str, Any] = {}
    if "req" in header:
        out["req"] = REQ(f"{msg_type}.req", header["req"])
    for name, value in header.items():
        check = fields.get(name, (None, False))[0]
        if name != "req" and callable(check):  # not a buffer marker
            out[name] = check(f"{msg_type}.{name}", value)
    pending = list(buffers)
    for name, (check, _) in fields.items():  # buffers in schema order
        if name not in header or not isinstance(check, str):
            continue
        where, value = f"{msg_type}.{name}", header[name]
        if check == IMAGE_MARK:
            out[name] = attach(where, image_desc(where, value, max_pixels), pending)
        elif check == IMAGES_MARK:
            descs = list_of(lambda w, v: image_desc(w, v, max_pixels), 1, limits.MAX_STYLES)(
                where, value
            )
            out[name] = [attach(f"{where}[{i}]", d, pending) for i, d in enumerate(descs)]
        else:
            rows = integer(0, MAX_ITERATE_ROWS)(where, value)
            out[name] = take_table(where, rows, pending)
    if pending:
        raise bad(f"{msg_type}: {len(pending)} buffer(s) more than the header describes")
    check_cross_fields(msg_type, out)
    return out


def attach(where: str, img: ImageBuf, pending: list[Buffer]) -> ImageBuf:
    """``img`` with the next pending buffer as its pixels (its length checked)."""
    if not pending:
        raise bad(f"{where}: its pixel buffer is missing")
    data = pending.pop(0)
    check_length(where, img, nbytes(data))
    img.data = data
    return img


def take_table(where: str, rows: int, pending: list[Buffer]) -> Buffer:
    """The next pending buffer as the per-step table of ``rows`` rows."""
    if not pending:
        raise bad(f"{where}: its table buffer is missing")
    data = pending.pop(0)
    expected = rows * 8 * len(ITERATE_COLUMNS)
    if nbytes(data) != expected:
        raise bad(f"{where}: table has {nbytes(data)} bytes, expected {expected} ({rows} rows)")
    return data


def check_cross_fields(msg_type: str, fields: dict[str, Any]) -> None:
    """Constraints between fields that single validators cannot see."""
    if msg_type == "submit" and "mask" in fields:
        mask, content = fields["mask"], fields["content"]
        if (mask.width, mask.height) != (content.width, content.height) or mask.channels != 1:
            raise bad(
                f"submit.mask: must be one channel at the content's size "
                f"{content.width}x{content.height}, got {mask.width}x{mask.height}x{mask.channels}"
            )
    if msg_type == "submit" and "init" in fields:
        init, content = fields["init"], fields["content"]
        if (init.width, init.height) != (content.width, content.height):
            raise bad(
                f"submit.init: must have the content's size {content.width}x{content.height}, "
                f"got {init.width}x{init.height}"
            )
    if msg_type == "submit" and ("previous_content" in fields) != ("previous_result" in fields):
        raise bad("submit.previous_content and submit.previous_result go together")
    for name in ("previous_content", "previous_result"):
        if msg_type == "submit" and name in fields:
            image, content = fields[name], fields["content"]
            if (image.width, image.height) != (content.width, content.height):
                raise bad(
                    f"submit.{name}: must have the content's size "
                    f"{content.width}x{content.height}, got {image.width}x{image.height}"
                )
    if msg_type == "progress" and fields["step"] > fields["total"]:
        raise bad(f"progress.step: {fields['step']} exceeds total {fields['total']}")


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
