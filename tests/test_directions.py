"""The search and step directions of the full optimizer."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from objectives import OBJECTIVES, make_train_step

import salsa_optax
from salsa_optax._src.directions import adam_directions

MLP = OBJECTIVES[3]


def _moments_after(steps):
    tx = salsa_optax.salsa()
    step = make_train_step(tx, MLP)
    params, state = MLP.params, tx.init(MLP.params)
    for _ in range(steps):
        params, state, _ = step(params, state)
    return params, state


def test_adam_directions_match_optax_adam_preconditioning():
    params, state = _moments_after(5)
    grads = jax.grad(MLP.loss)(params, MLP.x, MLP.y)
    search, step, new = adam_directions(0.9, 0.999, 1e-8, False).update(
        grads, state.directions, state.count
    )
    adam = optax.scale_by_adam()
    adam_state = optax.ScaleByAdamState(count=state.count, mu=state.directions.mu,
                                        nu=state.directions.nu)  # fmt: skip
    adam_updates, _ = adam.update(grads, adam_state)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, -b, rtol=1e-6), step, adam_updates)
    # The search direction is the momentum-free -P g.
    nu_hat = optax.tree.bias_correction(new.nu, 0.999, state.count + 1)
    expected = jax.tree.map(lambda g, v: -g / (jnp.sqrt(v) + 1e-8), grads, nu_hat)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), search, expected)


def test_rescaled_momentum_takes_the_search_direction_length():
    params, state = _moments_after(5)
    grads = jax.grad(MLP.loss)(params, MLP.x, MLP.y)
    plain = adam_directions(0.9, 0.999, 1e-8, False)
    rescaled = adam_directions(0.9, 0.999, 1e-8, False, rescale_momentum=True)
    search, step, _ = plain.update(grads, state.directions, state.count)
    search_r, step_r, _ = rescaled.update(grads, state.directions, state.count)
    np.testing.assert_allclose(optax.tree.norm(step_r), optax.tree.norm(search), rtol=1e-5)
    cosine = optax.tree.vdot(step, step_r) / (optax.tree.norm(step) * optax.tree.norm(step_r))
    np.testing.assert_allclose(cosine, 1.0, rtol=1e-5)
    jax.tree.map(np.testing.assert_array_equal, search, search_r)


@pytest.mark.parametrize("exponent", [0.0, 0.5, 1.0])
def test_partial_rescale_interpolates_the_length_geometrically(exponent):
    params, state = _moments_after(5)
    grads = jax.grad(MLP.loss)(params, MLP.x, MLP.y)
    search, step, _ = adam_directions(0.9, 0.999, 1e-8, False).update(
        grads, state.directions, state.count
    )
    _, step_r, _ = adam_directions(0.9, 0.999, 1e-8, False, rescale_momentum=exponent).update(
        grads, state.directions, state.count
    )
    ratio = optax.tree.norm(search) / optax.tree.norm(step)
    assert ratio > 1.2  # the exponent matters here
    np.testing.assert_allclose(
        optax.tree.norm(step_r), optax.tree.norm(step) * ratio**exponent, rtol=1e-5
    )


@pytest.mark.parametrize("exponent", [-0.1, 1.5])
def test_rescale_exponent_out_of_range_is_rejected(exponent):
    with pytest.raises(ValueError, match="0 <= rescale_momentum <= 1"):
        salsa_optax.salsa(rescale_momentum=exponent)


def _skipped_step(tx):
    """The distance a step the schedule skips moves, its step size, and both direction norms."""
    step = make_train_step(tx, MLP)
    params, state = MLP.params, tx.init(MLP.params)
    for _ in range(12):
        params, state, _ = step(params, state)
    # A settled step size (fast and slow averages equal) and a search just made: the schedule
    # skips the next step.
    state = state._replace(
        learning_rate_fast=state.learning_rate,
        learning_rate_slow=state.learning_rate,
        steps_since_search=jnp.zeros_like(state.steps_since_search),
    )
    grads = jax.grad(MLP.loss)(params, MLP.x, MLP.y)
    new_params, new_state, _ = step(params, state)
    assert not bool(new_state.info.searched)
    search, momentum, _ = adam_directions(0.9, 0.999, 1e-8, False).update(
        grads, state.directions, state.count
    )
    moved = optax.tree.norm(jax.tree.map(jnp.subtract, new_params, params))
    step_size = new_state.info.step_size
    return moved, step_size, optax.tree.norm(search), optax.tree.norm(momentum)


@pytest.mark.parametrize("increase_factor", [1.0, 1.1])
def test_default_skipped_step_moves_as_far_as_the_search_direction(increase_factor):
    moved, step_size, search_norm, momentum_norm = _skipped_step(
        salsa_optax.salsa(increase_factor=increase_factor)
    )
    np.testing.assert_allclose(moved, step_size * search_norm, rtol=1e-4)
    assert search_norm > 1.2 * momentum_norm  # the rescaling matters here


def test_published_skipped_steps_move_along_plain_momentum():
    for tx in (salsa_optax.salsa_published(), salsa_optax.salsa(rescale_momentum=False)):
        moved, step_size, _, momentum_norm = _skipped_step(tx)
        np.testing.assert_allclose(moved, step_size * momentum_norm, rtol=1e-4)


@pytest.mark.parametrize("rescale", [False, True])
def test_searched_step_along_momentum_moves_along_the_step_direction(rescale):
    tx = salsa_optax.salsa(searched_step_along_momentum=True, rescale_momentum=rescale)
    to_trial_point = salsa_optax.salsa(rescale_momentum=rescale)
    step = make_train_step(tx, MLP)
    params, state = MLP.params, tx.init(MLP.params)
    for _ in range(3):
        params, state, _ = step(params, state)
    new_params, new_state, _ = step(params, state)
    assert bool(new_state.info.searched) and int(new_state.info.search_outcome) == 1
    grads = jax.grad(MLP.loss)(params, MLP.x, MLP.y)
    _, direction, _ = adam_directions(0.9, 0.999, 1e-8, False, rescale).update(
        grads, state.directions, state.count
    )
    moved = jax.tree.map(jnp.subtract, new_params, params)
    expected = optax.tree.scale(new_state.info.step_size, direction)
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    jax.tree.map(close, moved, expected)
    # The search itself is unchanged: same step size, different point.
    _, trial_point_state, _ = make_train_step(to_trial_point, MLP)(params, state)
    np.testing.assert_allclose(trial_point_state.learning_rate, new_state.learning_rate, rtol=1e-6)
