"""The style-transfer engine: images + parameters in, image + statistics out.

``StyleTransfer.stylize(content, styles, params, callback)`` runs the brief's method
(Gatys et al.: VGG-19 features, content loss at block5_conv2, Gram-matrix style loss at
block1_conv1..block5_conv1, total variation, Adam) or L-BFGS, calling ``callback`` with an
immutable :class:`Iterate` after every step; a callback that returns ``"stop"`` ends the
run after at most one more step, and the best image so far is returned.

Beyond the brief, behind parameters: coarse-to-fine ladders (Adam restarts at each
scale), colour preservation, several blended styles, style scale, masks, average pooling,
reflect padding and iterate averaging.

Targets (content features, style Grams) are computed once per job and scale; style Grams
are also kept in a small LRU cache across jobs (keyed by the style's pixels, size and
network variant), which is what makes a warm daemon's second job with the same style start
at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from neural_style.daemon import color, images, lbfgs, tiling
from neural_style.daemon.losses import (
    content_loss,
    gram_matrix,
    style_loss,
    temporal_loss,
    tv_loss,
)
from neural_style.daemon.params import (
    STOP,
    ColorMode,
    Init,
    Iterate,
    Optimizer,
    Precision,
    Schedule,
    StyleParams,
    StylizeResult,
    check_work_sizes,
)
from neural_style.daemon.vgg import (
    CONTENT_LAYERS,
    STYLE_LAYERS,
    ConvWeights,
    VGGFeatures,
    load_keras_vgg19,
)
from neural_style.daemon.weights import WeightsInfo, inspect_weights, resolve_weights
from neural_style.shared import limits
from neural_style.shared.errors import ErrorCode, NeuralStyleError

Callback = Callable[[Iterate], "str | None"]

#: Adam's second-moment decay and epsilon: TensorFlow's tutorial (β2 0.999, ε 0.1); β1 and the
#: step size are parameters (StyleParams.adam_beta1, learning_rate, lr_schedule).
ADAM_BETA2 = 0.999
ADAM_EPSILON = 0.1

_IMAGE = tf.TensorSpec((1, None, None, 3), tf.float32)
_SCALAR = tf.TensorSpec((), tf.float32)
_CONTENT = tf.TensorSpec((1, None, None, None), tf.float32)
_GRAMS = tuple(tf.TensorSpec((1, None, None), tf.float32) for _ in STYLE_LAYERS)
_WEIGHTS = tf.TensorSpec((3,), tf.float32)


@dataclass(frozen=True)
class Targets:
    """What the generated image is compared with, for one job at one working size."""

    content: tf.Tensor | None
    """(1, h, w, C) block5_conv2 features of the content; None = take them from the first
    step, whose image is the content itself (saves one forward pass per job)."""
    grams: tuple[tf.Tensor, ...]  # (1, C, C) blended style Grams, one per style layer


@dataclass
class _AdamState:
    m: tf.Tensor
    v: tf.Tensor
    t: int
    ema: tf.Tensor | None = None


def has_fast_bf16() -> bool:
    """True where convolutions have native bf16 kernels: Ampere or newer GPUs, or CPUs with
    AVX512_BF16 / AMX. Elsewhere TensorFlow emulates bf16, several times slower."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get(
            "compute_capability", (0, 0)
        )
        return tuple(capability) >= (8, 0)
    return _cpu_has_bf16()


