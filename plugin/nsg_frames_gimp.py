"""Neural Style plug-in: the animation procedure's GIMP reads and writes (the frames'
pixels, the result group or new image) and the whole run (``stylize_frames``); the pure
part and the progress window are nsg_frames. Imports ``gi`` when called; bundled beside
neural_style.py by ``neural-style install-plugin``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

import nsg_frames
from nsg_errors import PluginError, UserCancelled
from nsg_frames import FRAMES_FEATURE, FrameIn, FrameSequence, frame_layers, group_name
from nsg_log import log_event
from nsg_pixels import babl_format_for, restore_alpha
from nsg_styles import StyleFile


def read_frame(image: Any, layer: Any, read: Callable[..., bytes], pixel_format: Any,
               precision: str) -> FrameIn:  # fmt: skip
    """A whole layer's pixels in the image's precision (``read``: neural_style._read)."""
    gray = bool(layer.is_gray())
    fmt, channels, dtype, bps = pixel_format(gray, precision)
    w, h = layer.get_width(), layer.get_height()
    _, ox, oy = layer.get_offsets()
    data = read(layer, 0, 0, w, h, fmt)
    return FrameIn(layer.get_name(), w, h, (ox, oy), channels, dtype, bps, fmt, data, gray)


def insert_frames(image: Any, seq: FrameSequence, name: str, new_image: bool = False) -> Any:
    """The frames done, first frame at the bottom, each at its offsets and named as its
    source frame: as a new layer group on top of ``image`` in one undo step (returns the
    group; GIMP makes the names unique in an image by adding " #1", which keeps the timing
    tags), or as the layers of a new image with the exact names (returns its top layer)."""
    import gi

    gi.require_version("Gimp", "3.0")
    gi.require_version("Gegl", "0.4")
    from gi.repository import Gegl, Gimp

    if not image.is_valid():
        raise PluginError("The image was closed while Neural Style was working.")
    target = image
    if new_image:
        base = Gimp.ImageBaseType.GRAY if seq.frames[0].gray else Gimp.ImageBaseType.RGB
        target = Gimp.Image.new_with_precision(image.get_width(), image.get_height(), base,
                                               image.get_precision())  # fmt: skip
        target.undo_disable()
    target.undo_group_start()
    try:
        group = None if new_image else Gimp.GroupLayer.new(target, name)
        if group is not None:
            target.insert_layer(group, None, 0)
        layer = None
        for frame, out in zip(seq.frames, seq.results, strict=False):
            data = bytes(out.data)
            if out.channels == frame.channels and out.dtype == frame.dtype:
                data = restore_alpha(data, frame.data, frame.channels, frame.bps)
            kind = Gimp.ImageType.GRAYA_IMAGE if frame.gray else Gimp.ImageType.RGBA_IMAGE
            layer = Gimp.Layer.new(target, frame.name, frame.w, frame.h, kind, 100.0,
                                   Gimp.LayerMode.NORMAL)  # fmt: skip
            target.insert_layer(layer, group, 0)  # above the frames before it
            buf = layer.get_buffer()
            buf.set(Gegl.Rectangle.new(0, 0, frame.w, frame.h),
                    babl_format_for(out.channels, out.dtype), data)  # fmt: skip
            buf.flush()
            layer.set_offsets(*frame.offsets)
            layer.set_visible(True)
        if group is not None:
            group.set_visible(True)
        log_event("frames_inserted", group=name, frames=seq.done, new_image=new_image)
    finally:
        target.undo_group_end()
    if new_image:
        target.undo_enable()
        with contextlib.suppress(Exception):  # no display in gimp-console
            Gimp.Display.new(target)
        return layer
    return group


def stylize_frames(
    image: Any, config: Any, interactive: bool, *, job_settings: Callable[[Any], dict],
    load_client: Callable[[], Any], connect: Callable[..., tuple[Any, dict]],
    read: Callable[..., bytes], read_style: Callable[..., tuple[int, int, bytes]],
    read_style_file: Callable[..., tuple[int, int, bytes]], pixel_format: Any,
    precision: str, check_size: Callable[..., None], gtk_ui: Callable[[], Any],
    progress: Callable[[float, str], None] | None = None,
) -> Any:  # fmt: skip
    """The whole procedure; the registered file hands in its readers and the job flow's
    pieces (nsg_windows.connect, nsg_params.job_settings...). Returns the new group."""
    job = job_settings(config)
    styles = job["styles"]
    style_ids = {s.get_id() for s in styles if not isinstance(s, StyleFile)}
    layers = frame_layers(list(image.get_layers()), style_ids)
    if not layers:
        raise PluginError("The image has no frames: its layers (other than the style) are "
                          "the animation's frames, the bottom one first.")  # fmt: skip
    temporal = float(config.get_property("temporal-weight"))
    independent = bool(config.get_property("independent"))
    log_event("frames_start", frames=len(layers), params=job["params"],
              temporal_weight=temporal, independent=independent)  # fmt: skip
    client_mod = load_client()
    timeout = float(os.environ.get("NEURAL_STYLE_TIMEOUT", "10") or 10)
    client, hello = connect(client_mod, job["endpoint"], timeout, interactive, gtk_ui)
    try:
        for layer in layers:
            check_size(layer.get_width(), layer.get_height(), hello)
        features = list(hello.get("features") or [])
        if not independent and FRAMES_FEATURE not in features:
            log_event("frames_unsupported", features=features)
        size, scale = job["max_size"], job["style_scale"]
        style_pixels = [
            read_style_file(s.path, size, scale) if isinstance(s, StyleFile)
            else read_style(s, size, scale) for s in styles
        ]  # fmt: skip
        style_bufs = [client_mod.ImageBuf(w, h, 3, "u8", d) for w, h, d in style_pixels]
        frames = [read_frame(image, la, read, pixel_format, precision) for la in layers]
        seq = FrameSequence(
            client, client_mod, frames, style_bufs, job["params"], temporal_weight=temporal,
            independent=independent, features=features, interactive=interactive,
        )  # fmt: skip
        failure = ""
        try:
            if interactive:
                window_class = nsg_frames.FramesWindow  # tests replace it to press Cancel
                window_class(gtk_ui(), seq).run()
            else:
                seq.run_blocking(progress)
        except Exception as exc:
            if not isinstance(exc, client_mod.NeuralStyleError):
                raise
            failure = f"Neural Style stopped at frame {seq.done + 1} of {seq.total}: {exc}"
            log_event("frames_error", error=str(exc), done=seq.done)
    finally:
        client.close()
    if seq.done == 0:
        if failure:
            raise PluginError(failure)
        raise UserCancelled()
    name = group_name([s.get_name() for s in styles], seq.done, seq.total)
    result = insert_frames(image, seq, name, bool(config.get_property("new-image")))
    if failure:  # the frames done are in the result; say why the others are not
        raise PluginError(f"{failure}\nThe {seq.done} frames done were kept ({name}).")
    return result


__all__ = ["insert_frames", "read_frame", "stylize_frames"]
