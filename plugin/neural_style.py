#!/usr/bin/env python3
"""Neural Style for GIMP 3: Filters > Artistic > Neural Style...

A thin client of the Neural Style daemon (``neural-style serve``): it reads the active layer
(or the selection's bounding box of it) and a style layer or painting, sends them over ZeroMQ,
shows the daemon's previews in a progress window and on the canvas, and adds the result as a
new layer on top. This file holds the registration, ``run``, the dialog and the GIMP reads;
beside it lie the ``nsg_*`` modules, one idea each (``nsg_windows``: the windows and the job
flow; ``nsg_layers``: the layers it adds; the rest pure), ``nsg_shared`` (protocol + client)
and pyzmq/msgpack in vendor/py3XX/, all put there by ``neural-style install-plugin``. No
numpy. Environment knobs and the arguments: docs/plugin.md (shipped as help/en/plugin.html).
"""

# ruff: noqa: E402
from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

PLUGIN_DIR = os.path.dirname(os.path.abspath(__file__))


def vendor_dir(base: str = PLUGIN_DIR, version: tuple[int, ...] = sys.version_info[:2]) -> str:
    """vendor/py3XX beside the plug-in: wheels unpacked for exactly this Python version."""
    return os.path.join(base, "vendor", f"py{version[0]}{version[1]}")


def setup_import_path(base: str = PLUGIN_DIR) -> str | None:
    """Put this Python's vendored wheels and the bundled package first on sys.path.

    Returns the vendor folder used, or None (then system pyzmq/msgpack are the fallback).
    """
    if base not in sys.path:
        sys.path.insert(0, base)
    vdir = vendor_dir(base)
    if os.path.isdir(vdir):
        if vdir in sys.path:
            sys.path.remove(vdir)
        sys.path.insert(0, vdir)
        return vdir
    return None


setup_import_path()  # the bundled helpers, client and vendored pyzmq/msgpack come first

# fmt: off
# isort: off
# static imports once the path is set (E402 off): the bundled modules, then GIMP's
from nsg_bundle import HELP_DOMAIN, PROC_NAME, load_client
from nsg_errors import PluginError, StoppedAndKept, UserCancelled
from nsg_estimates import daemon_speed, estimate_text, measured_speed
from nsg_log import log_event
from nsg_messages import check_size
from nsg_params import MAX_MAX_SIZE, job_settings
from nsg_pixels import fit_within, is_opaque_mask, pixel_format
from nsg_procedure import ADVANCED_FIELDS, ARGUMENTS, DIALOG_FIELDS, PROC_BLURB, PROC_HELP
from nsg_progress import PREVIEW_SIDE
from nsg_results import find_refine_source, refinable, result_name
from nsg_settings import SAVED_KEYS, SETTINGS_FILE, load_settings, save_settings
from nsg_styles import StyleFile, pick_style_layer, remembered_style, style_file_of
from nsg_layers import CanvasPreview, insert_kept, insert_result
from nsg_windows import connect, gtk_ui, has_display, run_job, service_status
import nsg_frames
import nsg_frames_gimp
import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio, GLib, GObject
# isort: on
# fmt: on


def _precision_nick(image: Any) -> str:
    precision = image.get_precision()
    return str(getattr(precision, "value_nick", precision)).lower().replace("gimp_precision_", "")


def _read(
    drawable: Any, x: int, y: int, w: int, h: int, fmt: str, scale: float = 1.0,
    abyss: Any = None,
) -> bytes:  # fmt: skip
    buf = drawable.get_buffer()
    policy = Gegl.AbyssPolicy.CLAMP if abyss is None else abyss
    data = buf.get(Gegl.Rectangle.new(x, y, w, h), scale, fmt, policy)
    return bytes(data)


