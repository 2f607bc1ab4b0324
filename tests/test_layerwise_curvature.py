"""Tests of the layer-wise curvature step sizes."""

import inspect
import itertools
import math
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from recording import record_calls

from salsa_optax._src import layerwise_curvature as lc

# A quadratic 0.5 * sum_l w_l^T A_l w_l with a known diagonal Hessian block per leaf.
_CURVATURES = {"a": jnp.array([1.0, 3.0]), "b": jnp.array([[2.0, 5.0], [0.5, 4.0]])}


def _quadratic(params):
    return 0.5 * optax.tree.vdot(params, optax.tree.mul(_CURVATURES, params))


def _params():
    return {"a": jnp.array([1.0, -2.0]), "b": jnp.array([[0.5, 1.0], [-1.0, 2.0]])}


def _update(tx, updates, state, params, loss=_quadratic, **extra):
    value, grad = jax.value_and_grad(loss)(params)
    return tx.update(updates, state, params, value=value, grad=grad, value_fn=loss, **extra)


@pytest.mark.parametrize("estimator", ["exact", "rademacher"])
def test_step_size_is_the_block_line_minimiser(estimator):
    tx = lc.scale_by_layerwise_curvature(estimator=estimator, max_learning_rate=100.0)
    params = _params()
    direction = {"a": jnp.array([-1.0, 1.0]), "b": jnp.array([[-1.0, 0.0], [2.0, -1.0]])}
    grad = jax.grad(_quadratic)(params)
    update = jax.jit(lambda d, s, p: _update(tx, d, s, p))
    updates, state = update(direction, tx.init(params), params)
    for leaf in ("a", "b"):
        d, g, a = direction[leaf], grad[leaf], _CURVATURES[leaf]
        expected = -jnp.vdot(g, d) / jnp.vdot(d, a * d)
        assert state.learning_rate[leaf] == pytest.approx(float(expected), rel=1e-5)
        np.testing.assert_allclose(updates[leaf], expected * d, rtol=1e-5)
        assert state.info.curvature[leaf] == pytest.approx(float(jnp.vdot(d, a * d)), rel=1e-5)


def test_isotropic_blocks_give_one_over_curvature():
    loss = lambda p: 0.5 * (4.0 * jnp.sum(p["w"] ** 2) + 0.25 * jnp.sum(p["v"] ** 2))
    tx = optax.chain(optax.scale(-1.0), lc.scale_by_layerwise_curvature())
    params = {"w": jnp.array([1.0, -3.0, 2.0]), "v": jnp.array([[1.0, 2.0]])}
    grad = jax.grad(loss)(params)
    _, state = jax.jit(lambda s: _update(tx, grad, s, params, loss=loss))(tx.init(params))
    rates = optax.tree_utils.tree_get(state, "learning_rate")
    assert rates["w"] == pytest.approx(0.25) and rates["v"] == pytest.approx(4.0)


def test_rademacher_probe_is_unbiased_on_coupled_blocks():
    coupling = jnp.array([[2.0, 0.7, -0.4], [0.7, 1.0, 0.3], [-0.4, 0.3, 3.0]])
    loss = lambda p: (
        0.5 * jnp.stack([p["x"], p["y"], p["z"]]) @ coupling @ jnp.stack([p["x"], p["y"], p["z"]])
    )
    params = {"x": jnp.array(1.0), "y": jnp.array(-1.0), "z": jnp.array(0.5)}
    direction = {"x": jnp.array(1.0), "y": jnp.array(2.0), "z": jnp.array(-1.0)}
    exact = lc._block_curvatures(loss, params, direction, "exact", None)
    probes = [
        lc._probe_curvatures(loss, params, direction, jnp.array(signs))
        for signs in itertools.product([-1.0, 1.0], repeat=3)
    ]
    mean = jax.tree.map(lambda *c: jnp.mean(jnp.stack(c)), *probes)
    chex.assert_trees_all_close(mean, exact, rtol=1e-6)
    chex.assert_trees_all_close(exact, {"x": 2.0, "y": 4.0, "z": 3.0}, rtol=1e-6)
    assert not np.allclose(probes[0]["x"], exact["x"])  # single probes carry cross terms
    # The transform with estimator="exact" measures the exact block curvatures.
    tx = lc.scale_by_layerwise_curvature(estimator="exact", smoothing=0.0)
    _, state = _update(tx, direction, tx.init(params), params, loss=loss)
    chex.assert_trees_all_close(state.info.curvature, exact, rtol=1e-6)


