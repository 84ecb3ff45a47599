"""The animation procedure's pure part (plugin/nsg_frames.py): which layers are frames and
in what order, what each job carries, the time left. The real-GIMP run is
tests/test_gimp_frames.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "plugin"


@pytest.fixture(scope="module")
def nsg_frames() -> Any:
    # imported first: the plug-in folder's neural_style.py must not shadow the package
    import neural_style.shared.defaults
    import neural_style.shared.schema  # noqa: F401

    sys.path.append(str(PLUGIN_DIR))
    try:
        import nsg_frames

        yield nsg_frames
    finally:
        sys.path.remove(str(PLUGIN_DIR))


class Layer:
    def __init__(self, ident: int, name: str, group: bool = False) -> None:
        self.ident, self.name, self.group = ident, name, group

    def get_id(self) -> int:
        return self.ident

    def get_name(self) -> str:
        return self.name

    def is_group(self) -> bool:
        return self.group


class Buf:
    def __init__(self, w: int, h: int, channels: int = 4, dtype: str = "u8", data: bytes = b""):
        self.width, self.height, self.channels, self.dtype, self.data = w, h, channels, dtype, data


class Client:
    def __init__(self) -> None:
        self.submitted: list[dict[str, Any]] = []

    def submit(self, content: Any, styles: Any, params: Any, **kw: Any) -> str:
        self.submitted.append({"content": content, **kw})
        return f"job{len(self.submitted)}"


class ClientMod:
    ImageBuf = Buf


class Done:
    def __init__(self, image: Buf, frame: dict[str, Any]) -> None:
        self.image, self.stats = image, {"steps": 3, "frame": frame}


def test_frames_are_the_layers_bottom_up_without_groups_and_the_style(nsg_frames: Any) -> None:
    top_first = [Layer(5, "style"), Layer(4, "Neural Style result", group=True),
                 Layer(3, "Frame 3 (100ms)"), Layer(2, "Frame 2 (100ms)"),
                 Layer(1, "Frame 1 (100ms)")]  # fmt: skip
    frames = nsg_frames.frame_layers(top_first, style_ids={5})
    assert [f.get_name() for f in frames] == ["Frame 1 (100ms)", "Frame 2 (100ms)",
                                              "Frame 3 (100ms)"]  # fmt: skip


def test_each_job_after_the_first_carries_the_previous_frame(nsg_frames: Any) -> None:
    """Frames mode sends frame k-1's content and result with frame k, with the temporal
    weight; a frame of another size, independent mode, or a daemon without the feature
    sends none."""

    def frame(name: str, w: int = 8) -> Any:
        return nsg_frames.FrameIn(name, w, 6, (0, 0), 4, "u8", 1, "R'G'B'A u8", bytes(w * 24))

    frames = [frame("a"), frame("b"), frame("c", w=10)]
    clock = iter(range(100))
    client = Client()
    seq = nsg_frames.FrameSequence(
        client, ClientMod, frames, [], {"iterations": 30}, temporal_weight=123.0,
        independent=False, features=["frames"], interactive=False, clock=lambda: next(clock),
    )  # fmt: skip
    for k, f in enumerate(frames):
        seq.submit_next()
        seq.finish(Done(Buf(f.w, f.h), {"continued": k > 0}))
    first, second, third = client.submitted
    assert first["previous"] is None and first["temporal_weight"] is None
    prev_content, prev_result = second["previous"]
    assert prev_content.data == frames[0].data and prev_result.width == 8
    assert second["temporal_weight"] == 123.0
    assert third["previous"] is None  # another size: no continuity
    assert seq.done == 3 and len(seq.frame_times) == 3
    for kwargs in ({"independent": True, "features": ["frames"]},
                   {"independent": False, "features": ["init"]}):  # fmt: skip
        other = Client()
        s = nsg_frames.FrameSequence(other, ClientMod, frames[:2], [], {}, temporal_weight=1.0,
                                     interactive=False, **kwargs)  # fmt: skip
        for f in frames[:2]:
            s.submit_next()
            s.finish(Done(Buf(f.w, f.h), {}))
        assert [c["previous"] for c in other.submitted] == [None, None]


def test_wrong_result_size_is_an_error_naming_the_frame(nsg_frames: Any) -> None:
    f = nsg_frames.FrameIn("Frame 1", 8, 6, (0, 0), 4, "u8", 1, "R'G'B'A u8", bytes(192))
    seq = nsg_frames.FrameSequence(Client(), ClientMod, [f], [], {}, temporal_weight=1.0,
                                   independent=False, features=[], interactive=False)  # fmt: skip
    seq.submit_next()
    with pytest.raises(nsg_frames.PluginError, match="Frame 1"):
        seq.finish(Done(Buf(4, 3), {}))


def test_time_left_and_names(nsg_frames: Any) -> None:
    assert nsg_frames.frames_left_s([], 3, 5.0) is None
    assert nsg_frames.frames_left_s([10.0], 2, 4.0) == 24.0  # only the first: its time
    assert nsg_frames.frames_left_s([10.0, 3.0, 5.0], 2, 1.0) == 9.0  # later frames' mean
    assert nsg_frames.group_name(["starry"], 4, 4) == "Frames in the style of starry (Neural Style)"
    assert nsg_frames.group_name(["a", "b"], 2, 4).endswith("(2 of 4 frames) (Neural Style)")
    names = [a[1] for a in nsg_frames.FRAMES_ARGUMENTS]
    assert "refine" not in names and names[-3:] == ["temporal-weight", "independent", "new-image"]
