# Runs INSIDE gimp-console-3.0 under Xvfb (python-fu-eval exec()s it with Gimp, Gio, GObject
# and GLib already imported): Filters > Neural Style as a user runs it while no daemon is
# running. The installed plug-in's run() is called in INTERACTIVE mode, and GLib timeouts do
# what the user does: wait for the dialog's service line, choose the style and the endpoint,
# press OK, then "Start it" in the offer to start the service. Everything else is the
# plug-in's own code: the wait for the new daemon, the progress window, the result layer.
# Writes $NSG_AUTOSTART_CASE's out_dir/autostart.json for tests/test_gimp_autostart.py.
# ruff: noqa: F821  (Gimp, Gio are globals provided by python-fu-eval)
import importlib.util
import json
import os
import time
import traceback

with open(os.environ["NSG_AUTOSTART_CASE"]) as _fh:
    _cfg = json.load(_fh)
_rec = {}


def _labels(widget):
    found = []
    if type(widget).__name__ == "Label":
        found.append(widget.get_text())
    if hasattr(widget, "get_children"):
        for child in widget.get_children():
            found += _labels(child)
    return found


def _layer(image, name):
    path = os.path.join(_cfg["data_dir"], name + ".png")
    layer = Gimp.file_load_layer(Gimp.RunMode.NONINTERACTIVE, image, Gio.File.new_for_path(path))
    layer.set_name(name)
    image.insert_layer(layer, None, 0)
    return layer


def _main():
    import gi

    gi.require_version("GimpUi", "3.0")
    gi.require_version("Gtk", "3.0")
    from gi.repository import GimpUi, GLib, Gtk

    if not Gtk.init_check()[0]:  # without a display GimpUi.init() aborts the process
        raise RuntimeError(f"cannot open display {os.environ.get('DISPLAY')!r}")
    path = os.path.join(_cfg["plugin_dir"], "neural_style.py")
    spec = importlib.util.spec_from_file_location("nsg_plugin_autostart", path)
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    GimpUi.init("nsg-e2e-autostart")

    image = Gimp.Image.new(64, 64, Gimp.ImageBaseType.RGB)
    content = _layer(image, "chelsea_64")
    style = _layer(image, "starry_night_64")
    style.set_visible(False)
    image.set_selected_layers([content])
    proc = Gimp.get_pdb().lookup_procedure("python-fu-neural-style")

    def user():
        for win in Gtk.Window.list_toplevels():
            if not win.get_visible() or not isinstance(win, GimpUi.Dialog):
                continue
            texts = _labels(win)
            if isinstance(win, GimpUi.ProcedureDialog):
                if "ok_t" not in _rec:
                    _settings(win, texts)
            elif "offer" not in _rec and any("is not running" in t for t in texts):
                _rec["offer"] = {"labels": texts, "t": time.time()}
                win.response(Gtk.ResponseType.OK)  # "Start it"
            elif "starting" not in _rec and any(t.startswith("Starting the") for t in texts):
                _rec["starting"] = {"labels": texts, "t": time.time()}
        return True

    def _settings(win, texts):
        service = [t for t in texts if t.startswith("Neural Style service:")]
        if not service or service[0].endswith("checking…"):
            return  # the dialog has not asked the service yet
        _rec["service_line"] = service[0]
        config = win.get_property("config")
        chosen = {"style-layer": style, "preset": "custom", "iterations": 8, "max-size": 48,
                  "endpoint": _cfg["endpoint"]}  # fmt: skip
        for key, value in chosen.items():
            config.set_property(key, value)
        _rec["ok_t"] = time.time()
        win.response(Gtk.ResponseType.OK)

    GLib.timeout_add(150, user)
    layers_before = [la.get_name() for la in image.get_layers()]
    t0 = time.time()
    ret = plugin.NeuralStyle.run(
        None, proc, Gimp.RunMode.INTERACTIVE, image, [content], proc.create_config(), None
    )
    _rec["run_s"] = round(time.time() - t0, 2)
    _rec["status"] = ret.index(0).value_nick
    if ret.index(0) != Gimp.PDBStatusType.SUCCESS:
        err = ret.index(1) if ret.length() > 1 else None
        _rec["error"] = getattr(err, "message", None) or str(err)
    else:
        layer = ret.index(1)
        _rec["layer"] = {
            "name": layer.get_name(),
            "size": [layer.get_width(), layer.get_height()],
            "visible": layer.get_visible(),
            "top": image.get_layers()[0].get_id() == layer.get_id(),
        }
    _rec["layers_before"] = layers_before
    _rec["layers_after"] = [la.get_name() for la in image.get_layers()]
    image.delete()


try:
    _main()
except Exception:
    _rec["driver_error"] = traceback.format_exc()
with open(os.path.join(_cfg["out_dir"], "autostart.json"), "w") as _fh:
    json.dump(_rec, _fh, indent=1)
print("autostart_driver: done", flush=True)
