"""Client and server logic against a stand-in engine (no TensorFlow): fast and exact.

The real-engine, real-subprocess tests are in test_daemon_integration.py; these pin the
behaviours that are hard to provoke there (out of memory, internal errors, a full queue).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from neural_style.daemon.engine.params import STOP, Iterate, StylizeResult
from neural_style.daemon.service import Server, ServerConfig, is_loopback_endpoint
from neural_style.shared import protocol
from neural_style.shared.client import (
    Accepted,
    BadRequest,
    Busy,
    Cancelled,
    CancelledError,
    Client,
    DaemonUnavailable,
    Done,
    InternalError,
    OutOfMemory,
    Preview,
    Progress,
    Step,
    TooLarge,
    Unauthenticated,
    error_for,
)
from neural_style.shared.errors import ErrorCode, NeuralStyleError
from tests.daemon_helpers import free_port, image, to_array
from tests.service_fakes import info_of

KEY = b"unit-test-key"
#: The stand-in engine reads its behaviour from the seed parameter.
OOM, CRASH = 1, 2


class FakeEngine:
    """Returns the content inverted; one ~5 ms step per iteration; obeys STOP."""

    device = "fake CPU"
    weights = SimpleNamespace(path="/fake.h5", sha256="00" * 32, synthetic=True)

    def __init__(self) -> None:
        self.seen_styles: set[bytes] = set()

    def stylize(self, content, styles, params, callback=None, mask=None):
        if params.seed == OOM:
            raise MemoryError("fake allocation failure")
        if params.seed == CRASH:
            raise RuntimeError("fake bug")
        key = styles[0].tobytes()
        hit = key in self.seen_styles
        self.seen_styles.add(key)
        its, stopped, start = [], False, time.monotonic()
        for step in range(1, params.iterations + 1):
            time.sleep(0.005)
            preview = None
            if params.preview_every and step % params.preview_every == 0:
                preview = np.full((64, 80, 3), 0.5, np.float32)
            it = Iterate(step, params.iterations, 1.0 / step, 0.1, 0.2, 0.3,
                         time.monotonic() - start, 64, preview)  # fmt: skip
            its.append(it)
            if callback is not None and callback(it) == STOP:
                stopped = True
                break
        top = 1.0 if content.dtype == np.float32 else np.iinfo(content.dtype).max
        out = (top - content).astype(content.dtype)
        return StylizeResult(out, its, stopped, time.monotonic() - start, hit, (64, 48))


@pytest.fixture
def server(tmp_path: Path):
    servers = []

    def start(**config) -> Server:
        cfg = ServerConfig(
            endpoint=f"tcp://127.0.0.1:{free_port()}",
            key=KEY,
            connection_file=tmp_path / f"c{len(servers)}.json",
            **config,
        )
        srv = Server(cfg, FakeEngine())
        srv.write_connection_file()
        thread = threading.Thread(target=srv.run, daemon=True)
        thread.start()
        servers.append((srv, thread))
        return srv

    yield start
    for srv, thread in servers:
        srv.request_stop()
        thread.join(10)
        assert not thread.is_alive()
        assert srv.connection_path is not None and not srv.connection_path.exists()


def client_for(srv: Server, **kw) -> Client:
    return Client(srv.endpoint, key=KEY, timeout=5.0, info=info_of(srv), **kw)


def rgb(w: int, h: int, value: int = 10) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


def collect(job, timeout: float = 20.0) -> list:
    events, deadline = [], time.monotonic() + timeout
    while not job.done:
        assert time.monotonic() < deadline, "job did not finish"
        events += job.poll(timeout_ms=50)
    return events


def test_job_events_and_result(server):
    srv = server()
    with client_for(srv) as c:
        job = c.submit(image(rgb(48, 40)), [image(rgb(8, 8))], {"size": 48, "iterations": 6},
                       preview_every=3, preview_max_side=40)  # fmt: skip
        events = collect(job)
    assert isinstance(events[0], Accepted) and events[0].position == 0
    steps = [e.step for e in events if isinstance(e, Progress)]
    assert steps[0] == 1 and steps[-1] == 6 and steps == sorted(steps)
    previews = [e for e in events if isinstance(e, Preview)]
    assert [p.step for p in previews] == [3, 6]
    assert (previews[0].image.width, previews[0].image.height) == (40, 32)
    done = events[-1]
    assert isinstance(done, Done)
    assert (to_array(done.image) == 245).all()
    assert [r.step for r in done.iterates] == [1, 2, 3, 4, 5, 6]
    assert done.stats["weights"]["synthetic"] is True and done.stats["steps"] == 6


def test_remote_stylize_gives_the_engines_records(server, monkeypatch):
    """The CLI's daemon path: Job.wait, progress as Step records with previews attached,
    the result's table as Steps, the stats as JobStats (one record per concept)."""
    from neural_style.daemon.cli.remote import stylize_remote
    from neural_style.daemon.engine.params import StyleParams
    from neural_style.shared import connection
    from neural_style.shared.records import STEP_COLUMNS, JobStats, Step

    srv = server()
    monkeypatch.setenv(connection.ENV_FILE, str(srv.connection_path))
    seen: list[Step] = []
    params = StyleParams.from_dict({"size": 48, "iterations": 6, "preview_every": 3})
    result = stylize_remote(srv.endpoint, rgb(48, 40), [rgb(8, 8)], params, seen.append)
    assert seen[0].step == 1 and seen[-1].step == 6
    assert all(isinstance(s, Step) and s.elapsed_s >= 0 for s in seen)
    assert [s.step for s in seen if s.preview is not None] == [3, 6]
    assert [s.step for s in result.iterates] == [1, 2, 3, 4, 5, 6]
    assert list(result.iterates[0].to_dict()) == list(STEP_COLUMNS)
    assert result.iterates[0].to_report()["total"] == result.iterates[0].loss  # report shape
    assert result.work_size == (64, 48) and (result.image == 245).all()
    assert result.daemon is not None
    stats = JobStats.from_dict(result.daemon.stats)
    assert stats.steps == 6 and stats.to_dict() == result.daemon.stats


