"""The engine thread: runs jobs one at a time and reports through a queue + a wake-up.

TensorFlow calls take seconds and the model is not thread-safe, so one worker owns the
engine while the socket loop (main thread) keeps answering; the worker posts
:class:`WorkerEvent`s to ``events`` and wakes the loop's poller over an inproc socket.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable
from enum import Enum
from typing import Any, Protocol

import zmq

from neural_style.daemon.engine.params import STOP, StyleParams, StylizeResult
from neural_style.daemon.service.codec import preview_image
from neural_style.daemon.service.jobs import ServiceJob
from neural_style.shared.errors import ErrorCode, NeuralStyleError
from neural_style.shared.records import Step

log = logging.getLogger("neural_style.daemon.service")

#: Progress messages are sent at most this often (plus the first, last and preview steps).
PROGRESS_MIN_INTERVAL_S = 0.1


class Engine(Protocol):
    """What the service needs from :class:`neural_style.daemon.engine.StyleTransfer`."""

    weights: Any
    device: str

    def stylize(
        self,
        content: Any,
        styles: list[Any],
        params: StyleParams,
        callback: Callable[[Step], str | None] | None = None,
        mask: Any = None,
        init: Any = None,
    ) -> StylizeResult: ...


class WorkerEvent(str, Enum):
    """What the worker reports; the last three end a job."""

    PROGRESS = "progress"
    PREVIEW = "preview"
    RESULT = "result"
    CANCELLED = "cancelled"
    ERROR = "error"


TERMINAL_EVENTS = frozenset({WorkerEvent.RESULT, WorkerEvent.CANCELLED, WorkerEvent.ERROR})


#: How a runner reports an event: (kind, job, payload).
Post = Callable[[WorkerEvent, ServiceJob, Any], None]


class JobRunner:
    """Runs one job on the engine and reports its progress and previews through ``post``:
    the same code runs in the engine thread and in the supervised worker process."""

    def __init__(self, engine: Engine, post: Post) -> None:
        self.engine = engine
        self.post = post

    def run(self, job: ServiceJob) -> tuple[WorkerEvent, ServiceJob, Any]:
        """Run one job; return its terminal event (result, cancelled or error)."""
        job.started = job.last_step = time.monotonic()
        if job.cancel.is_set():
            return (WorkerEvent.CANCELLED, job, 0)
        try:
            kwargs = {"mask": job.mask} if job.mask is not None else {}
            if job.init is not None:
                kwargs["init"] = job.init
            if job.previous is not None:  # frames mode: start from the warped previous result
                from neural_style.daemon.frames import temporal

                weight = job.temporal_weight
                result = temporal.stylize_frame(
                    self.engine, job.content, job.styles, job.params, self._callback(job),
                    previous=job.previous, mask=job.mask,
                    temporal_weight=temporal.TEMPORAL_WEIGHT if weight is None else weight,
                )  # fmt: skip
            else:
                result = self.engine.stylize(
                    job.content, job.styles, job.params, self._callback(job), **kwargs
                )
        except Exception as exc:  # the daemon must survive anything a job does
            return (WorkerEvent.ERROR, job, job_error(exc, self.engine.device))
        if result.stopped and job.cancel.is_set():
            last = result.iterates[-1].step if result.iterates else job.step
            return (WorkerEvent.CANCELLED, job, last)
        return (WorkerEvent.RESULT, job, result)

    def _callback(self, job: ServiceJob) -> Callable[[Step], str | None]:
        last_sent = 0.0
        t0: float | None = None
        s0 = 0

        def callback(it: Step) -> str | None:
            nonlocal last_sent, t0, s0
            job.step, job.total = it.step, it.total
            job.last_step = time.monotonic()
            if job.cancel.is_set():
                return STOP
            now = time.monotonic()
            if t0 is None:
                t0, s0 = now, it.step
            if it.preview is not None:
                image = preview_image(it.preview, job.preview_max_side)
                self.post(WorkerEvent.PREVIEW, job, (it.step, image))
            due = now - last_sent >= PROGRESS_MIN_INTERVAL_S
            if due or it.preview is not None or it.step in (1, it.total):
                last_sent = now
                self.post(WorkerEvent.PROGRESS, job, (it, _eta(t0, s0, it, now)))
            return STOP if job.cancel.is_set() else None

        return callback


class Worker(threading.Thread):
    """The engine in a thread of the daemon's process: runs jobs one at a time and reports
    through ``events`` + a wake-up. (:class:`~.executor.ThreadExecutor` wraps it.)"""

    def __init__(self, engine: Engine, context: zmq.Context, wake_endpoint: str) -> None:
        super().__init__(name="neural-style-engine", daemon=True)
        self.engine = engine
        self.jobs: queue.Queue[ServiceJob | None] = queue.Queue(maxsize=1)
        self.events: queue.Queue[tuple[WorkerEvent, ServiceJob, Any]] = queue.Queue()
        self._context = context
        self._wake_endpoint = wake_endpoint
        self._wake: zmq.Socket | None = None
        self.runner = JobRunner(engine, self._post)

    def run(self) -> None:
        self._wake = self._context.socket(zmq.PUSH)
        self._wake.setsockopt(zmq.LINGER, 0)
        self._wake.connect(self._wake_endpoint)
        try:
            while (job := self.jobs.get()) is not None:
                self._post(*self.runner.run(job))
        finally:
            self._wake.close()

    def _post(self, kind: WorkerEvent, job: ServiceJob, payload: Any = None) -> None:
        self.events.put((kind, job, payload))
        if self._wake is not None:
            with contextlib.suppress(zmq.Again):
                self._wake.send(b"", zmq.NOBLOCK)


def _eta(t0: float, s0: int, it: Step, now: float) -> float:
    done = it.step - s0
    return 0.0 if done <= 0 else (now - t0) / done * max(0, it.total - it.step)


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(exc, tf.errors.ResourceExhaustedError)


def job_error(exc: Exception, device: str) -> NeuralStyleError:
    """Map whatever a job (or a handler) raised on ``device`` to the error the client sees."""
    if isinstance(exc, NeuralStyleError):
        return exc
    if _is_oom(exc):
        gc.collect()
        log.warning("job ran out of memory on %s: %s", device, str(exc)[:300])
        on_gpu = "GPU" in str(device).upper()
        hint = (
            "Lower the size parameter (the working long side), close programs that use "
            "GPU memory, or restart the daemon with --device cpu."
            if on_gpu
            else "Lower the size parameter (the working long side), use fewer or smaller "
            "style images, or close programs that use memory."
        )
        return NeuralStyleError(
            ErrorCode.OUT_OF_MEMORY, f"Out of memory on {device} at this working size.", hint
        )
    log.error("job failed:\n%s", "".join(traceback.format_exception(exc)))
    return NeuralStyleError(
        ErrorCode.INTERNAL,
        f"Internal error in the daemon: {type(exc).__name__}: {str(exc)[:500]}",
        "The daemon keeps running; its log has the details. Please report this.",
    )
