"""The engine in a supervised worker process: a crash, an abort, the OOM killer or a step
that never returns costs the job that was running, not the daemon.

The front end (socket loop, queue, auth) stays in the daemon's process and never imports
TensorFlow. :class:`ProcessExecutor` starts ``worker_process`` with one end of a
socketpair, sends it each job's images (one copy), reads its events on a reader thread and
posts them to the loop. When the worker dies the running job ends with ``worker_crashed``;
when a cancelled job (time limit, client, shutdown) does not reach its next step within a
grace period the worker is killed and the job ends with ``time_limit`` (or ``cancelled``).
Either way a new worker starts, loads the model and runs the queued jobs; only the style
Gram cache is lost.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import zmq

from neural_style.daemon.service import worker_pipe
from neural_style.daemon.service.executor import OneJobAtATime, backend_error
from neural_style.daemon.service.jobs import ServiceJob
from neural_style.daemon.service.worker import TERMINAL_EVENTS, WorkerEvent
from neural_style.daemon.service.worker_pipe import Pipe, PipeClosed
from neural_style.shared.errors import NeuralStyleError

log = logging.getLogger("neural_style.daemon.service")

#: The longest a worker may take to import TensorFlow and load the weights.
LOAD_TIMEOUT_S = 600.0
#: A cancelled job must reach its next step within this many seconds, or this many of its
#: slowest steps so far, whichever is longer; else its worker is killed.
MIN_KILL_GRACE_S = 10.0
KILL_GRACE_STEPS = 4
#: A send to a worker that stopped reading gives up after this long (the worker is then
#: treated as dead): a stopped worker must not block the socket loop.
SEND_TIMEOUT_S = 30.0
#: After a worker failed to load, the next attempt waits at least this long.
RESPAWN_BACKOFF_S = 10.0


@dataclass(frozen=True)
class WorkerWeights:
    """The weights the worker loaded, as ``welcome``/``status`` describe them."""

    path: str = ""
    sha256: str = ""
    synthetic: bool = False


def _exit_text(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exited with status {code}"


class ChildHolder:
    """A backend whose jobs run in a child process it spawned (the worker, the Ray bridge):
    the child, the pipe to it, the reader threads that hand its messages over and wake the
    front end's loop, and its orderly stop. Subclasses spawn it and handle its messages."""

    #: The reader threads' name ("neural-style-<name>-<pid>").
    READER_NAME = "worker"

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[WorkerEvent, ServiceJob, Any]] = queue.Queue()
        self.state = "stopped"
        self.restarts = 0
        self.last_exit = ""
        self._device = ""
        self._weights = WorkerWeights()
        self._proc: subprocess.Popen[bytes] | None = None
        self._pipe: Pipe | None = None
        self._readers: list[PipeReader] = []
        self._lock = threading.Lock()
        self._context: zmq.Context | None = None
        self._wake_endpoint = ""
        self._closing = False

    @property
    def weights(self) -> WorkerWeights:
        return self._weights

    def _attach(self, context: zmq.Context, wake_endpoint: str) -> bool:
        """The front end's loop is there: read the child started before it (True), if any."""
        self._context, self._wake_endpoint = context, wake_endpoint
        if self._pipe is None or self._proc is None:
            return False
        self._start_reader()
        return True

    def _start_reader(self) -> None:
        assert self._context is not None and self._pipe is not None and self._proc is not None
        self._readers = [r for r in self._readers if r.is_alive()]
        reader = PipeReader(
            self, self._pipe, self._proc, self._context, self._wake_endpoint, self.READER_NAME
        )
        self._readers.append(reader)
        reader.start()

    def _current(self, proc: subprocess.Popen[bytes]) -> bool:
        return proc is self._proc

    def _on_message(self, header: dict[str, Any], arrays: list[Any]) -> None:
        raise NotImplementedError

    def _kill(self) -> None:
        kill(self._proc)

    def _stop_process(self) -> None:
        """Kill the child and close its pipe (``_proc`` stays, for its exit status)."""
        kill(self._proc)
        close_pipe(self._pipe)
        self._pipe = None

    def _stop_child(self, timeout: float) -> bool:
        """Ask the child to stop, wait up to ``timeout``, then kill it; True once every
        reader thread has ended (else a wake socket may still be open)."""
        self._closing = True
        with contextlib.suppress(PipeClosed, OSError):
            if self._pipe is not None:
                self._pipe.send({"op": "stop"})
        if self._proc is not None:
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill()
        self._stop_process()
        for reader in self._readers:
            reader.join(timeout=2.0)
        self.state = "stopped"
        return not any(r.is_alive() for r in self._readers)


def kill(proc: subprocess.Popen[bytes] | None) -> None:
    """Kill a child that still runs and reap it."""
    if proc is not None and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


def close_pipe(pipe: Pipe | None) -> None:
    if pipe is not None:
        with contextlib.suppress(OSError):
            pipe.sock.shutdown(socket.SHUT_RDWR)
        pipe.close()


