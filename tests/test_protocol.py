"""The wire protocol and the connection file, without a daemon."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neural_style.shared import connection, limits, protocol
from neural_style.shared.errors import ErrorCode, NeuralStyleError
from neural_style.shared.protocol import ImageBuf, Message, ProtocolError

KEY = b"k" * 32
REPO = Path(__file__).resolve().parents[1]


def img(w: int = 4, h: int = 3, c: int = 3, dtype: str = "u8") -> ImageBuf:
    return ImageBuf(w, h, c, dtype, bytes(w * h * c * protocol.DTYPES[dtype]))


SAMPLES: dict[str, dict] = {
    "hello": {"protocol": 1, "client": "test/1"},
    "ping": {"t": 12.5},
    "status": {},
    "shutdown": {},
    "submit": {
        "job": "job-1",
        "params": {"size": 64, "iterations": 3, "style_blend": [1.0, 2.0], "seed": None},
        "content": img(5, 4, 4, "u16"),
        "styles": [img(3, 3, 3), img(2, 2, 1, "f32")],
        "mask": img(5, 4, 1, "u8"),
        "init": img(5, 4, 4, "u16"),
        "preview_every": 2,
        "preview_max_side": 128,
        "heartbeat_s": 0.5,
    },
    "cancel": {"job": "job-1"},
    "heartbeat": {"job": "job-1", "state": "queued", "position": 2},
    "welcome": {
        "protocol": 1,
        "server": "0.1.0",
        "pid": 42,
        "device": "CPU",
        "model": "vgg19",
        "weights": {"path": "/w.h5", "sha256": "ab", "synthetic": True},
        "limits": {"max_pixels": 100},
        "features": ["preview"],
        "heartbeat_s": 1.0,
    },
    "pong": {"t": 1.0, "server_time": 2.0},
    "status_reply": {"info": {"queue": {"waiting": 0}, "running": None}},
    "shutdown_ack": {},
    "accepted": {"job": "a", "position": 0},
    "progress": {
        "job": "a",
        "step": 3,
        "total": 10,
        "loss": math.inf,
        "content": 1.0,
        "style": 2.0,
        "tv": 3.0,
        "elapsed_s": 0.5,
        "eta_s": 1.5,
        "scale": 64,
    },
    "preview": {"job": "a", "step": 3, "image": img(8, 6, 3)},
    "result": {
        "job": "a",
        "image": img(5, 4, 4, "u16"),
        "stats": {"elapsed_s": 1.0, "weights": {"synthetic": True}},
        "iterates": protocol.pack_iterates([[1, 10, 5.0, 1, 2, 2, 0.1, 64]] * 3),
    },
    "cancelled": {"job": "a", "reason": "client", "step": 5, "requested_at_step": 4},
    "error": {"code": "busy", "message": "full", "hint": "wait", "job": "a"},
}


def roundtrip(msg: Message, key: bytes | None = KEY, **kw) -> Message:
    frames = [bytes(f) for f in protocol.encode(msg, key)]
    return protocol.decode(frames, key, **kw)


def as_plain(value):
    if isinstance(value, ImageBuf):
        return (value.describe(), bytes(value.data))
    if isinstance(value, list):
        return [as_plain(v) for v in value]
    if isinstance(value, (bytes, memoryview)):
        return bytes(value)
    return value


# --------------------------------------------------------------------------- round trips


def test_samples_cover_every_message_type():
    assert set(SAMPLES) == set(protocol.SCHEMAS)


@pytest.mark.parametrize("msg_type", sorted(protocol.SCHEMAS))
def test_every_message_type_round_trips(msg_type: str):
    fields = dict(SAMPLES[msg_type], req=7)
    out = roundtrip(Message(msg_type, fields))
    assert out.type == msg_type and out.signed
    assert {k: as_plain(v) for k, v in out.fields.items()} == {
        k: as_plain(v) for k, v in fields.items()
    }


def test_iterate_table_round_trips():
    rows = [[i, 5, 1.5 * i, 1, 2, 3, 0.25 * i, 64] for i in range(1, 6)]
    out = protocol.unpack_iterates(protocol.pack_iterates(rows))
    assert [list(r.values()) for r in out] == rows
    assert list(out[0]) == list(protocol.ITERATE_COLUMNS)


def test_buffers_follow_schema_order_whatever_the_field_order():
    fields = SAMPLES["submit"]
    reordered = {k: fields[k] for k in reversed(list(fields))}
    out = roundtrip(Message("submit", reordered))
    assert out.fields["content"].describe() == fields["content"].describe()
    assert out.fields["mask"].channels == 1


def test_signature_covers_buffers_and_frame_boundaries():
    frames = [bytes(f) for f in protocol.encode(Message("submit", SAMPLES["submit"]), KEY)]
    tampered = list(frames)
    tampered[3] = b"\x01" + tampered[3][1:]
    with pytest.raises(ProtocolError) as err:
        protocol.decode(tampered, KEY)
    assert err.value.code is ErrorCode.UNAUTHENTICATED
    # Moving bytes from one frame to the next keeps the concatenation but not the HMAC.
    shifted = [*frames[:3], frames[3] + frames[4][:1], frames[4][1:], *frames[5:]]
    with pytest.raises(ProtocolError):
        protocol.decode(shifted, KEY)


def test_unauthenticated_header_is_never_unpacked(monkeypatch):
    """Issue 13 (4): a failed signature costs one HMAC; its header is not even unpacked."""
    frames = protocol.encode(Message("ping", {"req": 9}), b"wrong key")
    unpacked = []
    real = protocol._unpack_header
    monkeypatch.setattr(protocol, "_unpack_header", lambda f: unpacked.append(f) or real(f))
    with pytest.raises(ProtocolError) as err:
        protocol.decode(frames, KEY)
    assert err.value.code is ErrorCode.UNAUTHENTICATED and err.value.fields == {}
    assert unpacked == []


def test_oversized_frame0_and_signature_are_refused_before_copying():
    """Issue 13 (4): frame 0's length is checked before bytes(); no 1 GiB copies."""
    big = memoryview(bytearray(8 * 2**20))

    with pytest.raises(ProtocolError) as err:
        protocol.decode([big, b"", b"\x80"], KEY)
    assert err.value.code is ErrorCode.VERSION_MISMATCH and "8388608 bytes" in err.value.message
    with pytest.raises(ProtocolError) as err:
        protocol.decode([protocol.VERSION, big, b"\x80"], KEY)
    assert err.value.code is ErrorCode.UNAUTHENTICATED
    with pytest.raises(ProtocolError, match="expected 3 to"):
        protocol.decode([protocol.VERSION] * 3002, KEY)


