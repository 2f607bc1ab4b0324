"""pack / unpack and Packed: a tree of small arrays as one vector per dtype, and back, exactly."""

import copy
import pickle
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import salsa_optax
from salsa_optax._src.packing import Packed, pack, unpack

DTYPES = [jnp.float32, jnp.int32, jnp.bool_, jnp.bfloat16]
SHAPES = [(), (1,), (3,), (2, 2)]


@st.composite
def trees(draw):
    leaves = []
    for _ in range(draw(st.integers(1, 6))):
        dtype = draw(st.sampled_from(DTYPES))
        shape = draw(st.sampled_from(SHAPES))
        values = draw(st.lists(st.integers(-50, 50), min_size=int(np.prod(shape)),
                               max_size=int(np.prod(shape))))  # fmt: skip
        leaves.append(jnp.asarray(np.reshape(values, shape)).astype(dtype))
    return {f"leaf{i}": leaf for i, leaf in enumerate(leaves)}


@settings(max_examples=40, deadline=None)
@given(tree=trees())
def test_unpack_gives_back_each_leaf_with_its_shape_dtype_and_values(tree):
    vectors = pack(tree)
    dtypes = {jnp.dtype(leaf.dtype) for leaf in tree.values()}
    assert len(vectors) == len(dtypes) and all(v.ndim == 1 for v in vectors)
    assert sum(v.size for v in vectors) == sum(leaf.size for leaf in tree.values())
    back = unpack(vectors, tree)
    assert jax.tree.structure(back) == jax.tree.structure(tree)
    for name, leaf in tree.items():
        assert back[name].shape == leaf.shape and back[name].dtype == leaf.dtype
        np.testing.assert_array_equal(np.asarray(back[name]), np.asarray(leaf))


def test_pack_keeps_the_order_of_leaves_within_a_dtype_and_of_first_appearance_across():
    tree = (jnp.int32(7), jnp.array([1.5, 2.5]), jnp.array([8, 9], jnp.int32), jnp.float32(3.5))
    ints, floats = pack(tree)
    assert ints.tolist() == [7, 8, 9] and floats.tolist() == [1.5, 2.5, 3.5]


def test_unpack_reads_values_packed_under_jit_against_a_tree_of_other_values():
    like = {"count": jnp.int32(0), "rates": jnp.zeros(2), "flag": jnp.bool_(False)}
    new = {"count": jnp.int32(5), "rates": jnp.array([0.25, 4.0]), "flag": jnp.bool_(True)}
    back = jax.jit(lambda tree: unpack(pack(tree), like))(new)
    assert back["count"] == 5 and back["rates"].tolist() == [0.25, 4.0] and bool(back["flag"])


def test_unpack_refuses_vectors_that_do_not_match_the_dtypes_of_like():
    like = {"count": jnp.int32(0), "rates": jnp.zeros(2)}
    with pytest.raises(ValueError, match=r"^1 vectors for leaves of 2 dtypes$"):
        unpack(pack(like)[:1], like)  # the float vector missing
    with pytest.raises(ValueError, match=r"^3 vectors for leaves of 2 dtypes$"):
        unpack((*pack(like), jnp.zeros(1)), like)  # one vector too many


class Totals(NamedTuple):
    searches: jax.Array
    step_size: jax.Array


class Scalars(NamedTuple):
    count: jax.Array  # shadows tuple.count, as a NamedTuple's field does
    rates: jax.Array
    flag: jax.Array
    totals: Totals
    unused: Any = None


def _scalars():
    totals = Totals(jnp.int32(7), jnp.float32(0.25))
    return Scalars(jnp.int32(3), jnp.array([0.5, 2.0]), jnp.bool_(True), totals)


def test_packed_is_one_leaf_per_dtype_and_reads_every_field_back():
    packed = Packed.of(_scalars())
    ints, floats, flags = jax.tree.leaves(packed)
    assert ints.tolist() == [3, 7] and floats.tolist() == [0.5, 2.0, 0.25] and flags.tolist() == [1]
    assert packed._fields == Scalars._fields
    assert int(packed.count) == 3 and packed.rates.tolist() == [0.5, 2.0] and bool(packed.flag)
    assert isinstance(packed.totals, Totals) and int(packed.totals.searches) == 7
    assert packed.unused is None
    unpacked = packed.unpacked()
    assert isinstance(unpacked, Scalars)
    jax.tree.map(np.testing.assert_array_equal, unpacked, _scalars())
    with pytest.raises(AttributeError, match=r"^Packed has no attribute 'missing'$"):
        packed.missing  # noqa: B018