class ContentArea:
    """What was read from the content layer, and where the result must go."""

    def __init__(self, image: Any, drawable: Any) -> None:
        if not isinstance(drawable, Gimp.Layer) or isinstance(drawable, Gimp.LayerMask):
            raise PluginError("Select the layer to stylize (not a channel or a mask).")
        self.gray = bool(drawable.is_gray())
        self.has_selection = not Gimp.Selection.is_empty(image)
        ok, x, y, w, h = drawable.mask_intersect()
        if not ok or w <= 0 or h <= 0:
            raise PluginError("The selection does not overlap the active layer.")
        self.x, self.y, self.w, self.h = x, y, w, h
        _, ox, oy = drawable.get_offsets()
        self.offsets = (ox + x, oy + y)
        self.fmt, self.channels, self.dtype, self.bps = pixel_format(
            self.gray, _precision_nick(image)
        )
        self.data = b""
        self.mask: bytes | None = None

    def read(self, image: Any, drawable: Any) -> None:
        """Read the pixels (and selection mask), once the size has been checked."""
        self.data = _read(drawable, self.x, self.y, self.w, self.h, self.fmt)
        if self.has_selection:
            self.mask = read_selection_mask(image, *self.offsets, self.w, self.h)

    def refine_from(self, source: Any) -> bytes:
        """Refine: the pixels read (a result layer's) become the job's start, and the content
        is the original layer's over the same area when it covers it (else the result).
        Returns the start's pixels."""
        start = self.data
        if source is not None:
            _, sx, sy = source.get_offsets()
            x, y = self.offsets[0] - sx, self.offsets[1] - sy
            fits = x + self.w <= source.get_width() and y + self.h <= source.get_height()
            if x >= 0 and y >= 0 and fits:
                self.data = _read(source, x, y, self.w, self.h, self.fmt)
        return start


def read_selection_mask(image: Any, x: int, y: int, w: int, h: int) -> bytes | None:
    """The selection over an image-space rectangle as 8-bit gray ("Y u8": GIMP's linear
    coverage, the same values a layer mask from the selection gets), or None when it is fully
    selected there. Feathered and antialiased edges keep their intermediate values."""
    mask = _read(image.get_selection(), x, y, w, h, "Y u8", abyss=Gegl.AbyssPolicy.NONE)
    return None if is_opaque_mask(mask) else mask


def read_style(layer: Any, max_size: int, style_scale: float = 1.0) -> tuple[int, int, bytes]:
    """Style layer as RGB u8, scaled down by GEGL to at most max(2, style-scale) x max-size
    on the long side (the daemon resizes it to style-scale x its working size)."""
    w, h = layer.get_width(), layer.get_height()
    factor = max(2.0, float(style_scale))
    cap = min(max(round(factor * int(max_size)), PREVIEW_SIDE), 2 * MAX_MAX_SIZE)
    sw, sh = fit_within(w, h, cap)
    scale = sw / w if (sw, sh) != (w, h) else 1.0
    return sw, sh, _read(layer, 0, 0, sw, sh, "R'G'B' u8", scale)


def read_style_file(path: str, max_size: int, style_scale: float) -> tuple[int, int, bytes]:
    """A painting from a file (any format GIMP opens), read like a style layer."""
    if not os.path.isfile(path):
        raise PluginError(f"The style painting {path} does not exist (moved or deleted?).")
    try:
        img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path))
    except Exception as exc:
        raise PluginError(f"GIMP could not open the style painting {path}: {exc}") from None
    if img is None:
        raise PluginError(f"GIMP could not open the style painting {path}.")
    try:
        return read_style(img.flatten(), max_size, style_scale)
    finally:
        img.delete()


LAST_SPEED: float | None = None  # the last job's seconds per step and megapixel


