"""The accepted step satisfies the Armijo test it claims to, on a table of objectives."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from objectives import OBJECTIVES, make_train_step

import salsa_optax
from salsa_optax._src import armijo


@pytest.mark.parametrize("objective", OBJECTIVES, ids=lambda o: o.name)
def test_sls_accepted_step_satisfies_classic_armijo(objective):
    """beta3 = 0, a search every step: f(w + u) <= f(w) + c <g, u> exactly."""
    c = 0.1
    tx = salsa_optax.sls(slope_rtol=c)
    step = make_train_step(tx, objective)
    params, state = objective.params, tx.init(objective.params)
    accepted = 0
    for _ in range(20):
        grad = jax.grad(objective.loss)(params, objective.x, objective.y)
        new_params, state, value = step(params, state)
        update = jax.tree.map(jnp.subtract, new_params, params)
        if int(state.info.search_outcome) == armijo.ACCEPTED:
            accepted += 1
            new_value = objective.loss(new_params, objective.x, objective.y)
            assert new_value <= value + c * optax.tree.vdot(grad, update) + 1e-6 * abs(value)
        assert bool(state.info.searched)
        params = new_params
    assert accepted > 0


@pytest.mark.parametrize("objective", OBJECTIVES, ids=lambda o: o.name)
def test_salsa_accepted_step_satisfies_smoothed_armijo(objective):
    """beta3 D + (1 - beta3) delta >= c eta S, recomputed from the losses and the state."""
    c, beta3 = 0.5, 0.9
    tx = salsa_optax.salsa(slope_rtol=c, smoothing=beta3)
    step = make_train_step(tx, objective)
    params, state = objective.params, tx.init(objective.params)
    checked = backtracked = 0
    for _ in range(30):
        old_avg_decrease = state.avg_decrease
        new_params, state, value = step(params, state)
        if int(state.info.search_outcome) == armijo.ACCEPTED:
            checked += 1
            decrease = value - objective.loss(new_params, objective.x, objective.y)
            smoothed = beta3 * old_avg_decrease + (1 - beta3) * decrease
            np.testing.assert_allclose(state.avg_decrease, smoothed, rtol=1e-4, atol=1e-7)
            eta = state.info.step_size
            assert smoothed >= c * eta * state.avg_slope * (1 - 1e-4)
            if int(state.info.num_backtracks) > 0:
                # The trial before, eta / 0.8 along the same direction, failed the test.
                before = jax.tree.map(lambda w, n: w + (n - w) / 0.8, params, new_params)
                failed = value - objective.loss(before, objective.x, objective.y)
                lhs = beta3 * old_avg_decrease + (1 - beta3) * failed
                assert lhs < c * (eta / 0.8) * state.avg_slope * (1 + 1e-4)
                backtracked += 1
        params = new_params
    assert checked > 0 and backtracked > 0


@settings(max_examples=15, deadline=None)
@given(
    scale=st.floats(0.1, 10.0),
    c=st.floats(0.05, 0.9),
    start=st.floats(-3.0, 3.0),
    initial_learning_rate=st.floats(0.01, 100.0),
)
def test_sls_on_random_quadratics(scale, c, start, initial_learning_rate):
    """On f(w) = scale * w^2 the accepted step obeys Armijo, and the one before it did not."""
    loss = lambda w: scale * jnp.sum(w**2)
    tx = salsa_optax.sls(slope_rtol=c, initial_learning_rate=initial_learning_rate)
    w = jnp.array([start, 1.0])
    state = tx.init(w)
    value, grad = jax.value_and_grad(loss)(w)
    updates, state = tx.update(grad, state, w, value=value, grad=grad, value_fn=loss)
    slope = float(optax.tree.vdot(grad, grad))
    eta = float(state.info.step_size)
    assert int(state.info.search_outcome) == armijo.ACCEPTED
    assert float(loss(w + updates)) <= float(value) - c * eta * slope * (1 - 1e-5)
    if int(state.info.num_backtracks) > 0:
        larger = eta / 0.9
        assert float(loss(w - larger * grad)) > float(value) - c * larger * slope * (1 + 1e-5)


def test_smoothed_test_rejects_nonfinite_and_accepts_sufficient_decrease():
    config = armijo.ArmijoConfig(0.5, 0.9, 0.8, 100)
    assert not armijo.smoothed_armijo_test(jnp.nan, 0.0, 1.0, 0.1, config)[0]
    assert not armijo.smoothed_armijo_test(-jnp.inf, 0.0, 1.0, 0.1, config)[0]
    # (1 - 0.9) * decrease against 0.5 * 1.0 * 1.0: the boundary is a decrease of 5.
    assert not armijo.smoothed_armijo_test(4.9, 0.0, 1.0, 1.0, config)[0]
    assert armijo.smoothed_armijo_test(5.1, 0.0, 1.0, 1.0, config)[0]
    # The running average carries earlier decreases: 0.9 * 5 + 0.1 * 1 = 4.6 >= 0.5 * 1 * 9.
    assert armijo.smoothed_armijo_test(1.0, 5.0, 9.0, 1.0, config)[0]
    assert not armijo.smoothed_armijo_test(1.0, 5.0, 9.3, 1.0, config)[0]


@pytest.mark.parametrize(
    ("loss_at", "descent", "outcome", "end_step_size", "decrease"),
    [
        (lambda eta: 1.0 + eta, True, armijo.EXHAUSTED, 0.125, 0.0),  # 1, 1/2, 1/4 rejected
        (lambda eta: 1.0 - eta, True, armijo.ACCEPTED, 1.0, 1.0),  # the first trial passed
        (lambda eta: jnp.where(eta < 0.3, 0.0, 2.0), True, armijo.ACCEPTED, 0.25, 1.0),
        (lambda eta: 0.0 * eta, False, armijo.NON_DESCENT, 1.0, 0.0),  # no trial made
    ],
    ids=["exhausted", "first_trial", "third_trial", "non_descent"],
)
def test_where_a_search_ends(loss_at, descent, outcome, end_step_size, decrease):
    """end_step_size is the accepted step size, or below the last trial when all were rejected
    (three trials from 1, halving), or the first trial when none was made; decrease is the
    accepted trial's, 0 when none was accepted (not the last rejected one's)."""
    config = armijo.ArmijoConfig(
        slope_rtol=0.5, smoothing=0.0, decrease_factor=0.5, max_backtracking_steps=3
    )
    f32 = jnp.float32
    result = armijo.backtracking_search(
        lambda eta: (jnp.asarray(loss_at(eta), f32), None),
        f32(1.0), f32(0.0), f32(1.0), f32(0.7), f32(1.0), config, descent=jnp.asarray(descent),
    )  # fmt: skip
    assert int(result.outcome) == outcome
    assert float(result.end_step_size) == end_step_size
    assert float(result.decrease) == decrease
    # What it stores is the stored 0.7 unless a trial passed.
    assert float(result.step_size) == (end_step_size if outcome == armijo.ACCEPTED else f32(0.7))
