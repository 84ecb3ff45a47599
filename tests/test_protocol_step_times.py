"""The daemon's measured step times in ``welcome``: inside the open ``limits`` map, so that
a client whose strict decoder predates them still accepts a newer daemon's welcome."""

from __future__ import annotations

import pytest

from neural_style.shared import protocol
from neural_style.shared.protocol import Message, ProtocolError
from neural_style.shared.validators import integer as _int
from neural_style.shared.validators import list_of as _list
from neural_style.shared.validators import number as _num
from neural_style.shared.validators import plain as _plain
from neural_style.shared.validators import string as _str

KEY = b"k" * 32
#: ``welcome`` as decoders before the step times knew it (neural-style 0.1.0, before
#: commit 7d1b122): any other field is ``bad_request``.
OLD_WELCOME = {
    "protocol": (_int(0, 2**16), True),
    "server": (_str(200), True),
    "pid": (_int(0, 2**31), False),
    "device": (_str(200), True),
    "model": (_str(200), True),
    "weights": (_plain(2), True),
    "limits": (_plain(2), True),
    "features": (_list(_str(64), 0, 64), True),
    "heartbeat_s": (_num(0.05, 60.0), True),
}
TIMES = {"step_s_per_mpx": 2.5, "step_s_by_side": {"256": 0.21, "512": 0.74}}
WELCOME = {
    "protocol": 1,
    "server": "0.1.0",
    "pid": 42,
    "device": "CPU",
    "model": "vgg19",
    "weights": {"path": "/w.h5", "sha256": "ab", "synthetic": True},
    "limits": {"max_pixels": 100, **TIMES},
    "features": ["preview"],
    "heartbeat_s": 1.0,
}


def roundtrip(fields: dict) -> Message:
    frames = [bytes(f) for f in protocol.encode(Message("welcome", fields), KEY)]
    return protocol.decode(frames, KEY)


@pytest.fixture
def old_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's decoder with the previous welcome fields (the older client's rules)."""
    monkeypatch.setitem(protocol.SCHEMAS, "welcome", OLD_WELCOME)


@pytest.mark.usefixtures("old_decoder")
def test_an_older_decoder_accepts_the_new_welcome():
    out = roundtrip(WELCOME)
    assert out.fields["limits"]["step_s_per_mpx"] == 2.5
    assert out.fields["limits"]["max_pixels"] == 100


@pytest.mark.usefixtures("old_decoder")
def test_an_older_decoder_refused_the_step_times_as_fields():
    """Why they moved: as top-level fields they broke every older plug-in."""
    fields = {**WELCOME, "limits": {"max_pixels": 100}, **TIMES}
    with pytest.raises(ProtocolError, match="unknown field"):
        roundtrip(fields)


def test_the_new_decoder_reads_the_step_times():
    out = roundtrip(WELCOME)
    assert protocol.step_times(out.fields) == TIMES


def test_step_times_before_the_first_job_are_absent():
    out = roundtrip({**WELCOME, "limits": {"max_pixels": 100}})
    assert protocol.step_times(out.fields) == {}


def test_a_development_daemons_top_level_step_times_are_still_read():
    out = roundtrip({**WELCOME, "limits": {"max_pixels": 100}, **TIMES})
    assert protocol.step_times(out.fields) == TIMES


@pytest.mark.parametrize(
    ("times", "where"),
    [
        ({"step_s_per_mpx": -1.0}, r"welcome\.limits\.step_s_per_mpx"),
        ({"step_s_per_mpx": "fast"}, r"welcome\.limits\.step_s_per_mpx"),
        ({"step_s_by_side": {"512": -0.1}}, r"welcome\.limits\.step_s_by_side\.512"),
        ({"step_s_by_side": {"big": 0.1}}, r"welcome\.limits\.step_s_by_side"),
        ({"step_s_by_side": [0.1]}, r"welcome\.limits\.step_s_by_side"),
    ],
)
def test_step_times_in_limits_are_checked(times: dict, where: str):
    bad = Message("welcome", {**WELCOME, "limits": {"max_pixels": 100, **times}})
    with pytest.raises(ProtocolError, match=where):
        protocol.validate(bad)