def test_replayed_message_is_refused():
    """Issue 13 (9): every signed message has an id; the same signature twice is a replay."""
    window = protocol.ReplayWindow(size=4)
    frames = protocol.encode(Message("ping", {"req": 1}), KEY)
    again = protocol.encode(Message("ping", {"req": 1}), KEY)
    assert frames[1] != again[1]  # same content, different id, different signature
    window.check(protocol.decode(frames, KEY))
    window.check(protocol.decode(again, KEY))
    with pytest.raises(ProtocolError, match="replayed") as err:
        window.check(protocol.decode(frames, KEY))
    assert err.value.code is ErrorCode.UNAUTHENTICATED and err.value.fields == {"req": 1}
    for i in range(10):  # bounded memory: the oldest are forgotten
        window.check(protocol.decode(protocol.encode(Message("ping", {"req": i}), KEY), KEY))
    assert len(window._seen) == 4
    # A signed message without an id is refused.
    header = msgpack.packb({"type": "ping"})
    sig = protocol.sign(KEY, [protocol.VERSION, header])
    with pytest.raises(ProtocolError, match="without a valid id"):
        protocol.decode([protocol.VERSION, sig, header], KEY)


def test_unsigned_errors_accepted_only_for_auth_and_version():
    unsigned = protocol.encode(protocol.error_message("unauthenticated", "no", req=1), None)
    msg = protocol.decode(unsigned, KEY, accept_unsigned_errors=True)
    assert msg.type == "error" and not msg.signed
    for other in (
        protocol.error_message("busy", "forged"),
        Message("result", SAMPLES["result"]),
    ):
        with pytest.raises(ProtocolError) as err:
            protocol.decode(protocol.encode(other, None), KEY, accept_unsigned_errors=True)
        assert err.value.code is ErrorCode.UNAUTHENTICATED


