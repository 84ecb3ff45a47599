"""Unit tests for the GIMP plug-in's logic and for install-plugin / uninstall-plugin.

The real GIMP runs the plug-in in tests/test_gimp_e2e.py; what headless GIMP cannot run (the
settings dialog and the progress window with its Cancel button) is tested here against a
small fake of ``gi.repository``, together with the plug-in's pure helpers.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import stat
import struct
import subprocess
import sys
import types
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import pytest

from neural_style.daemon.cli import install_plugin
from neural_style.daemon.engine.params import PRESETS, StyleParams
from neural_style.daemon.gimp_install import (
    discovery,
    errors,
    help_pages,
    install,
    interpreter,
    wheels,
)
from neural_style.shared import client as real_client
from neural_style.shared.protocol import ImageBuf

PLUGIN_FILE = Path(install.__file__).resolve().parents[2] / "plugin" / "neural_style.py"


# --------------------------------------------------------------------------- a fake gi


class _Recorder:
    """Widget stand-in: remembers every setter call."""

    def __init__(self, **kwargs: Any) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.props = dict(kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)

        def method(*args: Any) -> None:
            self.calls.append((name, args))

        return method

    def last(self, name: str) -> tuple[Any, ...] | None:
        for call, args in reversed(self.calls):
            if call == name:
                return args
        return None


class FakeDialog(_Recorder):
    instances: ClassVar[list[FakeDialog]] = []

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.handlers: dict[str, Any] = {}
        self.box = _Recorder()
        self.destroyed = False
        FakeDialog.instances.append(self)

    def get_content_area(self) -> _Recorder:
        return self.box

    def connect(self, signal: str, handler: Any) -> None:
        self.handlers[signal] = handler

    def destroy(self) -> None:
        self.destroyed = True

    def emit(self, signal: str, *args: Any) -> Any:
        return self.handlers[signal](self, *args)


class FakeMainLoop:
    """Runs the registered GLib timeouts until quit() (bounded, so a bug can't hang)."""

    timeouts: ClassVar[list[Any]] = []

    def __init__(self) -> None:
        self.running = False

    def run(self) -> None:
        self.running = True
        for _ in range(10_000):
            if not self.running:
                return
            for cb in list(FakeMainLoop.timeouts):
                if not cb():
                    FakeMainLoop.timeouts.remove(cb)
                if not self.running:
                    return
        raise AssertionError("main loop never quit")

    def quit(self) -> None:
        self.running = False


class FakeProcedureDialog(_Recorder):
    answer = True
    latest: FakeProcedureDialog | None = None

    @classmethod
    def new(cls, procedure: Any, config: Any, title: str) -> FakeProcedureDialog:
        dialog = cls(procedure=procedure, config=config, title=title)
        cls.latest = dialog
        return dialog

    def get_label(self, label_id: str, text: str, markup: bool, mnemonic: bool) -> None:
        self.props[label_id] = text

    def run(self) -> bool:
        return FakeProcedureDialog.answer


class FakeValueArray(list):
    @classmethod
    def new(cls, size: int) -> FakeValueArray:
        return cls()


class FakeChoice:
    def __init__(self) -> None:
        self.items: list[tuple[str, int, str, str]] = []

    @classmethod
    def new(cls) -> FakeChoice:
        return cls()

    def add(self, nick: str, ident: int, label: str, help_text: str) -> None:
        self.items.append((nick, ident, label, help_text))

    def nicks(self) -> list[str]:
        return [item[0] for item in self.items]


def _enum(**values: Any) -> types.SimpleNamespace:
    return types.SimpleNamespace(**values)


def make_fake_gi() -> tuple[types.ModuleType, types.ModuleType]:
    class PlugIn:  # the plug-in subclasses it at import time
        help_domains: ClassVar[list[Any]] = []

        def set_help_domain(self, name: str, folder: Any) -> None:
            PlugIn.help_domains.append((name, folder.get_path()))

    class Layer:
        pass

    class LayerMask(Layer):
        pass

    gimp = types.SimpleNamespace(
        PlugIn=PlugIn,
        Layer=Layer,
        LayerMask=LayerMask,
        RunMode=_enum(
            INTERACTIVE="interactive",
            NONINTERACTIVE="noninteractive",
            WITH_LAST_VALS="with-last-vals",
        ),
        PDBStatusType=_enum(SUCCESS="success", CANCEL="cancel", EXECUTION_ERROR="execution-error"),
        ImageType=_enum(RGBA_IMAGE="rgba", GRAYA_IMAGE="graya"),
        LayerMode=_enum(NORMAL="normal"),
        AddMaskType=_enum(SELECTION="selection"),
        ValueArray=FakeValueArray,
        Choice=FakeChoice,
        ImageProcedure=types.SimpleNamespace(new=lambda *a: _Recorder(args=a)),
        PDBProcType=_enum(PLUGIN="plugin"),
        ProcedureSensitivityMask=_enum(DRAWABLE="drawable"),
        FileChooserAction=_enum(OPEN="open"),
        directory=lambda: os.environ["NSG_TEST_GIMP_DIR"],
        get_images=lambda: [],
        Selection=types.SimpleNamespace(is_empty=lambda image: not image.selection),
        progress_init=lambda *a: None,
        progress_update=lambda *a: True,
        progress_set_text=lambda *a: None,
        progress_end=lambda *a: None,
        displays_flush=lambda: None,
    )
    gegl = types.SimpleNamespace(
        Rectangle=types.SimpleNamespace(new=lambda x, y, w, h: (x, y, w, h)),
        AbyssPolicy=_enum(CLAMP="clamp", NONE="none"),
    )
    glib = types.SimpleNamespace(
        Error=lambda msg="": ("GError", msg),
        MainLoop=FakeMainLoop,
        timeout_add=lambda ms, cb: FakeMainLoop.timeouts.append(cb) or len(FakeMainLoop.timeouts),
        Bytes=types.SimpleNamespace(new=lambda data: bytes(data)),
    )
    gtk = types.SimpleNamespace(
        ResponseType=_enum(CANCEL=-6),
        Label=_Recorder,
        ProgressBar=_Recorder,
        Image=_Recorder,
    )
    gimpui = types.SimpleNamespace(
        Dialog=FakeDialog, ProcedureDialog=FakeProcedureDialog, init=lambda name: None
    )
    gdkpixbuf = types.SimpleNamespace(
        Colorspace=_enum(RGB="rgb"),
        Pixbuf=types.SimpleNamespace(new_from_bytes=lambda *a: ("pixbuf", *a)),
    )
    repo = types.ModuleType("gi.repository")
    repo.Gimp, repo.Gegl, repo.GLib = gimp, gegl, glib
    repo.GObject = types.SimpleNamespace(
        ParamFlags=_enum(READWRITE=3),
        Value=lambda t, v: v,
        TYPE_STRING="gchararray",
        TYPE_NONE="void",
    )
    repo.Gtk, repo.GimpUi, repo.GdkPixbuf = gtk, gimpui, gdkpixbuf
    repo.Gio = types.SimpleNamespace(
        File=types.SimpleNamespace(new_for_path=lambda p: types.SimpleNamespace(get_path=lambda: p))
    )
    gi = types.ModuleType("gi")
    gi.require_version = lambda name, version: None
    gi.repository = repo
    return gi, repo


class PluginView:
    """The registered file and its bundled helper modules seen as one namespace: reading a
    name finds it where it lives; setting one (monkeypatch) sets it in every module that
    holds it, so the code calling it sees the stand-in wherever it was imported."""

    __slots__ = ("_modules",)  # no __dict__: monkeypatch restores through setattr

    def __init__(self, *modules: types.ModuleType) -> None:
        object.__setattr__(self, "_modules", modules)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        for module in self._modules:
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        owners = [m for m in self._modules if name in vars(m)] or self._modules[:1]
        for module in owners:
            setattr(module, name, value)


#: The bundled modules beside the registered file (install-plugin copies every nsg_*.py).
HELPER_MODULES = tuple(sorted(p.stem for p in PLUGIN_FILE.parent.glob("nsg_*.py")))


def load_plugin(path: Path, monkeypatch: pytest.MonkeyPatch) -> PluginView:
    """Import a neural_style.py (and the helpers beside it, freshly) against the fake gi."""
    gi, repo = make_fake_gi()
    monkeypatch.setitem(sys.modules, "gi", gi)
    monkeypatch.setitem(sys.modules, "gi.repository", repo)
    for name in HELPER_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    spec = importlib.util.spec_from_file_location(f"nsg_plugin_{abs(hash(path))}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return PluginView(module, *(sys.modules[name] for name in HELPER_MODULES))


@pytest.fixture
def plugin(monkeypatch: pytest.MonkeyPatch) -> Any:
    """plugin/neural_style.py imported against the fake gi."""
    FakeMainLoop.timeouts = []
    FakeDialog.instances = []
    return load_plugin(PLUGIN_FILE, monkeypatch)


def _ui(plugin: types.ModuleType) -> types.SimpleNamespace:
    repo = sys.modules["gi.repository"]
    return types.SimpleNamespace(
        GimpUi=repo.GimpUi, Gtk=repo.Gtk, GLib=repo.GLib, GdkPixbuf=repo.GdkPixbuf
    )


class ScriptedJob:
    """Job stand-in: each poll() returns the next scripted batch (or raises it)."""

    def __init__(self, script: list[Any], on_poll: Any = None) -> None:
        self.script = list(script)
        self.cancelled = 0
        self.polls = 0
        self.on_poll = on_poll

    def poll(self, timeout_ms: int = 0) -> list[Any]:
        self.polls += 1
        if self.on_poll:
            self.on_poll(self)
        if not self.script:
            return []
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    def cancel(self) -> None:
        self.cancelled += 1
        self.script.append([real_client.Cancelled("client", 3)])

    wait = real_client.Job.wait  # the client's one wait loop, over the scripted polls


def _progress(step: int, total: int, eta: float = 65.0) -> real_client.Progress:
    return real_client.Progress(
        step=step,
        total=total,
        loss=1234.5,
        content=1.0,
        style=2.0,
        tv=3.0,
        elapsed_s=1.0,
        scale=256,
        eta_s=eta,
    )


# --------------------------------------------------------------------------- pure helpers


def test_style_strength_maps_onto_style_weight(plugin: types.ModuleType) -> None:
    assert plugin.style_weights(1.0) == (1e4, 1e-2)  # the engine's default balance
    assert plugin.style_weights(2.5) == (1e4, pytest.approx(2.5e-2))
    assert plugin.style_weights(0.0) == (1e4, 0.0)
    assert plugin.style_weights(1e9)[1] == pytest.approx(1e-2 * plugin.MAX_STRENGTH)
    assert plugin.style_weights(-3)[1] == 0.0


@pytest.mark.parametrize("strength", [0.0, 1.0, 7.5, 100.0])
def test_params_are_valid_daemon_params(plugin: types.ModuleType, strength: float) -> None:
    params = plugin.build_params(20, 128, strength)
    parsed = StyleParams.from_dict(params)  # rejects unknown keys and bad values
    assert (parsed.iterations, parsed.size, parsed.keep_size) == (20, 128, True)
    assert parsed.style_weight / parsed.content_weight == pytest.approx(strength * 1e-6)


def test_preserve_color_asks_for_luminance_transfer(plugin: types.ModuleType) -> None:
    assert "preserve_color" not in plugin.build_params(5, 64, 1.0)  # old daemons accept it
    params = plugin.build_params(5, 64, 1.0, preserve_color=True)
    assert StyleParams.from_dict(params).preserve_color.value == "luminance"


def test_max_size_is_clamped_to_daemon_limits(plugin: types.ModuleType) -> None:
    assert plugin.build_params(1, 5, 1.0)["size"] == 32
    assert plugin.build_params(1, 99999, 1.0)["size"] == 4096


@pytest.mark.parametrize(
    ("gray", "nick", "expected"),
    [
        (False, "u8-non-linear", ("R'G'B'A u8", 4, "u8", 1)),
        (False, "u16-linear", ("R'G'B'A u16", 4, "u16", 2)),
        (False, "u32-perceptual", ("R'G'B'A u16", 4, "u16", 2)),
        (False, "half-non-linear", ("R'G'B'A float", 4, "f32", 4)),
        (False, "double-linear", ("R'G'B'A float", 4, "f32", 4)),
        (True, "u8-non-linear", ("Y'A u8", 2, "u8", 1)),
        (True, "float-linear", ("Y'A float", 2, "f32", 4)),
    ],
)
def test_pixel_format_follows_precision(
    plugin: types.ModuleType, gray: bool, nick: str, expected: tuple[Any, ...]
) -> None:
    assert plugin.pixel_format(gray, nick) == expected


def test_babl_format_for_result_layouts(plugin: types.ModuleType) -> None:
    assert plugin.babl_format_for(4, "u16") == "R'G'B'A u16"
    assert plugin.babl_format_for(1, "f32") == "Y' float"
    with pytest.raises(plugin.PluginError, match="cannot read"):
        plugin.babl_format_for(5, "u8")


def test_restore_alpha_u8_and_u16(plugin: types.ModuleType) -> None:
    orig = bytes([1, 2, 3, 40, 5, 6, 7, 80])
    res = bytes([9, 9, 9, 255, 9, 9, 9, 255])
    assert plugin.restore_alpha(res, orig, 4, 1) == bytes([9, 9, 9, 40, 9, 9, 9, 80])
    orig16 = struct.pack("<4H", 1, 2, 3, 0xABCD)
    res16 = struct.pack("<4H", 7, 7, 7, 0xFFFF)
    assert struct.unpack("<4H", plugin.restore_alpha(res16, orig16, 4, 2)) == (7, 7, 7, 0xABCD)
    gray = plugin.restore_alpha(bytes([5, 255, 6, 255]), bytes([1, 10, 2, 20]), 2, 1)
    assert gray == bytes([5, 10, 6, 20])
    assert plugin.restore_alpha(b"\x01\x02\x03", b"\x04\x05\x06", 3, 1) == b"\x01\x02\x03"


def test_to_rgb8_converts_every_layout(plugin: types.ModuleType) -> None:
    assert plugin.to_rgb8(1, 1, 3, "u8", b"\x01\x02\x03") == b"\x01\x02\x03"
    assert plugin.to_rgb8(1, 1, 4, "u8", b"\x01\x02\x03\x04") == b"\x01\x02\x03"
    assert plugin.to_rgb8(2, 1, 2, "u8", b"\x07\xff\x08\xff") == b"\x07\x07\x07\x08\x08\x08"
    assert plugin.to_rgb8(1, 1, 1, "u16", struct.pack("<H", 0xFF00)) == b"\xff\xff\xff"
    assert plugin.to_rgb8(1, 1, 3, "f32", struct.pack("<3f", 0.0, 1.0, 2.0)) == b"\x00\xff\xff"


def test_format_eta(plugin: types.ModuleType) -> None:
    assert plugin.format_eta(None) == ""
    assert plugin.format_eta(float("nan")) == ""
    assert plugin.format_eta(12.4) == "About 12 s left"
    assert plugin.format_eta(65) == "About 1 min 05 s left"
    assert plugin.format_eta(3 * 3600 + 120) == "About 3 h 02 min left"


def test_progress_note(plugin: types.ModuleType) -> None:
    assert plugin.progress_note(1, 10, 0.0) == "Estimating the time left…"
    assert plugin.progress_note(5, 10, 65.0) == "About 1 min 05 s left"  # no raw loss figures
    assert plugin.progress_note(10, 10, 0.0) == "Finishing…"


def test_fit_within_only_shrinks(plugin: types.ModuleType) -> None:
    assert plugin.fit_within(100, 50, 200) == (100, 50)
    assert plugin.fit_within(1000, 500, 200) == (200, 100)


def test_extra_params(plugin: types.ModuleType) -> None:
    assert plugin.extra_params("") == {}
    assert plugin.extra_params('{"seed": 3}') == {"seed": 3}
    with pytest.raises(plugin.PluginError, match="JSON"):
        plugin.extra_params("{nope")
    with pytest.raises(plugin.PluginError, match="object"):
        plugin.extra_params("[1]")


@pytest.mark.parametrize(
    ("exc", "endpoint", "needles"),
    [
        (
            real_client.DaemonUnavailable("Cannot reach it."),
            "",
            ["not running", "neural-style serve"],
        ),
        (
            real_client.DaemonUnavailable("Cannot reach it."),
            "tcp://127.0.0.1:7777",
            ["neural-style serve --bind tcp://127.0.0.1:7777"],
        ),
        (real_client.DaemonDied("silent 9 s"), "", ["stopped answering", "neural-style serve"]),
        (real_client.WeightsMissing("no file"), "", ["neural-style fetch-weights"]),
        (real_client.TooLarge("9000x9000"), "", ["too large", "Max size", "9000x9000"]),
        (real_client.VersionMismatch("0.1 vs 0.2"), "", ["neural-style install-plugin"]),
        (real_client.OutOfMemory("OOM"), "", ["out of memory", "Max size"]),
        (real_client.Unauthenticated("bad key"), "", ["NEURAL_STYLE_CONNECTION_FILE"]),
        (real_client.InternalError("boom", "see the log"), "", ["boom", "see the log"]),
    ],
)
def test_errors_become_actionable_messages(
    plugin: types.ModuleType, exc: Exception, endpoint: str, needles: list[str]
) -> None:
    text = plugin.describe_error(exc, endpoint)
    for needle in needles:
        assert needle in text, text


def test_messages_name_the_endpoint_the_daemon_was_found_at(plugin: types.ModuleType) -> None:
    client = real_client.Client.__new__(real_client.Client)  # no socket needed
    client.endpoint = "tcp://127.0.0.1:6001"
    assert plugin.shown_endpoint("", client, real_client) == "tcp://127.0.0.1:6001"
    assert plugin.shown_endpoint("tcp://127.0.0.1:7", client, real_client) == "tcp://127.0.0.1:7"
    client.endpoint = real_client.protocol.DEFAULT_ENDPOINT  # plain `neural-style serve` finds it
    assert (
        plugin.shown_endpoint("", client, real_client) == ""
    )  # plain `neural-style serve` finds it
    assert plugin.shown_endpoint("", None, real_client) == ""


def test_missing_pyzmq_says_how_to_reinstall(
    plugin: types.ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(plugin, "PLUGIN_DIR", str(tmp_path))
    monkeypatch.setitem(sys.modules, "zmq", None)  # import zmq -> ImportError
    with pytest.raises(plugin.PluginError) as info:
        plugin.load_client()
    assert "neural-style install-plugin" in str(info.value)
    assert "pyzmq" in str(info.value)


def test_vendor_dir_is_what_the_installer_writes(plugin: types.ModuleType) -> None:
    target = interpreter.TargetPython(version="3.13")
    assert plugin.vendor_dir("/x", (3, 13, 1)) == f"/x/vendor/{target.tag}"


def test_setup_import_path_prefers_vendored(plugin: types.ModuleType, tmp_path: Path) -> None:
    vdir = Path(plugin.vendor_dir(str(tmp_path)))
    vdir.mkdir(parents=True)
    saved = list(sys.path)
    try:
        assert plugin.setup_import_path(str(tmp_path)) == str(vdir)
        assert sys.path[0] == str(vdir)
    finally:
        sys.path[:] = saved
    assert plugin.setup_import_path(str(tmp_path / "nothing")) is None
    sys.path[:] = saved


def test_blocking_loop_reports_progress_and_returns_done(plugin: types.ModuleType) -> None:
    done = real_client.Done(ImageBuf(1, 1, 3, "u8", b"abc"), {})
    job = ScriptedJob([[real_client.Accepted(0)], [_progress(1, 2)], [], [_progress(2, 2), done]])
    seen: list[int] = []
    assert plugin.run_job_blocking(job, on_progress=lambda e: seen.append(e.step)) is done
    assert seen == [1, 2]
    with pytest.raises(plugin.UserCancelled):
        plugin.run_job_blocking(ScriptedJob([[real_client.Cancelled()]]))


# --------------------------------------------------------------------------- progress window


def test_progress_window_shows_steps_eta_preview_and_returns_done(
    plugin: types.ModuleType,
) -> None:
    preview = real_client.Preview(ImageBuf(2, 1, 3, "u8", b"\x01\x02\x03\x04\x05\x06"), 5)
    done = real_client.Done(ImageBuf(1, 1, 3, "u8", b"abc"), {"steps": 10})
    job = ScriptedJob([[real_client.Accepted(2)], [], [_progress(5, 10, 65.0)], [preview], [done]])
    win = plugin.ProgressWindow(_ui(plugin), job, total=10)
    dialog = FakeDialog.instances[-1]
    assert dialog.props["title"] == "Neural Style"
    assert dialog.last("add_button") == ("_Cancel", -6)
    assert win.bar.last("set_text") == ("Step 0 / 10",)
    assert win.run() is done
    assert ("set_fraction", (0.5,)) in win.bar.calls
    assert ("set_text", ("Step 5 / 10",)) in win.bar.calls
    assert ("set_text", ("Waiting in the daemon's queue (position 2)…",)) in win.status.calls
    assert win.eta.last("set_text")[0].startswith("About 1 min 05 s left")
    pixbuf = win.preview.last("set_from_pixbuf")[0]
    assert pixbuf[1] == b"\x01\x02\x03\x04\x05\x06" and pixbuf[5:] == (2, 1, 6)
    assert win.bar.last("set_fraction") == (1.0,)
    assert dialog.destroyed and job.cancelled == 0


def test_cancel_button_cancels_the_job(plugin: types.ModuleType) -> None:
    def press_cancel_on_second_poll(job: ScriptedJob) -> None:
        if job.polls == 2:
            FakeDialog.instances[-1].emit("response", -6)

    job = ScriptedJob([[_progress(1, 10)], [], [], []], on_poll=press_cancel_on_second_poll)
    win = plugin.ProgressWindow(_ui(plugin), job, total=10)
    with pytest.raises(plugin.UserCancelled):
        win.run()
    assert job.cancelled == 1
    assert ("set_text", ("Cancelling…",)) in win.status.calls
    calls = FakeDialog.instances[-1].calls
    assert ("set_response_sensitive", (-6, False)) in calls
    assert ("set_response_sensitive", (plugin.RESPONSE_KEEP, False)) in calls
    assert FakeDialog.instances[-1].destroyed
    assert not isinstance(win.error, plugin.StoppedAndKept)


def test_stop_and_keep_returns_the_latest_image(plugin: types.ModuleType) -> None:
    preview = real_client.Preview(ImageBuf(2, 1, 3, "u8", b"\x01\x02\x03\x04\x05\x06"), 5)

    def press_keep(job: ScriptedJob) -> None:
        if job.polls == 3:
            FakeDialog.instances[-1].emit("response", plugin.RESPONSE_KEEP)

    job = ScriptedJob([[_progress(5, 10)], [preview], [], [], []], on_poll=press_keep)
    win = plugin.ProgressWindow(_ui(plugin), job, total=10)
    dialog = FakeDialog.instances[-1]
    assert ("add_button", ("_Stop and keep", plugin.RESPONSE_KEEP)) in dialog.calls
    assert dialog.calls.index(("set_response_sensitive", (plugin.RESPONSE_KEEP, False))) < (
        dialog.calls.index(("add_button", ("_Cancel", -6)))
    )  # insensitive until the first image came
    with pytest.raises(plugin.StoppedAndKept) as kept:
        win.run()
    assert kept.value.preview is preview.image and (kept.value.step, kept.value.total) == (5, 10)
    assert job.cancelled == 1 and ("set_text", ("Stopping…",)) in win.status.calls
    assert ("set_response_sensitive", (plugin.RESPONSE_KEEP, True)) in dialog.calls


def test_closing_the_window_cancels_too(plugin: types.ModuleType) -> None:
    job = ScriptedJob([])
    win = plugin.ProgressWindow(_ui(plugin), job, total=3)
    assert FakeDialog.instances[-1].emit("delete-event", None) is True  # window stays
    assert job.cancelled == 1
    with pytest.raises(plugin.UserCancelled):
        win.run()


def test_unconfirmed_cancel_gives_up_after_grace(
    plugin: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    class DeafJob(ScriptedJob):
        def cancel(self) -> None:
            self.cancelled += 1  # the daemon never confirms

    job = DeafJob([[]] * 5)
    win = plugin.ProgressWindow(_ui(plugin), job, total=3)
    monkeypatch.setattr(win, "CANCEL_GRACE_S", 0.0)
    win.request_cancel()
    with pytest.raises(plugin.UserCancelled):
        win.run()


def test_daemon_death_in_window_is_raised(plugin: types.ModuleType) -> None:
    job = ScriptedJob([[_progress(1, 10)], real_client.DaemonDied("silent")])
    win = plugin.ProgressWindow(_ui(plugin), job, total=10)
    with pytest.raises(real_client.DaemonDied):
        win.run()
    assert FakeDialog.instances[-1].destroyed


def test_preset_iterations_match_the_daemons_presets(plugin: types.ModuleType) -> None:
    assert {k: v["iterations"] for k, v in PRESETS.items()} == plugin.PRESET_ITERATIONS
    assert ("custom", *PRESETS) == plugin.PRESETS


def test_preset_replaces_iterations_but_keeps_max_size(plugin: types.ModuleType) -> None:
    custom = plugin.build_params(7, 96, 1.0, preset="custom")
    assert "preset" not in custom and custom["iterations"] == 7
    for name, values in PRESETS.items():
        params = plugin.build_params(7, 96, 1.0, preset=name)
        assert params["preset"] == name and "iterations" not in params
        parsed = StyleParams.from_dict(params)
        assert parsed.size == 96  # max-size is the working size, not the preset's
        assert parsed.iterations == values["iterations"] == plugin.effective_iterations(params)
        assert parsed.optimizer.value == values["optimizer"]
        assert parsed.scales == tuple(values["scales"])
    assert plugin.effective_iterations(custom) == 7
    with pytest.raises(plugin.PluginError, match="Unknown preset 'turbo'"):
        plugin.build_params(7, 96, 1.0, preset="turbo")


def test_two_styles_send_blend_weights(plugin: types.ModuleType) -> None:
    assert "style_blend" not in plugin.build_params(5, 64, 1.0)  # one style: no key
    for share, weights in ((0.5, [0.5, 0.5]), (0.25, [0.75, 0.25]), (1.0, [0.0, 1.0]),
                           (0.7, [0.3, 0.7]), (5.0, [0.0, 1.0])):  # fmt: skip
        params = plugin.build_params(5, 64, 1.0, blend=share)
        assert params["style_blend"] == pytest.approx(weights)
        assert StyleParams.from_dict(params).style_blend == pytest.approx(tuple(weights))


def test_style_scale_is_sent_only_when_not_1(plugin: types.ModuleType) -> None:
    assert "style_scale" not in plugin.build_params(5, 64, 1.0, style_scale=1.0)
    assert StyleParams.from_dict(plugin.build_params(5, 64, 1.0, style_scale=2.5)).style_scale == (
        2.5
    )
    assert plugin.build_params(5, 64, 1.0, style_scale=0.01)["style_scale"] == 0.1  # clamped
    assert plugin.build_params(5, 64, 1.0, style_scale=99)["style_scale"] == 4.0


def test_color_mode_applies_only_with_preserve_color(plugin: types.ModuleType) -> None:
    assert "preserve_color" not in plugin.build_params(5, 64, 1.0, color_mode="histogram")
    params = plugin.build_params(5, 64, 1.0, True, color_mode="histogram")
    assert StyleParams.from_dict(params).preserve_color.value == "histogram"
    with pytest.raises(plugin.PluginError, match="colour mode"):
        plugin.build_params(5, 64, 1.0, True, color_mode="sepia")


def _config(**overrides: Any) -> FakeConfig:
    values = {
        "style-layer": "starry", "style-layer-2": None, "style-blend": 0.5, "style-scale": 1.0,
        "preset": "custom", "iterations": 12, "max-size": 64, "style-strength": 1.0,
        "preserve-color": False, "color-mode": "luminance", "endpoint": " tcp://x:1 ",
    }  # fmt: skip
    values.update(overrides)
    return FakeConfig(**values)


def test_job_settings_from_the_procedure_config(
    plugin: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEURAL_STYLE_EXTRA_PARAMS", raising=False)
    one = plugin.job_settings(_config())
    assert one["styles"] == ["starry"] and "style_blend" not in one["params"]
    assert (one["endpoint"], one["iterations"], one["max_size"]) == ("tcp://x:1", 12, 64)

    two = plugin.job_settings(_config(**{"style-layer-2": "wave", "style-blend": 0.3}))
    assert two["styles"] == ["starry", "wave"]
    assert two["params"]["style_blend"] == pytest.approx([0.7, 0.3])

    # blend 0: the second style has no share, so it is not sent at all
    zero = plugin.job_settings(_config(**{"style-layer-2": "wave", "style-blend": 0.0}))
    assert zero["styles"] == ["starry"] and "style_blend" not in zero["params"]

    fast = plugin.job_settings(_config(preset="fast", **{"style-scale": 2.0,
                                                         "preserve-color": True}))  # fmt: skip
    assert fast["iterations"] == PRESETS["fast"]["iterations"]
    assert fast["params"]["preset"] == "fast" and "iterations" not in fast["params"]
    assert fast["params"]["style_scale"] == 2.0 and fast["style_scale"] == 2.0
    assert fast["params"]["preserve_color"] == "luminance"
    StyleParams.from_dict(fast["params"])

    # NEURAL_STYLE_EXTRA_PARAMS may still set the iterations of a preset job
    monkeypatch.setenv("NEURAL_STYLE_EXTRA_PARAMS", '{"iterations": 9}')
    assert plugin.job_settings(_config(preset="quality"))["iterations"] == 9

    with pytest.raises(plugin.PluginError, match="Choose a style: a layer"):
        plugin.job_settings(_config(**{"style-layer": None}))
    # no layer but a painting: the style comes from the file, named after it
    painted = plugin.job_settings(_config(**{"style-layer": None, "style-file": "/p/wave.jpg"}))
    assert [type(s).__name__ for s in painted["styles"]] == ["StyleFile"]
    assert painted["styles"][0].path == "/p/wave.jpg"
    assert painted["styles"][0].get_name() == "wave"


def test_selection_is_read_as_an_8bit_mask_over_the_bbox(plugin: types.ModuleType) -> None:
    reads: list[Any] = []

    class Buffer:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def get(self, rect: Any, scale: float, fmt: str, abyss: str) -> bytes:
            reads.append((rect, scale, fmt, abyss))
            return self.data

    class Image:
        def __init__(self, data: bytes) -> None:
            self.selection_channel = types.SimpleNamespace(get_buffer=lambda: Buffer(data))

        def get_selection(self) -> Any:
            return self.selection_channel

    feathered = bytes([0, 40, 128, 255, 255, 200])
    assert plugin.read_selection_mask(Image(feathered), 5, 6, 3, 2) == feathered
    assert reads[-1] == ((5, 6, 3, 2), 1.0, "Y u8", "none")  # image space, linear coverage
    assert plugin.read_selection_mask(Image(bytes([255] * 6)), 0, 0, 3, 2) is None
    assert plugin.is_opaque_mask(b"\xff\xff") and not plugin.is_opaque_mask(b"\xff\xfe")


def test_procedure_arguments_keep_the_old_ones_first(plugin: types.ModuleType) -> None:
    proc = plugin.NeuralStyle().do_create_procedure(plugin.PROC_NAME)
    added = [(name, args) for name, args in proc.calls if name.startswith("add_")
             and name.endswith("_argument")]  # fmt: skip
    names = [args[0] for _, args in added]
    assert names == [
        "style-layer", "iterations", "max-size", "style-strength", "preserve-color", "endpoint",
        "style-layer-2", "style-blend", "style-scale", "preset", "color-mode", "style-file",
        "refine",
    ]  # fmt: skip
    by_name = {args[0]: (kind, args) for kind, args in added}
    kind, args = by_name["style-file"]
    assert kind == "add_file_argument" and args[1] == "Or open _painting…"
    assert args[3:6] == ("open", True, None)  # a file to open, optional, none by default
    kind, args = by_name["style-layer-2"]
    assert kind == "add_layer_argument" and args[3] is True  # none_ok: one style by default
    assert by_name["style-blend"][1][3:6] == (0.0, 1.0, 0.5)
    assert by_name["style-scale"][1][3:6] == (0.1, 4.0, 1.0)
    kind, args = by_name["preset"]
    assert kind == "add_choice_argument" and args[4] == "fast"  # a first OK is quick
    assert args[3].nicks() == ["fast", "balanced", "quality", "custom"]  # presets first
    shown = [item[2] for item in args[3].items]
    assert shown[0].startswith("Fast (about ") and shown[2].startswith("Quality (about ")
    kind, args = by_name["color-mode"]
    assert args[3].nicks() == ["luminance", "histogram"] and args[4] == "luminance"
    assert by_name["iterations"][1][3:6] == (1, 100000, 300)  # old defaults unchanged
    assert by_name["preserve-color"][1][3] is False
    labels = [args[1] for _, args in added]
    mnemonics = [label[label.index("_") + 1].lower() for label in labels]
    assert len(set(mnemonics)) == len(mnemonics), labels  # every field its own Alt+key


# --------------------------------------------------------------------------- dialog and run()


class FakeConfig:
    def __init__(self, **values: Any) -> None:
        self.values = values

    def get_property(self, name: str) -> Any:
        return self.values[name]

    def set_property(self, name: str, value: Any) -> None:
        self.values[name] = value


class FakeProcedure:
    def new_return_values(self, status: str, error: Any) -> tuple[str, Any]:
        return (status, error)


def test_settings_dialog_presets_first_advanced_collapsed(plugin: types.ModuleType) -> None:
    FakeProcedureDialog.answer = True
    config = _config(**{"style-layer": None})
    config.connect = lambda signal, handler: None
    assert plugin.show_dialog("proc", config) is True
    dialog = FakeProcedureDialog.latest
    assert dialog.props["title"] == "Neural Style"
    fields = dialog.last("fill")[0]
    assert fields[:2] == ["preset", "estimate"]  # presets first, with the expected time
    assert fields[-1] == "advanced" and "endpoint" not in fields and "iterations" not in fields
    assert dialog.last("fill_box") == ("advanced-box", ["iterations", "max-size", "endpoint"])
    # collapsed: engine settings and the daemon's address
    assert dialog.last("fill_expander") == (
        "advanced",
        "advanced-title",
        False,
        "advanced-box",
    )  # collapsed: engine settings and the daemon's address
    assert dialog.props["estimate"].startswith("Expected time: about ")
    assert dialog.props["advanced-title"] == "Advanced"
    assert fields[-2] == "service" and dialog.props["service"].endswith("checking…")
    # Iterations only counts with the "custom" preset; the colour mode only with preserve-color
    prop, _config_arg, other, values, in_values = dialog.last("set_sensitive_if_in")
    assert (prop, other, list(values), in_values) == ("iterations", "preset", ["custom"], True)
    sensitive = [args for call, args in dialog.calls if call == "set_sensitive"]
    assert ("color-mode", True, config, "preserve-color", False) in sensitive
    # Refine only on a Neural Style result layer (show_dialog was not told it is one)
    assert ("refine", False, None, None, False) in sensitive
    assert dialog.calls[-1] == ("destroy", ())


def test_expected_time_follows_preset_size_and_measured_speed(plugin: types.ModuleType) -> None:
    fast = plugin.estimate_seconds("fast", 512, 0, None)
    quality = plugin.estimate_seconds("quality", 512, 0, None)
    assert 20 < fast < 120 and quality > 4 * fast  # from the daemon's preset step counts
    assert plugin.estimate_seconds("fast", 1024, 0, None) == pytest.approx(4 * fast)
    assert plugin.estimate_seconds("custom", 512, 50, None) < fast
    assert plugin.about(42) == "about 40 s" and plugin.about(170) == "about 3 min"
    assert plugin.about(4000) == "about 1 h 07 min"
    speed = plugin.measured_speed({"work_size": [512, 384], "elapsed_s": 60.0, "steps": 120})
    assert speed == pytest.approx(60 / (120 * 0.196608))
    assert "on this computer" in plugin.estimate_text("fast", 512, 0, speed)
    assert "estimated" in plugin.estimate_text("fast", 512, 0, None)
    assert plugin.measured_speed({"steps": 0}) is None


def test_ranges_defaults_and_presets_come_from_the_schema(plugin: types.ModuleType) -> None:
    from neural_style.shared import limits, schema

    assert plugin.PRESET_VALUES == schema.PRESETS
    size, iterations = schema.BY_NAME["size"], schema.BY_NAME["iterations"]
    assert (plugin.MIN_MAX_SIZE, plugin.MAX_MAX_SIZE) == (size.lo, size.hi) == (32, 4096)
    assert (plugin.DEFAULT_MAX_SIZE, plugin.DEFAULT_ITERATIONS) == (512, 300)
    assert (size.default, iterations.default) == (512, 300)
    assert (plugin.BASE_CONTENT_WEIGHT, plugin.BASE_STYLE_WEIGHT) == (1e4, 1e-2)
    assert (plugin.MIN_STYLE_SCALE, plugin.MAX_STYLE_SCALE) == (
        limits.UI_MIN_STYLE_SCALE, limits.UI_MAX_STYLE_SCALE)  # fmt: skip
    assert plugin.COLOR_MODES == ("luminance", "histogram")
    ranges = {arg[1]: arg[4:] for arg in plugin.ARGUMENTS if arg[0] in ("int", "double")}
    assert ranges["iterations"] == (limits.MIN_ITERATIONS, limits.MAX_ITERATIONS, 300)
    assert ranges["max-size"] == (limits.MIN_WORK_SIDE, limits.MAX_WORK_SIDE, 512)
    assert ranges["style-strength"][1] == limits.UI_MAX_STYLE_STRENGTH


def test_parameters_are_checked_before_sending(
    plugin: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin.check_params(plugin.build_params(7, 96, 1.0, preset="fast"))
    with pytest.raises(plugin.PluginError, match="Unknown parameter"):
        plugin.check_params({"sise": 3})
    with pytest.raises(plugin.PluginError, match="Invalid parameter seed"):
        plugin.check_params({"seed": -1})
    with pytest.raises(plugin.PluginError, match="one step per scale"):
        plugin.check_params({"size": 512, "scales": [256, 512], "iterations": 1})


def test_interactive_run_cancelled_in_dialog_does_nothing(
    plugin: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    FakeProcedureDialog.answer = False
    called: list[Any] = []
    monkeypatch.setattr(plugin, "stylize", lambda *a: called.append(a))
    monkeypatch.setattr(plugin, "prepare_rerun", lambda *a: {})
    config = _config()
    config.connect = lambda signal, handler: None
    status, _ = plugin.NeuralStyle().run(
        FakeProcedure(), "interactive", "image", ["layer"], config, None
    )
    assert status == "cancel" and called == []


def test_run_turns_plugin_errors_into_execution_errors(
    plugin: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*_a: Any) -> None:
        raise plugin.PluginError("Start it with: neural-style serve")

    monkeypatch.setattr(plugin, "stylize", fail)
    status, error = plugin.NeuralStyle().run(
        FakeProcedure(), "noninteractive", "image", ["layer"], FakeConfig(), None
    )
    assert status == "execution-error"
    assert error == ("GError", "Start it with: neural-style serve")

    def crash(*_a: Any) -> None:
        raise ZeroDivisionError("x")

    monkeypatch.setattr(plugin, "stylize", crash)
    status, error = plugin.NeuralStyle().run(
        FakeProcedure(), "noninteractive", "image", ["layer"], FakeConfig(), None
    )
    assert status == "execution-error" and "ZeroDivisionError" in error[1]


class FakeImage:
    def __init__(self, fail_insert: bool = False) -> None:
        self.events: list[str] = []
        self.fail_insert = fail_insert
        self.selection = False

    def is_valid(self) -> bool:
        return True

    def undo_group_start(self) -> None:
        self.events.append("start")

    def undo_group_end(self) -> None:
        self.events.append("end")

    def get_item_position(self, item: Any) -> int:
        return 4

    def insert_layer(self, layer: Any, parent: Any, position: int) -> None:
        if self.fail_insert:
            raise RuntimeError("insert failed")
        self.events.append(f"insert@{position}")


def _fake_layer_class(plugin: types.ModuleType) -> type:
    base = sys.modules["gi.repository"].Gimp.Layer

    class FakeLayer(base, _Recorder):  # type: ignore[misc, valid-type]
        def __init__(self, name: str = "", w: int = 0, h: int = 0) -> None:
            _Recorder.__init__(self, name=name, w=w, h=h)
            self.buffer = _Recorder()

        def get_buffer(self) -> _Recorder:
            return self.buffer

        def get_name(self) -> str:
            return self.props["name"]

        def get_parent(self) -> None:
            return None

        def is_valid(self) -> bool:
            return True

        def create_mask(self, kind: str) -> str:
            return f"mask:{kind}"

    return FakeLayer


def _area(plugin: types.ModuleType, has_selection: bool) -> Any:
    area = types.SimpleNamespace(
        w=2, h=1, gray=False, has_selection=has_selection, offsets=(5, 6),
        channels=4, dtype="u8", bps=1, data=bytes([1, 2, 3, 10, 4, 5, 6, 20]),
    )  # fmt: skip
    return area


def test_insert_result_one_undo_group_mask_and_alpha(
    plugin: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    FakeLayer = _fake_layer_class(plugin)
    made: list[Any] = []

    def new(image: Any, name: str, w: int, h: int, *rest: Any) -> Any:
        made.append(FakeLayer(name, w, h))
        return made[-1]

    monkeypatch.setattr(sys.modules["gi.repository"].Gimp.Layer, "new", staticmethod(new), False)
    image = FakeImage()
    done = real_client.Done(ImageBuf(2, 1, 4, "u8", bytes([9, 9, 9, 255, 8, 8, 8, 255])), {})
    layer = plugin.insert_result(image, FakeLayer(), _area(plugin, True), "Starry (NS)", done)
    assert layer is made[0] and layer.get_name() == "Starry (NS)"
    assert image.events == ["start", "insert@0", "end"]  # at the top of the stack
    assert layer.last("set_offsets") == (5, 6)
    rect, fmt, data = layer.buffer.last("set")
    assert (rect, fmt) == ((0, 0, 2, 1), "R'G'B'A u8")
    assert data == bytes([9, 9, 9, 10, 8, 8, 8, 20])  # alpha from the content
    assert layer.last("add_mask") == ("mask:selection",)

    failing = FakeImage(fail_insert=True)
    with pytest.raises(RuntimeError):
        plugin.insert_result(failing, FakeLayer(), _area(plugin, False), "x", done)
    assert failing.events == ["start", "end"]  # the group is closed even on failure

    wrong = real_client.Done(ImageBuf(3, 1, 4, "u8", bytes(12)), {})
    untouched = FakeImage()
    with pytest.raises(plugin.PluginError, match="3x1"):
        plugin.insert_result(untouched, FakeLayer(), _area(plugin, False), "x", wrong)
    assert untouched.events == []


# --------------------------------------------------------------------------- install-plugin


def _args(**kw: Any) -> argparse.Namespace:
    base = {"gimp_dir": [], "python": None, "python_version": None, "no_vendor": False,
            "wheel_dir": None}  # fmt: skip
    base.update(kw)
    return argparse.Namespace(**base)


def _fake_wheel(folder: Path, dist: str, module: str) -> Path:
    path = folder / f"{dist}-1.0-cp313-cp313-manylinux_2_17_x86_64.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{module}/__init__.py", f"NAME = {module!r}\n")
        zf.writestr(f"{dist}-1.0.dist-info/METADATA", f"Name: {dist}\nVersion: 1.0\n")
    return path


def test_install_copies_plugin_shared_and_vendored_wheels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_download(target: Any, dest: Path, wheel_dir: Any = None) -> list[Path]:
        assert target.version in ("3.13", "3.14")
        return [_fake_wheel(dest, "pyzmq", "zmq"), _fake_wheel(dest, "msgpack", "msgpack")]

    monkeypatch.setattr(wheels, "download_wheels", fake_download)
    profile = tmp_path / "profile"
    assert install_plugin.cmd_install(_args(gimp_dir=[str(profile)], python_version="3.13")) == 0
    root = profile / "plug-ins" / "neural_style"
    main = root / "neural_style.py"
    assert main.read_bytes() == PLUGIN_FILE.read_bytes()
    assert main.stat().st_mode & stat.S_IXUSR and main.stat().st_mode & stat.S_IXOTH
    assert main.read_text().startswith("#!/usr/bin/env python3")
    for name in ("__init__.py", "client.py", "protocol.py", "connection.py", "errors.py"):
        assert (root / "nsg_shared" / name).is_file(), name
    assert not list(root.rglob("__pycache__"))
    assert (root / "vendor" / "py313" / "zmq" / "__init__.py").is_file()
    assert (root / "vendor" / "py313" / "msgpack" / "__init__.py").is_file()
    info = json.loads((root / "INSTALLED.json").read_text())
    assert info["vendored"] == {"py313": True} and info["python_version"] == "3.13"
    # no stray staging folders GIMP could trip over
    assert sorted(p.name for p in (profile / "plug-ins").iterdir()) == ["neural_style"]

    # a later install for another Python keeps the first version's wheels
    assert install_plugin.cmd_install(_args(gimp_dir=[str(profile)], python_version="3.14")) == 0
    assert (root / "vendor" / "py313" / "zmq").is_dir()
    assert (root / "vendor" / "py314" / "zmq").is_dir()

    assert install_plugin.cmd_uninstall(_args(gimp_dir=[str(profile)])) == 0
    assert not root.exists()
    assert install_plugin.cmd_uninstall(_args(gimp_dir=[str(profile)])) == 0  # idempotent


def test_bundled_shared_package_imports_under_its_new_name(tmp_path: Path) -> None:
    args = _args(gimp_dir=[str(tmp_path / "p")], python_version="3.13", no_vendor=True)
    assert install_plugin.cmd_install(args) == 0
    root = tmp_path / "p" / "plug-ins" / "neural_style"
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import nsg_shared.client as c; "
        "assert 'neural_style' not in sys.modules, 'still imports the installed package'; "
        "print(c.Client.__name__)"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-c", code, str(root)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "Client", proc.stderr


def test_failed_download_falls_back_and_says_what_to_rerun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def offline(*_a: Any, **_k: Any) -> list[Path]:
        raise errors.InstallError("pip download failed: no network")

    monkeypatch.setattr(wheels, "download_wheels", offline)
    profile = tmp_path / "gimp"
    cmd = _args(gimp_dir=[str(profile)], python=f"{sys.executable}")
    assert install_plugin.cmd_install(cmd) == 0
    out = capsys.readouterr().out
    assert "could not vendor" in out
    assert f"re-run: neural-style install-plugin --gimp-dir {profile} --python" in out
    assert "has pyzmq and msgpack" in out  # this test's Python has both
    info = json.loads((profile / "plug-ins" / "neural_style" / "INSTALLED.json").read_text())
    tag = f"py{sys.version_info[0]}{sys.version_info[1]}"
    assert info["vendored"] == {tag: False}


def test_uninstall_refuses_foreign_folder(tmp_path: Path) -> None:
    foreign = tmp_path / "plug-ins" / "neural_style"
    foreign.mkdir(parents=True)
    (foreign / "other.py").write_text("")
    assert install_plugin.cmd_uninstall(_args(gimp_dir=[str(tmp_path)])) == 2
    assert foreign.exists()


def test_autodetects_distro_flatpak_and_env_profiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    distro = tmp_path / ".config" / "GIMP" / "3.0"
    flatpak = tmp_path / ".var" / "app" / "org.gimp.GIMP" / "config" / "GIMP" / "3.0"
    custom = tmp_path / "custom"
    for d in (distro, flatpak, custom):
        d.mkdir(parents=True)
    monkeypatch.delenv("GIMP3_DIRECTORY", raising=False)
    assert discovery.candidate_gimp_dirs() == [distro, flatpak]
    monkeypatch.setenv("GIMP3_DIRECTORY", str(custom))
    assert discovery.candidate_gimp_dirs() == [custom, distro, flatpak]


def test_no_profile_found_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("GIMP3_DIRECTORY", raising=False)
    assert install_plugin.cmd_install(_args()) == 2
    assert "--gimp-dir" in capsys.readouterr().err


def test_gimp_dir_may_be_the_plugins_folder(tmp_path: Path) -> None:
    assert discovery.plugins_dir(tmp_path / "plug-ins") == tmp_path / "plug-ins"
    assert discovery.plugins_dir(tmp_path / "3.0") == tmp_path / "3.0" / "plug-ins"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chroot needs root")
def test_profile_inside_a_chroot_uses_the_chroots_python(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "gimp-console-3.0").write_text("")
    interp = root / "usr/lib/x86_64-linux-gnu/gimp/3.0/interpreters/pygimp.interp"
    interp.parent.mkdir(parents=True)
    interp.write_text("python=/usr/bin/python3\npython3=/usr/bin/python3.13\n")
    profile = root / "tmp" / "profile"
    profile.mkdir(parents=True)
    command, how = interpreter.python_command_for(profile, None)
    assert command == ["chroot", str(root), "/usr/bin/python3.13"] and "chroot" in how
    assert interpreter.python_command_for(profile, "my py")[0] == ["my", "py"]


def test_query_python_reads_version_and_platform() -> None:
    target = interpreter.query_python([sys.executable], "test")
    assert target.version == f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert target.tag == f"py{sys.version_info[0]}{sys.version_info[1]}"
    with pytest.raises(errors.InstallError, match="--python"):
        interpreter.query_python(["/nonexistent/python3"])


def test_pip_platform_tags() -> None:
    linux = interpreter.TargetPython("3.13", platform="linux-x86_64", libc=("glibc", "2.41"))
    tags = linux.pip_platforms()
    assert tags[0] == "manylinux_2_41_x86_64"
    assert {"manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"} <= set(tags)
    mac = interpreter.TargetPython("3.12", platform="macosx-11.0-arm64")
    assert "macosx_11_0_arm64" in mac.pip_platforms()
    win = interpreter.TargetPython("3.12", platform="win-amd64")
    assert win.pip_platforms() == ["win_amd64"]


def test_add_commands_wires_both_subcommands() -> None:
    parser = argparse.ArgumentParser(prog="neural-style")
    install_plugin.add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["install-plugin", "--gimp-dir", "a", "--gimp-dir", "b", "--python", "chroot /r python3"]
    )
    assert args.gimp_dir == ["a", "b"] and args.python == "chroot /r python3"
    assert args.func is install_plugin.cmd_install
    assert parser.parse_args(["uninstall-plugin"]).func is install_plugin.cmd_uninstall


# --------------------------------------------------------------------------- re-runs


class FakeItem:
    _next = 1

    def __init__(self, name: str, visible: bool = True, image: Any = None) -> None:
        self.name, self.visible, self.image, self.valid = name, visible, image, True
        self.id = FakeItem._next
        self.tattoo = 100 + FakeItem._next
        FakeItem._next += 1

    def get_id(self) -> int:
        return self.id

    def get_name(self) -> str:
        return self.name

    def get_visible(self) -> bool:
        return self.visible

    def get_tattoo(self) -> int:
        return self.tattoo

    def is_valid(self) -> bool:
        return self.valid

    def get_image(self) -> Any:
        return self.image


class FakeStack(FakeItem):
    def __init__(self, *layers: FakeItem) -> None:
        super().__init__("image")
        self.layers = list(layers)
        for layer in layers:
            layer.image = self

    def get_layers(self) -> list[FakeItem]:
        return self.layers

    def get_layer_by_tattoo(self, tattoo: int) -> FakeItem | None:
        return next((la for la in self.layers if la.tattoo == tattoo), None)

    def get_layer_by_name(self, name: str) -> FakeItem | None:
        return next((la for la in self.layers if la.name == name), None)


def test_rerun_finds_the_remembered_style_then_falls_back(plugin: types.ModuleType) -> None:
    content, starry = FakeItem("chelsea"), FakeItem("starry", visible=False)
    result = FakeItem("chelsea in the style of starry (Neural Style)")
    top = FakeItem("wave")
    image = FakeStack(result, top, starry, content)
    memory = plugin.remembered_style(starry, image)
    # the same layer, even renamed, by its tattoo
    starry.name = "starry (renamed)"
    assert plugin.pick_style_layer(image, content, [image], memory) == (starry, "remembered")
    # its image was closed: a layer of the same name in this image (tattoos differ)
    starry.name = "starry"
    other = FakeStack(FakeItem("starry"), FakeItem("x"))
    got, how = plugin.pick_style_layer(other, other.layers[1], [other], memory)
    assert (got, how) == (other.layers[0], "remembered by name")
    # nothing remembered: the topmost visible layer, never a result nor the content itself
    assert plugin.pick_style_layer(image, content, [image], None) == (top, "topmost visible layer")
    assert plugin.pick_style_layer(image, top, [image], {}) == (content, "topmost visible layer")
    alone = FakeStack(FakeItem("only"))
    assert plugin.pick_style_layer(alone, alone.layers[0], [alone], None) == (None, "")


def test_settings_survive_a_failed_run_and_restore_into_the_config(
    plugin: types.ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NSG_TEST_GIMP_DIR", str(tmp_path))
    content, starry = FakeItem("chelsea"), FakeItem("starry", visible=False)
    image = FakeStack(starry, content)
    chosen = _config(**{"style-layer": starry, "iterations": 33, "preset": "balanced"})

    def fail(*_a: Any) -> None:
        raise plugin.PluginError("The Neural Style daemon is not running")

    monkeypatch.setattr(plugin, "stylize", fail)
    monkeypatch.setattr(plugin.Gimp, "get_images", lambda: [image], raising=False)
    status, _ = plugin.NeuralStyle().run(
        FakeProcedure(), "with-last-vals", image, [content], chosen, None
    )
    assert status == "execution-error"
    saved = json.loads((tmp_path / plugin.SETTINGS_FILE).read_text())
    assert saved["values"]["iterations"] == 33 and saved["values"]["preset"] == "balanced"
    assert saved["style"] == {"image": image.id, "tattoo": starry.tattoo, "name": "starry"}
    # Repeat / Re-Show: GIMP hands in defaults and no layer; the choices come back
    fresh = _config(**{"style-layer": None, "iterations": 300, "preset": "fast"})
    plugin.prepare_rerun(image, [content], fresh)
    assert fresh.values["style-layer"] is starry
    assert (fresh.values["iterations"], fresh.values["preset"]) == (33, "balanced")
    # a painting chosen instead of a layer is remembered as the file
    painting = tmp_path / "wave.png"
    painting.write_bytes(b"png")
    plugin.remember({}, image, _config(**{"style-layer": None, "style-file": str(painting)}))
    again = _config(**{"style-layer": None, "style-file": None})
    plugin.prepare_rerun(image, [content], again)
    assert again.values["style-file"].get_path() == str(painting)


def test_unreadable_settings_are_ignored(plugin: types.ModuleType, tmp_path: Path) -> None:
    bad = tmp_path / "s.json"
    bad.write_text("{not json")
    assert plugin.load_settings(str(bad)) == {}
    assert plugin.load_settings(str(tmp_path / "missing.json")) == {}
    plugin.save_settings(str(bad), {"values": {"iterations": 5}})
    assert plugin.load_settings(str(bad)) == {"values": {"iterations": 5}}


def test_result_name_says_content_and_style(plugin: types.ModuleType) -> None:
    assert plugin.result_name("chelsea", ["starry", "wave"]) == (
        "chelsea in the style of starry + wave (Neural Style)"
    )


# --------------------------------------------------------------------------- quiet CLI


@pytest.mark.slow
def test_cli_silences_tensorflow_start_up_unless_verbose(tmp_path: Path) -> None:
    """What `neural-style stylize` prints before its progress bar: nothing from TensorFlow."""
    code = (
        "import sys; from neural_style.daemon.cli import entry_point;"
        "entry_point._quiet_tensorflow(sys.argv[1:]);"
        "import tensorflow as tf; tf.Variable(tf.ones((1, 4, 4, 3))); print('ready')"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "ABSL_"))}
    env.pop("NEURAL_STYLE_VERBOSE", None)
    runs = {}
    for flags in ((), ("--verbose",)):
        proc = subprocess.run(
            [sys.executable, "-c", code, "stylize", *flags], capture_output=True, text=True,
            env=env, timeout=300, cwd=tmp_path,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        runs[flags] = proc.stdout + proc.stderr
    # The absl notice and "oneDNN custom operations are on" come before absl reads its
    # level; daemon/quiet.py filters them out of the first import of tensorflow.
    assert [line for line in runs[()].splitlines() if line.strip()] == ["ready"], runs[()]
    assert (
        "absl::InitializeLog" in runs[("--verbose",)] or "cpu_feature_guard" in runs[("--verbose",)]
    )  # fmt: skip  (the check above had something to remove)


# --------------------------------------------------------------------------- GIMP's own Python


def _fake_python(path: Path, version: str) -> Path:
    """An executable that answers install-plugin's query like Python `version` would."""
    info = {"version": version, "implementation": "cpython", "platform": "linux-x86_64",
            "machine": "x86_64", "libc": ["glibc", "2.41"], "executable": str(path)}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho '{json.dumps(info)}'\n")
    path.chmod(0o755)
    return path


def test_install_plugin_uses_the_python_named_in_gimps_pygimp_interp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = tmp_path / "opt" / "gimp"
    (prefix / "bin").mkdir(parents=True)
    gimp = prefix / "bin" / "gimp-3.0"
    gimp.write_text("#!/bin/sh\n")
    gimp.chmod(0o755)
    py313 = _fake_python(prefix / "bin" / "python3.13", "3.13")
    interp = prefix / "lib" / "gimp" / "3.0" / "interpreters" / "pygimp.interp"
    interp.parent.mkdir(parents=True)
    interp.write_text(
        f"python={py313}\npython3={py313}\n/usr/bin/python={py313}\n:Python:E::py::python3:\n"
    )
    # a venv's python3.11 first on PATH: what the old fallback wrongly took
    venv_py = _fake_python(tmp_path / "venv" / "bin" / "python3", "3.11")
    monkeypatch.setenv("PATH", f"{venv_py.parent}{os.pathsep}{prefix / 'bin'}")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    profile = tmp_path / "profile"
    profile.mkdir()
    command, how = interpreter.python_command_for(profile, None)
    assert command == [str(py313)] and str(interp) in how
    target = interpreter.query_python(command, how)
    assert (target.version, target.tag) == ("3.13", "py313")


def test_install_plugin_never_takes_the_venvs_python_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv_bin = Path(sys.prefix) / "bin"
    system = _fake_python(tmp_path / "usr" / "bin" / "python3", "3.13")
    monkeypatch.setattr(discovery, "KNOWN_PREFIXES", ())
    monkeypatch.setenv("PATH", f"{venv_bin}{os.pathsep}{system.parent}")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    profile = tmp_path / "profile"
    profile.mkdir()
    command, how = interpreter.python_command_for(profile, None)
    assert command == [str(system)] and "no pygimp.interp" in how
    monkeypatch.setenv("PATH", str(venv_bin))  # only the venv's Python: refuse, saying why
    with pytest.raises(errors.InstallError, match=r"not GIMP.s.*--python CMD"):
        interpreter.python_command_for(profile, None)
    flatpak = tmp_path / "home" / ".var" / "app" / "org.gimp.GIMP" / "config" / "GIMP" / "3.0"
    flatpak.mkdir(parents=True)
    with pytest.raises(errors.InstallError, match="'flatpak' command is not on PATH"):
        interpreter.python_command_for(flatpak, None)


# --------------------------------------------------------------------------- help, presets


def test_install_ships_help_page_presets_and_the_serve_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = interpreter.TargetPython("3.13", command=[])
    report = install.install_into(tmp_path / "gimp", target, vendor=False, log=lambda m: 0)
    pdir = report.plugin_dir
    xml = (pdir / "help" / "en" / "gimp-help.xml").read_text()
    assert 'help-id="python-fu-neural-style" help-page="plugin.html"' in xml
    page = (pdir / "help" / "en" / "plugin.html").read_text()
    assert "<h2>" in page and "Neural Style" in page and "<table" in page
    for pic in re.findall(r'src="([^"]+\.png)"', page):
        assert (pdir / "help" / "en" / pic).is_file(), pic  # the screenshots travel along
    assert (pdir / "nsg_shared" / "schema.py").is_file()  # what the plug-in reads presets from
    assert json.loads((pdir / "presets.json").read_text()) == PRESETS  # a record, derived
    serve = json.loads((pdir / "INSTALLED.json").read_text())["serve_command"]
    assert serve[-1] == "serve" and Path(serve[0]).exists()
    # the installed plug-in reads the bundled schema's presets, with its bundled helpers
    for name in [m for m in sys.modules if m == "nsg_shared" or m.startswith("nsg_shared.")]:
        monkeypatch.delitem(sys.modules, name)
    module = load_plugin(pdir / "neural_style.py", monkeypatch)
    bundle = sys.modules["nsg_bundle"]
    for name in HELPER_MODULES:  # every bundled module is installed and imported from there
        assert Path(sys.modules[name].__file__).parent == pdir, name
    assert Path(bundle.schema.__file__) == pdir / "nsg_shared" / "schema.py"
    assert module.PRESET_VALUES == PRESETS
    module.NeuralStyle().do_query_procedures()
    assert (module.HELP_DOMAIN, str(pdir / "help")) in type(module.NeuralStyle()).help_domains


def test_markdown_to_html_covers_what_the_docs_use() -> None:
    page = help_pages.markdown_to_html(
        "## T\n\nA `code` **b** [l](x.md)\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "1. one\n   more\n2. two\n\n```\n<x>\n```\n![shot](plugin-dialog.png)\n"
    )
    for part in ("<h2>T</h2>", "<code>code</code>", "<b>b</b>", '<a href="x.md">l</a>',
                 "<td>1</td>", "<li>one more</li>", "<pre>&lt;x&gt;</pre>",
                 '<img alt="shot" src="plugin-dialog.png">'):  # fmt: skip
        assert part in page, part


# --------------------------------------------------------------------------- daemon start, size


def test_area_over_the_daemons_max_pixels_is_refused_before_reading(
    plugin: types.ModuleType,
) -> None:
    hello = {"limits": {"max_pixels": 1000}}
    plugin.check_size(40, 25, hello)  # exactly the limit
    with pytest.raises(plugin.PluginError, match=r"41x25 \(1,025 pixels\).*at most 1,000 pixels"):
        plugin.check_size(41, 25, hello)
    plugin.check_size(10**5, 10**5, {})  # an older daemon: no limit told, none applied
    with pytest.raises(plugin.PluginError, match=r"\(64\.0 megapixels\).*at most 16\.0 mega"):
        plugin.check_size(8000, 8000, {"limits": {"max_pixels": 16_000_000}})


class _FakeClientModule:
    class DaemonUnavailable(Exception):
        pass

    class DaemonDied(DaemonUnavailable):
        pass

    def __init__(self, down_for: int) -> None:
        self.down_for = down_for
        self.made: list[Any] = []
        mod = self

        class Client:
            def __init__(self, endpoint: Any, timeout: float) -> None:
                mod.made.append((endpoint, timeout))
                if len(mod.made) <= mod.down_for:
                    raise mod.DaemonUnavailable("not running")

            def __enter__(self) -> Any:
                return self

            def __exit__(self, *a: Any) -> None:
                pass

            def ping(self) -> float:
                return 0.1

            def hello(self) -> dict[str, Any]:
                return {"limits": {"max_pixels": 10}}

            def close(self) -> None:
                pass

        self.Client = Client


def _start_ui(answer: int) -> types.SimpleNamespace:
    class Dialog(FakeDialog):
        def run(self) -> int:
            return answer

    gtk = types.SimpleNamespace(
        ResponseType=_enum(CANCEL=-6, OK=-5), Label=_Recorder, ProgressBar=_Recorder
    )
    glib = sys.modules["gi.repository"].GLib
    return types.SimpleNamespace(GimpUi=types.SimpleNamespace(Dialog=Dialog), Gtk=gtk, GLib=glib)


def test_no_daemon_offers_to_start_it_and_continues_the_job(
    plugin: types.ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    started: list[Any] = []
    proc = types.SimpleNamespace(poll=lambda: None)
    monkeypatch.setattr(plugin, "start_daemon", lambda cmd, log: started.append(cmd) or proc)
    mod = _FakeClientModule(down_for=3)  # not running, then two probes while it loads
    _client, hello = plugin.connect(mod, "tcp://127.0.0.1:6000", 5.0, True, _start_ui(-5))
    assert hello == {"limits": {"max_pixels": 10}}
    assert started == [["neural-style", "serve", "--bind", "tcp://127.0.0.1:6000"]]
    assert len(FakeDialog.instances) == 2  # the offer, then "Starting… loading the model"
    assert len(mod.made) == 5  # failed, 2 failed probes, 1 good probe, the job's client


def test_declined_or_batch_start_offer_keeps_the_not_running_error(
    plugin: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plugin, "start_daemon", lambda *a: pytest.fail("started anyway"))
    with pytest.raises(_FakeClientModule.DaemonUnavailable):
        plugin.connect(_FakeClientModule(1), "", 5.0, True, _start_ui(-6))
    with pytest.raises(_FakeClientModule.DaemonUnavailable):
        plugin.connect(_FakeClientModule(1), "", 5.0, False, _start_ui(-5))


def test_daemon_exiting_while_starting_names_its_log(
    plugin: types.ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    proc = types.SimpleNamespace(poll=lambda: 1)
    monkeypatch.setattr(plugin, "start_daemon", lambda cmd, log: proc)
    with pytest.raises(plugin.PluginError, match=r"stopped while starting.*neural-style-daemon"):
        plugin.connect(_FakeClientModule(99), "", 5.0, True, _start_ui(-5))


def test_dialog_says_whether_the_service_runs(plugin: Any) -> None:
    running = plugin.service_status(_FakeClientModule(down_for=0), "")
    assert running == "Neural Style service: running"
    down = plugin.service_status(_FakeClientModule(down_for=1), "tcp://127.0.0.1:9")
    assert down == "Neural Style service: not running; OK offers to start it"


def test_refine_finds_the_original_content_layer_of_a_result(plugin: types.ModuleType) -> None:
    content, starry = FakeItem("chelsea"), FakeItem("starry")
    result = FakeItem("chelsea in the style of starry (Neural Style)")
    stopped = FakeItem("chelsea in the style of starry (stopped at step 9) (Neural Style)")
    image = FakeStack(stopped, result, starry, content)
    assert plugin.refine_source_name(result.get_name()) == "chelsea"
    assert plugin.refine_source_name(stopped.get_name()) == "chelsea"
    assert plugin.refine_source_name(result.get_name() + " #1") == "chelsea"  # GIMP's rename
    assert plugin.refine_source_name("chelsea") is None  # not a result: no refine
    assert plugin.refinable(result) and not plugin.refinable(content)
    assert plugin.find_refine_source(image.get_layers(), result) is content
    content.name = "renamed"  # not findable: the result itself is the content
    assert plugin.find_refine_source(image.get_layers(), result) is None
    assert any(a[1] == "refine" and a[0] == "boolean" for a in plugin.ARGUMENTS)


def test_dialog_estimate_uses_the_daemons_measured_step_time(plugin: Any) -> None:
    assert plugin.daemon_speed({"step_s_per_mpx": 0.5}) == 0.5
    assert plugin.daemon_speed({"device": "CPU"}) is None  # nothing measured there yet
    assert plugin.daemon_speed(None) is None
    seen: list[dict[str, Any]] = []
    plugin.service_status(_FakeClientModule(down_for=0), "", on_hello=seen.append)
    assert len(seen) == 1
    slow = plugin.estimate_text("fast", 512, 0, 10.0)
    quick = plugin.estimate_text("fast", 512, 0, plugin.daemon_speed({"step_s_per_mpx": 0.1}))
    assert slow != quick and "on this computer" in quick


def test_error_texts_come_from_the_shared_table(plugin: Any) -> None:
    from neural_style.shared import errors

    for code, template in errors.USER_TEXTS.items():
        text = plugin.describe_error(real_client.error_for(code, "detail"), "")
        assert text.startswith(template.split("{")[0]) and text.endswith("Details: detail")
    died = plugin.describe_error(real_client.DaemonDied("silent"), "", real_client)
    assert died.startswith(errors.DAEMON_DIED_TEXT.split("{")[0])
    assert "'Max size'" in plugin.describe_error(real_client.TooLarge("big"), "")


def test_job_flow_checks_the_size_before_reading_and_reports_batch_progress(
    plugin: Any,
) -> None:
    """nsg_windows.run_job: hello, the size check, only then the pixels; submit; the batch
    wait drives GIMP's progress bar; the client is closed; daemon errors become messages."""
    done = real_client.Done(ImageBuf(2, 1, 4, "u8", bytes(8)), {"step_s_per_mpx": 1.0})
    order: list[str] = []

    class Client:
        closed = False

        def __init__(self, endpoint: Any, timeout: float) -> None:
            order.append("connect")

        def hello(self) -> dict[str, Any]:
            return {"limits": {"max_pixels": 2}}

        def submit(self, content: Any, styles: Any, params: Any, **kw: Any) -> Any:
            order.append("submit")
            self.sent = (content, styles, params, kw)
            return ScriptedJob([[_progress(1, 2)], [_progress(2, 2), done]])

        def close(self) -> None:
            Client.closed = True

    mod = types.SimpleNamespace(Client=Client, ImageBuf=ImageBuf,
                                NeuralStyleError=real_client.NeuralStyleError)  # fmt: skip
    area = types.SimpleNamespace(w=2, h=1, channels=4, dtype="u8", data=bytes(8), mask=None)

    def read_inputs() -> Any:
        order.append("read")
        return [(1, 1, b"abc")], None

    job = {"endpoint": "", "iterations": 2, "params": {"iterations": 2}}
    bar: list[tuple[float, str]] = []
    got = plugin.run_job(mod, job, area, read_inputs, False, progress=lambda *a: bar.append(a))
    assert got is done and order == ["connect", "read", "submit"] and Client.closed
    assert bar[-1][0] == 1.0 and bar[-1][1].startswith("Neural Style: step 2 / 2.")
    area.w = 3  # over the daemon's max_pixels: refused before a single pixel is read
    order.clear()
    with pytest.raises(plugin.PluginError, match="at most 2 pixels"):
        plugin.run_job(mod, job, area, read_inputs, False)
    assert order == ["connect"]
    area.w = 2

    def broken() -> Any:
        raise real_client.TooLarge("big")

    with pytest.raises(plugin.PluginError, match="'Max size'"):
        plugin.run_job(mod, job, area, broken, False)


def test_a_flatpak_gimp_starts_the_daemon_on_the_host_with_a_shared_connection_file(
    plugin: Any, tmp_path: Path
) -> None:
    serve = ["/home/u/venv/bin/neural-style", "serve"]
    assert plugin.host_command(serve, {}, flatpak=False) == serve  # a plain GIMP: as is
    assert plugin.in_flatpak({"FLATPAK_ID": "org.gimp.GIMP"}, info=str(tmp_path / "none"))
    assert not plugin.in_flatpak({}, info=str(tmp_path / "none"))
    (tmp_path / ".flatpak-info").write_text("[Application]\nname=org.gimp.GIMP\n")
    assert plugin.in_flatpak({}, info=str(tmp_path / ".flatpak-info"))
    # no file named: the app's own config folder, the same path on both sides of the sandbox
    env = {"XDG_CONFIG_HOME": "/home/u/.var/app/org.gimp.GIMP/config"}
    conn = "/home/u/.var/app/org.gimp.GIMP/config/neural-style/daemon.json"
    assert plugin.host_command(serve, env, flatpak=True) == [
        "flatpak-spawn", "--host", f"--env=NEURAL_STYLE_CONNECTION_FILE={conn}", *serve,
    ]  # fmt: skip
    assert env["NEURAL_STYLE_CONNECTION_FILE"] == conn  # the plug-in's own clients read it
    env = {"NEURAL_STYLE_CONNECTION_FILE": "/home/u/.config/neural-style/daemon.json"}
    assert plugin.host_command(serve, env, flatpak=True)[2].endswith(
        "/.config/neural-style/daemon.json"
    )


def test_a_start_command_that_cannot_run_says_what_to_run(plugin: Any, tmp_path: Path) -> None:
    with pytest.raises(plugin.PluginError, match=r"Start it yourself with: /nonexistent/ns serve"):
        plugin.start_daemon(["/nonexistent/ns", "serve"], str(tmp_path / "daemon.log"))


def test_a_flatpak_start_that_fails_names_the_permission_it_needs(
    plugin: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FLATPAK_ID", "org.gimp.GIMP")
    monkeypatch.setenv("NEURAL_STYLE_CONNECTION_FILE", str(tmp_path / "daemon.json"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    started: list[Any] = []
    proc = types.SimpleNamespace(poll=lambda: 1)  # flatpak-spawn refused: exits at once
    monkeypatch.setattr(plugin, "start_daemon", lambda cmd, log: started.append(cmd) or proc)
    with pytest.raises(plugin.PluginError, match=r"--talk-name=org\.freedesktop\.Flatpak"):
        plugin.connect(_FakeClientModule(99), "", 5.0, True, _start_ui(-5))
    label = FakeDialog.instances[0].box.last("pack_start")[0]  # the offer's text
    assert "flatpak-spawn --host" in label.props["label"]
    assert started == [["neural-style", "serve"]]
