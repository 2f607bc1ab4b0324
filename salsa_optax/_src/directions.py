"""Directions a SaLSa transform searches and steps along, computed from its incoming updates.

A SaLSa step needs two directions in update form (descent directions, added to the parameters):
the one the line search tests, and the one a step without a search moves along. The chainable
transform takes its incoming updates as both (optax's line-search convention: they are what a
full optimizer such as ``optax.sgd(1.0)`` outputs); the full optimizer keeps Adam moments and
searches along the momentum-free preconditioned gradient, as the reference does.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from salsa_optax._src.validation import check_hyperparameter


class Directions(NamedTuple):
    """A pair of functions giving the search and step directions.

    Attributes:
      init: ``params -> state`` of the direction's own statistics.
      update: ``(updates, state, count) -> (search_direction, step_direction, new_state)``, where
        ``count`` is the number of steps taken before this one.
    """

    init: Callable[[optax.Params], Any]
    update: Callable[[optax.Updates, Any, jax.Array], tuple[optax.Updates, optax.Updates, Any]]


def incoming_direction() -> Directions:
    """Searches and steps along the incoming updates, a descent direction in update form."""

    def update(updates, state, count):
        del count
        return updates, updates, state

    return Directions(init=lambda params: optax.EmptyState(), update=update)


def gradient_direction() -> Directions:
    """Searches and steps along the negated incoming gradients: plain gradient descent."""

    def update(grads, state, count):
        del count
        direction = optax.tree.scale(-1, grads)
        return direction, direction, state

    return Directions(init=lambda params: optax.EmptyState(), update=update)


class AdamDirectionsState(NamedTuple):
    """Adam moments of the full SaLSa optimizer.

    Attributes:
      mu: first moment of the gradients (params-shaped).
      nu: second moment of the gradients (params-shaped).
    """

    mu: optax.Updates
    nu: optax.Updates


def adam_directions(
    b1: Any, b2: Any, eps: Any, search_with_momentum: bool, rescale_momentum: Any = False
) -> Directions:
    r"""Adam's preconditioned directions, :math:`P = 1 / (\sqrt{\hat v} + \epsilon)`.

    The step direction is :math:`-P \hat m`. The search direction is :math:`-P g` (the reference's
    default), or :math:`-P \hat m` with ``search_with_momentum``. Moments are updated and
    bias-corrected (standard form, ``t`` = steps including this one) on every step. With
    ``rescale_momentum`` :math:`= \rho` the step direction is
    :math:`-P \hat m \, (\|P g\| / \|P \hat m\|)^\rho`: it keeps the momentum's orientation and,
    at :math:`\rho = 1` (``True``), takes the search direction's length, so a step the schedule
    skips moves as far as a searched one; :math:`\rho = 0` (``False``) is the published step.
    """

    check_hyperparameter("b1", b1, lambda v: 0 <= v < 1, "0 <= b1 < 1")
    check_hyperparameter("b2", b2, lambda v: 0 <= v < 1, "0 <= b2 < 1")
    check_hyperparameter("eps", eps, lambda v: v > 0, "eps > 0")
    check_hyperparameter(
        "rescale_momentum",
        rescale_momentum,
        lambda v: 0 <= v <= 1,
        "0 <= rescale_momentum <= 1 (False = 0, True = 1)",
    )

    def init(params):
        return AdamDirectionsState(
            mu=optax.tree.zeros_like(params), nu=optax.tree.zeros_like(params)
        )

    def update(grads, state, count):
        mu = optax.tree.update_moment(grads, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(grads, state.nu, b2, 2)
        t = count + 1
        mu_hat = optax.tree.bias_correction(mu, b1, t)
        nu_hat = optax.tree.bias_correction(nu, b2, t)
        denominator = jax.tree.map(lambda v: jnp.sqrt(v) + eps, nu_hat)
        step = jax.tree.map(lambda m, d: -m / d, mu_hat, denominator)
        search = (
            step if search_with_momentum else jax.tree.map(lambda g, d: -g / d, grads, denominator)
        )
        # Searching along the momentum, both directions are one and the factor is 1.
        if rescale_momentum is not False and not search_with_momentum:
            # rescale_momentum may be an array under optax.inject_hyperparams.
            ratio = optax.tree.norm(search) / optax.tree.norm(step)
            factor = ratio ** jnp.asarray(rescale_momentum, ratio.dtype)
            step = optax.tree.scale(jnp.where(jnp.isfinite(factor), factor, 1.0), step)
        return search, step, AdamDirectionsState(mu=mu, nu=nu)

    return Directions(init=init, update=update)
