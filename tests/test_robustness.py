"""The losses and mistakes users bring: offsets, one bad search, aux outputs, a wrong value_fn."""

import inspect
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from objectives import make_minibatch_step

import salsa_optax
from salsa_optax._src import armijo

X = jax.random.normal(jax.random.key(0), (32, 3))
Y = X @ jnp.array([1.0, -2.0, 0.5])


def _mse(params, x, y):
    return jnp.mean((x @ params - y) ** 2)


def _train(tx, loss_fn, steps=200, value_fn=None):
    """The README's quick start; returns the final mse, state and the stored step sizes."""
    value_fn = value_fn or loss_fn

    @jax.jit
    def step(params, state, i):
        value, grad = jax.value_and_grad(loss_fn)(params, X, Y)
        updates, state = tx.update(
            grad, state, params, value=value, grad=grad, value_fn=value_fn, x=X, y=Y, i=i
        )
        return optax.apply_updates(params, updates), state

    params, state = jnp.zeros(3), tx.init(jnp.zeros(3))
    step_sizes = []
    for i in range(steps):
        params, state = step(params, state, i)
        step_sizes.append(float(state.learning_rate))
    return float(_mse(params, X, Y)), state, np.array(step_sizes)


@pytest.mark.parametrize("offset", [-10.0, -1e3, 5.0])
def test_the_loss_offset_changes_nothing(offset):
    """The test compares decreases: a shifted loss searches and converges as the unshifted one."""
    shifted = lambda p, x, y: _mse(p, x, y) + offset
    base_mse, _base_state, base_steps = _train(salsa_optax.salsa(), _mse)
    mse, state, steps = _train(salsa_optax.salsa(), shifted)
    assert base_mse < 1e-8 and mse < 1e-4
    # The step size is chosen as without the offset until round-off of the offset matters.
    np.testing.assert_allclose(steps[:20], base_steps[:20], rtol=1e-3)
    assert int(state.info.total_searches) > 20


def test_a_gaussian_nll_that_crosses_zero_keeps_searching():
    """A negative log-likelihood with a small noise scale goes below zero; searches go on."""

    def nll(params, x, y):
        sigma = 0.05
        residual = x @ params - y
        return jnp.mean(0.5 * (residual / sigma) ** 2 + jnp.log(sigma) + 0.5 * jnp.log(2 * jnp.pi))

    mse, state, _steps = _train(salsa_optax.salsa(), nll, steps=300)
    assert mse < 1e-6
    searched_after_crossing = int(state.info.total_searches)
    assert searched_after_crossing > 40  # the warm-up and the schedule's searches, not 9


def test_the_published_bypass_stops_searching_below_zero_loss():
    """Kept for replay: salsa_published() never searches once the loss is negative."""
    shifted = lambda p, x, y: _mse(p, x, y) - 10.0
    _, state, _steps = _train(salsa_optax.salsa_published(), shifted, steps=30)
    assert int(state.info.total_evaluations) == 0
    assert int(state.info.search_outcome) == armijo.BYPASSED


def test_one_bad_search_does_not_ruin_the_run():
    """value_fn returns NaN at step 20 only: that search exhausts and keeps the step size."""

    def once_nan(params, x, y, i):
        return jnp.where(i == 20, jnp.nan, _mse(params, x, y))

    base_mse, _, _base_steps = _train(salsa_optax.salsa(), _mse)
    mse, state, steps = _train(salsa_optax.salsa(), _mse, value_fn=once_nan)
    assert int(state.info.total_exhausted) == 1
    assert steps[20] == steps[19]  # kept, not cut by 0.8**100
    assert mse < 1e-6 and base_mse < 1e-6


def test_published_settings_survive_five_bad_searches():
    def bad_early(params, x, y, i):
        return jnp.where((i >= 3) & (i < 8), jnp.nan, _mse(params, x, y))

    mse, state, steps = _train(salsa_optax.salsa_published(), _mse, value_fn=bad_early)
    assert int(state.info.total_exhausted) == 5
    assert steps.min() > 1e-6 and mse < 1e-4