@pytest.mark.parametrize("estimator", ["exact", "rademacher"])
def test_safeguards(estimator):
    # Leaf "n" has negative curvature, "z" none at all (a linear loss), "u" an ascent direction,
    # "f" almost no curvature.
    def loss(p):
        return (
            -jnp.sum(p["n"] ** 2)
            + jnp.sum(p["z"])
            + jnp.sum(p["u"] ** 2)
            + jnp.sum(1e-3 * p["f"] ** 2 + p["f"])
        )

    params = {"n": jnp.ones(2), "z": jnp.ones(2), "u": jnp.ones(2), "f": jnp.ones(2)}
    direction = {"n": -jnp.ones(2), "z": -jnp.ones(2), "u": jnp.ones(2), "f": -jnp.ones(2)}
    tx = lc.scale_by_layerwise_curvature(
        initial_learning_rate=0.3, max_learning_rate=5.0, estimator=estimator
    )
    _, state = jax.jit(lambda s: _update(tx, direction, s, params, loss=loss))(tx.init(params))
    chex.assert_trees_all_close(state.learning_rate, {"n": 0.3, "z": 0.3, "u": 0.0, "f": 5.0})
    chex.assert_trees_all_close(state.info.curvature["z"], 0.0)
    chex.assert_trees_all_close(state.info.numerator, {"n": 0.0, "z": 2.0, "u": 0.0, "f": 2.004})


def test_damping_adds_curvature_along_the_direction():
    tx = lc.scale_by_layerwise_curvature(damping=1.0, estimator="exact")
    params = {"w": jnp.ones(2)}
    loss = lambda p: jnp.sum(p["w"] ** 2)  # curvature 2 per unit squared length
    _, state = jax.jit(lambda s: _update(tx, {"w": -jnp.ones(2)}, s, params, loss=loss))(
        tx.init(params)
    )
    assert state.learning_rate["w"] == pytest.approx(4.0 / (4.0 + 2.0))


