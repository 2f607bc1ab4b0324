"""Checks of hyper-parameters and of the arguments of a line-search update."""

import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from salsa_optax._src.control_flow import at_most_once
from salsa_optax._src.packing import pack


def check_hyperparameter(
    name: str,
    value: Any,
    is_valid: Callable[[Any], bool],
    requirement: str,
    *,
    optional: bool = False,
    integer: bool = False,
) -> None:
    """Raises an error naming the argument and its valid range when a concrete value is invalid.

    A valid value is a real scalar (a Python number, a bool, or a 0-d array), finite, a whole
    number where ``integer``, and satisfies ``is_valid``. Traced values (as passed by
    ``optax.inject_hyperparams`` under ``jax.jit``) cannot be checked without a host
    synchronisation and are let through.

    Args:
      name: the argument's name, as the user wrote it.
      value: the value given.
      is_valid: predicate on the concrete value.
      requirement: what a valid value is, e.g. ``"0 < slope_rtol < 1"``.
      optional: ``None`` is a valid value (e.g. "no cap").
      integer: the value must be a whole number.

    Raises:
      TypeError: if ``value`` is not a real number (a string, ``None``, a complex number...).
      ValueError: if ``value`` is not a scalar, not finite, not whole, or out of range.

    Examples:
      >>> check_hyperparameter("smoothing", 0.9, lambda v: 0 <= v < 1, "0 <= smoothing < 1")
      >>> check_hyperparameter("smoothing", float("nan"), lambda v: 0 <= v < 1,
      ...                      "0 <= smoothing < 1")
      Traceback (most recent call last):
      ...
      ValueError: smoothing=nan is not finite: it must satisfy 0 <= smoothing < 1.
    """
    if isinstance(value, jax.core.Tracer) or (value is None and optional):
        return
    concrete = None if isinstance(value, (str, bytes)) else np.asarray(value)
    if (
        concrete is None
        or not (jnp.issubdtype(concrete.dtype, jnp.number) or concrete.dtype == np.bool_)
        or jnp.issubdtype(concrete.dtype, jnp.complexfloating)
    ):
        raise TypeError(
            f"{name} must be a real number satisfying {requirement}, "
            f"got {type(value).__name__} {value!r}."
        )
    if concrete.ndim != 0:
        raise ValueError(f"{name} must be a scalar, got an array of shape {concrete.shape}.")
    number = concrete.item()
    if not np.isfinite(number):
        raise ValueError(f"{name}={value!r} is not finite: it must satisfy {requirement}.")
    if integer and number != int(number):
        raise ValueError(f"{name}={value!r} must be a whole number satisfying {requirement}.")
    if not is_valid(number):
        raise ValueError(f"{name}={value!r} is out of range: it must satisfy {requirement}.")


def check_line_search_args(
    transform: str, params: Any, value: Any, grad: Any, value_fn: Any, updates: Any = None
) -> None:
    """Raises an error that says how to call ``update`` when a line-search argument is wrong.

    Args:
      transform: the name of the transform, for the message.
      params: the current parameters.
      value: the loss at ``params``.
      grad: the gradient at ``params``.
      value_fn: the function returning the loss.
      updates: the incoming updates, checked as ``grad`` is where given.

    Raises:
      TypeError: if an argument is missing or ``value_fn`` is not callable.
      ValueError: if ``value`` is not a scalar, or ``grad`` or ``updates`` does not have a leaf
        of the shape of each leaf of ``params``, in order.

    Examples:
      >>> params = {"b": jnp.zeros(2), "w": jnp.zeros(3)}
      >>> check_line_search_args("salsa", params, 0.0, {"w": jnp.ones(3)}, lambda p: 0.0)
      Traceback (most recent call last):
      ...
      ValueError: grad passed to salsa.update and params differ in their number of leaves ...
    """
    usage = (
        f"Call `{transform}` as `tx.update(grads, state, params, value=loss, grad=grads, "
        "value_fn=loss_fn, **batch)`, where `loss, grads = jax.value_and_grad(loss_fn)(params, "
        "**batch)`."
    )
    missing = [
        name
        for name, arg in (
            ("params", params),
            ("value", value),
            ("grad", grad),
            ("value_fn", value_fn),
        )
        if arg is None
    ]
    if missing:
        raise TypeError(f"{transform}.update is missing {', '.join(missing)}. {usage}")
    if not callable(value_fn):
        raise TypeError(f"value_fn must be callable, got {type(value_fn).__name__}. {usage}")
    shape = jnp.shape(value)
    if shape != ():
        raise ValueError(
            f"value must be a scalar loss, got shape {shape}. Reduce the loss over the batch "
            f"(e.g. with .mean()) in the function that gives `value` and in value_fn. {usage}"
        )
    _check_like_params(transform, params, grad=grad, updates=updates)