@pytest.mark.parametrize(
    "wrong_value_fn",
    [
        lambda p, x, y: 2.0 * _mse(p, x, y),  # another scale
        lambda p, x, y: _mse(p, x + 1.0, y),  # another batch
    ],
    ids=["twice_the_loss", "another_batch"],
)
def test_a_value_fn_that_disagrees_with_value_is_counted(wrong_value_fn):
    _, state, _ = _train(salsa_optax.salsa(), _mse, steps=30, value_fn=wrong_value_fn)
    assert int(state.info.total_exhausted) > 0
    assert int(state.info.total_value_mismatches) == int(state.info.total_exhausted)


def test_a_matching_value_fn_is_never_counted_as_a_mismatch():
    _, state, _ = _train(salsa_optax.salsa(), _mse, steps=200)
    assert int(state.info.total_value_mismatches) == 0


def test_running_totals_add_up_the_steps():
    tx = salsa_optax.salsa()

    @jax.jit
    def step(params, state):
        value, grad = jax.value_and_grad(_mse)(params, X, Y)
        updates, state = tx.update(
            grad, state, params, value=value, grad=grad, value_fn=_mse, x=X, y=Y
        )
        return optax.apply_updates(params, updates), state

    params, state = jnp.zeros(3), tx.init(jnp.zeros(3))
    evaluations = searches = 0
    for _ in range(60):
        params, state = step(params, state)
        evaluations += int(state.info.num_evaluations)
        searches += int(state.info.searched)
    assert int(state.info.total_evaluations) == evaluations > 60 // 10
    assert int(state.info.total_searches) == searches
    assert 9 < searches < 60  # the schedule skipped some


def _mse_with_aux(params, x, y):
    residual = x @ params - y
    return jnp.mean(residual**2), {"max_residual": jnp.max(jnp.abs(residual))}


def test_value_fn_with_aux_is_accepted_and_ignored_without_aux_like():
    mse, _, steps = _train(salsa_optax.salsa(), _mse, value_fn=_mse_with_aux)
    _, _, base_steps = _train(salsa_optax.salsa(), _mse)
    np.testing.assert_array_equal(steps, base_steps)
    assert mse < 1e-8


def test_aux_like_keeps_the_accepted_trials_aux():
    aux_like = jax.eval_shape(lambda: _mse_with_aux(jnp.zeros(3), X, Y))[1]
    tx = salsa_optax.salsa(aux_like=aux_like, adaptive_search_frequency=False)
    params, state = jnp.zeros(3), tx.init(jnp.zeros(3))
    assert state.aux["max_residual"].shape == ()
    step = jax.jit(
        lambda p, s: tx.update(
            jax.grad(_mse)(p, X, Y), s, p, value=_mse(p, X, Y), grad=jax.grad(_mse)(p, X, Y),
            value_fn=_mse_with_aux, x=X, y=Y,
        )
    )  # fmt: skip
    for _ in range(5):
        updates, state = step(params, state)
        params = optax.apply_updates(params, updates)
        assert int(state.info.search_outcome) == armijo.ACCEPTED
        np.testing.assert_allclose(
            state.aux["max_residual"], _mse_with_aux(params, X, Y)[1]["max_residual"], rtol=1e-5
        )
    assert step._cache_size() == 1


def test_aux_given_to_update_is_kept_on_skipped_steps():
    aux_like = {"max_residual": jax.ShapeDtypeStruct((), jnp.float32)}
    tx = salsa_optax.salsa(aux_like=aux_like, warmup_searches=0, max_search_interval=10**6)
    params = jnp.zeros(3)
    state = tx.init(params)
    (value, aux), grad = jax.value_and_grad(_mse_with_aux, has_aux=True)(params, X, Y)
    # No warm-up and a huge interval: the first step skips the search.
    _, state = tx.update(
        grad, state, params, value=value, grad=grad, value_fn=_mse_with_aux, aux=aux, x=X, y=Y
    )
    assert not bool(state.info.searched)
    np.testing.assert_allclose(state.aux["max_residual"], aux["max_residual"])


@pytest.mark.parametrize(
    ("value_fn", "error", "message"),
    [
        (lambda p, x, y: (x @ p - y) ** 2, ValueError, "value_fn of salsa must return a scalar"),
        (lambda p, x, y: jnp.int32(1), TypeError, "floating-point scalar loss"),
        (lambda p, x, y: "loss", TypeError, "value_fn of salsa"),
    ],
    ids=["not_reduced", "integer", "string"],
)
def test_a_wrong_value_fn_output_gets_an_error_naming_value_fn(value_fn, error, message):
    tx = salsa_optax.salsa()
    params = jnp.zeros(3)
    value, grad = jax.value_and_grad(_mse)(params, X, Y)
    with pytest.raises(error, match=message):
        tx.update(
            grad, tx.init(params), params, value=value, grad=grad, value_fn=value_fn, x=X, y=Y
        )


