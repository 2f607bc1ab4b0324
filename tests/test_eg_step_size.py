"""Tests of the exponentiated-gradient step-size adaptation (EGDD)."""

import inspect
import math
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from recording import record_calls

from salsa_optax._src import eg_step_size

# The reference implementation's test: one tensor, two gradients.
_VECTOR_HPARAMS = dict(
    learning_rate=0.1, momentum=0.9, beta=0.1, gain_learning_rate=0.01, scale_learning_rate=0.001
)
_W0 = jnp.array([0.5, 1.0])
_GRADS = (jnp.array([0.1, -0.5]), jnp.array([-1.0, -1.5]))
# Two leaves whose gradients turn and change size, so every signal and bound is exercised.
_TREE_GRADS = [
    {"a": np.array([0.3, -1.0, 2.0]), "b": np.array([[0.5]])},
    {"a": np.array([0.2, 1.5, 1.0]), "b": np.array([[-0.4]])},
    {"a": np.array([-0.6, 0.5, 1.2]), "b": np.array([[-0.3]])},
    {"a": np.array([-0.5, -0.2, 0.1]), "b": np.array([[0.8]])},
]


def _run(tx, grads, params):
    state = tx.init(params)
    update = jax.jit(tx.update)
    trajectory = []
    for grad in grads:
        updates, state = update(grad, state, params)
        params = optax.apply_updates(params, updates)
        trajectory.append(params)
    return trajectory, state


def _get(state, name):
    return optax.tree_utils.tree_get(state, name)


def _reference(grads, *, lr, mu, beta, eta_p, eta_s, p0, p_lo, p_hi, s0, s_lo, s_hi,
               use_directions, use_signs, per_leaf, signal):  # fmt: skip
    """The update equations of RELATED_METHODS.md section 2, in float64, leaf by leaf."""
    names = sorted(grads[0])
    h = {k: np.zeros_like(grads[0][k]) for k in names}
    m = {k: np.zeros_like(grads[0][k]) for k in names}
    p = {k: np.full_like(grads[0][k], p0) for k in names}
    s = dict.fromkeys(names, s0) if per_leaf else s0
    updates = []
    for t, g in enumerate(grads, start=1):
        ref = h if signal == "previous_update" else m
        sign = -1.0 if signal == "previous_update" else 1.0  # cos(-g, h) or cos(g, m)

        def align(keys, g=g, ref=ref, sign=sign):
            dot = sign * sum(np.vdot(g[k], ref[k]) for k in keys)
            if use_directions:
                norm_g = math.sqrt(sum(np.vdot(g[k], g[k]) for k in keys))
                norm_r = math.sqrt(sum(np.vdot(ref[k], ref[k]) for k in keys))
                dot /= (norm_g + 1e-10) * (norm_r + 1e-10)
            return dot

        if per_leaf:
            s = {k: np.clip(s[k] * np.exp(eta_s * align([k])), s_lo, s_hi) for k in names}
        else:
            s = np.clip(s * np.exp(eta_s * align(names)), s_lo, s_hi)
        for k in names:
            x = (
                np.sign(g[k]) * np.sign(m[k])
                if use_signs
                else g[k] * m[k] / (1 - beta ** max(t - 1, 1))
            )
            p[k] = np.clip(p[k] * np.exp(eta_p * x), p_lo, p_hi)
            h[k] = mu * h[k] - lr * p[k] * g[k]
            m[k] = beta * m[k] + (1 - beta) * g[k]
        updates.append({k: (s[k] if per_leaf else s) * h[k] for k in names})
    return updates, p, s


