"""End-to-end: the plug-in in a real GIMP 3 starts the daemon itself, then uses it.

No daemon runs when GIMP opens the filter. The user (tests/gimp/autostart_driver.py, under
Xvfb) presses OK and then "Start it"; the plug-in runs the command that ``install-plugin``
recorded. Our GIMP lives in a Debian 13 chroot, which cannot run that command: it is this
checkout's ``.venv/bin/neural-style``, whose interpreter is the host's Python (a pyenv 3.11
outside the chroot, with TensorFlow in the venv's site-packages), none of which exists in the
chroot, whose own Python is 3.13 with only pyzmq and msgpack. That is exactly a Flatpak
GIMP's situation, so the test plays one: ``FLATPAK_ID`` is set and ``flatpak-spawn`` on the
sandbox's PATH is tests/gimp/flatpak_spawn.py, whose host half (run here) starts the real
``neural-style serve`` outside the chroot with the synthetic weights, like Flatpak's session
helper. The plug-in finds the new daemon through the connection file it hands on
(``--env=NEURAL_STYLE_CONNECTION_FILE=…``), waits for it to load the model, and finishes the
job; the daemon keeps running after GIMP has quit.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.daemon_helpers import load_file_module

pytestmark = [pytest.mark.gimp, pytest.mark.slow]

HERE = Path(__file__).resolve().parent


harness = load_file_module("nsg_gimp_harness", HERE / "gimp" / "harness.py")
flatpak_spawn = load_file_module("nsg_flatpak_spawn", HERE / "gimp" / "flatpak_spawn.py")
SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
IMAGES = ("chelsea_64", "starry_night_64")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data_dir() -> Path:
    for cand in (HERE / "data", HERE.parent.parent / "shared" / "data" / "small"):
        if all((cand / f"{n}.png").is_file() for n in IMAGES):
            return cand
    pytest.fail(f"test images {IMAGES} not found in tests/data")


def _cli(*args: str) -> list[str]:
    code = "import sys; from neural_style.daemon.cli import main; sys.exit(main())"
    return [sys.executable, "-c", code, *args]


def test_the_plugin_starts_the_daemon_on_the_host_and_finishes_the_job(
    tmp_path_factory: pytest.TempPathFactory, synthetic_weights: Path
) -> None:
    from neural_style.shared import connection
    from neural_style.shared.client import Client

    try:
        env = harness.ensure_gimp()
    except harness.GimpUnavailable as exc:
        pytest.skip(f"no GIMP 3 here and no way to get one: {exc}")
    if not env.has_xvfb:
        pytest.skip("no Xvfb next to this GIMP: the offer to start the daemon is a window")
    work = tmp_path_factory.mktemp("gimp-autostart")
    for sub in ("out", "data", "state", "bin"):
        (work / sub).mkdir()
    (work / "run").mkdir(mode=0o700)
    for name in IMAGES:
        shutil.copy(_data_dir() / f"{name}.png", work / "data" / f"{name}.png")
    profile = work / "profile"
    proc = subprocess.run(
        _cli("install-plugin", "--gimp-dir", str(profile),
             "--python", shlex.join(env.python_command())),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, f"install-plugin failed:\n{proc.stdout}\n{proc.stderr}"
    plugin_dir = profile / "plug-ins" / "neural_style"
    recorded = json.loads((plugin_dir / "INSTALLED.json").read_text())["serve_command"]

    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    conn_file = work / "config" / "neural-style" / "daemon.json"  # ~/.config/neural-style
    assert connection.endpoint_refuses(endpoint) and not conn_file.exists()  # nothing runs
    spawn = work / "bin" / "flatpak-spawn"
    shutil.copy(HERE / "gimp" / "flatpak_spawn.py", spawn)
    spawn.chmod(0o755)
    sock = work / "host-spawn.sock"
    session_env = {**os.environ, "XDG_RUNTIME_DIR": str(work / "run"),
                   "NEURAL_STYLE_WEIGHTS": str(synthetic_weights)}  # fmt: skip
    session_env.pop("NEURAL_STYLE_CONNECTION_FILE", None)
    helper = flatpak_spawn.HostSpawnHelper(str(sock), session_env)
    plugin_log = work / "plugin.log"
    (work / "case.json").write_text(json.dumps({
        "out_dir": str(work / "out"), "data_dir": str(work / "data"),
        "plugin_dir": str(plugin_dir), "endpoint": endpoint,
    }))  # fmt: skip
    shutil.copy(HERE / "gimp" / "autostart_driver.py", work / "autostart_driver.py")
    try:
        t_gimp = time.time()
        run = env.run_batch(
            f'exec(open("{work / "autostart_driver.py"}").read())',
            work=work,
            profile=profile,
            env={
                "PATH": f"{work / 'bin'}:{SANDBOX_PATH}",
                "FLATPAK_ID": "org.gimp.GIMP",  # what Flatpak sets in its sandboxes
                "NEURAL_STYLE_CONNECTION_FILE": str(conn_file),
                flatpak_spawn.SOCKET_ENV: str(sock),
                "XDG_STATE_HOME": str(work / "state"),
                "NEURAL_STYLE_PLUGIN_LOG": str(plugin_log),
                "NSG_AUTOSTART_CASE": str(work / "case.json"),
                "NEURAL_STYLE_TIMEOUT": "5",
            },
            timeout=420,
            xvfb=True,
        )
        t_quit = time.time()
        daemon_log = work / "state" / "neural-style-daemon.log"
        log_text = daemon_log.read_text(errors="replace") if daemon_log.exists() else ""
        out = work / "out" / "autostart.json"
        assert run.returncode == 0 and out.exists(), (
            f"gimp-console exit {run.returncode}\n{harness.show_log(run.stdout + run.stderr)}"
        )
        rec = json.loads(out.read_text())
        assert "driver_error" not in rec, rec["driver_error"]
        events = [json.loads(line) for line in plugin_log.read_text().splitlines()]
        kinds = [e["event"] for e in events]
        context = f"{rec}\n--- plug-in log ---\n{kinds}\n--- daemon log ---\n{log_text[-3000:]}"

        # the job finished: the result layer is on top, visible, named after content + style
        assert rec["status"] == "success", context
        assert rec["layer"] == {
            "name": "chelsea_64 in the style of starry_night_64 (Neural Style)",
            "size": [64, 64], "visible": True, "top": True,
        }, context  # fmt: skip
        assert rec["layers_after"] == [rec["layer"]["name"], *rec["layers_before"]], context
        # what the user saw: the dialog's service line, the offer, the wait
        assert rec["service_line"] == "Neural Style service: not running; OK offers to start it"
        offer = "\n".join(rec["offer"]["labels"])
        assert f"Command: {shlex.join([*recorded, '--bind', endpoint])}" in offer, offer
        assert "flatpak-spawn --host" in offer, offer
        assert any("loading the model" in t for t in rec["starting"]["labels"]), rec

        # the daemon was started by the plug-in, after "Start it", through the host
        assert len(helper.requests) == 1, helper.requests
        request = helper.requests[0]
        assert request["argv"] == [*recorded, "--bind", endpoint], request
        assert request["env"] == {"NEURAL_STYLE_CONNECTION_FILE": str(conn_file)}, request
        assert t_gimp < rec["ok_t"] < rec["offer"]["t"] < request["t"] < t_quit, (rec, request)
        info = connection.read(conn_file)
        assert info is not None and info.pid == request["pid"], info
        assert connection.normalize(info.endpoint) == connection.normalize(endpoint)
        start = next(e for e in events if e["event"] == "autostart")
        assert start["argv"][:2] == ["flatpak-spawn", "--host"], start
        assert {"event": "autostart_result", "outcome": "ready"}.items() <= next(
            e for e in events if e["event"] == "autostart_result"
        ).items(), context
        order = ["autostart_declined", "autostart", "autostart_result", "submitted", "done",
                 "inserted"]  # fmt: skip
        assert "autostart_declined" not in kinds, context
        positions = [kinds.index(k) for k in order[1:]]
        assert positions == sorted(positions), context
        assert log_text.strip(), "the daemon's output did not reach the log the plug-in opened"

        # it keeps running for the next pictures, GIMP gone
        assert helper.procs[0].poll() is None, context
        with Client(endpoint, key=info.key, timeout=5.0, info=info) as client:
            assert client.ping() >= 0
        print(f"\n[gimp-autostart] GIMP run {t_quit - t_gimp:.1f} s, OK -> Start it "
              f"{rec['offer']['t'] - rec['ok_t']:.1f} s, plug-in run {rec['run_s']} s",
              file=sys.stderr)  # fmt: skip
    finally:
        helper.close()
