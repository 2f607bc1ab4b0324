"""Tests of the exponentiated-gradient step-size adaptation (EGDD)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from salsa_optax._src import eg_step_size

# The reference implementation's test: one tensor, two gradients.
_VECTOR_HPARAMS = dict(
    learning_rate=0.1, momentum=0.9, beta=0.1, gain_learning_rate=0.01, scale_learning_rate=0.001
)
_W0 = jnp.array([0.5, 1.0])
_GRADS = (jnp.array([0.1, -0.5]), jnp.array([-1.0, -1.5]))


def _run(tx, grads, params):
    state = tx.init(params)
    update = jax.jit(tx.update)
    trajectory = []
    for grad in grads:
        updates, state = update(grad, state, params)
        params = optax.apply_updates(params, updates)
        trajectory.append(params)
    return trajectory, state


@pytest.mark.parametrize("granularity", ["global", "per_leaf"])
@pytest.mark.parametrize(
    "use_signs, w2, gains",
    [
        (False, [0.5810, 1.2463], [0.9990, 1.0075]),
        (True, [0.5801, 1.2466], [0.9900, 1.0101]),
    ],
)
def test_reference_vectors(granularity, use_signs, w2, gains):
    tx = eg_step_size.egdd(**_VECTOR_HPARAMS, use_signs=use_signs, scale_granularity=granularity)
    (w1, w2_got), state = _run(tx, _GRADS, _W0)
    np.testing.assert_allclose(w1, [0.49, 1.05], rtol=1e-6)
    np.testing.assert_allclose(w2_got, w2, atol=1e-4)
    np.testing.assert_allclose(state.gains, gains, atol=1e-4)
    np.testing.assert_allclose(state.scale, 1.0007, atol=1e-4)
    np.testing.assert_allclose(optax.tree_utils.tree_get(state, "learning_rate"), 0.1 * state.scale)


@pytest.mark.parametrize("signal", ["previous_update", "gradient_ema"])
def test_gains_and_scale_grow_when_gradients_align_and_shrink_when_they_alternate(signal):
    tx = eg_step_size.scale_by_eg_step_size(learning_rate=1e-3, scale_signal=signal)
    g = jnp.array([1.0, -2.0, 0.5])
    _, aligned = _run(tx, [g] * 20, jnp.zeros(3))
    _, alternating = _run(tx, [g * (-1) ** k for k in range(20)], jnp.zeros(3))
    assert jnp.all(aligned.gains > 1.15) and aligned.scale > 1.01
    assert jnp.all(alternating.gains < 0.9) and alternating.scale < 0.99


def test_per_leaf_scales_follow_their_own_leaf():
    tx = eg_step_size.scale_by_eg_step_size(learning_rate=1e-3, scale_granularity="per_leaf")
    grads = [{"steady": jnp.ones(2), "flipping": jnp.ones(2) * (-1) ** k} for k in range(10)]
    _, state = _run(tx, grads, {"steady": jnp.zeros(2), "flipping": jnp.zeros(2)})
    assert state.scale["steady"] > 1.0 > state.scale["flipping"]
    assert state.learning_rate["steady"] == pytest.approx(1e-3 * state.scale["steady"])


def test_bounds_are_enforced():
    tx = eg_step_size.scale_by_eg_step_size(
        gain_learning_rate=1.0, scale_learning_rate=1.0, max_gain=2.0, max_scale=1.5
    )
    _, state = _run(tx, [jnp.ones(2)] * 10, jnp.zeros(2))
    np.testing.assert_allclose(state.gains, 2.0)
    np.testing.assert_allclose(state.scale, 1.5)


def test_inner_optimizer_with_frozen_adaptation_is_the_inner_optimizer():
    inner = optax.adam(0.05)
    tx = eg_step_size.scale_by_eg_step_size(inner, gain_learning_rate=0.0, scale_learning_rate=0.0)
    grads = [jnp.array([1.0, -2.0]) * (k + 1) for k in range(4)]
    ours, _ = _run(tx, grads, _W0)
    reference, _ = _run(inner, grads, _W0)
    chex.assert_trees_all_close(ours, reference, rtol=1e-6)


def test_extra_args_reach_the_inner_optimizer():
    # optax.polyak_sgd needs the loss value: it must arrive through the wrapper.
    tx = eg_step_size.scale_by_eg_step_size(optax.polyak_sgd())
    params = jnp.array([1.0, 2.0])
    loss = lambda w: jnp.sum(w**2)
    update = jax.jit(tx.update)
    updates, _ = update(jax.grad(loss)(params), tx.init(params), params, value=loss(params))
    np.testing.assert_allclose(updates, -0.5 * params, rtol=1e-6)


def test_non_finite_gradient_is_skipped_without_touching_the_state():
    tx = eg_step_size.egdd(0.1, 0.9)
    params = jnp.ones(2)
    _, state = _run(tx, [jnp.array([1.0, 2.0])] * 3, params)
    updates, new_state = jax.jit(tx.update)(jnp.array([jnp.nan, 1.0]), state, params)
    chex.assert_trees_all_equal(updates, jnp.zeros(2))
    assert int(new_state.info.num_nonfinite_skipped) == 1
    chex.assert_trees_all_equal(
        new_state._replace(info=new_state.info._replace(num_nonfinite_skipped=0)),
        state._replace(info=state.info._replace(num_nonfinite_skipped=0)),
    )


def test_one_compilation_under_jit_chain_and_scan_converges_on_logistic_regression():
    num_features, loss = _logistic_regression()
    tx = optax.chain(optax.clip_by_global_norm(10.0), eg_step_size.egdd(0.5, 0.9))

    @jax.jit
    @chex.assert_max_traces(n=1)
    def train(w, state):
        def step(carry, _):
            w, state = carry
            updates, state = tx.update(jax.grad(loss)(w), state, w)
            return (optax.apply_updates(w, updates), state), None

        return jax.lax.scan(step, (w, state), length=100)[0]

    w = jnp.zeros(num_features)
    state = tx.init(w)
    w, state = train(w, state)
    w, state = train(w, state)
    assert float(loss(w)) < 0.05  # from log(2) = 0.69; the data are separable


def test_inject_hyperparams_matches_fixed_hyperparameters():
    kwargs = dict(learning_rate=0.1, momentum=0.9, beta=0.5)
    plain = eg_step_size.egdd(**kwargs)
    injected = optax.inject_hyperparams(eg_step_size.egdd)(**kwargs)
    grads = [jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0]), jnp.array([-1.0, 3.0])]
    ours, _ = _run(injected, grads, _W0)
    reference, _ = _run(plain, grads, _W0)
    chex.assert_trees_all_close(ours, reference, rtol=1e-6)


def test_learning_rate_schedule():
    tx = eg_step_size.egdd(optax.linear_schedule(0.1, 0.0, 10), 0.0, scale_learning_rate=0.0)
    _, state = _run(tx, [jnp.ones(2)] * 3, jnp.zeros(2))
    assert float(optax.tree_utils.tree_get(state, "learning_rate")) == pytest.approx(0.08)


@pytest.mark.parametrize("granularity", ["global", "per_leaf"])
def test_bfloat16_params_keep_dtypes_under_cond(granularity):
    tx = eg_step_size.egdd(0.1, 0.9, scale_granularity=granularity)
    params = {"a": jnp.ones(3, jnp.bfloat16), "b": jnp.ones((), jnp.bfloat16)}
    state = tx.init(params)

    @jax.jit
    def step(params, state, take):
        grads = jax.tree.map(lambda p: p * 0.5, params)
        updates, new_state = jax.lax.cond(
            take, lambda: tx.update(grads, state, params), lambda: (grads, state)
        )
        return optax.apply_updates(params, updates), new_state

    for take in (True, True):
        new_params, new_state = step(params, state, take)
        chex.assert_trees_all_equal_dtypes(new_params, params)
        chex.assert_trees_all_equal_dtypes(new_state, state)
        params, state = new_params, new_state
    assert state.gains["a"].dtype == jnp.float32


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"momentum": 1.0}, "momentum"),
        ({"beta": -0.1}, "beta"),
        ({"min_scale": 0.0}, "min_scale"),
        ({"initial_gain": 200.0}, "initial_gain"),
        ({"scale_granularity": "per_layer"}, "scale_granularity"),
        ({"scale_signal": "ema"}, "scale_signal"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        eg_step_size.scale_by_eg_step_size(**kwargs)


def _logistic_regression():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((256, 6)), jnp.float32)
    labels = (x @ rng.standard_normal(6) > 0).astype(jnp.float32)
    loss = lambda w: jnp.mean(optax.sigmoid_binary_cross_entropy(x @ w, labels))
    return x.shape[1], loss
