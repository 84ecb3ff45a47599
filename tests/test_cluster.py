"""The daemon in front of a real Ray cluster on this machine: ``ray.cluster_utils.Cluster``
starts a head (0 CPUs: it holds no actor) and two 1-CPU worker nodes as real raylet
processes; a real ``neural-style serve --backend ray`` daemon with the synthetic weights
runs one actor per node. Nodes are removed (their processes killed) mid-job, jobs are
cancelled on remote actors, and the daemon starts before the cluster exists.

One cluster and one daemon for the module (each start costs ~20 s and ~1 GiB here).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neural_style.shared.client import Busy, Cancelled, Client, Done, Progress
from tests.daemon_helpers import REPO, Daemon, free_port, image, to_array

SIZE = 48
STYLE = np.random.default_rng(99).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)


def pic(seed: int, h: int = SIZE, w: int = SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def follow(job: Any, timeout: float = 180.0) -> list[Any]:
    """Every event of ``job`` until it ends (its error raised)."""
    events: list[Any] = []
    deadline = time.monotonic() + timeout
    while not job.done:
        assert time.monotonic() < deadline, f"the job hung; last events {events[-3:]}"
        events += job.poll(100)
    return events


def follow_all(jobs: list[Any], timeout: float = 300.0) -> list[list[Any]]:
    """Every event of each job, polling them in turn (a client that is not polled sends
    no heartbeats, and the daemon would cancel its jobs as ``client_gone``)."""
    events: list[list[Any]] = [[] for _ in jobs]
    deadline = time.monotonic() + timeout
    while not all(job.done for job in jobs):
        assert time.monotonic() < deadline, "a job hung"
        for job, got in zip(jobs, events, strict=True):
            if not job.done:
                got += job.poll(20)
    return events


def until_step(job: Any, step: int, events: list[Any], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(isinstance(e, Progress) and e.step >= step for e in events):
        assert time.monotonic() < deadline, "the job never reached its step"
        assert not job.done, f"the job ended early: {events[-1:]}"
        events += job.poll(100)


def status(d: Daemon) -> dict[str, Any]:
    with d.client() as c:
        return c.status()


def wait_status(d: Daemon, pred: Any, timeout: float = 240.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    info = status(d)
    while not pred(info):
        assert time.monotonic() < deadline, (
            f"status never matched: {info['worker']} {info['actors']}"
        )
        time.sleep(0.3)
        info = status(d)
    return info


def idle_actors(n: int) -> Any:
    return lambda info: sum(a["state"] == "idle" for a in info["actors"]) >= n


class ClusterBox:
    """The module's cluster, started on demand (the first test runs without it)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cluster: Any = None
        self.nodes: list[Any] = []

    def start(self) -> Any:
        if self.cluster is None:
            from ray.cluster_utils import Cluster

            self.cluster = Cluster(
                initialize_head=True, head_node_args={"num_cpus": 0, "gcs_server_port": self.port}
            )
            self.nodes = [self.cluster.add_node(num_cpus=1) for _ in range(2)]
            self.cluster.wait_for_nodes()
        return self

    def node_of(self, actor: dict[str, Any]) -> Any:
        return next(n for n in self.nodes if n.node_id.startswith(actor["node"]))

    def remove(self, node: Any) -> None:
        self.nodes.remove(node)
        self.cluster.remove_node(node, allow_graceful=False)

    def add(self) -> None:
        self.nodes.append(self.cluster.add_node(num_cpus=1))

    def shutdown(self) -> None:
        if self.cluster is not None:
            self.cluster.shutdown()


@pytest.fixture(scope="module")
def box() -> Iterator[ClusterBox]:
    pytest.importorskip("ray", reason="the cluster extra (ray) is not installed")
    b = ClusterBox(free_port())
    try:
        yield b
    finally:
        b.shutdown()


