"""optax's acceptance checklist, applied to every public optimizer of salsa_optax.

The checks and their tolerances are those of optax's own tests for contributed optimizers
(``optax/contrib/_common_test.py``) and for its backtracking line search
(``optax/_src/linesearch_test.py``). A new optimizer is one row of ``OPTIMIZERS``.

Line-search optimizers receive, at every step, ``value``, ``grad`` and ``value_fn`` of the target,
as optax's line search does; the others get the same keywords and must let them pass through.
"""

import functools
import inspect
import itertools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
import pytest
from optax._src import test_utils

import salsa_optax

# ------------------------------------------------------------------------------------------------
# The table of optimizers under test.


def sgd_then_scale_by_salsa(slope_rtol=0.5, smoothing=0.9):
    """The optax line-search way: a base optimizer in descent form, then the search."""
    return optax.chain(
        optax.sgd(learning_rate=1.0),
        salsa_optax.scale_by_salsa(slope_rtol=slope_rtol, smoothing=smoothing),
    )


def adam_then_scale_by_salsa(slope_rtol=0.5, smoothing=0.9):
    return optax.chain(
        optax.adam(learning_rate=1.0),
        salsa_optax.scale_by_salsa(slope_rtol=slope_rtol, smoothing=smoothing),
    )


def sgd_then_scale_by_layerwise_curvature(smoothing=0.9, max_learning_rate=10.0):
    return optax.chain(
        optax.sgd(learning_rate=1.0),
        salsa_optax.scale_by_layerwise_curvature(
            smoothing=smoothing, max_learning_rate=max_learning_rate, estimator="exact"
        ),
    )


def adam_then_scale_by_eg_step_size(learning_rate=1e-2, beta=0.9):
    """scale_by_eg_step_size takes a descent direction, as scale_by_salsa does."""
    return optax.chain(
        optax.adam(learning_rate=1.0),
        salsa_optax.scale_by_eg_step_size(learning_rate=learning_rate, beta=beta),
    )


ALL_TARGETS = ("parabola", "rosenbrock", "matrix_parabola", "mixed_tensor")


class Entry(NamedTuple):
    """One optimizer under test.

    Attributes:
      name: the test id.
      factory: ``factory(**kwargs)`` returns the optimizer; also wrapped by inject_hyperparams.
      kwargs: numeric hyper-parameters, given to the factory and injected.
      targets: the optax convergence targets on which the criterion fits.
      static_args: arguments inject_hyperparams must not inject.
    """

    name: str
    factory: Callable[..., optax.GradientTransformation]
    kwargs: dict[str, Any]
    targets: tuple[str, ...] = ALL_TARGETS
    static_args: tuple[str, ...] = ()


OPTIMIZERS = (
    Entry("salsa", salsa_optax.salsa, {"slope_rtol": 0.5, "smoothing": 0.9}),
    Entry("salsa_published", salsa_optax.salsa_published, {"weight_decay": 0.0}),
    Entry("salsa_paper", salsa_optax.salsa_paper, {"weight_decay": 0.0}),
    Entry("salsa_sgd", salsa_optax.salsa_sgd, {"slope_rtol": 0.5, "smoothing": 0.9}),
    Entry("sls", salsa_optax.sls, {"slope_rtol": 0.1, "decrease_factor": 0.9}),
    Entry("sgd_then_scale_by_salsa", sgd_then_scale_by_salsa, {"slope_rtol": 0.5}),
    Entry("adam_then_scale_by_salsa", adam_then_scale_by_salsa, {"slope_rtol": 0.5}),
    # A fixed learning rate that its gains and scale may amplify 1000-fold diverges at the
    # curvature of Rosenbrock's valley (about 1000) for every rate tried (1e-2 to 1e-4).
    Entry(
        "egdd",
        salsa_optax.egdd,
        {"learning_rate": 1e-2, "momentum": 0.9},
        targets=("parabola", "matrix_parabola", "mixed_tensor"),
    ),
    Entry("adam_then_scale_by_eg_step_size", adam_then_scale_by_eg_step_size, {"beta": 0.9}),
    Entry("layerwise_curvature_sgd", salsa_optax.layerwise_curvature_sgd, {"momentum": 0.5}),
    Entry(
        "layerwise_curvature_adamw",
        salsa_optax.layerwise_curvature_adamw,
        {"weight_decay": 0.0},
    ),
    Entry(
        "sgd_then_scale_by_layerwise_curvature",
        sgd_then_scale_by_layerwise_curvature,
        {"smoothing": 0.9},
    ),
)
OPTIMIZER_IDS = [entry.name for entry in OPTIMIZERS]
parametrize_optimizers = pytest.mark.parametrize("entry", OPTIMIZERS, ids=OPTIMIZER_IDS)