def test_refresh_every_k_steps_reuses_the_step_sizes():
    # A loss whose curvature changes with the parameters makes every refresh visible.
    loss = lambda p: jnp.sum(jnp.cosh(p))
    tx = lc.scale_by_layerwise_curvature(refresh_every=3, smoothing=0.0)
    params = jnp.array([2.0, -1.0])
    state = tx.init(params)
    step = jax.jit(lambda d, s, p: _update(tx, d, s, p, loss=loss))
    refreshed, rates = [], []
    for _ in range(7):
        updates, state = step(-jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
        refreshed.append(bool(state.info.refreshed))
        rates.append(float(state.learning_rate))
    assert refreshed == [True, False, False, True, False, False, True]
    assert rates[0] == rates[1] == rates[2] != rates[3] == rates[4] == rates[5] != rates[6]


def test_only_the_kwargs_value_fn_accepts_are_passed_and_chains_see_the_rest():
    x = jnp.array([[1.0, 2.0], [0.5, -1.0]])

    def loss(params, inputs):
        return jnp.sum((inputs @ params) ** 2)

    tx = lc.layerwise_curvature_sgd(momentum=0.0)
    params = jnp.ones(2)
    value, grad = jax.value_and_grad(loss)(params, x)
    updates, _ = tx.update(
        grad, tx.init(params), params, value=value, grad=grad, value_fn=loss, inputs=x, other=1
    )
    curvature = 2 * grad @ (x.T @ x) @ grad
    np.testing.assert_allclose(updates, -(grad @ grad) / curvature * grad, rtol=1e-5)


def test_missing_value_fn_says_how_to_call():
    tx = lc.scale_by_layerwise_curvature()
    params = jnp.ones(2)
    with pytest.raises(TypeError, match=r"Call `scale_by_layerwise_curvature` as .*value_fn"):
        tx.update(params, tx.init(params), params, value=1.0, grad=params)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"smoothing": 1.0}, "smoothing=1.0 is out of range: it must satisfy 0 <= smoothing < 1."),
        (
            {"smoothing": -0.1},
            "smoothing=-0.1 is out of range: it must satisfy 0 <= smoothing < 1.",
        ),
        ({"damping": -1.0}, "damping=-1.0 is out of range: it must satisfy 0 <= damping < inf."),
        (
            {"max_learning_rate": 0.0},
            "max_learning_rate=0.0 is out of range: it must satisfy 0 < max_learning_rate < inf.",
        ),
        (
            {"initial_learning_rate": -1.0},
            "initial_learning_rate=-1.0 is out of range: it must satisfy 0 <= "
            "initial_learning_rate < inf (0: no step until a positive curvature is measured).",
        ),
        (
            {"initial_learning_rate": 20.0},
            "initial_learning_rate=20.0 exceeds max_learning_rate=10.0: lower it or raise the "
            "maximum.",
        ),
        (
            {"refresh_every": 0},
            "refresh_every=0 is out of range: it must satisfy refresh_every is an integer >= 1.",
        ),
        (
            {"refresh_every": 1.5},
            "refresh_every=1.5 is out of range: it must satisfy refresh_every is an integer >= 1.",
        ),
        ({"seed": -1}, "seed=-1 is out of range: it must satisfy seed is an integer >= 0."),
        ({"seed": 0.5}, "seed=0.5 is out of range: it must satisfy seed is an integer >= 0."),
        (
            {"estimator": "hutchinson"},
            "estimator='hutchinson' must be one of ('rademacher', 'exact').",
        ),
    ],
)
def test_bad_hyperparameters_raise_naming_the_argument_and_range(kwargs, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        lc.scale_by_layerwise_curvature(**kwargs)


_NUMERIC = ["smoothing", "damping", "initial_learning_rate", "max_learning_rate", "refresh_every"]


@pytest.mark.parametrize("name", _NUMERIC)
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_hyperparameters_raise(name, value):
    with pytest.raises(ValueError, match=f"^{name}=.* is (out of range|not finite)"):
        lc.scale_by_layerwise_curvature(**{name: value})


@pytest.mark.parametrize(
    "factory, name, value, requirement",
    [
        ("sgd", "momentum", 1.0, "0 <= momentum < 1"),
        ("sgd", "momentum", -0.5, "0 <= momentum < 1"),
        ("adamw", "b1", 1.0, "0 <= b1 < 1"),
        ("adamw", "b2", math.nan, "0 <= b2 < 1"),
        ("adamw", "eps", 0.0, "0 < eps < inf"),
        ("adamw", "weight_decay", -1e-4, "0 <= weight_decay < inf"),
        ("adamw", "weight_decay", math.inf, "0 <= weight_decay < inf"),
        ("adamw", "smoothing", 1.0, "0 <= smoothing < 1"),
    ],
)
def test_aliases_check_their_own_hyperparameters(factory, name, value, requirement):
    factory = {"sgd": lc.layerwise_curvature_sgd, "adamw": lc.layerwise_curvature_adamw}[factory]
    problem = "is out of range" if math.isfinite(value) else "is not finite"
    message = f"{name}={value!r} {problem}: it must satisfy {requirement}."
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        factory(**{name: value})


def test_bounds_accept_their_edges_and_traced_values_pass():
    lc.scale_by_layerwise_curvature(
        smoothing=0.0, damping=0.0, initial_learning_rate=1.0, max_learning_rate=1.0, seed=0
    )
    lc.layerwise_curvature_adamw(b1=0.0, b2=0.0, weight_decay=0.0, refresh_every=3.0)
    names = [*_NUMERIC, "seed"]
    jax.jit(
        lambda *values: lc.scale_by_layerwise_curvature(
            **dict(zip(names, values, strict=True))
        ).init(jnp.ones(2))
    )(*(jnp.array(-1) for _ in names))


@pytest.mark.parametrize("poisoned", ["value", "grad", "updates", "updates_one_leaf"])
def test_each_non_finite_input_alone_leaves_params_and_state_alone(poisoned):
    tx = lc.scale_by_layerwise_curvature(initial_learning_rate=0.1)
    params = _params()
    state = tx.init(params)
    update = jax.jit(
        lambda d, g, s, loss_value: tx.update(
            d, s, params, value=loss_value, grad=g, value_fn=_quadratic
        )
    )
    grad = jax.grad(_quadratic)(params)
    direction = optax.tree.scale(-1.0, grad)
    _, state = update(direction, grad, state, 1.0)
    poison = lambda tree, value: jax.tree.map(lambda x: x.at[(0,) * x.ndim].set(value), tree)
    d, g, value = {
        "value": (direction, grad, jnp.nan),
        "grad": (direction, poison(grad, jnp.inf), 1.0),
        "updates": (poison(direction, jnp.nan), grad, 1.0),
        "updates_one_leaf": ({**direction, "b": direction["b"].at[1, 1].set(-jnp.inf)}, grad, 1.0),
    }[poisoned]
    for _ in range(2):
        updates, new_state = update(d, g, state, value)
        chex.assert_trees_all_equal(updates, optax.tree.zeros_like(params))
        assert (
            int(new_state.info.num_nonfinite_skipped) == int(state.info.num_nonfinite_skipped) + 1
        )
        chex.assert_trees_all_equal(new_state._replace(info=()), state._replace(info=()))
        chex.assert_trees_all_equal(new_state.info.curvature, state.info.curvature)
        assert not bool(new_state.info.refreshed)
        state = new_state


def test_non_finite_curvature_keeps_the_previous_step_sizes():
    tx = lc.scale_by_layerwise_curvature(initial_learning_rate=0.1)
    params = jnp.ones(2)
    nan_curvature = lambda p: jnp.sum(p**2) + jnp.nan * jnp.sum(p**4)
    updates, state = jax.jit(
        lambda s: tx.update(-params, s, params, value=1.0, grad=params, value_fn=nan_curvature)
    )(tx.init(params))
    np.testing.assert_allclose(updates, -0.1 * params)
    assert not bool(state.info.refreshed) and int(state.num_refreshes) == 0
    assert np.isfinite(float(state.curvature_ema))


@pytest.mark.parametrize("alias", ["sgd", "adamw"])
def test_aliases_compile_once_and_converge_on_logistic_regression(alias):
    num_features, loss, optimum = _logistic_regression()
    tx = {
        "sgd": lc.layerwise_curvature_sgd(momentum=0.5),
        "adamw": lc.layerwise_curvature_adamw(weight_decay=0.0, estimator="exact"),
    }[alias]
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def train(w, state):
        def step(carry, rows):
            w, state = carry
            value, grad = jax.value_and_grad(loss)(w, rows)
            updates, state = tx.update(
                grad, state, w, value=value, grad=grad, value_fn=loss, rows=rows
            )
            return (optax.apply_updates(w, updates), state), None

        return jax.lax.scan(step, (w, state), jnp.arange(512).reshape(-1, 64).repeat(10, 0))[0]

    w = jnp.zeros(num_features)
    state = tx.init(w)
    w, state = train(w, state)
    w, state = train(w, state)
    assert float(loss(w, jnp.arange(512))) < optimum + 0.02


def _cond_step(tx, params, state, take):
    value, grad = jax.value_and_grad(_quadratic)(params)
    updates, new_state = jax.lax.cond(
        take,
        lambda: tx.update(grad, state, params, value=value, grad=grad, value_fn=_quadratic),
        lambda: (grad, state),
    )
    return optax.apply_updates(params, updates), new_state


@pytest.mark.parametrize(
    "factory, kwargs",
    [
        (lc.layerwise_curvature_sgd, dict(momentum=0.9, smoothing=0.5, refresh_every=2)),
        (lc.layerwise_curvature_adamw, dict(b1=0.8, weight_decay=0.1, damping=0.5, seed=3)),
        (lc.scale_by_layerwise_curvature, dict(initial_learning_rate=0.2, max_learning_rate=2.0)),
    ],
)
def test_inject_hyperparams_matches_fixed_hyperparameters(factory, kwargs):
    outputs = []
    for tx in (factory(**kwargs), optax.inject_hyperparams(factory)(**kwargs)):
        params, state = _params(), tx.init(_params())
        step = jax.jit(lambda p, s, tx=tx: _cond_step(tx, p, s, True))
        for _ in range(3):
            params, state = step(params, state)
        outputs.append(params)
    chex.assert_trees_all_close(*outputs, rtol=1e-5)


@pytest.mark.parametrize("alias", ["sgd", "adamw"])
def test_bfloat16_params_keep_dtypes_under_cond_and_follow_the_float32_run(alias):
    tx = {
        "sgd": lc.layerwise_curvature_sgd(momentum=0.5, estimator="exact"),
        # The random probe, in the parameters' type (one sign draw for both runs).
        "adamw": lc.layerwise_curvature_adamw(estimator="rademacher"),
    }[alias]
    step = jax.jit(lambda p, s, take: _cond_step(tx, p, s, take))
    runs = {}
    for dtype in (jnp.bfloat16, jnp.float32):
        params = jax.tree.map(lambda p, dtype=dtype: p.astype(dtype), _params())
        state = tx.init(params)
        for take in (True, False, True):
            new_params, new_state = step(params, state, take)
            chex.assert_trees_all_equal_dtypes(new_params, params)
            chex.assert_trees_all_equal_dtypes(new_state, state)
            params, state = new_params, new_state
        runs[dtype] = params, state
    (low, low_state), (high, high_state) = runs[jnp.bfloat16], runs[jnp.float32]
    rates = optax.tree_utils.tree_get(low_state, "learning_rate")
    assert rates["a"].dtype == jnp.float32
    assert int(optax.tree_utils.tree_get(low_state, "num_refreshes")) == 2
    chex.assert_trees_all_close(
        rates, optax.tree_utils.tree_get(high_state, "learning_rate"), rtol=3e-2
    )
    chex.assert_trees_all_close(
        jax.tree.map(lambda x: x.astype(jnp.float32), low), high, rtol=3e-2, atol=3e-2
    )
    assert not np.allclose(high["a"], _params()["a"], atol=0.1)  # the run moved


def _logistic_regression():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((512, 6)), jnp.float32)
    labels = (x @ rng.standard_normal(6) + rng.standard_normal(512) > 0).astype(jnp.float32)

    def loss(w, rows):
        return jnp.mean(optax.sigmoid_binary_cross_entropy(x[rows] @ w, labels[rows]))

    # Newton's method in float64 for the minimum.
    xs, ys, w = np.asarray(x, np.float64), np.asarray(labels, np.float64), np.zeros(6)
    for _ in range(20):
        p = 1 / (1 + np.exp(-xs @ w))
        w = w - np.linalg.solve(xs.T @ (xs * (p * (1 - p))[:, None]), xs.T @ (p - ys))
    optimum = float(loss(jnp.asarray(w, jnp.float32), jnp.arange(512)))
    return x.shape[1], loss, optimum