class ProcessExecutor(ChildHolder, OneJobAtATime):
    """The default local backend: one worker process, restarted when it dies."""

    def __init__(
        self, weights: str | None = None, log_file: Path | None = None, verbose: bool = False
    ) -> None:
        super().__init__()
        self._weights_arg = weights
        self._log_file = log_file
        self._verbose = verbose
        self._failure: NeuralStyleError | None = None
        self._failed_at = 0.0
        self._running: ServiceJob | None = None
        self._sent = False
        self._cancel_sent_at: float | None = None
        self._last_event = 0.0
        self._slowest_gap = 0.0

    # -- the Executor protocol
    @property
    def device(self) -> str:
        return self._device

    def launch(self, timeout: float = LOAD_TIMEOUT_S) -> None:
        """Start the first worker and wait until its model is loaded (raises its error:
        weights missing, TensorFlow failing...), before the daemon binds its port."""
        pipe = self._spawn()
        pipe.sock.settimeout(timeout)
        try:
            header, _ = pipe.recv()
        except (PipeClosed, TimeoutError) as exc:
            self._stop_process()  # kills it when it hangs
            code = self._proc.returncode if self._proc else None
            raise backend_error("load_failed", why=_exit_text(code), exc=exc) from None
        pipe.sock.settimeout(None)
        if header["op"] == "failed":
            self._stop_process()
            raise worker_pipe.event_payload({**header, "op": "error"}, [])
        self._on_ready(header)

    def start(self, context: zmq.Context, wake_endpoint: str) -> None:
        self._attach(context, wake_endpoint)

    def submit(self, job: ServiceJob) -> None:
        with self._lock:
            self._running, self._sent, self._cancel_sent_at = job, False, None
        if self.state == "ready":
            self._send_job(job)
        elif self.state == "failed" and time.monotonic() - self._failed_at > RESPAWN_BACKOFF_S:
            self._respawn()
        elif self.state == "failed":
            self._end_running(
                WorkerEvent.ERROR, self._failure or backend_error("crashed", why="did not start")
            )
        # loading: sent when the worker says it is ready

    def tick(self, now: float) -> None:
        proc = self._proc
        if self._closing or proc is None:
            return
        if proc.poll() is not None:
            self._on_death(_exit_text(proc.returncode))
            return
        with self._lock:
            job, sent = self._running, self._sent
        if job is None or not sent or not job.cancel.is_set():
            return
        if self._cancel_sent_at is None:
            self._cancel_sent_at = now
            reason = job.cancel_reason or "client"
            with contextlib.suppress(PipeClosed):
                self._send({"op": "cancel", "job": job.job_id, "reason": reason})
        elif now - self._cancel_sent_at > max(
            MIN_KILL_GRACE_S, KILL_GRACE_STEPS * self._slowest_gap
        ):
            log.error(
                "job %s: the worker did not reach its next step %.0f s after the cancel "
                "(%s); killing it", job.job_id, now - self._cancel_sent_at, job.cancel_reason,
            )  # fmt: skip
            self._kill()
            self._on_death("killed: it stopped making progress", hung=True)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "local",
            "kind": "process",
            "pid": self._proc.pid if self._proc is not None else None,
            "state": self.state,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
        }

    def close(self, timeout: float) -> bool:
        return self._stop_child(timeout)

    # -- the worker's life
    def _spawn(self) -> Pipe:
        self._proc, self._pipe = spawn_worker(self._weights_arg, self._log_file, self._verbose)
        self.state = "loading"
        log.info("worker process %d: loading the model", self._proc.pid)
        return self._pipe

    def _respawn(self) -> None:
        self._stop_process()
        self._spawn()
        assert self._proc is not None
        self._start_reader()

    def _on_ready(self, header: dict[str, Any]) -> None:
        self._device = str(header["device"])
        w = header["weights"]
        self._weights = WorkerWeights(str(w["path"]), str(w["sha256"]), bool(w["synthetic"]))
        self.state = "ready"
        log.info("worker process %s: ready on %s", header.get("pid"), self._device)

    def _on_death(self, why: str, hung: bool = False) -> None:
        """The worker is gone: end its job, count the restart, start a new one."""
        was_loading = self.state == "loading"
        self.last_exit = why
        self._stop_process()
        with self._lock:
            job = self._running
        if job is not None and hung and job.cancel_reason != "time_limit":
            self._end_running(WorkerEvent.CANCELLED, job.step)
        elif job is not None and hung:
            self._end_running(WorkerEvent.ERROR, backend_error("time_limit", step=job.step))
        elif job is not None:
            log.error("job %s: the worker process %s", job.job_id, why)
            self._end_running(WorkerEvent.ERROR, backend_error("crashed", why=why))
        if self._closing:
            return
        self.restarts += 1
        if was_loading:
            self.state, self._failed_at = "failed", time.monotonic()
            self._failure = backend_error("crashed", why=f"{why} while loading the model")
            return
        log.warning("worker process %s; starting a new one (restart %d)", why, self.restarts)
        self._respawn()

    def _end_running(self, kind: WorkerEvent, payload: Any) -> None:
        with self._lock:
            job, self._running = self._running, None
        if job is not None:
            self.events.put((kind, job, payload))

    def _send_job(self, job: ServiceJob) -> None:
        job.started = job.last_step = self._last_event = time.monotonic()
        self._slowest_gap = 0.0
        try:
            self._send(*worker_pipe.job_message(job))
        except PipeClosed as exc:
            log.error("job %s: could not hand it to the worker (%s)", job.job_id, exc)
            self._kill()  # tick() sees the death: worker_crashed, then a new worker
            return
        with self._lock:
            self._sent = self._running is job

    def _send(self, header: dict[str, Any], arrays: list[Any] | tuple[()] = ()) -> None:
        if self._pipe is None:
            raise PipeClosed("no worker")
        self._pipe.send(header, arrays)

    def _on_message(self, header: dict[str, Any], arrays: list[Any]) -> None:
        op = header["op"]
        if op == "ready":
            self._on_ready(header)
            with self._lock:
                job = self._running if not self._sent else None
            if job is not None:
                self._send_job(job)
            return
        if op == "failed":
            self._failure = worker_pipe.event_payload({**header, "op": "error"}, [])
            self.state, self._failed_at = "failed", time.monotonic()
            log.error("worker process: %s", self._failure.message)
            self._end_running(WorkerEvent.ERROR, self._failure)
            return
        with self._lock:
            job = self._running
        if job is None or header.get("job") != job.job_id:
            return  # an event of a job already ended (killed, given up)
        kind = WorkerEvent(op)
        payload = worker_pipe.event_payload(header, arrays)
        now = time.monotonic()
        if kind is WorkerEvent.PROGRESS:
            step = payload[0]
            job.step, job.total = step.step, step.total
            self._slowest_gap = max(self._slowest_gap, now - self._last_event)
            self._last_event = job.last_step = now
        if kind in TERMINAL_EVENTS:
            self._end_running(kind, payload)
        else:
            self.events.put((kind, job, payload))


