"""One device against eight (fake CPU devices): the same trajectory with a sharded batch."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, jax.numpy as jnp, numpy as np, optax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    sys.path.insert(0, "tests")
    from objectives import OBJECTIVES
    import salsa_optax

    assert jax.device_count() == 8, jax.devices()
    objective = OBJECTIVES[3]
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((64, 6)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, 64))
    tx = salsa_optax.salsa()

    @jax.jit
    def step(params, state, x, y):
        value, grad = jax.value_and_grad(objective.loss)(params, x, y)
        updates, state = tx.update(grad, state, params, value=value, grad=grad,
                                   value_fn=objective.loss, x=x, y=y)
        return optax.apply_updates(params, updates), state, value

    def train(params, x, y):
        state = tx.init(params)
        values = []
        for _ in range(30):
            params, state, value = step(params, state, x, y)
            values.append(float(value))
        return params, state, values

    one = jax.devices()[0]
    single = train(jax.device_put(objective.params, one), jax.device_put(x, one),
                   jax.device_put(y, one))
    mesh = Mesh(np.array(jax.devices()), ("data",))
    replicated = NamedSharding(mesh, P())
    batch = NamedSharding(mesh, P("data"))
    params = jax.device_put(objective.params, replicated)
    sharded = train(params, jax.device_put(x, batch), jax.device_put(y, batch))
    assert len(sharded[0]["w1"].sharding.device_set) == 8
    print(json.dumps({
        "values": [single[2], sharded[2]],
        "max_param_diff": max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                              for a, b in zip(jax.tree.leaves(single[0]),
                                              jax.tree.leaves(sharded[0]))),
        "learning_rates": [float(single[1].learning_rate), float(sharded[1].learning_rate)],
        "evaluations": [int(single[1].info.num_evaluations),
                        int(sharded[1].info.num_evaluations)],
    }))
    """
)


def test_eight_devices_match_one():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
         "JAX_PLATFORMS": "cpu"}  # fmt: skip
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
      [sys.executable, "-c", SCRIPT], env=env, cwd=root, capture_output=True, text=True,
      timeout=300,
  )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    single, sharded = out["values"]
    np.testing.assert_allclose(single, sharded, rtol=1e-5)
    assert single[-1] < 0.5 * single[0]
    assert out["max_param_diff"] < 1e-4
    np.testing.assert_allclose(*out["learning_rates"], rtol=1e-5)
