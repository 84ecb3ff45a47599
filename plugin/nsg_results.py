"""Result layers: their names, and the content layer a result was made from (what Refine
continues from)."""

from __future__ import annotations

from typing import Any

#: Suffix of every result layer's name (so a re-run never takes a result as the style).
RESULT_SUFFIX = " (Neural Style)"


PREVIEW_LAYER_NAME = "Neural Style preview"


def same_layer(a: Any, b: Any) -> bool:
    """Both set and the same GIMP item (by id)."""
    return a is not None and b is not None and a.get_id() == b.get_id()


def refine_source_name(name: str) -> str | None:
    """The content layer's name in a result's name ('chelsea' from 'chelsea in the style of
    starry (Neural Style)'), or None when the layer is not a Neural Style result. GIMP adds
    ' #1' to a name already in the image: that is still a result."""
    head, sep, tail = name.rpartition(" #")
    name = head if sep and tail.isdigit() else name
    if not name.endswith(RESULT_SUFFIX):
        return None
    content, sep, _ = name.partition(" in the style of ")
    return content if sep and content else None


def find_refine_source(layers: list[Any], result: Any) -> Any:
    """The original content layer of a result layer (by name, not the result itself), or None."""
    name = refine_source_name(result.get_name())
    for layer in layers:
        if name is not None and layer.get_name() == name and not same_layer(layer, result):
            return layer
    return None


def result_name(
    content: str, styles: list[str], refined: bool = False, stopped_at: int | None = None
) -> str:
    """'chelsea in the style of starry_night (Neural Style)': a refined result is named like
    the first one (after the original content), a stopped one says at which step."""
    if refined:
        content = refine_source_name(content) or content
    stopped = f" (stopped at step {stopped_at})" if stopped_at is not None else ""
    return f"{content} in the style of {' + '.join(styles)}{stopped}{RESULT_SUFFIX}"


def refinable(drawable: Any) -> bool:
    """Whether the layer is a Neural Style result (which the refine argument continues)."""
    try:
        return refine_source_name(drawable.get_name()) is not None
    except Exception:
        return False