def test_validate_checks_outgoing_messages_with_the_same_rules():
    protocol.validate(Message("submit", SAMPLES["submit"]))
    bad = dict(SAMPLES["submit"], content=ImageBuf(5, 4, 3, "u8", b"short"))
    with pytest.raises(ProtocolError, match="buffer has 5 bytes, expected 60"):
        protocol.validate(Message("submit", bad))


def test_max_frame_bytes_fits_the_largest_float_rgba_image():
    assert protocol.max_frame_bytes(100) == protocol.MAX_HEADER_BYTES
    assert protocol.max_frame_bytes() == limits.MAX_IMAGE_PIXELS * 16


# --------------------------------------------------------------------------- validation


def signed(header: dict, *buffers: bytes, key: bytes = KEY) -> list[bytes]:
    if isinstance(header, dict):
        header = {**header, "mid": os.urandom(8).hex()}
    packed = msgpack.packb(header, use_bin_type=True)
    frames = [protocol.VERSION, packed, *buffers]
    return [protocol.VERSION, protocol.sign(key, frames), packed, *buffers]


def submit_header(**changes) -> dict:
    header = {
        "type": "submit",
        "job": "j1",
        "params": {"size": 64},
        "content": {"w": 2, "h": 2, "c": 3, "dtype": "u8"},
        "styles": [{"w": 1, "h": 1, "c": 3, "dtype": "u8"}],
    }
    header.update(changes)
    return {k: v for k, v in header.items() if v is not None}


GOOD_BUFFERS = (bytes(12), bytes(3))

