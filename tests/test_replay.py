"""Replays the reference trajectories of tests/data/vectors in float64."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import salsa_optax

REPOSITORY = pathlib.Path(__file__).resolve().parents[1]
VECTORS = REPOSITORY / "tests" / "data" / "vectors"
FILES = ("least_squares.npz", "mlp_digits.npz")


def _least_squares_loss(params, x, y):
    return 0.5 * jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def _mlp_loss(params, x, y):
    logits = jnp.tanh(x @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"]
    picked = jnp.take_along_axis(logits, y[:, None], axis=1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(logits, axis=1) - picked)


LOSSES = {"least_squares": _least_squares_loss, "mlp_digits": _mlp_loss}


def _optimizer(hp):
    return salsa_optax.salsa_published(
        slope_rtol=hp["c"],
        smoothing=hp["beta3"],
        b1=hp["beta1"],
        b2=hp["beta2"],
        eps=hp["eps"],
        weight_decay=hp["weight_decay"],
        search_with_momentum=hp["use_mv"],
        adaptive_search_frequency=hp["speed_up"],
        decrease_factor=hp["decrease_factor"],
        increase_factor=hp["growth_factor"],
        max_backtracking_steps=hp["max_backtracks"],
        initial_learning_rate=hp["init_step_size"],
    )


def _replay(path):
    """Runs the reference problem; returns the recorded arrays and ours, per step."""
    data = np.load(path)
    hp = json.loads(str(data["hyperparams"]))
    names = hp["param_order"]
    loss_fn = LOSSES[hp["name"]]
    tx = _optimizer(hp)
    x_all, y_all = jnp.asarray(data["X"]), jnp.asarray(data["y"])

    traces = []

    @jax.jit
    def step(params, state, rows):
        traces.append(rows.shape)  # runs once per trace, not per call
        x, y = x_all[rows], y_all[rows]
        value, grad = jax.value_and_grad(loss_fn)(params, x, y)
        updates, state = tx.update(
            grad, state, params, value=value, grad=grad, value_fn=loss_fn, x=x, y=y
        )
        return optax.apply_updates(params, updates), state, value

    params = {k: jnp.asarray(data[f"init_{k}"]) for k in names}
    state = tx.init(params)
    ours = {
        key: []
        for key in (
            "loss",
            "searched",
            "step_size_used",
            "step_size_stored",
            "n_forwards",
            "n_backtracks",
            "search_outcome",
            "state_avg_decrease",
            "state_avg_slope",
            "state_step_size_fast",
            "state_step_size_slow",
            "state_steps_since_search",
        )
    }
    snapshots = {}
    for k, rows in enumerate(data["batch_idx"], start=1):
        params, state, value = step(params, state, jnp.asarray(rows))
        info = state.info
        row = {
            "loss": value,
            "searched": info.searched,
            "step_size_used": info.step_size,
            "step_size_stored": state.learning_rate,
            "n_forwards": 1 + info.num_evaluations,
            "n_backtracks": info.num_backtracks,
            "search_outcome": info.search_outcome,
            "state_avg_decrease": state.avg_decrease,
            "state_avg_slope": state.avg_slope,
            "state_step_size_fast": state.learning_rate_fast,
            "state_step_size_slow": state.learning_rate_slow,
            "state_steps_since_search": state.steps_since_search,
        }
        for key, val in row.items():
            ours[key].append(np.asarray(val))
        if k in hp["snapshot_steps"]:
            snapshots[k] = {p: np.asarray(params[p]) for p in names}
    final_loss = loss_fn(params, x_all, y_all)
    return data, hp, {k: np.stack(v) for k, v in ours.items()}, snapshots, final_loss, len(traces)


@pytest.fixture(scope="module", params=FILES)
def replay(request):
    with jax.enable_x64(True):
        return _replay(VECTORS / request.param)


def test_vectors_ship_with_the_repository():
    """The reference files are part of the checkout: the replay needs nothing beside it."""
    assert VECTORS.resolve().is_relative_to(REPOSITORY)
    assert sorted(p.name for p in VECTORS.glob("*.npz")) == sorted(FILES)
    assert (VECTORS / "README.md").is_file()


def test_replay_decisions_exact(replay):
    data, _, ours, _, _, _ = replay
    for key in (
        "searched",
        "n_backtracks",
        "n_forwards",
        "search_outcome",
        "state_steps_since_search",
    ):
        np.testing.assert_array_equal(ours[key], data[key], err_msg=key)


def test_replay_values_to_1e9(replay):
    data, _, ours, _, _, _ = replay
    assert ours["loss"].dtype == np.float64
    for key in (
        "loss",
        "step_size_used",
        "step_size_stored",
        "state_avg_decrease",
        "state_avg_slope",
        "state_step_size_fast",
        "state_step_size_slow",
    ):
        np.testing.assert_allclose(ours[key], data[key], rtol=1e-9, atol=0, err_msg=key)


def test_replay_parameters_to_1e9(replay):
    data, hp, _, snapshots, final_loss, _ = replay
    assert sorted(snapshots) == sorted(hp["snapshot_steps"])
    for k, params in snapshots.items():
        for name, value in params.items():
            np.testing.assert_allclose(
                value,
                data[f"params_after_{k}_{name}"],
                rtol=1e-9,
                atol=1e-9,
                err_msg=f"{name} after step {k}",
            )
    np.testing.assert_allclose(final_loss, data["final_loss_full"], rtol=1e-9)


def test_replay_compiles_once(replay):
    # Counted as traces of the step. The step's C++ cache size (`_cache_size()`) read 0 after
    # some sequences of other test files in the same process, with the step traced once.
    *_, traces = replay
    assert traces == 1
