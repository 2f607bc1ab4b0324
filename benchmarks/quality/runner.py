"""Runs a selection of optimizers on tasks and writes every output after each optimizer."""

import argparse
import fnmatch
import importlib
import inspect
import json
import os
import platform
import time
from collections.abc import Mapping

import jax
import numpy as np
import optax

from benchmarks import provenance
from benchmarks.quality import harness
from benchmarks.quality.context import TaskContext, make_recalibrate_fn
from benchmarks.quality.plots import plot_task
from benchmarks.quality.registry import OPTIMIZERS, Optimizer
from benchmarks.quality.report import markdown_report
from benchmarks.quality.reuse import load_reusable, run_key, steps_prefix
from benchmarks.quality.selection import (
    PRESETS,
    grid_members,
    parse_extra_optimizer,
    resolve,
    select_optimizers,
    with_priors,
)
from benchmarks.quality.summary import summarize
from benchmarks.tasks import get_task


def run_benchmark(args: argparse.Namespace) -> dict:
    """Runs the selection of ``args`` and writes every output; returns the results."""
    started = time.perf_counter()
    registry = dict(OPTIMIZERS)
    extras = [parse_extra_optimizer(spec, registry) for spec in args.extra_optimizer]
    registry.update(extras)
    names = select_optimizers(args.optimizers, registry)
    names = with_priors(names + [n for n, _ in extras if n not in names], registry)
    task_names = args.tasks.split(",") if args.tasks else list(PRESETS[args.preset])
    seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else None
    reusable = load_reusable(args.reuse)
    os.makedirs(args.out, exist_ok=True)
    prefix = os.path.join(args.out, f"quality_{args.tag}")

    results = {
        "meta": run_metadata(args),
        "tasks": {},
        "optimizers": {n: describe(registry[n]) for n in names},
        "skipped": {},
        "runs": [],
    }
    per_step = {}
    for task_name in task_names:
        task = get_task(task_name)
        steps = args.steps.get(task_name) if isinstance(args.steps, dict) else args.steps
        ctx = TaskContext.build(task, args.preset, steps, args.batch_size)
        ctx.seeds = seeds or task.budgets[args.preset].seeds
        ctx.rerun = lambda name: any(fnmatch.fnmatch(name, p) for p in args.rerun.split(","))
        ctx.reuse_only = args.reuse_only
        # Built only when asked for: it makes one more model (MiniLM's loads its weights).
        ctx.recalibrate = make_recalibrate_fn(task) if args.recalibrate_batchnorm else None
        ctx.recalibration_batches = args.recalibrate_batchnorm if ctx.recalibrate else 0
        results["tasks"][task_name] = {
            "description": task.description,
            "metric": task.metric,
            "higher_is_better": task.higher_is_better,
            "steps": ctx.steps,
            "batch_size": ctx.batch_size,
            "seeds": list(ctx.seeds),
            "train_examples": ctx.train_size,
            "lr_grid_scale": task.lr_grid_scale,
            "recalibration_batches": ctx.recalibration_batches,
        }
        for name in names:
            try:
                runs = run_optimizer(ctx, name, registry[name], reusable, per_step)
            except (ImportError, AttributeError) as error:
                results["skipped"][name] = f"{type(error).__name__}: {error}"
                continue
            results["runs"] += runs
            # After every optimizer: an interrupted benchmark keeps what it finished (--reuse).
            write_outputs(results, per_step, prefix, started, plots=False)
    write_outputs(results, per_step, prefix, started, plots=not args.no_plots)
    return results


