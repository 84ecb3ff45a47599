"""The measures behind ``neural-style bench``: seconds per step of the engine next to the VGG floor.

The floor is one forward pass of the truncated VGG-19 plus the gradient with respect to
the input image, with no loss bookkeeping: no implementation of the method can step faster
in the same precision. ``ratio = step_s / floor_s`` is the engine's overhead.
Benchmarks print numbers; they are not pass/fail tests.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

# Times in the JSON are rounded to the millisecond; ratios are computed before rounding, so a
# reader dividing two printed times agrees with the printed ratio to within that rounding even
# for the sub-second baselines of tiny test runs.
TIME_DECIMALS = 3


def say(args: argparse.Namespace, text: str, flush: bool = True) -> None:
    """Progress for people: on stdout, or on stderr when stdout carries the JSON."""
    print(text, file=sys.stderr if args.json else sys.stdout, flush=flush)


def at_size(image: np.ndarray, size: int) -> np.ndarray:
    """The sample resized so its long side is ``size``, upscaled if need be (the sample is
    451 px wide; a benchmark "at 512 px" must really work at 512 px)."""
    from neural_style.daemon.engine import images

    h, w = image.shape[:2]
    work = images.fit_long_side(w, h, size)
    return images.from_float(images.resize(images.to_float(image), work), np.dtype(np.uint8))


def _floor_function(engine: Any, precision: str = "fp32") -> Any:
    """One forward pass of the truncated VGG-19 plus the gradient w.r.t. the input image."""
    import tensorflow as tf

    from neural_style.daemon.engine.params import Precision

    features = engine._features_for(Precision(precision))

    @tf.function(input_signature=[tf.TensorSpec((1, None, None, 3), tf.float32)], autograph=False)
    def forward_backward(x: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(x)
            outs = features(x)
            total = tf.add_n([tf.reduce_sum(tf.cast(v, tf.float32)) for v in outs.values()])
        return tape.gradient(total, x)

    return forward_backward


def step_and_floor_seconds(
    engine: Any,
    content: np.ndarray,
    style: np.ndarray,
    size: int,
    optimizer: str,
    steps: int,
    warmup: int,
    precision: str = "fp32",
) -> tuple[float, float]:
    """Median engine step and median floor pass, measured interleaved.

    The callback runs one floor pass between every two engine steps and subtracts its
    time, so both medians see the same machine state; on a shared 2-core machine,
    measuring one after the other lets other load land on one side only.
    """
    import tensorflow as tf

    from neural_style.daemon.engine import images
    from neural_style.daemon.engine.params import Optimizer, Precision, StyleParams

    floor_fn = _floor_function(engine, precision)
    h, w = content.shape[:2]
    x = tf.constant(images.resize(images.to_float(content), images.fit_long_side(w, h, size))[None])
    floor_fn(x).numpy()  # trace outside the timed region
    marks: list[float] = []
    floors: list[float] = []
    paused = 0.0

    def callback(it: Any) -> None:
        nonlocal paused
        marks.append(time.perf_counter() - paused)
        t0 = time.perf_counter()
        floor_fn(x).numpy()
        took = time.perf_counter() - t0
        floors.append(took)
        paused += time.perf_counter() - t0

    params = StyleParams(
        size=size,
        iterations=warmup + steps + 1,
        optimizer=Optimizer(optimizer),
        precision=Precision(precision),
    )
    engine.stylize(content, [style], params, callback)
    step = float(np.median(np.diff(marks)[warmup:]))
    return step, float(np.median(floors[warmup:]))


def fp32_loss(engine: Any, image: np.ndarray, content: np.ndarray, style: np.ndarray) -> float:
    """The tutorial's loss of ``image`` (float HxWx3 at the content's size), in fp32, against
    fp32 targets at that size: the one yardstick for runs in any precision."""
    import tensorflow as tf

    from neural_style.daemon.engine import images
    from neural_style.daemon.engine.params import Precision, StyleParams
    from neural_style.daemon.engine.targets import loss_weights

    params = StyleParams(size=max(content.shape[:2]), precision=Precision.FP32)
    content_rgb = images.split_alpha(images.to_float(content))[0]
    style_rgb = images.split_alpha(images.to_float(style))[0]
    targets, _ = engine.targets(content_rgb, [style_rgb], [1.0], params.size, params)
    total, *_ = engine.functions(params).loss_and_grad(
        tf.constant(image[None], tf.float32), targets.content, targets.grams,
        loss_weights(params),
    )  # fmt: skip
    return float(total)


def time_presets(
    engine: Any, content: np.ndarray, style: np.ndarray, names: list[str], args: argparse.Namespace
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Time-to-quality: each preset's wall time against the loss that TensorFlow's tutorial
    loop (Adam lr 0.02, β1 0.99, ε 0.1 from the content image, fp32) reaches after
    ``--baseline-steps`` steps at ``--preset-size``.

    Each preset runs to its end in every precision the device has fast kernels for (its own
    ``auto`` choice is flagged), and its result is scored by :func:`fp32_loss`: a bf16 run's
    own loss values are bf16 estimates, so "reached" is decided in fp32 only. The preset's
    time is the whole job (targets, every scale), not the moment it crossed the target.
    """
    from neural_style.daemon.engine import images, quality, resolve_precision
    from neural_style.daemon.engine.params import Precision, StyleParams

    size = args.preset_size
    # float32 content: results come back unquantised (uint8 rounding would add TV noise)
    content = images.to_float(at_size(content, size))

    base = baseline(engine, content, style, size, args)
    target, curve, baseline_time = base["loss"], base["curve"], base["time_s"]
    baseline_cpu = base.get("cpu_s")  # absent from entries cached before it was recorded
    meter = quality.TextureMeter(engine._conv_weights) if engine._conv_weights else None
    style_rgb = images.split_alpha(images.to_float(style))[0]

    def measures(image: np.ndarray) -> dict[str, float]:
        return quality.assess(image, content, style_rgb, meter).to_dict()

    base_quality = measures(base["image"])
    _save_picture(args, "tutorial", base["image"])
    say(
        args,
        f"baseline: tutorial Adam, {args.baseline_steps} steps at {size} px: "
        f"loss {target:.4g} in {baseline_time:.1f} s{' (cached)' if base['cached'] else ''}; "
        f"quality {base_quality}",
    )
    tutorial = {
        "name": "tutorial",
        "size": size,
        "precision": "fp32",
        "steps": args.baseline_steps,
        "time_s": round(baseline_time, TIME_DECIMALS),
        "cpu_s": baseline_cpu,
        "final_loss": target,
        "quality": base_quality,
        "cached": base["cached"],
        "curve": curve,
    }
    rows: list[dict[str, Any]] = []
    for name in names:
        own = resolve_precision(StyleParams.from_dict({"preset": name}).precision).value
        fp32_final: float | None = None
        for precision in precisions_to_time():
            params = StyleParams.from_dict({"preset": name, "size": size, "precision": precision})
            cpu0 = time.process_time()
            run = engine.stylize(content, [style], params)
            cpu = time.process_time() - cpu0
            final = fp32_loss(engine, run.image, content, style)
            if precision == Precision.FP32.value:
                fp32_final = final
            row = {
                "name": name,
                "size": size,
                "precision": precision,
                "auto": precision == own,
                "time_s": round(run.elapsed, TIME_DECIMALS),
                "baseline_time_s": round(baseline_time, TIME_DECIMALS),
                "ratio": round(run.elapsed / baseline_time, 4),
                "cpu_s": round(cpu, TIME_DECIMALS),
                "cpu_ratio": None if baseline_cpu is None else round(cpu / baseline_cpu, 4),
                "reached": final <= target,
                "final_loss": final,
                "target_loss": target,
                "quality": measures(np.clip(run.image, 0.0, 1.0)),
                "gap_vs_fp32": None if fp32_final is None else round(final / fp32_final - 1, 5),
                "steps_per_scale": _steps_per_scale(run),
            }
            rows.append(row)
            _save_picture(args, f"{name}-{precision}", np.clip(run.image, 0.0, 1.0))
            verdict = "reached" if row["reached"] else "did NOT reach"
            gap = "" if row["gap_vs_fp32"] is None else f"; {row['gap_vs_fp32']:+.2%} vs fp32"
            say(
                args,
                f"preset {name} ({precision}{', auto' if row['auto'] else ''}): {verdict} the "
                f"target in {run.elapsed:.1f} s (ratio {row['ratio']:.3f}; final fp32 loss "
                f"{final:.5g} vs {target:.5g}{gap}); quality {row['quality']}",
            )
    return tutorial, rows


