"""Job parameters and per-iteration records: the engine's small public vocabulary.

Kept free of TensorFlow so the CLI, the server and the tests can build and validate
parameters without importing the model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from enum import Enum
from typing import Any

import numpy as np

from neural_style.shared import limits
from neural_style.shared.errors import ErrorCode, NeuralStyleError
from neural_style.shared.records import Step


class Optimizer(str, Enum):
    ADAM = "adam"
    LBFGS = "lbfgs"


class Init(str, Enum):
    CONTENT = "content"
    NOISE = "noise"
    STYLE = "style"


class ColorMode(str, Enum):
    """Colour preservation (Gatys et al. 2017, "Controlling Perceptual Factors")."""

    NONE = "none"
    LUMINANCE = "luminance"
    """Transfer on luminance only; the result takes the content's chroma (YIQ)."""
    HISTOGRAM = "histogram"
    """Match the style's colour mean and covariance to the content's before optimising."""


class Pooling(str, Enum):
    MAX = "max"
    AVG = "avg"


class Padding(str, Enum):
    ZERO = "zero"
    REFLECT = "reflect"


class Schedule(str, Enum):
    """Adam's step size over the steps of each scale."""

    CONSTANT = "constant"
    COSINE = "cosine"


class Precision(str, Enum):
    """What the convolutions compute in; Grams and losses are always float32."""

    FP32 = "fp32"
    BF16 = "bf16"
    AUTO = "auto"
    """bf16 only where it is both faster and validated within 2 % of fp32's loss: CPUs with
    native bf16 kernels (AVX512_BF16 / AMX); fp32 elsewhere (see README, Performance)."""


#: What a callback returns to ask the engine to stop (it stops after at most one more step).
STOP = "stop"


