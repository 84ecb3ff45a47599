"""What the user reads when something fails: shared/errors.py's texts with the plug-in's
commands, and the size check against the daemon's limit before anything is read."""

from __future__ import annotations

from typing import Any

from nsg_bundle import FETCH_WEIGHTS_COMMAND, REINSTALL_COMMAND, shared_errors
from nsg_errors import PluginError
from nsg_launch import serve_command


def start_command(endpoint: str) -> str:
    """The exact command that starts a daemon this plug-in would reach."""
    return " ".join(serve_command(endpoint))


def describe_error(exc: BaseException, endpoint: str = "", client_mod: Any = None) -> str:
    """Turn a client/daemon exception into a message that says what to do next. The texts
    are shared/errors.py's USER_TEXTS (bundled as nsg_shared), worded once with the CLI."""
    code = getattr(getattr(exc, "code", None), "value", getattr(exc, "code", None))
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    hint = getattr(exc, "hint", "") or ""
    died = getattr(client_mod, "DaemonDied", None)
    gone = isinstance(exc, died) if died is not None else type(exc).__name__ == "DaemonDied"
    return shared_errors().user_message(
        code, message, hint, died=gone, endpoint=endpoint, start=start_command(endpoint),
        client="plug-in", size="'Max size'", fetch=FETCH_WEIGHTS_COMMAND,
        reinstall=REINSTALL_COMMAND,
    )  # fmt: skip


def shown_endpoint(endpoint: str, client: Any, client_mod: Any) -> str:
    """The endpoint to name in messages: the user's, else a non-default discovered one.

    A daemon found through its connection file on another port must be restarted with
    ``--bind`` that port, or the plug-in would not find it at the same place again.
    """
    if endpoint or client is None:
        return endpoint
    found = getattr(client, "endpoint", "") or ""
    default = getattr(getattr(client_mod, "protocol", None), "DEFAULT_ENDPOINT", None)
    return found if found and found != default else ""


def check_size(width: int, height: int, hello: dict[str, Any] | None) -> None:
    """PluginError (before anything is read) when the area exceeds the daemon's max_pixels."""
    limits = (hello or {}).get("limits") or {}
    max_pixels = int(limits.get("max_pixels") or 0)
    if max_pixels and width * height > max_pixels:
        side = int(max_pixels**0.5)

        def amount(n: int) -> str:
            return f"{n / 1e6:.1f} megapixels" if n >= 1_000_000 else f"{n:,} pixels"

        raise PluginError(
            f"The area is {width}x{height} ({amount(width * height)}); the Neural Style daemon "
            f"takes at most {amount(max_pixels)} (about {side}x{side}). Select a smaller area "
            "or scale the image down (Image ▸ Scale Image); the result is painted at Max size "
            "anyway."
        )