def _save_picture(args: argparse.Namespace, name: str, image: np.ndarray) -> None:
    """``--pictures``: the result as an 8-bit PNG (a number can be fooled; eyes less so)."""
    folder = getattr(args, "pictures", None)
    if folder is None:
        return
    from neural_style.daemon.engine import images

    folder.mkdir(parents=True, exist_ok=True)
    pixels = images.from_float(image.astype(np.float32), np.dtype(np.uint8))
    images.save_image(pixels, folder / f"{name}.png")


def baseline(
    engine: Any, content: np.ndarray, style: np.ndarray, size: int, args: argparse.Namespace
) -> dict[str, Any]:
    """TensorFlow's tutorial loop (Adam lr 0.02, β1 0.99, ε 0.1, fp32, from the content) for
    ``--baseline-steps`` steps: {"loss", "curve", "time_s", "image", "cached"}.

    It takes ~25-30 min at 512 px on a 2-core CPU, so its result is kept in ``--cache``,
    keyed by the content and style pixels, the size, the steps and the weights file's
    digest; a cached run reports the time it took when it ran.
    """
    from neural_style.daemon.engine.params import Precision, StyleParams

    stem = baseline_stem(engine, content, style, size, args)
    if stem is not None and stem.with_suffix(".json").is_file():
        meta = json.loads(stem.with_suffix(".json").read_text())
        meta["image"] = np.load(stem.with_suffix(".npy"))
        meta["cached"] = True
        return meta

    def progress(it: Any) -> None:
        if it.step % 100 == 0:
            say(args, f"  baseline step {it.step}: loss {it.loss:.4g} at {it.elapsed:.0f} s")

    params = StyleParams(
        size=size, iterations=args.baseline_steps, learning_rate=0.02, precision=Precision.FP32
    )
    cpu0 = time.process_time()
    run = engine.stylize(content, [style], params, progress)
    cpu = time.process_time() - cpu0
    meta = {
        "loss": min(it.loss for it in run.iterates),
        # (step, loss, seconds) every 100 steps: how fast the yardstick itself converges
        "curve": [[i.step, i.loss, round(i.elapsed, 1)] for i in run.iterates if i.step % 100 == 0],
        "time_s": run.iterates[-1].elapsed,
        # CPU seconds of every thread: a fairer yardstick than wall time on a shared machine
        "cpu_s": round(cpu, TIME_DECIMALS),
    }
    image = np.clip(run.image, 0.0, 1.0).astype(np.float32)
    if stem is not None:
        stem.parent.mkdir(parents=True, exist_ok=True)
        np.save(stem.with_suffix(".npy"), image)
        tmp = stem.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta))
        tmp.replace(stem.with_suffix(".json"))  # the JSON last: it marks a complete entry
    return {**meta, "image": image, "cached": False}


