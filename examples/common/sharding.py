"""Data parallelism over all local devices with ``jax.sharding``.

The batch is split along its first axis over a one-axis mesh named ``"data"``; parameters,
optimizer state and metrics are replicated. ``jax.jit`` with these shardings inserts the gradient
all-reduce itself, so a step on eight devices computes what it computes on one.

>>> mesh = create_mesh()
>>> step = data_parallel_jit(lambda state, batch: (state + batch.sum(), batch.mean()), mesh)
>>> state, mean = step(replicate(jax.numpy.zeros(()), mesh), shard_batch(np.ones((8, 2)), mesh))
>>> float(state), float(mean)
(16.0, 1.0)
"""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def create_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh over ``devices`` (default: all local devices)."""
    return Mesh(np.asarray(devices or jax.local_devices()), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding that keeps a full copy on every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """The sharding that splits the leading (batch) axis over the devices of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places a copy of every array of ``tree`` on every device of ``mesh``.

    Every leaf gets its own buffers, even where ``tree`` holds one array at several places (an
    optimizer's ``init`` may reuse one zeros array): a state donated to a jitted step must not
    pass the same buffer twice.
    """
    return jax.tree.map(lambda x: jax.device_put(jnp.array(x, copy=True), replicated(mesh)), tree)


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """Splits every array of ``batch`` along its first axis over the devices of ``mesh``.

    Raises:
      ValueError: if a leading axis is not a multiple of the number of devices.
    """
    num_devices = mesh.devices.size
    for array in jax.tree.leaves(batch):
        if array.shape[0] % num_devices:
            raise ValueError(
                f"Batch size {array.shape[0]} is not a multiple of the {num_devices} devices: "
                "choose a batch size the device count divides."
            )
    return jax.device_put(batch, batch_sharded(mesh))


def data_parallel_jit(
    fn: Callable[..., Any], mesh: Mesh, *, donate_state: bool = False
) -> Callable[..., Any]:
    """``jax.jit(fn)`` for ``fn(state, batch) -> outputs``: batch sharded, all else replicated.

    Args:
      fn: a pure function of a replicated state and a batch sharded by :func:`shard_batch`.
      mesh: the mesh from :func:`create_mesh`.
      donate_state: let the outputs reuse the state's buffers (for a train step whose first
        output is the new state).

    Returns:
      The jitted function; every output (new state, metrics) is replicated.
    """
    return jax.jit(
        fn,
        in_shardings=(replicated(mesh), batch_sharded(mesh)),
        out_shardings=replicated(mesh),
        donate_argnums=(0,) if donate_state else (),
    )
