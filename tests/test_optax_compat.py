"""optax's compatibility checklist, and the equivalences between the aliases."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from objectives import OBJECTIVES, make_minibatch_step, make_train_step

import salsa_optax

MLP = OBJECTIVES[3]
LOGISTIC = OBJECTIVES[2]


def _run(tx, objective, steps, jit=True):
    step = make_train_step(tx, objective, jit=jit)
    params, state = objective.params, tx.init(objective.params)
    values = []
    for _ in range(steps):
        params, state, value = step(params, state)
        values.append(value)
    return params, state, jnp.stack(values)


def _assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


def test_chain_with_adam_equals_full_optimizer_searching_with_momentum():
    """Same trajectory in float64, step by step: losses, step sizes and search decisions."""
    with jax.enable_x64(True):
        objective = MLP._replace(
            params=jax.tree.map(lambda p: p.astype(jnp.float64), MLP.params),
            x=MLP.x.astype(jnp.float64),
        )
        trajectories = []
        for tx in (
            optax.chain(optax.adam(learning_rate=1.0), salsa_optax.scale_by_salsa()),
            salsa_optax.salsa(search_with_momentum=True),
        ):
            step = make_train_step(tx, objective)
            params, state = objective.params, tx.init(objective.params)
            rows = []
            for _ in range(40):
                params, state, value = step(params, state)
                info = optax.tree.get(state, "info")
                rows.append((float(value), float(info.step_size), int(info.num_evaluations)))
            trajectories.append((rows, params))
    (rows_a, params_a), (rows_b, params_b) = trajectories
    assert [r[2] for r in rows_a] == [r[2] for r in rows_b]
    np.testing.assert_allclose(np.array(rows_a)[:, :2], np.array(rows_b)[:, :2], rtol=1e-10)
    _assert_trees_close(params_a, params_b, rtol=1e-10, atol=1e-12)


def test_salsa_sgd_is_scale_by_salsa_chained_the_optax_way():
    params_a, _, _ = _run(salsa_optax.salsa_sgd(), LOGISTIC, 15)
    chained = optax.chain(optax.sgd(learning_rate=1.0), salsa_optax.scale_by_salsa())
    params_b, _, _ = _run(chained, LOGISTIC, 15)
    _assert_trees_close(params_a, params_b, rtol=0, atol=0)


def test_presets_by_name():
    steps = {
        "rescale_momentum": False,
        "step_multiplier": 1.0,
        "multiplier_distance": None,
        "multiplier_noise": None,
        "rescale_distance": None,
        "searched_step_along_momentum": False,
        "increase_factor": 1.1,
    }
    published = {"slope_rtol": 0.5, "smoothing": 0.9, **steps, "reference_bypass": True}
    assert published == salsa_optax.PUBLISHED_DEFAULTS
    assert {"slope_rtol": 0.3, "smoothing": 0.99, **steps} == salsa_optax.PAPER_VALUES
    paper, _, _ = _run(salsa_optax.salsa_paper(), MLP, 15)
    explicit, _, _ = _run(
        salsa_optax.salsa(
            slope_rtol=0.3,
            smoothing=0.99,
            rescale_momentum=False,
            increase_factor=1.1,
            step_multiplier=1.0,
            multiplier_distance=None,
        ),
        MLP,
        15,
    )
    published, _, _ = _run(salsa_optax.salsa_published(), MLP, 15)
    _assert_trees_close(paper, explicit, rtol=0, atol=0)
    diffs = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), paper, published)
    assert max(jax.tree.leaves(diffs)) > 1e-4


def test_sls_searches_every_step_without_smoothing():
    """Every step searches, and with beta3 = 0 the average is the step's own loss decrease."""
    tx = salsa_optax.sls()
    step = make_train_step(tx, LOGISTIC)
    params, state = LOGISTIC.params, tx.init(LOGISTIC.params)
    for _ in range(12):
        new_params, state, value = step(params, state)
        assert bool(state.info.searched)
        if int(state.info.search_outcome) == 1:
            decrease = value - LOGISTIC.loss(new_params, LOGISTIC.x, LOGISTIC.y)
            np.testing.assert_allclose(state.avg_decrease, decrease, rtol=1e-4, atol=1e-7)
        params = new_params


def test_unknown_extra_args_are_accepted():
    tx = salsa_optax.salsa()
    params = MLP.params
    state = tx.init(params)
    value, grad = jax.value_and_grad(MLP.loss)(params, MLP.x, MLP.y)
    kwargs = {"value": value, "grad": grad, "value_fn": MLP.loss, "x": MLP.x, "y": MLP.y}
    updates, new_state = tx.update(
        grad, state, params, **kwargs, unrelated_arg="for another transform of the chain"
    )
    expected_updates, expected_state = tx.update(grad, state, params, **kwargs)
    _assert_trees_close(updates, expected_updates, rtol=0, atol=0)
    _assert_trees_close(new_state, expected_state, rtol=0, atol=0)
    assert bool(new_state.info.searched) and float(new_state.info.step_size) > 0


@pytest.mark.parametrize(
    "make_tx", [salsa_optax.salsa, salsa_optax.salsa_sgd, salsa_optax.sls], ids=lambda f: f.__name__
)
def test_one_compilation_for_a_training_run(make_tx):
    chex.clear_trace_counter()
    tx = make_tx()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, state, x, y):
        value, grad = jax.value_and_grad(MLP.loss)(params, x, y)
        updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=MLP.loss,
                               x=x, y=y)  # fmt: skip
        return optax.apply_updates(params, updates), state

    params, state = MLP.params, tx.init(MLP.params)
    for i in range(25):  # warm-up searches, skipped steps and searches again
        params, state = step(params, state, MLP.x * (1 + 0.01 * i), MLP.y)
    assert step._cache_size() == 1


