"""The style-transfer engine: images + parameters in, image + statistics out.

``StyleTransfer.stylize(content, styles, params, callback)`` runs the brief's method
(Gatys et al.: VGG-19 features, content loss at block5_conv2, Gram-matrix style loss at
block1_conv1..block5_conv1, total variation, Adam) or L-BFGS, calling ``callback`` with an
immutable :class:`Iterate` after every step; a callback that returns ``"stop"`` ends the
run after at most one more step, and the best image so far is returned.

Targets (content features, style Grams) are computed once per job; style Grams are also
kept in a small LRU cache across jobs (keyed by the style's pixels and working size), which
is what makes a warm daemon's second job with the same style start at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from neural_style.daemon import images
from neural_style.daemon.losses import content_loss, gram_matrix, style_loss, tv_loss
from neural_style.daemon.params import (
    STOP,
    Init,
    Iterate,
    Optimizer,
    StyleParams,
    StylizeResult,
)
from neural_style.daemon.vgg import CONTENT_LAYERS, STYLE_LAYERS, VGGFeatures, load_keras_vgg19
from neural_style.daemon.weights import WeightsInfo, inspect_weights, resolve_weights
from neural_style.shared import limits
from neural_style.shared.errors import ErrorCode, NeuralStyleError

Callback = Callable[[Iterate], "str | None"]

#: Adam's moment decay and epsilon: TensorFlow's tutorial (β1 0.99, ε 0.1).
ADAM_BETA1 = 0.99
ADAM_BETA2 = 0.999
ADAM_EPSILON = 0.1

_IMAGE_SPEC = tf.TensorSpec((1, None, None, 3), tf.float32)
_SCALAR = tf.TensorSpec((), tf.float32)


@dataclass(frozen=True)
class Targets:
    """What the generated image is compared with, for one job at one working size."""

    content: tf.Tensor  # (1, h, w, C) block5_conv2 features of the content
    grams: tuple[tf.Tensor, ...]  # (1, C, C) blended style Grams, one per style layer


def describe_device() -> str:
    """Human-readable device TensorFlow will use ("GPU:0 (name)" or "CPU (N threads)")."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU:0 ({details.get('device_name', 'GPU')})"
    import os

    return f"CPU ({os.cpu_count()} cores)"


