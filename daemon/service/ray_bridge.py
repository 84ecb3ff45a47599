"""The daemon's Ray driver: a process of its own between the front end and a Ray cluster.

Started by :class:`~.ray_backend.RayExecutor` as
``python -m neural_style.daemon.service.ray_bridge --fd N --address A ...``, it joins the
cluster, starts one :class:`StyleActor` per GPU (or per ``--worker-cpus`` CPU cores), each
with the model loaded once and its own style Gram cache (the weights: ``--weights`` at
the same path on every node, else each node's own default: ``$NEURAL_STYLE_WEIGHTS``, then
the Keras cache), and runs the jobs the front end
sends over its pipe (the :mod:`.worker_pipe` messages: msgpack headers plus arrays, never a
pickle from the network). A job goes to an idle actor, preferably one that ran the same
style before (its Grams are cached there); its progress, previews and result come back
as a Ray streaming generator and are forwarded to the front end as they arrive.

Why a process of its own: a Ray driver that loses its cluster for a minute ends its own
process (Ray's core worker exits when the GCS stays unreachable), and the front end must
outlive the cluster: it answers ``busy`` while this process is gone and starts a new one
until the cluster answers again. It also keeps Ray out of the front end's imports.

Faults: when an actor's call is lost (its node died, its process was killed), the job is
put back at the head of the line and runs again **from the start** on a live actor (the
front end's job keeps its inputs; an actor's intermediate image is not kept anywhere it
would survive the node). Progress and previews of the new attempt are forwarded only
once they pass the step the client already saw, so the client sees one gap in its
progress and one result. The lost actor is restarted by Ray (``max_restarts``) and takes
jobs again once it answers; one that cannot be restarted is replaced by a new one.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import queue
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import ray

from neural_style.daemon.service import worker_pipe
from neural_style.daemon.service.ray_pool import (
    STYLE_CACHE_SIZE,
    ActorPool,
    Slot,
    style_key,
)
from neural_style.daemon.service.worker_pipe import Pipe, PipeClosed
from neural_style.shared.errors import ErrorCode, NeuralStyleError

log = logging.getLogger("neural_style.daemon.ray")

#: A job whose calls were lost this many times ends with ``worker_crashed``.
MAX_ATTEMPTS = 3
#: How often the bridge tells the front end about its actors when nothing changed.
STATE_EVERY_S = 1.0
#: A cancelled job must end within this long (or this many of its slowest steps), else its
#: actor is killed (Ray restarts it) and the job answered ``cancelled``.
MIN_KILL_GRACE_S = 10.0
KILL_GRACE_STEPS = 4
TERMINAL_OPS = frozenset({"result", "cancelled", "error"})


@dataclass(eq=False)
class BridgeJob:
    token: str
    header: dict[str, Any]
    arrays: list[Any]
    style: str
    attempt: int = 0
    #: The furthest step (progress and preview) already forwarded: a new attempt's events
    #: are forwarded only past it.
    sent_step: int = 0
    sent_preview: int = 0
    step: int = 0
    slot: Slot | None = None
    cancel_reason: str = ""
    cancel_sent_at: float | None = None
    last_event: float = 0.0
    slowest_gap: float = 0.0


class Bridge:
    """The Ray driver's control loop: one thread owns the actors and the jobs; the pipe's
    reader and each call's stream reader feed it through ``self.inbox``."""

    def __init__(self, pipe: Pipe, args: argparse.Namespace) -> None:
        self.pipe = pipe
        self.args = args
        self.inbox: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.pool = ActorPool(args)
        self.jobs: dict[str, BridgeJob] = {}
        self.pending: deque[BridgeJob] = deque()
        self._last_state: Any = None
        self._state_at = 0.0

    # -- the loop
    def serve(self) -> None:
        threading.Thread(target=self._read_pipe, name="pipe", daemon=True).start()
        while True:
            try:
                item = self.inbox.get(timeout=0.2)
            except queue.Empty:
                item = ("tick",)
            if item[0] == "stop":
                return
            getattr(self, f"_on_{item[0]}")(*item[1:])
            now = time.monotonic()
            self.pool.probe_all(now)
            self._watch_cancels(now)
            self.pool.grow(now)
            self._dispatch()
            self._send_state(now)

    def _read_pipe(self) -> None:
        try:
            while True:
                header, arrays = self.pipe.recv()
                op = header["op"]
                if op == "job":
                    self.inbox.put(("job", header, arrays))
                elif op == "cancel":
                    self.inbox.put(("cancel", str(header["job"]), str(header.get("reason", ""))))
                elif op == "stop":
                    break
        except PipeClosed:
            pass
        self.inbox.put(("stop",))

    def _on_tick(self) -> None:
        pass

    def _on_job(self, header: dict[str, Any], arrays: list[Any]) -> None:
        job = BridgeJob(str(header["job"]), header, arrays, style_key(header, arrays))
        self.jobs[job.token] = job
        self.pending.append(job)

    def _on_cancel(self, token: str, reason: str) -> None:
        job = self.jobs.get(token)
        if job is None:
            return
        job.cancel_reason = reason or "client"
        if job.slot is None:  # waiting for an actor
            with contextlib.suppress(ValueError):
                self.pending.remove(job)
            self._finish(job, {"op": "cancelled", "job": token, "step": job.step}, [])
            return
        job.cancel_sent_at = time.monotonic()
        job.slot.handle.cancel.remote(token, job.cancel_reason)

    def _on_event(self, token: str, attempt: int, header: dict[str, Any], arrays: list) -> None:
        job = self.jobs.get(token)
        if job is None or job.attempt != attempt:
            return  # an event of an attempt given up on
        op = header["op"]
        now = time.monotonic()
        if op == "progress":
            step = int(header["step"]["step"])
            job.slowest_gap = max(job.slowest_gap, now - job.last_event)
            job.last_event, job.step = now, step
            if step <= job.sent_step:
                return
            job.sent_step = step
        elif op == "preview":
            if int(header["step"]) <= job.sent_preview:
                return
            job.sent_preview = int(header["step"])
        if op in TERMINAL_OPS:
            slot = job.slot
            if slot is not None:
                slot.state, slot.job = "idle", ""
                slot.cached[job.style] = None
                slot.cached.move_to_end(job.style)
                while len(slot.cached) > STYLE_CACHE_SIZE:
                    slot.cached.popitem(last=False)
            self._finish(job, header, arrays)
            return
        self._send(header, arrays)

    def _on_lost(self, token: str, attempt: int, why: str) -> None:
        job = self.jobs.get(token)
        if job is None or job.attempt != attempt:
            return
        slot = job.slot
        if slot is not None:
            log.warning("actor %d lost job %s: %s", slot.index, token, why)
            self.pool.lose(slot, why)
        job.slot = None
        if job.cancel_reason:
            self._finish(job, {"op": "cancelled", "job": token, "step": job.step}, [])
        elif job.attempt >= MAX_ATTEMPTS:
            error = NeuralStyleError(
                ErrorCode.WORKER_CRASHED,
                f"The cluster lost this job {job.attempt} times (last: {why}).",
                "Try again; if it happens again, lower the size parameter and look at the "
                "Ray dashboard for the actors' nodes.",
            )
            self._finish(job, {"op": "error", "job": token, **worker_pipe.error_fields(error)}, [])
        else:
            self._send({"op": "requeued", "job": token, "attempt": job.attempt, "why": why})
            self.pending.appendleft(job)

    def _finish(self, job: BridgeJob, header: dict[str, Any], arrays: list[Any]) -> None:
        self.jobs.pop(job.token, None)
        job.slot = None
        self._send(header, arrays)

    # -- placement
    def _dispatch(self) -> None:
        while self.pending:
            idle = [s for s in self.pool.slots if s.state == "idle"]
            if not idle:
                return
            job = self.pending.popleft()
            warm = [s for s in idle if job.style in s.cached]
            slot = warm[0] if warm else min(idle, key=lambda s: (len(s.cached), s.index))
            self._start(job, slot)

    def _start(self, job: BridgeJob, slot: Slot) -> None:
        job.attempt += 1
        job.slot = slot
        job.last_event = time.monotonic()
        job.slowest_gap = 0.0
        slot.state, slot.job = "busy", job.token
        stream = slot.handle.run.remote(job.header, job.arrays)
        threading.Thread(
            target=self._follow,
            args=(job.token, job.attempt, stream),
            name=f"stream-{job.token}-{job.attempt}",
            daemon=True,
        ).start()

    def _follow(self, token: str, attempt: int, stream: Any) -> None:
        """Read one call's stream into the inbox; a lost call becomes a ``lost`` item."""

        try:
            for ref in stream:
                header, arrays = ray.get(ref)
                self.inbox.put(("event", token, attempt, header, arrays))
                if header["op"] in TERMINAL_OPS:
                    return
            why = "the actor's stream ended without a result"
        except ray.exceptions.RayTaskError as exc:  # our own code raised: not a lost node
            error = NeuralStyleError(
                ErrorCode.INTERNAL, f"Internal error in a cluster actor: {str(exc)[:400]}"
            )
            header = {"op": "error", "job": token, **worker_pipe.error_fields(error)}
            self.inbox.put(("event", token, attempt, header, []))
            return
        except Exception as exc:  # RayActorError, ActorUnavailableError, ObjectLostError...
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        self.inbox.put(("lost", token, attempt, why))

    def _watch_cancels(self, now: float) -> None:
        for job in list(self.jobs.values()):
            slot = job.slot
            if slot is None or job.cancel_sent_at is None:
                continue
            grace = max(MIN_KILL_GRACE_S, KILL_GRACE_STEPS * job.slowest_gap)
            if now - job.cancel_sent_at > grace:
                log.error("job %s: actor %d did not stop %.0f s after the cancel; killing it",
                          job.token, slot.index, now - job.cancel_sent_at)  # fmt: skip
                job.cancel_sent_at = None
                ray.kill(slot.handle, no_restart=False)  # its stream then fails: "lost"

    # -- to the front end
    def _send_state(self, now: float) -> None:
        state = self.pool.state(self.jobs)
        if state != self._last_state or now - self._state_at > STATE_EVERY_S:
            self._last_state, self._state_at = state, now
            self._send({"op": "actors", **state})

    def _send(self, header: dict[str, Any], arrays: list[Any] | tuple[()] = ()) -> None:
        self.pipe.send(header, arrays)


def main(argv: list[str] | None = None) -> int:
    from neural_style.daemon.service.worker_process import child_arguments, start_child

    parser = child_arguments("neural-style-ray-bridge")
    parser.add_argument("--address", default="auto")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--worker-cpus", type=int, default=1)
    args = parser.parse_args(argv)
    pipe = start_child(args, "ray-bridge")
    bridge = Bridge(pipe, args)
    try:
        ready = bridge.pool.connect()
    except NeuralStyleError as exc:
        pipe.send({"op": "failed", **worker_pipe.error_fields(exc)})
        return 1
    except Exception as exc:  # Ray could not connect: the front end says why
        error = NeuralStyleError(
            ErrorCode.BUSY,
            f"the Ray cluster at {args.address} cannot be reached "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}).",
            "Start it (ray start --head) or fix --ray-address; see docs/cluster.md.",
        )
        pipe.send({"op": "failed", **worker_pipe.error_fields(error)})
        return 1
    pipe.send(ready)
    with contextlib.suppress(PipeClosed):
        bridge.serve()
    return 0


if __name__ == "__main__":
    # Through the package's own module, so that Ray ships StyleActor by reference.
    from neural_style.daemon.service import ray_bridge

    sys.exit(ray_bridge.main())
