"""Error codes and the one exception type that carries them.

The same codes travel in the protocol's ``error`` message, drive the CLI's exit status and
become the GIMP plug-in's messages, so a problem is named the same way everywhere.
"""

from __future__ import annotations

from enum import Enum

from .defaults import FETCH_WEIGHTS_COMMAND, INSTALL_PLUGIN_COMMAND


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
    #: The daemon's engine process died while running the job (a new one was started).
    WORKER_CRASHED = "worker_crashed"
    #: The job ran past the daemon's time limit (``serve --job-time-limit``).
    TIME_LIMIT = "time_limit"


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


# --------------------------------------------------------------------------- what users read

#: What a person is told for each code, worded once for the CLI and the GIMP plug-in. The
#: placeholders are filled by :func:`user_message`: ``{where}`` (" at ENDPOINT" or ""),
#: ``{start}`` (the command that starts the daemon at that endpoint), ``{fetch}``,
#: ``{reinstall}``, ``{client}`` ("plug-in", "command") and ``{size}`` (the setting to lower:
#: 'Max size' in GIMP, --size in the CLI). Codes without an entry fall back to the message.
USER_TEXTS: dict[ErrorCode, str] = {
    ErrorCode.DAEMON_UNAVAILABLE: (
        "The Neural Style daemon is not running{where}. Start it with:\n    {start}\n"
        "If it does not start, `neural-style doctor` says what is wrong."
    ),
    ErrorCode.WEIGHTS_MISSING: (
        "The Neural Style daemon has no VGG-19 weights. Download them with:\n    {fetch}\n"
        "then restart the daemon ({start}). `neural-style doctor` shows which file is used."
    ),
    ErrorCode.TOO_LARGE: (
        "The image is too large for the daemon. Lower {size}, use a smaller area, or scale the "
        "image down."
    ),
    ErrorCode.VERSION_MISMATCH: (
        "The {client} and the daemon are different versions. Reinstall the plug-in from the "
        "daemon's installation with:\n    {reinstall}\nand restart the daemon."
    ),
    ErrorCode.OUT_OF_MEMORY: "The daemon ran out of memory. Lower {size} and try again.",
    ErrorCode.BUSY: "The daemon is busy with other jobs (its queue is full). Try again shortly.",
    ErrorCode.UNAUTHENTICATED: (
        "The daemon refused the {client}'s key. Restart the daemon, and make sure the {client} "
        "sees its connection file (set NEURAL_STYLE_CONNECTION_FILE, e.g. when GIMP runs "
        "sandboxed)."
    ),
    ErrorCode.CANCELLED: "The job was cancelled before it finished.",
    ErrorCode.TIMEOUT: (
        "The daemon did not answer in time. Check it with 'neural-style status' or "
        "'neural-style doctor', or restart it:\n    {start}"
    ),
    ErrorCode.WORKER_CRASHED: (
        "The daemon's engine crashed while running this job (it started a new one). Try "
        "again; if it happens again, lower {size}."
    ),
    ErrorCode.TIME_LIMIT: (
        "The job ran longer than the daemon's time limit. Lower {size} or the number of "
        "steps, or restart the daemon with a larger --job-time-limit."
    ),
}
#: The daemon went silent while a job was open (the client's DaemonDied, code
#: daemon_unavailable).
DAEMON_DIED_TEXT = (
    "The Neural Style daemon stopped answering in the middle of the job (it crashed or was "
    "stopped). Restart it with:\n    {start}\nthen run it again."
)
#: What fills the placeholders unless the caller says otherwise.
TEXT_DEFAULTS: dict[str, str] = {
    "where": "",
    "start": "neural-style serve",
    "fetch": FETCH_WEIGHTS_COMMAND,
    "reinstall": INSTALL_PLUGIN_COMMAND,
    "client": "command",
    "size": "the size",
}


def user_message(
    code: ErrorCode | str | None,
    message: str,
    hint: str = "",
    *,
    died: bool = False,
    endpoint: str = "",
    **context: str,
) -> str:
    """The text a person reads for an error: what happened and what to do, then the details.

    ``endpoint``: the one in use ("" = the default), named in "not running" and in the start
    command; ``context`` overrides :data:`TEXT_DEFAULTS` (``start`` is derived from the
    endpoint unless given).
    """
    values = {**TEXT_DEFAULTS, **context}
    if endpoint:
        values["where"] = f" at {endpoint}"
        if "start" not in context:
            values["start"] = f"{TEXT_DEFAULTS['start']} --bind {endpoint}"
    try:
        known = ErrorCode(code) if code is not None else None
    except ValueError:
        known = None
    template = DAEMON_DIED_TEXT if died else USER_TEXTS.get(known) if known else None
    if template is None:
        if hint and hint not in message:
            message = f"{message}\n{hint}"
        return f"Neural Style failed.\nDetails: {message}"
    return f"{template.format(**values)}\nDetails: {message}"