class StyleTransfer:
    """Owns one loaded VGG-19 feature extractor; runs one job at a time (not thread-safe)."""

    def __init__(
        self, features: VGGFeatures, weights: WeightsInfo, *, style_cache_size: int = 16
    ) -> None:
        self.features = features
        self.weights = weights
        self.device = describe_device()
        self._style_cache: OrderedDict[tuple[str, int, int], tuple[tf.Tensor, ...]] = OrderedDict()
        self._style_cache_size = style_cache_size
        self._adam_step = tf.function(
            self._adam_step_impl,
            input_signature=[
                _IMAGE_SPEC, _IMAGE_SPEC, _IMAGE_SPEC, _SCALAR,
                tf.TensorSpec((1, None, None, None), tf.float32),
                tuple(tf.TensorSpec((1, None, None), tf.float32) for _ in STYLE_LAYERS),
                tf.TensorSpec((3,), tf.float32), _SCALAR,
            ],
        )  # fmt: skip
        self._loss_and_grad = tf.function(
            self._loss_and_grad_impl,
            input_signature=[
                _IMAGE_SPEC,
                tf.TensorSpec((1, None, None, None), tf.float32),
                tuple(tf.TensorSpec((1, None, None), tf.float32) for _ in STYLE_LAYERS),
                tf.TensorSpec((3,), tf.float32),
            ],
        )
        self._extract = tf.function(self._extract_impl, input_signature=[_IMAGE_SPEC])

    @classmethod
    def load(cls, weights: str | Path | None = None) -> StyleTransfer:
        """Resolve, check and load the weights (raises WEIGHTS_MISSING with a fix)."""
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
        return cls(VGGFeatures(conv), info)

    # ------------------------------------------------------------------ TF functions
    def _extract_impl(self, image: tf.Tensor) -> tuple[tf.Tensor, tuple[tf.Tensor, ...]]:
        feats = self.features(image)
        content = tf.cast(feats[CONTENT_LAYERS[0]], tf.float32)
        return content, tuple(gram_matrix(feats[name]) for name in STYLE_LAYERS)

    def _losses(
        self,
        image: tf.Tensor,
        content_target: tf.Tensor,
        gram_targets: tuple[tf.Tensor, ...],
        weights: tf.Tensor,
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        feats = self.features(image)
        c = weights[0] * content_loss(feats[CONTENT_LAYERS[0]], content_target)
        grams = [gram_matrix(feats[name]) for name in STYLE_LAYERS]
        s = weights[1] * style_loss(grams, gram_targets)
        t = weights[2] * tv_loss(image)
        return c + s + t, c, s, t

    def _loss_and_grad_impl(self, image, content_target, gram_targets, weights):  # type: ignore[no-untyped-def]
        with tf.GradientTape() as tape:
            tape.watch(image)
            total, c, s, t = self._losses(image, content_target, gram_targets, weights)
        return total, c, s, t, tape.gradient(total, image)

    def _adam_step_impl(self, x, m, v, t, content_target, gram_targets, weights, lr):  # type: ignore[no-untyped-def]
        """One Adam update in Keras' formulation (ε added to the uncorrected √v, as the
        tutorial's ``tf.keras.optimizers.Adam`` does), then clip to [0, 1]."""
        total, c, s, tv, grad = self._loss_and_grad_impl(x, content_target, gram_targets, weights)
        m = m + (grad - m) * (1.0 - ADAM_BETA1)
        v = v + (tf.square(grad) - v) * (1.0 - ADAM_BETA2)
        alpha = lr * tf.sqrt(1.0 - tf.pow(ADAM_BETA2, t)) / (1.0 - tf.pow(ADAM_BETA1, t))
        x_new = tf.clip_by_value(x - alpha * m / (tf.sqrt(v) + ADAM_EPSILON), 0.0, 1.0)
        return x_new, m, v, total, c, s, tv

    # ------------------------------------------------------------------ targets
    def style_grams(
        self, style_rgb: np.ndarray, long_side: int
    ) -> tuple[tuple[tf.Tensor, ...], bool]:
        """Gram targets of one style image resized to ``long_side``; (grams, cache_hit)."""
        digest = hashlib.blake2b(style_rgb.tobytes(), digest_size=16)
        digest.update(repr(style_rgb.shape).encode())
        key = (digest.hexdigest(), long_side, 0)
        cached = self._style_cache.get(key)
        if cached is not None:
            self._style_cache.move_to_end(key)
            return cached, True
        h, w = style_rgb.shape[:2]
        resized = images.resize(style_rgb, images.fit_long_side(w, h, long_side))
        _, grams = self._extract(tf.constant(resized[None]))
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
    ) -> tuple[Targets, bool]:
        """Content features and the blend of the styles' Grams; (targets, all cached)."""
        content_feats, _ = self._extract(tf.constant(content_rgb[None]))
        blended: list[tf.Tensor] | None = None
        hits = []
        for style, weight in zip(style_rgbs, blend, strict=True):
            grams, hit = self.style_grams(style, style_long_side)
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
    ) -> StylizeResult:
        """Stylize ``content`` (HxW or HxWxC, C in 1..4; uint8/uint16/float32) after ``styles``.

        Alpha is kept untouched, gray content comes back gray, and the result has the
        content's dtype and channels; its size is the content's when ``params.keep_size``,
        else the working size. ``mask`` (HxW, 1 = stylize) composites the result over the
        content after optimisation.
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
        blend = self._blend(params, len(style_rgbs))
        rgb, alpha, was_gray = images.split_alpha(images.to_float(content))
        height, width = rgb.shape[:2]
        work = images.fit_long_side(width, height, min(params.size, max(width, height)))
        if min(work) < 1:
            raise images.bad("The content image is too thin to stylize.")
        content_work = images.resize(rgb, work)
        targets, cache_hit = self.targets(content_work, style_rgbs, blend, max(work))
        x0 = self._initial_image(params, content_work, style_rgbs[0])
        weights = tf.constant(
            [params.content_weight, params.style_weight, params.tv_weight], tf.float32
        )
        run = _Run(params, callback, start, max(work))
        if params.optimizer is Optimizer.ADAM:
            best = self._run_adam(x0, targets, weights, params, run)
        else:
            best = self._run_lbfgs(x0, targets, weights, params, run)
        out_rgb = best
        if params.keep_size and (width, height) != work:
            out_rgb = images.resize(out_rgb, (width, height))
        elif not params.keep_size and alpha is not None:
            alpha = images.resize(alpha, work)
        if mask is not None:
            out_rgb = self._composite(out_rgb, rgb if params.keep_size else content_work, mask)
        result = images.join_alpha(out_rgb, alpha, was_gray)
        return StylizeResult(
            image=images.from_float(result, content.dtype),
            iterates=run.iterates,
            stopped=run.stopped,
            elapsed=time.perf_counter() - start,
            style_cache_hit=cache_hit,
            work_size=work,
        )

    @staticmethod
    def _blend(params: StyleParams, count: int) -> list[float]:
        weights = list(params.style_blend) if params.style_blend else [1.0] * count
        if len(weights) != count:
            raise images.bad(
                f"style_blend has {len(weights)} weights but {count} style image(s) were given."
            )
        total = sum(weights)
        return [w / total for w in weights]

    @staticmethod
    def _composite(stylized: np.ndarray, original: np.ndarray, mask: np.ndarray) -> np.ndarray:
        m = images.to_float(images.as_hwc(mask, "mask"))
        if m.shape[2] != 1:
            m = images.split_alpha(m)[0] @ images.LUMA
            m = m[:, :, None]
        m = images.resize(m, (stylized.shape[1], stylized.shape[0]))
        return m * stylized + (1.0 - m) * original

    @staticmethod
    def _initial_image(params: StyleParams, content: np.ndarray, style: np.ndarray) -> np.ndarray:
        if params.init is Init.CONTENT:
            return content
        if params.init is Init.NOISE:
            rng = np.random.default_rng(params.seed)
            return rng.uniform(0.0, 1.0, content.shape).astype(np.float32)
        return images.resize(style, (content.shape[1], content.shape[0]))

    # ------------------------------------------------------------------ optimisers
    def _run_adam(
        self,
        x0: np.ndarray,
        targets: Targets,
        weights: tf.Tensor,
        params: StyleParams,
        run: _Run,
    ) -> np.ndarray:
        x = tf.constant(x0[None])
        m = tf.zeros_like(x)
        v = tf.zeros_like(x)
        lr = tf.constant(params.learning_rate, tf.float32)
        best, best_loss = x, float("inf")
        for step in range(1, params.iterations + 1):
            x_new, m, v, total, c, s, tv = self._adam_step(
                x, m, v, tf.constant(float(step)), targets.content, targets.grams, weights, lr
            )
            loss = float(total)
            if loss < best_loss:  # loss was evaluated at x (before this update)
                best, best_loss = x, loss
            stop = run.report(step, loss, float(c), float(s), float(tv), x)
            x = x_new
            if stop:
                break
        else:
            # The final update is usually the best image: evaluate it once so it can win.
            total, *_ = self._loss_and_grad(x, targets.content, targets.grams, weights)
            if float(total) < best_loss:
                best = x
        return best.numpy()[0]

    def _run_lbfgs(
        self,
        x0: np.ndarray,
        targets: Targets,
        weights: tf.Tensor,
        params: StyleParams,
        run: _Run,
    ) -> np.ndarray:
        """scipy's L-BFGS-B with box bounds [0, 1]; one step = one loss+gradient evaluation."""
        from scipy.optimize import minimize
        from threadpoolctl import threadpool_limits

        shape = (1, *x0.shape)
        best = {"loss": float("inf"), "x": x0.ravel().astype(np.float64)}
        evaluations = 0

        class _Stop(Exception):
            pass

        def fun(flat: np.ndarray) -> tuple[float, np.ndarray]:
            nonlocal evaluations
            if evaluations >= params.iterations:
                raise _Stop
            evaluations += 1
            x = tf.constant(flat.reshape(shape), tf.float32)
            total, c, s, tv, grad = self._loss_and_grad(x, targets.content, targets.grams, weights)
            loss = float(total)
            if loss < best["loss"]:
                best["loss"], best["x"] = loss, flat.copy()
            if run.report(evaluations, loss, float(c), float(s), float(tv), x):
                raise _Stop
            return loss, grad.numpy().astype(np.float64).ravel()

        # scipy's BLAS threads would fight TensorFlow's for the same cores (+33 % per step).
        with threadpool_limits(limits=1), contextlib.suppress(_Stop):
            minimize(
                fun,
                x0.ravel().astype(np.float64),
                jac=True,
                method="L-BFGS-B",
                bounds=[(0.0, 1.0)] * x0.size,
                options={
                    "maxiter": params.iterations,
                    "maxfun": params.iterations,
                    "maxcor": 20,
                    "ftol": 0.0,
                    "gtol": 0.0,
                },
            )
        return best["x"].reshape(x0.shape).astype(np.float32)


