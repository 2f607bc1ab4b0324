"""The core pinned by value: each expected number is computed by hand from SALSA_SPEC's formulas.

Every test here fails if one named piece of the algorithm is wrong (a sign, a comparison, which
step size a formula uses, which outcome a branch reports). Steps run in float64, with numbers
chosen so that the quantities compared are exact where a comparison is at stake (dyadic ties).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import salsa_optax
from salsa_optax._src import armijo, search_frequency, transform

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SKIPPED, ACCEPTED, ZERO_DECREASE = armijo.SKIPPED, armijo.ACCEPTED, armijo.ZERO_DECREASE
EXHAUSTED, BYPASSED = armijo.EXHAUSTED, armijo.BYPASSED
NON_DESCENT, NON_FINITE = armijo.NON_DESCENT, armijo.NON_FINITE


@pytest.fixture(autouse=True)
def _float64():
    with jax.enable_x64(True):
        yield


def _info(state):
    return optax.tree.get(state, "info")


def _get(state, name):
    return optax.tree.get(state, name)


def _step(tx, params, loss, state=None, *, value=None, grad=None, updates=None, value_fn=None):
    """One update; ``value``, ``grad``, ``updates``, ``value_fn`` default to the true ones."""
    state = tx.init(params) if state is None else state
    true_value, true_grad = jax.value_and_grad(loss)(params)
    value = true_value if value is None else value
    grad = true_grad if grad is None else grad
    updates = true_grad if updates is None else updates
    value_fn = loss if value_fn is None else value_fn
    new_updates, new_state = tx.update(
        updates, state, params, value=value, grad=grad, value_fn=value_fn
    )
    return new_updates, new_state


def _sgd_search(**kwargs):
    """SaLSa on the raw gradient, every step searching unless the test says otherwise."""
    kwargs.setdefault("adaptive_search_frequency", False)
    return salsa_optax.salsa_sgd(**kwargs)


def _without(state, names=("info", "count")):
    """The state's leaves except the diagnostics and counters, by path."""

    def keep(path):
        return not any(getattr(key, "name", None) in names for key in path)

    leaves = jax.tree_util.tree_leaves_with_path(state.unpacked())
    return [leaf for path, leaf in leaves if keep(path)]


def _sum_squares(w):
    return jnp.sum(w**2)


# ------------------------------------------------------------------------------------------------
# Decoupled weight decay: w_new = w - lambda * eta_stored * w - k * eta * P g (first step, Adam).


@pytest.mark.parametrize(
    ("growth", "multiplier", "decay"), [(1.1, 1.0, 0.1), (1.0, 2.5, 0.1), (1.0, 1.0, 1.0)]
)
def test_weight_decay_uses_the_stored_step_size_and_the_multiplier_only_the_step(
    growth, multiplier, decay
):
    w = jnp.array([0.25, -0.125, 0.375])
    target = w + jnp.array([10.0, -10.0, 10.0])
    loss = lambda p: jnp.sum((p - target) ** 2)
    stored, eps = 0.125, 1e-8
    tx = salsa_optax.salsa(
        weight_decay=decay,
        initial_learning_rate=stored,
        increase_factor=growth,
        step_multiplier=multiplier,
        multiplier_distance=None,  # one multiplier for every leaf,
        multiplier_noise=None,  # on this deterministic loss too
        eps=eps,
        adaptive_search_frequency=False,
    )
    updates, state = _step(tx, w, loss)
    info = _info(state)
    assert int(info.search_outcome) == ACCEPTED
    assert int(info.num_evaluations) == 1
    eta = stored * growth  # the first trial, accepted
    # The search tests and stores eta; the multiplier scales only the step taken.
    np.testing.assert_allclose(float(_get(state, "learning_rate")), eta, rtol=1e-15)
    np.testing.assert_allclose(float(info.step_size), multiplier * eta, rtol=1e-15)

    w64, g = np.asarray(w), np.asarray(jax.grad(loss)(w))
    # t = 1: m_hat = g, v_hat = g^2 (bias-corrected), P = 1 / (sqrt(v_hat) + eps).
    preconditioned = g / (np.abs(g) + eps)
    expected = w64 - decay * stored * w64 - multiplier * eta * preconditioned
    np.testing.assert_allclose(np.asarray(w + updates), expected, rtol=1e-13, atol=0)
    # The trial point the search tested starts from the decayed parameters: its margin says so.
    trial = w64 - decay * stored * w64 - eta * preconditioned
    decrease = np.sum((w64 - target) ** 2) - np.sum((trial - target) ** 2)
    rhs = 0.5 * eta * (g @ preconditioned)  # c = 0.5; beta3 cancels from both sides
    np.testing.assert_allclose(float(info.armijo_margin), abs(decrease - rhs) / rhs, rtol=1e-10)


def test_step_multiplier_multiplies_searched_and_skipped_steps_alike():
    loss = lambda p: jnp.sum(jnp.cosh(p - jnp.array([1.0, -2.0, 0.5])))
    options = dict(warmup_searches=2, max_search_interval=4, initial_learning_rate=0.5)
    plain = salsa_optax.salsa(step_multiplier=1.0, **options)
    scaled = salsa_optax.salsa(
        step_multiplier=3.0, multiplier_distance=None, multiplier_noise=None, **options
    )
    w = jnp.array([0.25, 0.5, -1.0])
    plain_state, scaled_state = _settled(plain, w, 0.5, 0.5), _settled(scaled, w, 0.5, 0.5)
    searched = []
    for _ in range(12):
        plain_updates, plain_state = _step(plain, w, loss, plain_state)
        scaled_updates, scaled_state = _step(scaled, w, loss, scaled_state)
        searched.append(bool(_info(plain_state).searched))
        np.testing.assert_allclose(scaled_updates, 3.0 * plain_updates, rtol=1e-14, atol=0)
        np.testing.assert_allclose(
            float(_info(scaled_state).step_size), 3.0 * float(_info(plain_state).step_size)
        )
        assert float(_get(scaled_state, "learning_rate")) == float(
            _get(plain_state, "learning_rate")
        )
        w = w + plain_updates
    assert True in searched and False in searched  # both kinds of step were compared


_TARGET = {"fresh": jnp.array([1.0, -2.0]), "moved": jnp.array([3.0, 0.5, -1.0])}
_UNIT = jnp.array([0.6, 0.8])


def _far_loss(p):
    plain = sum(jnp.sum(jnp.cosh(p[k] - _TARGET[k])) for k in _TARGET)
    if "invariant" not in p:
        return plain
    # Depends on the direction of p["invariant"] only: its gradient is orthogonal to it.
    direction = p["invariant"] / jnp.linalg.norm(p["invariant"])
    return plain + jnp.sum(jnp.cosh(4 * (direction - _UNIT)))


def _far_run(w0, mu, delta, steps=12):
    """(updates, state) of salsa() and of the multiplied salsa(), both at the first's iterates."""
    options = dict(warmup_searches=2, max_search_interval=4, initial_learning_rate=0.5)
    plain = salsa_optax.salsa(step_multiplier=1.0, **options)
    per_leaf = salsa_optax.salsa(
        step_multiplier=mu, multiplier_distance=delta, multiplier_noise=None, **options
    )
    plain_state, leaf_state = _settled(plain, w0, 0.5, 0.5), _settled(per_leaf, w0, 0.5, 0.5)
    w, rows = w0, []
    for _ in range(steps):
        plain_updates, plain_state = _step(plain, w, _far_loss, plain_state)
        leaf_updates, leaf_state = _step(per_leaf, w, _far_loss, leaf_state)
        rows.append((w, plain_updates, plain_state, leaf_updates, leaf_state))
        assert float(_get(leaf_state, "learning_rate")) == float(_get(plain_state, "learning_rate"))
        w = jax.tree.map(jnp.add, w, plain_updates)
    return rows


def test_multiplier_distance_scales_each_leaf_by_how_far_it_moved_at_the_last_search():
    """Leaf factor 1 + (mu - 1) min(1, |w - w0| / (delta |w0|)), w as of the last search."""
    mu, delta = 3.0, 1.5
    w0 = {"fresh": jnp.zeros(2), "moved": jnp.array([0.5, 1.0, -0.5])}
    at_search, searches, factors = w0, 0, []
    for w, plain_updates, plain_state, leaf_updates, leaf_state in _far_run(w0, mu, delta):
        if bool(_info(plain_state).searched):
            at_search, searches = w, searches + 1
        moved = np.linalg.norm(at_search["moved"] - w0["moved"])
        factor = 1 + (mu - 1) * min(1.0, moved / (delta * np.linalg.norm(w0["moved"])))
        factors.append(factor)
        # A leaf that starts at zero is far from its start from the first step on.
        np.testing.assert_allclose(leaf_updates["fresh"], mu * plain_updates["fresh"], rtol=1e-14)
        np.testing.assert_allclose(
            leaf_updates["moved"], factor * plain_updates["moved"], rtol=1e-13
        )
        np.testing.assert_allclose(
            float(_info(leaf_state).step_size), mu * float(_info(plain_state).step_size)
        )
    assert searches >= 3 and len(factors) > searches  # searched and skipped steps were compared
    # The moved leaf's factor started at 1, passed between its bounds and reached mu.
    assert factors[0] == 1 and any(1 < f < mu for f in factors) and max(factors) == mu
    distance = leaf_state.distance
    assert not transform._scale_invariant(distance.radial_sum, distance.radial_count).any()
    for name in w0:
        np.testing.assert_array_equal(leaf_state.initial_params[name], w0[name])


