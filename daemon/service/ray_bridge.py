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
import hashlib
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import ray

from neural_style.daemon.service import worker_pipe
from neural_style.daemon.service.worker_pipe import Pipe, PipeClosed
from neural_style.shared.errors import ErrorCode, NeuralStyleError

log = logging.getLogger("neural_style.daemon.ray")

#: Ray namespace of the daemon's actors.
NAMESPACE = "neural-style"
#: A job whose calls were lost this many times ends with ``worker_crashed``.
MAX_ATTEMPTS = 3
#: How often the bridge tells the front end about its actors when nothing changed.
STATE_EVERY_S = 1.0
#: A cancelled job must end within this long (or this many of its slowest steps), else its
#: actor is killed (Ray restarts it) and the job answered ``cancelled``.
MIN_KILL_GRACE_S = 10.0
KILL_GRACE_STEPS = 4
#: How often the actor count is matched to the cluster's size (without ``--workers``).
GROW_EVERY_S = 5.0
#: How long the first actors may take to load the model.
LOAD_TIMEOUT_S = 600.0
#: Style Grams an actor keeps (the engine's own LRU size), as the bridge tracks them.
STYLE_CACHE_SIZE = 16
TERMINAL_OPS = frozenset({"result", "cancelled", "error"})


# --------------------------------------------------------------------------- the actor
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


# --------------------------------------------------------------------------- the bridge
@dataclass(eq=False)
class Slot:
    """One actor as the bridge sees it."""

    index: int
    handle: Any
    state: str = "starting"  # starting, idle, busy, restarting
    info: dict[str, Any] = field(default_factory=dict)
    cached: OrderedDict[str, None] = field(default_factory=OrderedDict)
    job: str = ""
    probe: Any = None
    probe_at: float = 0.0
    restarts: int = 0
    last_error: str = ""

    def describe(self, jobs: dict[str, BridgeJob]) -> dict[str, Any]:
        job = jobs.get(self.job)
        return {
            "name": f"{NAMESPACE}-{self.index}",
            "state": self.state,
            "node": str(self.info.get("node", ""))[:16],
            "host": str(self.info.get("host", "")),
            "ip": str(self.info.get("ip", "")),
            "pid": self.info.get("pid"),
            "device": str(self.info.get("device", "")),
            "threads": self.info.get("threads"),
            "job": self.job,
            "step": job.step if job is not None else 0,
            "cached_styles": [key[:12] for key in self.cached],
            "restarts": self.restarts,
            "last_error": self.last_error,
        }


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


