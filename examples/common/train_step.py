"""One optimizer step of an NNX model that a line search can drive, and its pure jittable form.

A line search evaluates the loss at trial parameters through ``value_fn``. For those probes to be
faithful and harmless:

* every probe sees the same batch, the same augmentation and the same dropout key as the gradient
  call: the batch is fixed for the step, and the model's non-parameter state (BatchNorm
  statistics, RNG counters) is the same snapshot for every probe;
* BatchNorm runs in training mode (batch statistics) in every probe, as in the gradient call, so
  the loss the search compares is the loss that was differentiated;
* probes change nothing: their updates of that non-parameter state are thrown away; the gradient
  call's updates (one BatchNorm moving-average step, one RNG advance) are applied once, after the
  optimizer has updated the parameters.

:func:`optimizer_step` implements exactly this; :func:`pure_train_step` turns a step function on
``(model, optimizer, batch)`` into ``(state, batch) -> (state, metrics)`` for ``jax.jit``.
"""

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
from flax import nnx

from examples.common import sharding

LossFn = Callable[[nnx.Module], tuple[jax.Array, Any]]


def optimizer_step(
    model: nnx.Module, optimizer: nnx.Optimizer, loss_fn: LossFn
) -> tuple[jax.Array, Any]:
    """Updates ``model`` in place by one step of ``optimizer`` on ``loss_fn``.

    Args:
      model: the NNX model; its parameters are those selected by ``optimizer.wrt``, everything
        else (BatchNorm statistics, RNG state...) is state that the forward pass may update.
      optimizer: an ``nnx.Optimizer`` for ``model``; any optax transform works, and a line search
        receives ``value``, ``grad`` and ``value_fn`` through ``optimizer.update``.
      loss_fn: ``loss_fn(model) -> (loss, aux)`` on this step's batch, in training mode.

    Returns:
      ``(loss, aux)`` of the gradient evaluation, at the parameters before the step.

    Example:

    >>> import optax
    >>> model = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
    >>> optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    >>> x = jax.numpy.ones((4, 2))
    >>> loss_fn = lambda m: ((m(x) - 1.0) ** 2).mean()
    >>> first, _ = optimizer_step(model, optimizer, lambda m: (loss_fn(m), None))
    >>> bool(loss_fn(model) < first)
    True
    """
    graphdef, params, rest = nnx.split(model, optimizer.wrt, ...)

    def pure_loss(params, rest):
        # `copy=True`: each call builds its own model, so BatchNorm in training mode can update it
        # inside this trace; the caller decides whether those updates are kept.
        trial = nnx.merge(graphdef, params, rest, copy=True)
        loss, aux = loss_fn(trial)
        return loss, (aux, nnx.state(trial, nnx.Not(optimizer.wrt)))

    (loss, (aux, updated_rest)), grads = jax.value_and_grad(pure_loss, has_aux=True)(params, rest)

    def value_fn(trial_params):
        return pure_loss(trial_params, rest)[0]  # probes start from, and discard, the same `rest`

    optimizer.update(model, grads, value=loss, grad=grads, value_fn=value_fn)
    nnx.update(model, updated_rest)
    return loss, aux


StepFn = Callable[[nnx.Module, nnx.Optimizer, Any], dict[str, jax.Array]]


def pure_train_step(graphdef: nnx.GraphDef, step_fn: StepFn) -> Callable[..., Any]:
    """Turns ``step_fn(model, optimizer, batch) -> metrics`` into a pure function of arrays.

    Args:
      graphdef: the graph definition from ``graphdef, state = nnx.split((model, optimizer))``.
      step_fn: updates ``model`` and ``optimizer`` in place (e.g. with :func:`optimizer_step`)
        and returns a dict of scalar metrics.

    Returns:
      ``train_step(state, batch) -> (new_state, metrics)``, ready for ``jax.jit`` with the state
      donated; ``nnx.merge(graphdef, new_state)`` gives back ``(model, optimizer)``.
    """

    def train_step(state: nnx.State, batch: Any) -> tuple[nnx.State, dict[str, jax.Array]]:
        model, optimizer = nnx.merge(graphdef, state)
        metrics = step_fn(model, optimizer, batch)
        return nnx.state((model, optimizer)), metrics

    return train_step


class TraceCounter:
    """Wraps a function and counts how often it runs in Python, i.e. how often ``jit`` traces it.

    >>> f = TraceCounter(lambda x: x + 1)
    >>> g = jax.jit(f)
    >>> _ = g(1.0), g(2.0), g(jax.numpy.ones(2))
    >>> f.count  # one trace per input shape
    2
    """

    def __init__(self, fn: Callable[..., Any]):
        functools.update_wrapper(self, fn)
        self._fn = fn
        self.count = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.count += 1
        return self._fn(*args, **kwargs)


class CompiledSteps(NamedTuple):
    """The jitted data-parallel steps of a trainer, and how often each was traced.

    Attributes:
      train_fn: ``train_fn(state, batch) -> (state, metrics)``, state donated.
      eval_fn: ``eval_fn(state, batch) -> sums``.
      train_traces: :class:`TraceCounter` of the train step.
      eval_traces: :class:`TraceCounter` of the eval step.
    """

    train_fn: Callable[..., Any]
    eval_fn: Callable[..., Any]
    train_traces: TraceCounter
    eval_traces: TraceCounter


def compile_steps(
    graphdef: nnx.GraphDef,
    step_fn: StepFn,
    eval_step: Callable[[nnx.Module, Any], Any],
    mesh: Any,
) -> CompiledSteps:
    """Jits ``step_fn`` (see :func:`pure_train_step`) and ``eval_step(model, batch)`` over ``mesh``.

    The batch is sharded along the mesh's data axis, the state replicated and, for the train step,
    donated; each step counts its traces so a trainer can report its compilations.
    """
    train_traces = TraceCounter(pure_train_step(graphdef, step_fn))
    eval_traces = TraceCounter(lambda state, batch: eval_step(nnx.merge(graphdef, state)[0], batch))
    return CompiledSteps(
        train_fn=sharding.data_parallel_jit(train_traces, mesh, donate_state=True),
        eval_fn=sharding.data_parallel_jit(eval_traces, mesh),
        train_traces=train_traces,
        eval_traces=eval_traces,
    )