def test_a_packed_without_its_layout_yet_has_no_layout_and_no_dunder_attributes():
    # An instance made by tuple.__new__ alone, as a protocol that builds an object before its
    # state may do: what copy and pickle look up reads as missing, not as a recursion through
    # the layout that is not there.
    half_built = tuple.__new__(Packed, ())
    assert not hasattr(half_built, "_layout")
    assert not hasattr(half_built, "__setstate__")


def test_the_repr_of_a_packed_whose_leaves_are_not_arrays_shows_the_leaves():
    described = jax.tree.map(lambda vector: f"{vector.dtype} vector", Packed.of(_scalars()))
    assert repr(described) == "Packed(('int32 vector', 'float32 vector', 'bool vector'))"


def test_packed_passes_through_jit_and_tree_map_and_replaces_fields():
    packed = Packed.of(_scalars())
    doubled = jax.jit(lambda p: jax.tree.map(lambda x: x * 2, p))(packed)
    assert isinstance(doubled, Packed) and doubled.rates.tolist() == [1.0, 4.0]
    assert int(doubled.totals.searches) == 14
    replaced = packed._replace(count=jnp.int32(9))
    assert int(replaced.count) == 9 and replaced.rates.tolist() == [0.5, 2.0]
    assert jax.tree.structure(replaced) == jax.tree.structure(packed)


def test_optax_tree_get_reaches_every_field_and_tree_set_the_top_level_ones():
    tree = {"state": Packed.of(_scalars()), "other": {"rates": jnp.zeros(2)}}
    assert int(optax.tree.get(tree, "searches")) == 7
    assert float(optax.tree.get(tree, "step_size")) == 0.25
    totals = Totals(jnp.int32(8), jnp.float32(0.5))
    changed = optax.tree.set(tree, count=jnp.int32(4), totals=totals)
    assert int(changed["state"].count) == 4 and int(changed["state"].totals.searches) == 8
    assert changed["state"].rates.tolist() == [0.5, 2.0]
    assert jax.tree.structure(changed) == jax.tree.structure(tree)


def test_packed_survives_pickle_and_deepcopy():
    packed = Packed.of(_scalars())
    for copied in (pickle.loads(pickle.dumps(packed)), copy.deepcopy(packed)):
        assert jax.tree.structure(copied) == jax.tree.structure(packed)
        jax.tree.map(np.testing.assert_array_equal, copied.unpacked(), packed.unpacked())


def test_a_salsa_state_passes_its_scalars_as_three_arrays():
    """Three vectors (int32, float, bool) hold the step size, the averages, the noise measurement
    and the diagnostics, however many fields they have; the rest are the per-leaf distances (one
    array), the moments and the initial parameters."""
    params = {"w": jnp.zeros((3, 2)), "b": jnp.zeros(2), "c": jnp.zeros(())}
    state = salsa_optax.salsa().init(params)
    assert len(jax.tree.leaves(state.scalars)) == 3
    assert len(jax.tree.leaves(state)) == 3 + 1 + 3 * len(jax.tree.leaves(params))
    assert state.distance.table.shape == (4, len(jax.tree.leaves(params)))
    assert float(state.learning_rate) == float(optax.tree.get(state, "learning_rate"))
    assert isinstance(state.unpacked().scalars, salsa_optax.SalsaScalars)
    assert int(state.count) == 0 and int(state.info.total_searches) == 0


def test_a_packed_layout_is_the_same_for_float32_and_float64_scalars():
    """optax.tree.map_params maps a state against one built from a placeholder (float32): the
    packed scalars of float64 parameters must have the same tree structure."""
    f32 = Packed.of(_scalars())
    with jax.enable_x64(True):
        f64 = Packed.of(_scalars()._replace(rates=jnp.array([0.5, 2.0], jnp.float64), totals=Totals(
            jnp.int32(7), jnp.float64(0.25))))  # fmt: skip
        assert jax.tree.leaves(f64)[1].dtype == jnp.float64
        assert jax.tree.structure(f32) == jax.tree.structure(f64)
        assert f64.totals.step_size.dtype == jnp.float64
