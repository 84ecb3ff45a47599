"""A real GIMP 3 drives the unchanged plug-in against a daemon in front of a real Ray
cluster (``serve --backend ray``; ``ray.cluster_utils.Cluster``: a 0-CPU head and two
1-CPU nodes on this machine). The cases are tests/test_gimp_e2e.py's (same driver, same
dumps), run without the dialogs; what they check here: the plug-in's results, progress
and repeat work through the cluster as through a local daemon.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.test_gimp_e2e import CASES, HERE, IMAGES, Daemon, _cli, _data_dir, harness

pytestmark = [pytest.mark.gimp, pytest.mark.slow]

NAMES = ("basic", "gray", "batch128", "repeat")


@pytest.fixture(scope="module")
def cluster_run(
    tmp_path_factory: pytest.TempPathFactory, synthetic_weights: Path
) -> dict[str, Any]:
    pytest.importorskip("ray", reason="the cluster extra (ray) is not installed")
    try:
        env = harness.ensure_gimp()
    except harness.GimpUnavailable as exc:
        pytest.skip(f"no GIMP 3 here and no way to get one: {exc}")
    from ray.cluster_utils import Cluster

    from neural_style.shared import connection
    from neural_style.shared.client import Client

    work = tmp_path_factory.mktemp("gimp-cluster")
    out, data, profile = work / "out", work / "data", work / "profile"
    out.mkdir()
    data.mkdir()
    for name in IMAGES:
        shutil.copy(_data_dir() / f"{name}.png", data / f"{name}.png")
    proc = subprocess.run(
        _cli("install-plugin", "--gimp-dir", str(profile), "--python",
             shlex.join(env.python_command())),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    extra = ("--backend", "ray", "--ray-address", cluster.address, "--workers", "2")
    daemon = Daemon(work, synthetic_weights, extra=extra)
    try:
        conn = daemon.wait_ready(timeout=300)
        shutil.copy(conn, work / "connection.json")
        info = connection.read(conn)
        cases = [c for c in json.loads(json.dumps(CASES)) if c["name"] in NAMES]
        plugin_dir = profile / "plug-ins" / "neural_style"
        (work / "cases.json").write_text(
            json.dumps({"out_dir": str(out), "data_dir": str(data), "cases": cases,
                        "plugin_dir": str(plugin_dir), "no_ui": True})
        )  # fmt: skip
        shutil.copy(HERE / "gimp" / "batch_driver.py", work / "batch_driver.py")
        plugin_log = work / "plugin.log"
        t0 = time.monotonic()
        run = env.run_batch(
            f'exec(open("{work / "batch_driver.py"}").read())',
            work=work,
            profile=profile,
            env={
                "NSG_E2E_CASES": str(work / "cases.json"),
                "NEURAL_STYLE_PLUGIN_LOG": str(plugin_log),
                "NEURAL_STYLE_CONNECTION_FILE": str(work / "connection.json"),
                "NEURAL_STYLE_TIMEOUT": "10",
            },
            timeout=600,
            xvfb=False,
        )
        wall = time.monotonic() - t0
        with Client(daemon.endpoint, key=info.key, info=info) as client:
            status = client.status()
    finally:
        daemon_log = daemon.tail()
        daemon.stop()
        cluster.shutdown()
    results_path = out / "results.json"
    assert run.returncode == 0 and results_path.exists(), (
        f"gimp-console exit {run.returncode}\n{harness.show_log(run.stdout + run.stderr)}"
        f"\n--- daemon ---\n{daemon_log}"
    )
    results = json.loads(results_path.read_text())
    return {
        "cases": {c["name"]: c for c in results["cases"]},
        "specs": {c["name"]: c for c in cases},
        "out": out,
        "log": [json.loads(line) for line in plugin_log.read_text().splitlines()],
        "status": status,
        "daemon_log": daemon_log,
        "wall_s": wall,
    }


def _ok(run: dict[str, Any], name: str) -> dict[str, Any]:
    rec = run["cases"].get(name)
    assert rec is not None, f"case {name} did not run"
    assert rec.get("status") == "success", f"{name}: {rec}\n--- daemon ---\n{run['daemon_log']}"
    return rec


@pytest.mark.parametrize("name", NAMES)
def test_plugin_cases_succeed_through_the_cluster(cluster_run: dict[str, Any], name: str):
    _ok(cluster_run, name)


def test_results_are_stylized_with_alpha_kept(cluster_run: dict[str, Any]):
    from tests.test_gimp_e2e import _raw

    rec = _ok(cluster_run, "basic")
    w, h = rec["content_size"]
    content = _raw(cluster_run, "basic", "content", w, h).astype(int)
    result = _raw(cluster_run, "basic", "result", w, h).astype(int)
    assert np.array_equal(result[..., 3], content[..., 3])
    assert np.abs(result[..., :3] - content[..., :3]).mean() > 2.0


def test_the_plugin_saw_progress_and_the_cluster_ran_the_jobs(cluster_run: dict[str, Any]):
    events = [e["event"] for e in cluster_run["log"]]
    assert "progress" in events
    status = cluster_run["status"]
    assert status["worker"]["backend"] == "ray"
    assert status["jobs"]["done"] >= len(NAMES)
    assert sum(bool(a["cached_styles"]) for a in status["actors"]) >= 1
