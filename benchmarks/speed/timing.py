"""How steps are timed: the interleaving plan, the timed loop and the per-chunk ratios."""

import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from benchmarks.speed.runners import CompileCounter


class Plan(NamedTuple):
    """How many steps are timed and how they are interleaved.

    Attributes:
      warmup: untimed steps per variant before the timed ones (a transform whose state changes
        type after its first step, as optax's line search does, recompiles in the second).
      steps: timed steps per variant.
      start_steps: the first timed steps, reported apart (SaLSa's warm-up searches).
      chunk: steps a variant runs before the next one takes its turn.
    """

    warmup: int
    steps: int
    start_steps: int
    chunk: int

    def chunks(self) -> list[tuple[int, int]]:
        """``[lo, hi)`` step ranges; no chunk straddles the end of the start phase."""
        starts = range(0, self.start_steps, self.chunk)
        edges = sorted({*starts, *range(self.start_steps, self.steps, self.chunk)})
        return [(lo, hi) for lo, hi in zip(edges, [*edges[1:], self.steps], strict=True) if hi > lo]


def run_interleaved(
    runners: Sequence[Any], plan: Plan, compiles: CompileCounter
) -> dict[str, dict[str, Any]]:
    """Warms every runner up, then times ``plan.steps`` steps of each, interleaved by chunk.

    Returns, per runner, seconds per timed step by wall clock (``wall``) and in CPU time of this
    process (``cpu``: on a shared machine, the time other processes take is not in it),
    ``compile_seconds``, and ``recompiles``: XLA compilations during the runner's timed steps.
    """
    record = {}
    for runner in runners:
        compile_seconds = runner.compile()
        for _ in range(plan.warmup):
            runner.step()
        record[runner.name] = {
            "wall": np.full(plan.steps, np.nan),
            "cpu": np.full(plan.steps, np.nan),
            "compile_seconds": compile_seconds,
            "recompiles": 0,
        }
    for i, (lo, hi) in enumerate(plan.chunks()):
        shift = i % len(runners)  # rotate the order so no variant always runs first
        for runner in [*runners[shift:], *runners[:shift]]:
            entry = record[runner.name]
            before = compiles.count
            for step in range(lo, min(hi, lo + getattr(runner, "steps_per_chunk", hi))):
                wall, cpu = time.perf_counter(), time.process_time()
                runner.step()
                entry["wall"][step] = time.perf_counter() - wall
                entry["cpu"][step] = time.process_time() - cpu
            entry["recompiles"] += compiles.count - before
    return record


def chunk_means(times: np.ndarray, chunks: Sequence[tuple[int, int]]) -> np.ndarray:
    """Mean step time of each chunk (untimed steps, NaN, left out)."""
    return np.array([np.nanmean(times[lo:hi]) for lo, hi in chunks])


def ratio_stats(ratios: np.ndarray) -> dict[str, float]:
    """Median and spread of per-chunk ratios."""
    q25, q50, q75 = np.percentile(ratios, [25, 50, 75])
    return {
        "median": float(q50),
        "p25": float(q25),
        "p75": float(q75),
        "min": float(ratios.min()),
        "max": float(ratios.max()),
    }


def steady_chunks(plan: Plan) -> list[tuple[int, int]]:
    return [c for c in plan.chunks() if c[0] >= plan.start_steps]


def steady_ratio(times: np.ndarray, baseline: np.ndarray, plan: Plan) -> dict | None:
    """Per-chunk ratios of mean step times in the steady state: median and spread."""
    chunks = steady_chunks(plan)
    if not chunks:
        return None
    return ratio_stats(chunk_means(times, chunks) / chunk_means(baseline, chunks))
