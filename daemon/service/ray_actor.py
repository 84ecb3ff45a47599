"""The cluster's worker: :class:`StyleActor`, one engine on one node (model loaded once, its
own style Gram cache), started by :class:`~.ray_pool.ActorPool` as a Ray actor. Imported
only where Ray runs (the bridge process and the actors), never by the front end."""

from __future__ import annotations

import os
import queue
import socket
import threading
from collections.abc import Iterator
from typing import Any

import ray

from neural_style.daemon.service import worker_pipe
from neural_style.shared.errors import ErrorCode, NeuralStyleError


class StyleActor:
    """One engine on one node: the model loaded once, its own style Gram cache.

    ``run`` is a generator (Ray streams what it yields): one :mod:`.worker_pipe` event
    message per progress, preview and terminal event of the job. ``cancel`` and ``info``
    run in a concurrency group of their own, so they answer while a job runs."""

    def __init__(self, weights: str, threads: int) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from neural_style.daemon.quiet import hide_tensorflow_start_up

        hide_tensorflow_start_up()
        import tensorflow as tf

        if threads > 0:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        from neural_style.daemon.engine import StyleTransfer

        self.threads = threads
        self.engine = StyleTransfer.load(weights or None)
        self._jobs: dict[str, Any] = {}
        self._lock = threading.Lock()

    @ray.method(concurrency_group="control")
    def info(self) -> dict[str, Any]:
        from neural_style.daemon.service.handlers import weights_dict

        return {
            "node": ray.get_runtime_context().get_node_id(),
            "host": socket.gethostname(),
            "ip": ray.util.get_node_ip_address(),
            "pid": os.getpid(),
            "device": str(self.engine.device),
            "threads": self.threads,
            "weights": weights_dict(self.engine.weights),
        }

    @ray.method(concurrency_group="control")
    def cancel(self, token: str, reason: str) -> bool:
        with self._lock:
            job = self._jobs.get(token)
        if job is None:
            return False
        job.request_cancel(reason)
        return True

    def run(self, header: dict[str, Any], arrays: list[Any]) -> Iterator[Any]:
        from neural_style.daemon.service.worker import JobRunner
        from neural_style.daemon.service.worker_process import _job

        job = _job(header, arrays)
        events: queue.Queue[tuple[bool, Any]] = queue.Queue()

        def post(kind: Any, job: Any, payload: Any) -> None:
            events.put((False, worker_pipe.event_message(kind, job, payload)))

        def work() -> None:
            try:
                events.put((True, worker_pipe.event_message(*runner.run(job))))
            except BaseException as exc:  # never leave the stream waiting
                error = NeuralStyleError(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")
                events.put((True, ({"op": "error", "job": job.job_id,
                                    **worker_pipe.error_fields(error)}, [])))  # fmt: skip

        runner = JobRunner(self.engine, post)
        with self._lock:
            self._jobs[job.job_id] = job
        thread = threading.Thread(target=work, name=f"job-{job.job_id}", daemon=True)
        thread.start()
        try:
            while True:
                last, message = events.get()
                yield message
                if last:
                    break
        finally:
            job.request_cancel("client")  # the caller went away: stop computing
            thread.join()
            with self._lock:
                self._jobs.pop(job.job_id, None)
