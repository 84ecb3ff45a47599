"""Job parameters and per-iteration records: the engine's small public vocabulary.

Kept free of TensorFlow so the CLI, the server and the tests can build and validate
parameters without importing the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from typing import Any

import numpy as np

from neural_style.shared import limits, schema
from neural_style.shared.errors import ErrorCode, NeuralStyleError
from neural_style.shared.records import Step


class Optimizer(str, Enum):
    ADAM = "adam"
    LBFGS = "lbfgs"


class Init(str, Enum):
    CONTENT = "content"
    NOISE = "noise"
    STYLE = "style"
    MATCHED = "matched"
    """The content with the (first) style's colour mean and covariance (color.match_color)."""


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


class StyleNorm(str, Enum):
    """How the style loss weighs its layers."""

    NONE = "none"
    """The tutorial's: the mean of the layers' mean squared Gram differences."""
    LAYER = "layer"
    """Each layer's term scaled so its gradient's size does not hang on its residual's
    (losses.style_loss; whole images only: tiled ones use the plain loss)."""


class TailScales(str, Enum):
    """Where an L-BFGS job's Adam tail runs."""

    FINEST = "finest"
    ALL = "all"
    """Every scale of the ladder: L-BFGS, then Adam, on each scale's share of the steps."""


class Parametrization(str, Enum):
    """What the optimisers move (daemon/engine/pyramid.py)."""

    PIXELS = "pixels"
    PYRAMID = "pyramid"
    """A Laplacian pyramid of the image: the 1/f² preconditioning of feature visualisation."""
    PYRAMID_COLOR = "pyramid_color"
    """The pyramid in a decorrelated colour space (Lucid's ImageNet colour square root)."""


class Precision(str, Enum):
    """What the convolutions compute in; Grams and losses are always float32."""

    FP32 = "fp32"
    BF16 = "bf16"
    AUTO = "auto"
    """bf16 only where it is both faster and validated within 2 % of fp32's loss: CPUs with
    native bf16 kernels (AVX512_BF16 / AMX); fp32 elsewhere (see README, Performance)."""


#: What a callback returns to ask the engine to stop (it stops after at most one more step).
STOP = "stop"


_ENUM_FIELDS: dict[str, type[Enum]] = {
    "optimizer": Optimizer,
    "init": Init,
    "preserve_color": ColorMode,
    "pooling": Pooling,
    "padding": Padding,
    "precision": Precision,
    "lr_schedule": Schedule,
    "style_norm": StyleNorm,
    "tail_scales": TailScales,
    "parametrization": Parametrization,
}
#: Defaults from the one schema (shared/schema.py); enum fields as their enums.
_D: dict[str, Any] = schema.defaults()
_E: dict[str, Any] = {name: kind(_D[name]) for name, kind in _ENUM_FIELDS.items()}


@dataclass(frozen=True)
class StyleParams:
    """Everything that decides one stylization.

    Weights follow TensorFlow's style-transfer tutorial (content 1e4, style 1e-2, TV 30), and
    the losses are normalised so that the same weights give the same balance at any size:
    see :mod:`neural_style.daemon.engine.losses`.
    """

    size: int = _D["size"]
    """Long side, in pixels, that the optimisation works at (never above the content's)."""
    iterations: int = _D["iterations"]
    """Steps: Adam updates, or L-BFGS function+gradient evaluations."""
    optimizer: Optimizer = _E["optimizer"]
    content_weight: float = _D["content_weight"]
    style_weight: float = _D["style_weight"]
    tv_weight: float = _D["tv_weight"]
    init: Init = _E["init"]
    seed: int | None = _D["seed"]
    learning_rate: float = _D["learning_rate"]
    """Adam's step size in [0, 1] pixel units (the tutorial's 0.02)."""
    keep_size: bool = _D["keep_size"]
    """Resize the result back to the content's size when the working size is smaller."""
    style_blend: tuple[float, ...] | None = _D["style_blend"]
    """Relative weights of several styles (normalised to sum 1); None = equal."""
    preview_every: int = _D["preview_every"]
    """Attach a preview image to every N-th iterate (0 = never)."""
    preserve_color: ColorMode = _E["preserve_color"]
    style_scale: float = _D["style_scale"]
    """Style image's long side relative to the working long side (bigger = bigger strokes)."""
    scales: tuple[int, ...] | None = _D["scales"]
    """Coarse-to-fine ladder of long sides ending at ``size``; None = one scale; () = auto."""
    pooling: Pooling = _E["pooling"]
    padding: Padding = _E["padding"]
    precision: Precision = _E["precision"]
    ema: float = _D["ema"]
    """Iterate averaging: the result is an exponential moving average of the iterates with
    this decay (0 = off; e.g. 0.9)."""
    adam_beta1: float = _D["adam_beta1"]
    """Adam's first-moment decay (the tutorial's 0.99, which the presets' Adam tail keeps)."""
    adam_beta2: float = _D["adam_beta2"]
    """Adam's second-moment decay (the tutorial's 0.999)."""
    lr_schedule: Schedule = _E["lr_schedule"]
    """Adam's step size over each scale: constant (the tutorial) or cosine-annealed to 0."""
    adam_tail: float = _D["adam_tail"]
    """L-BFGS jobs: this share of the steps runs as Adam steps at the finest scale, after
    the L-BFGS ladder (which shares the rest as usual).
    L-BFGS finds the basin in few evaluations and then stalls; Adam's momentum, started from
    there with a warmed-up step, descends below it (docs/performance.md)."""
    polish: float = _D["polish"]
    """``adam_tail`` jobs: this share of the tail's steps runs as L-BFGS evaluations after
    Adam, from its end point. Started where Adam's momentum has left L-BFGS's first basin,
    L-BFGS descends faster than Adam for its first ~50 evaluations, then stalls again
    (docs/performance.md, "Other tails")."""
    carry: float = _D["carry"]
    """Ladders: the finest scale starts from its photo plus this share of the coarser
    scales' change to theirs. Their repainting moves block5_conv2's features far from the
    photo's, which the finest scale's steps then spend bringing back. 0.5 ended `balanced`
    2.7 % lower on chelsea + the scream at 512 px, 0.8 % higher on tubingen + starry night
    at 256 px (docs/performance.md), so the presets keep 1."""
    fine_share: float | None = _D["fine_share"]
    """Ladders: share of the steps (an L-BFGS job's L-BFGS steps) that the finest scale
    gets; the coarser scales share the rest. None = the optimiser's default (ladder.py)."""
    style_norm: StyleNorm = _E["style_norm"]
    """Per-layer normalisation of the style loss (crowsonkb's ScaledMSELoss); none = the
    tutorial's loss."""
    tail_scales: TailScales = _E["tail_scales"]
    """Where ``adam_tail`` runs: the finest scale only, or every scale of the ladder."""
    parametrization: Parametrization = _E["parametrization"]
    """What both optimisers move: the pixels, or a Laplacian pyramid of the image."""
    pyramid_levels: int = _D["pyramid_levels"]
    """A pyramid's levels, the finest (the image's size) included; 1 with ``pyramid_color``
    is the decorrelated colour alone."""
    pyramid_decay: float = _D["pyramid_decay"]
    """A pyramid's level k is scaled by decay^k (pyramid.py says why). 1 = Lucid's 1/f²,
    which slowed both optimisers (docs/performance.md); 0.7 = about 1/f."""

    def __post_init__(self) -> None:
        # Check the values as given (schema rules), then normalise plain strings and lists
        # (CLI, protocol) to enums and tuples.
        self.validate()
        for name, kind in _ENUM_FIELDS.items():
            object.__setattr__(self, name, kind(getattr(self, name)))
        for name in ("style_blend", "scales"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))

    def ladder(self) -> tuple[int, ...]:
        """The long sides to optimise at, coarse to fine, ending at ``size``."""
        if self.scales is None:
            return (self.size,)
        if self.scales:
            return tuple(self.scales)
        return auto_ladder(self.size)

    def validate(self) -> None:
        """Raise a BAD_REQUEST error naming the first parameter out of its range (the rules
        are shared/schema.py's)."""
        schema.validate({f.name: getattr(self, f.name) for f in fields(self)})

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
        return cls(**schema.from_dict(data))