def test_multiplier_distance_leaves_a_network_with_a_scale_invariant_leaf_unmultiplied():
    """A leaf whose gradient is orthogonal to it at every search turns every multiplier off."""
    mu, delta = 3.0, 1.5
    w0 = {"fresh": jnp.zeros(2), "moved": jnp.array([0.5, 1.0, -0.5]), "invariant": _UNIT[::-1]}
    rows = _far_run(w0, mu, delta)
    for _, plain_updates, plain_state, leaf_updates, leaf_state in rows:
        for name in w0:
            np.testing.assert_array_equal(leaf_updates[name], plain_updates[name])
        assert float(_info(leaf_state).step_size) == float(_info(plain_state).step_size)
    w, leaf_state = rows[-1][0], rows[-1][-1]
    # Without the invariant leaf the others would have moved far enough to take mu.
    assert np.linalg.norm(w["moved"] - w0["moved"]) > delta * np.linalg.norm(w0["moved"])
    distance = leaf_state.distance
    # The per-leaf vectors follow jax.tree.leaves: the dict's sorted keys.
    names = sorted(w0)
    invariant = transform._scale_invariant(distance.radial_sum, distance.radial_count)
    flags = dict(zip(names, invariant, strict=True))
    assert bool(flags["invariant"]) and not bool(flags["fresh"]) and not bool(flags["moved"])
    # n cos^2(g, w): round-off on the invariant leaf, order one or more on the others.
    mean = dict(zip(names, (distance.radial_sum / distance.radial_count).tolist(), strict=True))
    assert mean["invariant"] < 1e-9 and mean["fresh"] > 0.1 and mean["moved"] > 0.1


def _batch_loss(p, offset):
    """``_far_loss`` plus a batch term ``offset * <1, p>``: the loss of one minibatch."""
    return _far_loss(p) + offset * sum(jnp.sum(v) for v in p.values())


def _batch_step(tx):
    """One jitted update of ``tx`` on ``_batch_loss`` with the given batch offset."""

    @jax.jit
    def step(w, state, offset):
        value, grad = jax.value_and_grad(_batch_loss)(w, offset)
        kwargs = dict(value=value, grad=grad, value_fn=_batch_loss, offset=offset)
        return tx.update(grad, state, w, **kwargs)

    return step


def _gated_run(offsets, w0, noise):
    """Per step (w, plain updates, gated updates, ungated updates, gated state): salsa() and the
    multiplied salsa() with and without ``multiplier_noise``, all at salsa()'s iterates; step t
    minimises ``_batch_loss`` with ``offsets[t]``. All measure the rescaling on every step
    (without ``multiplier_noise`` a skipped step always does): the gate's only effect is the
    multiplier."""
    options = dict(
        warmup_searches=2, max_search_interval=4, initial_learning_rate=0.5, rescale_each_step=True
    )
    far = dict(step_multiplier=3.0, multiplier_distance=1.5, **options)
    txs = (
        salsa_optax.salsa(step_multiplier=1.0, **options),
        salsa_optax.salsa(multiplier_noise=noise, **far),
        salsa_optax.salsa(multiplier_noise=None, **far),
    )
    states = [_settled(tx, w0, 0.5, 0.5) for tx in txs]
    steps = [_batch_step(tx) for tx in txs]
    w, rows = w0, []
    for offset in offsets:
        outputs = [step(w, state, offset) for step, state in zip(steps, states, strict=True)]
        states = [state for _, state in outputs]
        rows.append((w, *(updates for updates, _ in outputs), states[1]))
        w = jax.tree.map(jnp.add, w, outputs[0][0])
    return rows


def _w0():
    # Built inside the test, in float64.
    return {"fresh": jnp.zeros(2), "moved": jnp.array([0.5, 1.0, -0.5])}


def test_multiplier_noise_gates_a_shared_multiplier_until_the_loss_is_found_noisy():
    """Without per-leaf multipliers the step multiplier is one for all leaves: before any residual
    is measured the loss is not noisy, so the first step moves by the search's step alone."""
    w0 = _w0()
    plain = salsa_optax.salsa(step_multiplier=1.0, multiplier_distance=None)
    gated = salsa_optax.salsa(step_multiplier=3.0, multiplier_distance=None, multiplier_noise=0.05)
    ungated = salsa_optax.salsa(
        step_multiplier=3.0, multiplier_distance=None, multiplier_noise=None
    )
    (plain_updates, _), (gated_updates, state), (ungated_updates, _) = (
        _step(tx, w0, _far_loss) for tx in (plain, gated, ungated)
    )
    assert bool(_info(state).searched)
    for name in w0:
        np.testing.assert_array_equal(gated_updates[name], plain_updates[name])
        np.testing.assert_allclose(ungated_updates[name], 3 * plain_updates[name], rtol=1e-12)


def test_multiplier_noise_keeps_a_deterministic_loss_at_the_searchs_steps():
    """The same loss at every step: each search's step lands where its trial was evaluated, the
    residual is zero, and no leaf takes the multiplier."""
    rows = _gated_run(np.zeros(12), _w0(), noise=1e-6)
    for _, plain_updates, gated_updates, _, _ in rows:
        for name in plain_updates:
            np.testing.assert_array_equal(gated_updates[name], plain_updates[name])
    # Without the gate the same steps would have been multiplied.
    assert not np.allclose(rows[-1][3]["fresh"], rows[-1][1]["fresh"])
    noise = rows[-1][4].noise
    assert float(noise.residual_sq) == 0 and float(noise.linear_sq) > 0


def test_multiplier_noise_records_a_multiplied_searched_steps_first_order_change():
    """On a noisy loss each searched step moves leaf l by its own multiplier m_l times eta d_l:
    the linear change it records for the next residual is <g, u>, the multipliers included."""
    offsets = 0.3 * np.cos(np.arange(12.0) * 2.0)
    rows = _gated_run(offsets, _w0(), noise=0.02)
    multiplied = 0
    for (w, plain, gated, _, state), offset in zip(rows, offsets, strict=True):
        if not bool(_info(state).searched):
            continue
        grad = jax.grad(_batch_loss)(w, offset)
        linear = sum(float(jnp.vdot(grad[k], gated[k])) for k in w)
        np.testing.assert_allclose(float(state.noise.linear_change), linear, rtol=1e-12)
        ratios = [float(gated[k][0] / plain[k][0]) for k in w]
        multiplied += max(ratios) > 1 + 1e-6 and abs(ratios[0] - ratios[1]) > 1e-6
    assert multiplied >= 1  # a searched step whose leaves took different multipliers


def test_multiplier_noise_measures_two_batches_at_the_same_weights():
    """Step t's loss carries the batch term c_t <1, w>. After a search whose step was not
    multiplied the prediction is the accepted trial's loss f_t(w_{t+1}), so the residual is
    f_{t+1}(w_{t+1}) - f_t(w_{t+1}) = (c_{t+1} - c_t) <1, w_{t+1}>; once the residual's root mean
    square exceeds the threshold times the linear change's, every step takes the multipliers."""
    offsets = 0.3 * np.cos(np.arange(12.0) * 2.0)
    threshold = 0.02
    rows = _gated_run(offsets, _w0(), noise=threshold)
    a = transform.NOISE_AVERAGING
    # The first step searches unmultiplied: step 2 measures its residual exactly.
    w1, state1 = rows[1][0], rows[0][4]
    assert bool(state1.noise.pending)
    residual = (offsets[1] - offsets[0]) * sum(float(jnp.sum(v)) for v in w1.values())
    (w0, plain0, *_), state2 = rows[0], rows[1][4]
    grad0 = jax.grad(_batch_loss)(w0, offsets[0])
    linear = sum(float(jnp.vdot(grad0[k], plain0[k])) for k in w0)
    np.testing.assert_allclose(float(state2.noise.residual_sq), (1 - a) * residual**2, rtol=1e-9)
    np.testing.assert_allclose(float(state2.noise.linear_sq), (1 - a) * linear**2, rtol=1e-9)
    assert abs(residual) > threshold * abs(linear)  # noisy from step 2 on
    for _, _, gated_updates, ungated_updates, _ in rows[1:]:
        for name in w0:
            np.testing.assert_array_equal(gated_updates[name], ungated_updates[name])
    np.testing.assert_array_equal(rows[0][2]["fresh"], rows[0][1]["fresh"])
    assert not np.allclose(rows[0][3]["fresh"], rows[0][1]["fresh"])


def test_multiplier_noise_predicts_a_quadratic_exactly_past_the_accepted_trial():
    """f(s) = 1 - S s + a s^2 along the line: read at the multiplied step m eta, the model is the
    loss there, whatever the leaves' weights of the slope."""
    slope, a, eta, m = 3.0, 2.0, 0.25, 1.5
    f = lambda s: 1 - slope * s + a * s**2
    noise = transform.NoiseState(*(jnp.zeros(()),) * 5)._replace(pending=jnp.asarray(False))
    result = armijo.SearchResult(eta, eta, 0.0, f(0) - f(eta), 1, ACCEPTED, 0.0, eta, None)
    leaf_slopes = jnp.array([-1.0, -2.0])  # sums to -S
    multipliers = jnp.array([m, m])
    predicted = transform._predicted_noise(
        noise, leaf_slopes, multipliers, result, jnp.asarray(f(0)), slope, 0.0, True
    )
    np.testing.assert_allclose(float(predicted.predicted_value), f(m * eta), rtol=1e-14)
    np.testing.assert_allclose(float(predicted.linear_change), -slope * m * eta, rtol=1e-14)
    first_order = transform._predicted_noise(
        noise, leaf_slopes, multipliers, result, jnp.asarray(f(0)), slope, 0.0, False
    )
    np.testing.assert_allclose(float(first_order.predicted_value), f(0) - slope * m * eta)