@pytest.fixture(scope="module")
def daemon(
    box: ClusterBox, synthetic_weights: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    extra = ("--backend", "ray", "--ray-address", f"127.0.0.1:{box.port}",
             "--workers", "2", "--worker-cpus", "1", "--job-time-limit", "120")  # fmt: skip
    d = Daemon(synthetic_weights, tmp_path_factory.mktemp("ray-daemon"), extra=extra)
    try:
        yield d.wait_ready(timeout=120)
    finally:
        d.stop()


@pytest.fixture
def cluster(box: ClusterBox, daemon: Daemon) -> ClusterBox:
    """The cluster up, with both actors idle."""
    box.start()
    wait_status(daemon, idle_actors(2))
    return box


@pytest.mark.slow
def test_no_cluster_is_a_clear_busy_then_the_daemon_recovers(box: ClusterBox, daemon: Daemon):
    if box.cluster is not None:
        pytest.skip("the cluster is already up (this test runs first in the module)")
    info = status(daemon)
    assert info["worker"]["backend"] == "ray"
    assert info["worker"]["state"] in ("unreachable", "connecting")
    with daemon.client() as c:
        t0 = time.monotonic()
        with pytest.raises(Busy, match=rf"Ray cluster at 127\.0\.0\.1:{box.port}"):
            follow(c.submit(image(pic(1)), [image(STYLE)], {"size": SIZE, "iterations": 3}))
        assert time.monotonic() - t0 < 3.0
        assert c.ping() < 1.0  # the front end answers meanwhile
    box.start()
    info = wait_status(daemon, lambda i: i["capacity"] == 2)
    assert info["worker"]["state"] == "ready"
    with daemon.client() as c:
        done = follow(c.submit(image(pic(1)), [image(STYLE)], {"size": SIZE, "iterations": 3}))
        assert isinstance(done[-1], Done)


@pytest.mark.slow
def test_four_jobs_from_two_clients_run_on_both_nodes(cluster: ClusterBox, daemon: Daemon):
    shapes = [(48, 48), (48, 56), (56, 48), (40, 48)]
    seen_running: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen_running.append(len(status(daemon)["running_jobs"]))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with daemon.client() as a, daemon.client() as b:
        jobs = []
        for i, (h, w) in enumerate(shapes):
            client = (a, b)[i % 2]
            params = {"size": SIZE, "iterations": 25, "seed": i}
            jobs.append((client, client.submit(image(pic(10 + i, h, w)), [image(STYLE)], params)))
        results = follow_all([job for _, job in jobs])
    stop.set()
    watcher.join()
    images = []
    for (h, w), events in zip(shapes, results, strict=True):
        done = events[-1]
        assert isinstance(done, Done) and sum(isinstance(e, Done) for e in events) == 1
        result = to_array(done.image)
        assert result.shape[:2] == (h, w)  # each client got its own job's result
        assert done.stats["device"].startswith("ray")
        images.append(result)
    for i, ((h, w), result) in enumerate(zip(shapes, images, strict=True)):
        assert np.abs(result.astype(int) - pic(10 + i, h, w)).mean() > 1  # stylized
    assert max(seen_running) == 2  # both actors worked at once
    info = status(daemon)
    assert all(a["cached_styles"] for a in info["actors"]), info["actors"]
    assert len({a["node"] for a in info["actors"]}) == 2


@pytest.mark.slow
def test_node_removed_mid_job_job_finishes_elsewhere_once(cluster: ClusterBox, daemon: Daemon):
    requeued = status(daemon)["worker"]["requeued"]
    with daemon.client() as c:
        long_params = {"size": SIZE, "iterations": 120}
        first = c.submit(image(pic(21)), [image(STYLE)], long_params)
        first_events: list[Any] = []
        until_step(first, 5, first_events)
        second = c.submit(image(pic(22)), [image(STYLE)], {"size": SIZE, "iterations": 60})
        second_events: list[Any] = []
        until_step(second, 2, second_events)
        info = status(daemon)
        victim = next(a for a in info["actors"] if a["state"] == "busy" and a["step"] >= 5)
        cluster.remove(cluster.node_of(victim))
        # The lost job waits for the surviving actor (busy with the second job), then runs
        # there from the start: neither client hangs, each job has exactly one result.
        more = follow_all([first, second])
        first_events += more[0]
        second_events += more[1]
    for events in (first_events, second_events):
        assert sum(isinstance(e, Done) for e in events) == 1
        assert isinstance(events[-1], Done)
        steps = [e.step for e in events if isinstance(e, Progress)]
        assert steps == sorted(steps), steps  # one gap, never backwards
    info = status(daemon)
    assert info["worker"]["requeued"] == requeued + 1
    lost = next(a for a in info["actors"] if a["name"] == victim["name"])
    assert lost["restarts"] >= 1
    # A node joins: Ray places the restarted actor there and it takes jobs again.
    cluster.add()
    info = wait_status(daemon, idle_actors(2))
    assert victim["node"] not in {a["node"] for a in info["actors"]}


@pytest.mark.slow
def test_cancel_reaches_the_remote_actor_within_a_step(cluster: ClusterBox, daemon: Daemon):
    with daemon.client() as c:
        job = c.submit(image(pic(31)), [image(STYLE)], {"size": SIZE, "iterations": 3000})
        events: list[Any] = []
        until_step(job, 3, events)
        t0 = time.monotonic()
        job.cancel()
        events += follow(job, timeout=30)
        took = time.monotonic() - t0
        cancelled = events[-1]
        assert isinstance(cancelled, Cancelled), events[-1]
        assert cancelled.step - cancelled.requested_at_step <= 2
        assert took < 5.0
        wait_status(daemon, idle_actors(2), timeout=30)
        nxt = follow(c.submit(image(pic(32)), [image(STYLE)], {"size": SIZE, "iterations": 4}))
        assert isinstance(nxt[-1], Done)


@pytest.mark.slow
def test_vanished_clients_job_is_cancelled_on_the_cluster(cluster: ClusterBox, daemon: Daemon):
    before = status(daemon)["jobs"]["cancelled"]
    info = daemon.info
    c = Client(daemon.endpoint, key=daemon.key, info=info, heartbeat_interval=0.2)
    job = c.submit(image(pic(41)), [image(STYLE)], {"size": SIZE, "iterations": 3000})
    until_step(job, 2, [])
    c.close()  # no cancel, no more heartbeats: the client is gone
    wait_status(daemon, lambda i: i["jobs"]["cancelled"] == before + 1, timeout=30)
    wait_status(daemon, idle_actors(2), timeout=30)
    assert "client_gone" in daemon.log_file.read_text()


@pytest.mark.slow
def test_batch_keeps_both_actors_busy(cluster: ClusterBox, daemon: Daemon, tmp_path: Path):
    from PIL import Image

    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(4):
        Image.fromarray(pic(50 + i)).save(inputs / f"f{i}.png")
    Image.fromarray(STYLE).save(tmp_path / "style.png")
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append(len(status(daemon)["running_jobs"]))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert daemon.connection_file is not None
    env = {**_env(), "NEURAL_STYLE_CONNECTION_FILE": str(daemon.connection_file)}
    proc = subprocess.run(
        [sys.executable, "-m", "neural_style.daemon.cli", "batch", str(inputs), "--style",
         str(tmp_path / "style.png"), "-o", str(tmp_path / "out"), "--size", str(SIZE),
         "--iterations", "30", "--daemon", daemon.endpoint, "--quiet",
         "--report", str(tmp_path / "report.json")],
        capture_output=True, text=True, timeout=300, env=env, cwd=REPO,
    )  # fmt: skip
    stop.set()
    watcher.join()
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [
        f"f{i}.png" for i in range(4)
    ]
    assert max(seen) == 2


def test_frames_run_as_one_chunk_per_actor(cluster: ClusterBox, daemon: Daemon, tmp_path: Path):
    """batch --frames through the two actors: the sequence cut into two runs side by side,
    each run's first frame started afresh, every other frame from its predecessor."""
    from PIL import Image

    from neural_style.daemon.frames import sequences

    inputs = tmp_path / "in"
    inputs.mkdir()
    photo = sequences.load_still(REPO / "tests" / "data" / "chelsea_128.png")
    seq = sequences.pan(photo, (SIZE, SIZE), frames=6)
    for i, frame in enumerate(seq.frames):
        Image.fromarray(sequences.to_uint8(frame)).save(inputs / f"frame_{i + 1}.png")
    Image.fromarray(STYLE).save(tmp_path / "style.png")
    assert daemon.connection_file is not None
    env = {**_env(), "NEURAL_STYLE_CONNECTION_FILE": str(daemon.connection_file)}
    proc = subprocess.run(
        [sys.executable, "-m", "neural_style.daemon.cli", "batch", str(inputs), "--style",
         str(tmp_path / "style.png"), "-o", str(tmp_path / "out"), "--size", str(SIZE),
         "--iterations", "20", "--daemon", daemon.endpoint, "--quiet", "--frames",
         "--report", str(tmp_path / "report.json")],
        capture_output=True, text=True, timeout=300, env=env, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((tmp_path / "report.json").read_text())["rows"]
    assert [Path(r["input"]).name for r in rows] == [f"frame_{i}.png" for i in range(1, 7)]
    continued = [bool(r["frame"].get("continued")) for r in rows]
    assert continued == [False, True, True, False, True, True]


@pytest.mark.slow
def test_lost_ray_driver_ends_its_jobs_and_the_daemon_reconnects(
    cluster: ClusterBox, daemon: Daemon
):
    """The Ray driver (the bridge process) dies mid-job, as it does when its cluster has
    been unreachable for a minute: the running job ends ``worker_crashed`` at once, the
    daemon answers meanwhile and serves again with new actors."""
    import os
    import signal

    from neural_style.shared.client import WorkerCrashed

    before = status(daemon)["worker"]
    with daemon.client() as c:
        job = c.submit(image(pic(61)), [image(STYLE)], {"size": SIZE, "iterations": 3000})
        until_step(job, 2, [])
        os.kill(int(before["pid"]), signal.SIGKILL)
        t0 = time.monotonic()
        with pytest.raises(WorkerCrashed, match="Ray cluster"):
            follow(job, timeout=30)
        assert time.monotonic() - t0 < 10
        assert c.ping() < 1.0
    info = wait_status(daemon, idle_actors(2))
    assert info["worker"]["restarts"] == before["restarts"] + 1
    assert info["worker"]["pid"] != before["pid"]
    with daemon.client() as c:
        done = follow(c.submit(image(pic(62)), [image(STYLE)], {"size": SIZE, "iterations": 3}))
        assert isinstance(done[-1], Done)


def _env() -> dict[str, str]:
    from tests.daemon_helpers import daemon_env

    return daemon_env()


def test_local_backend_never_imports_ray() -> None:
    """The default path (CLI, service, a daemon started with the local backend) loads
    nothing of Ray: the cluster extra stays optional."""
    script = textwrap.dedent(
        """
        import sys, tempfile
        from pathlib import Path
        import numpy as np
        from neural_style.daemon.cli import batch, entry_point, serve
        from neural_style.daemon.service import entry, ray_backend
        from neural_style.shared.client import Done
        from tests.daemon_helpers import image
        from tests.service_fakes import client_for, running_server
        with tempfile.TemporaryDirectory() as tmp, running_server(Path(tmp)) as srv:
            assert srv.executor.describe()["backend"] == "local"
            with client_for(srv) as c:
                img = image(np.zeros((32, 32, 3), np.uint8))
                assert isinstance(c.submit(img, [img], {"size": 32}).wait(), Done)
        print(sorted(m for m in sys.modules if m == "ray" or m.startswith("ray.")))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
