"""The end-of-run figure: training loss, eval accuracy and step size over steps.

>>> import tempfile, pathlib
>>> records = [{"step": 10, "num_steps": 10, "train_loss": 1.0, "step_size": 1e-3},
...            {"step": 20, "num_steps": 10, "train_loss": 0.5, "step_size": 2e-3},
...            {"step": 20, "eval_accuracy": 0.8}]
>>> path = plot_training_curves(records, pathlib.Path(tempfile.mkdtemp()) / "curves.png")
>>> path.stat().st_size > 0
True
"""

import os
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: runs on machines without a display
from matplotlib import pyplot as plt

# (record key, panel title, log-scale y axis)
DEFAULT_PANELS = (
    ("train_loss", "training loss", True),
    ("eval_accuracy", "eval accuracy", False),
    ("step_size", "step size", True),
)


def plot_training_curves(
    records: Iterable[Mapping[str, Any]],
    path: os.PathLike[str] | str,
    panels: Sequence[tuple[str, str, bool]] = DEFAULT_PANELS,
    title: str | None = None,
) -> pathlib.Path:
    """Plots each panel's key against ``step`` over the records that have it; writes a PNG.

    Args:
      records: metric records (see :mod:`examples.common.metrics`), each with a ``step``.
      path: the PNG to write (its folder is created).
      panels: ``(key, title, log_scale)`` for each panel, left to right.
      title: the figure title (e.g. the optimizer and model).

    Returns:
      ``path`` as a ``pathlib.Path``.
    """
    records = list(records)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5), squeeze=False)
    for ax, (key, panel_title, log_scale) in zip(axes[0], panels, strict=True):
        points = [(r["step"], r[key]) for r in records if key in r]
        if points:
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, marker="o" if len(points) < 30 else None)
        if log_scale:
            ax.set_yscale("log")
        ax.set_title(panel_title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
