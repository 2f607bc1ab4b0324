"""Runs taken from earlier result files instead of being trained again (``--reuse``)."""

import json
import os
from collections.abc import Mapping, Sequence

import numpy as np


def run_key(
    task: str,
    name: str,
    member: str,
    kwargs: Mapping,
    seed: int,
    steps: int,
    batch: int,
    recalibration_batches: int = 0,
):
    """A run's configuration as a string; a recalibrated evaluation is part of it when asked for."""
    fields = [task, name, member, kwargs, seed, steps, batch]
    if recalibration_batches:
        fields.append({"recalibration_batches": recalibration_batches})
    return json.dumps(fields, sort_keys=True, default=repr)


def steps_prefix(run: Mapping) -> str:
    return f"{run['task']}|{run['optimizer']}|{run['member']}|{run['seed']}|"


def load_reusable(paths: Sequence[str]) -> dict[str, dict]:
    """Runs of earlier result files, keyed by their full configuration; per-step data included."""
    found = {}
    for path in paths:
        with open(path) as f:
            old = json.load(f)
        steps_path = path.removesuffix(".json") + "_steps.npz"
        arrays = np.load(steps_path) if os.path.exists(steps_path) else {}
        for run in old["runs"]:
            prefix = steps_prefix(run)
            run = dict(
                run,
                per_step={k[len(prefix) :]: arrays[k] for k in arrays if k.startswith(prefix)},
            )
            found[run["key"]] = run
    return found
