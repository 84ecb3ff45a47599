"""The daemon as a service: the socket loop and its handlers, the job queue and its
policy, the engine worker, admission checks and the image codec.

    entry.serve ─▶ server.Server (loop) ─ handlers (messages, worker events)
                      ├─ gatekeeper (connection cap, CURVE allow-list: ZAP)
                      ├─ jobs.JobQueue (waiting/running, positions, heartbeats, cancels)
                      ├─ outbox (non-blocking sends, backlog)
                      └─ worker.Worker (engine thread) ─ codec (ndarray <-> ImageBuf)
"""

from __future__ import annotations

from neural_style.daemon.service.admission import check_work_sizes, estimate_job_bytes
from neural_style.daemon.service.codec import array_from_image, image_from_array, preview_image
from neural_style.daemon.service.config import ServerConfig
from neural_style.daemon.service.entry import running_daemon_problem, serve
from neural_style.daemon.service.gatekeeper import default_authorized_keys, load_curve_keys
from neural_style.daemon.service.jobs import JobQueue, ServiceJob
from neural_style.daemon.service.server import Server
from neural_style.daemon.service.worker import Engine, Worker, WorkerEvent
from neural_style.shared.defaults import is_loopback_endpoint

__all__ = [
    "Engine",
    "JobQueue",
    "Server",
    "ServerConfig",
    "ServiceJob",
    "Worker",
    "WorkerEvent",
    "array_from_image",
    "check_work_sizes",
    "default_authorized_keys",
    "estimate_job_bytes",
    "image_from_array",
    "is_loopback_endpoint",
    "load_curve_keys",
    "preview_image",
    "running_daemon_problem",
    "serve",
]