def test_aux_like_without_an_aux_output_gets_an_error():
    tx = salsa_optax.salsa(aux_like={"a": jax.ShapeDtypeStruct((), jnp.float32)})
    params = jnp.zeros(3)
    value, grad = jax.value_and_grad(_mse)(params, X, Y)
    with pytest.raises(TypeError, match="value_fn must return \\(loss, aux\\)"):
        tx.update(grad, tx.init(params), params, value=value, grad=grad, value_fn=_mse, x=X, y=Y)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"b1": 1.0}, ValueError, "0 <= b1 < 1"),
        ({"b2": 1.0}, ValueError, "0 <= b2 < 1"),
        ({"b2": -0.1}, ValueError, "0 <= b2 < 1"),
        ({"eps": -1e-8}, ValueError, "eps > 0"),
        ({"eps": 0.0}, ValueError, "eps > 0"),
        ({"eps": float("nan")}, ValueError, "eps=nan is not finite"),
        ({"initial_learning_rate": float("inf")}, ValueError, "initial_learning_rate=inf"),
        ({"increase_factor": float("inf")}, ValueError, "increase_factor=inf is not finite"),
        ({"weight_decay": float("inf")}, ValueError, "weight_decay=inf is not finite"),
        ({"max_backtracking_steps": float("inf")}, ValueError, "max_backtracking_steps=inf"),
        ({"max_backtracking_steps": 2.5}, ValueError, "whole number"),
        ({"warmup_searches": 1.5}, ValueError, "warmup_searches=1.5 must be a whole number"),
        ({"slope_rtol": "0.5"}, TypeError, "slope_rtol must be a real number"),
        ({"slope_rtol": None}, TypeError, "slope_rtol must be a real number"),
        ({"smoothing": 1j}, TypeError, "smoothing must be a real number"),
        ({"adaptive_search_frequency": 2}, ValueError, "adaptive_search_frequency"),
        ({"rescale_momentum": 1.5}, ValueError, "0 <= rescale_momentum <= 1"),
        ({"step_multiplier": 0.0}, ValueError, "step_multiplier > 0"),
        ({"step_multiplier": float("inf")}, ValueError, "step_multiplier=inf is not finite"),
        (
            {"multiplier_distance": 0.0},
            ValueError,
            r"^multiplier_distance=0.0 is out of range: it must satisfy multiplier_distance > 0 "
            r"\(or None: every parameter takes step_multiplier\)\.$",
        ),
        ({"multiplier_distance": -1}, ValueError, "multiplier_distance"),
        (
            {"multiplier_noise": 0.0},
            ValueError,
            r"^multiplier_noise=0.0 is out of range: it must satisfy multiplier_noise > 0 "
            r"\(or None: the multiplier applies whatever the noise\)\.$",
        ),
        ({"multiplier_noise": float("nan")}, ValueError, "multiplier_noise=nan is not finite"),
    ],
)
def test_every_hyperparameter_is_checked_with_a_message_naming_it(kwargs, error, message):
    with pytest.raises(error, match=message):
        salsa_optax.salsa(**kwargs)


def test_an_argument_a_preset_fixes_is_refused_by_name():
    with pytest.raises(TypeError, match="smoothing"):
        salsa_optax.sls(smoothing=0.5)


def test_traced_hyperparameters_still_work_under_inject_hyperparams():
    tx = optax.inject_hyperparams(salsa_optax.salsa)(slope_rtol=0.3)
    params = jnp.zeros(3)
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        value, grad = jax.value_and_grad(_mse)(params, X, Y)
        return tx.update(grad, state, params, value=value, grad=grad, value_fn=_mse, x=X, y=Y)

    updates, state = step(params, state)
    assert np.all(np.isfinite(updates))


