"""Training-loop parts shared by the example trainers, one job per module.

* :mod:`~examples.common.optimizers` -- an optax optimizer from its name, and its step-size and
  line-search diagnostics.
* :mod:`~examples.common.train_step` -- one line-search-aware optimizer step of an NNX model, and
  the pure ``(state, batch) -> (state, metrics)`` function that ``jax.jit`` compiles once.
* :mod:`~examples.common.sharding` -- data parallelism over the devices of all processes (batch
  sharded, assembled from each process's rows; parameters and optimizer state replicated).
* :mod:`~examples.common.distributed` -- joining the processes of a multi-host run
  (``jax.distributed``), and which of them reports.
* :mod:`~examples.common.metrics` -- averaging device metrics, JSON-lines records, the run summary.
* :mod:`~examples.common.progress` -- the progress bar.
* :mod:`~examples.common.checkpointing` -- orbax checkpoints that resume bit-identically.
* :mod:`~examples.common.shutdown` -- SIGTERM / Ctrl-C turned into "save and stop".
* :mod:`~examples.common.plotting` -- the end-of-run PNG of loss, accuracy and step size.
* :mod:`~examples.common.loop` -- the training loop that puts these together (resume, logs,
  per-epoch evaluation, checkpoints, clean stop).
* :mod:`~examples.common.configs` -- frozen-dataclass configs with ``key=value`` overrides.

A trainer for another task (a text classifier, say) needs only its model, its input pipeline and a
``loss_fn(model, batch) -> (loss, aux)``; everything else is here.
"""
