"""The ray backend against the local one, on a real Ray cluster on this machine.

    nice .venv/bin/python benchmarks/bench_cluster.py [--json docs/bench-cluster.json]

``ray.cluster_utils.Cluster``: a head with 0 CPUs and two 1-CPU worker nodes (real raylet
processes); two real ``neural-style serve`` daemons with the synthetic weights (random
VGG-19 values: plumbing, not pictures), one ``--backend ray --workers 2``, one local. The
actors and the local worker run TensorFlow with one intra-op and one inter-op thread, so
that one actor is one core, and Ray's workers at niceness 0 (Ray's default is +15), as
the local worker. Measurements alternate between the two sides in rounds, so
that a change in the machine's load (other work shares it) hits both alike.

- throughput: jobs per minute with two actors busy (two jobs in flight) against one (one
  job at a time, on the same daemon: the other actor idles); the goal: >= 1.8x;
- overhead: one 512 px job's wall time from submit to result, ray against local, both
  warm; and the part of it outside the engine (wall time minus the engine's own
  ``elapsed_s``); the goal: <= 5 % of the job's time;
- first progress: from submit to the first ``progress`` message, ray against local (the
  goal: within 1 s);
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
from machine import cpu_name

from neural_style.daemon.service.codec import image_from_array as image
from neural_style.daemon.service.harness import Daemon, synthetic_weights
from neural_style.shared.client import Done, Progress

ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}


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
                    total = time.perf_counter() - t0
                    engine = float(e.stats.get("elapsed_s", 0.0))
                    return {"first_progress_s": round(first, 3), "total_s": round(total, 3),
                            "engine_s": round(engine, 3), "outside_s": round(total - engine, 3),
                            "step_s": round(float(e.stats.get("step_s", 0.0)), 3)}  # fmt: skip
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


def load() -> list[float]:
    with open("/proc/loadavg", encoding="utf-8") as f:
        return [float(v) for v in f.read().split()[:3]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the figures here too")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of each comparison")
    ap.add_argument("--side", type=int, default=128, help="throughput jobs' size")
    ap.add_argument("--iterations", type=int, default=30, help="throughput jobs' steps")
    ap.add_argument("--big-iterations", type=int, default=4, help="512 px jobs' steps")
    ap.add_argument("--fault-jobs", type=int, default=20)
    ap.add_argument("--kills", type=int, default=2)
    args = ap.parse_args()
    import ray
    from ray.cluster_utils import Cluster

    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    weights = synthetic_weights(work)
    report: dict[str, Any] = {
        "cpu": cpu_name(), "cores": os.cpu_count(), "ray": ray.__version__,
        "python": platform.python_version(), "load_start": load(),
    }  # fmt: skip
    t0 = time.perf_counter()
    # Ray starts its workers at niceness +15: under any other load the actors would lose
    # to the local worker (which runs at the daemon's own niceness) for that reason alone.
    os.environ["RAY_worker_niceness"] = "0"  # noqa: SIM112 (Ray's own spelling)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    report["cluster_up_s"] = round(time.perf_counter() - t0, 1)
    print(f"cluster up in {report['cluster_up_s']} s at {cluster.address}", flush=True)
    saved = {k: os.environ.get(k) for k in ONE_THREAD}
    os.environ.update(ONE_THREAD)
    local = Daemon(weights, work / "local").wait_ready(timeout=600)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    d = ray_daemon(weights, work / "ray", cluster.address, 2)
    big = args.big_iterations
    try:
        wait_idle(d, 2)
        one_job(local, 1, 512, big)  # warm-up: graphs traced, style Grams cached
        one_job(d, 1, 512, big)
        run_many(d, [7, 8], args.side, args.iterations)  # one warm-up per actor
        local_runs, ray_runs, seq, par = [], [], [], []
        for r in range(args.rounds):
            local_runs.append(one_job(local, 2 + r, 512, big))
            ray_runs.append(one_job(d, 2 + r, 512, big))
            print(f"512 px round {r}: local {local_runs[-1]}, ray {ray_runs[-1]}", flush=True)
        local.stop()
        for r in range(args.rounds):
            seeds = [100 + 2 * r, 101 + 2 * r]
            t = time.perf_counter()
            for s in seeds:
                one_job(d, s, args.side, args.iterations)
            seq.append(time.perf_counter() - t)
            par.append(run_many(d, [200 + s for s in seeds], args.side, args.iterations)["seconds"])
            print(f"throughput round {r}: one at a time {seq[-1]:.1f} s, two at once "
                  f"{par[-1]:.1f} s", flush=True)  # fmt: skip
        faults = fault_run(d, cluster, nodes, args)
        print(f"faults: {faults}", flush=True)
    finally:
        local.stop()
        d.stop()
        cluster.shutdown()

    med = statistics.median
    local_s, ray_s = med(r["total_s"] for r in local_runs), med(r["total_s"] for r in ray_runs)
    out_l, out_r = med(r["outside_s"] for r in local_runs), med(r["outside_s"] for r in ray_runs)
    one, two = sum(seq), sum(par)
    report.update(
        throughput={
            "rounds": args.rounds, "jobs_per_round": 2, "side": args.side,
            "iterations": args.iterations, "one_actor_s": [round(v, 2) for v in seq],
            "two_actors_s": [round(v, 2) for v in par],
            "one_actor_jobs_per_min": round(60 * 2 * args.rounds / one, 2),
            "two_actors_jobs_per_min": round(60 * 2 * args.rounds / two, 2),
            "speedup": round(one / two, 3), "goal": 1.8,
        },
        overhead_512={
            "iterations": big, "local_runs": local_runs, "ray_runs": ray_runs,
            "local_s": round(local_s, 3), "ray_s": round(ray_s, 3),
            "wall_overhead_pct": round(100 * (ray_s - local_s) / local_s, 2),
            "local_outside_engine_s": out_l, "ray_outside_engine_s": out_r,
            "outside_engine_overhead_pct": round(100 * (out_r - out_l) / local_s, 2),
            "goal_pct": 5.0,
        },
        first_progress={
            "local_s": med(r["first_progress_s"] for r in local_runs),
            "ray_s": med(r["first_progress_s"] for r in ray_runs),
            "goal_within_s": 1.0,
        },
        faults=faults,
        load_end=load(),
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
