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
    canvas = case.get("canvas", [64, 64])
    image = Gimp.Image.new(canvas[0], canvas[1], Gimp.ImageBaseType.RGB)
    content = _load_layer(
        image,
        case["content"],
        *(case.get("content_size") or (None, None)),
        offsets=tuple(case.get("offsets", (0, 0))),
        alpha_pattern=True,
    )
    style = _load_layer(image, case["style"])
    style.set_visible(False)
    if case.get("gray"):
        image.convert_grayscale()
    if case.get("precision"):
        image.convert_precision(getattr(Gimp.Precision, case["precision"]))
    sel = case.get("select_ellipse")
    if sel:
        image.select_ellipse(Gimp.ChannelOps.REPLACE, *sel)
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
    cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property("image", image)
    cfg.set_core_object_array("drawables", [content])
    cfg.set_property("style-layer", style)
    for key, value in case["args"].items():
        cfg.set_property(key, value)
    rec["log_from"] = _log_lines()
    result = proc.run(cfg)
    rec["log_to"] = _log_lines()
    status = result.index(0)
    rec["status"] = status.value_nick if hasattr(status, "value_nick") else str(status)
    rec["layers_after"] = [la.get_name() for la in image.get_layers()]
    rec["after"] = {"content": _hash(content), "style": _hash(style)}
    rec["before"] = before
    if status != Gimp.PDBStatusType.SUCCESS:
        err = result.index(1) if result.length() > 1 else None
        rec["error"] = err if isinstance(err, str) else getattr(err, "message", None) or str(err)
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
    }
    rec["content_position_after"] = image.get_item_position(content)
    with open(os.path.join(_out_dir, name + ".result.raw"), "wb") as fh:
        fh.write(_pixels(layer, fmt))
    mask = layer.get_mask()
    if mask is not None:
        with open(os.path.join(_out_dir, name + ".mask.raw"), "wb") as fh:
            fh.write(_pixels(mask, "Y u8"))
    rec["exported"] = _export(layer, os.path.join(_out_dir, name + ".png"))
    image.delete()
    return rec


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
    for _case in _cfg["cases"]:
        try:
            _results["cases"].append(_run_case(_case))
        except Exception:
            _err = traceback.format_exc()
            _results["cases"].append({"name": _case["name"], "driver_error": _err})
with open(os.path.join(_out_dir, "results.json"), "w") as _fh:
    json.dump(_results, _fh, indent=1)
print("batch_driver: done", flush=True)
