"""How the stored step size moves: growth, the warm start, and what a failed search leaves."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import salsa_optax

X = jax.random.normal(jax.random.key(1), (64, 4))
Y = X @ jnp.array([0.5, -1.0, 2.0, 0.0])


def _mse(params, x, y):
    return jnp.mean((x @ params - y) ** 2)


def _trajectory(tx, steps):
    step = jax.jit(
        lambda p, s: tx.update(
            jax.grad(_mse)(p, X, Y), s, p, value=_mse(p, X, Y), grad=jax.grad(_mse)(p, X, Y),
            value_fn=_mse, x=X, y=Y,
        )
    )  # fmt: skip
    params, state = jnp.zeros(4), tx.init(jnp.zeros(4))
    rows = []
    for _ in range(steps):
        updates, state = step(params, state)
        params = optax.apply_updates(params, updates)
        rows.append((float(state.learning_rate), int(state.info.num_backtracks)))
    return np.array(rows)


def test_warm_start_grows_by_its_factor_until_the_first_rejection_then_holds():
    tx = salsa_optax.salsa_sgd(
        initial_learning_rate=1e-4, warm_start_factor=1.1, adaptive_search_frequency=False
    )
    rows = _trajectory(tx, 150)
    step_sizes, backtracks = rows[:, 0], rows[:, 1]
    first = int(np.argmax(backtracks > 0))
    assert first > 10  # it grew for a while
    np.testing.assert_allclose(step_sizes[:first], 1e-4 * 1.1 ** np.arange(1, first + 1), rtol=1e-5)
    # After the first rejection the default growth (none) applies: the step size never rises.
    assert np.all(np.diff(step_sizes[first:]) <= 0)


def test_without_a_warm_start_the_step_size_never_grows_by_default():
    rows = _trajectory(salsa_optax.salsa_sgd(adaptive_search_frequency=False), 60)
    assert np.all(np.diff(rows[:, 0]) <= 0) and rows[0, 0] <= 1.0


def test_the_published_growth_applies_from_the_first_step():
    rows = _trajectory(salsa_optax.salsa_sgd(increase_factor=1.1), 5)
    # Each search proposes 1.1 times the stored step size; accepted first trials store it.
    accepted_first = rows[:, 1] == 0
    assert accepted_first.sum() >= 2
    previous = np.concatenate([[1.0], rows[:-1, 0]])
    np.testing.assert_allclose(rows[accepted_first, 0], 1.1 * previous[accepted_first], rtol=1e-6)


@pytest.mark.parametrize("factor", [0.5, float("inf"), "2"])
def test_warm_start_factor_is_checked(factor):
    with pytest.raises((ValueError, TypeError), match="warm_start_factor"):
        salsa_optax.salsa(warm_start_factor=factor)


def test_a_schedule_after_the_search_scales_the_step_not_what_the_search_tests():
    """chain(salsa(), scale_by_schedule(s)): the update is s(t) times salsa()'s; the search, its
    trial points and its stored step size are those of salsa() alone."""
    decay = salsa_optax.linear_decay_schedule(1.0, total_steps=8, warmup_steps=2)
    plain = salsa_optax.salsa()
    scheduled = optax.chain(salsa_optax.salsa(), optax.scale_by_schedule(decay))
    params = jnp.array([0.3, -0.2, 1.0, 0.5])
    value, grad = jax.value_and_grad(_mse)(params, X, Y)
    kwargs = {"value": value, "grad": grad, "value_fn": _mse, "x": X, "y": Y}
    plain_state, scheduled_state = plain.init(params), scheduled.init(params)
    for t in range(8):  # the same point and batch every step: the states must stay equal
        plain_updates, plain_state = plain.update(grad, plain_state, params, **kwargs)
        updates, scheduled_state = scheduled.update(grad, scheduled_state, params, **kwargs)
        np.testing.assert_allclose(updates, float(decay(t)) * plain_updates, rtol=1e-6)
        assert float(optax.tree.get(scheduled_state, "learning_rate")) == float(
            plain_state.learning_rate
        )
    assert float(decay(0)) == 0.5 and float(decay(7)) < 0.2  # warm-up, then decay