def _alias_reference(alias, kwargs, steps=2):
    """The aliases' parameters after ``steps`` steps and the last step sizes, from their docstrings,
    in float64: exact curvatures, no smoothing."""
    hessian = {k: np.asarray(v, np.float64) for k, v in _CURVATURES.items()}
    w = {k: np.asarray(v, np.float64) for k, v in _params().items()}
    m = {k: np.zeros_like(v) for k, v in w.items()}
    v = {k: np.zeros_like(x) for k, x in w.items()}
    decayed = kwargs.get("mask", {k: True for k in w})
    alpha = {}
    for t in range(1, steps + 1):
        g = {k: hessian[k] * w[k] for k in w}
        for k in w:
            if alias == "sgd":
                m[k] = kwargs["momentum"] * m[k] + g[k]
                d, factor = -m[k], 1 - kwargs["momentum"]
                if kwargs.get("nesterov"):  # optax.trace's: the gradient plus the new momentum
                    d = -(g[k] + kwargs["momentum"] * m[k])
            else:
                b1, b2 = kwargs["b1"], kwargs["b2"]
                m[k] = b1 * m[k] + (1 - b1) * g[k]
                v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
                adam = (m[k] / (1 - b1**t)) / (np.sqrt(v[k] / (1 - b2**t)) + kwargs["eps"])
                d = -(adam + kwargs["weight_decay"] * w[k] * decayed[k])
                factor = 1 - b1
            alpha[k] = np.clip(-np.vdot(g[k], d) / np.vdot(d, hessian[k] * d), 0, 10.0)
            w[k] = w[k] + factor * alpha[k] * d
    return w, alpha


