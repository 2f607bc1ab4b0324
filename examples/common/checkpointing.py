"""Orbax checkpoints of a training state that resume bit-identically.

The state saved is everything that moves during training: parameters, BatchNorm statistics, RNG
state, the optimizer state (moments, step size, line-search averages) and the step counter. A run
that also makes its data order a function of the step (see the input pipelines) then continues
exactly as if it had not stopped.

Typed PRNG keys (``jax.random.key``) are stored as their raw ``key_data`` and rewrapped on
restore, since orbax stores plain arrays only.

>>> import tempfile
>>> model = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
>>> _, state = nnx.split(model)
>>> with Checkpointer(tempfile.mkdtemp()) as checkpointer:
...   checkpointer.save(7, state)
...   step, restored = checkpointer.restore(state)
>>> step, bool((restored["kernel"][...] == state["kernel"][...]).all())
(7, True)
"""

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx


def _is_key(x: Any) -> bool:
    return jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_arrays(state: nnx.State) -> dict[str, Any]:
    return jax.tree.map(
        lambda x: jax.random.key_data(x) if _is_key(x) else x, nnx.to_pure_dict(state)
    )


class Checkpointer:
    """Saves and restores an ``nnx.State`` under ``directory``, keeping the last few steps.

    Args:
      directory: the checkpoint folder (created; an existing one is resumed from).
      max_to_keep: how many checkpoints to keep.
    """

    def __init__(self, directory: os.PathLike[str] | str, max_to_keep: int = 2):
        self._manager = ocp.CheckpointManager(
            os.path.abspath(directory),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep,
                create=True,
                # Saving blocks until written: a checkpoint is complete when `save` returns, even if
                # the process is then stopped, and donated state buffers are never read late.
                enable_async_checkpointing=False,
            ),
        )

    def latest_step(self) -> int | None:
        """The step of the newest checkpoint, or None when there is none."""
        return self._manager.latest_step()

    def save(self, step: int, state: nnx.State) -> None:
        """Writes ``state`` as the checkpoint of ``step`` (no-op if that step is saved already)."""
        if step in self._manager.all_steps():
            return
        self._manager.save(step, args=ocp.args.StandardSave(_to_arrays(state)))
        self._manager.wait_until_finished()

    def restore(self, template: nnx.State, step: int | None = None) -> tuple[int, nnx.State]:
        """The checkpoint of ``step`` (default: the newest), shaped and sharded like ``template``.

        Args:
          template: a state of the same structure, e.g. a freshly initialised one; it is not
            modified.
          step: which checkpoint; default the newest.

        Returns:
          ``(step, state)``.

        Raises:
          FileNotFoundError: if there is no checkpoint to restore.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"No checkpoint in {self._manager.directory}.")
        arrays = self._manager.restore(step, args=ocp.args.StandardRestore(_to_arrays(template)))
        pure = jax.tree.map(
            lambda saved, like: (
                jax.random.wrap_key_data(saved, impl=jax.random.key_impl(like))
                if _is_key(like)
                else saved
            ),
            arrays,
            nnx.to_pure_dict(template),
        )
        state = jax.tree.map(lambda x: x, template)  # a new State: `template` stays untouched
        nnx.replace_by_pure_dict(state, pure)
        return step, state

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
