"""Results of the runs: the chosen grid member per optimizer and task, ranks and costs."""

import math
from collections.abc import Mapping, Sequence

import numpy as np


def _mean_std(values) -> tuple[float, float]:
    values = np.asarray(values, np.float64)
    if len(values) == 0:
        return float("nan"), float("nan")
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _mean_val_metric(runs: Sequence[dict]) -> float:
    """Mean validation metric of a grid member's seeds; NaN when one of them diverged."""
    return float(np.mean([r["val_metric"] if r["finite"] else math.nan for r in runs]))


def _better(higher_is_better: bool):
    """Sort key: best first, non-finite last."""
    sign = -1.0 if higher_is_better else 1.0
    return lambda x: (not math.isfinite(x), sign * x if math.isfinite(x) else 0.0)


def summarize(
    runs: Sequence[dict], tasks: Mapping[str, dict], optimizers: Mapping[str, dict]
) -> dict:
    """Per task and optimizer: the chosen grid member, its mean ± std over seeds, its cost;
    across tasks: the mean rank and the cost of a tuned result."""
    summary = {"tasks": {}, "mean_rank": {}, "cost": {}}
    for task_name, task_meta in tasks.items():
        key = _better(task_meta["higher_is_better"])
        rows = {}
        for name in optimizers:
            own = [r for r in runs if r["task"] == task_name and r["optimizer"] == name]
            if not own:
                continue
            members = list(dict.fromkeys(r["member"] for r in own))  # in grid order
            by_member = {m: [r for r in own if r["member"] == m] for m in members}

            chosen = min(members, key=lambda m: key(_mean_val_metric(by_member[m])))
            picked = by_member[chosen]
            row = {"member": chosen, "seeds": len(picked), "grid_size": len(members)}
            # The best member at the end of a grid: a wider grid might have done better.
            row["grid_edge"] = len(members) > 2 and chosen in (members[0], members[-1])
            for field in ("train_loss", "val_metric", "test_metric", "test_loss"):
                values = [r[field] if r["finite"] else math.nan for r in picked]
                row[field], row[f"{field}_std"] = _mean_std(values)
            for field in ("wall_s", "grad_evals", "value_evals", "hvp_evals", "passes"):
                row[field], row[f"{field}_std"] = _mean_std([r[field] for r in picked])
            row["diverged"] = sum(not r["finite"] for r in picked)
            # Cost of reaching this result: every member of the grid, one seed's worth each.
            row["cost_wall_s"] = sum(np.mean([r["wall_s"] for r in by_member[m]]) for m in members)
            row["cost_passes"] = sum(np.mean([r["passes"] for r in by_member[m]]) for m in members)
            rows[name] = row
        for name, row in rows.items():  # a prior run is part of the price
            prior = rows.get(optimizers[name]["prior"])
            if prior:
                row["cost_wall_s"] += prior["cost_wall_s"]
                row["cost_passes"] += prior["cost_passes"]
                row["grid_size"] += prior["grid_size"]
        scores = {name: key(row["test_metric"]) for name, row in rows.items()}
        for name, row in rows.items():  # ties share the mean of the ranks they span
            better = sum(other < scores[name] for other in scores.values())
            equal = sum(other == scores[name] for other in scores.values())
            row["rank"] = better + (equal + 1) / 2
        summary["tasks"][task_name] = rows
    for name in optimizers:
        rows = [t[name] for t in summary["tasks"].values() if name in t]
        if rows:
            summary["mean_rank"][name] = float(np.mean([row["rank"] for row in rows]))
            summary["cost"][name] = {
                "tasks": len(rows),
                "runs": sum(row["grid_size"] for row in rows),
                "wall_s": float(sum(row["cost_wall_s"] for row in rows)),
                "passes": float(sum(row["cost_passes"] for row in rows)),
            }
    return summary