_DEFAULTS = dict(
    lr=0.1, mu=0.5, beta=0.6, eta_p=0.3, eta_s=0.2, p0=1.0, p_lo=0.8, p_hi=1.25, s0=1.0,
    s_lo=0.9, s_hi=1.1, use_directions=True, use_signs=True, per_leaf=False,
    signal="previous_update",
)  # fmt: skip


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"use_signs": False},
        {"use_directions": False},
        {"per_leaf": True},
        {"signal": "gradient_ema"},
        {"per_leaf": True, "signal": "gradient_ema", "use_directions": False},
        {"eta_s": 3.0, "eta_p": 3.0},  # every bound reached
    ],
    ids=["default", "no_signs", "no_directions", "per_leaf", "ema", "per_leaf_ema_raw", "clipped"],
)
def test_every_step_matches_the_update_equations(changes):
    hp = _DEFAULTS | changes
    tx = optax.chain(
        optax.sgd(1.0),
        eg_step_size.scale_by_eg_step_size(
            learning_rate=hp["lr"], momentum=hp["mu"], beta=hp["beta"],
            gain_learning_rate=hp["eta_p"], scale_learning_rate=hp["eta_s"],
            initial_gain=hp["p0"], min_gain=hp["p_lo"], max_gain=hp["p_hi"],
            initial_scale=hp["s0"], min_scale=hp["s_lo"], max_scale=hp["s_hi"],
            use_directions=hp["use_directions"], use_signs=hp["use_signs"],
            scale_granularity="per_leaf" if hp["per_leaf"] else "global",
            scale_signal=hp["signal"],
        ),
    )  # fmt: skip
    expected, gains, scale = _reference(_TREE_GRADS, **hp)
    params = jax.tree.map(jnp.zeros_like, _TREE_GRADS[0])
    state = tx.init(params)
    for grad, want in zip(_TREE_GRADS, expected, strict=True):
        updates, state = jax.jit(tx.update)(grad, state, params)
        chex.assert_trees_all_close(updates, want, rtol=2e-5, atol=1e-7)
    chex.assert_trees_all_close(_get(state, "gains"), gains, rtol=2e-5)
    chex.assert_trees_all_close(_get(state, "scale"), scale, rtol=2e-5)
    chex.assert_trees_all_close(
        _get(state, "learning_rate"), jax.tree.map(lambda x: hp["lr"] * x, scale), rtol=2e-5
    )
    assert int(_get(state, "count")) == len(_TREE_GRADS)


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
    np.testing.assert_allclose(_get(state, "gains"), gains, atol=1e-4)
    np.testing.assert_allclose(_get(state, "scale"), 1.0007, atol=1e-4)
    np.testing.assert_allclose(_get(state, "learning_rate"), 0.1 * _get(state, "scale"))


def test_descent_form_input_descends_and_egdd_is_sgd_then_the_block():
    """The block takes what optax.sgd(1.0) outputs: read as a gradient, it would climb."""
    loss = lambda w: jnp.sum((w - 1.0) ** 2)
    block = eg_step_size.scale_by_eg_step_size(learning_rate=0.1, momentum=0.5)
    grads, params = [], jnp.zeros(2)
    tx = optax.chain(optax.sgd(1.0), block)
    state = tx.init(params)
    for _ in range(5):
        grads.append(jax.grad(loss)(params))
        updates, state = tx.update(grads[-1], state, params)
        params = optax.apply_updates(params, updates)
    assert float(loss(params)) < 0.5 * float(loss(jnp.zeros(2)))
    egdd, _ = _run(eg_step_size.egdd(0.1, 0.5), grads, jnp.zeros(2))
    chex.assert_trees_all_close(egdd[-1], params, rtol=1e-6)


@pytest.mark.parametrize("signal", ["previous_update", "gradient_ema"])
def test_gains_and_scale_grow_when_gradients_align_and_shrink_when_they_alternate(signal):
    tx = optax.chain(
        optax.sgd(1.0), eg_step_size.scale_by_eg_step_size(learning_rate=1e-3, scale_signal=signal)
    )
    g = jnp.array([1.0, -2.0, 0.5])
    _, aligned = _run(tx, [g] * 20, jnp.zeros(3))
    _, alternating = _run(tx, [g * (-1) ** k for k in range(20)], jnp.zeros(3))
    assert jnp.all(_get(aligned, "gains") > 1.15) and _get(aligned, "scale") > 1.01
    assert jnp.all(_get(alternating, "gains") < 0.9) and _get(alternating, "scale") < 0.99


def test_after_adam_with_frozen_adaptation_is_adam():
    adam = optax.adam(0.05)
    tx = optax.chain(
        adam, eg_step_size.scale_by_eg_step_size(gain_learning_rate=0.0, scale_learning_rate=0.0)
    )
    grads = [jnp.array([1.0, -2.0]) * (k + 1) for k in range(4)]
    ours, _ = _run(tx, grads, _W0)
    reference, _ = _run(adam, grads, _W0)
    chex.assert_trees_all_close(ours, reference, rtol=1e-6)