def style_key(header: dict[str, Any], arrays: list[Any]) -> str:
    """What identifies a job's style targets on an actor: its style images' pixels (the
    engine's Gram cache is keyed by them, per working size and network variant)."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays[1 : 1 + int(header["styles"])]:
        h.update(repr(a.shape).encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


class ActorPool:
    """The actors: how many (the cluster's size, ``--workers``), their health (a probe
    call answers once an actor has loaded the model, again after each restart) and their
    description."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.slots: list[Slot] = []
        self._actor_cls: Any = None
        self._next_index = 0
        self._grown_at = 0.0
        self.num_gpus = 0
        self.worker_cpus = 1

    # -- start
    def connect(self) -> dict[str, Any]:
        """Join the cluster and start the actors; returns the ``ready`` message."""

        address = self.args.address
        _check_reachable(address)
        ray.init(
            address=address,
            namespace=NAMESPACE,
            logging_level=logging.WARNING,
            log_to_driver=False,
            configure_logging=False,
        )
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = int(resources.get("CPU", 0))
        per_node = max((int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n["Alive"]),
                       default=0)  # fmt: skip
        worker_cpus = max(1, min(self.args.worker_cpus, per_node or self.args.worker_cpus))
        self.num_gpus = 1 if gpus else 0
        self.worker_cpus = worker_cpus
        workers = self._wanted()
        remote: Any = ray.remote  # its typed overloads know no concurrency_groups
        self._actor_cls = remote(
            num_cpus=worker_cpus,
            num_gpus=self.num_gpus,
            max_restarts=-1,
            max_task_retries=0,
            concurrency_groups={"control": 2},
        )(StyleActor)
        log.info("ray: %d actors, %d CPU(s) each, %d GPU(s) each (cluster: %d CPUs, %d GPUs)",
                 workers, worker_cpus, self.num_gpus, cpus, gpus)  # fmt: skip
        for _ in range(workers):
            self.add_slot()
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        while not any(s.state == "idle" for s in self.slots):
            self.probe_all(time.monotonic(), wait=0.5)
            failed = [s for s in self.slots if s.last_error]
            if failed and all(s.last_error for s in self.slots):
                raise NeuralStyleError(
                    ErrorCode.INTERNAL,
                    f"The cluster's actors could not load the model: {failed[0].last_error}",
                    "Check that neural-style-gimp and the weights are installed on every "
                    "node (docs/cluster.md).",
                )
            if time.monotonic() > deadline:
                raise NeuralStyleError(
                    ErrorCode.INTERNAL,
                    f"No actor was up after {LOAD_TIMEOUT_S:.0f} s: the cluster has no room "
                    f"for one with {worker_cpus} CPU(s){' and a GPU' * self.num_gpus}.",
                    "Add nodes, or lower --worker-cpus.",
                )
        first = next(s for s in self.slots if s.state == "idle")
        return {
            "op": "ready",
            "pid": os.getpid(),
            "device": str(first.info.get("device", "")),
            "weights": first.info.get("weights", {}),
            "address": str(ray.get_runtime_context().gcs_address),
            **self.state({}),
        }

    def _wanted(self) -> int:
        """Actors to have: ``--workers``, else one per GPU, else one per ``worker_cpus``
        CPUs of the cluster as it is now (at least one)."""
        if self.args.workers:
            return int(self.args.workers)
        resources = ray.cluster_resources()
        if self.num_gpus:
            return max(1, int(resources.get("GPU", 0)))
        return max(1, int(resources.get("CPU", 0)) // self.worker_cpus)

    def grow(self, now: float) -> None:
        """Without ``--workers``: start actors for nodes that joined since (a node that
        left keeps its actor, which Ray restarts when there is room again)."""
        if self.args.workers or now - self._grown_at < GROW_EVERY_S:
            return
        self._grown_at = now
        for _ in range(self._wanted() - len(self.slots)):
            log.info("the cluster grew: starting actor %d", self._next_index)
            self.add_slot()

    def add_slot(self) -> Slot:
        index = self._next_index
        self._next_index += 1
        handle = self._actor_cls.options(name=f"{NAMESPACE}-{os.getpid()}-{index}").remote(
            self.args.weights or "", self.worker_cpus if not self.num_gpus else 0
        )
        slot = Slot(index, handle)
        slot.probe, slot.probe_at = handle.info.remote(), time.monotonic()
        self.slots.append(slot)
        return slot

    def lose(self, slot: Slot, why: str) -> None:
        slot.state, slot.job, slot.last_error = "restarting", "", why[:300]
        slot.cached.clear()
        slot.restarts += 1
        slot.probe, slot.probe_at = slot.handle.info.remote(), time.monotonic()

    # -- actors' health
    def probe_all(self, now: float, wait: float = 0.0) -> None:

        probing = [s for s in self.slots if s.probe is not None]
        if not probing:
            return
        ready, _ = ray.wait([s.probe for s in probing], num_returns=len(probing), timeout=wait)
        done = {id(r) for r in ready}
        for slot in probing:
            ref = slot.probe
            if id(ref) not in done:
                continue
            slot.probe = None
            try:
                slot.info = ray.get(ref)
            except ray.exceptions.ActorDiedError as exc:  # for good: a new actor instead
                log.warning("actor %d is gone for good (%s); starting a new one", slot.index,
                            str(exc).splitlines()[0][:200] if str(exc) else "")  # fmt: skip
                self.slots.remove(slot)
                self.add_slot().restarts = slot.restarts + 1
                continue
            except Exception as exc:  # restarting, or its constructor failed
                slot.last_error = f"{type(exc).__name__}: {str(exc)[:300]}"
                slot.probe, slot.probe_at = slot.handle.info.remote(), now
                continue
            slot.state, slot.last_error = "idle", ""
            log.info("actor %d ready on %s (%s)", slot.index, slot.info.get("host"),
                     slot.info.get("device"))  # fmt: skip

    def state(self, jobs: dict[str, BridgeJob]) -> dict[str, Any]:
        actors = [s.describe(jobs) for s in self.slots]
        ready = sum(s.state in ("idle", "busy") for s in self.slots)
        return {"actors": actors, "capacity": ready}


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


def _check_reachable(address: str) -> None:
    """Fail fast (a clear error) when nothing listens at ``address``: Ray's own connection
    attempt would retry for a minute."""
    if address in ("", "auto", "local") or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=5.0):
            return
    except (OSError, ValueError) as exc:
        raise NeuralStyleError(
            ErrorCode.BUSY,
            f"no Ray cluster answers at {address} ({exc}).",
            "Start one (ray start --head) or fix --ray-address; see docs/cluster.md.",
        ) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="neural-style-ray-bridge")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--address", default="auto")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--worker-cpus", type=int, default=1)
    parser.add_argument("--weights")
    parser.add_argument("--log-file")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    from neural_style.daemon.service.worker_process import _die_with_parent

    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if args.log_file:
        handlers.append(logging.FileHandler(args.log_file, encoding="utf-8"))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s ray-bridge %(process)d %(levelname)s %(message)s",
        handlers=handlers,
    )
    pipe = Pipe(socket.socket(fileno=args.fd))
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