def test_cancel_raises_cancelled_error_with_the_event(server):
    srv = server()
    with client_for(srv) as c:
        job = c.submit(image(rgb(48, 40)), [image(rgb(8, 8))], {"size": 48, "iterations": 500})
        with pytest.raises(CancelledError) as info:
            job.wait(lambda e: "stop" if isinstance(e, Progress) else None)
    assert isinstance(info.value.event, Cancelled) and info.value.event.reason == "client"


def test_out_of_memory_is_reported_and_the_daemon_goes_on(server):
    srv = server()
    with client_for(srv) as c:
        with pytest.raises(OutOfMemory) as err:
            c.stylize(image(rgb(32, 32)), [image(rgb(8, 8))], {"size": 32, "seed": OOM})
        assert "size" in err.value.hint
        with pytest.raises(InternalError, match="fake bug"):
            c.stylize(image(rgb(32, 32)), [image(rgb(8, 8))], {"size": 32, "seed": CRASH})
        done = c.stylize(image(rgb(32, 32)), [image(rgb(8, 8))], {"size": 32, "iterations": 2})
        assert done.image.width == 32
        assert c.status()["jobs"]["failed"] == 2


def test_bad_requests_are_precise(server):
    srv = server(max_pixels=5000)
    with client_for(srv) as c:
        with pytest.raises(BadRequest, match="Invalid parameter size"):
            c.stylize(image(rgb(32, 32)), [image(rgb(8, 8))], {"size": 5})
        with pytest.raises(BadRequest, match="Unknown parameter"):
            c.stylize(image(rgb(32, 32)), [image(rgb(8, 8))], {"sise": 64})
        nan = np.full((32, 32, 3), np.nan, np.float32)
        with pytest.raises(BadRequest, match="finite"):
            c.stylize(image(nan), [image(rgb(8, 8))], {"size": 32})
        # The daemon's own --max-pixels (5000) is below the client's limit.
        with pytest.raises(TooLarge, match="at most 5000"):
            c.stylize(image(rgb(100, 100)), [image(rgb(8, 8))], {"size": 32})
        with pytest.raises(BadRequest, match="expected a list of 1 to 8"):
            c.submit(image(rgb(32, 32)), [], {"size": 32})
        assert c.ping() < 1.0