def test_extra_args_pass_through_a_chain():
    # optax.polyak_sgd needs the loss value; the block ignores it.
    tx = optax.chain(optax.polyak_sgd(), eg_step_size.scale_by_eg_step_size(scale_learning_rate=0))
    params = jnp.array([1.0, 2.0])
    loss = lambda w: jnp.sum(w**2)
    update = jax.jit(tx.update)
    updates, _ = update(jax.grad(loss)(params), tx.init(params), params, value=loss(params))
    np.testing.assert_allclose(updates, -0.5 * params, rtol=1e-6)


@pytest.mark.parametrize("poisoned", ["nan", "inf", "one_leaf"])
def test_non_finite_updates_are_skipped_without_touching_the_state(poisoned):
    tx = eg_step_size.scale_by_eg_step_size(learning_rate=0.1, momentum=0.9)
    params = {"a": jnp.ones(2), "b": jnp.ones(())}
    _, state = _run(tx, [{"a": jnp.array([1.0, 2.0]), "b": jnp.array(0.5)}] * 3, params)
    bad = {
        "nan": {"a": jnp.array([jnp.nan, 1.0]), "b": jnp.array(0.5)},
        "inf": {"a": jnp.array([1.0, 1.0]), "b": jnp.array(-jnp.inf)},
        "one_leaf": {"a": jnp.array([1.0, 1.0]), "b": jnp.array(jnp.nan)},
    }[poisoned]
    updates, new_state = jax.jit(tx.update)(bad, state, params)
    chex.assert_trees_all_equal(updates, optax.tree.zeros_like(params))
    assert int(new_state.info.num_nonfinite_skipped) == 1
    chex.assert_trees_all_equal(new_state._replace(info=()), state._replace(info=()))
    chex.assert_trees_all_equal(new_state.info.alignment, state.info.alignment)
    finite, after = jax.jit(tx.update)(jax.tree.map(jnp.ones_like, params), new_state, params)
    assert int(after.info.num_nonfinite_skipped) == 1 and int(after.count) == 4
    assert all(bool(jnp.all(x != 0)) for x in jax.tree.leaves(finite))


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


@pytest.mark.parametrize("factory", ["egdd", "block"])
def test_inject_hyperparams_matches_fixed_hyperparameters(factory):
    kwargs = dict(learning_rate=0.1, momentum=0.9, beta=0.5, min_scale=0.5, max_gain=3.0)
    if factory == "egdd":
        plain = eg_step_size.egdd(**kwargs)
        injected = optax.inject_hyperparams(eg_step_size.egdd)(**kwargs)
    else:
        plain = optax.chain(optax.sgd(1.0), eg_step_size.scale_by_eg_step_size(**kwargs))
        injected = optax.chain(
            optax.sgd(1.0), optax.inject_hyperparams(eg_step_size.scale_by_eg_step_size)(**kwargs)
        )
    grads = [jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0]), jnp.array([-1.0, 3.0])]
    ours, state = _run(injected, grads, _W0)
    reference, _ = _run(plain, grads, _W0)
    chex.assert_trees_all_close(ours, reference, rtol=1e-6)
    assert float(_get(state, "hyperparams")["momentum"]) == pytest.approx(0.9)


def test_egdd_forwards_every_hyperparameter_and_keeps_the_reference_defaults(monkeypatch):
    given = dict(
        beta=0.3, gain_learning_rate=0.2, scale_learning_rate=0.4, initial_gain=2.0,
        min_gain=0.5, max_gain=3.0, initial_scale=1.5, min_scale=0.7, max_scale=4.0,
        use_directions=False, use_signs=False, scale_granularity="per_leaf",
    )  # fmt: skip
    # The reference implementation's defaults, in both factories.
    reference = dict(
        beta=0.9, gain_learning_rate=0.01, scale_learning_rate=0.001, initial_gain=1.0,
        min_gain=0.01, max_gain=100.0, initial_scale=1.0, min_scale=0.1, max_scale=10.0,
        use_directions=True, use_signs=True, scale_granularity="global",
    )  # fmt: skip
    received = record_calls(monkeypatch, eg_step_size, "scale_by_eg_step_size")
    eg_step_size.egdd(0.1, 0.9, **given)
    eg_step_size.egdd(0.1, 0.9)
    assert received == [
        dict(learning_rate=0.1, momentum=0.9, **given),
        dict(learning_rate=0.1, momentum=0.9, **reference),
    ]
    monkeypatch.undo()
    for factory in (eg_step_size.egdd, eg_step_size.scale_by_eg_step_size):
        defaults = {
            name: parameter.default
            for name, parameter in inspect.signature(factory).parameters.items()
            if name in reference
        }
        assert defaults == reference, factory.__name__


