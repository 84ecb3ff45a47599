"""The bridge's actors (:mod:`.ray_bridge`): how many (``--workers``, else the cluster's
GPUs or CPUs; more as nodes join), their health (a probe call answers once an actor has
loaded the model, and again after each restart Ray makes), placement facts (node, device,
the styles whose Grams an actor holds) and their description for ``status``."""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import ray

from neural_style.daemon.service.ray_actor import StyleActor
from neural_style.shared.errors import ErrorCode, NeuralStyleError

log = logging.getLogger("neural_style.daemon.ray")

#: Ray namespace of the daemon's actors.
NAMESPACE = "neural-style"
#: How often the actor count is matched to the cluster's size (without ``--workers``).
GROW_EVERY_S = 5.0
#: How long the first actors may take to load the model.
LOAD_TIMEOUT_S = 600.0
#: Style Grams an actor keeps (the engine's own LRU size), as the bridge tracks them.
STYLE_CACHE_SIZE = 16


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

    def describe(self, jobs: dict[str, Any]) -> dict[str, Any]:
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

    def state(self, jobs: dict[str, Any]) -> dict[str, Any]:
        actors = [s.describe(jobs) for s in self.slots]
        ready = sum(s.state in ("idle", "busy") for s in self.slots)
        return {"actors": actors, "capacity": ready}


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
