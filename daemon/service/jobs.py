"""Accepted jobs and the queue policy: who waits, who runs, positions, heartbeats, and
when a job is cancelled because its client went silent or it ran too long.

Every job is addressed by (ROUTER identity, client-chosen id), so two clients may use the
same id. The queue sends its messages through an :class:`Outbox` and never blocks.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from neural_style.daemon.engine.params import StyleParams
from neural_style.daemon.service import admission
from neural_style.daemon.service.codec import checked_array
from neural_style.daemon.service.config import ServerConfig
from neural_style.daemon.service.outbox import Outbox
from neural_style.shared import defaults, protocol
from neural_style.shared.errors import ErrorCode, NeuralStyleError
from neural_style.shared.protocol import Message

log = logging.getLogger("neural_style.daemon.service")

#: How long a graceful shutdown waits for the running job to reach its next step.
SHUTDOWN_GRACE_S = 30.0
#: After a time-limit cancel, how long the worker may take to reach its next step before
#: the watchdog gives up on the job (answers its client) and refuses new work.
WATCHDOG_GRACE_S = 600.0
RESTART_HINT = f"Restart the daemon: neural-style stop, then {defaults.START_COMMAND}."

JobKey = tuple[bytes, str]


@dataclass(eq=False)
class ServiceJob:
    """One accepted job, shared (carefully) by the loop and the worker."""

    ident: bytes
    job_id: str
    content: np.ndarray
    styles: list[np.ndarray]
    mask: np.ndarray | None
    params: StyleParams
    #: The starting image (refine an earlier result), or None: the content.
    init: np.ndarray | None
    preview_max_side: int
    heartbeat_s: float
    #: Frames mode: the previous frame's (content, stylized result), and the temporal weight.
    previous: tuple[np.ndarray, np.ndarray] | None = None
    temporal_weight: float | None = None
    submitted: float = field(default_factory=time.monotonic)
    cancel: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str = ""
    cancel_step: int = 0
    #: Written by the worker, read by the loop (ints: atomic enough for a status line).
    step: int = 0
    total: int = 0
    started: float = 0.0
    last_sent: float = field(default_factory=time.monotonic)
    #: Bytes of received images it holds, and its estimated peak memory while running.
    nbytes: int = 0
    estimate: int = 0
    #: When the worker last reached a step (monotonic), for the watchdog.
    last_step: float = 0.0
    #: Given up by the watchdog: its client was answered, later worker events are ignored.
    abandoned: bool = False

    @property
    def key(self) -> JobKey:
        return (self.ident, self.job_id)

    def request_cancel(self, reason: str) -> None:
        if not self.cancel.is_set():
            self.cancel_reason = reason
            self.cancel_step = self.step
            self.cancel.set()

    @classmethod
    def from_submit(cls, ident: bytes, f: dict[str, Any]) -> ServiceJob:
        """Build (and size-check) a job from a validated ``submit`` message's fields."""
        params = StyleParams.from_dict(f["params"])
        if f.get("preview_every"):
            params = replace(params, preview_every=f["preview_every"])
        content = checked_array("content", f["content"])
        styles = [checked_array(f"styles[{i}]", s) for i, s in enumerate(f["styles"])]
        mask = checked_array("mask", f["mask"]) if "mask" in f else None
        init = checked_array("init", f["init"]) if "init" in f else None
        previous = None
        if "previous_content" in f:  # the protocol checked that both are there
            previous = (
                checked_array("previous_content", f["previous_content"]),
                checked_array("previous_result", f["previous_result"]),
            )
        work = admission.check_work_sizes(content, styles, params)
        nbytes = content.nbytes + sum(s.nbytes for s in styles)
        nbytes += mask.nbytes if mask is not None else 0
        nbytes += init.nbytes if init is not None else 0
        nbytes += sum(p.nbytes for p in previous) if previous is not None else 0
        return cls(
            ident=ident,
            job_id=f["job"],
            content=content,
            styles=styles,
            mask=mask,
            params=params,
            init=init,
            preview_max_side=f.get("preview_max_side", defaults.PREVIEW_SIDE),
            heartbeat_s=f.get("heartbeat_s", protocol.DEFAULT_HEARTBEAT_S),
            previous=previous,
            temporal_weight=f.get("temporal_weight"),
            nbytes=nbytes,
            # the previous frame's two images take an init's room each (float copies)
            estimate=admission.estimate_job_bytes(content, styles, work, init)
            + (
                2 * admission.EST_INIT_BYTES_PER_PIXEL * content.shape[0] * content.shape[1]
                if previous is not None
                else 0
            ),
        )


