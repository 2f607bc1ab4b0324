"""The smoothed Armijo test of SaLSa and the backtracking search built on it."""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

# Values of `SalsaInfo.search_outcome`.
SKIPPED = 0  # the search-frequency schedule skipped the search
ACCEPTED = 1  # a trial passed the smoothed Armijo test
ZERO_DECREASE = 2  # a trial's loss equalled the current loss exactly (accepted, averages kept)
EXHAUSTED = 3  # every trial was rejected: no step along the direction
BYPASSED = 4  # loss or smoothed slope below 1e-8: the proposal is taken untested

BYPASS_THRESHOLD = 1e-8


class ArmijoConfig(NamedTuple):
    """Hyper-parameters of the smoothed Armijo search (numbers or scalar arrays)."""

    slope_rtol: Any  # c
    smoothing: Any  # beta3
    decrease_factor: Any
    max_backtracking_steps: Any


class SearchResult(NamedTuple):
    """Outcome of one backtracking search.

    Attributes:
      step_size: the accepted step size; for an exhausted search, the last one proposed.
      step_taken: the step size that multiplies the direction in the update (0 when exhausted).
      avg_decrease: the running average of the loss decrease after the search.
      num_evaluations: loss evaluations made by the search.
      outcome: one of ``ACCEPTED``, ``ZERO_DECREASE``, ``EXHAUSTED``, ``BYPASSED``.
      min_margin: smallest ``|lhs - rhs| / |rhs|`` over the tests made (``inf`` when none).
    """

    step_size: jax.Array
    step_taken: jax.Array
    avg_decrease: jax.Array
    num_evaluations: jax.Array
    outcome: jax.Array
    min_margin: jax.Array


class _Carry(NamedTuple):
    step_size: jax.Array
    avg_decrease: jax.Array
    num_evaluations: jax.Array
    outcome: jax.Array  # 0 while searching
    min_margin: jax.Array


def smoothed_armijo_test(
    decrease: jax.Array,
    avg_decrease: jax.Array,
    avg_slope: jax.Array,
    step_size: jax.Array,
    config: ArmijoConfig,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""The SaLSa acceptance test of one trial step size.

    .. math::
      \beta_3 \bar D + (1-\beta_3)\,\delta(\eta) \ \ge\ c\,\eta\,\bar S

    with :math:`\delta(\eta) = f(w) - f(w + \eta d)`. A non-finite decrease fails the test.

    Args:
      decrease: :math:`\delta(\eta)`.
      avg_decrease: :math:`\bar D` before the trial.
      avg_slope: :math:`\bar S`, already updated with this step's slope.
      step_size: the trial :math:`\eta`.
      config: the search hyper-parameters.

    Returns:
      ``(passed, smoothed_decrease, relative_margin)``: whether the test passed, the left-hand side
      (the new :math:`\bar D` on acceptance), and ``|lhs - rhs| / |rhs|``.

    Examples:
      >>> from salsa_optax._src.armijo import ArmijoConfig, smoothed_armijo_test
      >>> config = ArmijoConfig(slope_rtol=0.5, smoothing=0.9, decrease_factor=0.8,
      ...                       max_backtracking_steps=100)
      >>> passed, lhs, _ = smoothed_armijo_test(1.0, 0.0, 1.0, 0.1, config)
      >>> bool(passed), float(lhs)   # 0.1 * 1.0 >= 0.5 * 0.1 * 1.0
      (True, 0.1...)
    """
    lhs = config.smoothing * avg_decrease + (1 - config.smoothing) * decrease
    rhs = config.slope_rtol * step_size * avg_slope
    passed = jnp.isfinite(decrease) & (lhs >= rhs)
    margin = jnp.where(jnp.isfinite(decrease), jnp.abs(lhs - rhs) / jnp.abs(rhs), jnp.inf)
    return passed, lhs, margin


def backtracking_search(
    loss_at: Callable[[jax.Array], jax.Array],
    value: jax.Array,
    avg_decrease: jax.Array,
    avg_slope: jax.Array,
    initial_step_size: jax.Array,
    config: ArmijoConfig,
) -> SearchResult:
    """Shrinks the step size until the smoothed Armijo test passes, in ``lax.while_loop``.

    Args:
      loss_at: maps a step size ``eta`` to the loss at the trial point ``w + eta * d``.
      value: the loss at the current point, ``f(w)``.
      avg_decrease: :math:`\\bar D` before the search.
      avg_slope: :math:`\\bar S`, already updated with this step's slope.
      initial_step_size: the first trial.
      config: the search hyper-parameters.

    Returns:
      A :class:`SearchResult`. The search is bypassed (no evaluation) when ``value`` or
      ``avg_slope`` is below 1e-8, as in the reference implementation.
    """
    bypass = (value < BYPASS_THRESHOLD) | (avg_slope < BYPASS_THRESHOLD)
    int_dtype = jnp.int32

    def searching(carry: _Carry) -> jax.Array:
        return (carry.outcome == 0) & (carry.num_evaluations < config.max_backtracking_steps)

    def trial(carry: _Carry) -> _Carry:
        decrease = value - loss_at(carry.step_size).astype(value.dtype)
        # An exactly zero decrease is floating-point cancellation, not evidence: accept the step
        # but keep the average.
        zero = decrease == 0
        passed, smoothed, margin = smoothed_armijo_test(
            decrease, carry.avg_decrease, avg_slope, carry.step_size, config
        )
        outcome = jnp.where(zero, ZERO_DECREASE, jnp.where(passed, ACCEPTED, 0))
        new_carry = _Carry(
            step_size=jnp.where(
                outcome > 0, carry.step_size, carry.step_size * config.decrease_factor
            ),
            avg_decrease=jnp.where(outcome == ACCEPTED, smoothed, carry.avg_decrease),
            num_evaluations=carry.num_evaluations + 1,
            outcome=outcome.astype(int_dtype),
            min_margin=jnp.minimum(carry.min_margin, margin),
        )
        # Hyper-parameters given as arrays may promote; the loop carry must keep its dtypes.
        return optax.tree.cast_like(new_carry, carry)

    start = _Carry(
        step_size=initial_step_size,
        avg_decrease=avg_decrease,
        num_evaluations=jnp.zeros((), int_dtype),
        outcome=jnp.where(bypass, BYPASSED, 0).astype(int_dtype),
        min_margin=jnp.full((), jnp.inf, value.dtype),
    )
    end = jax.lax.while_loop(searching, trial, start)
    outcome = jnp.where(end.outcome == 0, EXHAUSTED, end.outcome).astype(int_dtype)
    return SearchResult(
        step_size=end.step_size,
        step_taken=jnp.where(outcome == EXHAUSTED, jnp.zeros_like(end.step_size), end.step_size),
        avg_decrease=end.avg_decrease,
        num_evaluations=end.num_evaluations,
        outcome=outcome,
        min_margin=end.min_margin,
    )
