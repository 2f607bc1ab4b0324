"""Figures of a results file: training loss and step size per task."""

from collections.abc import Mapping, Sequence

import numpy as np


def _seed_mean_curve(runs: Sequence[dict], field: str):
    curves = [r["curve"] for r in runs if field in r["curve"]]
    if not curves:
        return None, None
    steps = max((c["step"] for c in curves), key=len)
    values = np.full((len(curves), len(steps)), np.nan)
    for i, c in enumerate(curves):
        values[i, : len(c[field])] = [np.nan if v is None else v for v in c[field]]
    with np.errstate(all="ignore"):
        return np.asarray(steps), np.nanmean(values, axis=0)


def plot_task(results: Mapping, task_name: str, out_prefix: str) -> list[str]:
    """``<prefix>_loss.png`` and ``<prefix>_step_size.png`` of each optimizer's reported runs.

    The loss figure has every optimizer; the step-size figure SaLSa's step sizes (from its info),
    optax's line search's, and the tuned learning rates as dashed lines.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {"salsa": "-", "tuned": "--", "line search": ":", "lr-free": "-.", "related": ":"}
    palette = plt.get_cmap("tab20").colors[::2] + plt.get_cmap("tab20b").colors[::2]
    palette += plt.get_cmap("tab20").colors[1::2]
    written = []
    for field, ylabel in (
        ("loss", "training loss (minibatch, window mean)"),
        ("step_size", "step size"),
    ):
        fig, ax = plt.subplots(figsize=(10, 5.5))
        for i, (name, row) in enumerate(results["summary"]["tasks"][task_name].items()):
            runs = [
                r
                for r in results["runs"]
                if (r["task"], r["optimizer"], r["member"]) == (task_name, name, row["member"])
            ]
            group, color = results["optimizers"][name]["group"], palette[i % len(palette)]
            label = name + (f" ({row['member']})" if row["member"] else "")
            if field == "loss":
                steps, values = _seed_mean_curve(runs, "loss")
            elif group == "tuned":
                ax.axhline(runs[0]["kwargs"]["learning_rate"], color=color, ls="--", lw=0.8)
                ax.plot([], [], "--", color=color, lw=0.8, label=label)
                continue
            elif group == "line search":
                steps, values = _seed_mean_curve(runs, "learning_rate")
            else:
                steps, values = _seed_mean_curve(runs, "step_size")
            if steps is not None:
                ax.plot(steps, values, styles.get(group, "-"), color=color, label=label)
        lows = [np.nanmin(line.get_ydata()) for line in ax.lines if len(line.get_ydata())]
        if not lows:
            plt.close(fig)
            continue
        if field == "step_size":  # a collapsing line search would squash the others
            ax.set_ylim(bottom=max(min(lows), 1e-3 * float(np.median(lows))))
        ax.set(yscale="log", xlabel="step", ylabel=ylabel, title=f"{task_name}: {ylabel}")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
        fig.tight_layout()
        path = f"{out_prefix}_{field}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