def run_optimizer(ctx: TaskContext, name: str, entry: Optimizer, reusable, per_step) -> list[dict]:
    """Every grid member and seed of one optimizer on one task; adds their steps to ``per_step``.

    Raises:
      ImportError, AttributeError: the factory does not exist in this installation.
    """
    factory = resolve(entry.factory)
    eval_params = resolve(entry.eval_params) if entry.eval_params else None
    wants_steps = "total_steps" in inspect.signature(factory).parameters
    task_name, runs = ctx.task.name, []
    for member, kwargs in grid_members(entry, ctx.task.lr_grid_scale):
        for seed in ctx.seeds:
            key = run_key(task_name, name, member, kwargs, seed, ctx.steps, ctx.batch_size,
                          ctx.recalibration_batches)  # fmt: skip
            rerun = ctx.rerun(name)
            run = None if rerun else reusable.get(key)
            if run is not None:
                run = dict(run, reused=True)
            elif ctx.reuse_only and not rerun:
                continue
            else:
                extra = {"total_steps": ctx.steps} if wants_steps else {}
                if entry.prior:
                    prior = f"{task_name}|{entry.prior}|{member}|{seed}|"
                    extra["prior"] = {
                        k[len(prior) :]: v for k, v in per_step.items() if k.startswith(prior)
                    }
                tx = optax.with_extra_args_support(factory(**kwargs, **extra))
                # A prior run makes the optimizer, hence the compiled step, differ per seed.
                compiled_as = (name, member, seed if entry.prior else None)
                run = harness.train_run(ctx, compiled_as, tx, eval_params, seed)
                run = {"key": key, "task": task_name, "optimizer": name, "member": member,
                       "kwargs": kwargs, "reused": False, **run}  # fmt: skip
            steps_data = run.pop("per_step")
            per_step.update({steps_prefix(run) + k: v for k, v in steps_data.items()})
            runs.append(run)
            print(_progress_line(run), flush=True)
    return runs


def describe(entry: Optimizer) -> dict:
    """A registry entry as JSON."""
    factory = entry.factory if isinstance(entry.factory, str) else entry.factory.__name__
    return {
        "factory": factory,
        "kwargs": dict(entry.kwargs),
        "grid": {k: list(v) for k, v in entry.grid.items()},
        "group": entry.group,
        "prior": entry.prior,
    }


def run_metadata(args: argparse.Namespace) -> dict:
    return {
        "tag": args.tag,
        "preset": args.preset,
        "command": provenance.command_line("python -m benchmarks.quality", args.argv),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine_description(),
        "jax": jax.__version__,
        "optax": optax.__version__,
        "salsa_optax": _version("salsa_optax"),
        "git": provenance.git_description(),
        "python": platform.python_version(),
        "load_average_start": os.getloadavg()[0],
    }


def machine_description() -> str:
    device = jax.devices()[0]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    kind = device.device_kind if device.platform != "cpu" else platform.processor() or "cpu"
    return f"{device.platform} ({kind}), {cores} CPU cores"


def _version(module: str) -> str:
    try:
        return importlib.import_module(module).__version__
    except (ImportError, AttributeError):
        return "unavailable"


def _progress_line(run: Mapping) -> str:
    member = f"[{run['member']}]" if run["member"] else ""
    return (
        f"{run['task']:>22} {run['optimizer'] + member:<40} seed {run['seed']}  "
        f"train {run['train_loss']:.4f}  val {run['val_metric']:.4f}  "
        f"test {run['test_metric']:.4f}  {run['wall_s']:6.1f}s "
        f"(+{run['compile_s']:.1f}s compile)  passes {run['passes']}"
    )


def write_outputs(results, per_step, prefix: str, started: float, plots: bool) -> None:
    """Writes the JSON, the markdown tables, the per-step arrays and (at the end) the plots."""
    results["meta"]["total_s"] = time.perf_counter() - started
    results["meta"]["load_average_end"] = os.getloadavg()[0]
    results["summary"] = summarize(results["runs"], results["tasks"], results["optimizers"])
    with open(prefix + ".json", "w") as f:
        json.dump(results, f, indent=1, default=repr)
    with open(prefix + ".md", "w") as f:
        f.write(markdown_report(results))
    np.savez_compressed(prefix + "_steps.npz", **per_step)
    if plots:
        for task_name in results["tasks"]:
            plot_task(results, task_name, f"{prefix}_{task_name}")
