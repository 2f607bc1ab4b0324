"""Non-finite losses and gradients never corrupt the state; bad use gets an error naming the fix."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from objectives import OBJECTIVES, make_train_step

import salsa_optax
from salsa_optax._src import armijo

MLP = OBJECTIVES[3]


def _warm_state(tx, steps=12):
    step = make_train_step(tx, MLP)
    params, state = MLP.params, tx.init(MLP.params)
    for _ in range(steps):
        params, state, _ = step(params, state)
    return params, state


@pytest.mark.parametrize("bad", ["nan_value", "inf_grad", "nan_grad"])
def test_nonfinite_step_changes_nothing_but_the_counter(bad):
    tx = salsa_optax.salsa()
    params, state = _warm_state(tx)
    value, grad = jax.value_and_grad(MLP.loss)(params, MLP.x, MLP.y)
    if bad == "nan_value":
        value = jnp.nan
    else:
        poison = jnp.inf if bad == "inf_grad" else jnp.nan
        grad = {**grad, "w1": grad["w1"].at[0, 0].set(poison)}
    update = jax.jit(lambda g, s, p, v: tx.update(g, s, p, value=v, grad=g, value_fn=MLP.loss,
                                                x=MLP.x, y=MLP.y))  # fmt: skip
    updates, new_state = update(grad, state, params, value)
    assert all(bool(jnp.all(u == 0)) for u in jax.tree.leaves(updates))
    info = new_state.info
    # The last step's diagnostics say: no search, no evaluation, no step, no test; the totals
    # but the non-finite one are the warm state's.
    assert int(state.info.total_searches) > 0 and float(state.info.step_size) > 0
    expected = state.info._replace(
        searched=False,
        search_outcome=armijo.NON_FINITE,
        num_evaluations=0,
        num_backtracks=0,
        step_size=0.0,
        armijo_margin=np.inf,
        total_nonfinite_skipped=int(state.info.total_nonfinite_skipped) + 1,
    )
    for name, value in expected._asdict().items():
        assert np.asarray(getattr(info, name)) == np.asarray(value), name
    same = optax.tree.set(new_state, info=state.info)
    jax.tree.map(np.testing.assert_array_equal, same, state)
    # Training goes on from the untouched state.
    step = make_train_step(tx, MLP)
    params, new_state, value = step(params, new_state)
    assert np.isfinite(value) and int(new_state.count) == int(state.count) + 1


def test_nonfinite_trial_is_rejected():
    """A trial whose loss is NaN is rejected; the search backtracks to a finite one."""

    def loss(w):
        # NaN beyond |w| > 1: the first trials overshoot into it.
        return jnp.where(jnp.abs(w[0]) > 1.0, jnp.nan, jnp.sum(w**2))

    tx = salsa_optax.sls(initial_learning_rate=10.0)
    w = jnp.array([0.5])
    state = tx.init(w)
    value, grad = jax.value_and_grad(loss)(w)
    updates, state = tx.update(grad, state, w, value=value, grad=grad, value_fn=loss)
    assert int(state.info.search_outcome) == armijo.ACCEPTED
    assert int(state.info.num_backtracks) > 0
    assert np.isfinite(loss(w + updates)) and float(loss(w + updates)) < float(value)


def test_exhausted_search_takes_no_step():
    loss = lambda w: jnp.sum(w**2)
    never = lambda w: jnp.sum(w**2) + 100.0  # every trial looks worse than the current loss
    tx = salsa_optax.sls(max_backtracking_steps=5)
    w = jnp.array([1.0, -2.0])
    state = tx.init(w)
    value, grad = jax.value_and_grad(loss)(w)
    updates, state = tx.update(grad, state, w, value=value, grad=grad, value_fn=never)
    assert int(state.info.search_outcome) == armijo.EXHAUSTED
    # Five trials, then one evaluation at params that finds value_fn disagreeing with `value`.
    assert int(state.info.num_evaluations) == 6 and int(state.info.num_backtracks) == 5
    assert int(state.info.total_exhausted) == 1 and int(state.info.total_value_mismatches) == 1
    np.testing.assert_array_equal(updates, jnp.zeros(2))
    assert float(state.learning_rate) == 1.0  # kept, not 0.9**5


def test_published_search_bypassed_below_loss_threshold_without_growth():
    loss = lambda w: jnp.sum(w**2)
    tx = salsa_optax.salsa_published()
    w = jnp.array([1e-5])
    state = tx.init(w)
    value, grad = jax.value_and_grad(loss)(w)
    updates, state = tx.update(grad, state, w, value=value, grad=grad, value_fn=loss)
    assert int(state.info.search_outcome) == armijo.BYPASSED
    assert int(state.info.num_evaluations) == 0
    # The stored step size (1) is taken untested along -P g = -sign(g) (first Adam step), and
    # not grown.
    np.testing.assert_allclose(updates, -1.0 * jnp.sign(grad), rtol=1e-3)
    assert float(state.learning_rate) == 1.0


def test_missing_line_search_arguments():
    tx = salsa_optax.salsa()
    params = MLP.params
    state = tx.init(params)
    value, grad = jax.value_and_grad(MLP.loss)(params, MLP.x, MLP.y)
    with pytest.raises(TypeError, match=r"missing value_fn.*value_fn=loss_fn"):
        tx.update(grad, state, params, value=value, grad=grad)
    with pytest.raises(TypeError, match="missing value, grad"):
        tx.update(grad, state, params, value_fn=MLP.loss)
    with pytest.raises(TypeError, match="missing params"):
        tx.update(grad, state, value=value, grad=grad, value_fn=MLP.loss)
    with pytest.raises(TypeError, match="must be callable"):
        tx.update(grad, state, params, value=value, grad=grad, value_fn="loss")


def test_nonscalar_loss():
    tx = salsa_optax.salsa()
    params = MLP.params
    state = tx.init(params)
    grad = jax.grad(MLP.loss)(params, MLP.x, MLP.y)
    with pytest.raises(ValueError, match=r"scalar loss, got shape \(32,\).*mean"):
        tx.update(grad, state, params, value=jnp.ones(32), grad=grad, value_fn=MLP.loss,
              x=MLP.x, y=MLP.y)  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"slope_rtol": 0.0}, "0 < slope_rtol < 1"),
        ({"slope_rtol": 1.5}, "0 < slope_rtol < 1"),
        ({"smoothing": 1.0}, "0 <= smoothing < 1"),
        ({"decrease_factor": 1.0}, "0 < decrease_factor < 1"),
        ({"increase_factor": 0.9}, "increase_factor >= 1"),
        ({"max_backtracking_steps": 0}, "max_backtracking_steps >= 1"),
        ({"initial_learning_rate": -1.0}, "initial_learning_rate > 0"),
        ({"max_learning_rate": 0.0}, "max_learning_rate > 0"),
        ({"warmup_searches": -1}, "warmup_searches >= 0"),
        ({"max_search_interval": 0}, "max_search_interval >= 1"),
        ({"weight_decay": -0.1}, "weight_decay >= 0"),
        ({"slope_rtol": jnp.ones(2)}, "slope_rtol must be a scalar"),
    ],
)
def test_hyperparameters_out_of_range(kwargs, message):
    with pytest.raises(ValueError, match=message):
        salsa_optax.salsa(**kwargs)


def test_scale_by_salsa_checks_its_hyperparameters_too():
    with pytest.raises(ValueError, match="0 <= smoothing < 1"):
        salsa_optax.scale_by_salsa(smoothing=-0.5)
    with pytest.raises(ValueError, match="0 < slope_rtol < 1"):
        optax.chain(optax.scale_by_adam(), salsa_optax.scale_by_salsa(slope_rtol=2.0))


_REQUIREMENTS = {
    "slope_rtol": "0 < slope_rtol < 1",
    "smoothing": "0 <= smoothing < 1",
    "decrease_factor": "0 < decrease_factor < 1",
    "increase_factor": "increase_factor >= 1",
    "warm_start_factor": "warm_start_factor >= 1 (or None: increase_factor throughout)",
    "growth_margin": "growth_margin >= 0 (or None: no growth by margin)",
    "max_backtracking_steps": "max_backtracking_steps >= 1",
    "initial_learning_rate": "initial_learning_rate > 0",
    "max_learning_rate": "max_learning_rate > 0 (or None for no cap)",
    "adaptive_search_frequency": "adaptive_search_frequency is True or False",
    "warmup_searches": "warmup_searches >= 0",
    "max_search_interval": "max_search_interval >= 1",
    "weight_decay": "weight_decay >= 0",
    "step_multiplier": "step_multiplier > 0",
    "multiplier_noise": "multiplier_noise > 0 (or None: the multiplier applies whatever the noise)",
    "rescale_distance": "rescale_distance > 0 (or None: every parameter takes the rescaled step)",
}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("slope_rtol", 0.0), ("slope_rtol", 1.0), ("slope_rtol", 1.5),
        ("smoothing", -0.5), ("smoothing", 1.0), ("smoothing", 1.5),
        ("decrease_factor", 0.0), ("decrease_factor", 1.0), ("decrease_factor", 1.5),
        ("increase_factor", 0.99),
        ("warm_start_factor", 0.99),
        ("growth_margin", -0.1),
        ("max_backtracking_steps", 0),
        ("initial_learning_rate", 0.0),
        ("max_learning_rate", 0.0),
        ("adaptive_search_frequency", 2),
        ("warmup_searches", -1),
        ("max_search_interval", 0.5),
        ("weight_decay", -0.1),
        ("step_multiplier", 0.0),
        ("multiplier_noise", 0.0), ("multiplier_noise", -1.0),
        ("rescale_distance", 0.0), ("rescale_distance", -1.0),
    ],
)  # fmt: skip
def test_each_search_hyperparameter_outside_its_range_gets_the_full_message(name, value):
    message = f"{name}={value!r} is out of range: it must satisfy {_REQUIREMENTS[name]}."
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        salsa_optax.salsa(**{name: value})


@pytest.mark.parametrize(
    ("name", "value"), [("max_backtracking_steps", 1.5), ("warmup_searches", 0.5)]
)
def test_the_whole_number_hyperparameters_refuse_a_fraction_with_the_full_message(name, value):
    message = f"{name}={value!r} must be a whole number satisfying {_REQUIREMENTS[name]}."
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        salsa_optax.salsa(**{name: value})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("slope_rtol", 0.5), ("smoothing", 0.0), ("decrease_factor", 0.5),
        ("increase_factor", 1.0), ("warm_start_factor", 1.0), ("warm_start_factor", None),
        ("growth_margin", 0.0), ("growth_margin", None), ("max_backtracking_steps", 1),
        ("initial_learning_rate", 0.5), ("max_learning_rate", 0.5), ("max_learning_rate", None),
        ("adaptive_search_frequency", False), ("adaptive_search_frequency", True),
        ("warmup_searches", 0), ("max_search_interval", 1), ("weight_decay", 0.0),
        ("step_multiplier", 0.5),
        ("multiplier_noise", 1e-12), ("multiplier_noise", None),
        ("rescale_distance", 1e-12), ("rescale_distance", None),
    ],
)  # fmt: skip
def test_each_search_hyperparameter_accepts_the_edges_of_its_range(name, value):
    tx = salsa_optax.salsa(**{name: value})
    assert isinstance(tx, optax.GradientTransformationExtraArgs)


def test_a_nonfinite_step_calls_value_fn_zero_times():
    """Whatever the schedule would do (a warm-up step searches), a step whose gradient is not
    finite evaluates nothing: value_fn runs (counted by a host callback) as often as the info
    says, zero times."""
    calls = []

    def counted_loss(params, x, y):
        jax.debug.callback(lambda: calls.append(1))
        return MLP.loss(params, x, y)

    tx = salsa_optax.salsa()
    params, state = MLP.params, tx.init(MLP.params)
    value, grad = jax.value_and_grad(MLP.loss)(params, MLP.x, MLP.y)
    grad = {**grad, "b1": grad["b1"].at[0].set(jnp.nan)}
    update = jax.jit(lambda g, s, p: tx.update(g, s, p, value=value, grad=g,
                                              value_fn=counted_loss, x=MLP.x, y=MLP.y))  # fmt: skip
    _, new_state = update(grad, state, params)
    jax.effects_barrier()
    assert int(new_state.info.search_outcome) == armijo.NON_FINITE
    assert len(calls) == int(new_state.info.num_evaluations) == 0
