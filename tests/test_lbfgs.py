"""The TensorFlow projected L-BFGS (daemon/engine/lbfgs.py) on problems with known minima."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import tensorflow as tf

from neural_style.daemon.engine import lbfgs


def _budgeted(fun, budget):  # type: ignore[no-untyped-def]
    """An ``evaluate`` for lbfgs.minimize that stops after ``budget`` calls and keeps the
    best point, as the engine's does."""
    seen: dict = {"n": 0, "best": (float("inf"), None), "xs": []}

    def evaluate(x):  # type: ignore[no-untyped-def]
        if seen["n"] >= budget:
            raise lbfgs.Stop
        seen["n"] += 1
        seen["xs"].append(x.numpy())
        with tf.GradientTape() as tape:
            tape.watch(x)
            f = fun(x)
        g = tape.gradient(f, x)
        if float(f) < seen["best"][0]:
            seen["best"] = (float(f), x.numpy())
        return float(f), g

    return evaluate, seen


def test_box_constrained_quadratic_reaches_the_projected_minimum() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    d = tf.constant(rng.uniform(0.5, 50.0, n), tf.float32)  # condition number 100
    c = tf.constant(rng.uniform(-0.5, 1.5, n), tf.float32)  # a third of it off the box

    def fun(x):  # type: ignore[no-untyped-def]
        return 0.5 * tf.reduce_sum(d * (x - c) ** 2)

    evaluate, seen = _budgeted(fun, 80)
    x0 = tf.fill([n], 0.5)
    lbfgs.minimize(evaluate, x0, history=10)
    f_opt = float(fun(tf.clip_by_value(c, 0.0, 1.0)))
    # Down to float32 round-off of f (~250 here): the pixels pinned at the bounds are
    # found exactly, the rest to what a few ulps of f can resolve.
    assert seen["best"][0] - f_opt < 1e-6 * (float(fun(x0)) - f_opt)
    pinned = (c.numpy() < 0.0) | (c.numpy() > 1.0)
    np.testing.assert_array_equal(seen["best"][1][pinned], np.clip(c.numpy(), 0, 1)[pinned])
    # Every point evaluated lies in the box: the image is never outside [0, 1].
    assert min(x.min() for x in seen["xs"]) >= 0.0
    assert max(x.max() for x in seen["xs"]) <= 1.0


def test_interior_quadratic_is_solved_to_round_off() -> None:
    rng = np.random.default_rng(1)
    d = tf.constant(rng.uniform(0.5, 50.0, 2000), tf.float32)
    c = tf.constant(rng.uniform(0.05, 0.95, 2000), tf.float32)
    evaluate, seen = _budgeted(lambda x: 0.5 * tf.reduce_sum(d * (x - c) ** 2), 80)
    lbfgs.minimize(evaluate, tf.fill([2000], 0.5), history=10)
    np.testing.assert_allclose(seen["best"][1], c.numpy(), atol=1e-4)


def test_rosenbrock_converges_far_faster_than_gradient_descent() -> None:
    def rosen(x):  # type: ignore[no-untyped-def]
        # Scaled into the box: the minimum (1, 1) -> (0.5, 0.5).
        u = 2.0 * x
        return tf.reduce_sum(100.0 * (u[1:] - u[:-1] ** 2) ** 2 + (1.0 - u[:-1]) ** 2)

    evaluate, seen = _budgeted(rosen, 300)
    lbfgs.minimize(evaluate, tf.constant([0.1, 0.4, 0.2, 0.05], tf.float32), history=8)
    assert seen["best"][0] < 1e-4
    np.testing.assert_allclose(seen["best"][1], 0.5, atol=0.01)


def test_two_loop_inverts_a_diagonal_hessian_exactly() -> None:
    # With pairs from a quadratic of Hessian diag(h) along the coordinate axes, H·q = q / h.
    h = np.array([1.0, 2.0, 4.0, 8.0], np.float32)
    pairs: collections.deque = collections.deque()
    for i in range(4):
        s = np.zeros(4, np.float32)
        s[i] = 1.0
        y = h * s
        pairs.append((tf.constant(s), tf.constant(y), 1.0 / float(s @ y)))
    q = np.array([1.0, -3.0, 2.0, 5.0], np.float32)
    np.testing.assert_allclose(lbfgs.two_loop(tf.constant(q), pairs).numpy(), q / h, rtol=1e-6)


@pytest.mark.parametrize(("x", "g", "kept"), [(0.0, 1.0, 0.0), (0.0, -1.0, -1.0),
                                              (1.0, -1.0, 0.0), (1.0, 1.0, 1.0),
                                              (0.5, 1.0, 1.0)])  # fmt: skip
def test_free_gradient_holds_pixels_pushed_out_of_the_box(x, g, kept) -> None:  # type: ignore[no-untyped-def]
    out = lbfgs.free_gradient(tf.constant([x]), tf.constant([g]))
    assert float(out[0]) == kept


def test_a_stationary_start_ends_without_spending_the_budget() -> None:
    # The minimum of the box is at a corner the start already sits on.
    evaluate, seen = _budgeted(lambda x: tf.reduce_sum(x), 50)
    lbfgs.minimize(evaluate, tf.zeros([10]), history=5)
    assert seen["n"] == 1
