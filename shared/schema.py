"""The job parameters: the one place for each one's name, type, default, bounds and help,
and for the presets.

Standard library only: the plug-in carries a copy (as ``nsg_shared.schema``). The daemon's
``StyleParams`` is built from :func:`from_dict`; the protocol checks a submit's ``params``
with :func:`check`; the CLI derives its ``stylize`` options from :data:`FIELDS`; the plug-in
takes its ranges, defaults and preset figures from here. Bounds come from :mod:`limits`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import limits
from .errors import ErrorCode, NeuralStyleError

INT, FLOAT, BOOL, ENUM, INTS, FLOATS = "int", "float", "bool", "enum", "ints", "floats"
#: The key that names a preset in a parameter map (not a field: it sets other fields).
PRESET_KEY = "preset"


@dataclass(frozen=True)
class Param:
    """One job parameter. For lists (``ints``/``floats``) ``lo``/``hi`` bound each item and
    ``min_len``/``max_len`` the length; ``optional`` means None is allowed."""

    name: str
    kind: str
    default: Any
    help: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    optional: bool = False
    min_len: int = 0
    max_len: int = 0

    def bounds(self) -> str:
        if self.kind in (ENUM, BOOL):
            return ""
        return f"[{_g(self.lo)}, {_g(self.hi)}]"


def _g(value: float | None) -> str:
    if value is None:
        return ""
    return str(value) if isinstance(value, int) else f"{value:g}"


_WEIGHT: dict[str, Any] = {"kind": FLOAT, "lo": 0.0, "hi": limits.MAX_WEIGHT}

#: Every job parameter, in the order the engine's StyleParams declares them. Defaults follow
#: TensorFlow's style-transfer tutorial (the plain method, ``--preset none``).
FIELDS: tuple[Param, ...] = (
    Param("size", INT, 512, "long side in px the optimisation works at",
          limits.MIN_WORK_SIDE, limits.MAX_WORK_SIDE),
    Param("iterations", INT, 300, "optimiser steps: Adam updates or L-BFGS evaluations",
          limits.MIN_ITERATIONS, limits.MAX_ITERATIONS),
    Param("optimizer", ENUM, "adam", "optimiser", choices=("adam", "lbfgs")),
    Param("content_weight", default=1e4, help="α, the content loss's weight", **_WEIGHT),
    Param("style_weight", default=1e-2, help="β, the style loss's weight", **_WEIGHT),
    Param("tv_weight", default=30.0, help="total-variation (smoothness) weight", **_WEIGHT),
    Param("init", ENUM, "content", "starting image; matched = the content with the style's "
          "colour mean and covariance", choices=("content", "noise", "style", "matched")),
    Param("seed", INT, None, "random seed (default: a fresh one)", 0, limits.MAX_SEED,
          optional=True),
    Param("learning_rate", FLOAT, 0.02, "Adam step size in [0, 1] pixel units",
          limits.MIN_LEARNING_RATE, limits.MAX_LEARNING_RATE),
    Param("keep_size", BOOL, True,
          "resize the result back to the content's size when the working size is smaller"),
    Param("style_blend", FLOATS, None, "weights of several styles, e.g. 0.7,0.3 "
          "(normalised; default equal)", 0.0, limits.MAX_BLEND_WEIGHT, optional=True,
          min_len=1, max_len=limits.MAX_STYLES),
    Param("preview_every", INT, 0, "attach a preview to every N-th step (0 = never)",
          0, limits.MAX_PREVIEW_EVERY),
    Param("preserve_color", ENUM, "none", "keep the content's colours: luminance transfers "
          "on luminance only; histogram matches the style's colours to the content first",
          choices=("none", "luminance", "histogram")),
    Param("style_scale", FLOAT, 1.0, "style size relative to the working size; "
          "2 = bigger strokes", limits.MIN_STYLE_SCALE, limits.MAX_STYLE_SCALE),
    Param("scales", INTS, None, "coarse-to-fine long sides ending at size, e.g. 256,512 "
          "('auto' or [] = halving ladder; default: one scale)",
          limits.MIN_WORK_SIDE, limits.MAX_WORK_SIDE, optional=True, max_len=limits.MAX_SCALES),
    Param("pooling", ENUM, "max", "VGG pooling", choices=("max", "avg")),
    Param("padding", ENUM, "zero", "convolution padding", choices=("zero", "reflect")),
    Param("precision", ENUM, "fp32", "convolution precision: bf16 (first layer, Grams and "
          "losses stay fp32), auto (bf16 on CPUs with bf16 kernels, where it was validated; "
          "else fp32; what the presets use)", choices=("fp32", "bf16", "auto")),
    Param("ema", FLOAT, 0.0, "iterate averaging decay, e.g. 0.9; 0 = off",
          0.0, limits.MAX_DECAY),
    Param("adam_beta1", FLOAT, 0.99, "Adam's first-moment decay; the default is the tutorial's",
          0.0, limits.MAX_DECAY),
    Param("adam_beta2", FLOAT, 0.999, "Adam's second-moment decay; the default is the "
          "tutorial's", 0.0, limits.MAX_DECAY),
    Param("lr_schedule", ENUM, "constant", "Adam's step size over each scale: constant or "
          "cosine, annealed to 0", choices=("constant", "cosine")),
    Param("adam_tail", FLOAT, 0.0, "L-BFGS only: share of the steps run as Adam steps at "
          "the finest scale after L-BFGS (learning_rate, adam_beta1, lr_schedule; its step "
          "warmed up); 0 = L-BFGS to the end", 0.0, limits.MAX_ADAM_TAIL),
    Param("polish", FLOAT, 0.0, "L-BFGS jobs with adam_tail: share of the Adam tail's steps "
          "run instead as L-BFGS evaluations from Adam's end point; 0 = none",
          0.0, limits.MAX_POLISH),
    Param("carry", FLOAT, 1.0, "ladders: share of the coarser scales' change to the photo "
          "carried into the finest scale's start (1 = all of their repainting; lower keeps "
          "the finest scale nearer the photo)", 0.0, 1.0),
    Param("fine_share", FLOAT, None, "ladders: share of the (L-BFGS) steps at the finest "
          "scale, the rest shared by the coarser ones (default: 0.5 for L-BFGS, 0.6 for Adam)",
          0.05, 0.95, optional=True),
    Param("style_norm", ENUM, "none", "style loss per layer: none (the tutorial's) or layer "
          "(each layer's term normalised by its mean absolute Gram difference)",
          choices=("none", "layer")),
    Param("tail_scales", ENUM, "finest", "ladders with adam_tail: the Adam tail at the finest "
          "scale only, or at every scale (each scale's steps: L-BFGS, then Adam)",
          choices=("finest", "all")),
    Param("parametrization", ENUM, "pixels", "what the optimiser moves: the pixels, a "
          "Laplacian pyramid of the image (coarse bands move faster), or the pyramid in "
          "decorrelated colour", choices=("pixels", "pyramid", "pyramid_color")),
    Param("pyramid_levels", INT, 4, "pyramid parametrisations: levels, the finest included "
          "(1 with pyramid_color: decorrelated colour alone)", 1, 8),
    Param("pyramid_decay", FLOAT, 0.7, "pyramid parametrisations: level k's coefficients "
          "are scaled by decay^k (1: Lucid's 1/f² preconditioning; 0.5: almost none)",
          0.25, 2.0),
)  # fmt: skip
BY_NAME: dict[str, Param] = {p.name: p for p in FIELDS}

#: The presets' optimiser: L-BFGS-B over the automatic coarse-to-fine ladder (half the
#: evaluations at the coarser scales, each finer scale starting from the photo plus the
#: coarser result's change to it). Chosen on the trained stand-in (docs/performance.md): at
#: 128 px, 300 L-BFGS evaluations reach 5.81e6 with the photo's layout kept (structure
#: 0.96), where Adam β1 0.9 with a cosine step from 0.02 reaches 7.47e6 and the tutorial's
#: Adam needs ~900 steps; the former presets (Adam, cosine from 0.1) made coloured confetti.
#: ``precision: auto``: bf16 on CPUs with bf16 kernels (validated for both optimisers).
_LBFGS_LADDER = {"optimizer": "lbfgs", "scales": [], "precision": "auto"}
#: ... and, for `balanced` and `quality`, the tutorial's Adam (lr 0.02, β1 0.99) at the finest
#: scale after it (``adam_tail``): L-BFGS stalls in the basin it finds within ~100 evaluations
#: at 512 px, where Adam, its step warmed up, goes on down to and below the tutorial's
#: 1000-step loss (docs/performance.md). `balanced`'s 520 steps (52 + 52 + 104 L-BFGS,
#: 312 Adam): on a 2-core Zen 4 with AVX512_BF16, bf16, 500 steps ended +0.5 % above the
#: tutorial's loss and 520 −1.6 % (AVX2-only EPYC, fp32: 500 steps 2.987e6 against 2.998e6);
#: with the bf16 Gram gradient 520 fit in a quarter of the tutorial's time.
PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"size": 384, "iterations": 100, **_LBFGS_LADDER},
    "balanced": {"size": 512, "iterations": 520, "adam_tail": 0.6, **_LBFGS_LADDER},
    "quality": {"size": 1024, "iterations": 1000, "adam_tail": 0.7, **_LBFGS_LADDER},
}


class ParamError(NeuralStyleError):
    """A parameter out of its type, bounds or choices (BAD_REQUEST); ``field`` names it."""

    def __init__(self, field: str, why: str, message: str = "") -> None:
        super().__init__(ErrorCode.BAD_REQUEST, message or f"Invalid parameter {field}: {why}.")
        self.field = field
        self.why = why


def defaults() -> dict[str, Any]:
    """Every field's default (lists as lists)."""
    return {p.name: p.default for p in FIELDS}


