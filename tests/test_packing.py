"""pack / unpack: a tree of small arrays as one vector per dtype, and back, exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from salsa_optax._src.packing import pack, unpack

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
    with pytest.raises(ValueError):
        unpack(pack(like)[:1], like)  # the float vector missing
    with pytest.raises(ValueError):
        unpack((*pack(like), jnp.zeros(1)), like)  # one vector too many
