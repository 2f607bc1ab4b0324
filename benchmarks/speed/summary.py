"""Numbers of a timed model: step times, overheads, search counts, memory."""

from typing import Any

import numpy as np

from benchmarks.speed.registry import PROBES, TORCH_COUNTERPARTS
from benchmarks.speed.runners import JaxRunner
from benchmarks.speed.timing import Plan, chunk_means, steady_chunks, steady_ratio


def summarize_variant(
    times: np.ndarray,
    baseline: np.ndarray,
    forward_ms: float | None,
    plan: Plan,
    search: tuple[np.ndarray, np.ndarray],
) -> dict[str, Any]:
    """Step time, overhead against ``baseline`` and line-search counts of one variant.

    With ``forward_ms`` (the cost of one loss evaluation) the steady state also gets its physical
    limit, ``1 + evaluations per step * forward_ms / baseline step``.
    """
    chunks = steady_chunks(plan)
    evaluations, searched = search
    steady = slice(plan.start_steps, plan.steps)
    start = slice(0, plan.start_steps)
    summary: dict[str, Any] = {}
    if plan.start_steps:
        summary["start"] = phase_summary(
            times[start], baseline[start], evaluations[start], searched[start]
        )
    if not chunks:
        return summary
    steady_summary = phase_summary(
        times[steady], baseline[steady], evaluations[steady], searched[steady]
    )
    ratio = steady_ratio(times, baseline, plan)
    steady_summary.update(step_ms=1e3 * float(np.median(chunk_means(times, chunks))), ratio=ratio)
    if forward_ms is not None:
        baseline_ms = 1e3 * float(np.median(chunk_means(baseline, chunks)))
        limit = 1 + steady_summary["evaluations_per_step"] * forward_ms / baseline_ms
        steady_summary.update(physical_limit=limit, excess_over_limit=ratio["median"] / limit)
    summary["steady"] = steady_summary
    return summary


def phase_summary(times, baseline, evaluations, searched) -> dict[str, Any]:
    """Means over one phase (start or steady) of a variant's steps."""
    summary = {
        "steps": len(times),
        "mean_step_ms": 1e3 * float(times.mean()),
        "ratio_of_means": float(times.mean() / baseline.mean()),
        "ratio_of_medians": float(np.median(times) / np.median(baseline)),
        "evaluations_per_step": float(evaluations.mean()),
        "searched_fraction": float(searched.mean()),
    }
    if searched.any() and not searched.all():
        summary["searched_step_ms"] = 1e3 * float(np.median(times[searched]))
        summary["skipped_step_ms"] = 1e3 * float(np.median(times[~searched]))
        summary["baseline_median_ms"] = 1e3 * float(np.median(baseline))
    return summary


def probe_summary(record: dict, plan: Plan, clock: str) -> dict[str, float]:
    forward, forward_backward = (
        1e3 * float(np.median(chunk_means(record[name][clock], plan.chunks()))) for name in PROBES
    )
    return {
        "forward_ms": forward,
        "forward_backward_ms": forward_backward,
        "forward_over_forward_backward": forward / forward_backward,
    }


def memory_summary(runner: JaxRunner, adam: JaxRunner) -> dict[str, Any]:
    memory: dict[str, Any] = {
        "opt_state_bytes": runner.opt_state_bytes,
        "opt_state_extra_param_copies": (runner.opt_state_bytes - adam.opt_state_bytes)
        / runner.param_bytes,
        **runner.memory,
    }
    if runner.memory and adam.memory:
        memory["peak_ratio_to_adam"] = runner.memory["peak_bytes"] / adam.memory["peak_bytes"]
        memory["temp_extra_param_copies"] = (
            runner.memory["temp_bytes"] - adam.memory["temp_bytes"]
        ) / runner.param_bytes
    return memory


def torch_summary(record, torch_runners, plan, clocks) -> dict[str, Any]:
    """The authors' optimizer against torch Adam, and our SaLSa against theirs."""
    summary: dict[str, Any] = {}
    for runner in torch_runners:
        search = runner.search_record(plan.warmup)
        summary[runner.name] = {
            clock: summarize_variant(
                record[runner.name][clock], record["torch_adam"][clock], None, plan, search
            )
            for clock in clocks
        }
    summary["speedups"] = {
        ours: {
            clock: steady_ratio(record[theirs][clock], record[ours][clock], plan)
            for clock in clocks
        }
        for ours, theirs in TORCH_COUNTERPARTS.items()
        if ours in record
    }
    return summary
