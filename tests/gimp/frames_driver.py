# Runs INSIDE gimp-console-3.0 (python-fu-eval exec()s it with Gimp, Gegl, GObject, GLib, Gio
# already imported). Drives python-fu-neural-style-frames on animations built from the frame
# PNGs in $NSG_FRAMES_CFG's data_dir and writes what tests/test_gimp_frames.py checks: per
# case the procedure's status and the result group's layers (names, sizes, offsets, pixels
# as RGBA u8 raw files). The "cancel" case runs the interactive path under Xvfb with a real
# press of the progress window's Cancel button during frame 3.
# ruff: noqa: F821  (Gimp, Gegl, Gio, GObject are globals provided by python-fu-eval)
import json
import os
import sys
import time
import traceback

with open(os.environ["NSG_FRAMES_CFG"]) as _fh:
    _cfg = json.load(_fh)
_out = _cfg["out_dir"]
PROC = "python-fu-neural-style-frames"


def _pixels(drawable):
    w, h = drawable.get_width(), drawable.get_height()
    buf = drawable.get_buffer()
    rect = Gegl.Rectangle.new(0, 0, w, h)
    return bytes(buf.get(rect, 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.CLAMP))


def _build(frames, style_in_image):
    first = os.path.join(_cfg["data_dir"], frames[0]["file"])
    probe = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(first))
    w, h = probe.get_width(), probe.get_height()
    probe.delete()
    image = Gimp.Image.new(w, h, Gimp.ImageBaseType.RGB)
    for frame in frames:  # bottom first: each new layer goes on top
        path = os.path.join(_cfg["data_dir"], frame["file"])
        layer = Gimp.file_load_layer(Gimp.RunMode.NONINTERACTIVE, image,
                                     Gio.File.new_for_path(path))  # fmt: skip
        image.insert_layer(layer, None, 0)
        layer.set_name(frame["name"])
    style = None
    if style_in_image:
        style = Gimp.file_load_layer(Gimp.RunMode.NONINTERACTIVE, image,
                                     Gio.File.new_for_path(_cfg["style"]))  # fmt: skip
        image.insert_layer(style, None, 0)
        style.set_name("the style")
        style.set_visible(False)
    return image, style


def _configure(cfg, case, image, style):
    cfg.set_property("image", image)
    cfg.set_core_object_array("drawables", [image.get_layers()[-1]])
    if style is not None:
        cfg.set_property("style-layer", style)
    else:
        cfg.set_property("style-file", Gio.File.new_for_path(_cfg["style"]))
    for key, value in case["args"].items():
        cfg.set_property(key, value)


def _describe(image, group, rec):
    rec["layers_after"] = [la.get_name() for la in image.get_layers()]
    if group is None:
        return rec
    if group.is_group():
        children = list(group.get_children())
    else:  # a new image: the result is its top layer
        other = group.get_image()
        children = list(other.get_layers())
        rec["new_image"] = {"same_image": other.get_id() == image.get_id(),
                            "size": [other.get_width(), other.get_height()]}  # fmt: skip
    rec["group"] = {
        "name": group.get_name(),
        "is_group": bool(group.is_group()),
        "top": image.get_layers()[0].get_id() == group.get_id(),
        "visible": group.get_visible(),
        # GIMP lists children top first; the first frame is the bottom one
        "children": [c.get_name() for c in reversed(children)],
        "sizes": [[c.get_width(), c.get_height()] for c in reversed(children)],
        "offsets": [list(c.get_offsets()[1:]) for c in reversed(children)],
    }
    for k, child in enumerate(reversed(children)):
        with open(os.path.join(_out, f"{rec['name']}.{k}.raw"), "wb") as fh:
            fh.write(_pixels(child))
    return rec


def _run_pdb(case):
    rec = {"name": case["name"]}
    image, style = _build(case["frames"], case.get("style_in_image", False))
    rec["layers_before"] = [la.get_name() for la in image.get_layers()]
    proc = Gimp.get_pdb().lookup_procedure(PROC)
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    _configure(cfg, case, image, style)
    t0 = time.monotonic()
    result = proc.run(cfg)
    rec["run_s"] = round(time.monotonic() - t0, 2)
    status = result.index(0)
    rec["status"] = status.value_nick if hasattr(status, "value_nick") else str(status)
    group = None
    if status == Gimp.PDBStatusType.SUCCESS:
        group = result.index(1)
    else:
        err = result.index(1) if result.length() > 1 else None
        rec["error"] = err if isinstance(err, str) else getattr(err, "message", None) or str(err)
    _describe(image, group, rec)
    image.delete()
    return rec


def _run_cancel(case):
    """The interactive path for real: one progress window, Cancel pressed at frame 3."""
    import importlib.util

    import gi

    gi.require_version("GimpUi", "3.0")
    gi.require_version("Gtk", "3.0")
    from gi.repository import GimpUi, Gtk

    if not Gtk.init_check()[0]:
        return {"name": case["name"], "driver_error": "no display"}
    plugdir = _cfg["plugin_dir"]
    spec = importlib.util.spec_from_file_location("nsg_plugin_frames", plugdir + "/neural_style.py")
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    m.setup_import_path(plugdir)
    frames_mod = sys.modules["nsg_frames"]
    GimpUi.init("nsg-e2e-frames")
    seen = {"statuses": [], "eta": [], "pressed_at": None, "windows": 0}

    class CancelAtFrameThree(frames_mod.FramesWindow):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen["windows"] += 1

        def handle(self, event):
            super().handle(event)
            seen["statuses"].append(self.status.get_text())
            seen["eta"].append(self.eta.get_text())
            progress = type(event).__name__ == "Progress"
            if progress and self.seq.done == 2 and not self.cancel_requested:
                seen["pressed_at"] = [self.seq.done, int(event.step)]
                self.dialog.response(Gtk.ResponseType.CANCEL)

    frames_mod.FramesWindow = CancelAtFrameThree
    image, style = _build(case["frames"], False)
    proc = Gimp.get_pdb().lookup_procedure(PROC)
    cfg = proc.create_config()
    _configure(cfg, case, image, style)
    rec = {"name": case["name"]}
    try:
        group = m.frames(image, cfg, True)
        rec["status"] = "success"
    except m.UserCancelled:
        group, rec["status"] = None, "cancel"
    rec["window"] = {"statuses": sorted(set(seen["statuses"])), "windows": seen["windows"],
                     "pressed_at": seen["pressed_at"], "eta": sorted(set(seen["eta"]))}  # fmt: skip
    _describe(image, group, rec)
    image.delete()
    return rec


_results = {"cases": []}
_proc = Gimp.get_pdb().lookup_procedure(PROC)
_results["registered"] = _proc is not None
if _proc is not None:
    _results["menu_label"] = _proc.get_menu_label()
    _results["menu_paths"] = list(_proc.get_menu_paths())
    _results["arguments"] = [a.name for a in _proc.get_arguments()]
    _results["return_values"] = [a.name for a in _proc.get_return_values()]
    for _case in _cfg["cases"]:
        _t0 = time.monotonic()
        try:
            if _case.get("cancel"):
                if not os.environ.get("DISPLAY"):
                    continue
                _rec = _run_cancel(_case)
            else:
                _rec = _run_pdb(_case)
        except Exception:
            _rec = {"name": _case["name"], "driver_error": traceback.format_exc()}
        _rec["wall_s"] = round(time.monotonic() - _t0, 2)
        _results["cases"].append(_rec)
with open(os.path.join(_out, "results.json"), "w") as _fh:
    json.dump(_results, _fh, indent=1)
print("frames_driver: done", flush=True)
