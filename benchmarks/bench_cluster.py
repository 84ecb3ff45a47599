"""The ray backend against the local one, on a real Ray cluster on this machine.

    nice .venv/bin/python benchmarks/bench_cluster.py [--json docs/bench-cluster.json]

``ray.cluster_utils.Cluster``: a head with 0 CPUs and two 1-CPU worker nodes (real raylet
processes); real ``neural-style serve`` daemons with the synthetic weights (random VGG-19
values: plumbing, not pictures). Every actor and the local worker run TensorFlow with one
intra-op and one inter-op thread, so that one actor is one core.

- throughput: jobs per minute of ``--workers 1`` against ``--workers 2`` (the goal: 2
  actors >= 1.8x), same jobs, after one warm-up job per actor;
- overhead: one 512 px job's wall time from submit to result, ray (one actor) against
  local (the worker process), both warm; the goal: <= 5 % of the job's time;
- first progress: from submit to the first ``progress`` message on a warm daemon, ray
  against local (the goal: within 1 s);
- faults: >= 20 jobs from two clients while a random worker node is killed (SIGKILL of
  its processes) at random moments and a new one joins: jobs lost and results duplicated
  (the goal: 0 and 0).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from neural_style.daemon.service.codec import image_from_array as image
from neural_style.daemon.service.harness import Daemon, synthetic_weights
from neural_style.shared.client import Done, Progress

ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def pic(seed: int, side: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (side, side, 3), dtype=np.uint8)


def one_job(d: Daemon, seed: int, side: int, iterations: int) -> dict[str, float]:
    """Submit one job and follow it: seconds to the first progress and to the result."""
    with d.client() as c:
        t0 = time.perf_counter()
        job = c.submit(image(pic(seed, side)), [image(pic(999, side))],
                       {"size": side, "iterations": iterations})  # fmt: skip
        first = 0.0
        while not job.done:
            for e in job.poll(50):
                if isinstance(e, Progress) and not first:
                    first = time.perf_counter() - t0
                if isinstance(e, Done):
                    return {"first_progress_s": first, "total_s": time.perf_counter() - t0,
                            "step_s": float(e.stats.get("step_s", 0.0))}  # fmt: skip
    raise RuntimeError("the job did not end with a result")


def run_many(d: Daemon, seeds: list[int], side: int, iterations: int, clients: int = 2) -> dict:
    """Submit every job at once from ``clients`` clients; count each job's results."""
    counts: dict[int, int] = {}
    errors: list[str] = []
    lock = threading.Lock()

    def client_jobs(mine: list[int]) -> None:
        with d.client(timeout=30.0) as c:
            params = {"size": side, "iterations": iterations}
            style = image(pic(999, side))
            jobs = [(s, c.submit(image(pic(s, side)), [style], params)) for s in mine]
            for seed, job in jobs:
                try:
                    while not job.done:
                        for e in job.poll(100):
                            if isinstance(e, Done):
                                with lock:
                                    counts[seed] = counts.get(seed, 0) + 1
                except Exception as exc:
                    with lock:
                        errors.append(f"{seed}: {type(exc).__name__}: {exc}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client_jobs, args=(seeds[i::clients],))
               for i in range(clients)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"seconds": time.perf_counter() - t0, "counts": counts, "errors": errors}


def ray_daemon(weights: Path, work: Path, address: str, workers: int) -> Daemon:
    extra = ("--backend", "ray", "--ray-address", address, "--workers", str(workers),
             "--worker-cpus", "1", "--max-jobs-per-client", "64", "--queue", "64")  # fmt: skip
    return Daemon(weights, work, extra=extra).wait_ready(timeout=600)