def test_multiplier_noise_predicts_from_the_decayed_start_and_after_no_step():
    """With weight decay the trials start from the decayed weights, whose loss is f(w) + c to first
    order: along the line, f(s) = 1 + c - S s + a s^2. A search that took no step predicts
    f(w) + c, the decay's change alone."""
    slope, a, eta, m, c = 3.0, 2.0, 0.25, 1.5, -0.125
    f = lambda s: 1 + c - slope * s + a * s**2
    noise = transform.NoiseState(*(jnp.zeros(()),) * 5)._replace(pending=jnp.asarray(False))
    leaf_slopes, multipliers = jnp.array([-1.0, -2.0]), jnp.array([m, m])
    result = armijo.SearchResult(eta, eta, 0.0, 1.0 - f(eta), 1, ACCEPTED, 0.0, eta, None)
    predicted = transform._predicted_noise(
        noise, leaf_slopes, multipliers, result, jnp.asarray(1.0), slope, c, True
    )
    np.testing.assert_allclose(float(predicted.predicted_value), f(m * eta), rtol=1e-14)
    np.testing.assert_allclose(float(predicted.linear_change), c - slope * m * eta, rtol=1e-14)
    no_step = result._replace(step_taken=0.0, decrease=0.0, outcome=EXHAUSTED)
    kept = transform._predicted_noise(
        noise, leaf_slopes, multipliers, no_step, jnp.asarray(1.0), slope, c, True
    )
    assert float(kept.predicted_value) == 1.0 + c and float(kept.linear_change) == c


def test_multiplier_noise_counts_the_weight_decays_change_in_a_searched_steps_linear_change():
    """A searched step moves by u = -lambda eta_stored w + eta d: the linear change it records for
    the next step's residual is <g, u>, the decay's share included."""
    w0 = {"fresh": jnp.array([0.5, -1.5]), "moved": jnp.array([2.0, 1.0, -0.5])}
    tx = salsa_optax.salsa(weight_decay=0.2, initial_learning_rate=0.5, multiplier_noise=0.05)
    updates, state = _step(tx, w0, _far_loss)
    assert bool(_info(state).searched) and float(_info(state).step_size) > 0
    grad = jax.grad(_far_loss)(w0)
    linear = sum(float(jnp.vdot(grad[k], updates[k])) for k in w0)
    decay = -0.2 * 0.5 * sum(float(jnp.vdot(grad[k], w0[k])) for k in w0)
    assert abs(decay) > 0.1 * abs(linear)
    np.testing.assert_allclose(float(state.noise.linear_change), linear, rtol=1e-9)


def test_multiplier_noise_counts_a_residual_within_round_off_as_zero():
    noise = transform.NoiseState(jnp.asarray(True), *(jnp.asarray(1.0, jnp.float32),) * 4)
    just_inside = jnp.float32(1.0) + transform.ROUND_OFF_ULPS * jnp.finfo(jnp.float32).eps
    a = transform.NOISE_AVERAGING
    inside = transform._measure_noise(noise, just_inside, jnp.asarray(True))
    np.testing.assert_allclose(float(inside.residual_sq), a, rtol=1e-6)
    outside = transform._measure_noise(noise, jnp.float32(1.01), jnp.asarray(True))
    assert float(outside.residual_sq) > a
    kept = transform._measure_noise(noise, jnp.float32(2.0), jnp.asarray(False))
    assert bool(kept.pending) and float(kept.residual_sq) == 1.0


def test_noise_ratio_is_the_root_mean_square_residual_over_the_linear_change():
    noise = transform.NoiseState(*(jnp.float32(0.0),) * 3, jnp.float32(9.0), jnp.float32(4.0))
    assert float(noise.ratio()) == 1.5
    none_yet = noise._replace(residual_sq=jnp.float32(0.0), linear_sq=jnp.float32(0.0))
    assert np.isnan(float(none_yet.ratio()))


def test_small_leaves_are_measured_however_small_their_norms():
    """A leaf is measured wherever |g| |w| > 0 and its start wherever ||w0|| > 0, at any scale."""
    g = {"tiny": jnp.array([0.1, 0.0]), "zero": jnp.zeros(2)}
    w = {"tiny": jnp.array([0.5, 0.0]), "zero": jnp.array([0.5, 0.0])}
    alignment, measured = transform._radial_alignment(g, w, jnp.float64)
    assert measured.tolist() == [True, False]
    np.testing.assert_allclose(alignment, [2.0, 0.0], rtol=1e-15)  # n cos^2 = 2 * 1
    w0 = {"tiny": jnp.array([0.6, 0.0]), "zero": jnp.zeros(2)}
    moved = {"tiny": jnp.array([0.6, 0.3]), "zero": jnp.ones(2)}
    distances = transform._relative_distances(moved, w0, jnp.float64)
    np.testing.assert_allclose(distances, [0.5, np.inf], rtol=1e-15)


def test_radial_alignment_of_bfloat16_leaves_is_computed_in_the_state_type():
    rng = np.random.default_rng(0)
    g, w = (jnp.asarray(rng.standard_normal(300), jnp.bfloat16) for _ in range(2))
    alignment, measured = transform._radial_alignment({"k": g}, {"k": w}, jnp.float32)
    g64, w64 = np.asarray(g, np.float64), np.asarray(w, np.float64)
    exact = 300 * (g64 @ w64 / (np.linalg.norm(g64) * np.linalg.norm(w64))) ** 2
    assert alignment.dtype == jnp.float32 and bool(measured[0])
    np.testing.assert_allclose(float(alignment[0]), exact, rtol=1e-5)


def test_a_search_sums_the_radial_alignment_of_bfloat16_leaves_in_the_state_type():
    """salsa() on bfloat16 parameters: the state's scalars are float32, and so is the alignment
    n cos^2(g, w) a search adds to the leaf's sum (bfloat16 would round it to 3 digits)."""
    rng = np.random.default_rng(2)
    w = {"k": jnp.asarray(rng.standard_normal(300), jnp.bfloat16)}
    target = jnp.asarray(rng.standard_normal(300), jnp.float32)
    loss = lambda p: jnp.sum(jnp.square(p["k"].astype(jnp.float32) - target))
    _, state = _step(salsa_optax.salsa(), w, loss)
    distance = _get(state, "distance")
    assert bool(_info(state).searched) and distance.radial_count.tolist() == [1]
    g64, w64 = np.asarray(jax.grad(loss)(w)["k"], np.float64), np.asarray(w["k"], np.float64)
    exact = 300 * (g64 @ w64 / (np.linalg.norm(g64) * np.linalg.norm(w64))) ** 2
    assert distance.radial_sum.dtype == jnp.float32
    np.testing.assert_allclose(float(distance.radial_sum[0]), exact, rtol=1e-5)


def test_a_search_measures_the_distance_of_bfloat16_leaves_in_the_state_type():
    """salsa() on bfloat16 parameters moved from their start: the search's relative distance, and
    so the leaf's multiplier 1 + (mu - 1) r / delta, is computed in float32 (bfloat16 would round
    r to 3 digits)."""
    rng = np.random.default_rng(3)
    start = rng.standard_normal(300)
    w0 = {"k": jnp.asarray(start, jnp.bfloat16)}
    w = {"k": jnp.asarray(start + 0.3 * rng.standard_normal(300), jnp.bfloat16)}
    loss = lambda p: jnp.sum(jnp.square(p["k"].astype(jnp.float32)))  # g = 2 w: not invariant
    tx = salsa_optax.salsa(step_multiplier=3.0, multiplier_distance=10.0)
    _, state = _step(tx, w, loss, tx.init(w0))
    multipliers = _get(state, "distance").multipliers
    assert bool(_info(state).searched) and multipliers.dtype == jnp.float32
    w64, w064 = np.asarray(w["k"], np.float64), np.asarray(w0["k"], np.float64)
    relative = np.linalg.norm(w64 - w064) / np.linalg.norm(w064)
    np.testing.assert_allclose(float(multipliers[0]), 1 + 2 * relative / 10.0, rtol=1e-6)


def test_relative_distances_of_bfloat16_leaves_are_computed_in_the_state_type():
    rng = np.random.default_rng(1)
    w0, w = (jnp.asarray(rng.standard_normal(300), jnp.bfloat16) for _ in range(2))
    distances = transform._relative_distances({"k": w}, {"k": w0}, jnp.float32)
    w64, w064 = np.asarray(w, np.float64), np.asarray(w0, np.float64)
    exact = np.linalg.norm(w64 - w064) / np.linalg.norm(w064)
    assert distances.dtype == jnp.float32
    np.testing.assert_allclose(float(distances[0]), exact, rtol=1e-5)


def test_distance_multipliers_by_value():
    f32 = jnp.float32
    relative = jnp.array([jnp.inf, 0.25, 0.0], f32)
    free = transform._distance_multipliers(relative, jnp.zeros(3, bool), 2.0, 0.5, f32)
    assert free.dtype == f32 and free.tolist() == [2.0, 1.5, 1.0]
    invariant = jnp.array([False, True, False])
    assert transform._distance_multipliers(relative, invariant, 2.0, 0.5, f32).tolist() == [1.0] * 3