@pytest.mark.parametrize(
    "alias, kwargs",
    [
        ("sgd", {"momentum": 0.6}),
        ("sgd", {"momentum": 0.6, "nesterov": True}),
        (
            "adamw",
            {
                "b1": 0.7,
                "b2": 0.8,
                "eps": 0.5,
                "weight_decay": 0.3,
                "mask": {"a": True, "b": False},
            },
        ),
        ("adamw", {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 1e-4}),  # the defaults
    ],
    ids=["sgd", "sgd_nesterov", "adamw", "adamw_defaults"],
)
def test_alias_steps_match_their_formula(alias, kwargs):
    factory = {"sgd": lc.layerwise_curvature_sgd, "adamw": lc.layerwise_curvature_adamw}[alias]
    defaults = kwargs == {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 1e-4}
    tx = factory(**({} if defaults else kwargs), smoothing=0.0, estimator="exact")
    params, state = _params(), tx.init(_params())
    step = jax.jit(lambda p, s: _cond_step(tx, p, s, True))
    for _ in range(2):
        params, state = step(params, state)
    expected_params, expected_step_sizes = _alias_reference(alias, kwargs)
    chex.assert_trees_all_close(params, expected_params, rtol=1e-4, atol=1e-6)
    # The step size of the direction d itself (a multiple of d would give the same update).
    chex.assert_trees_all_close(
        optax.tree.get(state, "learning_rate"), expected_step_sizes, rtol=1e-4
    )