def test_scale_by_salsa_and_salsa_share_their_defaults():
    chained = inspect.signature(salsa_optax.scale_by_salsa).parameters
    full = inspect.signature(salsa_optax.salsa).parameters
    shared = set(chained) & set(full)
    assert {"increase_factor", "slope_rtol", "smoothing", "initial_learning_rate"} <= shared
    for name in shared:
        assert chained[name].default == full[name].default, name
        if name in salsa_optax.SEARCH_DEFAULTS._fields:
            assert full[name].default == getattr(salsa_optax.SEARCH_DEFAULTS, name)


def test_aux_like_starts_the_state_aux_at_zeros_of_its_shapes_and_dtypes():
    aux_like = {
        "counts": jax.ShapeDtypeStruct((2, 3), jnp.int32),
        "norm": jax.ShapeDtypeStruct((), jnp.bfloat16),
    }
    aux = salsa_optax.salsa(aux_like=aux_like).init(jnp.zeros(3)).aux
    for name, like in aux_like.items():
        assert (aux[name].shape, aux[name].dtype) == (like.shape, like.dtype), name
        assert not np.any(np.asarray(aux[name], np.float32)), name


def _residuals_and_hits(params, x, y):
    residual = x @ params - y
    return jnp.mean(residual**2), {"residual": residual, "hits": jnp.sum(residual > 0)}


def test_aux_like_keeps_a_non_scalar_and_an_integer_aux():
    aux_like = jax.eval_shape(lambda: _residuals_and_hits(jnp.zeros(3), X, Y))[1]
    assert aux_like["residual"].shape == (32,) and aux_like["hits"].dtype == jnp.int32
    tx = salsa_optax.salsa_sgd(aux_like=aux_like, adaptive_search_frequency=False)
    params = jnp.zeros(3)
    value, grad = jax.value_and_grad(_mse)(params, X, Y)
    updates, state = tx.update(
        grad, tx.init(params), params, value=value, grad=grad, value_fn=_residuals_and_hits,
        x=X, y=Y,
    )  # fmt: skip
    assert int(state.info.search_outcome) == armijo.ACCEPTED
    _, expected = _residuals_and_hits(optax.apply_updates(params, updates), X, Y)
    np.testing.assert_allclose(state.aux["residual"], expected["residual"], rtol=1e-6, atol=1e-6)
    assert int(state.aux["hits"]) == int(expected["hits"])


@pytest.mark.parametrize(
    ("aux", "expected", "got"),
    [
        ({"a": jnp.zeros(2)}, "{'a': ((), dtype('float32'))}", "{'a': ((2,), dtype('float32'))}"),
        ({"a": jnp.int32(0)}, "{'a': ((), dtype('float32'))}", "{'a': ((), dtype('int32'))}"),
        ({"b": jnp.float32(0)}, "{'a': ((), dtype('float32'))}", "{'b': ((), dtype('float32'))}"),
    ],
    ids=["shape", "dtype", "structure"],
)
@pytest.mark.parametrize("where", ["value_fn", "update"])
def test_an_aux_that_does_not_match_aux_like_gets_an_error(aux, expected, got, where):
    """From value_fn or given to update, an aux of another shape, dtype or structure is refused."""
    tx = salsa_optax.salsa_sgd(aux_like={"a": jax.ShapeDtypeStruct((), jnp.float32)})
    params = jnp.zeros(3)
    value, grad = jax.value_and_grad(_mse)(params, X, Y)
    good = {"a": jnp.float32(0)}
    value_fn = lambda p, x, y: (_mse(p, x, y), aux if where == "value_fn" else good)
    message = (
        f"the aux returned by value_fn of salsa_sgd does not match aux_like: expected "
        f"(shape, dtype) {expected}, got {got}. Build aux_like with jax.eval_shape on "
        "value_fn's output."
    )
    # (JAX may append a note on its traceback filtering on a line of its own.)
    with pytest.raises(TypeError, match=f"^{re.escape(message)}($|\n)"):
        tx.update(
            grad, tx.init(params), params, value=value, grad=grad, value_fn=value_fn,
            aux=good if where == "value_fn" else aux, x=X, y=Y,
        )  # fmt: skip