class _Run:
    """Bookkeeping shared by both optimisers: iterates, previews, the stop request."""

    def __init__(self, params: StyleParams, callback: Callback | None, start: float, scale: int):
        self.params = params
        self.callback = callback
        self.start = start
        self.scale = scale
        self.iterates: list[Iterate] = []
        self.stopped = False

    def report(self, step: int, loss: float, c: float, s: float, tv: float, x: tf.Tensor) -> bool:
        """Record a step and call the callback; True when the run must stop now."""
        if not np.isfinite(loss):
            raise NeuralStyleError(
                ErrorCode.INTERNAL,
                f"The loss became {loss} at step {step}: the optimisation diverged.",
                "Lower the learning rate or the style weight.",
            )
        it = Iterate(
            step,
            self.params.iterations,
            loss,
            c,
            s,
            tv,
            time.perf_counter() - self.start,
            self.scale,
        )
        self.iterates.append(it)
        if self.callback is None:
            return False
        every = self.params.preview_every
        if every and step % every == 0:
            it = Iterate(
                it.step, it.total, it.loss, it.content, it.style, it.tv, it.elapsed, it.scale,
                preview=x.numpy()[0],
            )  # fmt: skip
        if self.callback(it) == STOP and step < self.params.iterations:
            self.stopped = True
            return True
        return False