class JobQueue:
    """Waiting jobs (FIFO), the running ones (up to the executor's ``capacity``), and the
    policy around them."""

    def __init__(
        self,
        config: ServerConfig,
        outbox: Outbox,
        run: Callable[[ServiceJob], None],
        counters: dict[str, int],
        stopping: Callable[[], bool],
        capacity: Callable[[], int] = lambda: 1,
        unavailable: Callable[[], str] = lambda: "",
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.counters = counters
        #: Hands the next job to the executor, while fewer than ``capacity()`` run.
        self._run = run
        self.capacity = capacity
        #: Why the executor can run no job now ("" when it can): new jobs are refused busy.
        self.unavailable = unavailable
        self.jobs: dict[JobKey, ServiceJob] = {}
        self.waiting: deque[ServiceJob] = deque()
        #: The running jobs, oldest first.
        self.active: list[ServiceJob] = []
        self.last_seen: dict[bytes, float] = {}
        #: Why the worker counts as stuck ("" while it is fine): no new jobs then.
        self.wedged = ""
        #: True once a shutdown was asked for: nothing new is admitted or started.
        self.stopping = stopping
        ram = admission.physical_memory()
        self.max_job_bytes = config.max_job_bytes or int(ram * 0.8)
        self.max_queue_bytes = config.max_queue_bytes or int(ram * 0.25)
        outbox.on_sent = self._touch

    @property
    def running(self) -> ServiceJob | None:
        """The oldest running job (the only one on a one-worker executor), or None."""
        return self.active[0] if self.active else None

    @property
    def queue_bytes(self) -> int:
        return sum(j.nbytes for j in self.waiting)

    def _touch(self, ident: bytes, job_id: str) -> None:
        job = self.jobs.get((ident, job_id))
        if job is not None:
            job.last_sent = time.monotonic()

    # -- admission
    def submit(self, ident: bytes, f: dict[str, Any]) -> ServiceJob:
        """Admit a job or raise the error to answer (busy, too_large, bad_request...)."""
        if (ident, f["job"]) in self.jobs:
            raise NeuralStyleError(ErrorCode.BAD_REQUEST, f"Job id {f['job']!r} is already in use.")
        if self.stopping():
            raise NeuralStyleError(ErrorCode.BUSY, "The daemon is shutting down.")
        if self.wedged:
            raise NeuralStyleError(
                ErrorCode.INTERNAL,
                f"The daemon's worker is stuck ({self.wedged}); it accepts no new jobs.",
                RESTART_HINT,
            )
        mine = sum(1 for k in self.jobs if k[0] == ident)
        if mine >= self.config.max_jobs_per_client:
            self.counters["busy"] += 1
            raise NeuralStyleError(
                ErrorCode.BUSY,
                f"This client already has {mine} jobs open; the daemon allows "
                f"{self.config.max_jobs_per_client} per client, so other clients get a turn.",
                "Wait for one of your jobs to finish, or restart the daemon with a larger "
                "--max-jobs-per-client.",
            )
        down = self.unavailable()
        if down:
            self.counters["busy"] += 1
            raise NeuralStyleError(
                ErrorCode.BUSY,
                f"The daemon cannot run jobs now: {down}",
                "Try again in a moment; `neural-style status` shows the backend's state.",
            )
        if len(self.waiting) >= self.config.queue_size:
            self.counters["busy"] += 1
            raise NeuralStyleError(
                ErrorCode.BUSY,
                f"The daemon's queue is full ({len(self.waiting)} jobs waiting).",
                "Try again when a job has finished, or restart the daemon with a larger --queue.",
            )
        job = ServiceJob.from_submit(ident, f)
        self._check_memory(job)
        self.jobs[job.key] = job
        self.waiting.append(job)
        position = len(self.waiting) - 1 + bool(self.active)
        self.outbox.send(ident, Message("accepted", {"job": job.job_id, "position": position}))
        log.info(
            "job %s: accepted %dx%d, %d style(s), %d steps at size %d, position %d",
            job.job_id, job.content.shape[1], job.content.shape[0], len(job.styles),
            job.params.iterations, job.params.size, position,
        )  # fmt: skip
        self.dispatch()
        return job

    def _check_memory(self, job: ServiceJob) -> None:
        """Refuse (too_large, with the figures) a job whose estimated peak memory cannot
        fit, or whose images would push the queue's bytes over its bound."""
        gib = admission.gib
        if job.estimate > self.max_job_bytes:
            raise NeuralStyleError(
                ErrorCode.TOO_LARGE,
                f"This job would need about {gib(job.estimate)} of memory at its working "
                f"size; this daemon allows {gib(self.max_job_bytes)} per job.",
                "Lower the size parameter, send smaller or fewer style images, or restart "
                "the daemon with a larger --max-job-memory.",
            )
        queued = self.queue_bytes
        if queued + job.nbytes > self.max_queue_bytes:
            self.counters["busy"] += 1
            raise NeuralStyleError(
                ErrorCode.TOO_LARGE if job.nbytes > self.max_queue_bytes else ErrorCode.BUSY,
                f"The queue holds {gib(queued)} of images; this job's {gib(job.nbytes)} "
                f"would exceed its bound of {gib(self.max_queue_bytes)}.",
                "Try again when a job has finished, or send smaller images.",
            )

    # -- moving jobs along
    def dispatch(self) -> None:
        """Start waiting jobs while fewer than ``capacity()`` run."""
        started = False
        while self.waiting and not self.stopping() and len(self.active) < self.capacity():
            job = self.waiting.popleft()
            self.active.append(job)
            self._run(job)
            started = True
        if started:
            for position, waiting in enumerate(self.waiting, start=1):
                self._heartbeat(waiting, position)

    def cancel(self, ident: bytes, job_id: str) -> None:
        job = self.jobs.get((ident, job_id))
        if job is None:
            return  # already finished: the result or error is on its way
        if job in self.active:
            log.info("job %s: cancel requested at step %d", job.job_id, job.step)
            job.request_cancel("client")
        else:
            self.cancel_waiting(job, "client")

    def cancel_waiting(self, job: ServiceJob, reason: str) -> None:
        with contextlib.suppress(ValueError):
            self.waiting.remove(job)
        self.jobs.pop(job.key, None)
        self.counters["cancelled"] += 1
        log.info("job %s: cancelled while queued (%s)", job.job_id, reason)
        self.outbox.send(job.ident, Message("cancelled", {"job": job.job_id, "reason": reason}))

    def stop_all(self) -> None:
        """Shutdown: cancel the waiting jobs, ask the running one to stop."""
        for job in list(self.waiting):
            self.cancel_waiting(job, "shutdown")
        for job in self.active:
            job.request_cancel("shutdown")

    def end(self, job: ServiceJob) -> None:
        self.jobs.pop(job.key, None)
        if job in self.active:
            self.active.remove(job)
        self.dispatch()

    # -- periodic duties
    def tick(self, now: float) -> None:
        """Heartbeats to quiet jobs, cancels for silent clients, the watchdog."""
        self.dispatch()  # the executor's capacity may have grown (a worker came back)
        self._watchdog(now)
        for job in list(self.jobs.values()):
            seen = self.last_seen.get(job.ident, job.submitted)
            if now - seen > protocol.CLIENT_GONE_HEARTBEATS * job.heartbeat_s:
                self._client_gone(job, now - seen)
            elif now - job.last_sent >= job.heartbeat_s:
                position = 0 if job in self.active else self._position(job)
                self._heartbeat(job, position)
        if len(self.last_seen) > 1000:  # forget idle peers
            active = {job.ident for job in self.jobs.values()}
            self.last_seen = {i: t for i, t in self.last_seen.items() if i in active}

    def _watchdog(self, now: float) -> None:
        """The per-job time limit, and a worker that stops reaching its next step."""
        for job in list(self.active):
            self._watch(job, now)

    def _watch(self, job: ServiceJob, now: float) -> None:
        if not job.started or job.abandoned:
            return
        limit = self.config.job_time_limit_s
        if limit and now - job.started > limit and not job.cancel.is_set():
            log.warning("job %s: over the %g s time limit, stopping it", job.job_id, limit)
            job.request_cancel("time_limit")
        stuck = now - max(job.last_step, job.started)
        if job.cancel.is_set() and stuck > WATCHDOG_GRACE_S + SHUTDOWN_GRACE_S:
            job.abandoned = True
            self.wedged = f"job {job.job_id} has not reached a step for {stuck:.0f} s"
            log.error("watchdog: %s; giving up on it", self.wedged)
            self.jobs.pop(job.key, None)
            self.active.remove(job)
            exc = NeuralStyleError(
                ErrorCode.TIMEOUT,
                f"The daemon's worker stopped making progress ({self.wedged}).",
                RESTART_HINT,
            )
            self.outbox.send_error(job.ident, exc, job=job.job_id)
            for waiting in list(self.waiting):
                self.cancel_waiting(waiting, "shutdown")

    def _client_gone(self, job: ServiceJob, silent: float) -> None:
        if job in self.active:
            if not job.cancel.is_set():
                log.info("job %s: client silent for %.1f s, cancelling", job.job_id, silent)
                job.request_cancel("client_gone")
        else:
            self.cancel_waiting(job, "client_gone")

    def _position(self, job: ServiceJob) -> int:
        try:
            return self.waiting.index(job) + bool(self.active)
        except ValueError:
            return 0

    def _heartbeat(self, job: ServiceJob, position: int) -> None:
        state = "running" if job in self.active else "queued"
        fields = {"job": job.job_id, "state": state, "position": position}
        self.outbox.send(job.ident, Message("heartbeat", fields), droppable=True)
