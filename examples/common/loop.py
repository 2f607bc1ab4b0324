"""The training loop every example shares: steps, logs, evaluation, checkpoints, clean stops.

Given a jitted ``train_fn(state, batch) -> (state, metrics)`` (see
:mod:`~examples.common.train_step` and :mod:`~examples.common.sharding`), :func:`train` runs it
over the epochs' batches, and

* resumes from the newest checkpoint in ``workdir/checkpoints`` if there is one (the input
  pipeline must make the batches a function of the step for the resumed run to be identical);
* averages the step metrics over ``log_every`` steps (and the end of each epoch) into
  ``workdir/metrics.jsonl`` and the progress bar;
* evaluates after each epoch and writes that record too;
* saves a checkpoint after each epoch, at the end, and when SIGTERM or Ctrl-C asks it to stop.

The same loop runs in every process of a multi-process run (:mod:`~examples.common.distributed`):
each process feeds its rows of the global batch, all of them save and restore the checkpoints
together (``workdir`` must be a folder they all see), and process 0 alone writes the records and
draws the progress bar and the plot. A stop request on any process stops all of them at the next
logged step.

:func:`write_summary` then draws the curves and writes ``workdir/summary.json``.
"""

import json
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from flax import nnx

from examples.common import (
    checkpointing,
    distributed,
    metrics,
    plotting,
    progress,
    sharding,
    shutdown,
)


def train(
    state: nnx.State,
    *,
    train_fn: Callable[[nnx.State, Any], tuple[nnx.State, dict[str, Any]]],
    epoch_batches: Callable[[int, int], Iterable[Any]],
    evaluate: Callable[[nnx.State], dict[str, float]],
    mesh: Any,
    num_steps: int,
    steps_per_epoch: int,
    workdir: str,
    log_every: int = 50,
    show_progress: bool = True,
) -> tuple[nnx.State, list[dict[str, Any]]]:
    """Trains ``state`` up to step ``num_steps``, resuming from ``workdir`` where possible.

    Args:
      state: the initial train state, replicated over ``mesh`` (also the template to restore
        checkpoints into).
      train_fn: the jitted train step.
      epoch_batches: ``epoch_batches(epoch, start)`` yields this process's rows
        (:func:`~examples.common.sharding.process_rows`) of the batches of ``epoch`` from its
        step ``start`` on (``start > 0`` when resuming mid-epoch).
      evaluate: returns the eval metrics of a state, with keys starting ``eval_``.
      mesh: the device mesh the batches are sharded over.
      num_steps: total train steps.
      steps_per_epoch: train steps per epoch.
      workdir: where ``metrics.jsonl`` and ``checkpoints/`` live.
      log_every: steps per logged record.
      show_progress: whether to draw the progress bar (process 0 only).

    Returns:
      ``(state, records)``: the final state and every record of ``metrics.jsonl`` (on every
      process); a stopped run returns early, with its checkpoint saved.
    """
    checkpointer = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"))
    step = 0
    if checkpointer.latest_step() is not None:
        step, state = checkpointer.restore(state)
    primary = distributed.is_primary()
    writer = metrics.JsonlWriter(
        os.path.join(workdir, "metrics.jsonl"), resume_step=step or None, to_file=primary
    )
    clock = _Clock(writer.records)
    window = metrics.MetricsWindow()
    bar = progress.progress_bar(num_steps, initial=step, disable=not (show_progress and primary))
    stopping = False
    with shutdown.StopRequest() as stop, writer, checkpointer, bar:
        while step < num_steps and not stopping:
            epoch, start = divmod(step, steps_per_epoch)
            for batch in epoch_batches(epoch, start):
                state, step_metrics = train_fn(state, sharding.shard_batch(batch, mesh))
                window.add(step_metrics)
                step += 1
                bar.update()
                last_of_epoch = step % steps_per_epoch == 0 or step == num_steps
                logged = step % log_every == 0 or last_of_epoch
                stopping = stop.agreed(sync=logged)
                if logged or stopping:
                    num_logged = len(window)
                    means = window.means()
                    progress.show_metrics(bar, means)
                    writer.write(
                        {"step": step, "num_steps": num_logged, **means, "elapsed": clock()}
                    )
                if stopping or step == num_steps:
                    break
            if last_of_epoch:
                writer.write(
                    {"step": step, "epoch": epoch + 1, **evaluate(state), "elapsed": clock()}
                )
            checkpointer.save(step, state)
    return state, writer.records


def write_summary(
    records: list[dict[str, Any]],
    workdir: str,
    *,
    title: str,
    compiled: Any,
    **extra: Any,
) -> dict[str, Any]:
    """Plots ``workdir/curves.png`` and writes and returns the run's ``workdir/summary.json``.

    In a multi-process run process 0 writes both files; every process returns the summary.

    Args:
      records: the records :func:`train` returned.
      workdir: the run's folder.
      title: the plot's title.
      compiled: the :class:`~examples.common.train_step.CompiledSteps` the run trained with.
      **extra: further summary entries.

    Returns:
      :func:`examples.common.metrics.summarize` of ``records``, then ``extra``, then
      ``train_compiles`` and ``eval_compiles`` (traces of each step) and ``plot`` (the PNG).
    """
    plot = os.path.join(workdir, "curves.png")
    summary = {
        **metrics.summarize(records),
        **extra,
        "train_compiles": compiled.train_traces.count,
        "eval_compiles": compiled.eval_traces.count,
        "plot": plot,
    }
    if distributed.is_primary():
        plotting.plot_training_curves(records, plot, title=title)
        with open(os.path.join(workdir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
    return summary


class _Clock:
    """Seconds of training so far, counting the runs that were resumed from."""

    def __init__(self, records: Iterable[dict[str, Any]]):
        self._before = max((r.get("elapsed", 0.0) for r in records), default=0.0)
        self._start = time.perf_counter()

    def __call__(self) -> float:
        return self._before + time.perf_counter() - self._start