def test_full_queue_answers_busy_and_cancel_of_queued_job(server):
    srv = server(queue_size=1)
    with client_for(srv) as c:
        params = {"size": 32, "iterations": 2000}
        running = c.submit(image(rgb(32, 32)), [image(rgb(8, 8))], params)
        queued = c.submit(image(rgb(32, 32)), [image(rgb(8, 8))], params)
        refused = c.submit(image(rgb(32, 32)), [image(rgb(8, 8))], params)
        with pytest.raises(Busy, match="queue is full"):
            collect(refused, timeout=5)
        queued.cancel()
        assert isinstance(collect(queued)[-1], Cancelled)
        time.sleep(0.1)
        running.cancel()
        last = collect(running)[-1]
        assert isinstance(last, Cancelled) and last.step - last.requested_at_step <= 2
        assert c.status()["jobs"]["busy"] == 1


def test_stylize_callback_can_stop(server):
    srv = server()
    with client_for(srv) as c, pytest.raises(CancelledError):
        c.stylize(image(rgb(32, 32)), [image(rgb(8, 8))], {"size": 32, "iterations": 5000},
                  on_progress=lambda p: "stop" if p.step >= 3 else None)  # fmt: skip


def test_same_job_id_from_two_clients_is_fine(server, monkeypatch):
    srv = server()
    ids = iter(["same", "same"])
    monkeypatch.setattr("neural_style.shared.client.uuid.uuid4",
                        lambda: SimpleNamespace(hex=next(ids) + "0" * 28))  # fmt: skip
    with client_for(srv) as a, client_for(srv) as b:
        ja = a.submit(image(rgb(32, 32, 1)), [image(rgb(8, 8))], {"size": 32, "iterations": 3})
        jb = b.submit(image(rgb(40, 36, 2)), [image(rgb(8, 8))], {"size": 32, "iterations": 3})
        da, db = collect(ja)[-1], collect(jb)[-1]
    assert ja.id == jb.id
    assert (da.image.width, to_array(da.image)[0, 0, 0]) == (32, 254)
    assert (db.image.width, to_array(db.image)[0, 0, 0]) == (40, 253)


def test_wrong_key_is_unauthenticated_not_silence(server):
    srv = server()
    with Client(srv.endpoint, key=b"wrong", timeout=3.0, info=info_of(srv)) as c:
        with pytest.raises(Unauthenticated) as err:
            c.ping()
        assert "connection file" in err.value.hint


def test_no_daemon_gives_the_start_command():
    t0 = time.monotonic()
    c = Client(f"tcp://127.0.0.1:{free_port()}", key=KEY, timeout=5.0)
    with c, pytest.raises(DaemonUnavailable) as err:
        c.ping()
    assert time.monotonic() - t0 < 1.0  # refused at once, not after the 5 s timeout
    assert err.value.code is ErrorCode.DAEMON_UNAVAILABLE
    assert "neural-style serve" in err.value.hint


def test_error_classes_match_codes():
    for code in ErrorCode:
        exc = error_for(code, "m", "h")
        assert isinstance(exc, NeuralStyleError) and exc.code is code
    assert isinstance(error_for("no_such_code", "m"), InternalError)