def stylize(image: Any, drawables: list[Any], config: Any, interactive: bool) -> Any:
    """The whole filter: read, submit, wait, insert. Returns the new layer."""
    if len(drawables) != 1:
        raise PluginError("Select exactly one layer to stylize.")
    drawable = drawables[0]
    job = job_settings(config)
    log_event("start", params=job["params"], endpoint=job["endpoint"], interactive=interactive,
              styles=len(job["styles"]))  # fmt: skip
    area = ContentArea(image, drawable)  # geometry only: nothing read yet
    refine = refinable(drawable) and bool(config.get_property("refine"))

    def read_inputs() -> tuple[list[tuple[int, int, bytes]], bytes | None]:
        """The pixels, once the daemon has taken the area's size: (styles, refine's start)."""
        area.read(image, drawable)
        start = None
        if refine:  # content: the original layer if found; start: the result
            source = find_refine_source(list(image.get_layers()), drawable)
            start = area.refine_from(source)
            log_event("refine", result=drawable.get_name(),
                      source=source.get_name() if source is not None else None)  # fmt: skip
        size, scale = job["max_size"], job["style_scale"]
        return [read_style_file(s.path, size, scale) if isinstance(s, StyleFile)
                else read_style(s, size, scale) for s in job["styles"]], start  # fmt: skip

    canvas = CanvasPreview(image, area) if interactive else None
    if canvas is None:
        Gimp.progress_init("Neural Style: connecting to the daemon…")
    try:
        done = run_job(load_client(setup_import_path()), job, area, read_inputs, interactive,
                       canvas.show if canvas else None, _progress)  # fmt: skip
    finally:
        if canvas is not None:
            canvas.remove()  # on success, cancel and error alike
        else:
            Gimp.progress_end()
    global LAST_SPEED
    LAST_SPEED = measured_speed(getattr(done, "stats", None))
    kept = done if isinstance(done, StoppedAndKept) else None
    name = result_name(drawable.get_name(), [s.get_name() for s in job["styles"]], refine,
                       kept.step if kept else None)  # fmt: skip
    if kept is not None:
        layer = insert_kept(image, area, name, kept.preview)
        log_event("kept", step=kept.step, total=kept.total)
    else:
        layer = insert_result(image, drawable, area, name, done)
    Gimp.displays_flush()
    return layer


def _progress(fraction: float, text: str) -> None:
    """GIMP's progress bar (batch runs: the status bar, or a script's caller)."""
    Gimp.progress_update(fraction)
    Gimp.progress_set_text(text)


def settings_path() -> str:
    return os.path.join(Gimp.directory(), SETTINGS_FILE)


def prepare_rerun(image: Any, drawables: list[Any], config: Any) -> dict[str, Any]:
    """Before a dialog/Re-Show/Repeat: restore the remembered settings into the config and
    choose the style layer GIMP forgot (see pick_style_layer); returns the settings."""
    settings = load_settings(settings_path())
    for key, value in (settings.get("values") or {}).items():
        if key in SAVED_KEYS:
            with contextlib.suppress(Exception):  # a value from an older version
                config.set_property(key, value)
    if config.get_property("style-layer") is None and not style_file_of(config):
        memory = settings.get("style") or {}
        if memory.get("file"):  # even when missing now: the dialog shows what was chosen
            config.set_property("style-file", Gio.File.new_for_path(memory["file"]))
            log_event("style_resolved", how="remembered painting", file=memory["file"])
            return settings
        drawable = drawables[0] if len(drawables) == 1 else None
        layer, how = pick_style_layer(image, drawable, list(Gimp.get_images()), memory)
        if layer is not None:
            config.set_property("style-layer", layer)
        log_event("style_resolved", how=how, layer=layer.get_name() if layer else None)
    return settings


def remember(settings: dict[str, Any], image: Any, config: Any) -> None:
    """Save the dialog's values and the style choice now, before the job can fail."""
    settings["values"] = {key: config.get_property(key) for key in SAVED_KEYS}
    layer = config.get_property("style-layer")
    if layer is not None:
        settings["style"] = remembered_style(layer, layer.get_image())
    elif style_file_of(config):
        settings["style"] = {"file": style_file_of(config)}
    save_settings(settings_path(), settings)