def wait_idle(d: Daemon, n: int, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with d.client() as c:
            if sum(a["state"] == "idle" for a in c.status()["actors"]) >= n:
                return
        time.sleep(0.5)
    raise TimeoutError(f"{n} actors not idle after {timeout} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the figures here too")
    ap.add_argument("--jobs", type=int, default=6, help="jobs per throughput run")
    ap.add_argument("--side", type=int, default=128, help="throughput jobs' size")
    ap.add_argument("--iterations", type=int, default=30, help="throughput jobs' steps")
    ap.add_argument("--big-iterations", type=int, default=4, help="512 px jobs' steps")
    ap.add_argument("--fault-jobs", type=int, default=20)
    ap.add_argument("--kills", type=int, default=2)
    args = ap.parse_args()
    from ray.cluster_utils import Cluster

    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    weights = synthetic_weights(work)
    report: dict[str, Any] = {"cpu": cpu_name(), "cores": os.cpu_count(),
                              "python": platform.python_version()}  # fmt: skip
    import ray

    report["ray"] = ray.__version__
    t0 = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    report["cluster_up_s"] = round(time.perf_counter() - t0, 1)
    print(f"cluster up in {report['cluster_up_s']} s at {cluster.address}", flush=True)
    try:
        # -- local, one thread: the 512 px job and its first progress
        saved = {k: os.environ.get(k) for k in ONE_THREAD}
        os.environ.update(ONE_THREAD)
        local = Daemon(weights, work / "local").wait_ready(timeout=600)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        try:
            one_job(local, 1, 512, args.big_iterations)  # warm-up: graphs traced
            local_runs = [one_job(local, 2 + i, 512, args.big_iterations) for i in range(2)]
        finally:
            local.stop()
        print(f"local 512 px: {local_runs}", flush=True)

        # -- ray, one actor: the same 512 px job, then the one-actor throughput
        d1 = ray_daemon(weights, work / "ray1", cluster.address, 1)
        try:
            wait_idle(d1, 1)
            one_job(d1, 1, 512, args.big_iterations)
            ray_runs = [one_job(d1, 2 + i, 512, args.big_iterations) for i in range(2)]
            print(f"ray 512 px: {ray_runs}", flush=True)
            one_job(d1, 7, args.side, args.iterations)
            seeds = list(range(100, 100 + args.jobs))
            single = run_many(d1, seeds, args.side, args.iterations)
        finally:
            d1.stop()
        print(f"1 actor: {args.jobs} jobs in {single['seconds']:.1f} s", flush=True)

        # -- ray, two actors: throughput, then faults
        d2 = ray_daemon(weights, work / "ray2", cluster.address, 2)
        try:
            wait_idle(d2, 2)
            run_many(d2, [7, 8], args.side, args.iterations)  # one warm-up per actor
            double = run_many(d2, seeds, args.side, args.iterations)
            print(f"2 actors: {args.jobs} jobs in {double['seconds']:.1f} s", flush=True)
            faults = fault_run(d2, cluster, nodes, args)
        finally:
            d2.stop()
    finally:
        cluster.shutdown()

    med = statistics.median
    local_s = med(r["total_s"] for r in local_runs)
    ray_s = med(r["total_s"] for r in ray_runs)
    per_min_1 = 60 * args.jobs / single["seconds"]
    per_min_2 = 60 * args.jobs / double["seconds"]
    report.update(
        throughput={
            "jobs": args.jobs, "side": args.side, "iterations": args.iterations,
            "one_actor_s": round(single["seconds"], 2), "two_actors_s": round(double["seconds"], 2),
            "one_actor_jobs_per_min": round(per_min_1, 2),
            "two_actors_jobs_per_min": round(per_min_2, 2),
            "speedup": round(per_min_2 / per_min_1, 3), "goal": 1.8,
        },
        overhead_512={
            "iterations": args.big_iterations, "local_runs": local_runs, "ray_runs": ray_runs,
            "local_s": round(local_s, 3), "ray_s": round(ray_s, 3),
            "overhead_pct": round(100 * (ray_s - local_s) / local_s, 2), "goal_pct": 5.0,
        },
        first_progress={
            "local_s": round(med(r["first_progress_s"] for r in local_runs), 3),
            "ray_s": round(med(r["first_progress_s"] for r in ray_runs), 3),
            "goal_within_s": 1.0,
        },
        faults=faults,
    )  # fmt: skip
    fp = report["first_progress"]
    fp["difference_s"] = round(fp["ray_s"] - fp["local_s"], 3)
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


def fault_run(d: Daemon, cluster: Any, nodes: list[Any], args: argparse.Namespace) -> dict:
    """``--fault-jobs`` jobs at once; ``--kills`` times a random worker node is killed at
    a random moment while jobs run, and a new node joins right after."""
    rng = random.Random(0)
    with d.client() as c:
        done_before = c.status()["jobs"]["done"]
    seeds = list(range(1000, 1000 + args.fault_jobs))
    result: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: result.update(run_many(d, seeds, 64, 20)), daemon=True)
    runner.start()
    kills = []
    for _ in range(args.kills):
        time.sleep(rng.uniform(2.0, 8.0))
        if not runner.is_alive():
            break
        victim = rng.choice(nodes)
        nodes.remove(victim)
        t = time.perf_counter()
        cluster.remove_node(victim, allow_graceful=False)
        nodes.append(cluster.add_node(num_cpus=1))
        kills.append(round(time.perf_counter() - t, 2))
    runner.join()
    counts = result["counts"]
    with d.client() as c:
        info = c.status()
    worker = info["worker"]
    return {
        "daemon_results": info["jobs"]["done"] - done_before,
        "jobs": args.fault_jobs,
        "nodes_killed": len(kills),
        "lost": sum(1 for s in seeds if counts.get(s, 0) == 0),
        "duplicated": sum(1 for s in seeds if counts.get(s, 0) > 1),
        "errors": result["errors"],
        "requeued": worker.get("requeued", 0),
        "seconds": round(result["seconds"], 1),
    }


if __name__ == "__main__":
    sys.exit(main())
