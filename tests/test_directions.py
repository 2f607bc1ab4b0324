"""The search and step directions of the full optimizer."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from objectives import OBJECTIVES, make_train_step

import salsa_optax
from salsa_optax._src.directions import (
    AdamDirectionsState,
    adam_directions,
    gradient_direction,
    incoming_direction,
)

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
    assert plain.step_scale is None
    search, step, _ = plain.update(grads, state.directions, state.count)
    search_r, step_r, _ = rescaled.update(grads, state.directions, state.count)
    # The directions are the same; the rescaling is the factor a step along -P m_hat takes.
    jax.tree.map(np.testing.assert_array_equal, search, search_r)
    jax.tree.map(np.testing.assert_array_equal, step, step_r)
    factor = rescaled.step_scale(search, step)
    np.testing.assert_allclose(factor * optax.tree.norm(step), optax.tree.norm(search), rtol=1e-5)


@pytest.mark.parametrize("exponent", [0.0, 0.5, 1.0])
def test_partial_rescale_interpolates_the_length_geometrically(exponent):
    params, state = _moments_after(5)
    grads = jax.grad(MLP.loss)(params, MLP.x, MLP.y)
    directions = adam_directions(0.9, 0.999, 1e-8, False, rescale_momentum=exponent)
    search, step, _ = directions.update(grads, state.directions, state.count)
    ratio = optax.tree.norm(search) / optax.tree.norm(step)
    assert ratio > 1.2  # the exponent matters here
    np.testing.assert_allclose(directions.step_scale(search, step), ratio**exponent, rtol=1e-5)


@pytest.mark.parametrize("exponent", [-0.1, 1.5])
def test_rescale_exponent_out_of_range_is_rejected(exponent):
    with pytest.raises(ValueError, match="0 <= rescale_momentum <= 1"):
        salsa_optax.salsa(rescale_momentum=exponent)


def _skipped_step(tx, noisy=False):
    """The distance a step the schedule skips moves, its step size, both direction norms, and the
    states before and after it; with ``noisy``, the state before it has measured a noisy loss."""
    step = make_train_step(tx, MLP)
    params, state = MLP.params, tx.init(MLP.params)
    for _ in range(12):
        params, state, _ = step(params, state)
    # A settled step size (fast and slow averages equal) and a search just made: the schedule
    # skips the next step.
    state = optax.tree.set(
        state,
        learning_rate_fast=state.learning_rate,
        learning_rate_slow=state.learning_rate,
        steps_since_search=jnp.zeros_like(state.steps_since_search),
    )
    if noisy:  # residuals 100 times the linear change, none pending
        one = jnp.ones_like(state.noise.residual_sq)
        noise = state.noise._replace(
            pending=jnp.asarray(False), residual_sq=one, linear_sq=1e-4 * one
        )
        state = optax.tree.set(state, noise=noise)
    grads = jax.grad(MLP.loss)(params, MLP.x, MLP.y)
    new_params, new_state, _ = step(params, state)
    assert not bool(new_state.info.searched)
    search, momentum, _ = adam_directions(0.9, 0.999, 1e-8, False).update(
        grads, state.directions, state.count
    )
    moved = optax.tree.norm(jax.tree.map(jnp.subtract, new_params, params))
    step_size = new_state.info.step_size
    return moved, step_size, optax.tree.norm(search), optax.tree.norm(momentum), state, new_state


@pytest.mark.parametrize("increase_factor", [1.0, 1.1])
@pytest.mark.parametrize(
    ("kwargs", "noisy"),
    [({}, False), ({"rescale_each_step": True}, True), ({"multiplier_noise": None}, False)],
    ids=["default-deterministic", "each-step-noisy", "no-noise-gate"],
)
def test_skipped_step_that_measures_the_rescaling_moves_as_far_as_the_search_direction(
    increase_factor, kwargs, noisy
):
    moved, step_size, search_norm, momentum_norm, _, new_state = _skipped_step(
        salsa_optax.salsa(increase_factor=increase_factor, **kwargs), noisy
    )
    np.testing.assert_allclose(moved, step_size * search_norm, rtol=1e-4)
    assert search_norm > 1.2 * momentum_norm  # the rescaling matters here
    np.testing.assert_allclose(new_state.step_scale, search_norm / momentum_norm, rtol=1e-5)


@pytest.mark.parametrize("increase_factor", [1.0, 1.1])
def test_default_skipped_step_on_a_noisy_loss_keeps_the_rescaling_of_the_last_search(
    increase_factor,
):
    moved, step_size, search_norm, momentum_norm, state, new_state = _skipped_step(
        salsa_optax.salsa(increase_factor=increase_factor), noisy=True
    )
    factor = float(state.step_scale)
    assert factor > 1.1  # measured, not the initial 1
    np.testing.assert_allclose(moved, step_size * factor * momentum_norm, rtol=1e-4)
    # The factor of this step's own directions differs: the step does not measure it.
    assert abs(search_norm / momentum_norm - factor) > 1e-3 * factor
    assert float(new_state.step_scale) == factor


def test_published_skipped_steps_move_along_plain_momentum():
    for tx in (salsa_optax.salsa_published(), salsa_optax.salsa(rescale_momentum=False)):
        moved, step_size, _, momentum_norm, state, _ = _skipped_step(tx)
        np.testing.assert_allclose(moved, step_size * momentum_norm, rtol=1e-4)
        assert state.step_scale is None


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
    directions = adam_directions(0.9, 0.999, 1e-8, False, rescale)
    search, direction, _ = directions.update(grads, state.directions, state.count)
    factor = directions.step_scale(search, direction) if rescale else 1.0
    if rescale:  # measured at this search and kept for the steps it skips
        np.testing.assert_allclose(new_state.step_scale, factor, rtol=1e-6)
    moved = jax.tree.map(jnp.subtract, new_params, params)
    expected = optax.tree.scale(new_state.info.step_size * factor, direction)
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    jax.tree.map(close, moved, expected)
    # The search itself is unchanged: same step size, different point.
    _, trial_point_state, _ = make_train_step(to_trial_point, MLP)(params, state)
    np.testing.assert_allclose(trial_point_state.learning_rate, new_state.learning_rate, rtol=1e-6)


@pytest.mark.parametrize(
    ("name", "value", "requirement"),
    [
        ("b1", 1.0, "0 <= b1 < 1"),
        ("b2", -0.5, "0 <= b2 < 1"),
        ("eps", 0.0, "eps > 0"),
        ("rescale_momentum", 1.5, "0 <= rescale_momentum <= 1 (False = 0, True = 1)"),
    ],
)
def test_out_of_range_moment_hyperparameters_are_named_with_their_range(name, value, requirement):
    kwargs = {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "search_with_momentum": False, name: value}
    with pytest.raises(ValueError) as error:
        adam_directions(**kwargs)
    assert str(error.value) == f"{name}={value!r} is out of range: it must satisfy {requirement}."


def test_memoryless_moments_give_the_sign_of_the_gradient():
    """b1 = b2 = 0 (the closed ends of their ranges): m = g and v = g^2 with no bias correction
    (1 - 0^t = 1), so both directions are -g / (|g| + eps)."""
    eps = 1e-8
    directions = adam_directions(0.0, 0.0, eps, False, rescale_momentum=True)
    grads = {"a": jnp.array([2.0, -0.5]), "b": jnp.array([-4.0])}
    state = AdamDirectionsState(
        mu={"a": jnp.array([3.0, 3.0]), "b": jnp.array([1.0])},
        nu={"a": jnp.array([9.0, 1.0]), "b": jnp.array([7.0])},
    )
    search, step, new = directions.update(grads, state, jnp.asarray(4))
    expected = jax.tree.map(lambda g: -g / (jnp.abs(g) + eps), grads)
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6)
    jax.tree.map(close, search, expected)
    jax.tree.map(close, step, expected)
    jax.tree.map(close, new.nu, jax.tree.map(jnp.square, grads))


def test_rescaling_falls_back_to_the_plain_step_where_the_norms_underflow():
    """|g| = 1e-23 in float32: g^2 = 1e-46 underflows, so both norms are 0 and their ratio is
    0 / 0. b1 = 0 and v_hat = 1 make the plain step -g / (1 + eps) = -g (to round-off: sqrt(v_hat)
    is sqrt(v) sqrt(1 / (1 - b2^t))); it is kept unscaled."""
    directions = adam_directions(0.0, 0.5, 1e-8, False, rescale_momentum=True)
    tiny = jnp.full(3, 1e-23, jnp.float32)
    state = AdamDirectionsState(mu=jnp.zeros(3, jnp.float32), nu=jnp.ones(3, jnp.float32))
    # t = 1: v = 0.5 * 1 + 0.5 * g^2 = 0.5, v_hat = 0.5 / (1 - 0.5) = 1.
    search, step, _ = directions.update(tiny, state, jnp.asarray(0))
    assert float(optax.tree.norm(search)) == 0.0 and float(optax.tree.norm(step)) == 0.0
    np.testing.assert_allclose(step, -tiny, rtol=1e-6)
    assert float(directions.step_scale(search, step)) == 1.0


def test_published_step_matches_optax_adam_leaf_by_leaf_in_mixed_precision():
    """A bfloat16 leaf beside a float32 one: each leaf of -P m_hat keeps its own dtype, as in
    optax.scale_by_adam."""
    params = {"half": jnp.array([0.5, -1.5], jnp.bfloat16), "full": jnp.array([2.0], jnp.float32)}
    grads = jax.tree.map(lambda p: (3 * p).astype(p.dtype), params)
    directions = adam_directions(0.9, 0.999, 1e-8, False, rescale_momentum=False)
    _, step, _ = directions.update(grads, directions.init(params), jnp.asarray(0))
    adam_updates, _ = optax.scale_by_adam().update(grads, optax.scale_by_adam().init(params))
    for ours, theirs in zip(jax.tree.leaves(step), jax.tree.leaves(adam_updates), strict=True):
        assert ours.dtype == theirs.dtype
        np.testing.assert_allclose(ours.astype(jnp.float32), -theirs.astype(jnp.float32), rtol=1e-2)


def test_an_array_rescale_exponent_keeps_the_step_in_the_parameter_dtype():
    """Under optax.inject_hyperparams the exponent is a float32 array: the factor is a scalar in
    the norms' dtype, and the directions stay bfloat16."""
    params = jnp.array([0.5, -1.5, 1.0], jnp.bfloat16)
    rho = jnp.array(0.5, jnp.float32)
    directions = adam_directions(0.9, 0.999, 1e-8, False, rescale_momentum=rho)
    search, step, _ = directions.update(params, directions.init(params), jnp.asarray(0))
    assert search.dtype == step.dtype == jnp.bfloat16
    factor = directions.step_scale(search, step)
    ratio = optax.tree.norm(search) / optax.tree.norm(step)
    assert ratio.dtype == factor.dtype == jnp.bfloat16 and factor.shape == ()
    assert factor == ratio ** jnp.bfloat16(0.5)


