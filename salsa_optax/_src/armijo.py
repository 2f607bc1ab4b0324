"""The smoothed Armijo test of SaLSa and the backtracking search built on it."""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

# Values of `SalsaInfo.search_outcome`.
SKIPPED = 0  # the search-frequency schedule skipped the search; the stored step size was taken
ACCEPTED = 1  # a trial passed the smoothed Armijo test
ZERO_DECREASE = 2  # an exactly equal loss where the test asks less than round-off: accepted
# Every trial was rejected: no step; the next step searches (the transform says what it stores).
EXHAUSTED = 3
BYPASSED = 4  # reference_bypass only: loss or smoothed slope below 1e-8, stored step untested
NON_DESCENT = 5  # the search direction's slope was not positive: no step, the state kept
NON_FINITE = 6  # value, grad or updates were not finite: no step, the state kept

BYPASS_THRESHOLD = 1e-8


class ArmijoConfig(NamedTuple):
    """Hyper-parameters of the smoothed Armijo search (numbers or scalar arrays).

    ``reference_bypass`` is static: with it, the search is bypassed as in the authors' optimizer
    when the loss or the smoothed slope is below 1e-8.
    """

    slope_rtol: Any  # c
    smoothing: Any  # beta3
    decrease_factor: Any
    max_backtracking_steps: Any
    reference_bypass: bool = False


class SearchResult(NamedTuple):
    r"""Outcome of one backtracking search.

    Attributes:
      step_size: the step size to store: the accepted one; for an exhausted, bypassed or
        non-descent search, the stored step size of the previous step.
      step_taken: the step size that multiplies the direction in the update (0 when exhausted or
        non-descent).
      avg_decrease: the running average of the loss decrease after the search.
      decrease: the loss decrease :math:`f(w) - f(w + \eta d)` at the accepted trial (0 when no
        trial was accepted).
      num_evaluations: loss evaluations made by the search.
      outcome: one of ``ACCEPTED``, ``ZERO_DECREASE``, ``EXHAUSTED``, ``BYPASSED``,
        ``NON_DESCENT``.
      min_margin: smallest ``|lhs - rhs| / |rhs|`` over the tests made (``inf`` when none).
      end_step_size: the step size the search ended at: the accepted one; when every trial was
        rejected, the one below the last trial (the next it would have tried); the first trial
        when none was made.
      aux: the auxiliary output of the accepted trial (``aux`` given to the search otherwise).
    """

    step_size: jax.Array
    step_taken: jax.Array
    avg_decrease: jax.Array
    decrease: jax.Array
    num_evaluations: jax.Array
    outcome: jax.Array
    min_margin: jax.Array
    end_step_size: jax.Array
    aux: Any


class _Carry(NamedTuple):
    step_size: jax.Array
    avg_decrease: jax.Array
    decrease: jax.Array
    num_evaluations: jax.Array
    outcome: jax.Array  # 0 while searching
    min_margin: jax.Array
    aux: Any


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


def bypassed(value: jax.Array, avg_slope: jax.Array, config: ArmijoConfig) -> jax.Array:
    """Whether the reference's shortcut skips the search (only with ``reference_bypass``).

    Examples:
      >>> from salsa_optax._src.armijo import ArmijoConfig, bypassed
      >>> config = ArmijoConfig(0.5, 0.9, 0.8, 100, reference_bypass=True)
      >>> bool(bypassed(-3.0, 1.0, config)), bool(bypassed(-3.0, 1.0, config._replace(
      ...     reference_bypass=False)))
      (True, False)
    """
    if not config.reference_bypass:
        return jnp.asarray(False)
    return (value < BYPASS_THRESHOLD) | (avg_slope < BYPASS_THRESHOLD)