@pytest.mark.parametrize(
    ("outcome", "evaluations", "margin", "margin0", "cap", "stored"),
    [
        (ACCEPTED, 1, 0.5, 0.25, np.inf, 0.6),  # 0.5 (1 + 0.5) / (1 + 0.25)
        (ACCEPTED, 1, 3.0, 0.0, np.inf, 1.0),  # at most doubled
        (ACCEPTED, 1, 0.5, 0.25, 0.5625, 0.5625),  # capped
        (ACCEPTED, 1, 0.0, 0.25, np.inf, 0.5),  # never shrunk
        (ACCEPTED, 2, 0.5, 0.25, np.inf, 0.5),  # a second trial passed
        (EXHAUSTED, 1, 0.5, 0.25, np.inf, 0.5),  # no trial passed
    ],
)
def test_grown_by_margin_by_value(outcome, evaluations, margin, margin0, cap, stored):
    f32 = jnp.float32
    result = armijo.SearchResult(
        f32(0.5), f32(0.5), f32(0), f32(1), evaluations, outcome, f32(margin), f32(0.5), None
    )
    grown = transform._grown_by_margin(f32(0.5), result, margin0, cap)
    assert grown.dtype == f32  # with float64 enabled
    np.testing.assert_allclose(float(grown), stored, rtol=1e-6)


def test_measure_noise_by_value():
    f32, a, eps = jnp.float32, transform.NOISE_AVERAGING, float(jnp.finfo(jnp.float32).eps)
    noise = transform.NoiseState(jnp.asarray(True), f32(4.0), f32(0.5), f32(0.5), f32(2.0))
    measured = transform._measure_noise(noise, f32(4.5), jnp.asarray(True))
    assert not bool(measured.pending)
    np.testing.assert_allclose(float(measured.residual_sq), a * 0.5 + (1 - a) * 0.25, rtol=1e-6)
    np.testing.assert_allclose(float(measured.linear_sq), a * 2.0 + (1 - a) * 0.25, rtol=1e-6)
    assert (measured.predicted_value, measured.linear_change) == (4.0, 0.5)
    # Round-off is relative to the loss: 8 units of 4.0's relative round-off are within it ...
    quiet = noise._replace(residual_sq=f32(0.0))
    within = transform._measure_noise(quiet, f32(4.0) * (1 + 8 * eps), jnp.asarray(True))
    assert float(within.residual_sq) == 0.0
    # ... and a residual exactly at the bound counts as round-off.
    at_bound = quiet._replace(predicted_value=f32(1.0) - transform.ROUND_OFF_ULPS * eps)
    assert float(transform._measure_noise(at_bound, f32(1.0), jnp.asarray(True)).residual_sq) == 0


def test_noisy_and_differs_at_their_bounds():
    f32 = jnp.float32
    noise = transform.NoiseState(*(f32(0.0),) * 3, f32(1.0), f32(4.0))
    assert not bool(transform._noisy(noise, 0.5))  # a residual at 0.5 times the linear change
    assert bool(transform._noisy(noise, 0.49))
    assert not bool(transform._differs(f32(0.0), f32(0.0)))
    assert not bool(transform._differs(f32(1000.0), f32(1000.5)))  # within 1e-3 relative
    assert bool(transform._differs(f32(1000.0), f32(1002.0)))
    assert bool(transform._differs(f32(1.0), f32(jnp.nan)))


def test_scale_invariance_compares_the_mean_alignment_over_the_searches_with_the_level():
    level = transform.SCALE_INVARIANCE_LEVEL
    sums = jnp.array([1.5 * level, 2.5 * level, 0.0, 0.5 * level, 2 * level], jnp.float32)
    counts = jnp.array([2, 2, 0, 1, 2], jnp.int32)
    invariant = transform._scale_invariant(sums, counts)
    assert invariant.tolist() == [True, False, False, True, False]


def test_leaf_factors_pass_the_factor_itself_where_the_exponent_is_one():
    # factor ** 1 flushes a subnormal factor to zero on XLA's CPU; the factor itself does not.
    tiny = jnp.float32(1e-38)
    factors = jax.jit(transform._leaf_factors)(tiny, jnp.array([0.0, 1.0], jnp.float32))
    assert factors.tolist() == [1.0, float(tiny)]


# ------------------------------------------------------------------------------------------------
# The cap on the proposal.


def test_max_learning_rate_caps_the_proposal_and_the_stored_step_size():
    cap = 0.0625
    tx = _sgd_search(
        max_learning_rate=cap, initial_learning_rate=1.0, increase_factor=2.0, smoothing=0.5
    )
    loss = lambda p: 0.5 * jnp.sum(p**2)
    w = jnp.array([1.0, -2.0])
    updates, state = _step(tx, w, loss)
    assert int(_info(state).num_evaluations) == 1  # the capped proposal is accepted at once
    np.testing.assert_array_equal(updates, -cap * w)  # exact: dyadic numbers
    assert float(_info(state).step_size) == cap
    assert float(_get(state, "learning_rate")) == cap
    for _ in range(5):
        w = w + updates
        updates, state = _step(tx, w, loss, state)
        assert float(_get(state, "learning_rate")) <= cap
        assert float(_info(state).step_size) <= cap


# ------------------------------------------------------------------------------------------------
# The non-finite guard: value, grad and updates each alone.


@pytest.mark.parametrize("poisoned", ["grad", "updates", "value"])
@pytest.mark.parametrize("make_tx", [salsa_optax.salsa, _sgd_search], ids=["salsa", "salsa_sgd"])
def test_nonfinite_value_grad_or_updates_alone_leave_everything_unchanged(poisoned, make_tx):
    tx = make_tx()
    loss = lambda p: jnp.sum((p - 1.0) ** 2)
    w = jnp.array([0.5, -1.0, 3.0])
    first, state = _step(tx, w, loss)
    w = w + first
    grad = jax.grad(loss)(w)
    bad = {
        "grad": {"grad": grad.at[1].set(jnp.nan)},
        "updates": {"updates": grad.at[2].set(jnp.inf)},
        "value": {"value": jnp.asarray(jnp.nan)},
    }[poisoned]
    updates, new_state = _step(tx, w, loss, state, **bad)
    np.testing.assert_array_equal(updates, jnp.zeros_like(w))
    for old, new in zip(_without(state), _without(new_state), strict=True):
        np.testing.assert_array_equal(new, old)
    info, old_info = _info(new_state), _info(state)
    assert int(info.search_outcome) == NON_FINITE
    assert int(info.num_evaluations) == 0 and int(info.num_backtracks) == 0
    if make_tx is _sgd_search:  # the search before backtracked: its count is not carried over
        assert int(old_info.num_backtracks) > 0
    assert float(info.step_size) == 0 and float(info.armijo_margin) == np.inf
    assert int(info.total_nonfinite_skipped) == int(old_info.total_nonfinite_skipped) + 1


# ------------------------------------------------------------------------------------------------
# The smoothed Armijo test: ties accepted (>=), zero decrease, the margin.


def test_armijo_test_accepts_an_exact_tie():
    config = armijo.ArmijoConfig(
        slope_rtol=0.5, smoothing=0.5, decrease_factor=0.5, max_backtracking_steps=10
    )
    # lhs = 0.5 * 0.5 + 0.5 * 1.5 = 1.0; rhs = 0.5 * 1.0 * 2.0 = 1.0, all exact.
    passed, lhs, margin = armijo.smoothed_armijo_test(
        jnp.asarray(1.5), jnp.asarray(0.5), jnp.asarray(2.0), jnp.asarray(1.0), config
    )
    assert bool(passed)
    assert float(lhs) == 1.0
    assert float(margin) == 0.0
    # Just below the tie it fails.
    passed, _, _ = armijo.smoothed_armijo_test(
        jnp.asarray(1.5 - 2.0**-40), jnp.asarray(0.5), jnp.asarray(2.0), jnp.asarray(1.0), config
    )
    assert not bool(passed)


@pytest.mark.parametrize("smoothing", [0.0, 0.5])
def test_search_accepts_a_trial_that_ties_the_test(smoothing):
    """f = w^2 at w = 1, eta = 1/4: delta = 3/4, slope 4; c = 3/4 makes both sides equal."""
    tx = _sgd_search(
        slope_rtol=0.75,
        smoothing=smoothing,
        decrease_factor=0.5,
        increase_factor=1.0,
        initial_learning_rate=0.25,
    )
    w = jnp.array([1.0])
    updates, state = _step(tx, w, _sum_squares)
    info = _info(state)
    assert int(info.search_outcome) == ACCEPTED
    assert int(info.num_evaluations) == 1
    assert int(info.num_backtracks) == 0
    np.testing.assert_array_equal(updates, jnp.array([-0.5]))
    assert float(info.armijo_margin) == 0.0
    # The accepted decrease enters the average: (1 - beta3) * 3/4.
    assert float(_get(state, "avg_decrease")) == (1 - smoothing) * 0.75


