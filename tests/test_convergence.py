"""Convergence on problems whose answer is known."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from objectives import Objective, make_train_step

import salsa_optax


def _least_squares():
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.standard_normal((64, 6)))
    w_true = jnp.asarray(rng.standard_normal(6))
    loss = lambda w, x, y: 0.5 * jnp.mean((x @ w - y) ** 2)
    return Objective("least_squares", loss, jnp.zeros(6), x, x @ w_true), w_true


def _far_multiplied():
    return salsa_optax.salsa(step_multiplier=2.0, multiplier_distance=0.25)


# The option doubles the step past the search's choice on every leaf that moved (here the one
# leaf, from zero): on a deterministic loss that overshoots the line minimum at every step, and
# the run stalls short of the optimum (README, *Fifth round*). Strict: a fix makes it pass.
FAR_MULTIPLIED_STALLS = pytest.mark.xfail(
    strict=True, reason="salsa(step_multiplier=2) overshoots a deterministic loss"
)


@pytest.mark.parametrize(
    "make_tx",
    [salsa_optax.salsa, salsa_optax.salsa_sgd, salsa_optax.sls, salsa_optax.salsa_paper],
    ids=lambda f: f.__name__,
)
def test_least_squares_reaches_the_solution(make_tx):
    objective, w_true = _least_squares()
    tx = make_tx()
    step = make_train_step(tx, objective)
    params, state = objective.params, tx.init(objective.params)
    for _ in range(1000):
        params, state, _ = step(params, state)
    np.testing.assert_allclose(params, w_true, atol=2e-2)


@pytest.mark.parametrize(
    "make_tx",
    [salsa_optax.salsa, pytest.param(_far_multiplied, marks=FAR_MULTIPLIED_STALLS)],
    ids=lambda f: f.__name__,
)
def test_logistic_regression_matches_the_optimum(make_tx):
    """Regularised logistic regression: the optimum's gradient vanishes."""
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.standard_normal((128, 4)))
    y = (x @ jnp.asarray([1.0, -1.0, 0.5, 0.0]) + 0.3 * rng.standard_normal(128) > 0).astype(float)

    def loss(w, x, y):
        logits = x @ w
        return jnp.mean(jnp.logaddexp(0.0, logits) - y * logits) + 0.05 * jnp.sum(w**2)

    objective = Objective("logistic", loss, jnp.zeros(4), x, y)
    tx = make_tx()
    step = make_train_step(tx, objective)
    params, state = objective.params, tx.init(objective.params)
    for _ in range(500):
        params, state, _ = step(params, state)
    assert float(jnp.linalg.norm(jax.grad(loss)(params, x, y))) < 1e-3
