"""A tqdm progress bar that shows loss, accuracy, step size and the searched fraction.

>>> bar = progress_bar(total=10, initial=0, disable=True)
>>> show_metrics(bar, {"train_loss": 0.5, "train_accuracy": 0.9, "step_size": 1e-3,
...                    "searched": 0.25, "num_evaluations": 1.0})
>>> bar.postfix
'loss=0.5000, acc=0.900, step=1.00e-03, searched=25%'
"""

from collections.abc import Mapping
from typing import Any

import tqdm

# metric key -> (label, format); metrics without an entry are not shown.
_SHOWN = {
    "train_loss": ("loss", "{:.4f}"),
    "train_accuracy": ("acc", "{:.3f}"),
    "step_size": ("step", "{:.2e}"),
    "searched": ("searched", "{:.0%}"),
}


def progress_bar(total: int, initial: int = 0, disable: bool = False, desc: str = "train"):
    """A bar over ``total`` steps, starting at ``initial`` (the resumed step)."""
    return tqdm.tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="step",
        dynamic_ncols=True,
        mininterval=1.0,
        disable=disable,
    )


def show_metrics(bar: tqdm.tqdm, metrics: Mapping[str, Any]) -> None:
    """Shows the metrics of :data:`_SHOWN` that ``metrics`` has, after the bar."""
    bar.set_postfix_str(
        ", ".join(
            f"{label}={fmt.format(metrics[key])}"
            for key, (label, fmt) in _SHOWN.items()
            if key in metrics
        ),
        refresh=False,
    )