def _check_like_params(transform: str, params: Any, **trees: Any) -> None:
    # The search pairs the leaves of params, grad and updates in order: a tree with a leaf
    # missing or of another shape would pair the wrong ones, or fail deep inside a product.
    # Only shapes are read here, on every update; the paths and the message only on an error.
    shapes = [jnp.shape(leaf) for leaf in jax.tree.leaves(params)]
    for name, tree in trees.items():
        if tree is None:
            continue
        if [jnp.shape(leaf) for leaf in jax.tree.leaves(tree)] != shapes:
            raise _unlike_params_error(transform, params, name, tree)


def _unlike_params_error(transform: str, params: Any, name: str, tree: Any) -> ValueError:
    """The error for a ``tree`` (``grad`` or the updates) whose leaves are not ``params``'."""
    paths_and_leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    leaves = jax.tree.leaves(tree)
    source = ", as `jax.value_and_grad(loss_fn)(params)` gives it" if name == "grad" else ""
    hint = (
        f"{name} must have one leaf per leaf of params, of its shape{source}. A wrapper that "
        "passes a part of the parameters (optax.masked, optax.multi_transform) passes the "
        "whole grad and a value_fn of all the parameters: apply the line search to all of "
        "them."
    )
    if len(leaves) != len(paths_and_leaves):
        return ValueError(
            f"{name} passed to {transform}.update and params differ in their number of "
            f"leaves ({len(leaves)} against {len(paths_and_leaves)}): {name} is "
            f"{jax.tree.structure(tree)}, params is {jax.tree.structure(params)}. {hint}"
        )
    path, leaf, param = next(
        (path, leaf, param)
        for leaf, (path, param) in zip(leaves, paths_and_leaves, strict=True)
        if jnp.shape(leaf) != jnp.shape(param)
    )
    return ValueError(
        f"{name} passed to {transform}.update has a leaf of shape {jnp.shape(leaf)} where "
        f"params{jax.tree_util.keystr(path)} has shape {jnp.shape(param)}. {hint}"
    )


