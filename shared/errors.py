"""Error codes and the one exception type that carries them.

The same codes travel in the protocol's ``error`` message, drive the CLI's exit status and
become the GIMP plug-in's messages, so a problem is named the same way everywhere.
"""

from __future__ import annotations

from enum import Enum


class ErrorCode(str, Enum):
    """Why a request failed. Values are the strings sent on the wire."""

    BAD_REQUEST = "bad_request"
    TOO_LARGE = "too_large"
    BUSY = "busy"
    VERSION_MISMATCH = "version_mismatch"
    WEIGHTS_MISSING = "weights_missing"
    OUT_OF_MEMORY = "out_of_memory"
    CANCELLED = "cancelled"
    INTERNAL = "internal"
    UNAUTHENTICATED = "unauthenticated"
    DAEMON_UNAVAILABLE = "daemon_unavailable"
    TIMEOUT = "timeout"


#: Errors a daemon may send unsigned, because it cannot sign for a peer it does not trust
#: (the protocol accepts them unsigned; the daemon sends them without its key).
UNSIGNED_ERRORS: frozenset[ErrorCode] = frozenset(
    {ErrorCode.UNAUTHENTICATED, ErrorCode.VERSION_MISMATCH}
)


class NeuralStyleError(Exception):
    """A failure the user can act on: a code, a one-paragraph message and a hint.

    ``hint`` names the command or change that fixes the problem, when there is one.
    """

    def __init__(self, code: ErrorCode, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n{self.hint}" if self.hint else self.message

    def __repr__(self) -> str:
        return f"NeuralStyleError({self.code.value!r}, {self.message!r}, {self.hint!r})"
