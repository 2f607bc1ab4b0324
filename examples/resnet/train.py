"""Training a ResNet image classifier with an optimizer picked by name (default: SaLSa).

The parts every example shares live in :mod:`examples.common`; what is particular here:

* the model has BatchNorm: the line search's loss evaluations run it in training mode on this
  step's batch, and their statistics updates are thrown away
  (:func:`examples.common.train_step.optimizer_step`); the real step applies the gradient
  call's update once;
* augmentation happens in the input pipeline, so it is fixed for the whole step: every loss
  evaluation of the search sees the same augmented batch as the gradient.
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from examples.common import loop, optimizers, sharding, train_step
from examples.resnet import input_pipeline, models


def create_model(config: Any, num_classes: int, in_channels: int) -> models.ResNet:
    """The ResNet named ``config.model`` (with ``config.num_filters`` if set).

    It is initialised in one compiled program: run op by op, every initialiser of every shape
    would be compiled on its own, which takes far longer for a ResNet.
    """
    width = {"num_filters": config.num_filters} if config.num_filters else {}
    return nnx.jit(
        lambda: models.create_model(
            config.model,
            num_classes=num_classes,
            in_channels=in_channels,
            rngs=nnx.Rngs(config.seed),
            **width,
        )
    )()


def create_optimizer(config: Any, num_steps: int) -> optax.GradientTransformationExtraArgs:
    """``config.optimizer`` with its learning rate and kwargs, its updates following
    ``config.schedule`` over ``num_steps``."""
    return optimizers.create_optimizer(
        config.optimizer,
        config.learning_rate,
        clip_norm=config.clip_norm,
        schedule=optimizers.schedule_multiplier(config.schedule, num_steps, config.warmup_fraction),
        **config.optimizer_kwargs,
    )


def create_train_state(
    config: Any, train_source: Any, num_steps: int
) -> tuple[nnx.GraphDef, nnx.State]:
    """The graph definition and initial state of ``(model, optimizer)`` for the dataset."""
    model = create_model(
        config,
        input_pipeline.num_classes(train_source),
        input_pipeline.num_channels(train_source),
    )
    optimizer = nnx.Optimizer(model, create_optimizer(config, num_steps), wrt=nnx.Param)
    return nnx.split((model, optimizer))


def cross_entropy_loss(model: models.ResNet, batch: dict[str, jax.Array]):
    """Mean cross-entropy of the batch in training mode; the logits as auxiliary output."""
    logits = model(batch["image"], train=True)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    return loss, logits


def train_step_fn(model, optimizer, batch) -> dict[str, jax.Array]:
    """One optimizer step on ``batch``; the metrics of the progress bar and the records."""
    loss, logits = train_step.optimizer_step(
        model, optimizer, functools.partial(cross_entropy_loss, batch=batch)
    )
    return {
        "train_loss": loss,
        "train_accuracy": (logits.argmax(-1) == batch["label"]).mean(),
        **optimizers.step_metrics(nnx.as_pure(optimizer.opt_state)),
    }


def eval_step(model: models.ResNet, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Summed loss, correct predictions and example count of a padded batch (running stats)."""
    logits = model(batch["image"], train=False)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    correct = logits.argmax(-1) == batch["label"]
    return {
        "loss": (loss * batch["mask"]).sum(),
        "correct": (correct * batch["mask"]).sum(),
        "count": batch["mask"].sum(),
    }


def evaluate(eval_fn, state, batches, mesh) -> dict[str, float]:
    """``eval_loss`` and ``eval_accuracy`` over all ``batches``."""
    totals = None
    for batch in batches:
        sums = eval_fn(state, sharding.shard_batch(batch, mesh))
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = jax.device_get(totals)
    return {
        "eval_loss": float(totals["loss"] / totals["count"]),
        "eval_accuracy": float(totals["correct"] / totals["count"]),
    }


def train_and_evaluate(config: Any, workdir: str) -> dict[str, Any]:
    """Trains and evaluates after each epoch; resumes from ``workdir`` if it has a checkpoint.

    Writes ``metrics.jsonl``, ``summary.json``, ``curves.png`` and ``checkpoints/`` to ``workdir``.

    Returns:
      :func:`examples.common.metrics.summarize` of the run's records, plus ``train_compiles`` and
      ``eval_compiles`` (how often the steps were compiled: once each) and ``plot`` (the PNG).
    """
    spec = input_pipeline.DATASETS[config.dataset]
    train_source = input_pipeline.get_source(config.dataset, spec.train_split, config.data_dir)
    eval_source = input_pipeline.get_source(config.dataset, spec.eval_split, config.data_dir)
    steps_per_epoch = len(train_source) // config.batch_size
    num_steps = config.num_train_steps or config.num_epochs * steps_per_epoch

    graphdef, state = create_train_state(config, train_source, num_steps)
    mesh = sharding.create_mesh()
    state = sharding.replicate(state, mesh)
    compiled = train_step.compile_steps(graphdef, train_step_fn, eval_step, mesh)
    train_rows = sharding.process_rows(mesh, config.batch_size)
    eval_rows = sharding.process_rows(mesh, config.eval_batch_size)

    def epoch_batches(epoch, start):
        first = epoch * steps_per_epoch + start
        return input_pipeline.train_batches(
            train_source,
            spec,
            batch_size=config.batch_size,
            seed=config.seed,
            start_step=first,
            num_steps=min((epoch + 1) * steps_per_epoch, num_steps),
            augment=config.augment,
            rows=train_rows,
        )

    def evaluate_state(state):
        batches = input_pipeline.eval_batches(
            eval_source, spec, batch_size=config.eval_batch_size, rows=eval_rows
        )
        return evaluate(compiled.eval_fn, state, batches, mesh)

    _, records = loop.train(
        state,
        train_fn=compiled.train_fn,
        epoch_batches=epoch_batches,
        evaluate=evaluate_state,
        mesh=mesh,
        num_steps=num_steps,
        steps_per_epoch=steps_per_epoch,
        workdir=workdir,
        log_every=config.log_every,
        show_progress=config.progress_bar,
    )
    return loop.write_summary(
        records,
        workdir,
        title=f"{config.model} on {config.dataset}, {config.optimizer}",
        compiled=compiled,
    )
