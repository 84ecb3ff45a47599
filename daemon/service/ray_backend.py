"""The cluster backend: the daemon's front end in front of a Ray cluster.

``neural-style serve --backend ray --ray-address auto|HOST:PORT [--workers N]``. The
ZeroMQ front end (auth, connection file, queue limits, per-client caps, progress, preview
and cancel) stays the one endpoint; :class:`RayExecutor` hands its jobs, up to the
cluster's ready actors at once, to :mod:`.ray_bridge`, a process of its own that is the
Ray driver. This module never imports Ray: the front end outlives the cluster.

The bridge's pipe carries the :mod:`.worker_pipe` messages (a job's header and arrays,
cancels, and each job's events), each job under a token of its own (two clients may use
the same job id). When the bridge cannot reach the cluster, or dies, the front end answers
new jobs ``busy`` with the reason, ends the jobs it had running there with
``worker_crashed``, and starts a new bridge every :data:`RETRY_S` until one connects.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import subprocess
import time
from typing import Any

import zmq

from neural_style.daemon.service import worker_pipe
from neural_style.daemon.service.config import ServerConfig
from neural_style.daemon.service.executor import backend_error
from neural_style.daemon.service.jobs import ServiceJob
from neural_style.daemon.service.supervisor import (
    ChildHolder,
    WorkerWeights,
    _exit_text,
    spawn_child,
)
from neural_style.daemon.service.worker import TERMINAL_EVENTS, WorkerEvent
from neural_style.daemon.service.worker_pipe import Pipe, PipeClosed

log = logging.getLogger("neural_style.daemon.service")

#: After the cluster could not be reached, the next attempt waits this long.
RETRY_S = 5.0
#: How long serve waits for the first connection (actors loading the model included)
#: before it starts serving anyway, answering ``busy`` until the cluster is there.
FIRST_CONNECT_S = 600.0
#: The bridge reports its actors every second; this long without a word and it is killed.
SILENT_S = 60.0


class _BridgeMessages(ChildHolder):
    """What the bridge says, as :class:`RayExecutor` handles it (a mixin: the executor's
    life is there, the messages here)."""

    failure: str
    requeued: int
    _heard: float
    _actors: list[dict[str, Any]]
    _capacity: int
    _cluster: str
    _running: dict[str, ServiceJob]

    def _unreachable(self, why: str) -> None:
        raise NotImplementedError

    def _end(self, token: str, kind: WorkerEvent, payload: Any) -> None:
        raise NotImplementedError

    def _on_message(self, header: dict[str, Any], arrays: list[Any]) -> None:
        op = header["op"]
        self._heard = time.monotonic()
        if op in ("ready", "actors"):
            self._actors = list(header.get("actors", []))
            self._capacity = int(header.get("capacity", 0))
        if op == "ready":
            self._device, self._weights, self._cluster = ready_fields(header)
            self.state, self.failure = "ready", ""
            log.info("ray backend: %d actor(s) ready on %s (cluster %s)", self._capacity,
                     self._device, self._cluster)  # fmt: skip
            return
        if op == "failed":
            error = worker_pipe.event_payload({**header, "op": "error"}, [])
            self._stop_process()
            self._unreachable(error.message)
            return
        if op == "actors":
            return
        if op == "requeued":
            self.requeued += 1
            with self._lock:
                job = self._running.get(str(header["job"]))
            name = job.job_id if job is not None else header["job"]
            attempt = int(header["attempt"]) + 1
            log.warning("job %s: its call was lost (%s); running it again from the start "
                        "(attempt %d)", name, header.get("why"), attempt)  # fmt: skip
            return
        token = str(header.get("job"))
        with self._lock:
            job = self._running.get(token)
        if job is None:
            return  # a job already ended here
        kind = WorkerEvent(op)
        payload = worker_pipe.event_payload(header, arrays)
        if kind is WorkerEvent.PROGRESS:
            step = payload[0]
            job.step, job.total = step.step, step.total
            job.last_step = time.monotonic()
        if kind in TERMINAL_EVENTS:
            self._end(token, kind, payload)
        else:
            self.events.put((kind, job, payload))


class RayExecutor(_BridgeMessages):
    """Jobs on a Ray cluster's actors, through the :mod:`.ray_bridge` process."""

    READER_NAME = "ray"

    def __init__(self, config: ServerConfig) -> None:
        """``config``: the daemon's; its ray_address, workers, worker_cpus, weights,
        log_file and verbose go to the bridge."""
        super().__init__()
        self.config = config
        self.address = config.ray_address
        self.state = "stopped"  # connecting, ready, unreachable, stopped
        self.failure = ""
        self.requeued = 0
        self._capacity = 0
        self._actors: list[dict[str, Any]] = []
        self._cluster = ""
        self._running: dict[str, ServiceJob] = {}
        self._cancelled: set[str] = set()
        self._tokens = itertools.count(1)
        self._next_try = 0.0
        self._heard = 0.0

    # -- the Executor protocol
    @property
    def device(self) -> str:
        return f"ray: {self._device}" if self._device else "ray"

    @property
    def capacity(self) -> int:
        return self._capacity if self.state == "ready" else 0

    def unavailable(self) -> str:
        if self.state == "connecting":
            return f"it is connecting to the Ray cluster at {self.address}."
        if self.state != "ready":
            why = f" ({self.failure})" if self.failure else ""
            return (
                f"the Ray cluster at {self.address} is not reachable{why}; the daemon tries "
                f"again every {RETRY_S:g} s."
            )
        if self._capacity == 0:
            return (
                f"none of the cluster's {len(self._actors)} actors is up (a node left?); "
                "they take jobs again once Ray has restarted them."
            )
        return ""

    def launch(self, timeout: float = FIRST_CONNECT_S) -> None:
        """Start the bridge and wait (bounded) for its first answer: serve then binds with
        the actors loaded, or, without a cluster, serves anyway and says why it is busy."""
        self._spawn()
        header = self._first_message(timeout)
        if header is not None:
            self._on_message(header, [])

    def start(self, context: zmq.Context, wake_endpoint: str) -> None:
        if not self._attach(context, wake_endpoint) and not self._closing and self.state != "ready":
            self._next_try = time.monotonic()

    def submit(self, job: ServiceJob) -> None:
        token = str(next(self._tokens))
        job.started = job.last_step = time.monotonic()
        with self._lock:
            self._running[token] = job
        if self.state != "ready" or self._pipe is None:
            self._end(
                token, WorkerEvent.ERROR, backend_error("unreachable", why=self.unavailable())
            )
            return
        header, arrays = worker_pipe.job_message(job)
        try:
            self._pipe.send({**header, "job": token}, arrays)
        except PipeClosed as exc:
            log.error("job %s: could not hand it to the Ray bridge (%s)", job.job_id, exc)
            self._kill()  # tick() sees the death and ends the running jobs

    def tick(self, now: float) -> None:
        if self._closing:
            return
        proc = self._proc
        if proc is not None and proc.poll() is not None:
            self._on_death(_exit_text(proc.returncode))
        elif proc is not None and self.state == "ready" and now - self._heard > SILENT_S:
            log.error("the Ray bridge has said nothing for %.0f s; stopping it", now - self._heard)
            self._kill()
            self._on_death("stopped: it stopped answering")
        elif proc is None and self._next_try and now >= self._next_try:
            self._next_try = 0.0
            self._spawn()
            self._start_reader()
        with self._lock:
            cancels = [(t, j) for t, j in self._running.items()
                       if j.cancel.is_set() and t not in self._cancelled]  # fmt: skip
        for token, job in cancels:
            self._cancelled.add(token)
            with contextlib.suppress(PipeClosed):
                if self._pipe is not None:
                    reason = job.cancel_reason or "client"
                    self._pipe.send({"op": "cancel", "job": token, "reason": reason})

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "ray",
            "kind": "ray",
            "address": self.address,
            "cluster": self._cluster,
            "pid": self._proc.pid if self._proc is not None else None,
            "state": self.state,
            "error": self.failure,
            "restarts": self.restarts,
            "requeued": self.requeued,
            "last_exit": self.last_exit,
            "workers": self.config.workers,
            "actors": [dict(a) for a in self._actors],
        }

    def close(self, timeout: float) -> bool:
        return self._stop_child(max(timeout, 5.0))

    # -- the bridge's life
    def _spawn(self) -> None:
        config = self.config
        args = ["--address", self.address, "--workers", str(config.workers),
                "--worker-cpus", str(config.worker_cpus)]  # fmt: skip
        if config.weights:
            args += ["--weights", str(config.weights)]
        if config.log_file:
            args += ["--log-file", str(config.log_file)]
        if config.verbose:
            args.append("--verbose")
        self._proc, self._pipe = spawn_bridge(args)
        self._heard = time.monotonic()
        if self.state != "unreachable":  # a retry keeps saying why the last one failed
            self.state = "connecting"
        log.info("ray bridge %d: connecting to %s", self._proc.pid, self.address)

    def _first_message(self, timeout: float) -> dict[str, Any] | None:
        assert self._pipe is not None
        try:
            return first_message(self._pipe, timeout)
        except (PipeClosed, TimeoutError, OSError) as exc:
            self._stop_process()
            self._unreachable(f"the Ray bridge {exc}")
            return None

    def _on_death(self, why: str) -> None:
        """The bridge is gone: its jobs end with worker_crashed; a new one is tried."""
        self.last_exit = why
        self._stop_process()
        if self.state == "ready":
            self.restarts += 1
            log.error("the Ray bridge %s; ending its jobs, reconnecting", why)
            self._unreachable(f"the connection to the cluster was lost: the bridge {why}")
        elif self.state == "connecting":
            self._unreachable(f"the Ray bridge {why} while connecting")
        with self._lock:
            tokens = list(self._running)
        for token in tokens:
            self._end(token, WorkerEvent.ERROR, backend_error("bridge_lost", why=why))

    def _unreachable(self, why: str) -> None:
        self.state, self.failure = "unreachable", why
        self._capacity, self._actors = 0, []
        self._next_try = time.monotonic() + RETRY_S
        log.warning("ray backend: %s; trying again in %g s", why, RETRY_S)

    def _stop_process(self) -> None:
        super()._stop_process()
        self._proc = None

    def _end(self, token: str, kind: WorkerEvent, payload: Any) -> None:
        with self._lock:
            job = self._running.pop(token, None)
            self._cancelled.discard(token)
        if job is not None:
            self.events.put((kind, job, payload))


def spawn_bridge(args: list[str]) -> tuple[subprocess.Popen[bytes], Pipe]:
    """Start :mod:`.ray_bridge` with one end of a socketpair; return it and our end."""
    return spawn_child("neural_style.daemon.service.ray_bridge", args)


def first_message(pipe: Pipe, timeout: float) -> dict[str, Any]:
    """The bridge's first message (``ready`` or ``failed``), waiting at most ``timeout``."""
    pipe.sock.settimeout(timeout)
    try:
        header, _ = pipe.recv()
    finally:
        pipe.sock.settimeout(None)
    return header


def ready_fields(header: dict[str, Any]) -> tuple[str, WorkerWeights, str]:
    """A ``ready`` message's device, weights and cluster address."""
    w = header.get("weights") or {}
    weights = WorkerWeights(
        str(w.get("path", "")), str(w.get("sha256", "")), bool(w.get("synthetic"))
    )
    return str(header.get("device", "")), weights, str(header.get("address", ""))
