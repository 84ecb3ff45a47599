"""The job's parameters from the dialog: ranges, defaults and presets from the bundled schema,
the artist's controls (strength, blend, colour, style scale) as engine parameters, the
schema's check before sending."""

from __future__ import annotations

import json
import os
from typing import Any

from nsg_bundle import schema
from nsg_errors import PluginError
from nsg_styles import StyleFile, style_file_of

_FIELD = schema.BY_NAME


#: Engine defaults: content 1e4, style 1e-2. style-strength multiplies the style weight,
#: so the style/content ratio is strength x 1e-6.
BASE_CONTENT_WEIGHT = float(_FIELD["content_weight"].default)


BASE_STYLE_WEIGHT = float(_FIELD["style_weight"].default)


DEFAULT_ITERATIONS = int(_FIELD["iterations"].default)


MIN_ITERATIONS, MAX_ITERATIONS = int(_FIELD["iterations"].lo), int(_FIELD["iterations"].hi)


DEFAULT_MAX_SIZE = int(_FIELD["size"].default)


MIN_MAX_SIZE, MAX_MAX_SIZE = int(_FIELD["size"].lo), int(_FIELD["size"].hi)


DEFAULT_STRENGTH = 1.0


MAX_STRENGTH = schema.limits.UI_MAX_STYLE_STRENGTH


DEFAULT_BLEND = 0.5


DEFAULT_STYLE_SCALE = float(_FIELD["style_scale"].default)


MIN_STYLE_SCALE = schema.limits.UI_MIN_STYLE_SCALE


MAX_STYLE_SCALE = schema.limits.UI_MAX_STYLE_SCALE


#: preset -> what the daemon's preset sets (the schema's PRESETS). The daemon applies the
#: preset; the plug-in only needs the iteration count for its progress bar, preview rate and
#: time estimates. "custom" sends no preset: iterations as given.
PRESET_VALUES: dict[str, dict[str, Any]] = {k: dict(v) for k, v in schema.PRESETS.items()}


PRESET_ITERATIONS = {k: int(v.get("iterations", DEFAULT_ITERATIONS)) for k, v in
                     PRESET_VALUES.items()}  # fmt: skip


PRESETS = ("custom", *PRESET_ITERATIONS)


#: What a first OK runs: the quickest preset (minutes, not tens of minutes, on a laptop CPU).
DEFAULT_PRESET = "fast"


COLOR_MODES = tuple(c for c in _FIELD["preserve_color"].choices if c != "none")


def style_weights(strength: float) -> tuple[float, float]:
    """style-strength -> (content_weight, style_weight).

    The content weight stays at the engine default (1e4) and the style weight is
    1e-2 x strength, so strength 1 is the engine's default balance, 2 doubles the style's
    pull, 0.5 halves it, 0 reproduces the content (smoothed a little by the TV term).
    """
    strength = max(0.0, min(float(strength), MAX_STRENGTH))
    return BASE_CONTENT_WEIGHT, BASE_STYLE_WEIGHT * strength


def blend_weights(blend: float) -> list[float]:
    """style-blend (the second style's share, 0..1) -> the engine's style_blend [1-b, b]."""
    b = max(0.0, min(float(blend), 1.0))
    return [round(1.0 - b, 6), round(b, 6)]


