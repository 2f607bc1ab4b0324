"""Convergence on problems whose answer is known."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from objectives import least_squares, make_train_step, regularised_logistic

import salsa_optax


def _far_multiplied():
    return salsa_optax.salsa(step_multiplier=2.0, multiplier_distance=0.25, multiplier_noise=None)


# Without multiplier_noise the option doubles the step past the search's choice on every leaf
# that moved (here the one leaf, from zero): on a deterministic loss that overshoots the line
# minimum at every step, and the run stalls short of the optimum (README, *Sixth round*); salsa()
# has the same multiplier, kept off by the noise gate. Strict: a fix makes it pass.
FAR_MULTIPLIED_STALLS = pytest.mark.xfail(
    strict=True, reason="salsa(step_multiplier=2) without the noise gate overshoots"
)


@pytest.mark.parametrize(
    "make_tx",
    [salsa_optax.salsa, salsa_optax.salsa_sgd, salsa_optax.sls, salsa_optax.salsa_paper],
    ids=lambda f: f.__name__,
)
def test_least_squares_reaches_the_solution(make_tx):
    objective, w_true = least_squares()
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
    objective = regularised_logistic()
    tx = make_tx()
    step = make_train_step(tx, objective)
    params, state = objective.params, tx.init(objective.params)
    for _ in range(500):
        params, state, _ = step(params, state)
    grad = jax.grad(objective.loss)(params, objective.x, objective.y)
    assert float(jnp.linalg.norm(grad)) < 1e-3