# fmt: off
CASES = [
    # (description, frames, code, message fragment)
    ("too few frames", [protocol.VERSION, b""], "bad_request", "expected 3 to"),
    ("too many frames", [protocol.VERSION, b"", b"", *[b""] * 20], "bad_request", "frames"),
    ("wrong version", [b"NS9", b"", b"\x80"], "version_mismatch", "not supported"),
    ("wrong version, bad key", [b"NS9", *signed({"type": "ping"}, key=b"x")[1:]],
     "version_mismatch", "NS9"),
    ("not msgpack", [protocol.VERSION, protocol.sign(KEY, [protocol.VERSION, b"\xc1"]), b"\xc1"],
     "bad_request", "not valid msgpack"),
    ("header not a map", None, "bad_request", "header must be a map"),  # set below
    ("unknown type", signed({"type": "launch"}), "bad_request", "unknown message type"),
    ("missing type", signed({"job": "x"}), "bad_request", "unknown message type None"),
    ("server type sent to server", signed({"type": "accepted", "job": "a", "position": 0}),
     "bad_request", "unknown message type"),
    ("missing field", signed({"type": "cancel"}), "bad_request", "missing field(s) job"),
    ("unknown field", signed({"type": "ping", "x": 1}), "bad_request", "unknown field(s) x"),
    ("bad job id", signed({"type": "cancel", "job": "a b"}), "bad_request", "does not match"),
    ("long job id", signed({"type": "cancel", "job": "a" * 65}), "bad_request", "at most 64"),
    ("bool as int", signed({"type": "hello", "protocol": True}), "bad_request", "integer"),
    ("negative req", signed({"type": "ping", "req": -1}), "bad_request", "ping.req"),
    ("nan number", signed({"type": "ping", "t": math.nan}), "bad_request", "finite"),
    ("heartbeat too fast", signed(submit_header(heartbeat_s=0.0), *GOOD_BUFFERS),
     "bad_request", "submit.heartbeat_s"),
    ("params not a map", signed(submit_header(params=[1]), *GOOD_BUFFERS),
     "bad_request", "submit.params: expected a map"),
    ("params too deep", signed(submit_header(params={"a": {"b": {"c": 1}}}), *GOOD_BUFFERS),
     "bad_request", "submit.params.a"),
    ("unknown param", signed(submit_header(params={"sise": 64}), *GOOD_BUFFERS),
     "bad_request", "Unknown parameter(s): sise (submit.params.sise)"),
    ("param of the wrong type", signed(submit_header(params={"size": "big"}), *GOOD_BUFFERS),
     "bad_request", "size: 'big' is not an integer in [32, 4096] (submit.params.size)"),
    ("param out of bounds", signed(submit_header(params={"style_weight": -1.0}), *GOOD_BUFFERS),
     "bad_request", "-1.0 is not a number in [0, 1e+12] (submit.params.style_weight)"),
    ("param not a choice", signed(submit_header(params={"optimizer": "sgd"}), *GOOD_BUFFERS),
     "bad_request", "submit.params.optimizer"),
    ("unknown preset", signed(submit_header(params={"preset": "ultra"}), *GOOD_BUFFERS),
     "bad_request", "submit.params.preset"),
    ("zero width", signed(submit_header(content={"w": 0, "h": 2, "c": 3, "dtype": "u8"})),
     "bad_request", "submit.content.w"),
    ("5 channels", signed(submit_header(content={"w": 2, "h": 2, "c": 5, "dtype": "u8"})),
     "bad_request", "submit.content.c"),
    ("wrong dtype", signed(submit_header(content={"w": 2, "h": 2, "c": 3, "dtype": "f64"})),
     "bad_request", "submit.content.dtype"),
    ("descriptor extra key", signed(submit_header(
        content={"w": 2, "h": 2, "c": 3, "dtype": "u8", "z": 1})),
     "bad_request", "unknown field(s) z"),
    ("huge declared size", signed(submit_header(
        content={"w": 16384, "h": 16384, "c": 4, "dtype": "f32"}), *GOOD_BUFFERS),
     "too_large", "this daemon accepts at most"),
    ("side over limit", signed(submit_header(
        content={"w": 16385, "h": 1, "c": 3, "dtype": "u8"}), *GOOD_BUFFERS),
     "bad_request", "submit.content.w"),
    ("short buffer", signed(submit_header(), bytes(11), bytes(3)),
     "bad_request", "submit.content: buffer has 11 bytes, expected 12"),
    ("missing buffer", signed(submit_header(), bytes(12)),
     "bad_request", "submit.styles[0]: its pixel buffer is missing"),
    ("extra buffer", signed(submit_header(), *GOOD_BUFFERS, b"x"),
     "bad_request", "1 buffer(s) more"),
    ("no styles", signed(submit_header(styles=[]), bytes(12)),
     "bad_request", "submit.styles: expected a list of 1 to 8"),
    ("too many styles", signed(submit_header(styles=[{"w": 1, "h": 1, "c": 3, "dtype": "u8"}] * 9),
     bytes(12), *[bytes(3)] * 9), "bad_request", "expected a list of 1 to 8"),
    ("mask size mismatch", signed(submit_header(mask={"w": 1, "h": 1, "c": 1, "dtype": "u8"}),
     *GOOD_BUFFERS, bytes(1)), "bad_request", "submit.mask: must be one channel"),
    ("init size mismatch", signed(submit_header(init={"w": 1, "h": 2, "c": 3, "dtype": "u8"}),
     *GOOD_BUFFERS, bytes(6)), "bad_request", "submit.init: must have the content's size"),
    ("init over the pixel limit", signed(submit_header(
        init={"w": 16384, "h": 16384, "c": 4, "dtype": "f32"}), *GOOD_BUFFERS),
     "too_large", "submit.init: 16384x16384"),
    ("mask with 3 channels", signed(submit_header(mask={"w": 2, "h": 2, "c": 3, "dtype": "u8"}),
     *GOOD_BUFFERS, bytes(12)), "bad_request", "submit.mask"),
    ("bad signature", signed({"type": "ping"}, key=b"other"), "unauthenticated", "signature"),
    ("missing signature", [protocol.VERSION, b"", msgpack.packb({"type": "ping"})],
     "unauthenticated", "signature"),
    ("huge signature", [protocol.VERSION, b"0" * 100_000, msgpack.packb({"type": "ping"})],
     "unauthenticated", "signature"),
    ("huge header", [*signed({"type": "ping", "pad": "x"})[:2], b"\x00" * 70_000],
     "bad_request", "at most 65536 allowed"),
]
# fmt: on
CASES[[c[0] for c in CASES].index("header not a map")] = (
    "header not a map",
    signed([1, 2]),
    "bad_request",
    "header must be a map",
)  # fmt: skip