def show_dialog(
    procedure: Any, config: Any, speed: float | None = None, refine_ok: bool = False
) -> bool:
    """The settings dialog (GimpUi.ProcedureDialog: values are remembered by GIMP).

    The expected time follows the preset; Iterations is greyed out unless the preset is
    "custom", the colour mode unless Preserve colours is on, the blend without a second style.
    """
    dialog = gtk_ui().GimpUi.ProcedureDialog.new(procedure, config, "Neural Style")

    measured = {"speed": speed}  # this computer's last job, then the daemon's own measure

    def estimate() -> str:
        return estimate_text(str(config.get_property("preset")),
                             int(config.get_property("max-size")),
                             int(config.get_property("iterations")),
                             measured["speed"])  # fmt: skip

    label = dialog.get_label("estimate", estimate(), False, False)
    service = dialog.get_label("service", "Neural Style service: checking…", False, False)
    dialog.get_label("advanced-title", "Advanced", False, False)
    dialog.fill_box("advanced-box", list(ADVANCED_FIELDS))
    dialog.fill_expander("advanced", "advanced-title", False, "advanced-box")
    dialog.fill(list(DIALOG_FIELDS))
    custom = Gimp.ValueArray.new(1)
    custom.append(GObject.Value(GObject.TYPE_STRING, "custom"))
    dialog.set_sensitive_if_in("iterations", None, "preset", custom, True)
    # set_sensitive binds to the property only when given the config (None: a fixed value)
    dialog.set_sensitive("color-mode", True, config, "preserve-color", False)
    dialog.set_sensitive("refine", refine_ok, None, None, False)  # only on a result layer
    blend = dialog.get_widget("style-blend", GObject.TYPE_NONE)

    def refresh(*_args: Any) -> None:
        with contextlib.suppress(Exception):
            label.set_text(estimate())
        if blend is not None:
            blend.set_sensitive(config.get_property("style-layer-2") is not None)

    for prop in ("preset", "max-size", "iterations", "style-layer-2"):
        config.connect(f"notify::{prop}", refresh)
    refresh()

    def on_hello(hello: dict[str, Any]) -> None:
        if daemon_speed(hello):
            measured["speed"] = daemon_speed(hello)
            refresh()

    def check_service() -> bool:  # once the dialog shows: a missing daemon costs 0.5 s
        try:
            endpoint = (config.get_property("endpoint") or "").strip()
            text = service_status(load_client(), endpoint, on_hello=on_hello)
        except Exception as exc:  # the client itself is missing: run() will say how to fix
            text = f"Neural Style service: cannot check ({exc})"
        with contextlib.suppress(Exception):
            service.set_text(text)
        log_event("service_status", text=text)
        return False

    GLib.timeout_add(100, check_service)
    ok = dialog.run()
    dialog.destroy()
    return bool(ok)


def _choice(values: list[tuple[str, str, str]]) -> Any:
    choice = Gimp.Choice.new()
    for ident, (nick, label, help_text) in enumerate(values):
        choice.add(nick, ident, label, help_text)
    return choice


class NeuralStyle(Gimp.PlugIn):
    """Registers python-fu-neural-style."""

    def do_query_procedures(self) -> list[str]:
        # the dialog's Help button opens help/en/plugin.html (docs/plugin.md, installed
        # with the plug-in) instead of GIMP's "user manual is not installed"
        help_dir = os.path.join(PLUGIN_DIR, "help")
        if os.path.isdir(help_dir):
            self.set_help_domain(HELP_DOMAIN, Gio.File.new_for_path(help_dir))
        return [PROC_NAME, nsg_frames.FRAMES_PROC_NAME]

    def do_set_i18n(self, _name: str) -> bool:
        return False

    def do_create_procedure(self, name: str) -> Any:
        if name == nsg_frames.FRAMES_PROC_NAME:
            return _frames_procedure(self, name)
        proc = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run, None)
        proc.set_image_types("RGB*, GRAY*")
        proc.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        proc.set_menu_label("Neural _Style…")
        proc.add_menu_path("<Image>/Filters/Artistic")
        proc.set_documentation(PROC_BLURB, PROC_HELP, name)
        proc.set_attribution("Neural Style for GIMP contributors", "MIT", "2025")
        flags = GObject.ParamFlags.READWRITE
        _add_arguments(proc, ARGUMENTS)
        proc.add_layer_return_value("new-layer", "New layer", "The stylized layer", False, flags)
        return proc

    def run(self, procedure, run_mode, image, drawables, config, _data):
        interactive = run_mode == Gimp.RunMode.INTERACTIVE
        rerun = run_mode != Gimp.RunMode.NONINTERACTIVE  # dialog, Re-Show, Repeat

        def work() -> Any:
            settings = prepare_rerun(image, list(drawables), config) if rerun else None
            speed = (settings or {}).get("speed")
            refine_ok = len(drawables) == 1 and refinable(drawables[0])
            if interactive and not show_dialog(procedure, config, speed, refine_ok):
                return None
            if settings is not None:
                remember(settings, image, config)  # whatever the outcome of the job
            layer = stylize(image, list(drawables), config, rerun and has_display())
            if settings is not None and LAST_SPEED:
                settings["speed"] = round(LAST_SPEED, 4)  # for the dialog's expected times
                save_settings(settings_path(), settings)
            return layer

        return _returning_layer(procedure, work)


