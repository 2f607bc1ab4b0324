"""A table of deterministic objectives with a batch argument, shared by the core tests."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Objective(NamedTuple):
    name: str
    loss: Any  # loss(params, x, y) -> scalar
    params: Any
    x: jax.Array
    y: jax.Array


def _quadratic():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((8, 8))
    hessian = jnp.asarray(a @ a.T / 8 + np.eye(8))
    loss = lambda p, x, y: 0.5 * (p - x) @ hessian @ (p - x) + 0.0 * jnp.sum(y)
    return Objective("quadratic", loss, jnp.zeros(8), jnp.ones(8), jnp.zeros(1))


def _rosenbrock():
    loss = lambda p, x, y: jnp.sum(x[0] * (p["b"] - p["a"] ** 2) ** 2 + (y[0] - p["a"]) ** 2)
    params = {"a": jnp.array([-1.2, 0.5]), "b": jnp.array([1.0, -0.3])}
    return Objective("rosenbrock", loss, params, jnp.array([100.0]), jnp.array([1.0]))


def _logistic():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((64, 5)))
    y = (x @ jnp.asarray(rng.standard_normal(5)) > 0).astype(jnp.float32)

    def loss(p, x, y):
        logits = x @ p["w"] + p["b"]
        return jnp.mean(jnp.logaddexp(0.0, logits) - y * logits)

    return Objective("logistic", loss, {"w": jnp.zeros(5), "b": jnp.zeros(())}, x, y)


def _mlp():
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((32, 6)))
    y = jnp.asarray(rng.integers(0, 3, 32))
    params = {
        "w1": jnp.asarray(rng.standard_normal((6, 16)) / np.sqrt(6)),
        "b1": jnp.zeros(16),
        "w2": jnp.asarray(rng.standard_normal((16, 3)) / 4),
        "b2": jnp.zeros(3),
    }

    def loss(p, x, y):
        logits = jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
        picked = jnp.take_along_axis(logits, y[:, None], axis=1)[:, 0]
        return jnp.mean(jax.nn.logsumexp(logits, axis=1) - picked)

    return Objective("mlp", loss, params, x, y)


OBJECTIVES = [_quadratic(), _rosenbrock(), _logistic(), _mlp()]


def least_squares() -> tuple[Objective, jax.Array]:
    """Consistent least squares from zero, and its solution (where the loss is 0)."""
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.standard_normal((64, 6)))
    w_true = jnp.asarray(rng.standard_normal(6))
    loss = lambda w, x, y: 0.5 * jnp.mean((x @ w - y) ** 2)
    return Objective("least_squares", loss, jnp.zeros(6), x, x @ w_true), w_true


def regularised_logistic() -> Objective:
    """L2-regularised logistic regression on noisy labels, from zero: a unique optimum."""
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.standard_normal((128, 4)))
    y = (x @ jnp.asarray([1.0, -1.0, 0.5, 0.0]) + 0.3 * rng.standard_normal(128) > 0).astype(float)

    def loss(w, x, y):
        logits = x @ w
        return jnp.mean(jnp.logaddexp(0.0, logits) - y * logits) + 0.05 * jnp.sum(w**2)

    return Objective("regularised_logistic", loss, jnp.zeros(4), x, y)


def make_train_step(tx, objective, jit=True):
    """A train step ``(params, state) -> (params, state, value)`` on the objective's batch."""

    def step(params, state):
        value, grad = jax.value_and_grad(objective.loss)(params, objective.x, objective.y)
        updates, state = tx.update(
        grad, state, params, value=value, grad=grad, value_fn=objective.loss,
        x=objective.x, y=objective.y,
    )  # fmt: skip
        return jax.tree.map(lambda p, u: p + u, params, updates), state, value

    return jax.jit(step) if jit else step


def make_minibatch_step(tx, loss):
    """A jitted train step ``(params, state, x, y) -> (params, state)`` of ``loss(params, x, y)``
    on the batch it is given, with ``loss`` as the ``value_fn``."""

    @jax.jit
    def step(params, state, x, y):
        value, grad = jax.value_and_grad(loss)(params, x, y)
        updates, state = tx.update(
            grad, state, params, value=value, grad=grad, value_fn=loss, x=x, y=y
        )
        return jax.tree.map(lambda p, u: p + u, params, updates), state

    return step
