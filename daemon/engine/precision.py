"""Precision policy: what a job's convolutions compute in, and the device probes behind it."""

from __future__ import annotations

import contextlib
import functools
import os

import tensorflow as tf

from neural_style.daemon.engine.params import Precision, StyleParams


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
