"""What a quality-benchmark task is: offline data, a Flax NNX model, a loss and a metric.

A task module builds a :class:`Task`. Building one is cheap and loads nothing: data is read only
when ``task.load_data()`` is called, so models stay importable on their own
(``benchmarks/speed/models.py`` imports them).
"""

from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

Arrays = Mapping[str, np.ndarray]


class Data(NamedTuple):
    """Three disjoint splits; every array in a split has the examples on its leading axis.

    Attributes:
      train: what the optimizer sees.
      val: held out from training; used only to choose the best member of a learning-rate grid.
      test: reported, never used for a choice.
    """

    train: Arrays
    val: Arrays
    test: Arrays


class Budget(NamedTuple):
    """How long one run of a task trains under a preset.

    Attributes:
      steps: optimizer steps.
      batch_size: training examples per step.
      seeds: the seeds a preset runs by default.
      eval_batch_size: examples per evaluation batch (memory bound, not a training setting).
      train_eval_examples: the first examples of the training split on which the final training
        loss is measured in evaluation mode.
    """

    steps: int
    batch_size: int
    seeds: tuple[int, ...]
    eval_batch_size: int = 1000
    train_eval_examples: int = 4000


class Task(NamedTuple):
    """A benchmark task.

    Attributes:
      name: registry key.
      description: one line for the results table.
      load_data: ``() -> Data``; the same splits on every call (fixed split seed).
      make_model: ``nnx.Rngs -> nnx.Module``; the seed's initial model.
      loss: ``(model, batch, key) -> scalar``: the mean training loss of a batch in training mode;
        ``key`` drives dropout, so a line search's trial evaluations see the same noise.
      evaluate: ``(model, batch) -> (loss, metric)``, per-example arrays in evaluation mode.
      metric: name of the test metric.
      higher_is_better: direction of ``metric``.
      budgets: ``{"quick": Budget, "cpu": Budget, "full": Budget}``, one per preset of
        ``benchmarks.quality``.
      lr_grid_scale: multiplies the learning rates of the tuned baselines' grids (fine-tuning a
        pretrained model wants rates ten times smaller than training from scratch).
    """

    name: str
    description: str
    load_data: Callable[[], Data]
    make_model: Callable[[nnx.Rngs], nnx.Module]
    loss: Callable[[nnx.Module, Arrays, jax.Array], jax.Array]
    evaluate: Callable[[nnx.Module, Arrays], tuple[jax.Array, jax.Array]]
    metric: str
    higher_is_better: bool
    budgets: Mapping[str, Budget]
    lr_grid_scale: float = 1.0


def split_off(arrays: Arrays, count: int, seed: int = 0) -> tuple[Arrays, Arrays]:
    """Splits ``count`` random examples off ``arrays``: returns ``(rest, taken)``."""
    size = len(next(iter(arrays.values())))
    order = np.random.default_rng(seed).permutation(size)
    taken, rest = order[:count], order[count:]
    return {k: v[rest] for k, v in arrays.items()}, {k: v[taken] for k, v in arrays.items()}


def classification_loss(model: nnx.Module, batch: Arrays, key: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of ``model(batch["x"])`` against integer ``batch["y"]``."""
    del key  # the classifiers here have no dropout
    logits = model(batch["x"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()


def classification_evaluate(model: nnx.Module, batch: Arrays) -> tuple[jax.Array, jax.Array]:
    """Per-example cross-entropy and accuracy."""
    logits = model(batch["x"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])
    return loss, (jnp.argmax(logits, -1) == batch["y"]).astype(jnp.float32)