@pytest.mark.parametrize(("frames", "code", "fragment"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_validation_errors_are_precise(frames, code, fragment):
    with pytest.raises(ProtocolError) as err:
        protocol.decode(frames, KEY, allowed_types=protocol.CLIENT_TYPES)
    assert err.value.code.value == code
    assert fragment in err.value.message


def test_huge_header_is_refused_before_unpacking():
    with pytest.raises(ProtocolError, match="header is 70000 bytes"):
        protocol.decode([*signed({})[:2], b"\x00" * 70_000], None)


def test_msgpack_limits_apply():
    too_long = signed({"type": "hello", "protocol": 1, "client": "x" * (protocol.MAX_STR_LEN + 1)})
    with pytest.raises(ProtocolError, match="not valid msgpack"):
        protocol.decode(too_long, KEY)
    bin_value = signed({"type": "hello", "protocol": 1, "client": b"bytes"})
    with pytest.raises(ProtocolError, match="not valid msgpack"):
        protocol.decode(bin_value, KEY)


def test_image_check():
    ImageBuf(2, 2, 3, "u8", bytes(12)).check()
    with pytest.raises(ProtocolError, match="expected 12"):
        ImageBuf(2, 2, 3, "u8", bytes(13)).check()
    with pytest.raises(ProtocolError) as err:
        ImageBuf(100, 100, 3, "u8", bytes(30_000)).check(max_pixels=9_999)
    assert err.value.code is ErrorCode.TOO_LARGE and "--max-pixels" in err.value.hint


# --------------------------------------------------------------------------- garbage

frame_bytes = st.binary(max_size=64)
json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)  # fmt: skip
header_keys = st.sampled_from(
    ["type", "job", "req", "params", "content", "styles", "mask", "code", "message", "image",
     "stats", "iterates", "step", "total", "w", "h", "c", "dtype", "preview_every"]
)  # fmt: skip
types = st.sampled_from(sorted(protocol.SCHEMAS)) | st.text(max_size=8)
headers = st.builds(
    lambda t, rest: {"type": t, **rest}, types, st.dictionaries(header_keys, json_like, max_size=6)
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frame_bytes, max_size=14), st.sampled_from([None, KEY]))
def test_random_frames_raise_only_protocol_errors(frames, key):
    with contextlib.suppress(ProtocolError):
        protocol.decode(frames, key)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(headers, st.lists(frame_bytes, max_size=4), st.booleans())
def test_signed_random_headers_raise_only_protocol_errors(header, buffers, unsigned_ok):
    try:
        frames = signed(header, *buffers)
    except (TypeError, ValueError, OverflowError):  # hypothesis made something unpackable
        return
    try:
        msg = protocol.decode(frames, KEY, accept_unsigned_errors=unsigned_ok)
    except ProtocolError:
        return
    assert msg.type in protocol.SCHEMAS


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_header_bytes_raise_only_protocol_errors(packed):
    frames = [protocol.VERSION, protocol.sign(KEY, [protocol.VERSION, packed]), packed]
    with contextlib.suppress(ProtocolError):
        protocol.decode(frames, KEY)


def test_protocol_error_is_a_neural_style_error():
    assert issubclass(ProtocolError, NeuralStyleError)


# --------------------------------------------------------------------------- connection file


