"""SaLSa's search-frequency schedule: search only as often as the step size still moves."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

FAST_DECAY = 0.9
SLOW_DECAY = 0.99
INITIAL_AVERAGE = 1e-8


class ScheduleConfig(NamedTuple):
    """Hyper-parameters of the schedule (numbers or scalar arrays)."""

    adaptive: Any  # False: search on every step
    warmup_searches: Any  # the first steps always search
    max_search_interval: Any  # L_max


def search_interval(fast: jax.Array, slow: jax.Array, max_interval: Any) -> jax.Array:
    """Steps between searches, ``L = min(L_max, 1 / (r - 1 + 1e-8))``, ``r = max(q, 1/q)``.

    ``q`` is the ratio of a fast to a slow moving average of accepted step sizes: while the step
    size is still moving, ``r`` is far from 1 and the search runs often.

    Examples:
      >>> float(search_interval(1.0, 1.0, 10.0))   # the step size has settled
      10.0
      >>> float(search_interval(2.0, 1.0, 10.0))   # it doubled: search every step
      1.0...
    """
    ratio = fast / slow
    ratio = jnp.where(ratio < 1, 1 / ratio, ratio)
    return jnp.minimum(max_interval, 1 / (ratio - 1 + 1e-8))


def should_search(
    count: jax.Array,
    steps_since_search: jax.Array,
    fast: jax.Array,
    slow: jax.Array,
    config: ScheduleConfig,
) -> jax.Array:
    """Whether this step runs the line search (a traced boolean, for ``lax.switch``)."""
    due = steps_since_search + 1 >= search_interval(fast, slow, config.max_search_interval)
    return jnp.logical_not(config.adaptive) | (count < config.warmup_searches) | due


def update_averages(
    fast: jax.Array, slow: jax.Array, step_size: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Moves both moving averages towards the step size a search accepted."""
    return (
        FAST_DECAY * fast + (1 - FAST_DECAY) * step_size,
        SLOW_DECAY * slow + (1 - SLOW_DECAY) * step_size,
    )