# ------------------------------------------------------------------------------------------------
# optax's targets (contrib/_common_test.py), as optax defines them.


def _abs_sq(x):
    """optax.numerics.abs_sq."""
    return (x.conj() * x).real


def _setup_parabola(dtype):
    initial_params = jnp.array([-1.0, 10.0, 1.0], dtype=dtype)
    final_params = jnp.array([1.0, -1.0, 1.0], dtype=dtype)

    def obj_fn(params):
        return jnp.sum(_abs_sq(params - final_params))

    return initial_params, final_params, obj_fn


def _setup_rosenbrock(dtype):
    a, b = 1.0, 100.0
    initial_params = jnp.array([0.0, 0.0], dtype=dtype)
    final_params = jnp.array([a, a**2], dtype=dtype)

    def obj_fn(params):
        return _abs_sq(a - params[0]) + b * _abs_sq(params[1] - params[0] ** 2)

    return initial_params, final_params, obj_fn


def _setup_matrix_parabola(dtype):
    initial_params = jnp.zeros((2, 2), dtype=dtype)
    final_params = jnp.array([[3.0, -2.0], [1.0, 4.0]], dtype=dtype)

    def obj_fn(params):
        return jnp.sum(_abs_sq(params - final_params))

    return initial_params, final_params, obj_fn


def _setup_mixed_tensor_target(dtype):
    final_params = (
        jnp.array([1.0, -1.0, 2.0], dtype=dtype),
        jnp.array([[1.0, 0.0], [-1.0, 1.0]], dtype=dtype),
    )
    initial_params = (jnp.zeros((3,), dtype=dtype), jnp.zeros((2, 2), dtype=dtype))

    def obj_fn(params):
        params_1d, params_2d = params
        loss_1d = jnp.sum(_abs_sq(params_1d - final_params[0]))
        loss_2d = jnp.sum(_abs_sq(params_2d - final_params[1]))
        return loss_1d + loss_2d

    return initial_params, final_params, obj_fn


TARGETS = {
    "parabola": _setup_parabola,
    "rosenbrock": _setup_rosenbrock,
    "matrix_parabola": _setup_matrix_parabola,
    "mixed_tensor": _setup_mixed_tensor_target,
}


def _update(opt, grads, state, params, obj_fn, value, **extra):
    """One update with the line-search keywords every optimizer here receives."""
    return opt.update(grads, state, params, value=value, grad=grads, value_fn=obj_fn, **extra)


# ------------------------------------------------------------------------------------------------
# optax/contrib/_common_test.py


@parametrize_optimizers
def test_optimizers_accept_extra_args(entry):
    """Unknown keyword arguments pass through, and the second call does not recompile."""
    opt = entry.factory(**entry.kwargs)
    initial_params, _, objective = _setup_rosenbrock(jnp.float32)

    @jax.jit
    def step(params, state):
        value, grads = jax.value_and_grad(objective)(params)
        updates, state = _update(
            opt, grads, state, params, objective, value,
            unexpected_extra_args_your_optimizer_doesnt_expect=1,
        )  # fmt: skip
        return optax.apply_updates(params, updates), state

    params, state = initial_params, opt.init(initial_params)
    for _ in range(2):
        params, state = step(params, state)

    params = initial_params
    state = opt.init(params)
    params, state = step(params, state)
    with test_utils.log_compilations() as compilation_logs:
        _ = step(params, state)
    assert not compilation_logs, 'Optimizer recompiles on second call to "update".'


@functools.cache
def _converged(entry_index: int, target: str):
    """Runs optax's 30 000-step scan once per (optimizer, target), map_params included."""
    entry = OPTIMIZERS[entry_index]
    opt = entry.factory(**entry.kwargs)
    initial_params, final_params, obj_fn = TARGETS[target](jnp.float32)

    def step(params, state):
        value, grads = jax.value_and_grad(obj_fn)(params)
        updates, state = _update(opt, grads, state, params, obj_fn, value)
        return optax.apply_updates(params, updates), state

    state = opt.init(initial_params)
    # A no-op change, to verify that tree map works.
    state = optax.tree.map_params(opt, lambda v: v, state)

    @jax.jit
    def run(params, state):
        def f(params_state, _):
            return step(*params_state), None

        (params, state), _ = jax.lax.scan(f, (params, state), length=30_000)
        return params

    return run(initial_params, state), final_params