@pytest.fixture
def runtime(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delenv(connection.ENV_FILE, raising=False)
    return tmp_path / "neural-style"


def test_connection_file_is_private(runtime):
    info = connection.make_info(protocol.DEFAULT_ENDPOINT, connection.new_key(), "0.1.0")
    path = connection.write(info, connection.path_for(None))
    assert path == runtime / "daemon.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(runtime.stat().st_mode) == 0o700
    data = json.loads(path.read_text())
    assert set(data) == {"endpoint", "pid", "key", "version", "started", "pidns"}
    assert bytes.fromhex(data["key"]) == info.key and len(info.key) == 32


def test_non_default_endpoint_gets_its_own_file_and_is_found_by_scanning(runtime):
    endpoint = "tcp://127.0.0.1:6123"
    path = connection.path_for(endpoint)
    assert path.name == "daemon-127-0-0-1-6123.json"
    connection.write(connection.make_info(endpoint, b"\x01" * 32, "x"), path)
    connection.write(connection.make_info(protocol.DEFAULT_ENDPOINT, b"\x02" * 32, "x"),
                     connection.path_for(None))  # fmt: skip
    assert connection.discover("tcp://localhost:6123").key == b"\x01" * 32
    assert connection.discover(protocol.DEFAULT_ENDPOINT).key == b"\x02" * 32
    assert connection.discover("tcp://127.0.0.1:1").__class__ is type(None)


def test_stale_files_are_ignored_and_removed(runtime):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    endpoint = f"tcp://127.0.0.1:{_free_port()}"  # nothing listens: proved gone
    info = connection.ConnectionInfo(
        endpoint, dead.pid, b"\x03" * 32, pidns=connection.pid_namespace()
    )
    path = connection.write(info, connection.path_for(endpoint))
    assert connection.discover() is None
    assert not path.exists()


def test_env_var_overrides_the_path_and_is_trusted(runtime, tmp_path, monkeypatch):
    explicit = tmp_path / "elsewhere" / "conn.json"
    monkeypatch.setenv(connection.ENV_FILE, str(explicit))
    assert connection.path_for("tcp://127.0.0.1:7000") == explicit
    # A pid from another pid namespace (chroot/Flatpak) must not make it "stale".
    connection.write(connection.ConnectionInfo("tcp://127.0.0.1:7000", 2**22 + 1, b"\x04" * 32),
                     explicit)  # fmt: skip
    assert connection.discover().key == b"\x04" * 32
    assert connection.discover("tcp://127.0.0.1:7000").endpoint == "tcp://127.0.0.1:7000"


def test_remove_only_own_file(runtime):
    path = connection.write(connection.make_info("tcp://127.0.0.1:1", b"k", "v"),
                            connection.path_for(None))  # fmt: skip
    connection.remove(path, pid=os.getpid() + 1)
    assert path.exists()
    connection.remove(path, pid=os.getpid())
    assert not path.exists()


def test_malformed_connection_file_is_ignored(runtime):
    runtime.mkdir(mode=0o700)
    (runtime / "daemon.json").write_text("{not json")
    assert connection.read(runtime / "daemon.json") is None
    assert connection.discover() is None


def test_fallback_dir_when_no_runtime_dir(monkeypatch):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert connection.runtime_dir().name == f"neural-style-{os.getuid()}"


# --------------------------------------------------------------------------- packaging


def test_shared_imports_without_numpy_and_works_under_another_name(tmp_path):
    """The plug-in copies shared/ under its own folder: stdlib + zmq + msgpack only."""
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "shared", tmp_path / "ns_bundled", ignore=ignore)
    script = textwrap.dedent(
        """
        import sys
        sys.modules["numpy"] = None  # any numpy import now fails
        from ns_bundled import client, connection, protocol
        img = protocol.ImageBuf(2, 2, 3, "u8", bytes(12))
        m = protocol.Message("preview", {"job": "a", "step": 1, "image": img})
        print(protocol.decode(protocol.encode(m, b"k"), b"k").type)
        assert "neural_style" not in sys.modules
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert out.stdout.strip() == "preview"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_submit_init_round_trips_after_the_mask():
    fields = dict(SAMPLES["submit"])
    fields["init"] = ImageBuf(5, 4, 4, "u16", bytes(range(160)))
    out = roundtrip(Message("submit", fields))
    assert out.fields["init"].describe() == fields["init"].describe()
    assert bytes(out.fields["init"].data) == bytes(range(160))
    assert out.fields["mask"].channels == 1


def test_client_refuses_a_wrong_size_init_locally():
    bad = Message("submit", {**SAMPLES["submit"], "init": img(4, 4, 4, "u16")})
    with pytest.raises(ProtocolError, match=r"submit\.init"):
        protocol.validate(bad)


def test_welcome_may_carry_the_measured_step_time_in_its_limits():
    # More in test_protocol_step_times.py (why in limits: older decoders accept it there).
    times = {"step_s_per_mpx": 2.5, "step_s_by_side": {"512": 0.74}}
    fields = {**SAMPLES["welcome"], "limits": {"max_pixels": 100, **times}}
    out = roundtrip(Message("welcome", fields))
    assert protocol.step_times(out.fields) == times
    with pytest.raises(ProtocolError, match=r"welcome\.limits\.step_s_per_mpx"):
        protocol.validate(Message("welcome", {**fields, "limits": {"step_s_per_mpx": -1.0}}))