def test_zero_decrease_below_round_off_is_accepted_without_touching_the_average():
    """f = 1e6 + w^2 in float32 at w = 1: a step of 1e-3 changes f by 4e-3, under its spacing
    (0.0625), so the decrease is exactly 0 while the test asks for 1e-3 < eps * f = 0.12."""
    tx = _sgd_search(slope_rtol=0.5, smoothing=0.5, increase_factor=1.0, initial_learning_rate=1e-3)
    loss = lambda p: 1e6 + jnp.sum(p**2)
    w = jnp.array([1.0], jnp.float32)
    state = optax.tree.set(tx.init(w), avg_decrease=jnp.asarray(0.3, jnp.float32))
    updates, state = _step(tx, w, loss, state)
    info = _info(state)
    assert int(info.search_outcome) == ZERO_DECREASE
    assert int(info.num_evaluations) == 1
    assert int(info.num_backtracks) == 0  # an accepted trial, not a backtrack
    np.testing.assert_allclose(updates, jnp.array([-2e-3]), rtol=1e-6)
    assert float(_get(state, "avg_decrease")) == pytest.approx(0.3)
    assert float(_get(state, "learning_rate")) == pytest.approx(1e-3)


def test_zero_decrease_asking_exactly_the_round_off_is_accepted_at_once():
    """f(w) = 2^20 in float32, so eps * |f| = 2^-23 * 2^20 = 1/8 exactly. With g = 2, c = 1/2 and
    beta3 = 1/2, S = (1 - beta3) * |g|^2 = 2 and the test asks c * eta * S = eta: at eta = 1/8 it
    asks exactly the round-off, and an unchanged loss there is cancellation, accepted at once."""
    tx = _sgd_search(
        slope_rtol=0.5, smoothing=0.5, decrease_factor=0.5, increase_factor=1.0,
        initial_learning_rate=0.125,
    )  # fmt: skip
    level = jnp.asarray(2.0**20, jnp.float32)
    flat = lambda p: level + 0.0 * jnp.sum(p)
    w, g = jnp.array([1.0], jnp.float32), jnp.array([2.0], jnp.float32)
    updates, state = _step(tx, w, flat, value=level, grad=g, updates=g)
    info = _info(state)
    assert int(info.search_outcome) == ZERO_DECREASE
    assert int(info.num_evaluations) == 1
    np.testing.assert_array_equal(updates, jnp.array([-0.25]))  # -eta * g
    assert float(_get(state, "learning_rate")) == 0.125


def test_zero_decrease_at_a_long_step_is_tested_not_accepted():
    """f = w^2 at w = 1: eta = 1 lands on the mirror point -1, delta = 0 exactly but the test
    asks for 0.5 * 1 * S: rejected; eta = 0.5 lands on 0 and is accepted."""
    tx = _sgd_search(
        slope_rtol=0.5, smoothing=0.0, decrease_factor=0.5, increase_factor=1.0,
        initial_learning_rate=1.0,
    )  # fmt: skip
    w = jnp.array([1.0])
    updates, state = _step(tx, w, _sum_squares)
    info = _info(state)
    assert int(info.search_outcome) == ACCEPTED
    assert int(info.num_evaluations) == 2 and int(info.num_backtracks) == 1
    np.testing.assert_array_equal(updates, jnp.array([-1.0]))  # to w = 0
    assert float(_get(state, "learning_rate")) == 0.5


def test_armijo_margin_is_the_minimum_over_the_trials():
    """f = |w|^2, w = (1, -2), c = 1/2, beta3 = 1/2: lhs / rhs = 2 (1 - eta), margin |1 - 2 eta|.

    eta = 0.55 is rejected with margin 0.1, eta = 0.275 accepted with margin 0.45: the minimum is
    the first trial's, not the last one's.
    """
    c, beta3, first, factor = 0.5, 0.5, 0.55, 0.5
    tx = _sgd_search(
        slope_rtol=c,
        smoothing=beta3,
        decrease_factor=factor,
        increase_factor=1.0,
        initial_learning_rate=first,
    )
    w = jnp.array([1.0, -2.0])
    _, state = _step(tx, w, _sum_squares)
    info = _info(state)
    assert int(info.search_outcome) == ACCEPTED
    assert int(info.num_evaluations) == 2

    w64 = np.asarray(w)
    g = 2 * w64
    avg_slope = (1 - beta3) * (g @ g)
    margins = []
    for eta in (first, first * factor):
        decrease = w64 @ w64 - np.sum((w64 - eta * g) ** 2)
        lhs, rhs = (1 - beta3) * decrease, c * eta * avg_slope
        margins.append(abs(lhs - rhs) / abs(rhs))
    assert margins[0] < margins[1]
    np.testing.assert_allclose(float(info.armijo_margin), min(margins), rtol=1e-12)
    np.testing.assert_allclose(float(_get(state, "avg_slope")), avg_slope, rtol=1e-15)


def test_exhausted_search_takes_no_step_and_keeps_the_stored_step_size():
    tx = _sgd_search(max_backtracking_steps=3, initial_learning_rate=0.5, increase_factor=1.0)
    w = jnp.array([1.0, 2.0])
    never_lower = lambda p: _sum_squares(w) + 1.0 + 0.0 * jnp.sum(p)
    updates, state = _step(tx, w, _sum_squares, value_fn=never_lower)
    info = _info(state)
    assert int(info.search_outcome) == EXHAUSTED
    # Three trials, then one evaluation at params, which disagrees with `value` by 1.
    assert int(info.num_evaluations) == 4
    assert int(info.num_backtracks) == 3
    assert int(info.total_exhausted) == 1 and int(info.total_value_mismatches) == 1
    np.testing.assert_array_equal(updates, jnp.zeros_like(w))
    assert float(_get(state, "learning_rate")) == 0.5


@pytest.mark.parametrize(
    "direction",
    [None, jnp.array([2.0, -1.0])],
    ids=["ascent", "orthogonal"],
)
def test_non_descent_direction_takes_no_step_and_keeps_the_state(direction):
    """scale_by_salsa takes descent-form updates: the raw gradient is an ascent direction, and a
    direction orthogonal to the gradient (slope exactly 0) is no descent direction either."""
    tx = salsa_optax.scale_by_salsa()
    w = jnp.array([1.0, 2.0])
    state = tx.init(w)
    updates, new_state = _step(tx, w, _sum_squares, state, updates=direction)
    assert int(_info(new_state).search_outcome) == NON_DESCENT
    assert int(_info(new_state).num_evaluations) == 0
    assert int(_info(new_state).total_nondescent_skipped) == 1
    np.testing.assert_array_equal(updates, jnp.zeros_like(w))
    for old, new in zip(_without(state), _without(new_state), strict=True):
        np.testing.assert_array_equal(new, old)


def test_a_non_descent_step_still_measures_the_noise_of_the_last_search():
    """The step keeps the state, but its value measures the last search's prediction."""
    tx = salsa_optax.salsa(adaptive_search_frequency=False)
    w = jnp.array([1.0, 2.0], jnp.float32)
    _, state = _step(tx, w, _sum_squares)
    assert bool(state.noise.pending) and float(state.noise.linear_sq) == 0.0
    grad = jax.grad(_sum_squares)(w)
    _, after = _step(tx, w, _sum_squares, state, updates=-grad)
    assert int(_info(after).search_outcome) == NON_DESCENT
    assert not bool(after.noise.pending)
    a, linear = transform.NOISE_AVERAGING, float(state.noise.linear_change)
    np.testing.assert_allclose(float(after.noise.linear_sq), (1 - a) * linear**2, rtol=1e-6)


def test_the_smoothed_slope_is_computed_in_the_float32_state_type():
    """With float64 enabled, (1 - smoothing) S rounds in float32 as the state's other scalars do:
    for this slope float64 arithmetic would round to the neighbouring float32."""
    w = jnp.array([0.046875], jnp.float32)  # S = |g|^2 = w^2, exact
    _, state = _step(_sgd_search(smoothing=0.9), w, lambda p: 0.5 * jnp.sum(p**2))
    slope = np.float32(0.046875**2)
    expected = np.float32(np.float32(1 - 0.9) * slope)
    assert expected != np.float32((1 - 0.9) * np.float64(slope))
    assert state.avg_slope.dtype == jnp.float32 and float(state.avg_slope) == float(expected)


# ------------------------------------------------------------------------------------------------
# The reference's bypass (salsa_published only) and salsa()'s search without it.


def _flat_loss(p):
    """A large loss with a tiny gradient: the Adam slope sum g^2 / (|g| + eps) is ~1e-15."""
    return 1000.0 + 1e-12 * jnp.sum((p - 3.0) ** 2)


def test_published_bypasses_on_a_small_slope_with_a_large_loss():
    stored, eps = 0.5, 1e-8
    tx = salsa_optax.salsa_published(
        initial_learning_rate=stored, eps=eps, adaptive_search_frequency=False
    )
    w = jnp.array([1.0, -2.0])
    updates, state = _step(tx, w, _flat_loss)
    info = _info(state)
    assert int(info.search_outcome) == BYPASSED
    assert int(info.num_evaluations) == 0
    # The step moves by the stored step size, untested, and the stored step size does not grow.
    assert float(info.step_size) == stored
    assert float(_get(state, "learning_rate")) == stored
    g = np.asarray(jax.grad(_flat_loss)(w))
    np.testing.assert_allclose(updates, -stored * g / (np.abs(g) + eps), rtol=1e-12)


def test_published_bypasses_on_a_small_loss_with_a_large_slope():
    tx = salsa_optax.salsa_published(adaptive_search_frequency=False)
    w = jnp.array([1e-5, -1e-5])  # loss 2e-10 < 1e-8, slope ~ (1 - beta3) * 4e-5 > 1e-8
    _, state = _step(tx, w, _sum_squares)
    assert int(_info(state).search_outcome) == BYPASSED
    assert int(_info(state).num_evaluations) == 0


