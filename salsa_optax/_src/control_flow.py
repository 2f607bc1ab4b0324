"""Control flow for a step whose expensive part runs only on some steps."""

from collections.abc import Callable
from typing import TypeVar

import jax
import jax.numpy as jnp

T = TypeVar("T")


def at_most_once(pending: jax.Array, fn: Callable[[], T], default: T) -> T:
    """``fn()`` where ``pending``, else ``default``: ``lax.cond`` as a loop that runs once or not
    at all.

    XLA:CPU runs a conditional's branch asynchronously: the kernels that read its results
    resume on another thread, a hand-off that cost a skipped SaLSa step on a small MLP about
    3 % of an Adam step (``benchmarks/speed``); a loop's body runs in the thread that reached it.
    On a GPU each loop turn reads its predicate as a conditional does, one read more where the
    body runs. ``default`` is computed on every step: it should be cheap. ``fn()`` must have the
    structure, shapes and dtypes of ``default``.

    Examples:
      >>> int(at_most_once(jnp.asarray(True), lambda: jnp.int32(2), jnp.int32(0)))
      2
      >>> int(at_most_once(jnp.asarray(False), lambda: jnp.int32(2), jnp.int32(0)))
      0
    """
    _, result = jax.lax.while_loop(
        lambda carry: carry[0],
        lambda carry: (jnp.zeros_like(carry[0]), fn()),
        (jnp.asarray(pending, bool), default),
    )
    return result
