"""Tests of the linear-decay and refined schedules and of gradient-norm logging."""

import math
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import ndimage

from salsa_optax._src import schedules


def _reference_refinement(norms, p, grid, tau=0.1):
    """The authors' pipeline, step by step (median smoothing, then their closed form)."""
    norms = norms[~np.isinf(norms)][2:-2]
    length = len(norms)
    if length < grid:
        norms = np.interp(np.linspace(0, 1, grid), np.linspace(0, 1, length), norms)
        length = grid
    width = 2 * (int(tau * grid) // 2) + 1
    pad = 2 * width
    filtered = ndimage.median_filter(
        np.pad(norms, (0, pad), mode="reflect"), size=width, mode="nearest"
    )[:-pad]
    smoothed = np.interp(np.linspace(0, 1, grid), np.linspace(0, 1, length), filtered)
    weights = smoothed**-p
    tail_sums = np.flip(np.cumsum(np.flip(weights)))
    schedule = np.zeros(grid)
    for t in range(grid - 1):
        schedule[t] = weights[t] * tail_sums[t + 1] / tail_sums[-1]
    return schedule / np.max(schedule)


_TABLE_MESSAGE = (
    "table must be a 1-D array of at least 2 finite, non-negative values: pass the output of "
    "refine_schedule."
)


class TestLinearDecay:
    def test_no_warmup_is_one_minus_t_over_total(self):
        schedule = schedules.linear_decay_schedule(0.3, total_steps=20)
        steps = np.arange(25)
        expected = 0.3 * np.clip(1 - steps / 20, 0, None)
        np.testing.assert_allclose([schedule(t) for t in steps], expected, rtol=1e-6, atol=1e-7)

    def test_warmup_then_polynomial_decay(self):
        schedule = schedules.linear_decay_schedule(2.0, total_steps=12, warmup_steps=4, exponent=2)
        expected = [2.0 * (t + 1) / 4 for t in range(4)] + [
            2.0 * (1 - (t - 4) / 8) ** 2 for t in range(4, 13)
        ]
        np.testing.assert_allclose([schedule(t) for t in range(13)], expected, rtol=1e-6)

    def test_usable_inside_jit_with_array_peak(self):
        schedule = schedules.linear_decay_schedule(jnp.array(0.5), total_steps=10)
        assert float(jax.jit(schedule)(jnp.array(5))) == pytest.approx(0.25)

    def test_one_step_warmup_and_one_step_run(self):
        schedule = schedules.linear_decay_schedule(1.0, total_steps=5, warmup_steps=1)
        np.testing.assert_allclose([schedule(t) for t in range(6)], [1, 1, 0.75, 0.5, 0.25, 0])
        single = schedules.linear_decay_schedule(0.5, total_steps=1)
        np.testing.assert_allclose([single(0), single(1)], [0.5, 0.0])

    @pytest.mark.parametrize(
        "peak, kwargs, message",
        [
            (1.0, {"total_steps": 0}, "total_steps=0 must be an integer >= 1."),
            (1.0, {"total_steps": 10.5}, "total_steps=10.5 must be an integer >= 1."),
            (
                1.0,
                {"total_steps": 10, "warmup_steps": -1},
                "warmup_steps=-1 must be an integer >= 0.",
            ),
            (
                1.0,
                {"total_steps": 10, "warmup_steps": 10},
                "warmup_steps=10 must be smaller than total_steps=10: shorten the warm-up or "
                "train for longer.",
            ),
            (
                1.0,
                {"total_steps": 10, "exponent": 0.0},
                "exponent=0.0 is out of range: it must satisfy 0 < exponent < inf.",
            ),
            (
                1.0,
                {"total_steps": 10, "exponent": math.inf},
                "exponent=inf is not finite: it must satisfy 0 < exponent < inf.",
            ),
            (
                0.0,
                {"total_steps": 10},
                "peak_value=0.0 is out of range: it must satisfy 0 < peak_value < inf.",
            ),
            (
                math.nan,
                {"total_steps": 10},
                "peak_value=nan is not finite: it must satisfy 0 < peak_value < inf.",
            ),
        ],
    )
    def test_bad_arguments_raise_naming_the_argument_and_range(self, peak, kwargs, message):
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            schedules.linear_decay_schedule(peak, **kwargs)

    def test_traced_peak_passes(self):
        rate = jax.jit(lambda peak: schedules.linear_decay_schedule(peak, 4)(2))(jnp.array(2.0))
        assert float(rate) == pytest.approx(1.0)


class TestRecordGradNorm:
    @pytest.mark.parametrize("ord, expected", [(2, 13.0), (1, 3.0 + 4.0 + 12.0)])
    def test_logs_the_norm_and_passes_updates_through(self, ord, expected):
        tx = optax.chain(schedules.record_grad_norm(ord=ord), optax.scale(-1.0))
        params = {"a": jnp.zeros(2), "b": jnp.zeros((1, 1))}
        grads = {"a": jnp.array([3.0, -4.0]), "b": jnp.array([[12.0]])}
        updates, state = jax.jit(tx.update)(grads, tx.init(params), params)
        assert float(optax.tree_utils.tree_get(state, "grad_norm")) == pytest.approx(expected)
        chex.assert_trees_all_equal(updates, optax.tree.scale(-1.0, grads))

    def test_mixed_precision_parameters_logged_in_their_highest_float_type(self):
        tx = schedules.record_grad_norm()
        params = {"half": jnp.zeros(3, jnp.bfloat16), "full": jnp.zeros(2, jnp.float32)}
        grads = {"half": jnp.full(3, 2.0, jnp.bfloat16), "full": jnp.array([1.0, 2.0])}
        state = tx.init(params)
        assert state.info.grad_norm.dtype == jnp.float32
        _, new_state = tx.update(grads, state, params)
        assert float(new_state.info.grad_norm) == pytest.approx(np.sqrt(12.0 + 5.0))

    def test_bfloat16_gradients_logged_in_float32(self):
        tx = schedules.record_grad_norm()
        params = jnp.zeros(1000, jnp.bfloat16)
        grads = jnp.full(1000, 0.1, jnp.bfloat16)
        state = tx.init(params)
        updates, new_state = tx.update(grads, state, params)
        assert updates.dtype == jnp.bfloat16
        assert new_state.info.grad_norm.dtype == jnp.float32
        chex.assert_trees_all_equal_dtypes(new_state, state)
        expected = np.linalg.norm(np.asarray(grads, np.float32))
        assert float(new_state.info.grad_norm) == pytest.approx(expected, rel=1e-6)

    def test_the_log_has_the_precision_of_the_params_not_of_the_x64_default(self):
        with jax.enable_x64(True):
            for dtype in (jnp.float32, jnp.float64):
                tx = schedules.record_grad_norm(ord=1)
                params = jnp.zeros(3, dtype)
                state = tx.init(params)
                _, state = tx.update(jnp.array([1.0, -2.0, 1e-9], dtype), state, params)
                assert state.info.grad_norm.dtype == dtype
                expected = 3.0 + 1e-9 if dtype == jnp.float64 else 3.0
                assert float(state.info.grad_norm) == pytest.approx(expected, rel=1e-15)

    @pytest.mark.parametrize("ord", [1, 2])
    def test_inject_hyperparams_with_static_ord(self, ord):
        tx = optax.chain(
            optax.inject_hyperparams(schedules.record_grad_norm, static_args="ord")(ord=ord),
            optax.sgd(0.1),
        )
        params = jnp.zeros(2)
        _, state = jax.jit(tx.update)(jnp.array([3.0, -4.0]), tx.init(params), params)
        assert float(optax.tree_utils.tree_get(state, "grad_norm")) == {1: 7.0, 2: 5.0}[ord]

    def test_traced_ord_says_to_make_it_static(self):
        tx = optax.inject_hyperparams(schedules.record_grad_norm)(ord=2)
        params = jnp.zeros(2)
        message = (
            "ord selects the norm and cannot be traced: under optax.inject_hyperparams, pass "
            "static_args='ord'."
        )
        with pytest.raises(TypeError, match=f"^{re.escape(message)}"):
            jax.jit(tx.update)(params, tx.init(params), params)

    def test_bad_ord_raises(self):
        message = "ord=3 must be 2 (SGD-type optimizers) or 1 (Adam-type)."
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            schedules.record_grad_norm(ord=3)


class TestRefineSchedule:
    @pytest.mark.parametrize("ord", [1, 2])
    def test_constant_norms_give_exact_linear_decay(self, ord):
        table = schedules.refine_schedule(np.full(500, 0.7), ord=ord)
        np.testing.assert_allclose(table, 1 - np.arange(10_000) / 9_999, rtol=1e-10, atol=1e-12)

    @pytest.mark.parametrize("ord", [1, 2])
    def test_matches_the_reference_pipeline(self, ord):
        rng = np.random.default_rng(0)
        steps = np.arange(3000)
        norms = (1 + 4 * np.exp(-steps / 300)) * (1 + 0.3 * rng.standard_normal(3000)) ** 2
        norms[[10, 700]] = np.inf
        table = schedules.refine_schedule(norms, ord=ord)
        np.testing.assert_allclose(table, _reference_refinement(norms, ord, 10_000), rtol=1e-9)

    def test_large_early_norms_give_a_warmup(self):
        norms = 1 + 20 * np.exp(-np.arange(1000) / 100)
        table = schedules.refine_schedule(norms, ord=2, grid=1000)
        assert table[0] < 0.05
        peak = int(np.argmax(table))
        assert 100 < peak < 800
        assert np.all(np.diff(table[:peak]) >= 0)

    def test_rising_final_norms_anneal_faster_than_linear(self):
        norms = np.concatenate([np.ones(800), np.linspace(1, 5, 200)])
        table = schedules.refine_schedule(norms, ord=2, grid=1000)
        linear = 1 - np.arange(1000) / 999
        assert table[0] == pytest.approx(1.0)
        assert np.all(table[850:999] < linear[850:999])

    def test_float32_norms_are_refined_in_float64(self):
        norms = (1 + np.exp(-np.arange(400) / 50) + 0.1 * np.sin(np.arange(400))).astype(np.float32)
        table = schedules.refine_schedule(norms, ord=2, grid=500)
        reference = _reference_refinement(norms.astype(np.float64), 2, 500)
        assert table.dtype == np.float64
        np.testing.assert_allclose(table, reference, rtol=1e-13)

    def test_smallest_accepted_log_grid_and_window(self):
        table = schedules.refine_schedule(np.full(6, 2.0), ord=1, tau=1.0, grid=2)
        np.testing.assert_allclose(table, [1.0, 0.0])

    def test_non_finite_entries_are_dropped(self):
        norms = np.full(100, 2.0)
        norms[[5, 50]] = [np.nan, np.inf]
        np.testing.assert_allclose(
            schedules.refine_schedule(norms, ord=2, grid=11), np.linspace(1, 0, 11), atol=1e-12
        )

    @pytest.mark.parametrize(
        "norms, kwargs, message",
        [
            (
                np.ones(5),
                {"ord": 2},
                "norms needs at least 6 finite entries (the first and last 2 are dropped): log "
                "the gradient norm on more steps.",
            ),
            (np.ones((10, 2)), {"ord": 2}, "norms must be a 1-D sequence, got shape (10, 2)."),
            (np.ones(10), {"ord": 3}, "ord=3 must be 2 (SGD-type optimizers) or 1 (Adam-type)."),
            (
                np.ones(10),
                {"ord": 2, "tau": 0.0},
                "tau=0.0 must satisfy 0 < tau <= 1 (a fraction of the run).",
            ),
            (
                np.ones(10),
                {"ord": 2, "tau": 1.5},
                "tau=1.5 must satisfy 0 < tau <= 1 (a fraction of the run).",
            ),
            (np.ones(10), {"ord": 2, "grid": 1}, "grid=1 must be an integer >= 2."),
        ],
    )
    def test_bad_arguments_raise(self, norms, kwargs, message):
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            schedules.refine_schedule(norms, **kwargs)


class TestRefinedSchedule:
    def test_interpolates_the_table_over_the_run(self):
        schedule = schedules.refined_schedule(2.0, np.array([0.0, 1.0, 0.5, 0.0]), total_steps=30)
        values = [float(schedule(t)) for t in (0, 5, 10, 15, 20, 30, 40)]
        np.testing.assert_allclose(values, [0.0, 1.0, 2.0, 1.5, 1.0, 0.0, 0.0], atol=1e-6)

    def test_refined_constant_norms_equal_linear_decay(self):
        table = schedules.refine_schedule(np.full(50, 3.0), ord=2)
        refined = schedules.refined_schedule(0.1, table, total_steps=200)
        linear = schedules.linear_decay_schedule(0.1, total_steps=200)
        counts = jnp.arange(0, 201, 7)
        np.testing.assert_allclose(jax.vmap(refined)(counts), jax.vmap(linear)(counts), atol=1e-7)

    def test_inject_hyperparams_reports_the_scheduled_rate(self):
        schedule = schedules.refined_schedule(0.5, np.array([1.0, 0.0]), total_steps=4)
        tx = optax.inject_hyperparams(optax.sgd)(learning_rate=schedule)
        params = jnp.ones(2)
        state = tx.init(params)

        @jax.jit
        @chex.assert_max_traces(n=1)
        def step(params, state):
            updates, state = tx.update(params, state, params)
            return optax.apply_updates(params, updates), state

        rates = []
        for _ in range(4):
            params, state = step(params, state)
            rates.append(float(state.hyperparams["learning_rate"]))
        np.testing.assert_allclose(rates, [0.5, 0.375, 0.25, 0.125], atol=1e-7)

    @pytest.mark.parametrize(
        "base_lr, table, total_steps, message",
        [
            (0.1, np.array([1.0]), 10, _TABLE_MESSAGE),
            (0.1, np.array([1.0, np.nan]), 10, _TABLE_MESSAGE),
            (0.1, np.array([1.0, -0.1]), 10, _TABLE_MESSAGE),
            (0.1, np.ones((2, 2)), 10, _TABLE_MESSAGE),
            (0.1, np.array([1.0, 0.0]), 0, "total_steps=0 must be an integer >= 1."),
            (
                -0.1,
                np.array([1.0, 0.0]),
                10,
                "base_lr=-0.1 is out of range: it must satisfy 0 < base_lr < inf.",
            ),
            (
                math.inf,
                np.array([1.0, 0.0]),
                10,
                "base_lr=inf is not finite: it must satisfy 0 < base_lr < inf.",
            ),
        ],
    )
    def test_bad_arguments_raise(self, base_lr, table, total_steps, message):
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            schedules.refined_schedule(base_lr, table, total_steps)

    def test_one_step_run(self):
        schedule = schedules.refined_schedule(0.5, np.array([1.0, 0.0]), total_steps=1)
        np.testing.assert_allclose([schedule(0), schedule(1)], [0.5, 0.0])


def test_two_run_refinement_converges_on_logistic_regression():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((512, 8)), jnp.float32)
    labels = (x @ rng.standard_normal(8) + 0.5 * rng.standard_normal(512) > 0).astype(jnp.float32)
    batches = rng.integers(0, 512, size=(300, 32))

    def loss_fn(w, rows):
        logits = x[rows] @ w
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels[rows]))

    def train(tx):
        def step(carry, rows):
            w, state = carry
            grads = jax.grad(loss_fn)(w, rows)
            updates, state = tx.update(grads, state, w)
            return (optax.apply_updates(w, updates), state), optax.tree_utils.tree_get(
                state, "grad_norm"
            )

        w0 = jnp.zeros(8)
        (w, _), norms = jax.lax.scan(step, (w0, tx.init(w0)), batches)
        return loss_fn(w, np.arange(512)), norms

    first_loss, norms = jax.jit(train, static_argnums=0)(
        optax.chain(schedules.record_grad_norm(), optax.sgd(8.0))
    )
    table = schedules.refine_schedule(np.asarray(norms), ord=2)
    second = optax.chain(
        schedules.record_grad_norm(),
        optax.sgd(schedules.refined_schedule(8.0, table, total_steps=300)),
    )
    second_loss, _ = jax.jit(train, static_argnums=0)(second)
    optimum = optax.sigmoid_binary_cross_entropy(x @ _logistic_minimiser(x, labels), labels).mean()
    assert float(second_loss) < float(optimum) + 0.01
    assert float(second_loss) < float(first_loss)


def _logistic_minimiser(x, labels):
    """Newton's method in float64, exact for this smooth convex problem in a few steps."""
    x, labels = np.asarray(x, np.float64), np.asarray(labels, np.float64)
    w = np.zeros(x.shape[1])
    for _ in range(20):
        p = 1 / (1 + np.exp(-x @ w))
        hessian = x.T @ (x * (p * (1 - p))[:, None])
        w = w - np.linalg.solve(hessian, x.T @ (p - labels))
    return w
