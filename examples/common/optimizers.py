"""An optax optimizer picked by name, and the diagnostics the trainers log about it.

The line searches come from :mod:`salsa_optax`; every other name is looked up in :mod:`optax`, then
in :mod:`optax.contrib`, and wrapped in :func:`optax.inject_hyperparams` so that its learning rate
sits in the optimizer state like a line search's step size does. One function,
:func:`step_metrics`, then reads the step size of any of them.

Example:

>>> import jax.numpy as jnp
>>> tx = create_optimizer("adam")
>>> state = tx.init({"w": jnp.zeros(3)})
>>> {k: float(v) for k, v in step_metrics(state).items()}
{'step_size': 0.001, 'searched': 0.0, 'num_evaluations': 0.0, 'value_mismatches': 0.0}
"""

import inspect
from typing import Any

import jax.numpy as jnp
import optax

import salsa_optax

LINE_SEARCHES = ("salsa", "salsa_sgd", "sls", "salsa_published", "salsa_paper")
"""Names built by :mod:`salsa_optax`: they choose their own step size and need ``value_fn``."""

DEFAULT_LEARNING_RATES = {"adam": 1e-3, "adamw": 1e-3, "sgd": 0.1}
"""Learning rates used when the config leaves ``learning_rate`` unset and optax has no default."""


SCHEDULES = ("constant", "linear")
"""Names of :func:`schedule_multiplier`."""


def schedule_multiplier(name: str, num_steps: int, warmup_fraction: float = 0.0):
    """The schedule that multiplies every update, or ``None`` for ``"constant"``.

    ``"linear"``: a linear warm-up over ``warmup_fraction`` of the ``num_steps``, then a linear
    decay to zero at ``num_steps``.

    >>> float(schedule_multiplier("linear", 10)(5))
    0.5
    """
    if name == "constant":
        return None
    if name == "linear":
        warmup_steps = int(warmup_fraction * num_steps)
        return salsa_optax.linear_decay_schedule(1.0, num_steps, warmup_steps=warmup_steps)
    raise ValueError(f"Unknown schedule {name!r}: use one of {', '.join(SCHEDULES)}.")


def create_optimizer(
    name: str,
    learning_rate: float | None = None,
    *,
    clip_norm: float | None = None,
    schedule: optax.Schedule | None = None,
    **kwargs: Any,
) -> optax.GradientTransformationExtraArgs:
    """Returns the optimizer called ``name``, between optional clipping and a schedule.

    Args:
      name: one of :data:`LINE_SEARCHES`, or the name of any optax (or optax.contrib) optimizer
        that takes a ``learning_rate``, such as ``"adam"``, ``"sgd"``, ``"adamw"`` or ``"prodigy"``.
      learning_rate: for an optax optimizer, its learning rate (default: its entry in
        :data:`DEFAULT_LEARNING_RATES`, else optax's own default). For a line search, its initial
        step size (``initial_learning_rate``); leave it unset to keep the method's default.
      clip_norm: if set, gradients are first clipped to this global norm.
      schedule: if set, every update is multiplied by ``schedule(step)``. For an optax optimizer
        its learning rate becomes the rate times the schedule. For a line search the schedule
        multiplies the searched step, chained after it: the search still tests the unscheduled
        step (its trial points and stored step size do not see the schedule), so a factor below
        1 takes a shorter step than the one that passed the test.
      **kwargs: further keyword arguments of the optimizer (``momentum=0.9``, ``slope_rtol=0.3``).

    Returns:
      ``optax.chain(*clipping, optimizer, *schedule)``: a transform whose ``update`` accepts
      (and, for a line search, needs) ``value``, ``grad`` and ``value_fn``.

    Raises:
      ValueError: if no optimizer has this name, or one needs a learning rate that was not given.
    """
    clipping = [optax.clip_by_global_norm(clip_norm)] if clip_norm is not None else []
    if name in LINE_SEARCHES:
        scheduling = [optax.scale_by_schedule(schedule)] if schedule is not None else []
        return optax.chain(*clipping, _line_search(name, learning_rate, kwargs), *scheduling)
    return optax.chain(*clipping, _optax_optimizer(name, learning_rate, schedule, kwargs))


def _line_search(
    name: str, learning_rate: float | None, kwargs: dict[str, Any]
) -> optax.GradientTransformationExtraArgs:
    if learning_rate is not None:
        kwargs = {**kwargs, "initial_learning_rate": learning_rate}
    return getattr(salsa_optax, name)(**kwargs)


def _optax_optimizer(
    name: str, learning_rate: float | None, schedule: Any, kwargs: dict[str, Any]
) -> optax.GradientTransformation:
    factory = getattr(optax, name, None) or getattr(optax.contrib, name, None)
    if not callable(factory) or "learning_rate" not in inspect.signature(factory).parameters:
        raise ValueError(
            f"Unknown optimizer {name!r}: use one of {', '.join(LINE_SEARCHES)} or the name of an "
            "optax or optax.contrib optimizer that takes a learning_rate (e.g. 'adam', 'sgd')."
        )
    if learning_rate is None:
        learning_rate = DEFAULT_LEARNING_RATES.get(name)
    if learning_rate is None:
        default = inspect.signature(factory).parameters["learning_rate"].default
        if default is inspect.Parameter.empty:
            raise ValueError(f"Optimizer {name!r} needs a learning rate: set config.learning_rate.")
        learning_rate = default
    if schedule is not None:
        # The schedule times the rate, as the learning rate: logged as the step size it is.
        peak = learning_rate
        learning_rate = lambda count: peak * schedule(count)
    # Everything but the learning rate stays a Python value (booleans such as `nesterov` must).
    return optax.inject_hyperparams(factory, static_args=tuple(kwargs))(
        learning_rate=learning_rate, **kwargs
    )


def step_metrics(opt_state: Any) -> dict[str, Any]:
    """The step size of the last step and, for a line search, what its search did.

    Args:
      opt_state: the pure state (arrays, no NNX variables) of an optimizer made by
        :func:`create_optimizer`; for an ``nnx.Optimizer`` that is
        ``nnx.as_pure(optimizer.opt_state)``.

    Returns:
      ``step_size`` (the step size used by the last update), ``searched`` (1.0 when the last step
      ran a line search), ``num_evaluations`` (loss evaluations ``value_fn`` made in it) and
      ``value_mismatches`` (the run's searches after which ``value_fn`` disagreed with ``value``
      so far), as float32 scalars, so that averaging them over steps gives the searched fraction
      and the extra forward passes per step.
    """
    info = optax.tree_utils.tree_get(opt_state, "info")
    if isinstance(info, tuple) and hasattr(info, "total_value_mismatches"):
        return {
            "step_size": jnp.asarray(info.step_size, jnp.float32),
            "searched": jnp.asarray(info.searched, jnp.float32),
            "num_evaluations": jnp.asarray(info.num_evaluations, jnp.float32),
            "value_mismatches": jnp.asarray(info.total_value_mismatches, jnp.float32),
        }
    learning_rate = optax.tree_utils.tree_get(opt_state, "learning_rate")
    if learning_rate is None:
        raise ValueError(
            "The optimizer state has no `learning_rate`: build it with create_optimizer."
        )
    zero = jnp.zeros((), jnp.float32)
    return {
        "step_size": jnp.asarray(learning_rate, jnp.float32),
        "searched": zero,
        "num_evaluations": zero,
        "value_mismatches": zero,
    }