def test_jit_equals_no_jit():
    params_jit, state_jit, values_jit = _run(salsa_optax.salsa(), MLP, 15, jit=True)
    params_eager, state_eager, values_eager = _run(salsa_optax.salsa(), MLP, 15, jit=False)
    np.testing.assert_allclose(values_jit, values_eager, rtol=1e-5)
    _assert_trees_close(params_jit, params_eager)
    assert int(state_jit.count) == int(state_eager.count) == 15


def test_inject_hyperparams():
    injected = optax.inject_hyperparams(salsa_optax.salsa, static_args=("search_with_momentum",))(
        slope_rtol=0.5, smoothing=0.9, weight_decay=1e-3
    )
    plain = salsa_optax.salsa(slope_rtol=0.5, smoothing=0.9, weight_decay=1e-3)
    params_a, state_a, _ = _run(injected, MLP, 20)
    params_b, _, _ = _run(plain, MLP, 20)
    # Hyper-parameters held as float32 arrays round differently from Python constants.
    _assert_trees_close(params_a, params_b, rtol=1e-3, atol=1e-4)
    assert float(state_a.hyperparams["slope_rtol"]) == 0.5
    # A hyper-parameter changed between steps takes effect without a new compilation: the first
    # search from the same point accepts a longer step with a smaller c.
    step = make_train_step(injected, MLP)
    fresh = injected.init(MLP.params)
    _, strict, _ = step(MLP.params, fresh)
    fresh.hyperparams["slope_rtol"] = jnp.full_like(fresh.hyperparams["slope_rtol"], 0.05)
    _, loose, _ = step(MLP.params, fresh)
    assert step._cache_size() == 1
    assert float(loose.inner_state.learning_rate) > float(strict.inner_state.learning_rate)


def test_bfloat16_parameters_keep_their_dtype():
    params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), MLP.params)
    objective = MLP._replace(params=params)
    tx = salsa_optax.salsa()
    new_params, state, values = _run(tx, objective, 15)
    assert all(p.dtype == jnp.bfloat16 for p in jax.tree.leaves(new_params))
    assert state.learning_rate.dtype == jnp.float32
    assert values[-1] < values[0]


def test_multi_steps():
    tx = optax.MultiSteps(salsa_optax.salsa(), every_k_schedule=2)
    _, state, values = _run(tx, MLP, 20)
    assert int(optax.tree.get(state, "count")) == 10
    assert values[-1] < values[0]


def test_training_loop_under_scan_and_stable_state_types():
    tx = salsa_optax.salsa()
    step = make_train_step(tx, MLP, jit=False)

    def body(carry, _):
        params, state = carry
        params, state, value = step(params, state)
        return (params, state), value

    state = tx.init(MLP.params)
    (_, final_state), values = jax.lax.scan(body, (MLP.params, state), length=40)
    chex.assert_trees_all_equal_dtypes(state, final_state)
    chex.assert_trees_all_equal_shapes(state, final_state)
    assert values[-1] < 0.5 * values[0]


def test_skipped_steps_evaluate_nothing():
    """The schedule's skipped steps run no value_fn: count calls with a host callback."""
    calls = []

    def counted_loss(params, x, y):
        jax.debug.callback(lambda: calls.append(1))
        return MLP.loss(params, x, y)

    rng = np.random.default_rng(0)
    x_all = jnp.asarray(rng.standard_normal((512, 6)), jnp.float32)
    y_all = jnp.asarray((x_all[:, 0] > 0).astype(int) + (x_all[:, 1] > 0).astype(int))
    tx = salsa_optax.salsa()
    step = make_minibatch_step(tx, counted_loss)

    params, state = MLP.params, tx.init(MLP.params)
    evaluations, skipped = 0, 0
    for _ in range(100):  # minibatch noise lets the step size settle, so searches thin out
        rows = rng.integers(0, 512, 32)
        before = len(calls)
        params, state = step(params, state, x_all[rows], y_all[rows])
        jax.block_until_ready(params)
        made = len(calls) - before - 1  # one call is the gradient evaluation
        assert made == int(state.info.num_evaluations)
        if not bool(state.info.searched):
            skipped += 1
            assert made == 0
        evaluations += made
    assert skipped > 10
    assert evaluations > 9


def test_state_can_be_donated_and_built_inside_a_trace():
    tx = salsa_optax.salsa()

    @jax.jit
    def init_inside(params):
        return salsa_optax.salsa(slope_rtol=0.5).init(params)  # built while tracing

    state = init_inside(MLP.params)
    leaves = jax.tree.leaves(tx.init(MLP.params))
    assert len({leaf.unsafe_buffer_pointer() for leaf in leaves}) == len(leaves)
    step = jax.jit(make_train_step(tx, MLP, jit=False), donate_argnums=(0, 1))
    params, state, _ = step(jax.tree.map(jnp.copy, MLP.params), state)
    params, state, _ = step(params, state)
    assert int(state.count) == 2


def test_default_step_size_never_grows_while_the_published_one_does():
    def learning_rates(tx):
        step = make_train_step(tx, MLP)
        params, state = MLP.params, tx.init(MLP.params)
        rates = []
        for _ in range(60):
            params, state, _ = step(params, state)
            rates.append(float(optax.tree.get(state, "learning_rate")))
        return np.array(rates)

    default = learning_rates(salsa_optax.salsa())
    assert np.all(np.diff(default) <= 0)
    assert default[-1] < 1.0  # the search shrank it from its initial value
    assert np.any(np.diff(learning_rates(salsa_optax.salsa_published())) > 0)
