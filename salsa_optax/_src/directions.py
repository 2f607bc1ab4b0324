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
    """Functions giving the search and step directions.

    Attributes:
      init: ``params -> state`` of the direction's own statistics.
      accumulate: ``(updates, state, count) -> new_state``, the statistics with this step's
        updates, where ``count`` is the number of steps taken before this one.
      along: ``(updates, new_state, count) -> (search_direction, step_direction)`` from the
        accumulated statistics. Apart from :meth:`update`, so that a transform can form its step
        from the state it returns: the state is then read once, as in an Adam step.
      combine: ``(updates, new_state, count, a, b) -> a * search + b * step``, the update
        from the accumulated statistics, where ``a`` and ``b`` are trees of scalars, one per
        leaf: a searched step (``b = 0``), a skipped one (``a = 0``) or no step (both 0), in as
        few operations per entry as the directions allow.
      step_scale: ``None``, or ``(search_direction, step_direction) -> factor``: the scalar a
        step along the step direction is multiplied by (a scalar the transform's branches read,
        where a rescaled direction would be a parameter-sized one).
    """

    init: Callable[[optax.Params], Any]
    accumulate: Callable[[optax.Updates, Any, jax.Array], Any]
    along: Callable[[optax.Updates, Any, jax.Array], tuple[optax.Updates, optax.Updates]]
    combine: Callable[[optax.Updates, Any, jax.Array, Any, Any], optax.Updates]
    step_scale: Callable[[optax.Updates, optax.Updates], jax.Array] | None = None

    def update(
        self, updates: optax.Updates, state: Any, count: jax.Array
    ) -> tuple[optax.Updates, optax.Updates, Any]:
        """``(search_direction, step_direction, new_state)`` of one step."""
        new_state = self.accumulate(updates, state, count)
        return (*self.along(updates, new_state, count), new_state)


def _stateless(along: Callable[[optax.Updates], optax.Updates]) -> Directions:
    """Both directions ``along(updates)``, with optax's empty state.

    Examples:
      >>> import jax.numpy as jnp
      >>> directions = gradient_direction()
      >>> directions.combine(jnp.array([1.0, -2.0]), None, 0, 0.5, 0.25)
      Array([-0.75,  1.5 ], dtype=float32)
    """
    return Directions(
        init=lambda params: optax.EmptyState(),
        accumulate=lambda updates, state, count: state,
        along=lambda updates, state, count: (along(updates),) * 2,
        combine=lambda updates, state, count, a, b: jax.tree.map(
            lambda d, a, b: (a + b) * d, along(updates), a, b
        ),
    )


def incoming_direction() -> Directions:
    """Searches and steps along the incoming updates, a descent direction in update form."""

    return _stateless(lambda updates: updates)


def gradient_direction() -> Directions:
    """Searches and steps along the negated incoming gradients: plain gradient descent."""

    return _stateless(lambda grads: optax.tree.scale(-1, grads))


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
    ``rescale_momentum`` :math:`= \rho` a step along :math:`-P \hat m` is scaled by
    :math:`(\|P g\| / \|P \hat m\|)^\rho` (:attr:`Directions.step_scale`): it keeps the
    momentum's orientation and, at :math:`\rho = 1` (``True``), takes the search direction's
    length, so a step the schedule skips moves as far as a searched one; :math:`\rho = 0`
    (``False``) is the published step.

    Examples:
      >>> import jax.numpy as jnp
      >>> directions = adam_directions(0.0, 0.0, 1e-8, False, rescale_momentum=True)
      >>> grads = jnp.array([3.0, -4.0])
      >>> search, step, _ = directions.update(grads, directions.init(grads), jnp.asarray(0))
      >>> float(directions.step_scale(search, 0.5 * step))
      2.0
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

    def accumulate(grads, state, count):
        del count
        return AdamDirectionsState(
            mu=optax.tree.update_moment(grads, state.mu, b1, 1),
            nu=optax.tree.update_moment_per_elem_norm(grads, state.nu, b2, 2),
        )

    def numerators(grads, state, count):
        # (search, step) directions are -numerator / denominator, the denominator P^-1 shared.
        # The bias corrections are scalars multiplying each entry, sqrt(v / c) = sqrt(v) / sqrt(c):
        # a division per entry is several times a multiplication's work, and a skipped step
        # would take three instead of the one by the denominator.
        # Each is optax's own, 1 / (1 - decay^t), of which the second's square root.
        t = count + 1
        first = optax.tree.bias_correction(jnp.asarray(1.0), b1, t)
        second = jnp.sqrt(optax.tree.bias_correction(jnp.asarray(1.0), b2, t))
        mu_hat = jax.tree.map(lambda m: m * first.astype(m.dtype), state.mu)
        denominator = jax.tree.map(lambda v: jnp.sqrt(v) * second.astype(v.dtype) + eps, state.nu)
        return (mu_hat if search_with_momentum else grads), mu_hat, denominator

    def along(grads, state, count):
        search, step, denominator = numerators(grads, state, count)
        return tuple(
            jax.tree.map(lambda n, d: -n / d, numerator, denominator)
            for numerator in (search, step)
        )

    def combine(grads, state, count, a, b):
        # One division per entry, where a * (-g / d) + b * (-m / d) takes two.
        search, step, denominator = numerators(grads, state, count)
        return jax.tree.map(
            lambda g, m, d, a, b: -(a * g + b * m) / d, search, step, denominator, a, b
        )

    def step_scale(search, step):
        ratio = optax.tree.norm(search) / optax.tree.norm(step)
        # rescale_momentum may be an array under optax.inject_hyperparams.
        factor = ratio ** jnp.asarray(rescale_momentum, ratio.dtype)
        # Where both norms underflow (0 / 0), the plain step.
        return jnp.where(jnp.isfinite(factor), factor, 1.0)

    # Searching along the momentum, both directions are one and the factor is 1.
    rescales = rescale_momentum is not False and not search_with_momentum
    return Directions(init, accumulate, along, combine, step_scale if rescales else None)