def test_an_aux_given_without_aux_like_is_accepted_and_ignored():
    tx = salsa_optax.salsa_sgd()
    params = jnp.zeros(3)
    (value, aux), grad = jax.value_and_grad(_mse_with_aux, has_aux=True)(params, X, Y)
    kwargs = {"value": value, "grad": grad, "value_fn": _mse, "x": X, "y": Y}
    updates, state = tx.update(grad, tx.init(params), params, aux=aux, **kwargs)
    plain_updates, plain_state = tx.update(grad, tx.init(params), params, **kwargs)
    assert state.aux is None
    np.testing.assert_array_equal(updates, plain_updates)
    assert float(state.learning_rate) == float(plain_state.learning_rate)


def test_running_totals_stay_exact_past_float32s_integers():
    """Totals beyond 2**24 (where float32 has no odd integers) still count one by one: f = w^2 at
    w = 1 rejects eta = 1 (the mirror point) and accepts 1/2, two evaluations, one backtrack."""
    tx = salsa_optax.salsa_sgd(
        slope_rtol=0.5, smoothing=0.0, decrease_factor=0.5, adaptive_search_frequency=False
    )
    w = jnp.array([1.0])
    start = 2**24 + 1
    state = tx.init(w)
    info = state.info._replace(
        total_evaluations=jnp.int32(start), total_backtracks=jnp.int32(start + 1)
    )
    state = optax.tree.set(state, info=info)
    loss = lambda p: jnp.sum(p**2)
    value, grad = jax.value_and_grad(loss)(w)
    _, state = tx.update(grad, state, w, value=value, grad=grad, value_fn=loss)
    assert (int(state.info.num_evaluations), int(state.info.num_backtracks)) == (2, 1)
    assert int(state.info.total_evaluations) == start + 2
    assert int(state.info.total_backtracks) == start + 2