@pytest.mark.parametrize(
    ("endpoint", "loopback"),
    [
        ("tcp://127.0.0.1:5599", True),
        ("tcp://127.3.4.5:1", True),
        ("tcp://localhost:1", True),
        ("tcp://[::1]:1", True),
        ("ipc:///tmp/x", True),
        ("tcp://0.0.0.0:1", False),
        ("tcp://*:1", False),
        ("tcp://192.168.1.2:1", False),
        ("tcp://eth0:1", False),
        ("udp://127.0.0.1:1", False),
    ],
)
def test_loopback_policy(endpoint, loopback):
    assert is_loopback_endpoint(endpoint) is loopback


def test_protocol_constants():
    assert protocol.DEFAULT_ENDPOINT == "tcp://127.0.0.1:5599"


# --------------------------------------------------------------------------- issue 13


def test_one_client_cannot_fill_the_queue(server):
    """Issue 13 (9): a per-client cap, so another client still gets in."""
    srv = server(queue_size=8, max_jobs_per_client=2)
    params = {"size": 32, "iterations": 2000}
    with client_for(srv) as a, client_for(srv) as b:
        jobs = [a.submit(image(rgb(32, 32)), [image(rgb(8, 8))], params) for _ in range(3)]
        with pytest.raises(Busy, match="2 per client"):
            collect(jobs[2], timeout=5)
        other = b.submit(image(rgb(32, 32)), [image(rgb(8, 8))], {"size": 32, "iterations": 2})
        for job in jobs[:2]:
            job.cancel()
        assert isinstance(collect(other)[-1], Done)


def test_job_time_limit_answers_time_limit(server):
    """Issue 13 (9): a job over the daemon's time limit is stopped and answered
    ``time_limit`` (not ``timeout``, which means the daemon did not answer)."""
    from neural_style.shared.client import TimeLimit

    srv = server(job_time_limit_s=0.3)
    with client_for(srv) as c:
        t0 = time.monotonic()
        with pytest.raises(TimeLimit, match=r"limit of 0\.3 s"):
            c.stylize(image(rgb(32, 32)), [image(rgb(8, 8))], {"size": 32, "iterations": 100000})
        assert time.monotonic() - t0 < 5
        assert c.status()["jobs"]["timed_out"] == 1
        assert isinstance(c.stylize(image(rgb(32, 32)), [image(rgb(8, 8))],
                                    {"size": 32, "iterations": 2}), Done)  # fmt: skip


def test_oom_hint_on_cpu_does_not_suggest_cpu(server):
    """Issue 13 (9): on the CPU, "restart with --device cpu" is no advice."""
    srv = server()
    with client_for(srv) as c, pytest.raises(OutOfMemory) as err:
        c.stylize(image(rgb(32, 32)), [image(rgb(8, 8))], {"size": 32, "seed": OOM})
    assert "--device cpu" not in err.value.hint and "size" in err.value.hint


def test_memory_estimate_refuses_with_the_figure(server):
    """Issue 13 (7): estimated at submit; too_large names the figure; queue bytes bounded."""
    srv = server(max_job_bytes=200 * 2**20, max_queue_bytes=8 * 2**20)
    with client_for(srv) as c:
        with pytest.raises(TooLarge, match=r"would need about \d+ MiB.*allows 200 MiB"):
            c.stylize(image(rgb(1000, 1000)), [image(rgb(1000, 1000))] * 8, {"size": 32})
        big = np.zeros((1000, 1000, 3), np.float32)
        with pytest.raises(TooLarge, match="exceed its bound of 8 MiB"):
            c.stylize(image(big), [image(rgb(8, 8))], {"size": 32})
        assert isinstance(c.stylize(image(rgb(32, 32)), [image(rgb(8, 8))],
                                    {"size": 32, "iterations": 2}), Done)  # fmt: skip