@dataclass(frozen=True)
class StyleParams:
    """Everything that decides one stylization.

    Weights follow TensorFlow's style-transfer tutorial (content 1e4, style 1e-2, TV 30), and
    the losses are normalised so that the same weights give the same balance at any size:
    see :mod:`neural_style.daemon.losses`.
    """

    size: int = 512
    """Long side, in pixels, that the optimisation works at (never above the content's)."""
    iterations: int = 300
    """Steps: Adam updates, or L-BFGS function+gradient evaluations."""
    optimizer: Optimizer = Optimizer.ADAM
    content_weight: float = 1e4
    style_weight: float = 1e-2
    tv_weight: float = 30.0
    init: Init = Init.CONTENT
    seed: int | None = None
    learning_rate: float = 0.02
    """Adam's step size in [0, 1] pixel units (the tutorial's 0.02)."""
    keep_size: bool = True
    """Resize the result back to the content's size when the working size is smaller."""
    style_blend: tuple[float, ...] | None = None
    """Relative weights of several styles (normalised to sum 1); None = equal."""
    preview_every: int = 0
    """Attach a preview image to every N-th iterate (0 = never)."""
    preserve_color: ColorMode = ColorMode.NONE
    style_scale: float = 1.0
    """Style image's long side relative to the working long side (bigger = bigger strokes)."""
    scales: tuple[int, ...] | None = None
    """Coarse-to-fine ladder of long sides ending at ``size``; None = one scale; () = auto."""
    pooling: Pooling = Pooling.MAX
    padding: Padding = Padding.ZERO
    precision: Precision = Precision.FP32
    ema: float = 0.0
    """Iterate averaging: the result is an exponential moving average of the iterates with
    this decay (0 = off; e.g. 0.9)."""
    adam_beta1: float = 0.99
    """Adam's first-moment decay (the tutorial's 0.99; the presets use 0.9)."""
    lr_schedule: Schedule = Schedule.CONSTANT
    """Adam's step size over each scale: constant (the tutorial) or cosine-annealed to 0."""

    def __post_init__(self) -> None:
        # Accept plain strings/lists (CLI, protocol) and normalise them.
        try:
            for name, kind in _ENUM_FIELDS.items():
                object.__setattr__(self, name, kind(getattr(self, name)))
        except ValueError as exc:
            raise NeuralStyleError(ErrorCode.BAD_REQUEST, f"Invalid parameter: {exc}.") from None
        for name in ("style_blend", "scales"):
            value = getattr(self, name)
            if value is not None:
                if not isinstance(value, (list, tuple)):
                    raise NeuralStyleError(
                        ErrorCode.BAD_REQUEST, f"Invalid parameter {name}: not a list."
                    )
                object.__setattr__(self, name, tuple(value))
        self.validate()

    def ladder(self) -> tuple[int, ...]:
        """The long sides to optimise at, coarse to fine, ending at ``size``."""
        if self.scales is None:
            return (self.size,)
        if self.scales:
            return tuple(self.scales)
        return auto_ladder(self.size)

    def validate(self) -> None:
        """Raise a BAD_REQUEST error naming the first parameter out of its range."""

        def bad(name: str, why: str) -> NeuralStyleError:
            return NeuralStyleError(ErrorCode.BAD_REQUEST, f"Invalid parameter {name}: {why}.")

        if not isinstance(self.size, int) or not (
            limits.MIN_WORK_SIDE <= self.size <= limits.MAX_WORK_SIDE
        ):
            raise bad(
                "size",
                f"{self.size!r} is not an integer in "
                f"[{limits.MIN_WORK_SIDE}, {limits.MAX_WORK_SIDE}]",
            )
        if not isinstance(self.iterations, int) or not (
            limits.MIN_ITERATIONS <= self.iterations <= limits.MAX_ITERATIONS
        ):
            raise bad(
                "iterations",
                f"{self.iterations!r} is not an integer in "
                f"[{limits.MIN_ITERATIONS}, {limits.MAX_ITERATIONS}]",
            )
        for name in ("content_weight", "style_weight", "tv_weight"):
            value = getattr(self, name)
            if not _finite_in(value, 0.0, limits.MAX_WEIGHT):
                raise bad(name, f"{value!r} is not a number in [0, {limits.MAX_WEIGHT:g}]")
        if self.content_weight == 0 and self.style_weight == 0:
            raise bad("style_weight", "content and style weights cannot both be 0")
        if not _finite_in(self.learning_rate, limits.MIN_LEARNING_RATE, limits.MAX_LEARNING_RATE):
            raise bad(
                "learning_rate",
                f"{self.learning_rate!r} is not in "
                f"[{limits.MIN_LEARNING_RATE:g}, {limits.MAX_LEARNING_RATE:g}]",
            )
        if self.seed is not None and (not isinstance(self.seed, int) or not 0 <= self.seed < 2**32):
            raise bad("seed", f"{self.seed!r} is not an integer in [0, 2^32)")
        if not isinstance(self.preview_every, int) or not 0 <= self.preview_every <= 1_000_000:
            raise bad("preview_every", f"{self.preview_every!r} is not a non-negative integer")
        if not _finite_in(self.style_scale, 0.05, 8.0):
            raise bad("style_scale", f"{self.style_scale!r} is not in [0.05, 8]")
        if not _finite_in(self.ema, 0.0, 0.999):
            raise bad("ema", f"{self.ema!r} is not in [0, 0.999]")
        if not _finite_in(self.adam_beta1, 0.0, 0.999):
            raise bad("adam_beta1", f"{self.adam_beta1!r} is not in [0, 0.999]")
        if self.scales:
            if any(not isinstance(s, int) or isinstance(s, bool) for s in self.scales):
                raise bad("scales", "long sides must be integers")
            if len(self.scales) > 8:
                raise bad("scales", "at most 8 scales")
            if list(self.scales) != sorted(set(self.scales)):
                raise bad("scales", "must increase strictly")
            if self.scales[0] < limits.MIN_WORK_SIDE or self.scales[-1] != self.size:
                raise bad(
                    "scales",
                    f"must start at >= {limits.MIN_WORK_SIDE} px and end at size ({self.size})",
                )
            if self.iterations < len(self.scales):
                raise bad("iterations", "needs at least one step per scale")
        if self.style_blend is not None:
            if not 1 <= len(self.style_blend) <= limits.MAX_STYLES:
                raise bad("style_blend", f"needs 1 to {limits.MAX_STYLES} weights")
            if any(not _finite_in(w, 0.0, 1e6) for w in self.style_blend):
                raise bad("style_blend", "weights must be finite and non-negative")
            if sum(self.style_blend) <= 0:
                raise bad("style_blend", "weights must not all be 0")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/msgpack-friendly dict (enums as their values, tuples as lists)."""
        out = asdict(self)
        for name in _ENUM_FIELDS:
            out[name] = getattr(self, name).value
        for name in ("style_blend", "scales"):
            if out[name] is not None:
                out[name] = list(out[name])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StyleParams:
        """Build from a dict, rejecting unknown keys (a typo must not pass silently).

        A ``preset`` key names a preset (see :data:`PRESETS`) whose values the other keys
        override.
        """
        kwargs = dict(data)
        preset = kwargs.pop("preset", None)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise NeuralStyleError(
                ErrorCode.BAD_REQUEST, f"Unknown parameter(s): {', '.join(unknown)}."
            )
        if preset is not None:
            kwargs = {**preset_values(preset), **kwargs}
        try:
            return cls(**kwargs)
        except TypeError as exc:  # wrong types that dataclass itself trips over
            raise NeuralStyleError(ErrorCode.BAD_REQUEST, f"Invalid parameters: {exc}.") from None


_ENUM_FIELDS: dict[str, type[Enum]] = {
    "optimizer": Optimizer,
    "init": Init,
    "preserve_color": ColorMode,
    "pooling": Pooling,
    "padding": Padding,
    "precision": Precision,
    "lr_schedule": Schedule,
}


def auto_ladder(size: int, smallest: int = 128) -> tuple[int, ...]:
    """Coarse-to-fine long sides: halve from ``size`` while the next stays >= ``smallest``.

    512 -> (128, 256, 512); 384 -> (192, 384); sizes below 2 x smallest: (size,). A coarse
    scale costs 1/4 of the next finer one and gives it a start closer to the goal.
    """
    sides = [size]
    while sides[0] // 2 >= max(smallest, limits.MIN_WORK_SIDE):
        sides.insert(0, sides[0] // 2)
    return tuple(sides)


#: The presets' optimiser: L-BFGS-B over the automatic coarse-to-fine ladder (half the
#: evaluations at the coarser scales, each finer scale starting from the photo plus the
#: coarser result's change to it). Chosen on the trained stand-in (docs/performance.md): at
#: 128 px, 300 L-BFGS evaluations reach 5.81e6 with the photo's layout kept (structure
#: 0.96), where Adam β1 0.9 with a cosine step from 0.02 reaches 7.47e6 and the tutorial's
#: Adam needs ~900 steps; the former presets (Adam, cosine from 0.1) made coloured confetti.
#: ``precision: auto`` keeps fp32 for L-BFGS (see engine.resolve_precision).
_LBFGS_LADDER = {"optimizer": "lbfgs", "scales": [], "precision": "auto"}
#: Presets: what each one sets (explicit parameters override). Times are in README.md.
PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"size": 384, "iterations": 100, **_LBFGS_LADDER},
    "balanced": {"size": 512, "iterations": 360, **_LBFGS_LADDER},
    "quality": {"size": 1024, "iterations": 800, **_LBFGS_LADDER},
}


def preset_values(name: str) -> dict[str, Any]:
    """The parameter values of a preset (BAD_REQUEST for an unknown name)."""
    try:
        return dict(PRESETS[name])
    except (KeyError, TypeError):
        raise NeuralStyleError(
            ErrorCode.BAD_REQUEST,
            f"Unknown preset {name!r}; choose one of {', '.join(PRESETS)}.",
        ) from None


def _finite_in(value: object, lo: float, hi: float) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and lo <= value <= hi
    )


#: The per-step record, defined once in shared/records.py (the client and the protocol use
#: it too); ``Iterate`` is its old name here.
Iterate = Step


@dataclass
class StylizeResult:
    """What :meth:`StyleTransfer.stylize` returns."""

    image: np.ndarray
    """Same dtype and channel layout as the content image; content's size if keep_size."""
    iterates: list[Step]
    """Every step's record (previews dropped)."""
    stopped: bool
    """True when a callback asked to stop before the last step."""
    elapsed: float
    style_cache_hit: bool = False
    """True when every style's Gram targets came from the engine's cache."""
    work_size: tuple[int, int] = (0, 0)
    """(width, height) the optimisation ran at."""
    precision: str = "fp32"
    """What the convolutions ran in ("fp32" or "bf16"): ``auto`` resolved on this device."""
