"""What is measured: every model, its settled regime (the schedule searching about one step in
ten), how the overhead moves with batch size and width (on the MLP, where it is largest), and with
the length of the run (the schedule searches less and less often as the step size settles).
"""

import argparse
import itertools
import os
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from benchmarks.speed import models
from benchmarks.speed.environment import environment
from benchmarks.speed.registry import MODELS, PROBES, SCALING_VARIANTS, TORCH_VARIANTS, VARIANTS
from benchmarks.speed.runners import CompileCounter, JaxRunner, ProbeRunner, TorchRunner
from benchmarks.speed.summary import memory_summary, probe_summary, summarize_variant, torch_summary
from benchmarks.speed.timing import Plan, ratio_stats, run_interleaved, steady_ratio

PIPELINED_VARIANTS = ("adam", "salsa_skipped", "salsa")


def make_batches(spec: models.SpeedModel, batch_size: int, count: int) -> tuple[list[dict], str]:
    """``count`` host batches of ``spec``'s inputs (every runner cycles through them), and their
    source."""
    data, source = spec.inputs(batch_size * count)
    batches = [
        {k: v[i : i + batch_size] for k, v in data.items()}
        for i in range(0, len(data["y"]), batch_size)
    ]
    return batches, source


def benchmark_model(
    spec: models.SpeedModel,
    variants: Sequence[str],
    batch_size: int,
    plan: Plan,
    compiles: CompileCounter,
    clocks: Sequence[str],
    with_torch: bool,
) -> dict[str, Any]:
    """Times every variant (and the probes, and torch if asked) on one model."""
    host_batches, source = make_batches(spec, batch_size, min(64, plan.warmup + plan.steps))
    batches = [models.jax_input(b) for b in host_batches]
    jax_runners = [JaxRunner(v, VARIANTS[v].make(), spec, batches) for v in variants]
    probes = [ProbeRunner(p, spec, batches) for p in PROBES]
    torch_runners = (
        [TorchRunner(t, spec, host_batches) for t in TORCH_VARIANTS]
        if with_torch and spec.torch_spec
        else []
    )
    print(
        f"[speed] {spec.description}, batch {batch_size}: {plan.steps} steps x "
        f"{len(jax_runners) + len(probes) + len(torch_runners)} runners",
        flush=True,
    )
    record = run_interleaved([*jax_runners, *probes, *torch_runners], plan, compiles)

    probes_by_clock = {clock: probe_summary(record, plan, clock) for clock in clocks}
    adam = next(r for r in jax_runners if r.name == "adam")
    result: dict[str, Any] = {
        "description": spec.description,
        "batch_size": batch_size,
        "data": source,
        "param_bytes": adam.param_bytes,
        **probes_by_clock["wall"],
        "probes": probes_by_clock,
        "variants": {},
    }
    for runner in jax_runners:
        search = runner.search_record(plan.warmup)
        summary: dict[str, Any] = {}
        for clock in clocks:
            times = record[runner.name][clock]
            forward_ms = probes_by_clock[clock]["forward_ms"]
            summary[clock] = summarize_variant(
                times, record["adam"][clock], forward_ms, plan, search
            )
            if runner.name == "salsa_sgd" and "sgd" in record:
                summary[clock]["ratio_to_sgd"] = steady_ratio(times, record["sgd"][clock], plan)
        summary.update(
            compile_count=runner.trace_counter.count,
            recompiles_while_timing=record[runner.name]["recompiles"],
            compile_seconds=record[runner.name]["compile_seconds"],
            memory=memory_summary(runner, adam),
        )
        result["variants"][runner.name] = summary
    if torch_runners:
        result["torch"] = torch_summary(record, torch_runners, plan, clocks)
    print_progress(result, record)
    return result