def test_thin_content_is_a_bad_request_naming_the_minimum(server):
    """Issue 13 (6): both sides are checked (the real engine's MaxPool would fail)."""
    srv = server()
    with client_for(srv) as c:
        with pytest.raises(BadRequest, match="at least 16 pixels"):
            c.stylize(image(rgb(64, 15)), [image(rgb(8, 8))], {"size": 64})
        with pytest.raises(BadRequest, match=r"Style image 1 .* too thin"):
            c.stylize(image(rgb(64, 64)), [image(rgb(400, 10))], {"size": 64})
        assert isinstance(c.stylize(image(rgb(64, 16)), [image(rgb(32, 32))],
                                    {"size": 64, "iterations": 2}), Done)  # fmt: skip


def test_explicit_key_still_reads_the_files_curve_key(tmp_path, monkeypatch):
    """Issue 13 (9): Client(endpoint, key=K) used to ignore the file's CURVE key."""
    from neural_style.shared import connection

    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    monkeypatch.setenv("NEURAL_STYLE_CLIENT_KEY", str(tmp_path / "client.key_secret"))
    monkeypatch.delenv(connection.ENV_FILE, raising=False)
    import zmq

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    public, _ = zmq.curve_keypair()
    info = connection.make_info(endpoint, KEY, "0", public.decode())
    connection.write(info, connection.path_for(endpoint))
    with Client(endpoint, key=KEY) as c:
        assert c.curve is True
    secret = tmp_path / "client.key_secret"
    assert oct(secret.stat().st_mode & 0o777) == "0o600"
    with Client(endpoint, key=KEY) as c2:  # stable: the same key next time
        assert c2.curve
    from neural_style.shared.keys import client_keypair

    assert client_keypair(secret) == client_keypair(secret)


def test_ipc_endpoint_serves_and_a_second_daemon_is_refused(tmp_path):
    """The hardened local setup: ipc:// in a 0700 folder; libzmq would silently take over
    an existing ipc socket, so starting a second daemon there is refused first."""
    from neural_style.daemon.service import running_daemon_problem

    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    endpoint = f"ipc://{folder}/daemon.sock"
    cfg = ServerConfig(endpoint=endpoint, key=KEY, connection_file=folder / "c.json")
    assert running_daemon_problem(cfg) == ""
    srv = Server(cfg, FakeEngine())
    srv.write_connection_file()
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        with Client(endpoint, key=KEY, timeout=5.0, info=info_of(srv)) as c:
            assert c.ping() < 1.0
        assert running_daemon_problem(cfg) != ""  # (same pid here: the ipc check answers)
        other = ServerConfig(endpoint=endpoint, key=KEY, connection_file=folder / "d.json")
        assert "ipc socket" in running_daemon_problem(other)
    finally:
        srv.request_stop()
        thread.join(10)


def test_progress_names_are_the_step_records():
    """Progress is a Step (plus eta_s): one naming from the engine's callback to the GIMP
    dialog, and a progress message's fields make one (a newer daemon's extras ignored)."""
    from dataclasses import fields

    from neural_style.shared.records import STEP_COLUMNS

    assert issubclass(Progress, Step)
    assert set(f.name for f in fields(Progress)) - {"preview"} == set(STEP_COLUMNS) | {"eta_s"}
    assert set(protocol.SCHEMAS["progress"]) == set(STEP_COLUMNS) | {"job", "eta_s"}
    message = {"job": "j", "step": 3, "total": 9, "loss": 5.0, "content": 1.0, "style": 3.0,
               "tv": 1.0, "elapsed_s": 2.5, "scale": 256, "eta_s": 7.5, "newer": 1}  # fmt: skip
    p = Progress.from_message(message)
    assert (p.step, p.total, p.scale, p.eta_s, p.preview) == (3, 9, 256, 7.5, None)
    assert p.to_step() == Step(3, 9, 5.0, 1.0, 3.0, 1.0, 2.5, 256)
    assert protocol.ITERATE_COLUMNS == STEP_COLUMNS