def test_state_types_counters_int32_and_one_scale_of_the_widest_parameter_type():
    params = {"a": jnp.ones(2, jnp.bfloat16), "b": jnp.ones(3, jnp.float32)}
    state = eg_step_size.scale_by_eg_step_size(learning_rate=0.5).init(params)
    assert state.count.dtype == state.info.num_nonfinite_skipped.dtype == jnp.int32
    assert state.scale.dtype == jnp.float32 and state.scale.shape == ()
    assert {k: v.dtype for k, v in state.gains.items()} == {"a": jnp.float32, "b": jnp.float32}
    _, after = jax.jit(eg_step_size.scale_by_eg_step_size(learning_rate=0.5).update)(
        {"a": jnp.array([jnp.nan, 1.0], jnp.bfloat16), "b": jnp.ones(3)}, state, params
    )
    assert after.info.num_nonfinite_skipped.dtype == jnp.int32


def test_init_reports_the_step_size_of_step_zero_of_a_schedule():
    tx = eg_step_size.scale_by_eg_step_size(
        learning_rate=lambda count: 0.5 + count, initial_scale=2.0
    )
    assert float(tx.init(jnp.zeros(2)).learning_rate) == 1.0


def test_cosine_of_directions_near_the_norm_guard_divides_by_norms_plus_the_guard():
    """Updates of norm ~1e-10 (the guard): cos = <d, h> / ((|d| + 1e-10) (|h| + 1e-10))."""
    d = np.array([1e-10, 2e-10], np.float32)
    tx = eg_step_size.scale_by_eg_step_size(learning_rate=0.1)
    _, state = _run(tx, [jnp.asarray(d)] * 2, jnp.zeros(2))
    h = 0.1 * d  # the velocity after the first step (gains 1, no momentum)
    norm = lambda x: float(np.linalg.norm(x.astype(np.float64)))
    expected = float(d.astype(np.float64) @ h) / ((norm(d) + 1e-10) * (norm(h) + 1e-10))
    assert 0.1 < expected < 0.2
    np.testing.assert_allclose(float(state.info.alignment), expected, rtol=1e-4)


def test_learning_rate_schedule():
    tx = eg_step_size.egdd(optax.linear_schedule(0.1, 0.0, 10), 0.0, scale_learning_rate=0.0)
    _, state = _run(tx, [jnp.ones(2)] * 3, jnp.zeros(2))
    assert float(_get(state, "learning_rate")) == pytest.approx(0.08)


@pytest.mark.parametrize("granularity", ["global", "per_leaf"])
def test_bfloat16_params_keep_dtypes_and_follow_the_float32_run(granularity):
    tx = eg_step_size.egdd(0.1, 0.9, scale_granularity=granularity, scale_learning_rate=0.1)

    @jax.jit
    def step(params, state, take):
        grads = jax.tree.map(lambda p: (p - 3.0) * 0.5, params)
        updates, new_state = jax.lax.cond(
            take, lambda: tx.update(grads, state, params), lambda: (grads, state)
        )
        return optax.apply_updates(params, updates), new_state

    runs = {}
    for dtype in (jnp.bfloat16, jnp.float32):
        params = {"a": jnp.array([1.0, -2.0, 0.5], dtype), "b": jnp.ones((), dtype)}
        state = tx.init(params)
        for take in (True, True, True):
            new_params, new_state = step(params, state, take)
            chex.assert_trees_all_equal_dtypes(new_params, params)
            chex.assert_trees_all_equal_dtypes(new_state, state)
            params, state = new_params, new_state
        runs[dtype] = params, state
    (low, low_state), (high, high_state) = runs[jnp.bfloat16], runs[jnp.float32]
    assert _get(low_state, "gains")["a"].dtype == jnp.float32
    chex.assert_trees_all_close(low, high, rtol=2e-2, atol=2e-2)
    chex.assert_trees_all_close(_get(low_state, "scale"), _get(high_state, "scale"), rtol=1e-3)
    chex.assert_trees_all_close(_get(low_state, "gains"), _get(high_state, "gains"), rtol=1e-3)
    assert not np.allclose(high["a"], [1.0, -2.0, 0.5], atol=0.1)  # the run moved