def benchmark_settled(
    spec: models.SpeedModel, batch_size: int, settle: int, plan: Plan, compiles, clocks
) -> dict[str, Any]:
    """salsa() against Adam after ``settle`` untimed steps of salsa(), once its schedule settled.

    Adam's step costs the same at any point of a run, so only salsa() is advanced.
    """
    host_batches, _ = make_batches(spec, batch_size, 64)
    batches = [models.jax_input(b) for b in host_batches]
    adam, salsa = (JaxRunner(v, VARIANTS[v].make(), spec, batches) for v in ("adam", "salsa"))
    print(f"[speed] settled: {spec.description}, {settle} untimed steps of salsa()", flush=True)
    salsa.compile()
    for _ in range(settle):
        salsa.step()
    record = run_interleaved([adam, salsa], plan, compiles)
    search = salsa.search_record(settle + plan.warmup)
    summary = {
        clock: summarize_variant(record["salsa"][clock], record["adam"][clock], None, plan, search)
        for clock in clocks
    }
    first = settle + plan.warmup + 1
    return {"first_step": first, "last_step": first + plan.steps - 1, **summary}


def benchmark_pipelined(
    spec: models.SpeedModel, batch_size: int, settle: int, steps: int, chunk: int
) -> dict[str, Any]:
    """Adam, a skipped step and settled salsa() with their steps queued back to back, as a
    training loop that does not read its metrics runs them: each run of ``chunk`` steps is timed
    from its first call to the end of its last step, runs of the three interleaved.

    A step timed alone waits for its result anyway; here a step that makes the host wait for
    the device (a conditional whose predicate the host reads, on a GPU) loses the overlap of
    the next step's dispatch with this one's work, and the wait shows.
    """
    host_batches, _ = make_batches(spec, batch_size, 64)
    batches = [models.jax_input(b) for b in host_batches]
    runners = [JaxRunner(v, VARIANTS[v].make(), spec, batches) for v in PIPELINED_VARIANTS]
    print(f"[speed] pipelined: {spec.description}, {steps} queued steps each", flush=True)
    for runner in runners:
        runner.compile()
        runner.step()
    salsa = runners[-1]
    for _ in range(settle):
        salsa.dispatch()
    salsa.step()
    first = salsa.index + 1
    times: dict[str, list[float]] = {runner.name: [] for runner in runners}
    for i in range(steps // chunk):
        shift = i % len(runners)
        for runner in [*runners[shift:], *runners[:shift]]:
            start = time.perf_counter()
            for _ in range(chunk):
                runner.dispatch()
            jax.block_until_ready(runner.state)
            times[runner.name].append((time.perf_counter() - start) / chunk)
    adam = np.array(times["adam"])
    evaluations, searched = salsa.search_record(first - 1)
    result: dict[str, Any] = {
        "chunk": chunk,
        "salsa_first_step": first,
        "salsa_last_step": salsa.index,
        "salsa_searched_fraction": float(searched.mean()),
        "salsa_evaluations_per_step": float(evaluations.mean()),
    }
    for name, seconds in times.items():
        per_step = np.array(seconds)
        result[name] = {"step_ms": 1e3 * float(np.median(per_step))}
        if name != "adam":
            result[name]["ratio"] = ratio_stats(per_step / adam)
    return result


def print_progress(result: dict[str, Any], record: dict) -> None:
    """One line per runner: compile seconds, mean step time, steady ratio to its baseline."""
    print(f"[speed]   forward / (forward+backward) {result['forward_over_forward_backward']:.3f}")
    summaries = {**result["variants"], **result.get("torch", {})}
    for name, entry in record.items():
        phase = summaries.get(name, {}).get("wall", {}).get("steady", {})
        print(
            f"[speed]   {name:24s} compile {entry['compile_seconds']:6.1f} s, "
            f"{1e3 * np.nanmean(entry['wall']):8.3f} ms/step, "
            f"x baseline {(phase.get('ratio') or {}).get('median', float('nan')):.3f}",
            flush=True,
        )


def benchmark_scaling(
    plan: Plan, compiles: CompileCounter, clocks, widths, batch_sizes
) -> dict[str, Any]:
    points = [(256, b) for b in batch_sizes] + [(w, 128) for w in widths if w != 256]
    results = []
    for width, batch_size in points:
        model = benchmark_model(
            models.mlp(width), SCALING_VARIANTS, batch_size, plan, compiles, clocks, False
        )
        results.append({"width": width, **model})
    return {"model": "mlp", "points": results}


def benchmark_horizon(steps: int, compiles: CompileCounter, clocks) -> dict[str, Any]:
    """salsa() against Adam on the MLP over ``steps`` steps, summarised in growing windows."""
    plan = Plan(warmup=2, steps=steps, start_steps=0, chunk=50)
    spec = models.mlp()
    host_batches, source = make_batches(spec, 128, 64)
    batches = [models.jax_input(b) for b in host_batches]
    runners = [JaxRunner(v, VARIANTS[v].make(), spec, batches) for v in ("adam", "salsa")]
    print(f"[speed] horizon: {spec.description}, {steps} steps of adam and salsa()", flush=True)
    record = run_interleaved(runners, plan, compiles)
    evaluations, searched = runners[1].search_record(plan.warmup)
    edges = [e for e in (0, 20, 100, 300, 1000, 3000, 10000) if e < steps] + [steps]
    windows = []
    for lo, hi in itertools.pairwise(edges):
        window = {"first_step": lo + 1, "last_step": hi}
        window.update(
            searched_fraction=float(searched[lo:hi].mean()),
            evaluations_per_step=float(evaluations[lo:hi].mean()),
        )
        for clock in clocks:
            salsa, adam = record["salsa"][clock][lo:hi], record["adam"][clock][lo:hi]
            window[f"{clock}_ratio_of_means"] = float(salsa.mean() / adam.mean())
        windows.append(window)
    return {"description": spec.description, "data": source, "steps": steps, "windows": windows}


def run(args: argparse.Namespace, compiles: CompileCounter, with_torch: bool) -> dict[str, Any]:
    """Every model, then the horizon and scaling runs; the results without the report."""
    variants = ["adam", *[v for v in args.variants.split(",") if v != "adam"]]
    plan = Plan(args.warmup, args.steps, min(args.start_steps, args.steps), args.chunk)
    environment_info = environment()
    # CPU time says nothing of work that a GPU does asynchronously.
    clocks = ("wall", "cpu") if environment_info["backend"] == "cpu" else ("wall",)
    results: dict[str, Any] = {
        "environment": environment_info,
        "plan": plan._asdict(),
        "clocks": clocks,
        "models": {},
    }
    settled_plan = Plan(args.warmup, args.settled_steps, 0, args.chunk)
    for name in args.models.split(","):
        results["models"][name] = benchmark_model(
            MODELS[name](), variants, args.batch_size, plan, compiles, clocks, with_torch
        )
        if args.settle_steps:
            results["models"][name]["settled"] = benchmark_settled(
                MODELS[name](), args.batch_size, args.settle_steps, settled_plan, compiles, clocks
            )
        if args.pipelined_steps:
            results["models"][name]["pipelined"] = benchmark_pipelined(
                MODELS[name](),
                args.batch_size,
                args.settle_steps,
                args.pipelined_steps,
                args.pipelined_chunk,
            )
    if args.horizon_steps:
        results["horizon"] = benchmark_horizon(args.horizon_steps, compiles, clocks)
    if not args.no_scaling:
        scaling_plan = plan._replace(
            steps=args.scaling_steps, start_steps=min(args.start_steps, args.scaling_steps)
        )
        results["scaling"] = benchmark_scaling(
            scaling_plan,
            compiles,
            clocks,
            [int(w) for w in args.scaling_widths.split(",")],
            [int(b) for b in args.scaling_batch_sizes.split(",")],
        )
    results["environment"]["load_average_after"] = os.getloadavg()
    return results
