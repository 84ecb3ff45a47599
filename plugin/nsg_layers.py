"""Neural Style plug-in: the layers it adds to the image, i.e. its GIMP writes: the live
preview on the canvas while a job runs, and the result layer at the end (also a stopped
job's). The registered neural_style.py reads the content and the style; these write. Bundled
beside it by ``neural-style install-plugin``; it imports GIMP's modules, so it is loaded only
inside GIMP (the unit tests hand in a fake ``gi``)."""

from __future__ import annotations

import contextlib
from typing import Any

import gi
from nsg_errors import PluginError
from nsg_log import log_event
from nsg_pixels import babl_format_for, restore_alpha, to_rgb8
from nsg_results import PREVIEW_LAYER_NAME

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402


class CanvasPreview:
    """The daemon's latest preview as a temporary top layer over the area being stylized,
    upscaled by GIMP to the area's size. Kept out of the undo history (undo frozen around
    each change); removed at the end, whatever the outcome."""

    def __init__(self, image: Any, area: Any) -> None:
        self.image, self.area, self.layer = image, area, None
        self.shown = 0

    def show(self, preview: Any) -> None:
        image, area = self.image, self.area
        if not image.is_valid():
            return
        rgb = to_rgb8(preview.width, preview.height, preview.channels, preview.dtype,
                      preview.data)  # fmt: skip
        kind = Gimp.ImageType.GRAY_IMAGE if area.gray else Gimp.ImageType.RGB_IMAGE
        image.undo_freeze()
        try:
            layer = Gimp.Layer.new(image, PREVIEW_LAYER_NAME, preview.width, preview.height,
                                   kind, 100.0, Gimp.LayerMode.NORMAL)  # fmt: skip
            image.insert_layer(layer, None, 0)
            buf = layer.get_buffer()
            buf.set(Gegl.Rectangle.new(0, 0, preview.width, preview.height), "R'G'B' u8", rgb)
            buf.flush()
            if (preview.width, preview.height) != (area.w, area.h):
                layer.scale(area.w, area.h, False)
            layer.set_offsets(*area.offsets)
            old, self.layer = self.layer, layer
            if old is not None and old.is_valid():
                image.remove_layer(old)
        finally:
            image.undo_thaw()
        self.shown += 1
        log_event("canvas_preview", n=self.shown, size=[preview.width, preview.height])
        Gimp.displays_flush()

    def remove(self) -> None:
        layer, self.layer = self.layer, None
        if layer is None or not layer.is_valid() or not self.image.is_valid():
            return
        self.image.undo_freeze()
        try:
            self.image.remove_layer(layer)
        finally:
            self.image.undo_thaw()
        log_event("canvas_preview_removed")
        Gimp.displays_flush()


def insert_result(image: Any, drawable: Any, area: Any, name: str, done: Any) -> Any:
    """The daemon's result as a new layer on top, in one undo group; returns it. ``area`` is
    the registered file's ContentArea (geometry, pixel layout and the pixels sent)."""
    out = done.image
    if (out.width, out.height) != (area.w, area.h):
        raise PluginError(
            f"The daemon returned {out.width}x{out.height} pixels for a {area.w}x{area.h} "
            "area. Reinstall the plug-in and the daemon from the same version."
        )
    data = bytes(out.data)
    if out.channels == area.channels and out.dtype == area.dtype:
        data = restore_alpha(data, area.data, area.channels, area.bps)
    if not image.is_valid() or not drawable.is_valid():
        raise PluginError("The image or layer was closed while Neural Style was working.")
    fmt = babl_format_for(out.channels, out.dtype)
    return _insert(image, area, name, area.w, area.h, fmt, data)


def insert_kept(image: Any, area: Any, name: str, preview: Any) -> Any:
    """ "Stop and keep": the job's latest image (a preview at up to its working size),
    scaled by GIMP to the area, as the result layer."""
    rgb = to_rgb8(preview.width, preview.height, preview.channels, preview.dtype, preview.data)
    return _insert(image, area, name, preview.width, preview.height, "R'G'B' u8", rgb)


def _insert(image: Any, area: Any, name: str, w: int, h: int, fmt: str, data: bytes) -> Any:
    """New layer at the top of the stack (where it is seen: above the style layers), visible
    and selected, scaled to the area, selection as its mask; one undo group."""
    layer_type = Gimp.ImageType.GRAYA_IMAGE if area.gray else Gimp.ImageType.RGBA_IMAGE
    log_event("undo_group_start")
    image.undo_group_start()
    try:
        layer = Gimp.Layer.new(image, name, w, h, layer_type, 100.0, Gimp.LayerMode.NORMAL)
        image.insert_layer(layer, None, 0)
        layer.set_visible(True)
        buf = layer.get_buffer()
        buf.set(Gegl.Rectangle.new(0, 0, w, h), fmt, data)
        buf.flush()
        if (w, h) != (area.w, area.h):
            layer.scale(area.w, area.h, False)
        layer.set_offsets(*area.offsets)
        layer.update(0, 0, area.w, area.h)
        if area.has_selection:
            layer.add_mask(layer.create_mask(Gimp.AddMaskType.SELECTION))
        log_event("inserted", layer=name, size=[area.w, area.h], offsets=area.offsets)
    finally:
        image.undo_group_end()
        log_event("undo_group_end")
    with contextlib.suppress(Exception):  # selecting it is a convenience, not undoable
        image.set_selected_layers([layer])
    return layer
