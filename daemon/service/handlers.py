"""What the daemon does with each client message and each worker event.

A mixin of :class:`~neural_style.daemon.service.server.Server`: ``_on_<type>`` answers a
client message, ``_event_<kind>`` forwards what the worker reported. Both only touch the
queue, the outbox and the counters, so the loop itself stays about sockets.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from pathlib import Path
from typing import Any

from neural_style.daemon.engine.params import StylizeResult
from neural_style.daemon.service.codec import image_from_array
from neural_style.daemon.service.config import ServerConfig
from neural_style.daemon.service.executor import Executor
from neural_style.daemon.service.gatekeeper import Gatekeeper
from neural_style.daemon.service.jobs import JobQueue, ServiceJob
from neural_style.daemon.service.outbox import Outbox
from neural_style.daemon.service.speed import StepTimes
from neural_style.shared import __version__, limits, protocol
from neural_style.shared.errors import ErrorCode, NeuralStyleError
from neural_style.shared.protocol import ImageBuf, Message
from neural_style.shared.records import STEP_COLUMNS, JobStats, Step

log = logging.getLogger("neural_style.daemon.service")


class Handlers:
    """Client-message and worker-event handlers (mixed into the Server)."""

    config: ServerConfig
    executor: Executor
    queue: JobQueue
    outbox: Outbox
    gate: Gatekeeper
    counters: dict[str, int]
    step_times: StepTimes
    endpoint: str
    started: float
    curve_public: str
    connection_path: Path | None

    def request_stop(self, *_: object) -> None:
        raise NotImplementedError

    # -- client messages
    def _on_hello(self, ident: bytes, msg: Message) -> None:
        self.outbox.reply(ident, msg, "welcome", self._welcome())

    def _on_ping(self, ident: bytes, msg: Message) -> None:
        fields = {"server_time": time.time()}
        if "t" in msg.fields:
            fields["t"] = msg.fields["t"]
        self.outbox.reply(ident, msg, "pong", fields)

    def _on_status(self, ident: bytes, msg: Message) -> None:
        self.outbox.reply(ident, msg, "status_reply", {"info": self.status_info()})

    def _on_shutdown(self, ident: bytes, msg: Message) -> None:
        log.info("shutdown requested by a client")
        self.outbox.reply(ident, msg, "shutdown_ack", {})
        self.request_stop()

    def _on_heartbeat(self, ident: bytes, msg: Message) -> None:
        """Nothing to do: receiving it refreshed the client's last-seen time."""

    def _on_cancel(self, ident: bytes, msg: Message) -> None:
        self.queue.cancel(ident, msg.fields["job"])

    def _on_submit(self, ident: bytes, msg: Message) -> None:
        self.queue.submit(ident, msg.fields)

    # -- worker events
    def _event_progress(self, job: ServiceJob, payload: tuple[Step, float]) -> None:
        step, eta = payload
        fields = {**step.to_dict(), "job": job.job_id, "eta_s": eta}
        fields["elapsed_s"] = max(0.0, fields["elapsed_s"])
        self.outbox.send(job.ident, Message("progress", fields), droppable=True)

    def _event_preview(self, job: ServiceJob, payload: tuple[int, ImageBuf]) -> None:
        step, image = payload
        msg = Message("preview", {"job": job.job_id, "step": step, "image": image})
        self.outbox.send(job.ident, msg, droppable=True)

    def _event_result(self, job: ServiceJob, result: StylizeResult) -> None:
        self.queue.end(job)
        self.counters["done"] += 1
        self.counters["style_cache_hits"] += bool(result.style_cache_hit)
        self.step_times.record(result.iterates, result.work_size)
        log.info(
            "job %s: done in %.2f s (%d steps, style cache %s)",
            job.job_id, result.elapsed, len(result.iterates),
            "hit" if result.style_cache_hit else "miss",
        )  # fmt: skip
        rows = [[row[c] for c in STEP_COLUMNS] for row in map(Step.to_dict, result.iterates)]
        fields = {
            "job": job.job_id,
            "image": image_from_array(result.image),
            "stats": self._stats(job, result).to_dict(),
            "iterates": protocol.pack_iterates(rows),
        }
        self.outbox.send(job.ident, Message("result", fields))

    def _event_cancelled(self, job: ServiceJob, step: int) -> None:
        self.queue.end(job)
        if job.cancel_reason == "time_limit":
            self.counters["timed_out"] += 1
            limit = self.config.job_time_limit_s
            log.info("job %s: stopped at step %d by the %g s time limit", job.job_id, step, limit)
            exc = NeuralStyleError(
                ErrorCode.TIME_LIMIT,
                f"The job ran longer than this daemon's limit of {limit:g} s and was "
                f"stopped at step {step}.",
                "Lower the size or iterations, or restart the daemon with a larger "
                "--job-time-limit.",
            )
            self.outbox.send_error(job.ident, exc, job=job.job_id)
            return
        self.counters["cancelled"] += 1
        log.info(
            "job %s: cancelled (%s) at step %d, requested at step %d",
            job.job_id, job.cancel_reason, step, job.cancel_step,
        )  # fmt: skip
        fields = {
            "job": job.job_id,
            "reason": job.cancel_reason or "client",
            "step": int(step),
            "requested_at_step": int(job.cancel_step),
        }
        self.outbox.send(job.ident, Message("cancelled", fields))

    def _event_error(self, job: ServiceJob, exc: NeuralStyleError) -> None:
        self.queue.end(job)
        self.counters["failed"] += 1
        log.info("job %s: failed (%s) %s", job.job_id, exc.code.value, exc.message)
        self.outbox.send_error(job.ident, exc, job=job.job_id)

    def _stats(self, job: ServiceJob, result: StylizeResult) -> JobStats:
        its = result.iterates
        steady = [b.elapsed_s - a.elapsed_s for a, b in itertools.pairwise(its[-20:])]
        last = its[-1] if its else None
        return JobStats(
            elapsed_s=float(result.elapsed),
            queue_wait_s=max(0.0, job.started - job.submitted),
            steps=len(its),
            stopped=bool(result.stopped),
            style_cache_hit=bool(result.style_cache_hit),
            work_size=[int(v) for v in result.work_size],
            precision=result.precision,
            first_step_s=float(its[0].elapsed_s) if its else 0.0,
            step_s=float(sorted(steady)[len(steady) // 2]) if steady else 0.0,
            loss=float(last.loss) if last else 0.0,
            content=float(last.content) if last else 0.0,
            style=float(last.style) if last else 0.0,
            tv=float(last.tv) if last else 0.0,
            device=self.executor.device,
            weights=weights_dict(self.executor.weights),
            frame=dict(getattr(result, "frame", None) or {}),
        )

    # -- descriptions
    def _welcome(self) -> dict[str, Any]:
        return {
            "protocol": protocol.PROTOCOL_VERSION,
            "server": __version__,
            "pid": os.getpid(),
            "device": self.executor.device,
            "model": "vgg19",
            "weights": weights_dict(self.executor.weights),
            "limits": {
                "max_pixels": self.config.max_pixels,
                "max_side": limits.MAX_IMAGE_SIDE,
                "max_work_side": limits.MAX_WORK_SIDE,
                "max_styles": limits.MAX_STYLES,
                "max_iterations": limits.MAX_ITERATIONS,
                "queue": self.config.queue_size,
                "min_work_short_side": limits.MIN_WORK_SHORT_SIDE,
                "max_job_bytes": self.queue.max_job_bytes,
                "max_queue_bytes": self.queue.max_queue_bytes,
                "max_jobs_per_client": self.config.max_jobs_per_client,
                # Jobs that run at once (a cluster's actors: batch keeps that many in
                # flight) and where (local, ray).
                "workers": self.executor.capacity,
                "backend": str(self.executor.describe().get("backend", "local")),
                # Once a job has finished here. In this open map, not as fields of their
                # own: an older client's strict decoder refuses unknown fields.
                **self.step_times.report(),
            },
            "features": list(protocol.FEATURES),
            "heartbeat_s": protocol.DEFAULT_HEARTBEAT_S,
        }

    def status_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "server": __version__,
            "protocol": protocol.PROTOCOL_VERSION,
            "pid": os.getpid(),
            "endpoint": self.endpoint,
            "uptime_s": time.time() - self.started,
            "device": self.executor.device,
            "model": "vgg19",
            "weights": weights_dict(self.executor.weights),
            "queue": {"waiting": len(self.queue.waiting), "max": self.config.queue_size},
            "running": None,
            "jobs": dict(self.counters),
            "max_pixels": self.config.max_pixels,
            "connection_file": str(self.connection_path or ""),
            "log_file": str(self.config.log_file or ""),
            "curve": bool(self.curve_public),
            "rss_bytes": _rss(),
            "connections": len(self.gate.connections),
            "max_connections": self.config.max_connections,
            "queue_bytes": self.queue.queue_bytes,
            "max_queue_bytes": self.queue.max_queue_bytes,
            "wedged": self.queue.wedged,
            "worker": self.executor.describe(),
            "step_s_per_mpx": None,
            "step_s_by_side": {},
            **self.step_times.report(),
        }
        now = time.monotonic()
        jobs = [_running_info(job, now) for job in self.queue.active]
        #: The oldest running job (what a one-worker daemon's clients read), and all of them.
        info["running"] = jobs[0] if jobs else None
        info["running_jobs"] = jobs
        info["capacity"] = self.executor.capacity
        worker = info["worker"]
        # The cluster's actors as a list of their own at the top (status maps are shallow).
        info["actors"] = worker.pop("actors", []) if isinstance(worker, dict) else []
        return info


def _running_info(job: ServiceJob, now: float) -> dict[str, Any]:
    return {
        "step": job.step,
        "total": job.total or job.params.iterations,
        "elapsed_s": now - job.started if job.started else 0.0,
    }


def weights_dict(w: Any) -> dict[str, Any]:
    """The weights' description (an engine's ``weights``: path, checksum, synthetic)."""
    return {
        "path": str(getattr(w, "path", "")),
        "sha256": str(getattr(w, "sha256", "")),
        "synthetic": bool(getattr(w, "synthetic", False)),
    }


def _rss() -> int:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:  # psutil missing or restricted: the status line just lacks it
        return 0
