"""Which style a run takes: a layer, a painting file, or for a re-run without one the
remembered style layer (by tattoo, then by name) or the topmost visible other layer."""

from __future__ import annotations

import os
from typing import Any

from nsg_results import PREVIEW_LAYER_NAME, RESULT_SUFFIX, same_layer


class StyleFile:
    """A style painting to load from a file (the style-file argument)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def get_name(self) -> str:
        return os.path.splitext(os.path.basename(self.path))[0]


def style_file_of(config: Any) -> str:
    """style-file's path ('' when unset; a GFile in GIMP, a string in tests)."""
    try:
        value = config.get_property("style-file")
    except (KeyError, TypeError):
        return ""
    if value is None:
        return ""
    path = value.get_path() if hasattr(value, "get_path") else str(value)
    return path or ""


def _usable(layer: Any, drawable: Any) -> bool:
    return (
        layer is not None
        and bool(layer.is_valid())
        and not same_layer(layer, drawable)
        and not layer.get_name().endswith(RESULT_SUFFIX)
        and layer.get_name() != PREVIEW_LAYER_NAME
    )


def remembered_style(layer: Any, image: Any) -> dict[str, Any]:
    """What is kept of a style layer to find it again: its image, tattoo and name."""
    return {"image": image.get_id(), "tattoo": layer.get_tattoo(), "name": layer.get_name()}


def pick_style_layer(
    image: Any, drawable: Any, images: list[Any], memory: dict[str, Any] | None
) -> tuple[Any, str]:
    """The style layer for a re-run without one: (layer, how) or (None, "").

    In order: the remembered layer (same image and tattoo), a layer of the remembered name in
    this image, then in any open image, else the topmost visible layer of this image other
    than the one being stylized (and other than earlier results).
    """
    memory = memory or {}
    others = [img for img in images if not same_layer(img, image)]
    if memory.get("tattoo") is not None:
        for img in [image, *others]:
            if img.get_id() == memory.get("image"):
                layer = img.get_layer_by_tattoo(int(memory["tattoo"]))
                if _usable(layer, drawable):
                    return layer, "remembered"
    name = memory.get("name")
    if name:
        for img in [image, *others]:
            layer = img.get_layer_by_name(name)
            if _usable(layer, drawable):
                return layer, "remembered by name"
    for layer in image.get_layers():
        if layer.get_visible() and _usable(layer, drawable):
            return layer, "topmost visible layer"
    return None, ""