@pytest.mark.parametrize(
    "loss",
    [lambda p: jnp.sum((p - 1.0) ** 2) - 10.0, _flat_loss],
    ids=["negative_loss", "small_slope"],
)
@pytest.mark.parametrize("make_tx", [salsa_optax.salsa, _sgd_search], ids=["salsa", "salsa_sgd"])
def test_salsa_searches_where_the_reference_would_bypass(loss, make_tx):
    tx = make_tx(adaptive_search_frequency=False)
    _, state = _step(tx, jnp.array([0.0, 3.5]), loss)
    info = _info(state)
    assert bool(info.searched)
    assert int(info.search_outcome) in (ACCEPTED, ZERO_DECREASE, EXHAUSTED)
    assert int(info.num_evaluations) >= 1


# ------------------------------------------------------------------------------------------------
# The search-frequency schedule.


def test_search_interval_formula():
    # L = min(L_max, 1 / (r - 1 + 1e-8)), r = max(q, 1 / q), q = fast / slow.
    for fast, slow in ((1.25, 1.0), (1.0, 1.25), (3.0, 1.0), (1.0, 3.0)):
        r = max(fast / slow, slow / fast)
        expected = min(10.0, 1 / (r - 1 + 1e-8))
        np.testing.assert_allclose(
            float(search_frequency.search_interval(fast, slow, 10.0)), expected, rtol=1e-12
        )
    assert float(search_frequency.search_interval(1.0, 1.0, 10.0)) == 10.0
    assert float(search_frequency.search_interval(1.0, 1.0, 3.0)) == 3.0


def _searched_pattern(tx, state, steps, loss=_sum_squares, w=None):
    w = jnp.array([1.0, -0.5]) if w is None else w
    pattern = []
    for _ in range(steps):
        updates, state = _step(tx, w, loss, state)
        pattern.append(bool(_info(state).searched))
        w = w + updates
    return pattern, state


def _settled(tx, w, fast, slow):
    """A fresh state whose step-size averages are as given (1.0 and 1.0: settled)."""
    return optax.tree.set(
        tx.init(w), learning_rate_fast=jnp.asarray(fast), learning_rate_slow=jnp.asarray(slow)
    )


def _searching_in_warmup_only(warmup_searches, eta):
    """salsa_sgd() whose schedule searches in its warm-up only (L_max huge) and keeps its step
    size at eta where eta is accepted: no growth, no smoothing of the averages."""
    return _sgd_search(
        adaptive_search_frequency=True,
        warmup_searches=warmup_searches,
        max_search_interval=10**9,
        smoothing=0.0,
        increase_factor=1.0,
        initial_learning_rate=eta,
    )


def test_a_skipped_step_reports_no_trials_and_a_margin_of_inf_after_a_search():
    """The diagnostics of a skipped step are its own, not the last search's."""
    eta = 0.25
    tx = _searching_in_warmup_only(1, eta)
    w = jnp.array([1.0, -0.5])
    loss = lambda p: 0.5 * jnp.sum(p**2)
    updates, searched = _step(tx, w, loss, _settled(tx, w, eta, eta))
    assert bool(_info(searched).searched) and np.isfinite(float(_info(searched).armijo_margin))
    assert int(_info(searched).num_evaluations) >= 1
    _, skipped = _step(tx, w + updates, loss, searched)
    info = _info(skipped)
    assert not bool(info.searched) and int(info.search_outcome) == SKIPPED
    assert (int(info.num_evaluations), int(info.num_backtracks)) == (0, 0)
    assert float(info.armijo_margin) == np.inf
    assert float(info.step_size) == eta


def test_warmup_boundary_is_count_below_warmup_searches():
    """warmup_searches = 3, L_max huge, averages equal (r = 1): steps 1-3 search, then none."""
    eta = 0.25
    tx = _searching_in_warmup_only(3, eta)
    w = jnp.array([1.0, -0.5])
    # 0.5 * f is accepted at eta = 1/4 on every step, so the averages stay at eta.
    loss = lambda p: 0.5 * jnp.sum(p**2)
    pattern, state = _searched_pattern(tx, _settled(tx, w, eta, eta), 6, loss, w)
    assert pattern == [True, True, True, False, False, False]
    assert int(_info(state).total_searches) == 3

    tx = _searching_in_warmup_only(0, eta)
    pattern, _ = _searched_pattern(tx, _settled(tx, w, eta, eta), 2, loss, w)
    assert pattern == [False, False]


@pytest.mark.parametrize(("fast", "slow"), [(0.3125, 0.25), (0.25, 0.3125)])
def test_schedule_searches_when_steps_since_search_reach_the_interval(fast, slow):
    """r = 1.25 (either way round): L = 1 / (0.25 + 1e-8) < 4: steps 1-3 skip, step 4 searches."""
    tx = _sgd_search(
        adaptive_search_frequency=True,
        warmup_searches=0,
        max_search_interval=10,
        increase_factor=1.0,
        initial_learning_rate=0.25,
    )
    w = jnp.array([1.0, -0.5])
    pattern, _ = _searched_pattern(tx, _settled(tx, w, fast, slow), 4, w=w)
    assert pattern == [False, False, False, True]
    # The cap L_max: with L_max = 2 every second step searches.
    tx = _sgd_search(
        adaptive_search_frequency=True,
        warmup_searches=0,
        max_search_interval=2,
        increase_factor=1.0,
        initial_learning_rate=0.25,
    )
    pattern, _ = _searched_pattern(tx, _settled(tx, w, 0.25, 0.25), 2, w=w)
    assert pattern == [False, True]


def test_skipped_step_moves_by_the_stored_step_size_times_the_growth():
    tx = _sgd_search(
        adaptive_search_frequency=True,
        warmup_searches=0,
        max_search_interval=10,
        increase_factor=1.5,
        initial_learning_rate=0.25,
    )
    w = jnp.array([1.0, -0.5])
    updates, state = _step(tx, w, _sum_squares, _settled(tx, w, 0.25, 0.25))
    assert not bool(_info(state).searched)
    assert int(_info(state).num_evaluations) == 0
    np.testing.assert_array_equal(updates, -0.375 * 2 * w)
    assert float(_get(state, "learning_rate")) == 0.25  # unchanged by a skipped step


# ------------------------------------------------------------------------------------------------
# Properties (hypothesis), on random diagonal quadratics; one compilation per optimizer.


def _quadratic(w, curvature, target):
    return 0.5 * jnp.sum(curvature * (w - target) ** 2)


# (curvature, target, start): the start is at least 0.5 from the target in every coordinate, so
# the loss and the slope are far above the reference's 1e-8 thresholds.
_offsets = st.lists(
    st.tuples(st.floats(0.5, 5.0), st.sampled_from([-1.0, 1.0])).map(lambda t: t[0] * t[1]),
    min_size=4,
    max_size=4,
)
_problems = st.tuples(
    st.lists(st.floats(0.1, 50.0), min_size=4, max_size=4),
    st.lists(st.floats(-5.0, 5.0), min_size=4, max_size=4),
    _offsets,
).map(lambda p: (p[0], p[1], [t + o for t, o in zip(p[1], p[2], strict=True)]))

_OPTIMIZERS = {
    "salsa": lambda: salsa_optax.salsa(adaptive_search_frequency=False),
    "salsa_sgd": lambda: _sgd_search(increase_factor=1.5),
    "sgd_then_scale_by_salsa": lambda: optax.chain(
        optax.sgd(1.0), salsa_optax.scale_by_salsa(increase_factor=1.5)
    ),
}


@functools.cache
def _jitted_step(name, cap=None):
    if cap is None:
        tx = _OPTIMIZERS[name]()
    else:
        tx = _sgd_search(max_learning_rate=cap, increase_factor=1.5)

    @jax.jit
    def step(w, state, curvature, target, poison):
        value, grad = jax.value_and_grad(_quadratic)(w, curvature, target)
        # poison != 0 makes every trial point look worse than w: a value_fn that would change
        # the step if it were called.
        value_fn = lambda p, curvature, target: _quadratic(p, curvature, target) + poison
        updates, state = tx.update(
            grad, state, w, value=value, grad=grad, value_fn=value_fn,
            curvature=curvature, target=target,
        )  # fmt: skip
        return updates, state

    return tx, step


def _arrays(problem):
    curvature, target, w = (jnp.asarray(x, jnp.float64) for x in problem)
    return curvature, target, w


_settings = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.mark.parametrize("name", sorted(_OPTIMIZERS))
@_settings
@given(problem=_problems)
def test_property_accepted_step_passes_the_smoothed_test(problem, name):
    c, beta3 = 0.5, 0.9
    tx, step = _jitted_step(name)
    curvature, target, w = _arrays(problem)
    state = tx.init(w)
    accepted = 0
    for _ in range(6):
        old_decrease = float(_get(state, "avg_decrease"))
        updates, state = step(w, state, curvature, target, 0.0)
        info = _info(state)
        new_w = w + updates
        if int(info.search_outcome) == ACCEPTED:
            accepted += 1
            value = float(_quadratic(w, curvature, target))
            decrease = value - float(_quadratic(new_w, curvature, target))
            lhs = beta3 * old_decrease + (1 - beta3) * decrease
            rhs = c * float(info.step_size) * float(_get(state, "avg_slope"))
            # Rounding: w + updates is the accepted trial point up to an ulp or so.
            tolerance = 1e-9 * (abs(lhs) + abs(rhs)) + 1e-12 * abs(value)
            assert lhs >= rhs - tolerance
            assert abs(float(_get(state, "avg_decrease")) - lhs) <= tolerance
        w = new_w
    assert accepted >= 1  # not vacuous