def preset_values(name: Any) -> dict[str, Any]:
    """The parameter values of a preset (a copy; BAD_REQUEST for an unknown name)."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ParamError(
            PRESET_KEY,
            f"unknown preset {name!r}",
            f"Unknown preset {name!r}; choose one of {', '.join(PRESETS)}.",
        )
    return {k: list(v) if isinstance(v, list) else v for k, v in PRESETS[name].items()}


def check_value(param: Param, value: Any) -> None:
    """Raise ParamError unless ``value`` has the field's type and lies in its bounds."""
    if value is None and param.optional:
        return
    kind = param.kind
    if kind == ENUM:
        if value not in param.choices:  # str-valued Enum members compare equal
            raise ParamError(param.name, f"{value!r} is not one of {', '.join(param.choices)}")
    elif kind == BOOL:
        if not isinstance(value, bool):
            raise ParamError(param.name, f"{value!r} is not true or false")
    elif kind in (INT, FLOAT):
        if not _number_in(value, param, kind == INT):
            what = "an integer" if kind == INT else "a number"
            raise ParamError(param.name, f"{value!r} is not {what} in {param.bounds()}")
    else:  # lists
        if not isinstance(value, (list, tuple)):
            raise ParamError(param.name, f"{value!r} is not a list")
        if not param.min_len <= len(value) <= param.max_len:
            raise ParamError(param.name, f"needs {param.min_len} to {param.max_len} items")
        integer = kind == INTS
        for item in value:
            if not _number_in(item, param, integer):
                what = "integers" if integer else "finite numbers"
                raise ParamError(param.name, f"items must be {what} in {param.bounds()}")