def value_fn_kwargs(value_fn: Callable[..., Any], extra_args: dict[str, Any]) -> dict[str, Any]:
    """Selects the extra arguments that ``value_fn`` accepts by name.

    A ``value_fn`` with a ``**kwargs`` parameter receives all of them. Arguments meant for other
    transforms of a chain are left out, so they pass through without error.

    Examples:
      >>> def loss(params, x, y): return params * x - y
      >>> value_fn_kwargs(loss, {"x": 1.0, "y": 2.0, "other": 3.0})
      {'x': 1.0, 'y': 2.0}
    """
    parameters = inspect.signature(value_fn).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return dict(extra_args)
    names = {
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    return {k: v for k, v in extra_args.items() if k in names}


def all_finite(tree: Any) -> jax.Array:
    """Whether every entry of every leaf of ``tree`` is finite (a traced boolean).

    On a CPU it sums each leaf and checks each entry only where a sum is not finite; on one
    accelerator it checks the entries of all leaves of one dtype at once; on several, those of
    each leaf (see the three helpers). Each way is exact.

    Examples:
      >>> import jax.numpy as jnp
      >>> bool(all_finite({"a": jnp.ones(2), "b": jnp.array([1.0, jnp.inf])}))
      False
      >>> bool(all_finite([jnp.full(2, 3e38)]))  # finite, though their sum overflows
      True
    """
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.asarray(True)
    if jax.default_backend() == "cpu":
        return _finite_by_sums(leaves)
    if jax.device_count() == 1:
        return _finite_concatenated(leaves)
    return _finite_at_once(leaves)


def _sum(x: jax.Array) -> jax.Array:
    """The sum of ``x``'s entries; of a matrix or more, as rows summed by a product with ones.

    XLA:CPU sums a large array through a tree of windows, three times the time of a
    matrix-vector product reading it once (on an MLP's gradient, 83 against 29 µs).

    Examples:
      >>> float(_sum(jnp.arange(6.0).reshape(2, 3))), float(_sum(jnp.arange(3.0)))
      (15.0, 3.0)
    """
    x = jnp.asarray(x)
    if x.ndim < 2:
        return jnp.sum(x)
    return jnp.sum(x.reshape(-1, x.shape[-1]) @ jnp.ones(x.shape[-1], x.dtype))


def _finite_by_sums(leaves: list[Any]) -> jax.Array:
    # A sum of floats is finite only if every entry is (inf and nan propagate through products
    # with 1 and through sums, inf - inf is nan): one read of each leaf. Only where it is not
    # finite, or finite entries overflowed it, does the exact check run: x - x is 0 where x is
    # finite and nan where it is not: the usual case, a finite sum, runs no more.
    total = sum(_sum(x) for x in leaves)
    return at_most_once(
        ~jnp.isfinite(total),
        lambda: jnp.isfinite(sum(jnp.sum(x - x) for x in leaves)),
        jnp.asarray(True),
    )


def _finite_at_once(leaves: list[Any]) -> jax.Array:
    # On a GPU each reduction is a kernel launch of its own, and XLA turned a conditional in
    # place of the loop above into a select that ran both of its checks: two launches per leaf.
    # Here each leaf's entries are checked exactly, with no conditional, and the leaves'
    # verdicts meet in one consumer, where XLA may fuse sibling reductions; a leaf is never
    # concatenated with another, which would move the data of parameters sharded over devices.
    return jnp.stack([jnp.isfinite(x).all() for x in leaves]).all()


def _finite_concatenated(leaves: list[Any]) -> jax.Array:
    # With a single device no leaf is sharded, and the leaves of each dtype are checked as one
    # concatenated vector, as `pack` lays them out: one reduction (XLA fuses the concatenation
    # into it, or writes it out in one pass, which an accelerator's bandwidth makes cheap)
    # instead of a launch per leaf, the 110 launches of a ResNet-50's finiteness check on a GPU.
    return jnp.stack([jnp.isfinite(vector).all() for vector in pack(leaves)]).all()


def split_loss_and_aux(output: Any, transform: str, expects_aux: bool) -> tuple[jax.Array, Any]:
    """Reads ``value_fn``'s output: a scalar loss, or ``(loss, aux)`` as ``has_aux`` functions do.

    Args:
      output: what ``value_fn`` returned.
      transform: the name of the transform, for the message.
      expects_aux: an ``aux_like`` was given, so the output must carry an aux.

    Returns:
      ``(loss, aux)``, ``aux`` being ``None`` when the output has none.

    Raises:
      TypeError: if the loss is not a real floating-point array, or an aux is missing.
      ValueError: if the loss is not a scalar.

    Examples:
      >>> import jax.numpy as jnp
      >>> split_loss_and_aux((jnp.float32(1.0), {"acc": 0.5}), "salsa", expects_aux=False)
      (Array(1., dtype=float32), {'acc': 0.5})
    """
    loss, aux = output if isinstance(output, (tuple, list)) and len(output) == 2 else (output, None)
    if expects_aux and aux is None:
        raise TypeError(
            f"{transform} was given aux_like, so value_fn must return (loss, aux) as a function "
            f"for jax.value_and_grad(..., has_aux=True) does; it returned {type(output).__name__}."
        )
    dtype = getattr(loss, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"value_fn of {transform} must return a real floating-point scalar loss (or "
            f"(loss, aux)), got {type(loss).__name__} of dtype {dtype}."
        )
    if jnp.shape(loss) != ():
        raise ValueError(
            f"value_fn of {transform} must return a scalar loss, got shape {jnp.shape(loss)}: "
            "reduce it over the batch (e.g. with .mean()), as for `value`."
        )
    return loss, aux