def build_params(
    iterations: int,
    max_size: int,
    strength: float,
    preserve_color: bool = False,
    *,
    color_mode: str = "luminance",
    preset: str = "custom",
    style_scale: float = DEFAULT_STYLE_SCALE,
    blend: float | None = None,
) -> dict[str, Any]:
    """The job's parameter dict (keys are daemon/engine/params.py StyleParams fields, plus preset).

    * preserve-color turns colour preservation on, in ``color_mode`` ("luminance": only the
      style's luminance is transferred; "histogram": the style's colours are matched to the
      content's first);
    * ``preset`` other than "custom" sends ``preset`` and no ``iterations``: the daemon's
      preset then chooses the optimiser, the coarse-to-fine ladder and the iteration count,
      while ``size`` (max-size) stays the working size the user chose;
    * ``style_scale`` sizes the style relative to the working size (brush-stroke size);
    * ``blend`` (only with a second style) is the second style's share: style_blend [1-b, b].

    Keys are only sent when they differ from the engine's defaults, so a daemon predating a
    control still accepts the jobs that do not use it.
    """
    content_weight, style_weight = style_weights(strength)
    params: dict[str, Any] = {
        "iterations": int(iterations),
        "size": max(MIN_MAX_SIZE, min(int(max_size), MAX_MAX_SIZE)),
        "content_weight": content_weight,
        "style_weight": style_weight,
        "keep_size": True,
    }
    if preserve_color:
        if color_mode not in COLOR_MODES:
            raise PluginError(
                f"Unknown colour mode {color_mode!r}; choose one of {', '.join(COLOR_MODES)}."
            )
        params["preserve_color"] = color_mode
    preset = preset or "custom"
    if preset != "custom":
        if preset not in PRESET_ITERATIONS:
            raise PluginError(f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
        params["preset"] = preset
        del params["iterations"]
    scale = max(MIN_STYLE_SCALE, min(float(style_scale), MAX_STYLE_SCALE))
    if abs(scale - 1.0) > 1e-9:
        params["style_scale"] = round(scale, 6)
    if blend is not None:
        params["style_blend"] = blend_weights(blend)
    return params


def check_params(params: dict[str, Any]) -> None:
    """Refuse, before anything is sent, what the daemon would refuse: the schema's names,
    types, bounds and combinations (a preset's values under the given ones)."""
    try:
        schema.from_dict(params)
    except schema.ParamError as exc:
        raise PluginError(exc.message) from None


def effective_iterations(params: dict[str, Any]) -> int:
    """Steps the daemon will run: explicit iterations, else the preset's."""
    if "iterations" in params:
        return int(params["iterations"])
    return PRESET_ITERATIONS.get(params.get("preset", ""), DEFAULT_ITERATIONS)


def job_settings(config: Any) -> dict[str, Any]:
    """Read the procedure's config into what the job needs.

    Returns ``params``, ``styles`` (one or two style layers), ``endpoint``, ``max_size``,
    ``style_scale`` and ``iterations`` (the effective step count). The second style is used
    when it is set and style-blend > 0 (blend 0 = its share is nothing: not sent at all).
    """
    style_layer: Any = config.get_property("style-layer")
    if style_layer is None:
        path = style_file_of(config)
        if not path:
            raise PluginError(
                "Choose a style: a layer of any open image, or a painting with "
                "\u201cOpen painting\u2026\u201d."
            )
        style_layer = StyleFile(path)
    second = config.get_property("style-layer-2")
    blend = float(config.get_property("style-blend"))
    styles = [style_layer]
    if second is not None and blend > 0:
        styles.append(second)
    max_size = int(config.get_property("max-size"))
    style_scale = float(config.get_property("style-scale"))
    params = build_params(
        int(config.get_property("iterations")),
        max_size,
        float(config.get_property("style-strength")),
        bool(config.get_property("preserve-color")),
        color_mode=str(config.get_property("color-mode") or "luminance"),
        preset=str(config.get_property("preset") or "custom"),
        style_scale=style_scale,
        blend=blend if len(styles) == 2 else None,
    )
    params.update(extra_params())
    check_params(params)
    return {
        "params": params,
        "styles": styles,
        "endpoint": (config.get_property("endpoint") or "").strip(),
        "max_size": max_size,
        "style_scale": style_scale,
        "iterations": effective_iterations(params),
    }


def extra_params(raw: str | None = None) -> dict[str, Any]:
    """$NEURAL_STYLE_EXTRA_PARAMS as a dict (empty when unset); PluginError when malformed."""
    raw = os.environ.get("NEURAL_STYLE_EXTRA_PARAMS", "") if raw is None else raw
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise PluginError(f"NEURAL_STYLE_EXTRA_PARAMS is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise PluginError('NEURAL_STYLE_EXTRA_PARAMS must be a JSON object, e.g. {"seed": 1}.')
    return value
