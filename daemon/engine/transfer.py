"""``StyleTransfer``: the engine's one entry, ``stylize(content, styles, params, callback)``.

It runs the brief's method (Gatys et al.: VGG-19 features, content loss at block5_conv2,
Gram-matrix style loss at block1_conv1..block5_conv1, total variation, Adam) or L-BFGS,
calling ``callback`` with an immutable :class:`Iterate` after every step; a callback that
returns ``"stop"`` ends the run after at most one more step, and the best image so far is
returned.

Beyond the brief, behind parameters: coarse-to-fine ladders (Adam restarts at each
scale), colour preservation, several blended styles, style scale, masks, average pooling,
reflect padding and iterate averaging.

Targets (content features, style Grams) are computed once per job and scale; style Grams
are also kept in a small LRU cache across jobs (targets.GramCache), which is what makes a
warm daemon's second job with the same style start at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from neural_style.daemon.engine import color, images, inputs, tiling
from neural_style.daemon.engine.adam import AdamState, run_adam
from neural_style.daemon.engine.graphs import Functions
from neural_style.daemon.engine.ladder import ladder_sizes, scale_budgets, upsample_result
from neural_style.daemon.engine.lbfgs_run import run_lbfgs, run_lbfgs_then_adam
from neural_style.daemon.engine.params import (
    ColorMode,
    Init,
    Optimizer,
    Precision,
    StyleParams,
    StylizeResult,
    check_work_sizes,
)
from neural_style.daemon.engine.precision import (
    describe_device,
    enable_memory_growth,
    job_precision,
)
from neural_style.daemon.engine.record import Callback, RunRecord
from neural_style.daemon.engine.targets import GramCache, Targets, blend_grams
from neural_style.daemon.engine.temporal import temporal_input
from neural_style.daemon.engine.vgg import ConvWeights, VGGFeatures, load_keras_vgg19
from neural_style.daemon.engine.weights import WeightsInfo, inspect_weights, resolve_weights
from neural_style.shared import limits
from neural_style.shared.errors import ErrorCode, NeuralStyleError


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
        self._style_cache = GramCache(style_cache_size)
        self._variants: dict[tuple[str, str, str, str], Functions] = {}
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

    def functions(self, params: StyleParams) -> Functions:
        """The traced functions for the job's network variant (built once, then reused)."""
        precision = job_precision(params)
        key = (params.pooling.value, params.padding.value, precision.value, params.style_norm.value)
        if key not in self._variants:
            self._variants[key] = Functions(
                self._features_for(precision), key[0], key[1], style_norm=key[3]
            )
        return self._variants[key]

    # ------------------------------------------------------------------ tiling
    def tile_for(self, height: int, width: int) -> int | None:
        """Tile side for an image this big, or None to run it whole (see tiling.py)."""
        return tiling.auto_tile(height, width, budget=self.tile_budget_bytes)

    def extract(
        self, fns: Functions, params: StyleParams, image: np.ndarray
    ) -> tuple[tf.Tensor, tuple[tf.Tensor, ...]]:
        """Content features and style Grams of ``image``, whole or tiled."""
        tile = self.tile_for(*image.shape[:2])
        if tile is None:
            return fns.extract(tf.constant(image[None]))
        return tiling.tiled_extract(
            self._features_for(job_precision(params)), image[None], tile,
            pooling=params.pooling.value, padding=params.padding.value,
        )  # fmt: skip

    def loss_and_grad(
        self,
        fns: Functions,
        params: StyleParams,
        x: tf.Tensor,
        content_target: tf.Tensor,
        grams: tuple[tf.Tensor, ...],
        weights: tf.Tensor,
    ) -> tuple[tf.Tensor, ...]:
        """Loss terms, gradient and x's content features, whole or tiled."""
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
        fns: Functions,
        variant: tuple[str, ...],
        params: StyleParams,
    ) -> tuple[tuple[tf.Tensor, ...], bool]:
        """Gram targets of one style image resized to ``long_side``; (grams, cache_hit)."""
        key = GramCache.key(style_rgb, long_side, variant)
        cached = self._style_cache.get(key)
        if cached is not None:
            return cached, True
        h, w = style_rgb.shape[:2]
        resized = images.resize(style_rgb, images.fit_long_side(w, h, long_side))
        _, grams = self.extract(fns, params, resized)
        self._style_cache.put(key, grams)
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
        content_feats = None if defer_content else self.extract(fns, params, content_rgb)[0]
        found = [self.style_grams(s, style_long_side, fns, variant, params) for s in style_rgbs]
        grams = blend_grams([g for g, _ in found], blend)
        return Targets(content_feats, grams), all(hit for _, hit in found)

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
        style_rgbs = inputs.style_inputs(styles)
        check_work_sizes(content, style_rgbs, params)
        if mask is not None:
            mask = images.as_hwc(mask, "mask")
        blend = inputs.blend_weights(params, len(style_rgbs))
        rgb, alpha, was_gray = images.split_alpha(images.to_float(content))
        height, width = rgb.shape[:2]
        sizes = ladder_sizes(params, width, height)
        work = sizes[-1]

        target_rgb, style_rgbs = inputs.color_inputs(params.preserve_color, rgb, style_rgbs)
        init_rgb = inputs.init_input(init, params.preserve_color, (width, height))
        run = RunRecord(params, callback, start)
        temporal_term = temporal_input(temporal, params.preserve_color, work)
        budgets = scale_budgets(params, len(sizes))
        x: np.ndarray | None = None
        state: AdamState | None = None
        cache_hit = True
        coarse_content = target_rgb  # the previous scale's content (set at each scale)
        for size, (steps, adam_tail) in zip(sizes, budgets, strict=True):
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
                x = inputs.initial_image(params, content_k, style_rgbs[0])
            else:
                carry = params.carry if size == work else 1.0
                x = upsample_result(x, coarse_content, content_k, carry)
                # Adam starts afresh at each scale: carrying its moments over (resized)
                # measured worse, 2.6e7 vs 1.5e7 at 64 -> 128 px in the same time.
                state = None
            coarse_content = content_k
            run.scale = max(size)
            run.temporal = temporal_term if size == work else None
            if params.optimizer is Optimizer.ADAM:
                x, state = run_adam(self, x, state, targets, params, steps, run)
            elif adam_tail:
                x = run_lbfgs_then_adam(self, x, targets, params, steps, adam_tail, run)
            else:
                x, _, _ = run_lbfgs(self, x, targets, params, steps, run)
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
            out_rgb = inputs.composite(out_rgb, base, mask)
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
