"""Field validators of the wire protocol: each checks one decoded header value and raises
:class:`ProtocolError` (with the reply's error code) for anything out of bounds.

Standard library only (copied into the GIMP plug-in folder with the rest of the package).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from .errors import ErrorCode, NeuralStyleError

#: Longest string any field may hold.
MAX_STR_LEN: int = 4096

#: A validator: ``check(where, value)`` returns the checked value or raises ProtocolError.
Validator = Callable[[str, Any], Any]


class ProtocolError(NeuralStyleError):
    """A frame that breaks the protocol; ``code`` is the error reply to send."""

    def __init__(
        self, code: ErrorCode, message: str, hint: str = "", *, fields: dict | None = None
    ):
        super().__init__(code, message, hint)
        #: What could be read of the header (``req``, ``job``) to address the reply.
        self.fields = fields or {}


def bad(message: str, code: ErrorCode = ErrorCode.BAD_REQUEST) -> ProtocolError:
    """A bad_request (or ``code``) ProtocolError saying ``message``."""
    return ProtocolError(code, message)


def show(value: Any) -> str:
    """``value`` as an error message quotes it: its repr, cut at 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_int(value: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def integer(lo: int, hi: int) -> Validator:
    """An integer in [lo, hi]."""

    def check(where: str, value: Any) -> int:
        if not is_int(value) or not lo <= value <= hi:
            raise bad(f"{where}: expected an integer in [{lo}, {hi}], got {show(value)}")
        return value

    return check


def number(lo: float = -math.inf, hi: float = math.inf, *, finite: bool = True) -> Validator:
    """A number in [lo, hi] (as float); NaN and infinities only when not ``finite``."""

    def check(where: str, value: Any) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and math.isnan(value):
            ok = not finite
        elif ok:
            ok = (not finite or math.isfinite(value)) and lo <= value <= hi
        if not ok:
            kind = "a finite number" if finite else "a number"
            raise bad(f"{where}: expected {kind} in [{lo:g}, {hi:g}], got {show(value)}")
        return float(value)

    return check


def string(max_len: int = MAX_STR_LEN, pattern: str | None = None) -> Validator:
    """A string of at most ``max_len`` characters, matching ``pattern`` when given."""
    regex = re.compile(pattern) if pattern else None

    def check(where: str, value: Any) -> str:
        if not isinstance(value, str) or len(value) > max_len:
            raise bad(f"{where}: expected a string of at most {max_len} characters")
        if regex is not None and not regex.fullmatch(value):
            raise bad(f"{where}: {show(value)} does not match {pattern}")
        return value

    return check


def choice(*options: str) -> Validator:
    """One of ``options``."""

    def check(where: str, value: Any) -> str:
        if value not in options:
            raise bad(f"{where}: expected one of {', '.join(options)}, got {show(value)}")
        return value

    return check


def boolean(where: str, value: Any) -> bool:
    """True or false."""
    if not isinstance(value, bool):
        raise bad(f"{where}: expected true or false, got {show(value)}")
    return value


def list_of(item: Validator, min_len: int, max_len: int) -> Validator:
    """A list of ``min_len`` to ``max_len`` items, each checked by ``item``."""

    def check(where: str, value: Any) -> list:
        if not isinstance(value, list) or not min_len <= len(value) <= max_len:
            raise bad(f"{where}: expected a list of {min_len} to {max_len} items")
        return [item(f"{where}[{i}]", v) for i, v in enumerate(value)]

    return check


def plain(max_depth: int = 3) -> Validator:
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
            raise bad(f"{where}: expected a map, got {show(value)}")
        for key, item in value.items():
            if not isinstance(key, str):
                raise bad(f"{where}: keys must be strings, got {show(key)}")
            if not value_ok(item, max_depth - 1):
                raise bad(f"{where}.{key}: unsupported value {show(item)}")
        return value

    return check


def exact_keys(where: str, value: dict, required: set[str], optional: set[str]) -> None:
    """``value`` has every ``required`` key and no key outside required | optional."""
    missing = sorted(required - value.keys())
    if missing:
        raise bad(f"{where}: missing field(s) {', '.join(missing)}")
    unknown = sorted(str(k) for k in value.keys() - required - optional)
    if unknown:
        raise bad(f"{where}: unknown field(s) {', '.join(unknown)}")
