"""One exception class per error code, what a client raises for an error reply (and for a
daemon that does not answer); ``error_for`` picks the class for a code.

Standard library only (copied into the GIMP plug-in folder with the rest of the package).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .defaults import START_COMMAND
from .errors import ErrorCode, NeuralStyleError

if TYPE_CHECKING:
    from .events import Cancelled
    from .messages import Message


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


def error_from(msg: Message) -> NeuralStyleError:
    """The exception an ``error`` message stands for."""
    return error_for(msg.fields["code"], msg.fields["message"], msg.get("hint", ""))
