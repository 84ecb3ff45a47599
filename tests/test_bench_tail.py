"""benchmarks/bench_tail.py: its tail phases (Adam, schedule-free Adam, the engine's L-BFGS)
count evaluations across phases and stop at the target, on a quadratic whose minimum is
known; the smoothed TV it can hand the optimiser tends to the real one. The pictures and
counts on the trained stand-in are in docs/performance.md."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import bench_tail  # noqa: E402

SHAPE = (1, 6, 5, 3)


def _terms() -> tuple[Any, Any, Any]:
    """The quadratic's minimum a (inside the box), its badly scaled weights w, and a rng
    for the rest of its draws."""
    rng = np.random.default_rng(3)
    a = tf.constant(rng.uniform(0.2, 0.8, SHAPE), tf.float32)
    w = tf.constant(rng.uniform(0.1, 10.0, SHAPE), tf.float32)
    return a, w, rng


def _quadratic() -> tuple[Any, Any, Any]:
    """f(x) = 100·Σ w·(x − a)²: loss_and_grad in bench_tail's form (loss, gradient,
    (weighted TV, TV weight))."""
    a, w, rng = _terms()

    def loss_and_grad(x: tf.Tensor) -> tuple[float, tf.Tensor, tuple[float, float]]:
        d = x - a
        return float(100.0 * tf.reduce_sum(w * d * d)), 200.0 * w * d, (0.0, 0.0)

    x0 = tf.constant(rng.uniform(0.0, 1.0, SHAPE), tf.float32)
    _, g0, _ = loss_and_grad(x0)
    return loss_and_grad, x0, g0


def test_adam_tail_reaches_the_target_and_stops() -> None:
    loss_and_grad, x0, g0 = _quadratic()
    start, _, _ = loss_and_grad(x0)
    target = 0.05 * start
    row = bench_tail.run_tail({"name": "adam", "lr": 0.02}, x0, g0, loss_and_grad, target, 400, 10)
    assert row["reached"] is not None and row["reached"] < 400
    assert row["final_loss"] <= target
    assert row["curve"] and row["curve"][-1][0] <= row["reached"] + 1


def test_lbfgs_phase_after_adam_counts_both_and_is_faster_on_a_quadratic() -> None:
    loss_and_grad, x0, g0 = _quadratic()
    start, _, _ = loss_and_grad(x0)
    target = 1e-4 * start
    adam = bench_tail.run_tail({"name": "adam"}, x0, g0, loss_and_grad, target, 300, 10)
    mixed = bench_tail.run_tail(
        {"name": "mix", "phases": [{"opt": "adam", "steps": 5}, {"opt": "lbfgs", "steps": 100}]},
        x0, g0, loss_and_grad, target, 300, 10,
    )  # fmt: skip
    assert mixed["reached"] is not None and mixed["reached"] > 5  # the Adam steps count
    assert adam["reached"] is None or mixed["reached"] < adam["reached"]


def test_schedule_free_phase_scores_its_average() -> None:
    loss_and_grad, x0, g0 = _quadratic()
    start, _, _ = loss_and_grad(x0)
    row = bench_tail.run_tail(
        {"name": "sf", "phases": [{"opt": "sf", "steps": 60, "b1": 0.9}]},
        x0, g0, loss_and_grad, 0.0, 60, 10,
    )  # fmt: skip
    scored = [p for p in row["curve"] if len(p) == 3 and p[2] == "x"]
    assert len(scored) == 6
    assert scored[-1][1] < 0.5 * start


@pytest.mark.parametrize("eps", [0.001, 0.03])
def test_smoothed_tv_is_below_the_real_one_and_tends_to_it(eps: float) -> None:
    x = tf.constant(np.random.default_rng(0).uniform(0.0, 1.0, (1, 8, 9, 3)), tf.float32)
    from neural_style.daemon.engine.losses import tv_loss

    smooth, g_smooth, g_real = bench_tail._tv_smoothed(x, eps)
    real = float(tv_loss(x))
    assert float(smooth) <= real
    # Each neighbour difference loses at most eps (sqrt(d² + eps²) − eps ≥ |d| − eps).
    pairs = 8 * 8 * 3 + 8 * 9 * 3
    from neural_style.daemon.engine.losses import TV_REFERENCE_AREA

    assert real - float(smooth) <= eps * pairs * TV_REFERENCE_AREA / (8 * 9) + 1e-3 * real
    assert g_smooth.shape == g_real.shape == x.shape
    if eps == 0.001:
        cos = float(tf.reduce_sum(g_smooth * g_real)) / float(tf.norm(g_smooth) * tf.norm(g_real))
        assert cos > 0.95


def test_gauss_newton_phase_on_a_least_squares_problem() -> None:
    """On f = Σ r², r = 10·√w·(x − a), the Gauss-Newton matrix is f's Hessian (200·w): the
    Levenberg-Marquardt phase reaches a tight target in a few outer steps, counting each
    product at its cost, and the traced product equals 2·JᵀJ·v."""
    loss_and_grad, x0, g0 = _quadratic()
    a, w, rng = _terms()
    product = bench_tail.residual_product(lambda x: [10.0 * tf.sqrt(w) * (x - a)])
    v = tf.constant(rng.normal(size=SHAPE), tf.float32)
    np.testing.assert_allclose(product(x0, v).numpy(), (200.0 * w * v).numpy(), rtol=1e-4)
    gn = bench_tail.GaussNewton(product, 0.5)
    start, _, _ = loss_and_grad(x0)
    target = 1e-4 * start
    variant = {"name": "gn", "phases": [{"opt": "gn", "steps": 100, "cg": 10, "down": 0.1}]}
    row = bench_tail.run_tail(variant, x0, g0, loss_and_grad, target, 100, 10, gn)
    assert row["reached"] is not None and row["reached"] < 40
    assert row["final_loss"] <= target
    # each outer step: ten products (0.5 each), then the evaluation that is counted at 6·k − 1
    assert (row["reached"] + 1) % 6 == pytest.approx(0.0, abs=1e-6)


def test_photo_second_moment_shrinks_the_first_steps() -> None:
    """``v0: photo`` adds the photo's squared gradient to v: with a gradient 100 times the
    start's, the first update is ~100 times shorter than the plain tail's sign-like step."""
    loss_and_grad, x0, g0 = _quadratic()

    def first_step(variant: dict[str, Any], photo_grad: Any) -> float:
        row = bench_tail.run_tail(
            {**variant, "ramp": 1, "stop": False}, x0, g0, loss_and_grad, 0.0, 1, 10,
            photo_grad=photo_grad,
        )  # fmt: skip
        assert row["used"] == 1
        return row["moved"]

    plain = first_step({"name": "adam"}, None)
    photo = first_step({"name": "v0", "v0": "photo"}, 100.0 * g0)
    assert 50.0 < plain / photo < 200.0


def test_multigrid_correction_takes_a_consistent_coarse_step() -> None:
    """MG/OPT on a quadratic whose minimum is smooth: the coarse model (a quadratic at half
    size whose own minimum is off by 0.1) is shifted to the fine gradient at the restricted
    point, so its L-BFGS step heads for the fine minimum, is taken and removes most of a
    smooth error; its evaluations are counted at their share of the pixels."""
    rng = np.random.default_rng(5)
    fine, size = (8, 6), (4, 3)
    b = tf.constant(rng.uniform(0.3, 0.7, (1, *size, 3)), tf.float32)
    a = tf.image.resize(b, fine, method="bilinear")

    def loss_and_grad(x: tf.Tensor) -> tuple[float, tf.Tensor, tuple[float, float]]:
        return float(1e3 * tf.reduce_sum((x - a) ** 2)), 2e3 * (x - a), (0.0, 0.0)

    def coarse_loss(y: tf.Tensor) -> tuple[float, tf.Tensor]:
        return float(4e3 * tf.reduce_sum((y - b - 0.1) ** 2)), 8e3 * (y - b - 0.1)

    x0 = tf.image.resize(b + 0.2 * tf.sign(b - 0.5), fine, method="bilinear")
    start, g0, _ = loss_and_grad(x0)
    coarse = bench_tail.Coarse(coarse_loss, size, 0.25)
    phase = {"opt": "mg", "steps": 8, "cycle": 100, "inner": 6, "trials": 1}
    row = bench_tail.run_tail(
        {"name": "mg", "stop": False, "phases": [phase]}, x0, g0, loss_and_grad, 0.0, 8, 10,
        coarse=coarse,
    )  # fmt: skip
    corrections = row["curve"][-1][1]
    assert corrections[0][0] == 0 and corrections[0][2] > 0.6 * start
    # 1 start evaluation, 6 coarse ones at ¼, 1 trial, then Adam steps: a fractional count
    assert corrections[0][1] == pytest.approx(1 + 6 * 0.25 + 1)
    assert row["final_loss"] < 0.3 * start


def test_rna_extrapolates_a_linear_iteration_to_its_fixed_point() -> None:
    """On x ← A·x + b (A contracting, slowest rate 0.95) k + 1 iterates with k one more
    than the dimension (so the residuals have a combination summing to one that is 0) give
    RNA's weights whose extrapolation is the fixed point, where the last iterate is still
    far from it."""
    a = np.diag([0.95, 0.8, 0.5])
    b = np.array([0.01, -0.2, 0.3])
    fixed = np.linalg.solve(np.eye(3) - a, b)
    x = [np.zeros(3)]
    for _ in range(4):
        x.append(a @ x[-1] + b)
    c = bench_tail.rna_weights(x, 1e-15)
    assert c.sum() == pytest.approx(1.0)
    guess = np.tensordot(c, np.stack(x[1:]), 1)
    assert np.linalg.norm(guess - fixed) < 1e-4 * np.linalg.norm(fixed)
    assert np.linalg.norm(x[-1] - fixed) > 0.3 * np.linalg.norm(fixed)


@pytest.mark.parametrize(
    "phase", [{"opt": "rprop", "step0": 0.01}, {"opt": "lion", "lr": 0.002, "b2": 0.9}]
)
def test_sign_phases_descend_the_quadratic_despite_its_scaling(phase: dict[str, Any]) -> None:
    """Rprop and Lion step by the gradient's sign, so the weights' 100-fold spread does not
    slow the badly scaled coordinates: both reach a tenth of the start."""
    loss_and_grad, x0, g0 = _quadratic()
    start, _, _ = loss_and_grad(x0)
    row = bench_tail.run_tail(
        {"name": phase["opt"], "phases": [{**phase, "steps": 300}]},
        x0, g0, loss_and_grad, 0.1 * start, 300, 10,
    )  # fmt: skip
    assert row["reached"] is not None and row["reached"] < 300