def check(data: Any, *, allow_preset: bool = True) -> None:
    """Check a parameter map as given (some fields, maybe a preset): unknown keys, types,
    bounds and choices. Combinations are :func:`check_combination`'s."""
    if not isinstance(data, Mapping):
        raise ParamError("params", "not a map", "Invalid parameters: not a map.")
    known = set(BY_NAME) | ({PRESET_KEY} if allow_preset else set())
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise ParamError(
            unknown[0], "unknown parameter", f"Unknown parameter(s): {', '.join(unknown)}."
        )
    if data.get(PRESET_KEY) is not None:
        preset_values(data[PRESET_KEY])
    for name, value in data.items():
        if name != PRESET_KEY:
            check_value(BY_NAME[name], value)


def check_combination(values: Mapping[str, Any]) -> None:
    """Rules between fields, on a complete set of values."""
    if values["content_weight"] == 0 and values["style_weight"] == 0:
        raise ParamError("style_weight", "content and style weights cannot both be 0")
    scales = values["scales"]
    if scales:
        if list(scales) != sorted(set(scales)):
            raise ParamError("scales", "must increase strictly")
        if scales[-1] != values["size"]:
            raise ParamError(
                "scales",
                f"must start at >= {limits.MIN_WORK_SIDE} px and end at size ({values['size']})",
            )
        if values["iterations"] < len(scales):
            raise ParamError("iterations", "needs at least one step per scale")
    blend = values["style_blend"]
    if blend is not None and sum(blend) <= 0:
        raise ParamError("style_blend", "weights must not all be 0")


def validate(values: Mapping[str, Any]) -> None:
    """Check a complete set of values (every field): each one, then their combinations."""
    check(values, allow_preset=False)
    check_combination(values)


def from_dict(data: Mapping[str, Any]) -> dict[str, Any]:
    """Every field's value from a partial map: defaults, then the preset it names (if
    any), then its own keys; checked. Raises ParamError naming the first bad field."""
    check(data)
    values = defaults()
    if data.get(PRESET_KEY) is not None:
        values.update(preset_values(data[PRESET_KEY]))
    values.update((k, v) for k, v in data.items() if k != PRESET_KEY)
    check_combination(values)
    return values


def _number_in(value: Any, param: Param, integer: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        return False
    if not integer and not math.isfinite(value):
        return False
    lo = -math.inf if param.lo is None else param.lo
    hi = math.inf if param.hi is None else param.hi
    return lo <= value <= hi