@_settings
@given(problem=_problems, cap=st.sampled_from([0.01, 0.1, 2.0]))
def test_property_stored_step_size_never_exceeds_the_cap(problem, cap):
    tx, step = _jitted_step("salsa_sgd", cap)
    curvature, target, w = _arrays(problem)
    state = tx.init(w)
    for _ in range(8):
        updates, state = step(w, state, curvature, target, 0.0)
        assert float(_get(state, "learning_rate")) <= cap
        assert float(_info(state).step_size) <= cap
        w = w + updates


@functools.cache
def _skip_step():
    tx = _sgd_search(
        adaptive_search_frequency=True, warmup_searches=0, max_search_interval=3,
        increase_factor=1.0,
    )  # fmt: skip

    @jax.jit
    def step(w, state, curvature, target, poison):
        value, grad = jax.value_and_grad(_quadratic)(w, curvature, target)
        value_fn = lambda p, curvature, target: _quadratic(p, curvature, target) + poison
        return tx.update(
            grad, state, w, value=value, grad=grad, value_fn=value_fn,
            curvature=curvature, target=target,
        )  # fmt: skip

    return tx, step


@_settings
@given(problem=_problems)
def test_property_skipped_steps_evaluate_no_value_fn(problem):
    """On a step the schedule skips, a value_fn that would change the step changes nothing."""
    tx, step = _skip_step()
    curvature, target, w = _arrays(problem)
    state = _settled(tx, w, 1.0, 1.0)
    skipped = 0
    for _ in range(7):
        updates, new_state = step(w, state, curvature, target, 0.0)
        poisoned_updates, poisoned_state = step(w, state, curvature, target, 1e6)
        if not bool(_info(new_state).searched):
            skipped += 1
            assert int(_info(new_state).num_evaluations) == 0
            np.testing.assert_array_equal(poisoned_updates, updates)
            for a, b in zip(
                jax.tree.leaves(poisoned_state), jax.tree.leaves(new_state), strict=True
            ):
                np.testing.assert_array_equal(a, b)
        w, state = w + updates, new_state
    assert skipped >= 4


def test_the_reference_bypass_is_strictly_below_its_threshold():
    config = armijo.ArmijoConfig(0.5, 0.9, 0.8, 100, reference_bypass=True)
    at = armijo.BYPASS_THRESHOLD
    assert not bool(armijo.bypassed(at, 1.0, config))  # loss exactly at the threshold
    assert not bool(armijo.bypassed(1.0, at, config))  # smoothed slope exactly at it
    assert bool(armijo.bypassed(at / 2, 1.0, config)) and bool(armijo.bypassed(1.0, at / 2, config))


def test_an_equal_loss_at_a_step_the_test_can_resolve_is_tested_not_accepted():
    """f = 1e6 + 2 w^2 in float32, w = 1, eta = 0.5 lands on the mirror point -1: the decrease is
    exactly 0, but the test asks c * eta * S = 0.5 * 0.5 * 8 = 2, far above the round-off of f
    (0.12): rejected. eta = 0.25 lands on 0: lhs = 0.5 * 2 = 1 = rhs, an exact tie, accepted."""
    tx = _sgd_search(
        slope_rtol=0.5, smoothing=0.5, decrease_factor=0.5, increase_factor=1.0,
        initial_learning_rate=0.5,
    )  # fmt: skip
    loss = lambda p: 1e6 + 2.0 * jnp.sum(p**2)
    w = jnp.array([1.0], jnp.float32)
    updates, state = _step(tx, w, loss)
    info = _info(state)
    assert int(info.search_outcome) == ACCEPTED
    assert int(info.num_evaluations) == 2 and int(info.num_backtracks) == 1
    np.testing.assert_array_equal(updates, jnp.array([-1.0]))


def test_an_exhausted_search_keeps_the_aux_it_was_given():
    """With aux_like, no trial passes: state.aux is the aux given to update, not a trial's."""
    w = jnp.array([1.0, 2.0])
    aux_like = {"probe": jax.ShapeDtypeStruct((), w.dtype)}
    tx = salsa_optax.salsa_sgd(max_backtracking_steps=3, aux_like=aux_like)
    value, grad = jax.value_and_grad(_sum_squares)(w)
    never_lower = lambda p: (_sum_squares(w) + 1.0 + 0.0 * jnp.sum(p), {"probe": jnp.sum(p)})
    _, state = tx.update(
        grad, tx.init(w), w, value=value, grad=grad, value_fn=never_lower,
        aux={"probe": jnp.asarray(-7.0, w.dtype)},
    )  # fmt: skip
    assert int(state.info.search_outcome) == EXHAUSTED
    assert float(state.aux["probe"]) == -7.0


# ------------------------------------------------------------------------------------------------
# growth_margin: after a first trial that passed with margin m > m0, store
# eta * min(2, (1 + m) / (1 + m0)). On f = |w|^2 along the gradient with beta3 = 0, a trial eta
# gives lhs / rhs = (1 - eta) / c.


@pytest.mark.parametrize(
    ("c", "eta", "margin0", "cap", "stored"),
    [
        (0.5, 0.25, 0.0, None, 0.375),  # m = 0.5: factor 1.5
        (0.5, 0.25, 0.25, None, 0.3),  # factor 1.5 / 1.25 = 1.2
        (0.5, 0.25, 0.5, None, 0.25),  # m = m0: factor 1, kept
        (0.5, 0.25, 1.0, None, 0.25),  # m < m0: the factor is never below 1
        (0.25, 0.125, 0.0, None, 0.25),  # m = 2.5: factor 3.5, at most 2
        (0.5, 0.25, 0.0, 0.3125, 0.3125),  # grown to 0.375, capped by max_learning_rate
    ],
)
def test_growth_margin_stores_the_step_size_grown_by_the_first_trials_margin(
    c, eta, margin0, cap, stored
):
    tx = _sgd_search(
        slope_rtol=c, smoothing=0.0, increase_factor=1.0, initial_learning_rate=eta,
        growth_margin=margin0, max_learning_rate=cap,
    )  # fmt: skip
    w = jnp.array([1.0, -0.5])
    updates, state = _step(tx, w, _sum_squares)
    info = _info(state)
    assert int(info.search_outcome) == ACCEPTED and int(info.num_evaluations) == 1
    np.testing.assert_allclose(float(info.armijo_margin), (1 - eta) / c - 1, rtol=1e-15)
    np.testing.assert_allclose(float(_get(state, "learning_rate")), stored, rtol=1e-15)
    # The step taken is the accepted trial's; only the stored step size grows.
    assert float(info.step_size) == eta
    np.testing.assert_array_equal(updates, -eta * 2 * w)


@pytest.mark.parametrize(
    "options, outcome, stored, update",
    [
        (dict(decrease_factor=0.5), ACCEPTED, 0.5, -1.0),
        (dict(max_backtracking_steps=1), EXHAUSTED, 0.8, 0.0),
    ],
    ids=["after_a_backtrack", "after_an_exhausted_search"],
)
def test_growth_margin_does_not_grow_unless_the_first_trial_passed(
    options, outcome, stored, update
):
    """c = 1/4, f = w^2 at w = 1: eta = 1 lands on the mirror point (rejected, margin 1 > m0 = 0).
    With a second trial, eta = 1/2 lands on the minimum (lhs = 1 = 2 rhs, margin 1) and is
    accepted: the stored step size is the accepted 1/2, not 1. With one trial allowed the search
    is exhausted, the first search of the run: it stores the step size below its trial, 0.8 (not
    grown either)."""
    tx = _sgd_search(
        slope_rtol=0.25, smoothing=0.0, increase_factor=1.0, initial_learning_rate=1.0,
        growth_margin=0.0, **options,
    )  # fmt: skip
    updates, state = _step(tx, jnp.array([1.0]), _sum_squares)
    info = _info(state)
    assert int(info.search_outcome) == outcome
    # Two trials; or one trial and the exhausted search's check of value_fn against value.
    assert int(info.num_evaluations) == 2
    assert float(info.armijo_margin) == 1.0
    assert float(_get(state, "learning_rate")) == stored
    np.testing.assert_array_equal(updates, jnp.array([update]))


@pytest.mark.parametrize(
    ("value", "at_params", "mismatch"),
    [
        (1.0, 1.0, 0),
        (1.0, 1.0005, 0),  # within the relative tolerance 1e-3
        (100.0, 100.05, 0),  # relative to the larger of the two
        (1.0, 1.002, 1),
        (1.0, -1.0, 1),  # the same size, the other sign
        (0.0, 0.0, 0),  # an exact zero agrees with itself
    ],
)
def test_an_exhausted_search_counts_a_value_fn_that_disagrees_with_value(
    value, at_params, mismatch
):
    """Every trial looks worse than `value`; the one evaluation at params after the exhausted
    search compares value_fn(params) with `value` to a relative 1e-3."""
    w, g = jnp.array([1.0, 2.0]), jnp.array([1.0, -1.0])
    value_fn = lambda p: jnp.where(jnp.all(p == w), at_params, value + 1.0)
    tx = _sgd_search(max_backtracking_steps=2)
    updates, state = _step(tx, w, _sum_squares, value=value, grad=g, updates=g, value_fn=value_fn)
    info = _info(state)
    assert int(info.search_outcome) == EXHAUSTED
    assert int(info.num_evaluations) == 3  # two trials and the check at params
    assert int(info.total_value_mismatches) == mismatch
    np.testing.assert_array_equal(updates, jnp.zeros_like(w))