_NUMERIC = [
    "learning_rate", "momentum", "beta", "gain_learning_rate", "scale_learning_rate",
    "initial_gain", "min_gain", "max_gain", "initial_scale", "min_scale", "max_scale",
]  # fmt: skip


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"learning_rate": 0.0},
            ("learning_rate=0.0 is out of range: it must satisfy 0 < learning_rate < inf."),
        ),
        ({"momentum": 1.0}, ("momentum=1.0 is out of range: it must satisfy 0 <= momentum < 1.")),
        ({"momentum": -0.1}, ("momentum=-0.1 is out of range: it must satisfy 0 <= momentum < 1.")),
        ({"beta": -0.1}, "beta=-0.1 is out of range: it must satisfy 0 <= beta < 1."),
        ({"beta": 1.0}, "beta=1.0 is out of range: it must satisfy 0 <= beta < 1."),
        (
            {"gain_learning_rate": -1.0},
            (
                "gain_learning_rate=-1.0 is out of range: it must "
                "satisfy 0 <= gain_learning_rate < inf (0 freezes it)."
            ),
        ),
        (
            {"scale_learning_rate": math.inf},
            (
                "scale_learning_rate=inf is not finite: it must "
                "satisfy 0 <= scale_learning_rate < inf (0 freezes it)."
            ),
        ),
        (
            {"min_scale": 0.0},
            (
                "min_scale=0.0 is out of range: it must satisfy 0 < "
                "min_scale < inf (EG is multiplicative)."
            ),
        ),
        (
            {"max_gain": math.inf},
            (
                "max_gain=inf is not finite: it must satisfy 0 < "
                "max_gain < inf (EG is multiplicative)."
            ),
        ),
        (
            {"initial_gain": 200.0},
            (
                "min_gain=0.01 <= initial_gain=200.0 <= max_gain=100.0 "
                "must hold: move initial_gain inside the bounds."
            ),
        ),
        (
            {"initial_scale": 0.05},
            (
                "min_scale=0.1 <= initial_scale=0.05 <= max_scale=10.0 "
                "must hold: move initial_scale inside the bounds."
            ),
        ),
        (
            {"min_scale": 2.0, "initial_scale": 2.0, "max_scale": 1.5},
            (
                "min_scale=2.0 <= initial_scale=2.0 <= max_scale=1.5 "
                "must hold: move initial_scale inside the bounds."
            ),
        ),
        (
            {"scale_granularity": "per_layer"},
            ("scale_granularity='per_layer' must be one of ('global', 'per_leaf')."),
        ),
        (
            {"scale_signal": "ema"},
            ("scale_signal='ema' must be one of ('previous_update', 'gradient_ema')."),
        ),
    ],
)
def test_bad_hyperparameters_raise_naming_the_argument_and_range(kwargs, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        eg_step_size.scale_by_eg_step_size(**kwargs)


@pytest.mark.parametrize("name", _NUMERIC)
@pytest.mark.parametrize("value", [math.nan, -math.inf])
def test_non_finite_hyperparameters_raise(name, value):
    with pytest.raises(ValueError, match=f"^{name}=.* is (out of range|not finite)"):
        eg_step_size.scale_by_eg_step_size(**{name: value})


@pytest.mark.parametrize("name", ["use_directions", "use_signs"])
def test_flags_must_be_booleans(name):
    with pytest.raises(TypeError, match=f"^{name}=1 must be True or False.$"):
        eg_step_size.egdd(0.1, 0.9, **{name: 1})


def test_bounds_accept_their_edges_and_traced_values_pass():
    eg_step_size.scale_by_eg_step_size(
        momentum=0.0, beta=0.0, gain_learning_rate=0.0, scale_learning_rate=0.0,
        min_gain=1.0, initial_gain=1.0, max_gain=1.0, min_scale=1.0, initial_scale=1.0,
        max_scale=1.0,
    )  # fmt: skip
    jax.jit(
        lambda *values: eg_step_size.scale_by_eg_step_size(
            **dict(zip(_NUMERIC, values, strict=True))
        ).init(jnp.ones(2))
    )(*(jnp.array(-1.0) for _ in _NUMERIC))


def _logistic_regression():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((256, 6)), jnp.float32)
    labels = (x @ rng.standard_normal(6) > 0).astype(jnp.float32)
    loss = lambda w: jnp.mean(optax.sigmoid_binary_cross_entropy(x @ w, labels))
    return x.shape[1], loss