def test_the_state_keeps_its_types_from_init_so_a_jitted_step_compiles_once():
    """The per-leaf statistics start as strongly typed float32 arrays, as the update returns them:
    a weakly typed start would compile the step again at the second call."""
    tx = lc.scale_by_layerwise_curvature(estimator="exact")

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, state):
        return _update(tx, jax.grad(_quadratic)(params), state, params)[1]

    state = tx.init(_params())
    assert not any(leaf.weak_type for leaf in jax.tree.leaves(state))
    assert state.count.dtype == state.num_refreshes.dtype == jnp.int32
    assert state.info.num_nonfinite_skipped.dtype == jnp.int32
    zeros = {"a": 0.0, "b": 0.0}
    for statistics in (state.numerator_ema, state.curvature_ema, state.info.numerator,
                       state.info.curvature, state.learning_rate):  # fmt: skip
        chex.assert_trees_all_equal(statistics, jax.tree.map(jnp.float32, zeros))
    for _ in range(3):
        state = step(_params(), state)


_CURVATURE_DEFAULTS = dict(
    smoothing=0.9, damping=0.0, initial_learning_rate=0.0, max_learning_rate=10.0,
    refresh_every=1, estimator="rademacher", seed=0,
)  # fmt: skip


@pytest.mark.parametrize(
    "alias, own_defaults",
    [
        ("sgd", dict(momentum=0.9, nesterov=False)),
        ("adamw", dict(b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-4, mask=None)),
    ],
)
def test_aliases_forward_every_curvature_argument_and_keep_their_defaults(
    alias, own_defaults, monkeypatch
):
    factory = {"sgd": lc.layerwise_curvature_sgd, "adamw": lc.layerwise_curvature_adamw}[alias]
    defaults = {
        name: parameter.default for name, parameter in inspect.signature(factory).parameters.items()
    }
    assert defaults == own_defaults | _CURVATURE_DEFAULTS
    block = inspect.signature(lc.scale_by_layerwise_curvature).parameters
    assert {name: block[name].default for name in _CURVATURE_DEFAULTS} == _CURVATURE_DEFAULTS
    given = dict(
        smoothing=0.5, damping=0.25, initial_learning_rate=0.125, max_learning_rate=3.0,
        refresh_every=4, estimator="exact", seed=7,
    )  # fmt: skip
    received = record_calls(monkeypatch, lc, "scale_by_layerwise_curvature")
    factory(**given)
    factory()
    assert received == [given, _CURVATURE_DEFAULTS]


def test_default_step_sizes_seed_and_bounds():
    # Leaf "n" has negative curvature: it keeps the initial step size, 0 by default.
    loss = lambda p: -jnp.sum(p["n"] ** 2) + 1e-4 * jnp.sum(p["f"] ** 2) + jnp.sum(p["f"])
    params = {"n": jnp.ones(2), "f": jnp.ones(2)}
    direction = {"n": -jnp.ones(2), "f": -jnp.ones(2)}
    tx = lc.scale_by_layerwise_curvature()
    step = jax.jit(lambda s: _update(tx, direction, s, params, loss=loss))
    state = step(tx.init(params))[1]
    chex.assert_trees_all_close(state.learning_rate, {"n": 0.0, "f": 10.0})
    # The curvature is measured on every step.
    assert int(step(state)[1].num_refreshes) == 2
    seeded = lc.scale_by_layerwise_curvature(seed=0).init(params)
    chex.assert_trees_all_equal(tx.init(params).key, seeded.key)
