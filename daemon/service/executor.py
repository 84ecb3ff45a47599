"""Where jobs run: the seam between the front end (socket loop, queue, admission) and the
engine. The loop hands the running job to an :class:`Executor`, drains its ``events`` and
calls ``tick`` every turn; it never touches the engine itself.

Two implementations: :class:`ThreadExecutor` (the engine in a thread of this process:
the tests' stand-in engines, ``serve --worker thread``) and
:class:`~.supervisor.ProcessExecutor` (the default: the engine in a supervised worker
process, so that a crash or a hang costs one job, not the daemon). The cluster backend,
:class:`~.ray_backend.RayExecutor`, is a third implementation of the same protocol.
"""

from __future__ import annotations

import contextlib
import queue
from typing import Any, Protocol, runtime_checkable

import zmq

from neural_style.daemon.service.jobs import ServiceJob
from neural_style.daemon.service.worker import Engine, Worker, WorkerEvent
from neural_style.shared.errors import ErrorCode, NeuralStyleError

#: Why a backend could not run a job, worded once for every backend: the code, the message
#: (``{why}`` and the other fields filled by :func:`backend_error`) and the hint.
BACKEND_FAILURES: dict[str, tuple[ErrorCode, str, str]] = {
    "load_failed": (
        ErrorCode.INTERNAL,
        "The engine's worker process {why} while loading the model ({exc}).",
        "Run `neural-style doctor` to check TensorFlow and the weights.",
    ),
    "crashed": (
        ErrorCode.WORKER_CRASHED,
        "The engine's worker process {why} while running this job; the daemon started a new one.",
        "Try again; if it happens again, lower the size parameter (the kernel's OOM killer "
        "ends processes that run out of memory) and look at the daemon's log.",
    ),
    "time_limit": (
        ErrorCode.TIME_LIMIT,
        "The job passed the daemon's time limit and did not reach its next step (stuck at "
        "step {step}); its worker process was stopped and a new one started.",
        "Lower the size or iterations, or restart the daemon with a larger --job-time-limit.",
    ),
    "unreachable": (
        ErrorCode.BUSY,
        "The daemon cannot run jobs now: {why}",
        "Try again in a moment; `neural-style status` shows the backend's state.",
    ),
    "bridge_lost": (
        ErrorCode.WORKER_CRASHED,
        "The daemon lost its connection to the Ray cluster while running this job (its "
        "bridge process {why}).",
        "Try again once the cluster is back; `neural-style status` shows the backend's state.",
    ),
}


def backend_error(kind: str, **fields: object) -> NeuralStyleError:
    """The error of :data:`BACKEND_FAILURES` ``kind`` with its fields filled in."""
    code, message, hint = BACKEND_FAILURES[kind]
    return NeuralStyleError(code, message.format(**fields), hint)


@runtime_checkable
class Executor(Protocol):
    """What the front end needs from a place where jobs run."""

    #: (kind, job, payload) for each progress, preview and terminal event, in order.
    events: queue.Queue[tuple[WorkerEvent, ServiceJob, Any]]

    @property
    def device(self) -> str:
        """Where the engine computes (TensorFlow's device name), for welcome and status."""
        ...

    @property
    def weights(self) -> Any:
        """The weights in use: an object with ``path``, ``sha256`` and ``synthetic``."""
        ...

    @property
    def capacity(self) -> int:
        """How many jobs may run at once (1 for the local executors; the cluster's ready
        actors for Ray). The queue hands over jobs while fewer than this run."""
        ...

    def unavailable(self) -> str:
        """Why no job can run now (a sentence; "" when jobs can run): the queue answers new
        submits ``busy`` with it instead of letting them wait on nothing."""
        ...

    def start(self, context: zmq.Context, wake_endpoint: str) -> None:
        """Begin: events are posted to ``events`` and the loop woken over ``wake_endpoint``
        (an inproc PULL socket of ``context``)."""
        ...

    def submit(self, job: ServiceJob) -> None:
        """Run ``job`` (the queue keeps at most ``capacity`` submitted jobs without their
        terminal event). Never blocks; a cancel is ``job.cancel`` being set."""
        ...

    def tick(self, now: float) -> None:
        """Called by the loop every turn: forward cancels, supervise the workers."""
        ...

    def describe(self) -> dict[str, Any]:
        """The workers for ``status``: backend, kind, pid, state, restarts."""
        ...

    def close(self, timeout: float) -> bool:
        """Stop the workers; True when none is left running (the context may be ended)."""
        ...


class OneJobAtATime:
    """The local executors' capacity: one job at a time. A failed local worker answers
    each job with its own error (and is retried), so it is never ``unavailable``."""

    capacity = 1

    def unavailable(self) -> str:
        return ""


class ThreadExecutor(OneJobAtATime):
    """The engine in a thread of the daemon's own process (:class:`~.worker.Worker`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._worker: Worker | None = None
        self.events: queue.Queue[tuple[WorkerEvent, ServiceJob, Any]] = queue.Queue()

    @property
    def device(self) -> str:
        return str(self.engine.device)

    @property
    def weights(self) -> Any:
        return self.engine.weights

    def start(self, context: zmq.Context, wake_endpoint: str) -> None:
        self._worker = Worker(self.engine, context, wake_endpoint)
        self._worker.events = self.events
        self._worker.start()

    def submit(self, job: ServiceJob) -> None:
        assert self._worker is not None, "start() first"
        self._worker.jobs.put_nowait(job)

    def tick(self, now: float) -> None:
        """Nothing to supervise: the job reads ``job.cancel`` at its next step."""

    def describe(self) -> dict[str, Any]:
        alive = self._worker is not None and self._worker.is_alive()
        return {"backend": "local", "kind": "thread", "pid": None, "restarts": 0,
                "state": "ready" if alive else "stopped"}  # fmt: skip

    def close(self, timeout: float) -> bool:
        if self._worker is None:
            return True
        with contextlib.suppress(queue.Full):
            self._worker.jobs.put_nowait(None)
        self._worker.join(timeout=timeout)
        return not self._worker.is_alive()
