"""The markdown tables of a results file."""

import math
from collections.abc import Mapping, Sequence


def _fmt(mean: float, std: float | None = None, digits: int = 3) -> str:
    if not math.isfinite(mean):
        return "diverged"
    text = f"{mean:.{digits}f}"
    return f"{text} ± {std:.{digits}f}" if std else text


def markdown_report(results: Mapping) -> str:
    """The results tables: one per task, then mean ranks and the cost of a tuned result."""
    meta, summary = results["meta"], results["summary"]
    lines = [
        f"# Quality benchmark: `{meta['tag']}`",
        "",
        f"`{meta['command']}` — {meta['date']}, {meta['machine']}; jax {meta['jax']}, "
        f"optax {meta['optax']}, salsa_optax {meta['salsa_optax']} (git {meta.get('git')}); total "
        f"{meta['total_s'] / 60:.1f} min (load average {meta['load_average_start']:.1f} at the "
        f"start, {meta['load_average_end']:.1f} at the end){_reused_note(results['runs'])}.",
        "",
        "Mean ± standard deviation over seeds. A tuned row reports the grid member (`chosen`) with "
        "the best mean validation metric; the test split is never used for a choice; `grid edge` "
        "marks a choice at the end of its grid. Wall time is "
        "the training time of one run (compilation and evaluation excluded). Train loss: the loss "
        "on (up to 4 000 examples of) the training split after training, in evaluation mode. "
        "`grad evals` are forward+backward passes (one per step); `extra fwd` are a line search's "
        "additional forward passes (`value_fn` calls, read from the optimizer state's info); "
        "`HVPs` are Hessian-vector products (curvature methods); `passes / step` counts all three.",
    ]
    for task_name, rows in summary["tasks"].items():
        task = results["tasks"][task_name]
        metric = task["metric"].replace("_", " ")
        lines += [
            "",
            f"## {task_name}: {task['description']}",
            "",
            f"{task['steps']} steps, batch {task['batch_size']}, seeds "
            f"{', '.join(map(str, task['seeds']))}; {metric} "
            f"({'higher' if task['higher_is_better'] else 'lower'} is better)."
            + _recalibration_note(task),
            "",
            f"| rank | optimizer | chosen | test {metric} | train loss | wall s "
            "| grad evals | extra fwd | HVPs | passes / step |",
            "|---:|---|---|---|---|---:|---:|---:|---:|---:|",
        ]
        for name, row in sorted(rows.items(), key=lambda item: item[1]["rank"]):
            diverged = f" ({row['diverged']}/{row['seeds']} diverged)" if row["diverged"] else ""
            if row["seeds"] < len(task["seeds"]):  # --reuse-only found fewer seeds
                diverged += f" ({row['seeds']} of {len(task['seeds'])} seeds)"
            lines.append(
                f"| {row['rank']:g} | {name} | {row['member'] or '—'}"
                f"{' (grid edge)' if row['grid_edge'] else ''} | "
                f"{_fmt(row['test_metric'], row['test_metric_std'])}{diverged} | "
                f"{_fmt(row['train_loss'], row['train_loss_std'])} | {row['wall_s']:.1f} | "
                f"{row['grad_evals']:.0f} | {row['value_evals']:.0f} | {row['hvp_evals']:.0f} | "
                f"{row['passes'] / task['steps']:.2f} |"
            )
    tasks = list(summary["tasks"])
    salsa_cost = summary["cost"].get("salsa")
    lines += [
        "",
        "## Across tasks",
        "",
        "Rank by mean test metric per task (1 = best; ties share a rank). Cost of a tuned result: "
        "every run needed to report it, one seed each (a grid counts all its members, a refined "
        "schedule its prior runs too), summed over tasks; passes count forward+backward passes, "
        "extra forward passes and HVPs alike.",
        "",
        "| optimizer | mean rank | "
        + " | ".join(tasks)
        + " | runs | passes | wall s "
        + ("| passes / salsa's |" if salsa_cost else "|"),
        "|---|---:|" + "---:|" * len(tasks) + "---:|---:|---:|" + ("---:|" if salsa_cost else ""),
    ]
    for name, rank in sorted(summary["mean_rank"].items(), key=lambda item: item[1]):
        cost = summary["cost"][name]
        per_task = [
            f"{summary['tasks'][t][name]['rank']:g}" if name in summary["tasks"][t] else "—"
            for t in tasks
        ]
        relative = f" {cost['passes'] / salsa_cost['passes']:.2f}× |" if salsa_cost else ""
        lines.append(
            f"| {name} | {rank:.2f} | "
            + " | ".join(per_task)
            + f" | {cost['runs']} | {cost['passes']:.0f} | {cost['wall_s']:.1f} |{relative}"
        )
    if results["skipped"]:
        lines += ["", "Not run (not available in this installation):", ""]
        lines += [f"- `{name}`: {why}" for name, why in results["skipped"].items()]
    return "\n".join(lines) + "\n"


def _reused_note(runs: Sequence[dict]) -> str:
    reused = sum(r.get("reused", False) for r in runs)
    return f"; {reused} of {len(runs)} runs taken from earlier files (--reuse)" if reused else ""


def _recalibration_note(task: dict) -> str:
    """The task line's note on a recalibrated evaluation (``--recalibrate-batchnorm``)."""
    batches = task.get("recalibration_batches", 0)
    if not batches:
        return ""
    return (
        f" BatchNorm statistics recomputed over {batches} training batches at the final weights"
        " before every evaluation."
    )
