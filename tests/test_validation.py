"""The argument checks: what they accept, and the exact message of each error they raise."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from salsa_optax._src import validation
from salsa_optax._src.validation import (
    all_finite,
    check_hyperparameter,
    check_line_search_args,
    split_loss_and_aux,
    value_fn_kwargs,
)

USAGE = (
    "Call `salsa` as `tx.update(grads, state, params, value=loss, grad=grads, value_fn=loss_fn, "
    "**batch)`, where `loss, grads = jax.value_and_grad(loss_fn)(params, **batch)`."
)


def _message(error_type, call):
    with pytest.raises(error_type) as error:
        call()
    return str(error.value)


def test_a_string_hyperparameter_is_a_type_error_naming_its_type():
    message = _message(
        TypeError, lambda: check_hyperparameter("smoothing", "0.9", lambda v: True, "0 <= s < 1")
    )
    assert message == "smoothing must be a real number satisfying 0 <= s < 1, got str '0.9'."


def test_missing_line_search_arguments_are_listed_with_the_calling_convention():
    message = _message(
        TypeError, lambda: check_line_search_args("salsa", None, 1.0, None, lambda p: p)
    )
    assert message == f"salsa.update is missing params, grad. {USAGE}"


def test_a_value_fn_that_is_not_callable_is_named_by_its_type():
    message = _message(TypeError, lambda: check_line_search_args("salsa", 0.0, 1.0, 0.0, 3))
    assert message == f"value_fn must be callable, got int. {USAGE}"


PARAMS = {"b": jnp.zeros(2), "w": jnp.zeros((3, 2))}
WRAPPERS = (
    "A wrapper that passes a part of the parameters (optax.masked, optax.multi_transform) "
    "passes the whole grad and a value_fn of all the parameters: apply the line search to all "
    "of them."
)


def test_a_grad_with_a_leaf_missing_is_named_with_both_structures():
    message = _message(
        ValueError,
        lambda: check_line_search_args("salsa", PARAMS, 1.0, {"w": PARAMS["w"]}, lambda p: 0.0),
    )
    assert message == (
        "grad passed to salsa.update and params differ in their number of leaves (1 against "
        "2): grad is PyTreeDef({'w': *}), params is PyTreeDef({'b': *, 'w': *}). grad must have "
        "one leaf per leaf of params, of its shape, as `jax.value_and_grad(loss_fn)(params)` "
        "gives it. " + WRAPPERS
    )


def test_updates_with_a_leaf_of_another_shape_are_named_with_the_parameter_path():
    updates = {"b": jnp.zeros(2), "w": jnp.zeros((2, 3))}
    message = _message(
        ValueError,
        lambda: check_line_search_args("salsa", PARAMS, 1.0, PARAMS, lambda p: 0.0, updates),
    )
    assert message == (
        "updates passed to salsa.update has a leaf of shape (2, 3) where params['w'] has shape "
        "(3, 2). updates must have one leaf per leaf of params, of its shape. " + WRAPPERS
    )


def test_a_grad_of_another_container_with_the_same_leaves_gives_the_same_step():
    import salsa_optax

    params = {"b": jnp.zeros(2), "w": jnp.ones((3, 2))}
    loss = lambda p: jnp.sum(p["w"] ** 2) + jnp.sum((p["b"] - 1.0) ** 2)
    value, grad = jax.value_and_grad(loss)(params)
    tx = salsa_optax.salsa()
    state = tx.init(params)
    as_dict, _ = tx.update(grad, state, params, value=value, grad=grad, value_fn=loss)
    as_list = [grad["b"], grad["w"]]  # the leaves of grad, in order
    as_other, _ = tx.update(grad, state, params, value=value, grad=as_list, value_fn=loss)
    jax.tree.map(np.testing.assert_array_equal, as_other, as_dict)
    assert float(jnp.abs(as_dict["w"]).sum()) > 0  # a step was taken


def test_an_output_without_aux_where_one_is_expected_is_named_by_its_type():
    message = _message(TypeError, lambda: split_loss_and_aux(1.0, "salsa", expects_aux=True))
    assert message == (
        "salsa was given aux_like, so value_fn must return (loss, aux) as a function for "
        "jax.value_and_grad(..., has_aux=True) does; it returned float."
    )


def test_a_non_floating_loss_is_named_by_its_type_and_dtype():
    message = _message(TypeError, lambda: split_loss_and_aux(3, "salsa", expects_aux=False))
    assert message == (
        "value_fn of salsa must return a real floating-point scalar loss (or (loss, aux)), "
        "got int of dtype None."
    )


def test_a_batch_of_losses_is_named_by_its_shape():
    message = _message(
        ValueError, lambda: split_loss_and_aux(jnp.zeros((4, 2)), "salsa", expects_aux=False)
    )
    assert message == (
        "value_fn of salsa must return a scalar loss, got shape (4, 2): reduce it over the batch "
        "(e.g. with .mean()), as for `value`."
    )


def test_a_value_fn_with_var_keywords_receives_every_extra_argument():
    extra = {"x": 1.0, "other": 2.0}
    assert value_fn_kwargs(lambda params, **batch: params, extra) == extra


@pytest.mark.parametrize("tree", [{}, (), None])
def test_an_empty_tree_is_all_finite(tree):
    assert bool(all_finite(tree)) is True


ENTRIES = st.sampled_from([0.0, -1.5, 2.5e-39, 3e38, -3e38, np.inf, -np.inf, np.nan])


# all_finite (on this CPU) and each of its ways, each called on a list of leaves.
CHECKS = [
    all_finite,
    validation._finite_by_sums,
    validation._finite_at_once,
    validation._finite_concatenated,
]


@pytest.mark.parametrize("check", CHECKS)
@settings(max_examples=60, deadline=None)
@given(
    leaves=st.lists(st.lists(ENTRIES, min_size=1, max_size=6), min_size=1, max_size=3),
    layout=st.sampled_from(["vector", "row", "column", "cube", "block"]),
)
def test_all_finite_is_exact_whether_or_not_the_sum_overflows(check, leaves, layout):
    # Finite entries whose sum overflows (3e38 + 3e38) take the exact check; inf - inf (a nan
    # sum) and every other non-finite entry read as not finite. Matrices and arrays of more
    # dimensions are summed by a product with ones on a CPU; a block's entry is repeated over
    # two trailing axes of different lengths.
    shapes = {"vector": (-1,), "row": (1, -1), "column": (-1, 1), "cube": (-1, 1, 1)}

    def arranged(leaf):
        array = jnp.asarray(leaf, jnp.float32)
        if layout == "block":
            return jnp.broadcast_to(array[:, None, None], (array.size, 2, 3))
        return array.reshape(shapes[layout])

    arrays = [arranged(leaf) for leaf in leaves]
    expected = all(np.isfinite(np.asarray(a)).all() for a in arrays)
    assert bool(check(arrays)) is expected
    assert bool(jax.jit(check)(arrays)) is expected


@pytest.mark.parametrize("check", CHECKS)
def test_all_finite_takes_bfloat16_integer_and_scalar_leaves(check):
    finite = [jnp.full(3, 3e38, jnp.bfloat16), jnp.arange(3), jnp.float32(2.0), 1.5]
    assert bool(check(finite)) is True
    assert bool(check([jnp.array([1.0, jnp.nan], jnp.bfloat16), jnp.arange(3)])) is False
    assert bool(check([jnp.arange(3), jnp.float32(-jnp.inf)])) is False


def test_all_finite_sums_on_a_cpu_and_checks_entries_with_no_conditional_elsewhere(monkeypatch):
    leaves = [jnp.ones(3), jnp.ones((2, 2)), jnp.ones(2, jnp.bfloat16), jnp.ones(1, jnp.bfloat16)]

    def traced():
        # A new function each time: a fresh trace under the patched backend, with no cache of
        # JAX's cleared (a test that counts compilations may run in between).
        return str(jax.make_jaxpr(lambda x: all_finite(x))(leaves))

    on_cpu = traced()
    # Sums (the matrix's by a product with ones), and the exact check in a loop run at most once.
    assert "while" in on_cpu and "concatenate" not in on_cpu
    assert on_cpu.count("dot_general") == 1
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    # One accelerator: the leaves of each dtype concatenated, one check per dtype.
    single = traced()
    assert "cond" not in single and single.count("concatenate") == 2
    assert single.count("reduce_and") == 3  # float32, bfloat16, and their verdicts
    # Several: no leaf meets another, whose data may sit on other devices.
    monkeypatch.setattr(jax, "device_count", lambda: 8)
    several = traced()
    assert "cond" not in several and "concatenate" not in several
    assert several.count("reduce_and") == 5  # one per leaf, one for their verdicts