def spawn_child(module: str, args: list[str]) -> tuple[subprocess.Popen[bytes], Pipe]:
    """Start ``python -m module --fd N *args`` with one end of a socketpair (the other end,
    ours, gives up sending after :data:`SEND_TIMEOUT_S`); return the process and our end."""
    ours, theirs = socket.socketpair()
    ours.setsockopt(
        socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", int(SEND_TIMEOUT_S), 0)
    )
    cmd = [sys.executable, "-m", module, "--fd", str(theirs.fileno()), *args]
    proc = subprocess.Popen(cmd, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
    theirs.close()
    return proc, Pipe(ours)


def spawn_worker(
    weights: str | None, log_file: Path | None, verbose: bool
) -> tuple[subprocess.Popen[bytes], Pipe]:
    """Start ``worker_process``; return it and our end of its pipe."""
    args = ["--weights", str(weights)] if weights else []
    args += ["--log-file", str(log_file)] if log_file else []
    args += ["--verbose"] if verbose else []
    return spawn_child("neural_style.daemon.service.worker_process", args)


class PipeOwner(Protocol):
    """What a :class:`PipeReader` hands each message to."""

    def _current(self, proc: subprocess.Popen[bytes]) -> bool: ...

    def _on_message(self, header: dict[str, Any], arrays: list[Any]) -> None: ...


class PipeReader(threading.Thread):
    """Reads one child's messages and hands them to its executor, waking the loop after
    each (and once more when the pipe closes, so that ``tick`` finds the dead process)."""

    def __init__(
        self,
        executor: PipeOwner,
        pipe: Pipe,
        proc: subprocess.Popen[bytes],
        context: zmq.Context,
        wake_endpoint: str,
        name: str = "worker",
    ) -> None:
        super().__init__(name=f"neural-style-{name}-{proc.pid}", daemon=True)
        self.executor, self.pipe, self.proc = executor, pipe, proc
        self.context, self.wake_endpoint = context, wake_endpoint

    def run(self) -> None:
        wake = self.context.socket(zmq.PUSH)
        wake.setsockopt(zmq.LINGER, 0)
        wake.connect(self.wake_endpoint)
        try:
            while True:
                header, arrays = self.pipe.recv()
                if not self.executor._current(self.proc):
                    break  # a newer worker took over
                self.executor._on_message(header, arrays)
                with contextlib.suppress(zmq.Again):
                    wake.send(b"", zmq.NOBLOCK)
        except (PipeClosed, OSError, ValueError, KeyError):
            with contextlib.suppress(zmq.Again):
                wake.send(b"", zmq.NOBLOCK)
        finally:
            wake.close()
