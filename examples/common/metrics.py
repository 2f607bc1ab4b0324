"""Metrics: averaged on the host in windows, written as JSON lines, summarised at the end.

A train step returns a dict of device scalars. :class:`MetricsWindow` keeps them without reading
them (so the host never waits for the device between logs) and averages them when asked.
:class:`JsonlWriter` appends one JSON object per line; :func:`summarize` turns those lines into
the numbers a run ends with.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "metrics.jsonl"
>>> window = MetricsWindow()
>>> window.add({"train_loss": 2.0, "step_size": 0.1, "searched": 1.0, "num_evaluations": 3.0})
>>> window.add({"train_loss": 1.0, "step_size": 0.3, "searched": 0.0, "num_evaluations": 0.0})
>>> with JsonlWriter(path) as writer:
...   writer.write({"step": 2, "num_steps": 2, **window.means()})
...   writer.write({"step": 2, "eval_accuracy": 0.75})
>>> summary = summarize(read_jsonl(path))
>>> summary["searched_fraction"], summary["evaluations_per_step"], summary["final_eval_accuracy"]
(0.5, 1.5, 0.75)
"""

import json
import os
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import numpy as np


class MetricsWindow:
    """Collects per-step metric dicts (device arrays are not read until :meth:`means`)."""

    def __init__(self):
        self._steps: list[Mapping[str, Any]] = []

    def __len__(self) -> int:
        return len(self._steps)

    def add(self, metrics: Mapping[str, Any]) -> None:
        self._steps.append(metrics)

    def means(self) -> dict[str, float]:
        """The mean of each metric over the collected steps; empties the window."""
        steps = jax.device_get(self._steps)
        self._steps = []
        return {key: float(np.mean([step[key] for step in steps])) for key in steps[0]}


class JsonlWriter:
    """Appends records to a JSON-lines file, and keeps them.

    Args:
      path: the file; its folder is created.
      resume_step: ``None`` starts a new file. Otherwise the run resumes from the checkpoint of
        this step: the records of an earlier run up to it are kept, later ones (written after the
        checkpoint by a run that then died) are dropped, so the file matches the resumed run.
      to_file: whether to write the file at all. In a multi-process run only process 0 writes
        it; the others keep the same records in memory.

    Attributes:
      records: the records of the run so far, those kept from the earlier run first.
    """

    def __init__(
        self, path: os.PathLike[str] | str, resume_step: int | None = None, *, to_file: bool = True
    ):
        self.path = pathlib.Path(path)
        kept = []
        if resume_step is not None and self.path.exists():
            kept = [r for r in read_jsonl(self.path) if r.get("step", 0) <= resume_step]
        self.records: list[dict[str, Any]] = kept
        self._file = None
        if to_file:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Rewritten aside and moved into place: another process reading the old file while
            # this one starts sees it whole.
            partial = self.path.with_name(self.path.name + ".partial")
            partial.write_text("".join(json.dumps(record) + "\n" for record in kept))
            os.replace(partial, self.path)
            self._file = self.path.open("a")

    def write(self, record: Mapping[str, Any]) -> None:
        self.records.append(dict(record))
        if self._file is not None:
            self._file.write(json.dumps(dict(record)) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def read_jsonl(path: os.PathLike[str] | str) -> list[dict[str, Any]]:
    """All records of a JSON-lines file, in order."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def summarize(records: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """What a run ends with, from its records.

    Train records carry ``num_steps`` (steps in their window) and the window means of
    ``train_loss``, ``step_size``, ``searched`` and ``num_evaluations``; eval records carry
    ``eval_accuracy`` and ``eval_loss``; records may carry ``elapsed`` (seconds of training).

    Returns:
      ``steps``, ``final_train_loss``, ``final_eval_accuracy``, ``final_eval_loss``,
      ``final_step_size``, ``median_step_size`` (over windows), ``searched_fraction`` (of all
      steps), ``evaluations_per_step`` (forward passes of the line search per step, on top of the
      gradient call), ``value_mismatches`` (positive when ``value_fn`` disagreed with ``value``
      after a search) and ``elapsed``; a value is NaN when no record has it.
    """
    records = list(records)
    train = [r for r in records if "num_steps" in r]
    evals = [r for r in records if "eval_accuracy" in r]
    weights = np.asarray([r["num_steps"] for r in train], float)

    def weighted_mean(key):
        return float(np.average([r[key] for r in train], weights=weights)) if train else np.nan

    def last(rows, key):
        return float(rows[-1].get(key, np.nan)) if rows else np.nan

    return {
        "steps": float(weights.sum()),
        "final_train_loss": last(train, "train_loss"),
        "final_eval_accuracy": last(evals, "eval_accuracy"),
        "final_eval_loss": last(evals, "eval_loss"),
        "final_step_size": last(train, "step_size"),
        "median_step_size": float(np.median([r["step_size"] for r in train])) if train else np.nan,
        "searched_fraction": weighted_mean("searched"),
        "evaluations_per_step": weighted_mean("num_evaluations"),
        "value_mismatches": last(train, "value_mismatches"),
        "elapsed": max((float(r["elapsed"]) for r in records if "elapsed" in r), default=np.nan),
    }


def format_summary(summary: Mapping[str, Any]) -> str:
    """The end-of-run report: accuracy, time, step size, line-search overhead, compiles, plot.

    >>> print(format_summary({"final_eval_accuracy": 0.875, "elapsed": 62.0, "steps": 100,
    ...                       "final_step_size": 2e-3, "median_step_size": 1e-3,
    ...                       "searched_fraction": 0.25, "evaluations_per_step": 0.5,
    ...                       "train_compiles": 1, "eval_compiles": 1, "plot": "curves.png"}))
    test accuracy   0.8750
    wall time       62 s for 100 steps (0.620 s/step, evaluation included)
    step size       final 2.00e-03, median 1.00e-03
    line search     searched on 25.0% of the steps; 0.50 extra loss evaluations per step
    compiles        train step 1, eval step 1
    plot            curves.png
    """
    s = summary
    return "\n".join(
        [
            f"test accuracy   {s['final_eval_accuracy']:.4f}",
            f"wall time       {s['elapsed']:.0f} s for {s['steps']:.0f} steps "
            f"({s['elapsed'] / max(s['steps'], 1):.3f} s/step, evaluation included)",
            f"step size       final {s['final_step_size']:.2e}, median {s['median_step_size']:.2e}",
            f"line search     searched on {s['searched_fraction']:.1%} of the steps; "
            f"{s['evaluations_per_step']:.2f} extra loss evaluations per step",
            f"compiles        train step {s['train_compiles']}, eval step {s['eval_compiles']}",
            f"plot            {s['plot']}",
        ]
        + (
            [
                "WARNING         value_fn disagreed with the loss of the gradient call after a "
                "failed search: give it the same batch, dropout key and loss scale"
            ]
            if s.get("value_mismatches", 0) > 0
            else []
        )
    )