def test_a_frozen_leaf_of_minus_inf_changes_nothing_else():
    """An attention-style mask kept as a parameter leaf of -inf, with no gradient: the other
    leaf trains as it would alone, and the noise gate's state stays finite (without weight decay
    the decay's change 0 * <g, w> is never formed)."""

    def run(params):
        tx = salsa_optax.salsa()
        step = make_minibatch_step(tx, lambda p, x, y: _mse(p["w"], x, y))
        state = tx.init(params)
        for i in range(30):
            batch = slice(8 * (i % 4), 8 * (i % 4) + 8)
            params, state = step(params, state, X[batch], Y[batch])
        return params, state

    alone, alone_state = run({"w": jnp.zeros(3)})
    masked, masked_state = run({"w": jnp.zeros(3), "mask": jnp.full(2, -jnp.inf)})
    np.testing.assert_array_equal(masked["w"], alone["w"])
    np.testing.assert_array_equal(masked["mask"], [-np.inf, -np.inf])
    assert int(masked_state.info.total_searches) > 5
    for got, expected in zip(masked_state.noise, alone_state.noise, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_salsa_inside_optax_masked_gets_an_error_instead_of_pairing_the_wrong_leaves():
    # optax.masked passes salsa a part of params and of the updates but the whole grad: without
    # the check the search paired {"w"}'s gradient with "b" and failed inside a product.
    params = {"b": jnp.zeros(()), "w": jnp.ones(3)}
    loss = lambda p: jnp.sum(p["w"] ** 2) + p["b"]
    tx = optax.masked(salsa_optax.salsa(), {"b": False, "w": True})
    value, grad = jax.value_and_grad(loss)(params)
    message = re.escape(
        "grad passed to salsa.update and params differ in their number of leaves (2 against 1)"
    )
    with pytest.raises(ValueError, match=f"^{message}"):
        tx.update(grad, tx.init(params), params, value=value, grad=grad, value_fn=loss)


@pytest.mark.parametrize("alias", ["salsa", "salsa_sgd", "sls", "salsa_published", "salsa_paper"])
@pytest.mark.parametrize("params", [{}, (), {"frozen": None}], ids=["dict", "tuple", "none_leaf"])
def test_parameters_without_leaves_take_no_step(alias, params):
    """A model whose trainable parameters are all filtered out gives a tree without leaves, as
    optax.adam accepts: each step has nothing to search, updates nothing and says so."""
    tx = getattr(salsa_optax, alias)()
    loss = lambda p: jnp.float32(2.0)

    @jax.jit
    def step(state):
        return tx.update(params, state, params, value=loss(params), grad=params, value_fn=loss)

    state = tx.init(params)
    for _ in range(3):
        updates, state = step(state)
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    assert int(state.count) == 0
    assert int(state.info.search_outcome) == armijo.NON_DESCENT
    assert int(state.info.total_nondescent_skipped) == 3
    assert float(state.learning_rate) == float(tx.init(params).learning_rate)


@pytest.mark.parametrize(
    ("last_outcome", "searches"), [(armijo.ACCEPTED, False), (armijo.EXHAUSTED, True)]
)
def test_a_step_after_an_exhausted_search_searches_again(last_outcome, searches):
    """With the schedule settled (equal averages, a search one step ago) the next step skips the
    search after an accepted one, but not after one whose every trial was rejected: its stored
    step size was never accepted."""
    tx = salsa_optax.salsa()
    state = tx.init(jnp.zeros(3))
    state = optax.tree.set(
        state, count=50, steps_since_search=0, learning_rate_fast=0.1, learning_rate_slow=0.1
    )
    info = state.info._replace(search_outcome=jnp.asarray(last_outcome, jnp.int32))
    state = state._replace(scalars=state.scalars._replace(info=info))
    value, grad = jax.value_and_grad(_mse)(jnp.zeros(3), X, Y)
    _, new_state = tx.update(
        grad, state, jnp.zeros(3), value=value, grad=grad, value_fn=_mse, x=X, y=Y
    )
    assert bool(new_state.info.searched) is searches


def test_a_run_whose_initial_step_size_is_far_too_large_goes_on_down_and_converges():
    """A loss so steep that 100 trials from the initial step size are all rejected (a linear
    least squares scaled by 1e10, along the gradient): the first search exhausts and stores the
    step size below its last trial, the next goes on down from there, and the run converges
    without an untested step. Before, the exhausted searches kept the step size 1 until the
    schedule's averages settled (step 70); it then took that step untested and the loss went
    from 4e10 to 1e31."""
    tx = salsa_optax.salsa_sgd()
    loss = lambda p, x, y: 1e10 * _mse(p, x, y)
    step = make_minibatch_step(tx, loss)
    params, state = jnp.zeros(3), tx.init(jnp.zeros(3))
    initial = float(loss(params, X, Y))
    for _ in range(100):
        params, state = step(params, state, X, Y)
        assert float(loss(params, X, Y)) <= initial
    assert int(state.info.total_exhausted) == 1
    assert float(loss(params, X, Y)) < 1e-6 * initial
    assert float(state.learning_rate) < 1e-9


@pytest.mark.parametrize(
    ("searches_before", "nondescent_before", "disagrees", "stored"),
    [
        (0, 0, False, 1.1 * 0.8**10),
        (0, 0, True, 1.0),
        (1, 0, False, 1.0),
        (1, 1, False, 1.1 * 0.8**10),
    ],
    ids=[
        "first_search",
        "first_search_value_fn_disagrees",
        "after_an_accepted_search",
        "after_a_non_descent_search",
    ],
)
def test_what_an_exhausted_search_stores(searches_before, nondescent_before, disagrees, stored):
    """Every trial is worse than `value` (10 trials from 1.1, the stored 1 grown). Before any
    search has accepted a trial the stored step size is the initial guess: the search stores the
    one below its last trial, 1.1 * 0.8^10, unless value_fn disagrees with value (not the step
    size's fault); a search that found no descent direction accepted nothing either. After an
    accepted search it keeps the stored step size: at a minimum round-off rejects every trial,
    and going on down would shrink it to zero."""
    w, g = jnp.array([1.0, 2.0]), jnp.array([1.0, -1.0])
    value = 1.0
    value_fn = lambda p: jnp.where(jnp.all(p == w), value + disagrees, value + 1.0)
    tx = salsa_optax.salsa_sgd(max_backtracking_steps=10, increase_factor=1.1)
    state = tx.init(w)
    info = state.info._replace(
        total_searches=jnp.asarray(searches_before, jnp.int32),
        total_nondescent_skipped=jnp.asarray(nondescent_before, jnp.int32),
    )
    state = state._replace(scalars=state.scalars._replace(info=info))
    _, state = tx.update(g, state, w, value=value, grad=g, value_fn=value_fn)
    assert int(state.info.search_outcome) == armijo.EXHAUSTED
    assert int(state.info.total_value_mismatches) == disagrees
    np.testing.assert_allclose(float(state.learning_rate), stored, rtol=1e-6)
