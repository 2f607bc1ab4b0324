"""Checks of hyper-parameters and of the arguments of a line-search update."""

import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def check_hyperparameter(
    name: str, value: Any, is_valid: Callable[[Any], bool], requirement: str
) -> None:
    """Raises a ``ValueError`` naming the fix when a concrete hyper-parameter is invalid.

    Traced values (as passed by ``optax.inject_hyperparams`` under ``jax.jit``) cannot be checked
    without a host synchronisation and are let through.

    Args:
      name: the argument's name, as the user wrote it.
      value: the value given.
      is_valid: predicate on the concrete value.
      requirement: what a valid value is, e.g. ``"0 < slope_rtol < 1"``.

    Raises:
      ValueError: if ``value`` is concrete and ``is_valid(value)`` is false.
    """
    if value is None or isinstance(value, jax.core.Tracer):
        return
    concrete = np.asarray(value)  # NumPy, not jnp: no tracer when built inside a jitted function
    if concrete.ndim != 0:
        raise ValueError(f"{name} must be a scalar, got an array of shape {concrete.shape}.")
    if not is_valid(concrete.item()):
        raise ValueError(f"{name}={value!r} is out of range: it must satisfy {requirement}.")


def check_line_search_args(
    transform: str, params: Any, value: Any, grad: Any, value_fn: Any
) -> None:
    """Raises an error that says how to call ``update`` when a line-search argument is wrong.

    Args:
      transform: the name of the transform, for the message.
      params: the current parameters.
      value: the loss at ``params``.
      grad: the gradient at ``params``.
      value_fn: the function returning the loss.

    Raises:
      TypeError: if an argument is missing or ``value_fn`` is not callable.
      ValueError: if ``value`` is not a scalar.
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

    Examples:
      >>> import jax.numpy as jnp
      >>> bool(all_finite({"a": jnp.ones(2), "b": jnp.array([1.0, jnp.inf])}))
      False
    """
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.asarray(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))