def backtracking_search(
    loss_at: Callable[[jax.Array], tuple[jax.Array, Any]],
    value: jax.Array,
    avg_decrease: jax.Array,
    avg_slope: jax.Array,
    stored_step_size: jax.Array,
    initial_step_size: jax.Array,
    config: ArmijoConfig,
    descent: jax.Array = True,
    aux: Any = None,
) -> SearchResult:
    """Shrinks the step size until the smoothed Armijo test passes, in ``lax.while_loop``.

    Args:
      loss_at: maps a step size ``eta`` to ``(loss, aux)`` at the trial point ``w + eta * d``.
      value: the loss at the current point, ``f(w)``.
      avg_decrease: :math:`\\bar D` before the search.
      avg_slope: :math:`\\bar S`, already updated with this step's slope.
      stored_step_size: the step size stored before this step: kept when every trial is rejected,
        and taken untested when the search is bypassed.
      initial_step_size: the first trial.
      config: the search hyper-parameters.
      descent: whether the direction's slope is positive; if not, nothing is evaluated and the
        outcome is ``NON_DESCENT``.
      aux: the auxiliary output returned when no trial is accepted (same structure as the trials').

    Returns:
      A :class:`SearchResult`.
    """
    bypass = bypassed(value, avg_slope, config)
    int_dtype = jnp.int32

    def searching(carry: _Carry) -> jax.Array:
        return (carry.outcome == 0) & (carry.num_evaluations < config.max_backtracking_steps)

    def trial(carry: _Carry) -> _Carry:
        loss, trial_aux = loss_at(carry.step_size)
        decrease = value - loss.astype(value.dtype)
        # An exactly zero decrease where the test asks for less than the loss's round-off is
        # floating-point cancellation, not evidence: accept the step but keep the average. A
        # larger step that lands on an equal loss (the mirror point of a parabola) is tested.
        round_off = jnp.finfo(value.dtype).eps * jnp.abs(value)
        asked = config.slope_rtol * carry.step_size * avg_slope
        zero = (decrease == 0) & (asked <= round_off)
        passed, smoothed, margin = smoothed_armijo_test(
            decrease, carry.avg_decrease, avg_slope, carry.step_size, config
        )
        outcome = jnp.where(zero, ZERO_DECREASE, jnp.where(passed, ACCEPTED, 0))
        new_carry = _Carry(
            step_size=jnp.where(
                outcome > 0, carry.step_size, carry.step_size * config.decrease_factor
            ),
            avg_decrease=jnp.where(outcome == ACCEPTED, smoothed, carry.avg_decrease),
            decrease=jnp.where(outcome > 0, decrease, carry.decrease),
            num_evaluations=carry.num_evaluations + 1,
            outcome=outcome.astype(int_dtype),
            min_margin=jnp.minimum(carry.min_margin, margin),
            aux=jax.tree.map(
                lambda new, old: jnp.where(outcome > 0, new, old), trial_aux, carry.aux
            ),
        )
        # Hyper-parameters given as arrays may promote; the loop carry must keep its dtypes.
        return optax.tree.cast_like(new_carry, carry)

    start = _Carry(
        step_size=initial_step_size,
        avg_decrease=avg_decrease,
        decrease=jnp.zeros_like(value),
        num_evaluations=jnp.zeros((), int_dtype),
        outcome=jnp.where(descent, jnp.where(bypass, BYPASSED, 0), NON_DESCENT).astype(int_dtype),
        min_margin=jnp.full((), jnp.inf, value.dtype),
        aux=aux,
    )
    end = jax.lax.while_loop(searching, trial, start)
    outcome = jnp.where(end.outcome == 0, EXHAUSTED, end.outcome).astype(int_dtype)
    no_step = (outcome == EXHAUSTED) | (outcome == NON_DESCENT)
    kept = no_step | (outcome == BYPASSED)
    step_size = jnp.where(kept, stored_step_size, end.step_size).astype(end.step_size.dtype)
    return SearchResult(
        step_size=step_size,
        step_taken=jnp.where(no_step, jnp.zeros_like(step_size), step_size),
        avg_decrease=end.avg_decrease,
        decrease=end.decrease,
        num_evaluations=end.num_evaluations,
        outcome=outcome,
        min_margin=end.min_margin,
        end_step_size=end.step_size,
        aux=end.aux,
    )