def baseline_stem(
    engine: Any, content: np.ndarray, style: np.ndarray, size: int, args: argparse.Namespace
) -> Path | None:
    """Where :func:`baseline` keeps this pair's run (None: no cache)."""
    import hashlib

    key = hashlib.sha256()
    for part in (content.tobytes(), style.tobytes(), repr((content.shape, style.shape)).encode(),
                 f"{size}/{args.baseline_steps}/{engine.weights.sha256}/v1".encode()):  # fmt: skip
        key.update(part)
    folder = _cache_folder(args)
    return folder / f"baseline-{key.hexdigest()[:24]}" if folder else None


def _cache_folder(args: argparse.Namespace) -> Path | None:
    cache = getattr(args, "cache", None)
    if cache is not None:
        return None if str(cache) in ("", ".") else Path(cache)
    import platformdirs

    return Path(platformdirs.user_cache_dir("neural-style")) / "bench"


def _steps_per_scale(run: Any) -> dict[str, int]:
    return dict(Counter(str(it.scale) for it in run.iterates))


def precisions_to_time() -> list[str]:
    """fp32, plus bf16 only where the hardware has bf16 kernels: elsewhere TensorFlow
    emulates it, several times slower, and a number for that says nothing."""
    from neural_style.daemon.engine import has_fast_bf16

    return ["fp32", "bf16"] if has_fast_bf16() else ["fp32"]


def ladder_vs_single(
    engine: Any, content: np.ndarray, style: np.ndarray, args: argparse.Namespace
) -> dict[str, Any]:
    """Coarse-to-fine against one scale at the same wall time, losses compared in fp32 at
    the final size (the ladder's last steps run there; the single run is stopped when it
    has used the ladder's time)."""
    from neural_style.daemon.engine.params import STOP, StyleParams

    size = args.ladder[-1]
    content = at_size(content, size)
    ladder_run = engine.stylize(
        content, [style],
        StyleParams(size=size, scales=tuple(args.ladder), iterations=args.ladder_iterations),
    )  # fmt: skip
    budget = ladder_run.elapsed
    single_run = engine.stylize(
        content, [style], StyleParams(size=size, iterations=100_000),
        lambda it: STOP if it.elapsed >= budget else None,
    )  # fmt: skip
    out = {
        "scales": list(args.ladder),
        "time_s": round(budget, 2),
        "ladder_loss": min(i.loss for i in ladder_run.iterates if i.scale == size),
        "single_loss": min(i.loss for i in single_run.iterates),
        "single_steps": len(single_run.iterates),
        "ladder_steps": len(ladder_run.iterates),
    }
    say(
        args,
        f"ladder {args.ladder} vs one scale at {size} px, {budget:.0f} s each: "
        f"loss {out['ladder_loss']:.4g} vs {out['single_loss']:.4g}",
    )
    return out
