"""The engine's own process: loads the model, then runs the jobs the daemon sends over its
pipe, one at a time, reporting progress, previews and the result back.

Started by :class:`~.supervisor.ProcessExecutor` as
``python -m neural_style.daemon.service.worker_process --fd N``. It exits when the pipe
closes (the daemon stopped or died: on Linux the kernel also sends it SIGKILL then), and
ignores Ctrl-C, which the terminal sends to the whole process group: the daemon decides.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import socket
import sys
import threading
from typing import Any

from neural_style.daemon.engine.params import StyleParams
from neural_style.daemon.service import worker_pipe
from neural_style.daemon.service.jobs import ServiceJob
from neural_style.daemon.service.worker import JobRunner, WorkerEvent
from neural_style.daemon.service.worker_pipe import Pipe, PipeClosed
from neural_style.shared.errors import ErrorCode, NeuralStyleError

log = logging.getLogger("neural_style.daemon.worker")


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the daemon that started it dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _job(header: dict[str, Any], arrays: list[Any]) -> ServiceJob:
    n = int(header["styles"])
    rest = arrays[1 + n :]
    mask = rest.pop(0) if header["mask"] else None
    init = rest.pop(0) if header["init"] else None
    previous = (rest.pop(0), rest.pop(0)) if header.get("previous") else None
    return ServiceJob(
        ident=b"",
        job_id=header["job"],
        content=arrays[0],
        styles=arrays[1 : 1 + n],
        mask=mask,
        params=StyleParams.from_dict(header["params"]),
        init=init,
        preview_max_side=int(header["preview_max_side"]),
        heartbeat_s=0.0,
        previous=previous,
        temporal_weight=header.get("temporal_weight"),
    )


def _read(pipe: Pipe, jobs: queue.Queue[ServiceJob | None], known: dict[str, ServiceJob]) -> None:
    """The reader thread: jobs into ``jobs``, cancels onto the known jobs; None at the end."""
    try:
        while True:
            header, arrays = pipe.recv()
            if header["op"] == "job":
                job = _job(header, arrays)
                known[job.job_id] = job
                jobs.put(job)
            elif header["op"] == "cancel" and header["job"] in known:
                known[header["job"]].request_cancel(str(header.get("reason", "client")))
            elif header["op"] == "stop":
                break
    except PipeClosed:
        pass
    finally:
        jobs.put(None)


def serve_jobs(pipe: Pipe, weights: str | None) -> int:
    """Load the model, say ``ready`` (or ``failed``), then run jobs until told to stop."""
    from neural_style.daemon.engine import StyleTransfer
    from neural_style.daemon.service.handlers import weights_dict

    try:
        engine = StyleTransfer.load(weights)
    except NeuralStyleError as exc:
        pipe.send({"op": "failed", **worker_pipe.error_fields(exc)})
        return 1
    except Exception as exc:  # TensorFlow could not start: the daemon says why
        error = NeuralStyleError(
            ErrorCode.INTERNAL, f"The engine could not start: {type(exc).__name__}: {exc}"
        )
        pipe.send({"op": "failed", **worker_pipe.error_fields(error)})
        return 1
    pipe.send(
        {"op": "ready", "device": str(engine.device), "weights": weights_dict(engine.weights),
         "pid": os.getpid()}
    )  # fmt: skip

    def post(kind: WorkerEvent, job: ServiceJob, payload: Any) -> None:
        pipe.send(*worker_pipe.event_message(kind, job, payload))

    runner = JobRunner(engine, post)
    jobs: queue.Queue[ServiceJob | None] = queue.Queue()
    known: dict[str, ServiceJob] = {}
    threading.Thread(target=_read, args=(pipe, jobs, known), daemon=True).start()
    try:
        while (job := jobs.get()) is not None:
            post(*runner.run(job))
            known.pop(job.job_id, None)
    except PipeClosed:
        return 0
    return 0


def child_arguments(prog: str) -> argparse.ArgumentParser:
    """What every child the supervisor spawns takes: its pipe's fd, the weights, the log."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--weights")
    parser.add_argument("--log-file")
    parser.add_argument("--verbose", action="store_true")
    return parser


def start_child(args: argparse.Namespace, name: str) -> Pipe:
    """A spawned child's start: it dies with its parent, leaves Ctrl-C to it (the front
    end shuts it down in order), logs to stderr and the daemon's log file; the pipe on --fd."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if args.log_file:
        handlers.append(logging.FileHandler(args.log_file, encoding="utf-8"))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format=f"%(asctime)s {name} %(process)d %(levelname)s %(message)s",
        handlers=handlers,
    )
    return Pipe(socket.socket(fileno=args.fd))


def main(argv: list[str] | None = None) -> int:
    args = child_arguments("neural-style-worker").parse_args(argv)
    pipe = start_child(args, "worker")
    if not args.verbose:
        from neural_style.daemon.quiet import hide_tensorflow_start_up

        hide_tensorflow_start_up()
    return serve_jobs(pipe, args.weights)


if __name__ == "__main__":
    sys.exit(main())
