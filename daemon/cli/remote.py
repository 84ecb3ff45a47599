"""The CLI's remote path: find a daemon, run one job on it as ``StyleTransfer.stylize``
would, and word the daemon's errors as the plug-in does."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neural_style.daemon.engine.params import StyleParams, StylizeResult
from neural_style.daemon.service import array_from_image, image_from_array
from neural_style.shared import protocol
from neural_style.shared.client import (
    Client,
    DaemonDied,
    Done,
    Event,
    Job,
    Preview,
    Progress,
    Unauthenticated,
    VersionMismatch,
)
from neural_style.shared.errors import NeuralStyleError, user_message
from neural_style.shared.records import Step

#: How long ``find_daemon`` waits for a pong.
FIND_TIMEOUT_S = 1.0


def daemon_error_text(exc: NeuralStyleError, endpoint: str | None) -> str:
    """A daemon's (or the client's) error as the CLI says it: shared/errors.py's texts, the
    same ones the GIMP plug-in shows."""
    return user_message(
        exc.code, exc.message, exc.hint, died=isinstance(exc, DaemonDied),
        endpoint=endpoint or "", client="command", size="--size",
    )  # fmt: skip


def daemon_endpoint(args: argparse.Namespace) -> str | None:
    """Endpoint of the daemon a job command uses (``--daemon``, else one that answers), or
    None to run in-process (``--local``, or none answers)."""
    if args.local:
        return None
    if args.daemon:
        return str(args.daemon)
    return find_daemon(None)


@dataclass
class DaemonInfo:
    """Which daemon ran a job: for the CLI's JSON report."""

    endpoint: str
    device: str
    weights: dict[str, Any]
    """``{"path", "sha256", "synthetic"}`` of the daemon's VGG-19 weights."""
    server_version: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
    """The daemon's statistics for the job (queue wait, first-step time, losses…)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "device": self.device,
            "weights": dict(self.weights),
            "server_version": self.server_version,
            "stats": dict(self.stats),
        }


@dataclass
class RemoteStylizeResult(StylizeResult):
    """A :class:`StylizeResult` that also says which daemon produced it."""

    daemon: DaemonInfo | None = None


def find_daemon(endpoint: str | None = None) -> str | None:
    """The endpoint of a daemon that answers a ping within ~1 s, else None.

    A daemon that answers but refuses us (wrong key, other version) still counts: the
    caller's next request then fails with that precise error instead of silently running
    locally.
    """
    try:
        with Client(endpoint, timeout=FIND_TIMEOUT_S) as client:
            with contextlib.suppress(Unauthenticated, VersionMismatch):
                client.ping()
            return client.endpoint
    except NeuralStyleError:
        return None


def stylize_remote(
    endpoint: str | None,
    content: np.ndarray,
    styles: list[np.ndarray],
    params: StyleParams,
    on_iterate: Callable[[Step], None] | None = None,
    mask: np.ndarray | None = None,
    *,
    timeout: float = 10.0,
    init: np.ndarray | None = None,
    previous: tuple[np.ndarray, np.ndarray] | None = None,
    temporal_weight: float | None = None,
) -> RemoteStylizeResult:
    """Run one job on a daemon; same contract as ``StyleTransfer.stylize`` (``init``: the
    starting image at the content's size, sent as ``submit.init``; ``previous``: frames
    mode, the previous frame's content and result, as ``frames.temporal.stylize_frame``).

    ``on_iterate`` sees the (throttled) progress messages, with the preview attached on
    preview steps; ``result.iterates`` has every step. Ctrl-C cancels the job on the daemon.
    """
    try:
        return _stylize_remote(
            endpoint, content, styles, params, on_iterate, mask, timeout, init,
            previous, temporal_weight,
        )  # fmt: skip
    except NeuralStyleError as exc:  # same type, worded as the plug-in words it
        exc.message, exc.hint = daemon_error_text(exc, endpoint), ""
        exc.args = (exc.message,)
        raise


def _stylize_remote(
    endpoint: str | None,
    content: np.ndarray,
    styles: list[np.ndarray],
    params: StyleParams,
    on_iterate: Callable[[Step], None] | None,
    mask: np.ndarray | None,
    timeout: float,
    init: np.ndarray | None = None,
    previous: tuple[np.ndarray, np.ndarray] | None = None,
    temporal_weight: float | None = None,
) -> RemoteStylizeResult:
    with Client(endpoint, timeout=timeout) as client:
        welcome = client.hello()
        job = client.submit(
            image_from_array(content),
            [image_from_array(s) for s in styles],
            params.to_dict(),
            mask=image_from_array(mask) if mask is not None else None,
            init=image_from_array(init) if init is not None else None,
            preview_every=params.preview_every,
            preview_max_side=protocol.MAX_PREVIEW_SIDE,
            previous=None if previous is None else (
                image_from_array(previous[0]), image_from_array(previous[1])
            ),
            temporal_weight=temporal_weight,
        )  # fmt: skip
        done = _follow(job, on_iterate)  # Ctrl-C: Job.wait cancels the job first
        daemon = DaemonInfo(
            endpoint=client.endpoint,
            device=str(welcome.get("device", "")),
            weights=dict(welcome.get("weights", {})),
            server_version=str(welcome.get("server", "")),
            stats=dict(done.stats),
        )
    return _to_result(done, content, daemon)


def _follow(job: Job, on_iterate: Callable[[Step], None] | None) -> Done:
    """Wait for the job; progress becomes ``Step`` records, with their previews attached."""
    previews: dict[int, np.ndarray] = {}

    def on_event(event: Event) -> None:
        if isinstance(event, Preview):
            previews[event.step] = array_from_image(event.image).astype(np.float32) / 255.0
        elif isinstance(event, Progress) and on_iterate is not None:
            on_iterate(event.to_step(previews.pop(event.step, None)))

    return job.wait(on_event, poll_ms=250)


def _to_result(done: Done, content: np.ndarray, daemon: DaemonInfo) -> RemoteStylizeResult:
    image = np.array(array_from_image(done.image))  # own the memory, writable
    if content.ndim == 2 and image.shape[2] == 1:
        image = image[:, :, 0]
    stats = done.job_stats
    return RemoteStylizeResult(
        image=image,
        iterates=list(done.iterates),
        stopped=stats.stopped,
        elapsed=stats.elapsed_s,
        style_cache_hit=stats.style_cache_hit,
        work_size=(int(stats.work_size[0]), int(stats.work_size[1])),
        precision=stats.precision,
        frame=dict(stats.frame),
        daemon=daemon,
    )