CONVERGENCE_CASES = [
    pytest.param(index, target, id=f"{entry.name}-{target}")
    for index, entry in enumerate(OPTIMIZERS)
    for target in entry.targets
]


@pytest.mark.parametrize(("entry_index", "target"), CONVERGENCE_CASES)
def test_optimizers_converge(entry_index, target):
    params, final_params = _converged(entry_index, target)
    test_utils.assert_trees_all_close(params, final_params, rtol=3e-2, atol=3e-2)


@parametrize_optimizers
def test_optimizers_can_be_wrapped_in_inject_hyperparams(entry):
    opt = entry.factory(**entry.kwargs)
    static_args = tuple(
        name
        for name in (*entry.static_args, "warmup_steps", "rank")
        if name in inspect.signature(entry.factory).parameters
    )
    opt_inject = optax.inject_hyperparams(entry.factory, static_args)(**entry.kwargs)

    params = [jnp.negative(jnp.ones((2, 3))), jnp.ones((2, 5, 2))]
    obj_fn = lambda x: optax.tree.norm(x, squared=True)
    value, grads = jax.value_and_grad(obj_fn)(params)

    def update_fn(opt, grads, state, params):
        return _update(opt, grads, state, params, obj_fn, value)

    state = jax.jit(opt.init)(params)
    updates, new_state = jax.jit(functools.partial(update_fn, opt))(grads, state, params)
    state_inject = jax.jit(opt_inject.init)(params)
    updates_inject, new_state_inject = jax.jit(functools.partial(update_fn, opt_inject))(
        grads, state_inject, params
    )
    test_utils.assert_trees_all_close(updates_inject, updates, rtol=1e-5)
    test_utils.assert_trees_all_close(new_state_inject.inner_state, new_state, rtol=1e-5, atol=1e-5)


@parametrize_optimizers
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_preserve_dtype(entry, dtype):
    """Updates have the parameters' dtype."""
    dtype = jnp.dtype(dtype)
    opt = entry.factory(**entry.kwargs)
    fun = lambda x: jnp.sum(x**2)
    params = jnp.array([1.0, 2.0], dtype=dtype)
    value, grads = jax.value_and_grad(fun)(params)
    state = jax.jit(opt.init)(params)
    updates, _ = jax.jit(functools.partial(_update, opt, obj_fn=fun))(
        grads, state, params, value=value
    )
    assert updates.dtype == params.dtype


@parametrize_optimizers
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_gradient_accumulation(entry, dtype):
    """optax.MultiSteps(opt, every_k_schedule=4): the first update is exactly zero."""
    dtype = jnp.dtype(dtype)
    opt = optax.MultiSteps(entry.factory(**entry.kwargs), every_k_schedule=4)
    fun = lambda x: jnp.sum(x**2)
    params = jnp.array([1.0, 2.0], dtype=dtype)
    value, grads = jax.value_and_grad(fun)(params)
    state = jax.jit(opt.init)(params)
    updates, _ = jax.jit(functools.partial(_update, opt, obj_fn=fun))(
        grads, state, params, value=value
    )
    test_utils.assert_trees_all_equal(updates, jnp.zeros_like(grads))


@parametrize_optimizers
@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64])
def test_state_shape_dtype_shard_stability(entry, dtype):
    """The update is dtype-stable under lax.cond, the value given in another float dtype.

    optax runs two steps; the property is one of types, checked here while tracing the same two
    steps (``jax.eval_shape``), which spares an XLA compilation per (optimizer, dtype).
    """
    with jax.enable_x64(dtype == jnp.float64):
        opt = entry.factory(**entry.kwargs)
        initial_params, _, objective = _setup_parabola(dtype)

        def step(params, state):
            value, grads = jax.value_and_grad(objective)(params)
            # confuse the dtype intentionally
            value = value.astype(jnp.float16 if dtype != jnp.float16 else jnp.bfloat16)
            # defeat compiler optimization, use lax.cond to check for stability
            cond = jax.random.randint(jax.random.key(0), (), 0, 2) == 0
            updates, state = jax.lax.cond(
                cond,
                lambda: _update(opt, grads, state, params, objective, value),
                lambda: (params, state),
            )
            return optax.apply_updates(params, updates), state

        def two_steps(params, state):
            for _ in range(2):
                params, new_state = step(params, state)
                assert jax.tree.leaves(params)[0].dtype == dtype
                cond = jax.random.randint(jax.random.key(0), (), 0, 2) == 0
                state = jax.lax.cond(cond, lambda: state, lambda: new_state)  # noqa: B023
            return params, state

        jax.eval_shape(two_steps, initial_params, opt.init(initial_params))