def test_without_weight_decay_a_frozen_infinite_leaf_is_left_as_it_is():
    """weight_decay=0 adds nothing, not even 0 * w: a -inf leaf the loss reads through exp (a
    mask kept among the parameters, gradient 0) stays -inf in the trial points and the step."""
    target = jnp.array([1.0, -2.0])
    loss = lambda p: jnp.sum((p["w"] - target) ** 2) + jnp.sum(jnp.exp(p["mask"]))
    w = {"w": jnp.array([0.5, 0.25]), "mask": jnp.array([-jnp.inf])}
    tx = salsa_optax.salsa(adaptive_search_frequency=False)
    updates, state = _step(tx, w, loss)
    assert int(_info(state).search_outcome) == ACCEPTED
    np.testing.assert_array_equal(updates["mask"], jnp.zeros(1))
    # The same step as without the mask.
    alone, _ = _step(tx, {"w": w["w"]}, lambda p: jnp.sum((p["w"] - target) ** 2))
    np.testing.assert_array_equal(updates["w"], alone["w"])


_COUNTERS = (
    "count", "steps_since_search", "search_outcome", "num_evaluations", "num_backtracks",
    "total_searches", "total_evaluations", "total_backtracks", "total_exhausted",
    "total_nonfinite_skipped", "total_nondescent_skipped", "total_value_mismatches",
)  # fmt: skip


@pytest.mark.parametrize(
    ("dtypes", "scalar_dtype"),
    [
        ([jnp.float32], jnp.float32),
        ([jnp.float64], jnp.float64),
        ([jnp.bfloat16, jnp.float16], jnp.float32),
        ([], jnp.float32),
    ],
    ids=["float32", "float64", "half", "empty"],
)
def test_the_initial_state_by_value_in_the_parameters_float_dtype(dtypes, scalar_dtype):
    """With float64 enabled, the scalars still take the parameters' float type (at least
    float32), the counters int32; before any step nothing has been searched or counted."""
    params = {str(i): jnp.zeros(2, dtype) for i, dtype in enumerate(dtypes)}
    state = salsa_optax.scale_by_salsa(initial_learning_rate=0.375).init(params)
    floats = {
        "learning_rate": 0.375,
        "avg_decrease": 0.0,
        "avg_slope": 0.0,
        "learning_rate_fast": 1e-8,
        "learning_rate_slow": 1e-8,
        "step_size": 0.0,
        "armijo_margin": np.inf,
    }
    for name, value in floats.items():
        leaf = _get(state, name)
        expected = float(np.asarray(value, scalar_dtype))  # 1e-8 rounded to the dtype
        assert (leaf.shape, leaf.dtype, float(leaf)) == ((), scalar_dtype, expected), name
    for name in _COUNTERS:
        leaf = _get(state, name)
        assert (leaf.shape, leaf.dtype, int(leaf)) == ((), jnp.int32, 0), name
    assert _info(state).searched.dtype == jnp.bool_ and not bool(_info(state).searched)
    assert state.aux is None


def test_every_state_float_of_the_full_optimizer_takes_the_float32_parameters_type():
    """With float64 enabled, salsa()'s state (rescaling, distances and noise included) holds
    float32, int32 and bool arrays only."""
    params = {"a": jnp.ones(2, jnp.float32), "b": jnp.ones((2, 3), jnp.float32)}
    state = salsa_optax.salsa().init(params)
    assert state.step_scale is not None and state.distance.rescale_exponents is not None
    assert state.noise is not None
    types = {leaf.dtype for leaf in jax.tree.leaves(state)}
    assert types == {jnp.dtype(jnp.float32), jnp.dtype(jnp.int32), jnp.dtype(jnp.bool_)}


def test_a_step_keeps_every_state_type_with_float32_parameters_and_float64_enabled():
    w = jnp.array([0.5, -1.0], jnp.float32)
    tx = salsa_optax.salsa(adaptive_search_frequency=False)
    state = tx.init(w)
    _, new_state = _step(tx, w, _sum_squares, state)
    assert int(_info(new_state).search_outcome) == ACCEPTED
    for old, new in zip(jax.tree.leaves(state), jax.tree.leaves(new_state), strict=True):
        assert (new.dtype, new.shape) == (old.dtype, old.shape)


def test_a_run_that_never_searches_keeps_the_initial_rescaling_on_every_skipped_step():
    """With no search the noise gate measures nothing (its linear_sq stays 0), so a skipped step
    keeps the rescaling factor, 1 at the start, rather than measuring it: the step of the
    unrescaled direction, to the bit, while |Pg| / |Pm| has moved away from 1."""
    options = dict(warmup_searches=0, max_search_interval=10**6, initial_learning_rate=0.5)
    rescaled = salsa_optax.salsa(**options)
    plain = salsa_optax.salsa(rescale_momentum=False, **options)
    w = {"fresh": jnp.array([0.5, -1.5]), "moved": jnp.array([2.0, 1.0, -0.5])}
    states = [tx.init(w) for tx in (rescaled, plain)]
    for _ in range(4):
        (updates, states[0]), (plain_updates, states[1]) = (
            _step(tx, w, _far_loss, state)
            for tx, state in zip((rescaled, plain), states, strict=True)
        )
        assert not bool(_info(states[0]).searched)
        for name in w:
            np.testing.assert_array_equal(updates[name], plain_updates[name])
        w = jax.tree.map(jnp.add, w, updates)
    assert float(states[0].noise.linear_sq) == 0 and float(states[0].step_scale) == 1
    mu, nu = states[0].directions.mu, states[0].directions.nu
    grad = jax.grad(_far_loss)(w)
    count = int(states[0].count)
    precondition = {k: 1 / (jnp.sqrt(nu[k] / (1 - 0.999**count)) + 1e-8) for k in w}
    pg = np.sqrt(sum(float(jnp.sum((precondition[k] * grad[k]) ** 2)) for k in w))
    pm = np.sqrt(sum(float(jnp.sum((precondition[k] * mu[k] / (1 - 0.9**count)) ** 2)) for k in w))
    assert abs(pg / pm - 1) > 0.05  # what measuring it would have given


def test_rescale_distance_gives_each_leaf_the_rescaling_as_far_as_it_moved_at_the_last_search():
    """A skipped step along P m scaled by s**min(1, |w - w0| / (delta |w0|)), s = |Pg| / |Pm|,
    w as of the last search; searched steps, which move along -P g, are untouched."""
    delta = 1.5
    w0 = {"fresh": jnp.zeros(2), "moved": jnp.array([0.5, 1.0, -0.5])}
    options = dict(
        step_multiplier=1.0, warmup_searches=2, max_search_interval=4, initial_learning_rate=0.5
    )
    variants = {
        "rescaled": salsa_optax.salsa(rescale_distance=None, **options),
        "short": salsa_optax.salsa(rescale_momentum=False, **options),
        "by_distance": salsa_optax.salsa(rescale_distance=delta, **options),
    }
    states = {name: _settled(tx, w0, 0.5, 0.5) for name, tx in variants.items()}
    w, at_search, exponents, skipped = w0, w0, [], 0
    for _ in range(12):
        updates = {}
        for name, tx in variants.items():
            updates[name], states[name] = _step(tx, w, _far_loss, states[name])
        if bool(_info(states["rescaled"]).searched):
            at_search = w
            for name in variants:
                np.testing.assert_array_equal(updates[name]["moved"], updates["rescaled"]["moved"])
        else:
            skipped += 1
            factor = updates["rescaled"]["fresh"] / updates["short"]["fresh"]
            assert np.ptp(factor) < 1e-12 and abs(factor[0] - 1) > 0.05  # one factor, not 1
            moved = np.linalg.norm(at_search["moved"] - w0["moved"])
            exponent = min(1.0, moved / (delta * np.linalg.norm(w0["moved"])))
            exponents.append(exponent)
            # A leaf that starts at zero is far from its start: the rescaled step, to the bit.
            np.testing.assert_array_equal(
                updates["by_distance"]["fresh"], updates["rescaled"]["fresh"]
            )
            np.testing.assert_allclose(
                updates["by_distance"]["moved"],
                factor[0] ** exponent * updates["short"]["moved"],
                rtol=1e-13,
            )
        w = jax.tree.map(jnp.add, w, updates["rescaled"])
    assert skipped >= 3
    # The moved leaf's exponent passed between its bounds: short, partly and fully rescaled.
    assert any(0 < e < 1 for e in exponents) and max(exponents) == 1
    assert states["rescaled"].distance.rescale_exponents is None
    # The state keeps each leaf's exponent as of the last search, at most 1 (the leaves in
    # jax.tree.leaves order: fresh, moved).
    moved = np.linalg.norm(at_search["moved"] - w0["moved"])
    np.testing.assert_allclose(
        states["by_distance"].distance.rescale_exponents,
        [1.0, min(1.0, moved / (delta * np.linalg.norm(w0["moved"])))],
        rtol=1e-13,
    )
