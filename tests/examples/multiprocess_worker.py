"""One process of trainer runs under ``tfds.testing.mock_data``, for ``test_multiprocess.py``.

``python multiprocess_worker.py RUNS.json [--coordinator_address=... --num_processes=...
--process_id=...]`` joins the other processes with the trainers' own flags, then makes the runs
that the JSON file lists, one after the other. A run is ``{"example": "resnet", "config":
"tiny", "set": ["key=value", ...], "num_examples": 32, "workdir": ..., "out": ...}``, optionally
with ``"sigterm": [process, step]``: that process sends itself SIGTERM while it prepares that
step's batch (counted in batches sharded since the run's start: no evaluation may come between).
For each run the process writes to ``out % process_index`` (npz) what it saw: the
step, step size and loss of every step, its own copy of every array of the final state, and the
wall time of ``train_and_evaluate``.
"""

import argparse
import importlib
import json
import os
import pathlib
import signal
import sys
import time

import jax
import numpy as np
import tensorflow_datasets as tfds
from flax import nnx
from tensorflow_datasets.testing import mocking

HERE = pathlib.Path(__file__).resolve().parent


def main() -> None:
    sys.path[:0] = [str(HERE.parents[1]), str(HERE)]  # the repository's `examples`, `conftest`
    import conftest

    from examples.common import distributed

    parser = argparse.ArgumentParser()
    parser.add_argument("runs")
    distributed.add_flags(parser)
    args = parser.parse_args()
    distributed.initialize(args)
    mocking._getitems = conftest.fixed_getitems
    for run in json.loads(pathlib.Path(args.runs).read_text()):
        np.savez(run["out"] % jax.process_index(), **train(run))


def train(run: dict) -> dict:
    """Makes one run; what this process saw of it."""
    from examples.common import configs, loop, sharding

    config = configs.load_config(f"examples.{run['example']}.configs", run["config"], run["set"])
    trainer = importlib.import_module(f"examples.{run['example']}.train")
    seen = {}

    def recording_train(state, **kwargs):
        seen["state"], seen["records"] = train_loop(state, **kwargs)
        return seen["state"], seen["records"]

    def shard_and_stop(batch, mesh):
        seen["batches"] = seen.get("batches", 0) + 1
        process, step = run.get("sigterm", (None, None))
        if jax.process_index() == process and seen["batches"] == step - seen["first_step"]:
            os.kill(os.getpid(), signal.SIGTERM)
        return shard_batch(batch, mesh)

    train_loop, shard_batch = loop.train, sharding.shard_batch
    seen["first_step"] = _latest_step(run["workdir"])
    loop.train, sharding.shard_batch = recording_train, shard_and_stop
    try:
        with tfds.testing.mock_data(num_examples=run["num_examples"]):
            start = time.perf_counter()
            trainer.train_and_evaluate(config, run["workdir"])
            seconds = time.perf_counter() - start
    finally:
        loop.train, sharding.shard_batch = train_loop, shard_batch
    steps = [r for r in seen["records"] if "num_steps" in r]
    assert all(r["num_steps"] == 1 for r in steps), "log_every=1: one record per step"
    return {
        "step": [r["step"] for r in steps],
        "step_size": [r["step_size"] for r in steps],
        "train_loss": [r["train_loss"] for r in steps],
        "seconds": seconds,
        **flat_state(seen["state"]),
    }


def _latest_step(workdir: str) -> int:
    folder = pathlib.Path(workdir) / "checkpoints"
    steps = [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []
    return max(steps, default=0)


def flat_state(state: nnx.State) -> dict[str, np.ndarray]:
    """``{"state<path>": array}``: this process's own copy of every (replicated) array of
    ``state``, typed keys as their data."""

    def local_copy(array):
        if jax.dtypes.issubdtype(array.dtype, jax.dtypes.prng_key):
            array = jax.random.key_data(array)
        return np.asarray(array.addressable_data(0))

    leaves = jax.tree_util.tree_leaves_with_path(nnx.to_pure_dict(state))
    return {"state" + jax.tree_util.keystr(path): local_copy(leaf) for path, leaf in leaves}


if __name__ == "__main__":
    main()
