"""A pytree of small arrays as one flat vector per dtype, and back.

A ``lax.switch`` whose branches return many scalars makes a copy (on a GPU, a kernel launch) for
each output a branch passes through unchanged; the same values returned as one vector per dtype
cost one concatenation per branch.
"""

from typing import Any

import jax
import jax.numpy as jnp


def _dtypes(leaves: list[Any]) -> list[jnp.dtype]:
    """The leaves' distinct dtypes, in the order they first appear."""
    return list(dict.fromkeys(jnp.dtype(jnp.result_type(leaf)) for leaf in leaves))


def pack(tree: Any) -> tuple[jax.Array, ...]:
    """The leaves of ``tree``, raveled and concatenated into one vector per dtype.

    Examples:
      >>> vectors = pack({"a": jnp.int32(1), "b": jnp.array([2.0, 3.0]), "c": jnp.int32(4)})
      >>> [v.tolist() for v in vectors]
      [[1, 4], [2.0, 3.0]]
    """
    leaves = jax.tree.leaves(tree)
    return tuple(
        jnp.concatenate([jnp.ravel(x) for x in leaves if jnp.result_type(x) == dtype])
        for dtype in _dtypes(leaves)
    )


def unpack(vectors: tuple[jax.Array, ...], like: Any) -> Any:
    """The tree of :func:`pack`'s ``vectors``, with the structure, shapes and dtypes of ``like``.

    Examples:
      >>> like = {"a": jnp.int32(0), "b": jnp.zeros(2), "c": jnp.int32(0)}
      >>> unpack(pack({"a": jnp.int32(1), "b": jnp.array([2.0, 3.0]), "c": jnp.int32(4)}), like)
      {'a': Array(1, dtype=int32), 'b': Array([2., 3.], dtype=float32), 'c': Array(4, dtype=int32)}
    """
    leaves, treedef = jax.tree.flatten(like)
    offsets = dict.fromkeys(_dtypes(leaves), 0)
    by_dtype = dict(zip(offsets, vectors, strict=True))
    unpacked = []
    for leaf in leaves:
        dtype, shape = jnp.dtype(jnp.result_type(leaf)), jnp.shape(leaf)
        start, size = offsets[dtype], int(jnp.size(leaf))
        unpacked.append(by_dtype[dtype][start : start + size].reshape(shape))
        offsets[dtype] = start + size
    return treedef.unflatten(unpacked)
