"""Data parallelism over the devices of every process with ``jax.sharding``.

The batch is split along its first axis over a one-axis mesh named ``"data"`` that spans all
global devices; parameters, optimizer state and metrics are replicated. ``jax.jit`` with these
shardings inserts the gradient all-reduce itself, so a step on eight devices computes what it
computes on one, whether the eight belong to one process or to several.

In a multi-process run (``jax.distributed``) each process loads only the rows of the global batch
that its own devices hold (:func:`process_rows`), and :func:`shard_batch` assembles the global
batch from those pieces. Every loss the jitted step computes, the line search's included, is
then the loss of the global batch, the same number on every process.

>>> mesh = create_mesh()
>>> rows = process_rows(mesh, 8)  # all eight rows in a single-process run
>>> batch = shard_batch(np.ones((8, 2))[rows], mesh)
>>> step = data_parallel_jit(lambda state, batch: (state + batch.sum(), batch.mean()), mesh)
>>> state, mean = step(replicate(jax.numpy.zeros(()), mesh), batch)
>>> float(state), float(mean)
(16.0, 1.0)
"""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def create_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh over ``devices`` (default: the devices of all processes)."""
    return Mesh(np.asarray(devices or jax.devices()), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding that keeps a full copy on every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """The sharding that splits the leading (batch) axis over the devices of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places a copy of every array of ``tree`` on every device of ``mesh``.

    In a multi-process run every process passes its own ``tree``, and these must be equal (the
    same seed gives the same initialisation); each process fills only its own devices.

    Every leaf gets its own buffers, even where ``tree`` holds one array at several places (an
    optimizer's ``init`` may reuse one zeros array): a state donated to a jitted step must not
    pass the same buffer twice.
    """
    return jax.tree.map(lambda x: _replicated_copy(x, replicated(mesh)), tree)


def _replicated_copy(x: Any, sharding: NamedSharding) -> jax.Array:
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = _replicated_copy(jax.random.key_data(x), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def process_rows(mesh: Mesh, batch_size: int) -> np.ndarray:
    """The rows of a global batch of ``batch_size`` that this process's devices hold, in order.

    The input pipeline of each process loads these rows of every global batch and nothing else;
    :func:`shard_batch` puts them where they belong. With one process: all rows.

    Raises:
      ValueError: if ``batch_size`` is not a multiple of the number of devices.
    """
    _check_divides(batch_size, mesh)
    indices = batch_sharded(mesh).addressable_devices_indices_map((batch_size,))
    blocks = sorted(index.indices(batch_size) for (index,) in indices.values())
    return np.concatenate([np.arange(*block) for block in blocks])


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """The global batch, split along its first axis, from this process's rows of it.

    Args:
      batch: arrays holding the rows :func:`process_rows` names, in that order (the whole batch
        in a single-process run).
      mesh: the mesh from :func:`create_mesh`.

    Returns:
      Global arrays of ``process_count`` times the rows, sharded over the devices of ``mesh``.

    Raises:
      ValueError: if the global batch size is not a multiple of the number of devices.
    """
    for array in jax.tree.leaves(batch):
        _check_divides(array.shape[0] * jax.process_count(), mesh)
    return jax.make_array_from_process_local_data(batch_sharded(mesh), batch)


def _check_divides(batch_size: int, mesh: Mesh) -> None:
    num_devices = mesh.devices.size
    if batch_size % num_devices:
        raise ValueError(
            f"Batch size {batch_size} is not a multiple of the {num_devices} devices: "
            "choose a batch size the device count divides."
        )


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