@pytest.mark.parametrize("make_tx", [salsa_optax.salsa_sgd, salsa_optax.sls])
def test_gradient_direction_keeps_optax_empty_state(make_tx):
    assert make_tx().init(jnp.zeros(2)).directions == optax.EmptyState()


def test_incoming_direction_keeps_optax_empty_state():
    tx = salsa_optax.scale_by_salsa()
    assert tx.init(jnp.zeros(2)).directions == optax.EmptyState()


@pytest.mark.parametrize("search_with_momentum", [False, True])
@pytest.mark.parametrize(
    "make",
    [
        lambda momentum: adam_directions(0.9, 0.999, 1e-8, momentum),
        lambda momentum: gradient_direction(),
        lambda momentum: incoming_direction(),
    ],
    ids=["adam", "gradient", "incoming"],
)
def test_combine_is_the_per_leaf_combination_of_the_two_directions(make, search_with_momentum):
    # The transform forms every update as a * search + b * step, leaf by leaf: a searched step
    # (b = 0), a skipped one (a = 0), both at once, and no step at all (both 0).
    params, state = _moments_after(5)
    grads = jax.grad(MLP.loss)(params, MLP.x, MLP.y)
    directions = make(search_with_momentum)
    new_state = directions.accumulate(grads, state.directions, state.count)
    search, step = directions.along(grads, new_state, state.count)
    treedef = jax.tree.structure(grads)
    leaves = treedef.num_leaves
    for a, b in [
        (np.linspace(0.5, 2.0, leaves), np.zeros(leaves)),
        (np.zeros(leaves), np.linspace(3.0, 0.25, leaves)),
        (np.full(leaves, 0.5), np.linspace(-1.0, 2.0, leaves)),
        (np.zeros(leaves), np.zeros(leaves)),
    ]:
        a_tree, b_tree = (treedef.unflatten(list(jnp.asarray(c, jnp.float32))) for c in (a, b))
        combined = directions.combine(grads, new_state, state.count, a_tree, b_tree)
        expected = jax.tree.map(lambda s, d, a, b: a * s + b * d, search, step, a_tree, b_tree)
        jax.tree.map(
            lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-6, atol=1e-30), combined, expected
        )
