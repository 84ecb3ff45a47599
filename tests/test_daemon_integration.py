"""The real daemon: a `serve` subprocess with the real engine and synthetic weights, real
sockets on a free loopback port. One daemon serves the module; the tests that kill or stop
a daemon start their own (marked slow).
"""

from __future__ import annotations

import json
import random
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import psutil
import pytest
import zmq

from neural_style.shared import connection, protocol
from neural_style.shared.client import (
    Accepted,
    BadRequest,
    Cancelled,
    Client,
    DaemonDied,
    Done,
    Preview,
    Progress,
    Unauthenticated,
)
from tests.daemon_helpers import Daemon, cli, daemon_env, free_port, image, to_array

SIZE = 48
PARAMS = {"size": SIZE, "iterations": 4}


def rand_image(w: int, h: int, c: int = 3, seed: int = 0, dtype=np.uint8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == np.float32:
        return rng.random((h, w, c), dtype=np.float32)
    return rng.integers(0, np.iinfo(dtype).max, (h, w, c), dtype=dtype)


@pytest.fixture(scope="module")
def daemon(synthetic_weights: Path, tmp_path_factory: pytest.TempPathFactory):
    """One daemon for the module, writing its per-port file in a private runtime dir, so
    that clients find its key by scanning (as `status --endpoint` does)."""
    workdir = tmp_path_factory.mktemp("daemon")
    d = Daemon(synthetic_weights, workdir, queue=3, use_runtime_dir=True,
               extra=("--max-pixels", "1000000"))  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_RUNTIME_DIR", str(d.runtime_dir))
        mp.delenv(connection.ENV_FILE, raising=False)
        try:
            yield d.wait_ready()
        finally:
            code = d.stop()
        assert code == 0, d.stderr()  # SIGTERM is a clean shutdown
        assert d.connection_file is not None and not d.connection_file.exists()


def run(client: Client, content: np.ndarray, style: np.ndarray, params=PARAMS, **kw):
    job = client.submit(image(content), [image(style)], dict(params), **kw)
    events, deadline = [], time.monotonic() + 120
    while not job.done:
        assert time.monotonic() < deadline, "job did not finish"
        events += job.poll(timeout_ms=100)
    return job, events


# --------------------------------------------------------------------------- basics


def test_connection_file_and_status(daemon: Daemon):
    path = daemon.connection_file
    assert path.name == f"daemon-127-0-0-1-{daemon.port}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    with Client(daemon.endpoint) as c:  # key found by scanning the runtime dir
        assert c.key == daemon.key
        assert c.ping() < 0.5
        welcome = c.hello()
        status = c.status()
    assert welcome["protocol"] == protocol.PROTOCOL_VERSION and welcome["model"] == "vgg19"
    assert welcome["weights"]["synthetic"] is True
    assert status["pid"] == daemon.proc.pid and status["endpoint"] == daemon.endpoint
    assert status["queue"]["max"] == 3


def test_status_cli_finds_key_by_endpoint(daemon: Daemon):
    env = daemon_env(daemon.runtime_dir)
    out = cli("status", "--endpoint", daemon.endpoint, env=env)
    assert out.returncode == 0, out.stderr
    assert "synthetic" in out.stdout and str(daemon.proc.pid) in out.stdout
    out = cli("status", "--endpoint", daemon.endpoint, "--json", env=env)
    assert json.loads(out.stdout)["pid"] == daemon.proc.pid
    nobody = cli("status", "--endpoint", f"tcp://127.0.0.1:{free_port()}", "--timeout", "1",
                 env=env)  # fmt: skip
    assert nobody.returncode == 1 and "neural-style serve" in nobody.stderr


def test_cli_words_daemon_errors_with_the_shared_table(daemon: Daemon):
    from neural_style.shared.errors import USER_TEXTS, ErrorCode

    nowhere = f"tcp://127.0.0.1:{free_port()}"
    out = cli("status", "--endpoint", nowhere, "--timeout", "1",
              env=daemon_env(daemon.runtime_dir))  # fmt: skip
    assert out.returncode == 1
    first = USER_TEXTS[ErrorCode.DAEMON_UNAVAILABLE].split("{")[0]
    assert f"{first} at {nowhere}" in out.stderr  # as the plug-in says it
    assert f"neural-style serve --bind {nowhere}" in out.stderr


def test_wrong_key_is_rejected_with_an_error(daemon: Daemon):
    with (
        Client(daemon.endpoint, key=b"not the key", timeout=3) as c,
        pytest.raises(Unauthenticated),
    ):
        c.ping()


# --------------------------------------------------------------------------- jobs


def test_job_with_progress_preview_and_result(daemon: Daemon):
    content = rand_image(SIZE, 40, 4, seed=1)  # RGBA: the alpha must come back untouched
    style = rand_image(32, 32, seed=2)
    with daemon.client() as c:
        _, events = run(c, content, style, {"size": SIZE, "iterations": 6},
                        preview_every=3, preview_max_side=32)  # fmt: skip
    assert isinstance(events[0], Accepted)
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[0].step == 1 and progress[-1].step == 6 and progress[-1].total == 6
    assert all(np.isfinite(p.loss) for p in progress)
    previews = [e for e in events if isinstance(e, Preview)]
    assert [p.step for p in previews] == [3, 6]
    assert max(previews[0].image.width, previews[0].image.height) == 32
    done = events[-1]
    assert isinstance(done, Done)
    out = to_array(done.image)
    assert out.shape == content.shape and out.dtype == np.uint8
    assert (out[:, :, 3] == content[:, :, 3]).all()
    assert not np.array_equal(out[:, :, :3], content[:, :, :3])
    assert [r.step for r in done.iterates] == [1, 2, 3, 4, 5, 6]
    assert done.iterates[-1].loss < done.iterates[0].loss
    assert done.stats["style_cache_hit"] is False and done.stats["work_size"] == [SIZE, 40]
    assert done.stats["precision"] == "fp32"


def test_second_job_with_same_style_hits_the_cache(daemon: Daemon):
    """The hit is checked on the job's stats and on the daemon's own counter, not by timing
    (a first step of ~0.1 s is noise on a shared CI machine: that assertion flaked)."""
    style = rand_image(30, 30, seed=3)
    with daemon.client() as c:
        hits_before = c.status()["jobs"].get("style_cache_hits", 0)
        first = run(c, rand_image(SIZE, SIZE, seed=4), style)[1][-1]
        second = run(c, rand_image(SIZE, SIZE, seed=5), style)[1][-1]
        hits_after = c.status()["jobs"].get("style_cache_hits", 0)
    assert first.stats["style_cache_hit"] is False
    assert second.stats["style_cache_hit"] is True
    assert hits_after == hits_before + 1
    assert second.stats["first_step_s"] > 0.0


def test_refine_job_starts_from_the_init_image(daemon: Daemon):
    """A submit with ``init``: the first step's content loss is that of the init, not 0,
    and the style targets come from the cache (a refine reuses them)."""
    content, style = rand_image(SIZE, SIZE, seed=6), rand_image(30, 30, seed=7)
    with daemon.client() as c:
        first = run(c, content, style)[1][-1]
        refined = run(c, content, style, init=first.image)[1][-1]
    assert isinstance(refined, Done)
    assert first.iterates[0].content == 0.0
    assert refined.iterates[0].content > 0.0
    assert refined.stats["style_cache_hit"] is True


def test_step_times_per_size_from_iterates():
    from neural_style.daemon.service.speed import StepTimes
    from neural_style.shared.records import Step

    times = StepTimes()
    assert times.report() == {}
    # a 64 px scale (1 s first step, then 0.1 s) and a 128 px scale (0.4 s per step) of 128x96
    steps = [Step(1, 6, 0, 0, 0, 0, 1.0, 64), Step(2, 6, 0, 0, 0, 0, 1.1, 64),
             Step(3, 6, 0, 0, 0, 0, 1.2, 64), Step(4, 6, 0, 0, 0, 0, 2.0, 128),
             Step(5, 6, 0, 0, 0, 0, 2.4, 128), Step(6, 6, 0, 0, 0, 0, 2.8, 128)]  # fmt: skip
    times.record(steps, [128, 96])
    report = times.report()
    assert report["step_s_by_side"] == pytest.approx({"64": 0.1, "128": 0.4})
    mpx = (64 * 48 + 128 * 96) / 1e6
    assert report["step_s_per_mpx"] == pytest.approx(0.5 / mpx, rel=1e-3)


def test_welcome_and_status_report_the_measured_step_time(daemon: Daemon):
    with daemon.client() as c:
        run(c, rand_image(SIZE, SIZE, seed=8), rand_image(30, 30, seed=9))
        welcome = c.hello()
    assert welcome["step_s_per_mpx"] > 0
    assert welcome["step_s_by_side"][str(SIZE)] > 0
    out = cli("status", "--endpoint", daemon.endpoint, "--json",
              env=daemon_env(daemon.runtime_dir))  # fmt: skip
    info = json.loads(out.stdout)
    assert info["step_s_per_mpx"] > 0 and str(SIZE) in info["step_s_by_side"]
    human = cli("status", "--endpoint", daemon.endpoint, env=daemon_env(daemon.runtime_dir))
    assert "step time:" in human.stdout


def test_four_concurrent_clients_get_their_own_results(daemon: Daemon):
    sizes = [(40, 36), (44, 38), (48, 34), (36, 46)]
    results: dict[int, object] = {}

    def work(i: int) -> None:
        w, h = sizes[i]
        content = rand_image(w, h, 2, seed=10 + i, dtype=np.uint16)  # gray + alpha, 16 bit
        content[:, :, 1] = 1000 * (i + 1)  # each client's own alpha
        with daemon.client() as c:
            results[i] = run(c, content, rand_image(32, 32, seed=20 + i), {"size": 36,
                             "iterations": 3})[1][-1]  # fmt: skip

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    for i, (w, h) in enumerate(sizes):
        done = results[i]
        assert isinstance(done, Done), done
        out = to_array(done.image)
        assert out.shape == (h, w, 2) and out.dtype == np.uint16
        assert (out[:, :, 1] == 1000 * (i + 1)).all()


def test_cancel_mid_job_then_next_job_runs(daemon: Daemon):
    with daemon.client() as c:
        job = c.submit(image(rand_image(SIZE, SIZE, seed=6)), [image(rand_image(32, 32))],
                       {"size": SIZE, "iterations": 500})  # fmt: skip
        deadline = time.monotonic() + 60
        while not any(isinstance(e, Progress) and e.step >= 2 for e in job.poll(100)):
            assert time.monotonic() < deadline
        job.cancel()
        t0 = time.monotonic()
        events: list = []
        while not job.done:
            events += job.poll(100)
            assert time.monotonic() - t0 < 10
        cancelled = events[-1]
        assert isinstance(cancelled, Cancelled) and cancelled.reason == "client"
        assert cancelled.step - cancelled.requested_at_step <= 2
        assert isinstance(run(c, rand_image(SIZE, SIZE, seed=7), rand_image(32, 32))[1][-1], Done)


def test_validation_errors_over_the_wire(daemon: Daemon):
    with daemon.client() as c:
        with pytest.raises(BadRequest, match="Invalid parameter iterations"):
            run(c, rand_image(40, 40), rand_image(32, 32), {"size": 40, "iterations": 0})
        with pytest.raises(BadRequest, match="finite"):
            bad = rand_image(40, 40, dtype=np.float32)
            bad[0, 0, 0] = np.inf
            run(c, bad, rand_image(32, 32))
        assert c.ping() < 1.0


CLIENT_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np
    from neural_style.shared.client import Client, Progress
    from tests.daemon_helpers import image
    c = Client(sys.argv[1], key=bytes.fromhex(sys.argv[2]), heartbeat_interval=0.2)
    img = np.zeros((48, 48, 3), np.uint8)
    job = c.submit(image(img), [image(img)], {"size": 48, "iterations": 1000})
    while True:
        for e in job.poll(100):
            if isinstance(e, Progress):
                print("running", flush=True)
    """
)


def test_killed_client_job_is_cancelled_and_next_served(daemon: Daemon):
    before = daemon.client().status()["jobs"]["cancelled"]
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT_SCRIPT, daemon.endpoint, daemon.key.hex()],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert proc.stdout.readline().strip() == "running"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    t0 = time.monotonic()
    with daemon.client() as c:
        done = run(c, rand_image(40, 40, seed=8), rand_image(32, 32))[1][-1]
        assert isinstance(done, Done)
        # 5 missed heartbeats of 0.2 s, one step, then our 4-step job.
        assert time.monotonic() - t0 < 20
        assert c.status()["jobs"]["cancelled"] == before + 1
    assert "client_gone" in daemon.log_file.read_text()


# --------------------------------------------------------------------------- hostile input


def malformed_frames(key: bytes, count: int = 1000) -> list[list[bytes]]:
    """Every kind of broken message, cycled: the daemon must answer or drop each one."""
    rnd = random.Random(1234)

    def signed(header, *buffers, k=key):
        if isinstance(header, dict):
            header = {**header, "mid": rnd.randbytes(8).hex()}
        packed = msgpack.packb(header, use_bin_type=True)
        frames = [protocol.VERSION, packed, *buffers]
        return [protocol.VERSION, protocol.sign(k, frames), packed, *buffers]

    def desc(w=2, h=2, c=3, dtype="u8"):
        return {"w": w, "h": h, "c": c, "dtype": dtype}

    def submit(**kw):
        header = {"type": "submit", "job": "x", "params": {"size": 32},
                  "content": desc(), "styles": [desc()]}  # fmt: skip
        header.update(kw)
        return header

    makers = [
        lambda: [rnd.randbytes(rnd.randint(0, 50))],
        lambda: [rnd.randbytes(rnd.randint(0, 50)) for _ in range(rnd.randint(1, 14))],
        lambda: [b"NS0", b"", msgpack.packb({"type": "ping"})],
        lambda: [
            protocol.VERSION,
            protocol.sign(key, [protocol.VERSION, b"\xc1\xff"]),
            b"\xc1\xff",
        ],
        lambda: signed({"type": "ping"}, k=b"bad key"),
        lambda: [protocol.VERSION, b"", msgpack.packb({"type": "status"})],
        lambda: signed({"type": "nonsense"}),
        lambda: signed({"type": "cancel"}),
        lambda: signed(submit(content=desc(16384, 16384, 4, "f32")), bytes(12), bytes(12)),
        lambda: signed(submit(content=desc(dtype="f64")), bytes(12), bytes(12)),
        lambda: signed(submit(), bytes(11), bytes(12)),
        lambda: signed(submit(content=desc(c=7)), bytes(12), bytes(12)),
        lambda: signed(submit(params={"size": "big"}), bytes(12), bytes(12)),
        lambda: signed(submit(params={"size": 2**63}), bytes(12), bytes(12)),
        lambda: signed(submit(styles=[]), bytes(12)),
        lambda: signed({k: v for k, v in submit().items() if k != "content"}, bytes(12)),
        lambda: signed(submit(job=rnd.randbytes(8).hex() + "!"), bytes(12), bytes(12)),
        lambda: signed([1, 2, 3]),
        lambda: signed({"type": "hello", "protocol": -5}),
        lambda: signed({"type": "ping", "req": 2**60}),
    ]
    return [makers[i % len(makers)]() for i in range(count)]


def test_malformed_frames_are_answered_or_dropped(daemon: Daemon):
    proc = psutil.Process(daemon.proc.pid)
    with daemon.client() as c:  # warm up so the job path's memory is already allocated
        run(c, rand_image(40, 40), rand_image(32, 32))
    rss_before = proc.memory_info().rss
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    for name, value in daemon.curve_options().items():  # past the handshake, as a holder
        setattr(sock, name, value)  # of the connection file: the decoder is under test
    sock.connect(daemon.endpoint)
    frames = malformed_frames(daemon.key)
    for f in frames:
        sock.send_multipart(f)
    replies, deadline = [], time.monotonic() + 3
    while time.monotonic() < deadline:
        if sock.poll(200):
            replies.append(sock.recv_multipart())
    sock.close()
    assert replies, "the daemon should answer at least the first malformed messages"
    codes = set()
    for reply in replies:
        msg = protocol.decode(reply, daemon.key, accept_unsigned_errors=True)
        assert msg.type == "error", msg
        codes.add(msg.fields["code"])
    assert {"bad_request", "unauthenticated", "version_mismatch"} <= codes
    # A frame over MAXMSGSIZE (16 MB for --max-pixels 1e6) only costs its sender the link.
    big = ctx.socket(zmq.DEALER)
    big.setsockopt(zmq.LINGER, 0)
    for name, value in daemon.curve_options().items():
        setattr(big, name, value)
    big.connect(daemon.endpoint)
    big.send_multipart([protocol.VERSION, b"", b"\x00" * (17 * 2**20)])
    time.sleep(0.5)
    big.close()
    with daemon.client() as c:
        assert isinstance(run(c, rand_image(40, 40, seed=9), rand_image(32, 32))[1][-1], Done)
    growth = proc.memory_info().rss - rss_before
    assert growth < 64 * 2**20, f"RSS grew by {growth / 2**20:.0f} MiB"


# --------------------------------------------------------------------------- lifecycle


def test_non_loopback_bind_without_curve_is_refused(synthetic_weights: Path, tmp_path: Path):
    bind = f"tcp://0.0.0.0:{free_port()}"
    log = str(tmp_path / "log")
    out = cli("serve", "--bind", bind, "--weights", str(synthetic_weights), "--log-file", log,
              env=daemon_env())  # fmt: skip
    assert out.returncode == 2
    assert "refusing to bind" in out.stderr and "--curve-secret-key" in out.stderr


@pytest.mark.slow
def test_killed_daemon_is_detected_by_the_client(synthetic_weights: Path, tmp_path: Path):
    d = Daemon(synthetic_weights, tmp_path).wait_ready()
    try:
        with d.client(heartbeat_interval=0.25) as c:
            job = c.submit(image(rand_image(SIZE, SIZE)), [image(rand_image(32, 32))],
                           {"size": SIZE, "iterations": 1000})  # fmt: skip
            while not any(isinstance(e, Progress) for e in job.poll(100)):
                pass
            d.proc.send_signal(signal.SIGKILL)
            t0 = time.monotonic()
            with pytest.raises(DaemonDied, match="stopped responding mid-job"):
                while True:
                    job.poll(50)
                    assert time.monotonic() - t0 < 10, "client hangs"
            assert time.monotonic() - t0 < 3 * 0.25 + 1.5
    finally:
        d.stop()


@pytest.mark.slow
def test_curve_bind_and_stop_command(synthetic_weights: Path, tmp_path: Path, monkeypatch):
    """Non-loopback with CURVE is allowed; `stop` cancels the job, exits 0, removes the file."""
    import zmq.auth

    public_file, secret_file = zmq.auth.create_certificates(str(tmp_path), "server")
    d = Daemon(synthetic_weights, tmp_path, host="0.0.0.0",
               extra=("--curve-secret-key", secret_file)).wait_ready()  # fmt: skip
    monkeypatch.setenv("NEURAL_STYLE_CURVE_SERVER_KEY", public_file)
    try:
        with Client(f"tcp://127.0.0.1:{d.port}", key=d.key) as c:
            assert c.status()["curve"] is True
            job = c.submit(image(rand_image(SIZE, SIZE)), [image(rand_image(32, 32))],
                           {"size": SIZE, "iterations": 1000})  # fmt: skip
            while not any(isinstance(e, Progress) for e in job.poll(100)):
                pass
            env = {**daemon_env(), connection.ENV_FILE: str(d.connection_file)}
            out = cli("stop", env=env)
            assert out.returncode == 0, out.stderr
            assert "stopped" in out.stdout
            events: list = []
            while not job.done:
                events += job.poll(100)
            assert isinstance(events[-1], Cancelled) and events[-1].reason == "shutdown"
        assert d.proc.wait(10) == 0
        assert not d.connection_file.exists()
    finally:
        d.stop()


def test_cli_stylize_init_is_sent_to_the_daemon(daemon: Daemon, tmp_path: Path):
    """``stylize --init IMAGE --daemon``: the job runs on the daemon and starts from the init
    (its first step has a content loss; from the content it is exactly 0)."""
    from PIL import Image

    content, style, start = (tmp_path / n for n in ("c.png", "s.png", "i.png"))
    Image.fromarray(rand_image(SIZE, 40, seed=10)).save(content)
    Image.fromarray(rand_image(30, 30, seed=11)).save(style)
    Image.fromarray(rand_image(SIZE, 40, seed=12)).save(start)
    firsts = []
    for extra in ((), ("--init", str(start))):
        report = tmp_path / f"report{len(firsts)}.json"
        out = subprocess.run(
            [sys.executable, "-m", "neural_style.daemon.cli", "stylize", str(content),
             str(style), "-o", str(tmp_path / "out.png"), "--size", str(SIZE),
             "--iterations", "3", "--preset", "none", "--daemon", daemon.endpoint,
             "--report", str(report), *extra],
            capture_output=True, text=True, timeout=600, env=daemon_env(daemon.runtime_dir),
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        data = json.loads(report.read_text())
        assert data["mode"] == "daemon"
        firsts.append(data["iterations"][0]["content"])
    assert firsts[0] == 0.0 and firsts[1] > 0.0
