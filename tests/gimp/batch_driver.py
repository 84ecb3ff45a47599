# Runs INSIDE gimp-console-3.0 (python-fu-eval exec()s it with Gimp, Gegl, GObject, GLib, Gio
# already imported). Drives python-fu-neural-style through the PDB for every case in
# $NSG_E2E_CASES (JSON) and writes what a test needs to check outside GIMP: per case a JSON
# record, the new layer's pixels (raw, in the case's babl format) and the content's pixels
# before the run, plus PNG exports. It never raises on a failing case (one GIMP start-up serves
# all cases); the host-side tests decide.
# ruff: noqa: F821  (Gimp, Gegl, Gio, GObject are globals provided by python-fu-eval)
import hashlib
import json
import os
import sys
import time
import traceback

with open(os.environ["NSG_E2E_CASES"]) as _fh:
    _cfg = json.load(_fh)
_out_dir = _cfg["out_dir"]
_data = _cfg["data_dir"]
_log_path = os.environ.get("NEURAL_STYLE_PLUGIN_LOG", "")
PROC = "python-fu-neural-style"


def _rect(x, y, w, h):
    return Gegl.Rectangle.new(x, y, w, h)


def _pixels(drawable, fmt):
    w, h = drawable.get_width(), drawable.get_height()
    return bytes(drawable.get_buffer().get(_rect(0, 0, w, h), 1.0, fmt, Gegl.AbyssPolicy.CLAMP))


def _hash(drawable):
    return hashlib.sha256(_pixels(drawable, "R'G'B'A float")).hexdigest()