def auto_ladder(size: int, smallest: int = 128) -> tuple[int, ...]:
    """Coarse-to-fine long sides: halve from ``size`` while the next stays >= ``smallest``.

    512 -> (128, 256, 512); 384 -> (192, 384); sizes below 2 x smallest: (size,). A coarse
    scale costs 1/4 of the next finer one and gives it a start closer to the goal.
    """
    sides = [size]
    while sides[0] // 2 >= max(smallest, limits.MIN_WORK_SIDE):
        sides.insert(0, sides[0] // 2)
    return tuple(sides)


#: The presets live in shared/schema.py (the plug-in reads its bundled copy); kept here
#: under their old names.
PRESETS: dict[str, dict[str, Any]] = schema.PRESETS
preset_values = schema.preset_values


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
    frame: dict[str, Any] = field(default_factory=dict)
    """Frames mode: ``continued`` (started from the warped previous frame), ``cut``,
    ``reliable`` and ``photometric`` (the flow's check); empty for other jobs."""


def check_work_sizes(
    content: np.ndarray, styles: list[np.ndarray], params: StyleParams
) -> tuple[int, int]:
    """The working size; bad_request naming the minimum when any scale of the content or
    a style would have a side under ``limits.MIN_WORK_SHORT_SIDE`` (VGG-19 would fail).

    Mirrors the engine's ladder and style sizing; ``StyleTransfer.stylize`` calls it first,
    so every path (daemon, ``--local``, batch) refuses such images before any TensorFlow work.
    """
    from neural_style.daemon.engine.images import fit_long_side

    least = limits.MIN_WORK_SHORT_SIDE
    height, width = content.shape[:2]
    ladder = sorted({min(side, max(width, height)) for side in params.ladder()})
    sizes = [fit_long_side(width, height, side) for side in ladder]
    for w, h in sizes:
        if min(w, h) < least:
            raise NeuralStyleError(
                ErrorCode.BAD_REQUEST,
                f"The content image ({width}x{height}) is too thin: at the working size "
                f"{max(w, h)} it would be {w}x{h}, and every side must be at least {least} "
                "pixels.",
                f"Select an area at least {least} pixels high and wide (in proportion to the "
                "size), raise the size parameter, or use fewer coarse scales.",
            )
    for i, style in enumerate(styles):
        sh, sw = style.shape[:2]
        for w, h in sizes:
            side = round(max(w, h) * params.style_scale)
            side = int(np.clip(side, 16, 2 * limits.MAX_WORK_SIDE))
            tw, th = fit_long_side(sw, sh, side)
            if min(tw, th) < least:
                raise NeuralStyleError(
                    ErrorCode.BAD_REQUEST,
                    f"Style image {i + 1} ({sw}x{sh}) is too thin: at its working size it "
                    f"would be {tw}x{th}, and every side must be at least {least} pixels.",
                    "Use a less elongated style image, or a larger style scale.",
                )
    return sizes[-1]
