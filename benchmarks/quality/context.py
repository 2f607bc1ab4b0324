"""A task made ready for training: its data on the device, its model, its evaluation."""

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks.tasks import Task


class Model(NamedTuple):
    """A task's model as pure pieces: ``nnx.merge(graphdef, params, rest)``."""

    graphdef: Any
    params: Any
    rest: Any


def split_model(task: Task, seed: int) -> Model:
    return Model(*nnx.split(task.make_model(nnx.Rngs(seed)), nnx.Param, ...))


def make_eval_fn(task: Task, graphdef):
    """``(params, rest, batches, weights) -> (mean loss, mean metric)`` over padded batches."""

    def evaluate(params, rest, batches, weights):
        model = nnx.merge(graphdef, params, rest, copy=True)
        loss, metric = jax.lax.map(lambda b: task.evaluate(model, b), batches)
        total = weights.sum()
        return (loss * weights).sum() / total, (metric * weights).sum() / total

    return jax.jit(evaluate)


def make_recalibrate_fn(task: Task) -> Callable | None:
    """``(params, rest, batches) -> rest``: BatchNorm statistics recomputed, or ``None``.

    ``None`` when the task's model has no :class:`flax.nnx.BatchNorm`. Otherwise each batch of
    ``batches`` (a leading batch axis) runs through the model in training mode with the
    statistics' momentum at 0, and the floating-point entries of ``rest`` become the mean of
    the batches' statistics: those of the final parameters, instead of the running averages of
    the weights training passed through. The parameters are not changed.
    """
    model = task.make_model(nnx.Rngs(0))
    norms = [m for _, m in nnx.iter_modules(model) if isinstance(m, nnx.BatchNorm)]
    if not norms:
        return None
    for norm in norms:
        norm.momentum = 0.0
    graphdef = nnx.split(model, nnx.Param, ...)[0]

    def recalibrate(params, rest, batches):
        def batch_statistics(batch):
            model = nnx.merge(graphdef, params, rest, copy=True)
            task.loss(model, batch, jax.random.key(0))
            return nnx.split(model, nnx.Param, ...)[2]

        stacked = jax.lax.map(batch_statistics, batches)
        floating = lambda a: jnp.issubdtype(a.dtype, jnp.floating)
        return jax.tree.map(lambda r, s: s.mean(0) if floating(r) else r, rest, stacked)

    return jax.jit(recalibrate)


def padded_batches(arrays, batch_size: int):
    """Splits arrays into ``[n_batches, batch_size, ...]`` (zero-padded) and 0/1 weights."""
    size = len(next(iter(arrays.values())))
    batch_size = min(batch_size, size)
    n_batches = -(-size // batch_size)
    pad = n_batches * batch_size - size

    def reshape(a):
        a = np.concatenate([a, np.zeros((pad, *a.shape[1:]), a.dtype)])
        return jnp.asarray(a.reshape(n_batches, batch_size, *a.shape[1:]))

    weights = np.concatenate([np.ones(size, np.float32), np.zeros(pad, np.float32)])
    return {k: reshape(v) for k, v in arrays.items()}, jnp.asarray(weights.reshape(n_batches, -1))


def batch_indices(size: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
    """``[steps, batch_size]`` example indices: an epoch is a fresh permutation, less its tail."""
    rng = np.random.default_rng(seed)
    per_epoch = size // batch_size
    epochs = -(-steps // per_epoch)
    rows = [rng.permutation(size)[: per_epoch * batch_size] for _ in range(epochs)]
    return np.concatenate(rows).reshape(-1, batch_size)[:steps].astype(np.int32)


@dataclasses.dataclass
class TaskContext:
    """A task's data on the device, its evaluation function and its compiled trainers."""

    task: Task
    steps: int
    batch_size: int
    train: dict
    eval_splits: dict  # split name -> (batches, weights)
    graphdef: Any
    evaluate: Callable
    seeds: tuple[int, ...] = ()
    rerun: Callable[[str], bool] = lambda name: False  # train again even if reusable
    reuse_only: bool = False  # train only reruns: a run missing from the reused files is left out
    recalibration_batches: int = 0  # > 0: BatchNorm statistics recomputed before evaluation
    recalibrate: Callable | None = None  # make_recalibrate_fn's when asked for and BatchNorm
    compiled: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def build(cls, task: Task, preset: str, steps: int | None, batch_size: int | None):
        budget = task.budgets[preset]
        data = task.load_data()
        train_eval = {k: v[: budget.train_eval_examples] for k, v in data.train.items()}
        splits = {"train": train_eval, "val": data.val, "test": data.test}
        graphdef = split_model(task, 0).graphdef
        return cls(
            task=task,
            steps=steps or budget.steps,
            batch_size=min(batch_size or budget.batch_size, _size(data.train)),
            train={k: jnp.asarray(v) for k, v in data.train.items()},
            eval_splits={k: padded_batches(v, budget.eval_batch_size) for k, v in splits.items()},
            graphdef=graphdef,
            evaluate=make_eval_fn(task, graphdef),
        )

    @property
    def train_size(self) -> int:
        return _size(self.train)


def _size(arrays: Mapping[str, Any]) -> int:
    return len(next(iter(arrays.values())))