def _returning_layer(procedure: Any, work: Callable[[], Any]) -> Any:
    """A procedure's outcome as its return values: ``work()`` gives the new layer (None:
    the user closed the dialog), UserCancelled is CANCEL, an error is shown with its text
    (a crash with the traceback to report)."""
    try:
        layer = work()
    except UserCancelled:
        log_event("cancelled")
        layer = None
    except PluginError as exc:
        log_event("failed", message=str(exc))
        return _failed(procedure, str(exc))
    except Exception as exc:
        trace = traceback.format_exc()
        log_event("crashed", traceback=trace)
        return _failed(procedure, f"Neural Style failed unexpectedly: {exc!r}. Please "
                       f"report this with the traceback:\n{trace}")  # fmt: skip
    if layer is None:
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    retval = procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())
    retval.remove(1)
    retval.insert(1, GObject.Value(Gimp.Layer, layer))
    return retval


def _add_arguments(proc: Any, arguments: list[tuple[Any, ...]]) -> None:
    flags = GObject.ParamFlags.READWRITE
    for kind, arg, label, blurb, *rest in arguments:  # in order: positional callers
        if kind == "choice":
            rest = [_choice(rest[0]), rest[1]]
        elif kind == "file":
            rest = [Gimp.FileChooserAction.OPEN, *rest]
        getattr(proc, f"add_{kind}_argument")(arg, label, blurb, *rest, flags)


def _frames_procedure(plugin: Any, name: str) -> Any:
    """Filters > Animation > Neural Style (all frames)…: nsg_frames does the work."""
    proc = Gimp.ImageProcedure.new(plugin, name, Gimp.PDBProcType.PLUGIN, _run_frames, None)
    proc.set_image_types("RGB*, GRAY*")
    proc.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.ALWAYS)
    proc.set_menu_label(nsg_frames.FRAMES_MENU_LABEL)
    proc.add_menu_path(nsg_frames.FRAMES_MENU_PATH)
    proc.set_documentation(nsg_frames.FRAMES_BLURB, nsg_frames.FRAMES_HELP, name)
    proc.set_attribution("Neural Style for GIMP contributors", "MIT", "2025")
    _add_arguments(proc, nsg_frames.FRAMES_ARGUMENTS)
    proc.add_layer_return_value("new-group", "New layer group", "The stylized frames", False,
                                GObject.ParamFlags.READWRITE)  # fmt: skip
    return proc


def _run_frames(
    procedure: Any, run_mode: Any, image: Any, _drawables: Any, config: Any, _data: Any
) -> Any:
    interactive = run_mode == Gimp.RunMode.INTERACTIVE

    def work() -> Any:
        if interactive:
            dialog = gtk_ui().GimpUi.ProcedureDialog.new(procedure, config,
                                                         nsg_frames.FRAMES_TITLE)  # fmt: skip
            dialog.fill(list(nsg_frames.FRAMES_DIALOG_FIELDS))
            ok = dialog.run()
            dialog.destroy()
            if not ok:
                return None
        return frames(image, config, interactive and has_display())

    return _returning_layer(procedure, work)


def frames(image: Any, config: Any, interactive: bool) -> Any:
    """All frames (nsg_frames.stylize_frames with this file's GIMP readers)."""
    if not interactive:
        Gimp.progress_init("Neural Style: connecting to the daemon…")
    try:
        group = nsg_frames_gimp.stylize_frames(
            image, config, interactive, job_settings=job_settings,
            load_client=lambda: load_client(setup_import_path()), connect=connect,
            read=_read, read_style=read_style, read_style_file=read_style_file,
            pixel_format=pixel_format, precision=_precision_nick(image),
            check_size=check_size, gtk_ui=gtk_ui, progress=_progress,
        )  # fmt: skip
    finally:
        if not interactive:
            Gimp.progress_end()
    Gimp.displays_flush()
    return group


def _failed(procedure: Any, message: str) -> Any:
    """EXECUTION_ERROR with the message (GIMP shows it; scripts get it as the GError)."""
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error(message))


if __name__ == "__main__":
    Gimp.main(NeuralStyle.__gtype__, sys.argv)
