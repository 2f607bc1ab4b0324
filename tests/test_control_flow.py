"""``at_most_once``: ``lax.cond`` as a loop that runs its body once or not at all."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from salsa_optax._src.control_flow import at_most_once


@pytest.mark.parametrize("pending", [True, np.bool_(True), np.int32(3), jnp.asarray(1.0)])
def test_any_true_scalar_runs_the_body_once(pending):
    result = jax.jit(lambda x: at_most_once(pending, lambda: x + 1, x))(jnp.int32(5))
    assert int(result) == 6


@pytest.mark.parametrize("pending", [False, np.int32(0), jnp.asarray(0.0)])
def test_any_false_scalar_returns_the_default(pending):
    result = jax.jit(lambda x: at_most_once(pending, lambda: x + 1, x))(jnp.int32(5))
    assert int(result) == 5


def test_a_traced_predicate_selects_per_call_with_one_compilation():
    run = jax.jit(lambda pending, x: at_most_once(pending, lambda: 2 * x, x))
    assert [float(run(p, jnp.float32(3.0))) for p in (True, False, True)] == [6.0, 3.0, 6.0]
    assert run._cache_size() == 1