@functools.cache
def _cpu_has_bf16() -> bool:
    """Read once: resolve_precision runs for every job, scale and (tiled) step."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: Precision) -> Precision:
    """``auto`` -> bf16 where it has been validated: CPUs with native bf16 kernels
    (AVX512_BF16 / AMX), for Adam and for L-BFGS. There the bench measured bf16 convolutions
    (first layer and all Grams and losses in fp32) ~1.8x faster per step, Adam's final fp32
    loss within 2 % of an fp32 run, and L-BFGS's line search unharmed by bf16 gradients
    (docs/performance.md, "Precision": each preset's fp32 and bf16 rows). Everywhere else fp32:
    GPUs (not measured yet) and CPUs that would emulate bf16. Explicit choices are kept."""
    if precision is not Precision.AUTO:
        return precision
    if not tf.config.list_physical_devices("GPU") and _cpu_has_bf16():
        return Precision.BF16
    return Precision.FP32


def job_precision(params: StyleParams) -> Precision:
    """What this job's convolutions run in (``auto`` resolved here), its Adam tail's too."""
    return resolve_precision(params.precision)


def has_adam_tail(params: StyleParams) -> bool:
    """An L-BFGS job whose finest scale ends in Adam steps (``adam_tail``)."""
    return params.optimizer is Optimizer.LBFGS and params.adam_tail > 0


def tail_params(params: StyleParams) -> StyleParams:
    """The parameters the Adam tail runs with: the job's own, as an Adam job."""
    return dataclasses.replace(params, optimizer=Optimizer.ADAM, adam_tail=0.0)


def split_tail(steps: int, share: float, keep: int = 1) -> tuple[int, int]:
    """(L-BFGS evaluations, Adam steps) of a job of ``steps`` with an Adam tail of ``share``;
    L-BFGS keeps at least ``keep`` (one per scale: its last gradient warms Adam up)."""
    adam = max(0, min(steps - keep, round(steps * share)))
    return steps - adam, adam


#: The Adam tail's step size ramps up from 0 over this many steps (at most a third of the
#: tail). Started cold (moments 0) at full size from an L-BFGS iterate, Adam's first steps
#: move every pixel by about the step size and undo much of what L-BFGS did (measured: 4.8e6
#: -> 8.4e6 at 256 px). With its second moment warmed (below) a short ramp is enough: after
#: 200 L-BFGS evaluations at 512 px and 200 Adam steps, ramps of 1, 15, 40 and 100 steps
#: reached 3.27e6, 3.26e6, 3.31e6 and 3.42e6 (docs/performance.md, "Optimisers").
ADAM_TAIL_RAMP = 15
#: ... and its step counter starts here, so that Keras' bias corrections are ~1: its second
#: moment starts at the square of L-BFGS's last gradient rather than at 0.
ADAM_TAIL_T0 = 1000


def tail_schedule(lr: float, schedule: Schedule, steps: int) -> list[float]:
    """The Adam tail's step sizes: :func:`adam_schedule`, ramped up linearly over the first
    ``min(ADAM_TAIL_RAMP, steps // 3)`` steps."""
    ramp = max(1, min(ADAM_TAIL_RAMP, steps // 3))
    return [a * min(1.0, (k + 1) / ramp) for k, a in enumerate(adam_schedule(lr, schedule, steps))]


def enable_memory_growth() -> None:
    """Let TensorFlow take GPU memory as needed instead of all of it at start: the daemon
    shares the GPU with GIMP and the desktop. Must run before the GPU is first used."""
    for gpu in tf.config.list_physical_devices("GPU"):
        with contextlib.suppress(RuntimeError):  # already initialised: too late, harmless
            tf.config.experimental.set_memory_growth(gpu, True)


def describe_device() -> str:
    """Human-readable device TensorFlow will use ("GPU:0 (name)" or "CPU (N cores)")."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU:0 ({details.get('device_name', 'GPU')})"
    return f"CPU ({os.cpu_count()} cores)"


def adam_update(x, m, v, grad, t, lr, beta1):  # type: ignore[no-untyped-def]
    """Keras' Adam update (ε added to the uncorrected √v, as the tutorial's
    ``tf.keras.optimizers.Adam`` does), then clip to [0, 1]. ``lr`` and ``beta1`` are
    tensors so that a schedule does not re-trace."""
    m = m + (grad - m) * (1.0 - beta1)
    v = v + (tf.square(grad) - v) * (1.0 - ADAM_BETA2)
    alpha = lr * tf.sqrt(1.0 - tf.pow(ADAM_BETA2, t)) / (1.0 - tf.pow(beta1, t))
    x_new = tf.clip_by_value(x - alpha * m / (tf.sqrt(v) + ADAM_EPSILON), 0.0, 1.0)
    return x_new, m, v


#: The update alone, for the tiled path (the gradient comes from tiling.py). Compiling it
#: with XLA (one fused kernel instead of a dozen element-wise ops) measured no faster inside
#: the engine's step (512x341, 2-core CPU: 1.078 vs 1.076 of the floor), so it is not.
_adam_update = tf.function(
    adam_update, input_signature=[_IMAGE, _IMAGE, _IMAGE, _IMAGE, _SCALAR, _SCALAR, _SCALAR],
    autograph=False,
)  # fmt: skip

#: L-BFGS's correction pairs (m). 20 measured better than 10 (256 px, tubingen + starry
#: night, stand-in, 100 evaluations: 4.47e6 vs 4.55e6) at the same time per evaluation.
LBFGS_HISTORY = 20
#: ... and the pairs (2·m float32 images) are capped at this many bytes (at 4096x2731 px,
#: 20 pairs would need 5.4 GB).
LBFGS_HISTORY_BYTES = 2 * 1024**3


class _Functions:
    """The traced TensorFlow functions for one network variant (pooling, padding).

    Input signatures have free height and width, so each is traced once for every size.
    """

    def __init__(self, features: VGGFeatures, pooling: str, padding: str) -> None:
        def feats(x: tf.Tensor) -> dict[str, tf.Tensor]:
            return features(x, pooling=pooling, padding=padding)

        def losses(x, content_target, gram_targets, weights):  # type: ignore[no-untyped-def]
            f = feats(x)
            x_content = tf.cast(f[CONTENT_LAYERS[0]], tf.float32)
            c = weights[0] * content_loss(x_content, content_target)
            s = weights[1] * style_loss([gram_matrix(f[n]) for n in STYLE_LAYERS], gram_targets)
            t = weights[2] * tv_loss(x)
            return c + s + t, c, s, t, x_content

        def loss_and_grad(x, content_target, gram_targets, weights):  # type: ignore[no-untyped-def]
            """Loss terms, gradient, and x's own content features (free: already computed;
            they are the content target when x is the content image)."""
            with tf.GradientTape() as tape:
                tape.watch(x)
                total, c, s, t, x_content = losses(x, content_target, gram_targets, weights)
            return total, c, s, t, tape.gradient(total, x), x_content

        def adam_step(x, m, v, t, content_target, gram_targets, weights, lr, beta1):  # type: ignore[no-untyped-def]
            """Loss, gradient and one Adam update, fused into one graph."""
            total, c, s, tv, grad, x_content = loss_and_grad(
                x, content_target, gram_targets, weights
            )
            x_new, m, v = adam_update(x, m, v, grad, t, lr, beta1)
            return x_new, m, v, total, c, s, tv, x_content

        def extract(x: tf.Tensor) -> tuple[tf.Tensor, tuple[tf.Tensor, ...]]:
            f = feats(x)
            content = tf.cast(f[CONTENT_LAYERS[0]], tf.float32)
            return content, tuple(gram_matrix(f[name]) for name in STYLE_LAYERS)

        self.extract = tf.function(extract, input_signature=[_IMAGE], autograph=False)
        self.loss_and_grad = tf.function(
            loss_and_grad, input_signature=[_IMAGE, _CONTENT, _GRAMS, _WEIGHTS], autograph=False
        )
        self.adam_step = tf.function(
            adam_step,
            input_signature=[
                _IMAGE,
                _IMAGE,
                _IMAGE,
                _SCALAR,
                _CONTENT,
                _GRAMS,
                _WEIGHTS,
                _SCALAR,
                _SCALAR,
            ],
            autograph=False,  # no tensor-dependent Python control flow: plain tracing
        )


class StyleTransfer:
    """Owns one loaded VGG-19 feature extractor; runs one job at a time (not thread-safe)."""

    def __init__(
        self,
        features: VGGFeatures,
        weights: WeightsInfo,
        *,
        style_cache_size: int = 16,
        conv_weights: dict[str, ConvWeights] | None = None,
    ) -> None:
        self.features = features
        self.weights = weights
        self.device = describe_device()
        self._style_cache: OrderedDict[tuple[Any, ...], tuple[tf.Tensor, ...]] = OrderedDict()
        self._style_cache_size = style_cache_size
        self._variants: dict[tuple[str, str, str], _Functions] = {}
        self._conv_weights = conv_weights
        self._bf16: VGGFeatures | None = None
        #: One tile's forward+backward may use this much memory; bigger images are tiled.
        self.tile_budget_bytes = tiling.TILE_BUDGET_BYTES

    @classmethod
    def load(cls, weights: str | Path | None = None) -> StyleTransfer:
        """Resolve, check and load the weights (raises WEIGHTS_MISSING with a fix)."""
        enable_memory_growth()
        path = resolve_weights(weights)
        info = inspect_weights(path)
        try:
            conv = load_keras_vgg19(path)
        except (OSError, ValueError, KeyError) as exc:
            raise NeuralStyleError(
                ErrorCode.WEIGHTS_MISSING,
                f"Keras could not load the VGG-19 weights from {path}: {exc}.",
                "Delete the file and run `neural-style fetch-weights` again.",
            ) from None
        return cls(VGGFeatures(conv), info, conv_weights=conv)

    def functions(self, params: StyleParams) -> _Functions:
        """The traced functions for the job's network variant (built once, then reused)."""
        precision = job_precision(params)
        key = (params.pooling.value, params.padding.value, precision.value)
        if key not in self._variants:
            self._variants[key] = _Functions(self._features_for(precision), *key[:2])
        return self._variants[key]

    # ------------------------------------------------------------------ tiling
    def tile_for(self, height: int, width: int) -> int | None:
        """Tile side for an image this big, or None to run it whole (see tiling.py)."""
        return tiling.auto_tile(height, width, budget=self.tile_budget_bytes)

    def _extract_any(
        self, fns: _Functions, params: StyleParams, image: np.ndarray
    ) -> tuple[tf.Tensor, tuple[tf.Tensor, ...]]:
        tile = self.tile_for(*image.shape[:2])
        if tile is None:
            return fns.extract(tf.constant(image[None]))  # type: ignore[no-any-return]
        return tiling.tiled_extract(
            self._features_for(job_precision(params)), image[None], tile,
            pooling=params.pooling.value, padding=params.padding.value,
        )  # fmt: skip

    def _loss_and_grad_any(self, fns, params, x, content_target, grams, weights):  # type: ignore[no-untyped-def]
        tile = self.tile_for(int(x.shape[1]), int(x.shape[2]))
        if tile is None:
            return fns.loss_and_grad(x, content_target, grams, weights)
        return tiling.tiled_loss_and_grad(
            self._features_for(job_precision(params)), x, content_target, grams,
            weights, tile, pooling=params.pooling.value, padding=params.padding.value,
        )  # fmt: skip

    def _features_for(self, precision: Precision) -> VGGFeatures:
        if precision is Precision.FP32:
            return self.features
        if self._conv_weights is None:
            raise images.bad("This engine was built without its weights: fp32 only.")
        if self._bf16 is None:
            self._bf16 = VGGFeatures(self._conv_weights, compute_dtype=tf.bfloat16)
        return self._bf16

    # The plain-variant functions, for callers (benchmarks, tests) that want them directly.
    @property
    def _extract(self) -> Callable[..., Any]:
        return self.functions(StyleParams()).extract

    @_extract.setter
    def _extract(self, fn: Callable[..., Any]) -> None:
        self.functions(StyleParams()).extract = fn

    # ------------------------------------------------------------------ targets
    def style_grams(
        self,
        style_rgb: np.ndarray,
        long_side: int,
        fns: _Functions,
        variant: tuple[str, ...],
        params: StyleParams,
    ) -> tuple[tuple[tf.Tensor, ...], bool]:
        """Gram targets of one style image resized to ``long_side``; (grams, cache_hit)."""
        digest = hashlib.blake2b(style_rgb.tobytes(), digest_size=16)
        digest.update(repr(style_rgb.shape).encode())
        key = (digest.hexdigest(), long_side, variant)
        cached = self._style_cache.get(key)
        if cached is not None:
            self._style_cache.move_to_end(key)
            return cached, True
        h, w = style_rgb.shape[:2]
        resized = images.resize(style_rgb, images.fit_long_side(w, h, long_side))
        _, grams = self._extract_any(fns, params, resized)
        self._style_cache[key] = grams
        while len(self._style_cache) > self._style_cache_size:
            self._style_cache.popitem(last=False)
        return grams, False

    def targets(
        self,
        content_rgb: np.ndarray,
        style_rgbs: Sequence[np.ndarray],
        blend: Sequence[float],
        style_long_side: int,
        params: StyleParams | None = None,
        defer_content: bool = False,
    ) -> tuple[Targets, bool]:
        """Content features and the blend of the styles' Grams; (targets, all cached).

        ``defer_content``: the optimisation starts from this very content image, so its
        first step computes the content features anyway; skip the separate pass.
        """
        params = params or StyleParams()
        fns = self.functions(params)
        precision = job_precision(params)
        variant = (params.pooling.value, params.padding.value, precision.value)
        content_feats = None if defer_content else self._extract_any(fns, params, content_rgb)[0]
        blended: list[tf.Tensor] | None = None
        hits = []
        for style, weight in zip(style_rgbs, blend, strict=True):
            grams, hit = self.style_grams(style, style_long_side, fns, variant, params)
            hits.append(hit)
            scaled = [g * weight for g in grams]
            blended = (
                scaled if blended is None else [a + b for a, b in zip(blended, scaled, strict=True)]
            )
        assert blended is not None
        return Targets(content_feats, tuple(blended)), all(hits)

    # ------------------------------------------------------------------ the job
    def stylize(
        self,
        content: np.ndarray,
        styles: Sequence[np.ndarray],
        params: StyleParams,
        callback: Callback | None = None,
        mask: np.ndarray | None = None,
        init: np.ndarray | None = None,
        temporal: Any = None,
    ) -> StylizeResult:
        """Stylize ``content`` (HxW or HxWxC, C in 1..4; uint8/uint16/float32) after ``styles``.

        Alpha is kept untouched, gray content comes back gray, and the result has the
        content's dtype and channels; its size is the content's when ``params.keep_size``,
        else the working size. ``mask`` (HxW, 1 = stylize, fractions blend) composites the
        result over the content, so where it is 0 the content is returned unchanged.
        ``init`` (the content's size; e.g. an earlier result, to refine it) is the starting
        image instead of ``params.init``: the first scale starts from it, resized.
        ``temporal`` (frames mode: a :class:`~neural_style.daemon.frames.temporal.TemporalTerm`
        at the working size) adds Ruder et al.'s temporal loss at the finest scale.
        """
        start = time.perf_counter()
        content = images.as_hwc(content, "content image")
        if not styles:
            raise images.bad("At least one style image is needed.")
        if len(styles) > limits.MAX_STYLES:
            raise images.bad(f"At most {limits.MAX_STYLES} style images can be blended.")
        style_rgbs = [
            images.split_alpha(images.to_float(images.as_hwc(s, f"style image {i + 1}")))[0]
            for i, s in enumerate(styles)
        ]
        check_work_sizes(content, style_rgbs, params)
        if mask is not None:
            mask = images.as_hwc(mask, "mask")
        blend = _blend(params, len(style_rgbs))
        rgb, alpha, was_gray = images.split_alpha(images.to_float(content))
        height, width = rgb.shape[:2]
        longest = max(width, height)
        ladder = sorted({min(side, longest) for side in params.ladder()})
        sizes = [images.fit_long_side(width, height, side) for side in ladder]
        work = sizes[-1]

        target_rgb, style_rgbs = _color_inputs(params.preserve_color, rgb, style_rgbs)
        init_rgb = _init_input(init, params.preserve_color, (width, height))
        run = _Run(params, callback, start)
        temporal_term = _temporal_input(temporal, params.preserve_color, work)
        lbfgs_total, adam_tail = (
            split_tail(params.iterations, params.adam_tail, len(sizes))
            if has_adam_tail(params)
            else (params.iterations, 0)
        )
        budgets = split_iterations(lbfgs_total, len(sizes), FINE_SHARE[params.optimizer])
        x: np.ndarray | None = None
        state: _AdamState | None = None
        cache_hit = True
        coarse_content = target_rgb  # the previous scale's content (set at each scale)
        for size, steps in zip(sizes, budgets, strict=True):
            content_k = images.resize(target_rgb, size)
            style_side = int(
                np.clip(round(max(size) * params.style_scale), 16, 2 * limits.MAX_WORK_SIDE)
            )
            first_from_content = x is None and init_rgb is None and params.init is Init.CONTENT
            targets, hit = self.targets(
                content_k, style_rgbs, blend, style_side, params, defer_content=first_from_content
            )
            cache_hit = cache_hit and hit
            if x is None and init_rgb is not None:
                x = images.resize(init_rgb, size)
            elif x is None:
                x = _initial_image(params, content_k, style_rgbs[0])
            else:
                x = upsample_result(x, coarse_content, content_k)
                # Adam starts afresh at each scale: carrying its moments over (resized)
                # measured worse, 2.6e7 vs 1.5e7 at 64 -> 128 px in the same time.
                state = None
            coarse_content = content_k
            run.scale = max(size)
            run.temporal = temporal_term if size == work else None
            if params.optimizer is Optimizer.ADAM:
                x, state = _run_adam(self, x, state, targets, params, steps, run)
            elif size == work and adam_tail:
                x = _run_lbfgs_then_adam(self, x, targets, params, steps, adam_tail, run)
            else:
                x, _, _ = _run_lbfgs(self, x, targets, params, steps, run)
            if run.stopped:
                break
        assert x is not None
        out_rgb = images.resize(x, work)
        base = rgb if params.keep_size else images.resize(rgb, work)
        if params.keep_size and (width, height) != work:
            out_rgb = images.resize(out_rgb, (width, height))
        elif not params.keep_size and alpha is not None:
            alpha = images.resize(alpha, work)
        if params.preserve_color is ColorMode.LUMINANCE:
            out_rgb = color.recombine_luminance(out_rgb, base)
        if mask is not None:
            out_rgb = _composite(out_rgb, base, mask)
        result = images.join_alpha(out_rgb, alpha, was_gray)
        return StylizeResult(
            image=images.from_float(result, content.dtype),
            iterates=run.iterates,
            stopped=run.stopped,
            elapsed=time.perf_counter() - start,
            style_cache_hit=cache_hit,
            work_size=work,
            precision=job_precision(params).value,
        )


def _color_inputs(
    mode: ColorMode, content_rgb: np.ndarray, style_rgbs: list[np.ndarray]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """What the optimisation sees: luminance images, colour-matched styles, or as is."""
    if mode is ColorMode.HISTOGRAM:
        return content_rgb, [color.match_color(s, content_rgb) for s in style_rgbs]
    if mode is ColorMode.LUMINANCE:
        content_y = color.luminance(content_rgb)
        styles = [
            color.gray_rgb(color.match_luminance(color.luminance(s), content_y)) for s in style_rgbs
        ]
        return color.gray_rgb(content_y), styles
    return content_rgb, style_rgbs


def _init_input(
    init: np.ndarray | None, mode: ColorMode, size: tuple[int, int]
) -> np.ndarray | None:
    """The starting image as the optimisation sees it (RGB, luminance when that mode)."""
    if init is None:
        return None
    init = images.as_hwc(init, "init image")
    if (init.shape[1], init.shape[0]) != size:
        raise images.bad(
            f"The init image is {init.shape[1]}x{init.shape[0]}; it must have the "
            f"content's size {size[0]}x{size[1]}."
        )
    init_rgb = images.split_alpha(images.to_float(init))[0]
    if mode is ColorMode.LUMINANCE:
        return color.gray_rgb(color.luminance(init_rgb))
    return init_rgb


@dataclass(frozen=True)
class _Temporal:
    """The temporal term as the graph takes it."""

    target: tf.Tensor  # (1, h, w, 3)
    mask: tf.Tensor  # (1, h, w, 1)
    weight: tf.Tensor  # scalar


def _temporal_input(term: Any, mode: ColorMode, work: tuple[int, int]) -> _Temporal | None:
    """``term`` (target, mask, weight) checked against the working size, in the colours the
    optimisation sees (luminance when that mode); None without a term or with weight 0."""
    if term is None or not term.weight:
        return None
    target = np.asarray(term.target, np.float32)[..., :3]
    mask = np.asarray(term.mask, np.float32)
    if target.shape[:2] != (work[1], work[0]) or mask.shape[:2] != (work[1], work[0]):
        raise images.bad(
            f"The temporal target is {target.shape[1]}x{target.shape[0]}; it must have the "
            f"working size {work[0]}x{work[1]}."
        )
    if mode is ColorMode.LUMINANCE:
        target = color.gray_rgb(color.luminance(target))
    return _Temporal(
        tf.constant(target[None]), tf.constant(mask.reshape(1, work[1], work[0], 1)),
        tf.constant(float(term.weight), tf.float32),
    )  # fmt: skip


@tf.function(input_signature=[_IMAGE, _IMAGE, tf.TensorSpec((1, None, None, 1)), _SCALAR])
def _temporal_value_and_grad(x, target, mask, weight):  # type: ignore[no-untyped-def]
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = weight * temporal_loss(x, target, mask)
    return value, tape.gradient(value, x)


def _add_temporal(run: _Run, x: tf.Tensor, out: tuple[Any, ...]) -> tuple[Any, ...]:
    """A loss evaluation's (total, c, s, tv, grad, x_content) with the run's temporal term
    added to the total and the gradient (the other terms as they were)."""
    term = run.temporal
    if term is None:
        return out
    total, c, s, tv, grad, x_content = out
    value, g = _temporal_value_and_grad(x, term.target, term.mask, term.weight)
    return total + value, c, s, tv, grad + tf.cast(g, grad.dtype), x_content


def _blend(params: StyleParams, count: int) -> list[float]:
    weights = list(params.style_blend) if params.style_blend else [1.0] * count
    if len(weights) != count:
        raise images.bad(
            f"style_blend has {len(weights)} weights but {count} style image(s) were given."
        )
    total = sum(weights)
    return [w / total for w in weights]


def _composite(stylized: np.ndarray, original: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = images.to_float(mask)
    if m.shape[2] != 1:  # an RGB(A) mask: its luma
        m = (images.split_alpha(m)[0] @ images.LUMA)[:, :, None]
    m = images.resize(m, (stylized.shape[1], stylized.shape[0]))
    return m * stylized + (1.0 - m) * original


def _initial_image(params: StyleParams, content: np.ndarray, style: np.ndarray) -> np.ndarray:
    if params.init is Init.CONTENT:
        return content
    if params.init is Init.NOISE:
        rng = np.random.default_rng(params.seed)
        return rng.uniform(0.0, 1.0, content.shape).astype(np.float32)
    return images.resize(style, (content.shape[1], content.shape[0]))


def _run_adam(
    engine: StyleTransfer,
    x0: np.ndarray,
    state: _AdamState | None,
    targets: Targets,
    params: StyleParams,
    steps: int,
    run: _Run,
    schedule: list[float] | None = None,
) -> tuple[np.ndarray, _AdamState]:
    """``steps`` Adam updates from ``x0`` (and ``state``, else fresh moments); the step sizes
    are ``schedule`` or else the job's own (adam_schedule)."""
    fns = engine.functions(params)
    weights = _loss_weights(params)
    x = tf.constant(x0[None])
    if state is None:
        state = _AdamState(tf.zeros_like(x), tf.zeros_like(x), 0)
    m, v = state.m, state.v
    beta1 = tf.constant(params.adam_beta1, tf.float32)
    if schedule is None:
        schedule = adam_schedule(params.learning_rate, params.lr_schedule, steps)
    decay = params.ema
    ema = state.ema if decay else None
    best, best_loss = x, float("inf")
    t = state.t
    content_target, step_weights = _content_target(targets, x, weights)
    # the temporal term is added outside the fused step: the step runs unfused then
    tiled = engine.tile_for(x0.shape[0], x0.shape[1]) is not None or run.temporal is not None
    for k in range(steps):
        t += 1
        lr = tf.constant(schedule[k], tf.float32)
        if tiled:
            total, c, s, tv, grad, x_content = _add_temporal(
                run, x,
                engine._loss_and_grad_any(
                    fns, params, x, content_target, targets.grams, step_weights
                ),
            )  # fmt: skip
            x_new, m, v = _adam_update(x, m, v, grad, tf.constant(float(t)), lr, beta1)
        else:
            x_new, m, v, total, c, s, tv, x_content = fns.adam_step(
                x,
                m,
                v,
                tf.constant(float(t)),
                content_target,
                targets.grams,
                step_weights,
                lr,
                beta1,
            )
        if targets.content is None:  # x was the content image: these are its features
            targets = Targets(x_content, targets.grams)
            content_target, step_weights = targets.content, weights
        loss = float(total)
        if loss < best_loss:  # loss was evaluated at x (before this update)
            best, best_loss = x, loss
        stop = run.report(loss, float(c), float(s), float(tv), x)
        x = x_new
        if decay:
            ema = x if ema is None else decay * ema + (1.0 - decay) * x
        if stop:
            break
    else:
        if not decay:
            # The final update is usually the best image: evaluate it so it can win.
            total, *_ = _add_temporal(
                run, x,
                engine._loss_and_grad_any(fns, params, x, content_target, targets.grams, weights),
            )  # fmt: skip
            if float(total) < best_loss:
                best = x
    result = ema if decay and ema is not None else best
    return result.numpy()[0], _AdamState(m, v, t, ema)


def _run_lbfgs_then_adam(
    engine: StyleTransfer,
    x: np.ndarray,
    targets: Targets,
    params: StyleParams,
    lbfgs_steps: int,
    adam_steps: int,
    run: _Run,
) -> np.ndarray:
    """The finest scale of an ``adam_tail`` job: L-BFGS, then Adam from its best point.

    Adam's second moment starts at the square of L-BFGS's gradient there, its first at 0,
    its step counter at ADAM_TAIL_T0 and its step size ramps up (tail_schedule): started
    cold, Adam's first steps would undo what L-BFGS found.
    """
    x, targets, grad = _run_lbfgs(engine, x, targets, params, lbfgs_steps, run)
    if run.stopped or grad is None:
        return x
    adam = tail_params(params)
    g = tf.cast(grad, tf.float32)
    state = _AdamState(tf.zeros_like(g), tf.square(g), ADAM_TAIL_T0)
    schedule = tail_schedule(adam.learning_rate, adam.lr_schedule, adam_steps)
    x, _ = _run_adam(engine, x, state, targets, adam, adam_steps, run, schedule)
    return x


def _run_lbfgs(
    engine: StyleTransfer,
    x0: np.ndarray,
    targets: Targets,
    params: StyleParams,
    steps: int,
    run: _Run,
) -> tuple[np.ndarray, Targets, tf.Tensor | None]:
    """Projected L-BFGS on [0, 1] (daemon/lbfgs.py); one step = one loss+gradient evaluation.

    Returns the best point, the targets (with the content's features filled in when they
    were deferred) and the gradient at the best point (None if nothing was evaluated)."""
    fns = engine.functions(params)
    weights = _loss_weights(params)
    history = int(np.clip(LBFGS_HISTORY_BYTES // (8 * x0.size), 3, LBFGS_HISTORY))
    best: dict[str, Any] = {"loss": float("inf"), "x": tf.constant(x0[None]), "g": None}
    current = {"targets": targets}
    evaluations = 0

    def evaluate(x: tf.Tensor) -> tuple[float, tf.Tensor]:
        nonlocal evaluations
        if evaluations >= steps:
            raise lbfgs.Stop
        evaluations += 1
        content_target, step_weights = _content_target(current["targets"], x, weights)
        total, c, s, tv, grad, x_content = _add_temporal(
            run, x,
            engine._loss_and_grad_any(fns, params, x, content_target, targets.grams,
                                      step_weights),
        )  # fmt: skip
        if current["targets"].content is None:  # the first evaluation is at the content
            current["targets"] = Targets(x_content, targets.grams)
        loss = float(total)
        if loss < best["loss"]:
            best["loss"], best["x"], best["g"] = loss, x, grad
        if run.report(loss, float(c), float(s), float(tv), x):
            raise lbfgs.Stop
        return loss, grad

    # The method gives up only where not even a gradient step decreases the loss (float32
    # round-off on a plateau): restart it from the best point while steps remain, and stop
    # when a restart itself makes no progress.
    while evaluations < steps and not run.stopped:
        before, start_loss = evaluations, best["loss"]
        lbfgs.minimize(evaluate, best["x"], history)
        if evaluations - before <= 2 or not best["loss"] < start_loss:
            break
    return best["x"].numpy()[0], current["targets"], best["g"]


def _content_target(
    targets: Targets, x: tf.Tensor, weights: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """(content target, loss weights) for the next evaluation. With the target deferred, x
    is the content image: the content term and its gradient are 0 there whatever the
    target, so evaluate with content weight 0 and a placeholder of the right rank."""
    if targets.content is not None:
        return targets.content, weights
    return tf.zeros((1, 1, 1, 1), tf.float32), weights * tf.constant([0.0, 1.0, 1.0])


def upsample_result(
    x: np.ndarray, coarse_content: np.ndarray, fine_content: np.ndarray
) -> np.ndarray:
    """The start of a finer scale: the finer content plus the coarse scale's *change* to its
    content, upsampled. Plain upsampling blurs away the photo's fine detail, which the
    content term must then rebuild at full cost (on a trained VGG the upsampled coarse
    result started the finer scale with a higher loss than the photo itself)."""
    h, w = fine_content.shape[:2]
    delta = images.resize_signed(x - coarse_content, (w, h))
    return np.clip(fine_content + delta, 0.0, 1.0).astype(np.float32)


def adam_schedule(lr: float, schedule: Schedule, steps: int) -> list[float]:
    """Adam's step size for each of ``steps`` steps. ``cosine`` anneals from ``lr`` towards 0
    (half a cosine, ending one step short of 0): the L1 total-variation term keeps a
    constant-step Adam jittering around its kinks, a shrinking step lets it settle."""
    if schedule is Schedule.CONSTANT:
        return [lr] * steps
    return [lr * 0.5 * (1.0 + math.cos(math.pi * k / steps)) for k in range(steps)]


def _loss_weights(params: StyleParams) -> tf.Tensor:
    return tf.constant([params.content_weight, params.style_weight, params.tv_weight], tf.float32)


#: Share of a coarse-to-fine job's steps that the finest scale gets, per optimiser. A coarse
#: step costs 1/4 of the next finer one. Adam (random weights, 128 px): the final loss hangs
#: on the finest scale's step count far more than on the coarse ones'. L-BFGS on the trained
#: stand-in (docs/performance.md): half the evaluations at the coarse scales.
FINE_SHARE = {Optimizer.ADAM: 0.6, Optimizer.LBFGS: 0.5}


def split_iterations(total: int, scales: int, fine_share: float = 0.6) -> list[int]:
    """Steps per scale, coarse to fine: ``fine_share`` at the finest, the rest shared
    equally by the coarser scales (remainder to the coarsest)."""
    if scales == 1:
        return [total]
    fine = max(1, round(total * fine_share))
    base, extra = divmod(total - fine, scales - 1)
    return [base + (1 if k < extra else 0) for k in range(scales - 1)] + [fine]


class _Run:
    """Bookkeeping shared by both optimisers: step count, iterates, previews, stop."""

    def __init__(self, params: StyleParams, callback: Callback | None, start: float) -> None:
        self.params = params
        self.callback = callback
        self.start = start
        self.scale = params.size
        self.step = 0
        self.iterates: list[Iterate] = []
        self.stopped = False
        #: The temporal term at the scale now running (frames mode, finest scale only).
        self.temporal: _Temporal | None = None

    def report(self, loss: float, c: float, s: float, tv: float, x: tf.Tensor) -> bool:
        """Record a step and call the callback; True when the run must stop now."""
        self.step += 1
        step = self.step
        if not np.isfinite(loss):
            raise NeuralStyleError(
                ErrorCode.INTERNAL,
                f"The loss became {loss} at step {step}: the optimisation diverged.",
                "Lower the learning rate or the style weight.",
            )
        total = self.params.iterations
        elapsed = time.perf_counter() - self.start
        it = Iterate(step, total, loss, c, s, tv, elapsed, self.scale)
        self.iterates.append(it)
        if self.callback is None:
            return False
        every = self.params.preview_every
        if every and step % every == 0:
            it = Iterate(step, total, loss, c, s, tv, elapsed, self.scale, preview=x.numpy()[0])
        if self.callback(it) == STOP and step < total:
            self.stopped = True
            return True
        return False
