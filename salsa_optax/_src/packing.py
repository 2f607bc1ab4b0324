"""A pytree of small arrays as one flat vector per dtype, and back.

A jitted step takes and returns each leaf of its state as an array of its own, each with a cost
of its own (the caller's flattening, the runtime's buffer handling, a copy or a kernel launch
for each value a ``lax.switch`` passes through): many scalars cost more than their few bytes.
Packed into one vector per dtype, they cost what a few arrays do.
"""

import math
from typing import Any, NamedTuple

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


def _specs(leaves: list[Any]) -> tuple[tuple[tuple[int, ...], int], ...]:
    """Each leaf's ``(shape, group)``: the group is the index of its dtype's vector, so that
    trees whose floats differ in precision alone (float32, float64) share one layout."""
    groups = {dtype: index for index, dtype in enumerate(_dtypes(leaves))}
    return tuple((tuple(jnp.shape(x)), groups[jnp.dtype(jnp.result_type(x))]) for x in leaves)


def _unpacked_leaves(vectors: tuple[Any, ...], specs: tuple, wanted: range) -> list[Any]:
    """The leaves ``wanted`` (indices into ``specs``) of :func:`pack`'s ``vectors``, each of
    its vector's dtype."""
    groups = len({group for _, group in specs})
    if len(vectors) != groups:
        raise ValueError(f"{len(vectors)} vectors for leaves of {groups} dtypes")
    offsets = [0] * groups
    leaves = []
    for index, (shape, group) in enumerate(specs):
        start, size = offsets[group], math.prod(shape)
        if index in wanted:
            leaves.append(vectors[group][start : start + size].reshape(shape))
        offsets[group] = start + size
    return leaves


def unpack(vectors: tuple[jax.Array, ...], like: Any) -> Any:
    """The tree of :func:`pack`'s ``vectors``, with the structure, shapes and dtypes of ``like``.

    Examples:
      >>> like = {"a": jnp.int32(0), "b": jnp.zeros(2), "c": jnp.int32(0)}
      >>> unpack(pack({"a": jnp.int32(1), "b": jnp.array([2.0, 3.0]), "c": jnp.int32(4)}), like)
      {'a': Array(1, dtype=int32), 'b': Array([2., 3.], dtype=float32), 'c': Array(4, dtype=int32)}
    """
    leaves, treedef = jax.tree.flatten(like)
    return treedef.unflatten(_unpacked_leaves(vectors, _specs(leaves), range(len(leaves))))


_TUPLE_METHODS = ("count", "index")


class _Layout(NamedTuple):
    """Where a :class:`Packed` tree's leaves lie in its vectors: its structure, each leaf's
    ``(shape, group)`` (see :func:`_specs`)."""

    treedef: Any
    specs: tuple


@jax.tree_util.register_pytree_with_keys_class
class Packed(tuple):
    """A NamedTuple of small arrays stored as one vector per dtype, read like the NamedTuple.

    As a pytree its leaves are the vectors (:func:`pack`'s): a state holding one passes a few
    arrays through a jitted step, not one per field. Its fields read as the NamedTuple's, each
    a slice of its vector (``packed.learning_rate``, and ``optax.tree.get``, which walks
    ``_fields``); :meth:`unpacked` gives the whole NamedTuple, ``_replace`` a new ``Packed``.

    Examples:
      >>> from typing import NamedTuple
      >>> class Rates(NamedTuple):
      ...   count: jax.Array
      ...   rate: jax.Array
      ...   history: jax.Array
      >>> packed = Packed.of(Rates(jnp.int32(3), jnp.float32(0.5), jnp.array([1.0, 2.0])))
      >>> [v.tolist() for v in jax.tree.leaves(packed)]
      [[3], [0.5, 1.0, 2.0]]
      >>> float(packed.rate), packed.history.tolist(), int(packed._replace(count=4).count)
      (0.5, [1.0, 2.0], 4)
    """

    def __new__(cls, vectors: tuple[Any, ...], layout: _Layout) -> "Packed":
        packed = super().__new__(cls, vectors)
        packed.__dict__["_layout"] = layout
        return packed

    @classmethod
    def of(cls, fields: tuple) -> "Packed":
        """``fields`` (a NamedTuple of arrays, nested NamedTuples or ``None``) packed.

        ``optax.tree.set`` sets its fields, and replaces a nested NamedTuple whole; it cannot
        reach the fields of a nested NamedTuple (``jax.tree.flatten`` does not stop there).
        """
        leaves, treedef = jax.tree.flatten(fields)
        return cls(pack(leaves), _Layout(treedef, _specs(leaves)))

    @property
    def _fields(self) -> tuple[str, ...]:
        return self._layout.treedef.node_data()[0]._fields

    def unpacked(self) -> tuple:
        """The NamedTuple, each leaf a slice of its vector."""
        treedef, specs = self._layout
        return treedef.unflatten(_unpacked_leaves(tuple(self), specs, range(len(specs))))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_layout" or name not in self._fields:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        return self._field(name)

    def __getattribute__(self, name: str) -> Any:
        # A field named like one of tuple's methods (count, index) shadows it, as in a NamedTuple.
        if name in _TUPLE_METHODS and name in super().__getattribute__("_fields"):
            return super().__getattribute__("_field")(name)
        return super().__getattribute__(name)

    def _field(self, name: str) -> Any:
        treedef, specs = self._layout
        children = treedef.children()
        index = self._fields.index(name)
        start = sum(child.num_leaves for child in children[:index])
        wanted = range(start, start + children[index].num_leaves)
        return children[index].unflatten(_unpacked_leaves(tuple(self), specs, wanted))

    def _replace(self, **fields: Any) -> "Packed":
        return Packed.of(self.unpacked()._replace(**fields))

    def __getnewargs__(self) -> tuple:
        return tuple(self), self._layout

    def __repr__(self) -> str:
        try:
            return f"Packed({self.unpacked()!r})"
        except (TypeError, AttributeError, ValueError):  # leaves that are not arrays
            return f"Packed({tuple(self)!r})"

    def tree_flatten_with_keys(self) -> tuple[list, _Layout]:
        keys = (jax.tree_util.SequenceKey(i) for i in range(len(self)))
        return list(zip(keys, self, strict=True)), self._layout

    def tree_flatten(self) -> tuple[tuple, _Layout]:
        return tuple(self), self._layout

    @classmethod
    def tree_unflatten(cls, layout: _Layout, vectors: Any) -> "Packed":
        return cls(tuple(vectors), layout)