# ------------------------------------------------------------------------------------------------
# optax/_src/linesearch_test.py, with SaLSa as the search.


@pytest.mark.parametrize("base_learning_rate", [1.0, 10.0])
def test_gradient_descent_with_linesearch(base_learning_rate):
    """optax's 3-parameter parabola, 40 steps, atol = rtol = 1e-2.

    optax runs its own search after ``sgd(10.0)`` ("a large learning rate to see if the
    linesearch works"); ``sgd(1.0)`` is the form the README gives.
    """
    init_params = jnp.array([-1.0, 10.0, 1.0])
    final_params = jnp.array([1.0, -1.0, 1.0])

    def fn(params):
        return jnp.sum((params - final_params) ** 2)

    solver = optax.chain(optax.sgd(learning_rate=base_learning_rate), salsa_optax.scale_by_salsa())
    update_fn = jax.jit(functools.partial(solver.update, value_fn=fn))
    params, state = init_params, solver.init(init_params)
    for _ in range(40):
        value, grad = jax.value_and_grad(fn)(params)
        updates, state = update_fn(grad, state, params, value=value, grad=grad)
        params = optax.apply_updates(params, updates)
    test_utils.assert_trees_all_close(final_params, params, atol=1e-2, rtol=1e-2)


def test_armijo_sgd():
    """optax's 2-parameter noisy regression, two alternating batches, 10 steps, 5e-2."""

    def fn(params, x, y):
        return jnp.sum((x.dot(params) - y) ** 2)

    noise = 1e-3
    x_key, y_key, params_key = jax.random.split(jax.random.key(0), 3)
    d, m, n = 2, 16, 2
    xs = jax.random.normal(x_key, (n, m, d))
    target_params = jax.random.normal(params_key, (d,))
    ys = jnp.stack([x.dot(target_params) for x in xs])
    ys = ys + noise * jax.random.normal(y_key, (n, m))
    xs_iter, ys_iter = itertools.cycle(iter(xs)), itertools.cycle(iter(ys))
    init_params = jnp.zeros((d,))

    solver = optax.chain(optax.sgd(learning_rate=1.0), salsa_optax.scale_by_salsa())
    state = solver.init(init_params)
    update_fn = jax.jit(functools.partial(solver.update, value_fn=fn))
    value_and_grad_fn = jax.jit(jax.value_and_grad(fn))
    params = init_params
    for _ in range(10):
        x, y = next(xs_iter), next(ys_iter)
        value, grad = value_and_grad_fn(params, x, y)
        updates, state = update_fn(grad, state, params, value=value, grad=grad, x=x, y=y)
        params = optax.apply_updates(params, updates)
    test_utils.assert_trees_all_close(params, target_params, atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64])
@pytest.mark.parametrize("confuse_dtype", [jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64])
def test_linesearch_dtype_stability(dtype, confuse_dtype):
    """Hyper-parameters as arrays of another dtype, value_fn returning another dtype.

    optax gives every hyper-parameter 1e-5; SaLSa validates ranges, so each gets a valid value
    exactly representable in every float dtype.
    """
    hyperparameters = {
        "slope_rtol": 0.5,
        "smoothing": 0.5,
        "decrease_factor": 0.5,
        "increase_factor": 1.0,
        "max_learning_rate": 1.0,
    }
    with jax.enable_x64(True):
        opt = salsa_optax.scale_by_salsa(
            max_backtracking_steps=5,
            **{k: jnp.array(v, dtype=confuse_dtype) for k, v in hyperparameters.items()},
        )
        x = jnp.array([1.0, 2.0], dtype=dtype)
        state = opt.init(x)
        value_fn = lambda x: jnp.sum(x**2).astype(confuse_dtype)

        def stable(x):
            cond = jax.random.randint(jax.random.key(0), (), 0, 2) == 0
            return jax.lax.cond(
                cond,
                lambda x: opt.update(x, state, x, value=1.0, grad=x, value_fn=value_fn)[1],
                lambda x: state,
                x,
            )

        # A property of types: checked while tracing, without an XLA compilation.
        jax.eval_shape(stable, x)