def _load_layer(image, name, width=None, height=None, offsets=(0, 0), alpha_pattern=False):
    path = os.path.join(_data, name + ".png")
    layer = Gimp.file_load_layer(Gimp.RunMode.NONINTERACTIVE, image, Gio.File.new_for_path(path))
    layer.set_name(name)
    image.insert_layer(layer, None, 0)
    if width and height:
        layer.scale(width, height, False)
    layer.set_offsets(*offsets)
    if alpha_pattern:
        # varied, non-trivial alpha (64..255) so "alpha kept" can fail visibly
        layer.add_alpha()
        w, h = layer.get_width(), layer.get_height()
        px = bytearray(_pixels(layer, "R'G'B'A u8"))
        px[3::4] = bytes(64 + ((i % w) * 3 + (i // w) * 5) % 192 for i in range(w * h))
        buf = layer.get_buffer()
        buf.set(_rect(0, 0, w, h), "R'G'B'A u8", bytes(px))
        buf.flush()
    return layer


def _build(case):
    canvas = case.get("canvas") or [64, 64]
    image = Gimp.Image.new(canvas[0], canvas[1], Gimp.ImageBaseType.RGB)
    content = _load_layer(
        image,
        case["content"],
        *(case.get("content_size") or (None, None)),
        offsets=tuple(case.get("offsets", (0, 0))),
        alpha_pattern=True,
    )
    style = _load_layer(image, case["style"])
    style.set_visible(bool(case.get("style_visible")))
    if case.get("style2"):
        style2 = _load_layer(image, case["style2"])
        style2.set_visible(False)
    if case.get("gray"):
        image.convert_grayscale()
    if case.get("precision"):
        image.convert_precision(getattr(Gimp.Precision, case["precision"]))
    sel = case.get("select_ellipse")
    if sel:
        image.select_ellipse(Gimp.ChannelOps.REPLACE, *sel)
        if case.get("feather"):
            Gimp.Selection.feather(image, float(case["feather"]))
    return image, content, style


def _export(layer, path):
    w, h = layer.get_width(), layer.get_height()
    base = Gimp.ImageBaseType.GRAY if layer.is_gray() else Gimp.ImageBaseType.RGB
    img = Gimp.Image.new_with_precision(w, h, base, layer.get_image().get_precision())
    copy = Gimp.Layer.new_from_drawable(layer, img)
    img.insert_layer(copy, None, 0)
    copy.set_offsets(0, 0)
    ok = Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, img, Gio.File.new_for_path(path), None)
    img.delete()
    return bool(ok)


def _log_lines():
    if not _log_path or not os.path.exists(_log_path):
        return 0
    with open(_log_path) as fh:
        return sum(1 for _ in fh)


def _run_case(case):
    name = case["name"]
    rec = {"name": name}
    image, content, style = _build(case)
    fmt = case["format"]
    rec["content_offsets"] = list(content.get_offsets()[1:])
    rec["content_size"] = [content.get_width(), content.get_height()]
    rec["content_position"] = image.get_item_position(content)
    rec["layers_before"] = [la.get_name() for la in image.get_layers()]
    rec["undo_enabled"] = image.undo_is_enabled()
    before = {"content": _hash(content), "style": _hash(style)}
    with open(os.path.join(_out_dir, name + ".content.raw"), "wb") as fh:
        fh.write(_pixels(content, fmt))
    proc = Gimp.get_pdb().lookup_procedure(PROC)
    cfg = proc.create_config()
    last_vals = case.get("run_mode") == "with_last_vals"
    cfg.set_property(
        "run-mode", Gimp.RunMode.WITH_LAST_VALS if last_vals else Gimp.RunMode.NONINTERACTIVE
    )
    cfg.set_property("image", image)
    cfg.set_core_object_array("drawables", [content])
    if not case.get("no_style_arg"):
        cfg.set_property("style-layer", style)
    if case.get("style_file"):
        path = os.path.join(_data, case["style_file"])
        cfg.set_property("style-file", Gio.File.new_for_path(path))
    if case.get("style2"):
        style2 = next(la for la in image.get_layers() if la.get_name() == case["style2"])
        cfg.set_property("style-layer-2", style2)
        before["style2"] = _hash(style2)
    args = dict(case["args"])
    if "iterations" in args and "preset" not in args:
        args["preset"] = "custom"  # the default preset would set the step count
    for key, value in args.items():
        cfg.set_property(key, value)
    rec["log_from"] = _log_lines()
    t0 = time.monotonic()
    result = proc.run(cfg)
    rec["run_s"] = round(time.monotonic() - t0, 2)
    rec["log_to"] = _log_lines()
    status = result.index(0)
    rec["status"] = status.value_nick if hasattr(status, "value_nick") else str(status)
    rec["layers_after"] = [la.get_name() for la in image.get_layers()]
    rec["after"] = {"content": _hash(content), "style": _hash(style)}
    if case.get("style2"):
        rec["after"]["style2"] = _hash(style2)
    rec["before"] = before
    if status != Gimp.PDBStatusType.SUCCESS:
        err = result.index(1) if result.length() > 1 else None
        rec["error"] = err if isinstance(err, str) else getattr(err, "message", None) or str(err)
        if case.get("repeat"):
            rec["repeat"] = _repeat(case, image, content)
        image.delete()
        return rec
    layer = result.index(1)
    rec["layer"] = {
        "name": layer.get_name(),
        "size": [layer.get_width(), layer.get_height()],
        "offsets": list(layer.get_offsets()[1:]),
        "position": image.get_item_position(layer),
        "parent_same": (layer.get_parent() is None) == (content.get_parent() is None),
        "has_alpha": layer.has_alpha(),
        "is_gray": layer.is_gray(),
        "precision": image.get_precision().value_nick,
        "has_mask": layer.get_mask() is not None,
        "visible": layer.get_visible(),
        "top": image.get_layers()[0].get_id() == layer.get_id(),
    }
    rec["content_position_after"] = image.get_item_position(content)
    with open(os.path.join(_out_dir, name + ".result.raw"), "wb") as fh:
        fh.write(_pixels(layer, fmt))
    mask = layer.get_mask()
    if mask is not None:
        with open(os.path.join(_out_dir, name + ".mask.raw"), "wb") as fh:
            fh.write(_pixels(mask, "Y u8"))
    rec["exported"] = _export(layer, os.path.join(_out_dir, name + ".png"))
    if case.get("refine"):
        rec["refine"] = _refine(case, image, layer, style, fmt)
    if case.get("repeat"):
        rec["repeat"] = _repeat(case, image, content)
    image.delete()
    return rec


def _save_projection(image, name):
    """The image as its canvas shows it (all visible layers), as a PNG."""
    try:
        dup = image.duplicate()
        dup.undo_disable()
        dup.flatten()
        ok = Gimp.file_save(
            Gimp.RunMode.NONINTERACTIVE,
            dup,
            Gio.File.new_for_path(os.path.join(_out_dir, name)),
            None,
        )
        dup.delete()
        return bool(ok)
    except Exception:
        return traceback.format_exc()


def _repeat(case, image, content):
    """Filters > Repeat "Neural Style" (Ctrl+F): RUN_WITH_LAST_VALS, no layer arguments."""
    for src, dst in case.get("before_repeat_copy", []):
        with open(os.path.join(_data, src), "rb") as a, open(dst, "wb") as b:
            b.write(a.read())
    proc = Gimp.get_pdb().lookup_procedure(PROC)
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.WITH_LAST_VALS)
    cfg.set_property("image", image)
    cfg.set_core_object_array("drawables", [content])
    rep = {"log_from": _log_lines(), "t_call": time.time()}
    result = proc.run(cfg)
    rep["log_to"] = _log_lines()
    status = result.index(0)
    rep["status"] = status.value_nick if hasattr(status, "value_nick") else str(status)
    if status != Gimp.PDBStatusType.SUCCESS:
        err = result.index(1) if result.length() > 1 else None
        rep["error"] = err if isinstance(err, str) else getattr(err, "message", None) or str(err)
    else:
        layer = result.index(1)
        rep["layer"] = {"name": layer.get_name(), "position": image.get_item_position(layer),
                        "visible": layer.get_visible()}  # fmt: skip
    rep["layers_after"] = [la.get_name() for la in image.get_layers()]
    return rep


def _refine(case, image, result, style, fmt):
    """The filter run again on its own result layer with refine on (the default)."""
    proc = Gimp.get_pdb().lookup_procedure(PROC)
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property("image", image)
    cfg.set_core_object_array("drawables", [result])
    cfg.set_property("style-layer", style)
    for key, value in case["refine"].items():
        cfg.set_property(key, value)
    rep = {"log_from": _log_lines()}
    out = proc.run(cfg)
    rep["log_to"] = _log_lines()
    status = out.index(0)
    rep["status"] = status.value_nick if hasattr(status, "value_nick") else str(status)
    if status != Gimp.PDBStatusType.SUCCESS:
        err = out.index(1) if out.length() > 1 else None
        rep["error"] = err if isinstance(err, str) else getattr(err, "message", None) or str(err)
        return rep
    layer = out.index(1)
    rep["layer"] = {"name": layer.get_name(), "size": [layer.get_width(), layer.get_height()],
                    "position": image.get_item_position(layer)}  # fmt: skip
    with open(os.path.join(_out_dir, case["name"] + ".refined.raw"), "wb") as fh:
        fh.write(_pixels(layer, fmt))
    rep["layers_after"] = [la.get_name() for la in image.get_layers()]
    return rep


def _labels(widget):
    """Texts of every label under a widget (what the user reads in a dialog)."""
    found = []
    if hasattr(widget, "get_label") and type(widget).__name__ == "Label":
        found.append(widget.get_text())
    if hasattr(widget, "get_children"):
        for child in widget.get_children():
            found += _labels(child)
    return found


def _shot(widget, name):
    """PNG of a window as Xvfb shows it (for docs/plugin.md); never fails the run."""
    try:
        import gi

        gi.require_version("Gdk", "3.0")
        from gi.repository import Gdk

        # paint it without running the main loop (that would run the job's own timeouts)
        widget.queue_draw()
        win = widget.get_window()
        win.process_updates(True)
        Gdk.flush()
        pixbuf = Gdk.pixbuf_get_from_window(win, 0, 0, win.get_width(), win.get_height())
        pixbuf.savev(os.path.join(_out_dir, name), "png", [], [])
        return [pixbuf.get_width(), pixbuf.get_height()]
    except Exception:
        return traceback.format_exc()


def _ui_section():
    """The interactive path, for real: settings dialog and progress window under Xvfb.

    The plug-in module is imported into this (python-fu-eval) process, whose GimpUi works
    like the plug-in's; buttons are pressed from GLib timeouts, the daemon is the real one.
    """
    import importlib.util

    import gi

    gi.require_version("GimpUi", "3.0")
    gi.require_version("Gtk", "3.0")
    from gi.repository import GimpUi, GLib, Gtk

    # without a working display GimpUi.init() aborts the whole process: check first
    if not Gtk.init_check()[0]:
        return {"driver_error": f"cannot open display {os.environ.get('DISPLAY')!r}"}

    plugdir = _cfg["plugin_dir"]
    spec = importlib.util.spec_from_file_location("nsg_plugin_ui", plugdir + "/neural_style.py")
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    m.setup_import_path(plugdir)
    # the bundled modules the plug-in imported: the progress window lives in nsg_windows
    windows_mod = sys.modules["nsg_windows"]
    results_mod, progress_mod = sys.modules["nsg_results"], sys.modules["nsg_progress"]
    GimpUi.init("nsg-e2e-ui")
    ui = {}
    proc = Gimp.get_pdb().lookup_procedure(PROC)

    def sensitive(win, prop):
        widget = win.get_widget(prop, GObject.TYPE_NONE)
        return None if widget is None else bool(widget.get_sensitive())

    def press(response, key, user_sets=None):
        def callback():
            for win in Gtk.Window.list_toplevels():
                if isinstance(win, GimpUi.ProcedureDialog) and win.get_visible():
                    for prop, value in (user_sets or {}).items():  # what the user changes
                        win.get_property("config").set_property(prop, value)
                    if key == "dialog_showcase":
                        ui["shot_dialog"] = _shot(win, "shot-dialog.png")
                        ui["t_dialog_visible"] = time.time()
                    ui[key] = {
                        "title": win.get_title(),
                        "labels": _labels(win),
                        "sensitive": {
                            p: sensitive(win, p) for p in ("iterations", "color-mode", "max-size")
                        },
                    }
                    win.response(response)
                    return False
            return True

        GLib.timeout_add(200, callback)

    press(Gtk.ResponseType.OK, "dialog_seen_ok")
    ui["dialog_ok"] = m.show_dialog(proc, proc.create_config())
    press(Gtk.ResponseType.CANCEL, "dialog_seen_cancel")
    ui["dialog_cancel"] = m.show_dialog(proc, proc.create_config())
    # a preset greys out Iterations; Preserve colors enables the colour mode
    press(Gtk.ResponseType.CANCEL, "dialog_seen_preset")
    preset_cfg = proc.create_config()
    preset_cfg.set_property("preset", "fast")
    preset_cfg.set_property("preserve-color", True)
    m.show_dialog(proc, preset_cfg)

    windows = []

    class Recording(windows_mod.ProgressWindow):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.seen = {}
            self.statuses = []
            self.canvas = []
            windows.append(self)

        def handle(self, event):
            kind = type(event).__name__
            self.seen[kind] = self.seen.get(kind, 0) + 1
            super().handle(event)
            self.statuses.append(self.status.get_text())
            for img in Gimp.get_images():  # the live preview on the canvas, while it runs
                for la in img.get_layers():
                    if la.get_name() == results_mod.PREVIEW_LAYER_NAME:
                        self.canvas.append(
                            [
                                la.get_width(),
                                la.get_height(),
                                *la.get_offsets()[1:],
                                img.get_item_position(la),
                            ]
                        )

    def summary(win):
        pixbuf = win.preview.get_pixbuf()
        return {
            "title": win.dialog.get_title(),
            "seen": win.seen,
            "statuses": sorted(set(win.statuses)),
            "bar": win.bar.get_text(),
            "fraction": win.bar.get_fraction(),
            "eta": win.eta.get_text(),
            "preview": [pixbuf.get_width(), pixbuf.get_height()] if pixbuf else None,
            "canvas": win.canvas,
        }

    def config(iterations):
        cfg = proc.create_config()
        cfg.set_property("preset", "custom")
        cfg.set_property("iterations", iterations)
        cfg.set_property("max-size", 64)
        return cfg

    # a failed run from the dialog (the painting is missing), then Re-Show and Repeat
    image, content, style = _build({"content": "chelsea_64", "style": "starry_night_64"})
    painting = os.path.join(_cfg["out_dir"], "painting_later.png")
    cfg = proc.create_config()
    press(Gtk.ResponseType.OK, "dialog_seen_failing",
          {"preset": "custom", "iterations": 7, "max-size": 40, "endpoint": "",
           "style-layer": None, "style-file": Gio.File.new_for_path(painting)})  # fmt: skip
    rec = {"log_from": _log_lines()}
    ret = m.NeuralStyle.run(None, proc, Gimp.RunMode.INTERACTIVE, image, [content], cfg, None)
    rec["status"] = ret.index(0).value_nick
    rec["error"] = getattr(ret.index(1), "message", str(ret.index(1)))
    reshow = proc.create_config()
    m.prepare_rerun(image, [content], reshow)
    sf = reshow.get_property("style-file")
    rec["reshow"] = {"iterations": reshow.get_property("iterations"),
                     "max-size": reshow.get_property("max-size"),
                     "style-file": sf.get_path() if sf else None}  # fmt: skip
    rec["repeat"] = _repeat({"before_repeat_copy": [["great_wave_64.png", painting]]},
                            image, content)  # fmt: skip
    rec["log_to"] = _log_lines()
    ui["failed_then_repeat"] = rec
    image.delete()

    windows_mod.ProgressWindow = Recording
    image, content, style = _build({"content": "chelsea_64", "style": "starry_night_64"})
    cfg = config(12)
    cfg.set_property("style-layer", style)
    before = len(image.get_layers())
    rec = {"log_from": _log_lines()}
    layer = m.stylize(image, [content], cfg, True)
    rec.update(
        window=summary(windows[-1]),
        layers=[before, len(image.get_layers())],
        names_after=[la.get_name() for la in image.get_layers()],
        size=[layer.get_width(), layer.get_height()],
        content_size=[content.get_width(), content.get_height()],
        log_to=_log_lines(),
    )
    ui["interactive_run"] = rec
    image.delete()

    class CancelOnFirstProgress(Recording):
        def handle(self, event):
            super().handle(event)
            if type(event).__name__ == "Progress" and self.cancel_requested_at is None:
                self.dialog.response(Gtk.ResponseType.CANCEL)

    windows_mod.ProgressWindow = CancelOnFirstProgress
    image, content, style = _build({"content": "chelsea_64", "style": "starry_night_64"})
    cfg = config(150)
    cfg.set_property("style-layer", style)
    rec = {"log_from": _log_lines(), "layers_before": len(image.get_layers())}
    try:
        m.stylize(image, [content], cfg, True)
        rec["outcome"] = "finished"
    except m.UserCancelled:
        rec["outcome"] = "cancelled"
    rec.update(window=summary(windows[-1]), layers_after=len(image.get_layers()),
               names_after=[la.get_name() for la in image.get_layers()])  # fmt: skip
    rec["log_to"] = _log_lines()
    ui["cancel_run"] = rec
    image.delete()

    class KeepOnFirstPreview(Recording):
        def handle(self, event):
            super().handle(event)
            if type(event).__name__ == "Preview" and self.cancel_requested_at is None:
                self.dialog.response(progress_mod.RESPONSE_KEEP)

    windows_mod.ProgressWindow = KeepOnFirstPreview
    image, content, style = _build({"content": "chelsea_64", "style": "starry_night_64"})
    cfg = config(150)
    cfg.set_property("style-layer", style)
    rec = {"log_from": _log_lines(), "layers_before": len(image.get_layers())}
    layer = m.stylize(image, [content], cfg, True)
    rec.update(window=summary(windows[-1]), layers_after=len(image.get_layers()),
               names_after=[la.get_name() for la in image.get_layers()],
               layer={"name": layer.get_name(), "size": [layer.get_width(), layer.get_height()],
                      "position": image.get_item_position(layer)})  # fmt: skip
    rec["log_to"] = _log_lines()
    ui["keep_run"] = rec
    image.delete()

    # the pictures docs/plugin.md shows: a bigger image, the style chosen in the dialog
    class Showcase(Recording):
        def handle(self, event):
            super().handle(event)
            if (
                type(event).__name__ == "Preview"
                and self.seen["Preview"] >= 25
                and ("shot_canvas" not in ui)
            ):
                ui["showcase_layers"] = [la.get_name() for la in image.get_layers()]
                if results_mod.PREVIEW_LAYER_NAME in ui["showcase_layers"]:  # preview on top
                    ui["shot_canvas"] = _save_projection(image, "shot-canvas-preview.png")
                    ui["shot_progress"] = _shot(self.dialog, "shot-progress.png")

    windows_mod.ProgressWindow = Showcase
    image, content, style = _build({"content": "chelsea_128", "style": "starry_night_128",
                                    "canvas": [128, 128]})  # fmt: skip
    cfg = proc.create_config()
    press(Gtk.ResponseType.OK, "dialog_showcase", {"style-layer": style})
    ui["t_dialog_call"] = time.time()
    m.show_dialog(proc, cfg)
    cfg.set_property("preset", "custom")
    cfg.set_property("iterations", 40)
    cfg.set_property("max-size", 128)
    ui["t_ok"] = time.time()
    m.stylize(image, [content], cfg, True)
    ui["t_done"] = time.time()
    ui["shot_result"] = _save_projection(image, "shot-result.png")
    image.delete()
    return ui


_results = {"cases": []}
_pdb = Gimp.get_pdb()
_proc = _pdb.lookup_procedure(PROC)
_results["registered"] = _proc is not None
if _proc is not None:
    _results["menu_label"] = _proc.get_menu_label()
    _results["menu_paths"] = list(_proc.get_menu_paths())
    _results["image_types"] = _proc.get_image_types()
    _results["arguments"] = [a.name for a in _proc.get_arguments()]
    _results["return_values"] = [a.name for a in _proc.get_return_values()]

    def _run_all(cases):
        for case in cases:
            t0 = time.monotonic()
            try:
                _results["cases"].append(_run_case(case))
                _results["cases"][-1]["wall_s"] = round(time.monotonic() - t0, 2)
            except Exception:
                _err = traceback.format_exc()
                _results["cases"].append({"name": case["name"], "driver_error": _err})

    # "last" cases kill the daemon: everything that needs it runs first
    _run_all([c for c in _cfg["cases"] if not c.get("last")])
    if os.environ.get("DISPLAY") and not _cfg.get("no_ui"):
        _t0 = time.monotonic()
        try:
            _results["ui"] = _ui_section()
        except Exception:
            _results["ui"] = {"driver_error": traceback.format_exc()}
        _results["ui_wall_s"] = round(time.monotonic() - _t0, 2)
    _run_all([c for c in _cfg["cases"] if c.get("last")])
with open(os.path.join(_out_dir, "results.json"), "w") as _fh:
    json.dump(_results, _fh, indent=1)
print("batch_driver: done", flush=True)
