r"""Quality benchmark: SaLSa against tuned baselines and learning-rate-free optimizers.

Runs a grid of optimizers × tasks × seeds and writes, under ``--out`` (``benchmarks/results/``):
``quality_<tag>.json`` (configuration, hardware, every run, the summary), ``quality_<tag>.md`` (the
results tables), ``quality_<tag>_steps.npz`` (per-step diagnostics of every run) and
``quality_<tag>_<task>_{loss,step_size}.png``.

Optimizers live in :data:`OPTIMIZERS`, keyed by name: a factory, its keyword arguments and, for the
tuned baselines, a grid whose best member is chosen on the validation split (never the test split).
A variant is one more entry, also from the command line::

  python -m benchmarks.quality --quick
  python -m benchmarks.quality --tasks digits_mlp,mnist1d_cnn --optimizers salsa,adam \
      --seeds 0,1,2 --extra-optimizer 'salsa_c01=salsa:slope_rtol=0.1,smoothing=0.99' --tag c01
  python -m benchmarks.quality --list

In ``--extra-optimizer NAME=BASE[:KEY=VALUE,...]`` a value is a Python literal; a list value makes
that key a grid axis (``adam_wide=adam:learning_rate=[1e-5,1e-4,1e-3,1e-2,1e-1]``).

Every run trains with one compiled step per (task, optimizer): forward+backward, then
``tx.update(grads, state, params, value=, grad=, value_fn=)``, so a line search's trial evaluations
and its search-frequency schedule run inside the compiled step. Reported wall time is training time
only; compilation and evaluation are recorded separately.
"""

import argparse
import ast
import dataclasses
import fnmatch
import functools
import importlib
import inspect
import itertools
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from benchmarks.tasks import TASKS, Task, get_task

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
CHUNK_STEPS = 250  # steps between fetching diagnostics and checking for divergence
CURVE_POINTS = 100  # points kept per run in the JSON's curves (the .npz keeps every step)


# --------------------------------------------------------------------------------------------
# Optimizer registry


class Optimizer(NamedTuple):
    """A registry entry.

    Attributes:
      factory: ``"module:attribute"`` (imported when the optimizer runs, so entries may name
        methods that have not landed yet) or a callable returning a gradient transformation.
      kwargs: keyword arguments of the factory.
      grid: ``{keyword: values}``; every combination is one run, and the reported result is the
        member with the best mean validation metric.
      group: column for the tables and plots: ``salsa``, ``tuned``, ``line search``, ``lr-free``,
        ``related``.
      eval_params: ``"module:attribute"`` of ``(opt_state, params) -> params`` to evaluate at
        (schedule-free methods), or None for the parameters themselves.
      prior: name of an entry whose run (same task, seed and grid member) must come first; the
        factory then also receives ``prior=`` that run's per-step diagnostics (schedule
        refinement). A factory with a ``total_steps`` parameter receives the run's step budget.
    """

    factory: str | Callable[..., optax.GradientTransformation]
    kwargs: Mapping[str, Any] = {}
    grid: Mapping[str, Sequence[Any]] = {}
    group: str = ""
    eval_params: str | None = None
    prior: str | None = None


def adam_backtracking_linesearch(
    learning_rate: float = 1.0, b1=0.9, b2=0.999, eps=1e-8, max_backtracking_steps=15, **search
):
    """optax's backtracking (Armijo) line search along the Adam direction, optax's defaults."""
    return optax.chain(
        optax.adam(learning_rate, b1=b1, b2=b2, eps=eps),
        optax.scale_by_backtracking_linesearch(max_backtracking_steps, **search),
    )


def mechanized_adam(learning_rate: float = 1e-3, **kwargs):
    """``optax.contrib.mechanize`` around Adam; mechanize learns the scale of the base updates."""
    return optax.contrib.mechanize(optax.adam(learning_rate), **kwargs)


def eg_adam(learning_rate: float = 1e-3, **kwargs):
    """Exponentiated-gradient step-size adaptation (Amid et al., 2022) after Adam."""
    import salsa_optax

    return optax.chain(optax.adam(learning_rate), salsa_optax.scale_by_eg_step_size(**kwargs))


def adam_linear_decay(learning_rate: float, total_steps: int, warmup_fraction: float = 0.0):
    """Adam with linear decay to zero: schedule refinement's baseline (Defazio et al., 2023)."""
    import salsa_optax

    schedule = salsa_optax.linear_decay_schedule(
        learning_rate, total_steps, warmup_steps=int(warmup_fraction * total_steps)
    )
    return optax.adam(schedule)


def refined_adam(learning_rate: float, total_steps: int, prior: Mapping[str, np.ndarray]):
    """Adam on the schedule refined (Defazio et al., 2023) from a prior run's ℓ1 gradient norms."""
    import salsa_optax

    table = salsa_optax.refine_schedule(prior["grad_l1"], ord=1)
    return optax.adam(salsa_optax.refined_schedule(learning_rate, table, total_steps))


ADAM_GRID = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
SGD_GRID = (3e-3, 1e-2, 3e-2, 1e-1, 3e-1)

OPTIMIZERS: dict[str, Optimizer] = {
    "salsa": Optimizer("salsa_optax:salsa", group="salsa"),
    "salsa_published": Optimizer("salsa_optax:salsa_published", group="salsa"),
    "salsa_paper": Optimizer("salsa_optax:salsa_paper", group="salsa"),
    "salsa_momentum": Optimizer("salsa_optax:salsa", {"search_with_momentum": True}, group="salsa"),
    "salsa_sgd": Optimizer("salsa_optax:salsa_sgd", group="salsa"),
    "sls": Optimizer("salsa_optax:sls", group="salsa"),
    "adam": Optimizer("optax:adam", grid={"learning_rate": ADAM_GRID}, group="tuned"),
    "adamw": Optimizer("optax:adamw", grid={"learning_rate": ADAM_GRID}, group="tuned"),
    "sgdm": Optimizer(
        "optax:sgd", {"momentum": 0.9}, grid={"learning_rate": SGD_GRID}, group="tuned"
    ),
    "adam_linesearch": Optimizer(adam_backtracking_linesearch, group="line search"),
    "prodigy": Optimizer("optax.contrib:prodigy", group="lr-free"),
    "dadapt_adamw": Optimizer("optax.contrib:dadapt_adamw", group="lr-free"),
    "dog": Optimizer("optax.contrib:dog", group="lr-free"),
    "mechanize": Optimizer(mechanized_adam, group="lr-free"),
    "cocob": Optimizer("optax.contrib:cocob", group="lr-free"),
    "schedule_free_adamw": Optimizer(
        "optax.contrib:schedule_free_adamw",
        group="lr-free",
        eval_params="optax.contrib:schedule_free_eval_params",
    ),
    "momo": Optimizer("optax.contrib:momo", group="lr-free"),
    "momo_adam": Optimizer("optax.contrib:momo_adam", group="lr-free"),
    "polyak_sgd": Optimizer("optax:polyak_sgd", group="lr-free"),
    # Related step-size methods: EG adaptation (Amid et al., 2022), layer-wise curvature (Bahamou
    # and Goldfarb, 2023), schedule refinement (Defazio et al., 2023). An entry whose factory
    # cannot be imported is skipped.
    "egdd": Optimizer(
        "salsa_optax:egdd", {"momentum": 0.9}, grid={"learning_rate": SGD_GRID}, group="related"
    ),
    "eg_adam": Optimizer(eg_adam, group="related"),
    "layerwise_adamw": Optimizer("salsa_optax:layerwise_curvature_adamw", group="related"),
    "layerwise_sgd": Optimizer("salsa_optax:layerwise_curvature_sgd", group="related"),
    "adam_linear": Optimizer(adam_linear_decay, grid={"learning_rate": ADAM_GRID}, group="related"),
    "refined_adam": Optimizer(
        refined_adam, grid={"learning_rate": ADAM_GRID}, group="related", prior="adam_linear"
    ),
}

# What a plain run compares (the brief of the benchmark); any other entry is one flag away.
DEFAULT_OPTIMIZERS = (
    "salsa",
    "salsa_paper",
    "salsa_sgd",
    "sls",
    "adam",
    "adamw",
    "sgdm",
    "adam_linesearch",
    "prodigy",
    "dadapt_adamw",
    "dog",
    "mechanize",
    "cocob",
    "schedule_free_adamw",
    "momo",
    "momo_adam",
    "polyak_sgd",
    "egdd",
    "eg_adam",
    "layerwise_adamw",
    "layerwise_sgd",
    "adam_linear",
    "refined_adam",
)

PRESETS = {
    "quick": ("digits_mlp", "mnist1d_cnn"),
    "cpu": tuple(TASKS),
    "full": tuple(TASKS),
}


def resolve(ref: str | Callable) -> Callable:
    """``"module:attribute"`` -> the attribute; a callable is returned as is."""
    if callable(ref):
        return ref
    module, attribute = ref.split(":")
    return getattr(importlib.import_module(module), attribute)


def parse_value(text: str) -> Any:
    """A Python literal, or the text itself when it is not one (``variant=sps``)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_extra_optimizer(spec: str, registry: Mapping[str, Optimizer]) -> tuple[str, Optimizer]:
    """``NAME=BASE[:KEY=VALUE,...]`` -> ``(NAME, entry)``: BASE's entry with the keys overridden.

    A list value is a grid axis; a scalar value for a key BASE grids over replaces that axis.

    >>> name, entry = parse_extra_optimizer("a3=adam:learning_rate=3e-3", OPTIMIZERS)
    >>> name, entry.factory, dict(entry.kwargs), dict(entry.grid)
    ('a3', 'optax:adam', {'learning_rate': 0.003}, {})
    >>> _, entry = parse_extra_optimizer("s=salsa:slope_rtol=0.1,betas=(0.9, 0.99)", OPTIMIZERS)
    >>> dict(entry.kwargs)
    {'slope_rtol': 0.1, 'betas': (0.9, 0.99)}
    """
    match = re.fullmatch(r"\s*(\w+)\s*=\s*(\w+)\s*(?::(.*))?", spec)
    if not match:
        raise ValueError(f"--extra-optimizer {spec!r}: expected NAME=BASE[:KEY=VALUE,...]")
    name, base_name, overrides = match.groups()
    if base_name not in registry:
        raise ValueError(f"--extra-optimizer {spec!r}: unknown base {base_name!r}")
    base = registry[base_name]
    kwargs, grid = dict(base.kwargs), dict(base.grid)
    # Split on the commas that start a new KEY=, so tuple values keep theirs.
    for item in re.split(r",(?=\s*\w+\s*=)", overrides or ""):
        if not item.strip():
            continue
        key, _, text = item.partition("=")
        key, value = key.strip(), parse_value(text.strip())
        grid.pop(key, None)
        kwargs.pop(key, None)
        if isinstance(value, list):
            grid[key] = tuple(value)
        else:
            kwargs[key] = value
    return name, base._replace(kwargs=kwargs, grid=grid)


def grid_members(entry: Optimizer, lr_scale: float = 1.0) -> list[tuple[str, dict[str, Any]]]:
    """``[(member label, full kwargs)]``, one per grid point; the label is ``""`` without a grid.

    ``lr_scale`` multiplies a ``learning_rate`` axis: a task centres the grids on its own scale.
    """
    axes = {
        key: [float(f"{v * lr_scale:.6g}") for v in values] if key == "learning_rate" else values
        for key, values in entry.grid.items()
    }
    members = []
    for point in itertools.product(*axes.values()):
        chosen = dict(zip(axes, point, strict=True))
        label = ",".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in chosen.items()
        )
        members.append((label, {**entry.kwargs, **chosen}))
    return members


def parse_steps(spec: str) -> int | dict[str, int]:
    """``--steps``: one budget for every task, or ``TASK=N`` pairs for some.

    >>> parse_steps("100")
    100
    >>> parse_steps("fashion_resnet=2580,digits_mlp=50")
    {'fashion_resnet': 2580, 'digits_mlp': 50}
    """
    if "=" not in spec:
        return int(spec)
    pairs = [item.split("=", 1) for item in spec.split(",")]
    return {task.strip(): int(steps) for task, steps in pairs}


def select_optimizers(patterns: str | None, registry: Mapping[str, Optimizer]) -> list[str]:
    """Names matching comma-separated names, globs, ``group:<g>``, ``default`` or ``all``."""
    if not patterns:
        return [n for n in DEFAULT_OPTIMIZERS if n in registry]
    chosen = []
    for pattern in patterns.split(","):
        pattern = pattern.strip()
        if pattern == "default":
            names = [n for n in DEFAULT_OPTIMIZERS if n in registry]
        elif pattern == "all":
            names = list(registry)
        elif pattern.startswith("group:"):
            names = [n for n, e in registry.items() if e.group == pattern[len("group:") :]]
        else:
            names = fnmatch.filter(registry, pattern)
        if not names:
            raise ValueError(f"--optimizers: {pattern!r} matches no registered optimizer")
        chosen += [n for n in names if n not in chosen]
    return chosen


def with_priors(names: Sequence[str], registry: Mapping[str, Optimizer]) -> list[str]:
    """``names`` with every entry's prior run inserted before it."""
    ordered = []
    for name in names:
        prior = registry[name].prior
        if prior and prior not in ordered:
            ordered += [n for n in with_priors([prior], registry) if n not in ordered]
        if name not in ordered:
            ordered.append(name)
    return ordered


# --------------------------------------------------------------------------------------------
# Training


def _tree_get(tree, key):
    """``optax.tree_utils.tree_get``, or None when ``key`` is absent or ambiguous."""
    try:
        return optax.tree_utils.tree_get(tree, key)
    except KeyError:
        return None


def step_diagnostics(value, grad, opt_state) -> dict[str, jax.Array]:
    """Per-step scalars: the loss, gradient norms and whatever step-size state the optimizer has.

    From a SaLSa state's ``info``: the step size used, whether it searched, its ``value_fn``
    evaluations, backtracks and outcome; from optax's line search: its evaluations; from the
    layer-wise curvature methods: whether the step measured curvature (one Hessian-vector
    product); any scalar ``learning_rate`` (line searches) or ``estim_lr`` (Prodigy,
    D-Adaptation) as is.
    """
    out = {
        "loss": value,
        "grad_norm": optax.tree_utils.tree_norm(grad),
        "grad_l1": optax.tree_utils.tree_norm(grad, ord=1),
    }
    info = _tree_get(opt_state, "info")
    fields = getattr(info, "_fields", ())
    names = ("step_size", "searched", "num_evaluations", "num_backtracks", "search_outcome",
             "refreshed")  # fmt: skip
    for name in names:
        if name in fields:
            out[name] = getattr(info, name)
    if "num_linesearch_steps" in fields:
        out["num_evaluations"] = info.num_linesearch_steps
    for name in ("learning_rate", "estim_lr"):
        leaf = _tree_get(opt_state, name)
        if isinstance(leaf, jax.Array) and leaf.ndim == 0:
            out[name] = leaf
    return out


class Model(NamedTuple):
    """A task's model as pure pieces: ``nnx.merge(graphdef, params, rest)``."""

    graphdef: Any
    params: Any
    rest: Any


def split_model(task: Task, seed: int) -> Model:
    return Model(*nnx.split(task.make_model(nnx.Rngs(seed)), nnx.Param, ...))


def make_train_step(task: Task, graphdef, tx: optax.GradientTransformationExtraArgs):
    """``(carry, train, indices) -> (carry, diagnostics)``: one optimizer step.

    ``carry = (params, rest, opt_state, key, step)``; the batch is ``train[indices[step]]``.
    ``rest`` is the non-parameter model state (BatchNorm statistics): the gradient call updates
    it, a line search's trial evaluations discard theirs. One jitted step per call rather than a
    ``lax.scan``: XLA:CPU runs convolution gradients inside a loop about 6× slower than outside.
    """

    def loss_fn(params, rest, batch, key):
        model = nnx.merge(graphdef, params, rest, copy=True)
        loss = task.loss(model, batch, key)
        return loss, nnx.split(model, nnx.Param, ...)[2]

    def train_step(carry, train, indices):
        params, rest, opt_state, key, step = carry
        key, step_key = jax.random.split(key)
        batch = jax.tree.map(lambda a: a[indices[step]], train)
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (value, new_rest), grad = grad_fn(params, rest, batch, step_key)

        def value_fn(trial_params):
            return loss_fn(trial_params, rest, batch, step_key)[0]

        updates, opt_state = tx.update(
            grad, opt_state, params, value=value, grad=grad, value_fn=value_fn
        )
        params = optax.apply_updates(params, updates)
        carry = (params, new_rest, opt_state, key, step + 1)
        return carry, step_diagnostics(value, grad, opt_state)

    return train_step


def make_eval_fn(task: Task, graphdef):
    """``(params, rest, batches, weights) -> (mean loss, mean metric)`` over padded batches."""

    def evaluate(params, rest, batches, weights):
        model = nnx.merge(graphdef, params, rest, copy=True)
        loss, metric = jax.lax.map(lambda b: task.evaluate(model, b), batches)
        total = weights.sum()
        return (loss * weights).sum() / total, (metric * weights).sum() / total

    return jax.jit(evaluate)


def padded_batches(arrays, batch_size: int):
    """Splits arrays into ``[n_batches, batch_size, ...]`` (zero-padded) and 0/1 weights."""
    size = len(next(iter(arrays.values())))
    batch_size = min(batch_size, size)
    n_batches = -(-size // batch_size)
    pad = n_batches * batch_size - size

    def reshape(a):
        a = np.concatenate([a, np.zeros((pad, *a.shape[1:]), a.dtype)])
        return jnp.asarray(a.reshape(n_batches, batch_size, *a.shape[1:]))

    weights = np.concatenate([np.ones(size, np.float32), np.zeros(pad, np.float32)])
    return {k: reshape(v) for k, v in arrays.items()}, jnp.asarray(weights.reshape(n_batches, -1))


def batch_indices(size: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
    """``[steps, batch_size]`` example indices: an epoch is a fresh permutation, less its tail."""
    rng = np.random.default_rng(seed)
    per_epoch = size // batch_size
    epochs = -(-steps // per_epoch)
    rows = [rng.permutation(size)[: per_epoch * batch_size] for _ in range(epochs)]
    return np.concatenate(rows).reshape(-1, batch_size)[:steps].astype(np.int32)


@dataclasses.dataclass
class TaskContext:
    """A task's data on the device, its evaluation function and its compiled trainers."""

    task: Task
    steps: int
    batch_size: int
    train: dict
    eval_splits: dict  # split name -> (batches, weights)
    graphdef: Any
    evaluate: Callable
    seeds: tuple[int, ...] = ()
    rerun: Callable[[str], bool] = lambda name: False  # train again even if reusable
    reuse_only: bool = False  # train only reruns: a run missing from the reused files is left out
    compiled: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def build(cls, task: Task, preset: str, steps: int | None, batch_size: int | None):
        budget = task.budgets[preset]
        data = task.load_data()
        train_eval = {k: v[: budget.train_eval_examples] for k, v in data.train.items()}
        splits = {"train": train_eval, "val": data.val, "test": data.test}
        graphdef = split_model(task, 0).graphdef
        return cls(
            task=task,
            steps=steps or budget.steps,
            batch_size=min(batch_size or budget.batch_size, _size(data.train)),
            train={k: jnp.asarray(v) for k, v in data.train.items()},
            eval_splits={k: padded_batches(v, budget.eval_batch_size) for k, v in splits.items()},
            graphdef=graphdef,
            evaluate=make_eval_fn(task, graphdef),
        )

    @property
    def train_size(self) -> int:
        return _size(self.train)


def _size(arrays: Mapping[str, Any]) -> int:
    return len(next(iter(arrays.values())))


def train_run(ctx: TaskContext, key: tuple, tx, eval_params, seed: int) -> dict:
    """Trains one seed; returns its scalars and the per-step diagnostics."""
    model = split_model(ctx.task, seed)
    opt_state = tx.init(model.params)
    # Copied because some optimizer states share one buffer between leaves (prodigy), which
    # donation would otherwise hand over twice.
    carry = (model.params, model.rest, opt_state, jax.random.key(seed), jnp.zeros((), jnp.int32))
    carry = jax.tree.map(jnp.copy, carry)
    indices = jnp.asarray(batch_indices(ctx.train_size, ctx.batch_size, ctx.steps, seed))
    compile_s = 0.0
    if key not in ctx.compiled:
        tic = time.perf_counter()
        jitted = jax.jit(make_train_step(ctx.task, ctx.graphdef, tx), donate_argnums=0)
        ctx.compiled[key] = jitted.lower(carry, ctx.train, indices).compile()
        compile_s = time.perf_counter() - tic
    train_step, logs, tic = ctx.compiled[key], [], time.perf_counter()
    for start in range(0, ctx.steps, CHUNK_STEPS):
        chunk = []
        for _ in range(start, min(start + CHUNK_STEPS, ctx.steps)):
            carry, diagnostics = train_step(carry, ctx.train, indices)
            chunk.append(diagnostics)
        logs += jax.device_get(chunk)
        if not np.isfinite(logs[-1]["loss"]):
            break  # diverged: the rest of the budget would change nothing
    train_s = time.perf_counter() - tic
    params, rest, opt_state, _, _ = carry
    if eval_params is not None:
        params = eval_params(opt_state, params)
    tic = time.perf_counter()
    scores = {}
    for split, (batches, weights) in ctx.eval_splits.items():
        loss, metric = ctx.evaluate(params, rest, batches, weights)
        scores[f"{split}_loss"], scores[f"{split}_metric"] = float(loss), float(metric)
    eval_s = time.perf_counter() - tic
    per_step = {k: np.stack([log[k] for log in logs]) for k in logs[0]}
    done = len(per_step["loss"])
    value_evals = int(per_step["num_evaluations"].sum()) if "num_evaluations" in per_step else 0
    hvp_evals = int(per_step["refreshed"].sum()) if "refreshed" in per_step else 0
    return {
        "seed": seed,
        "steps_done": done,
        "finite": bool(np.isfinite(per_step["loss"]).all() and np.isfinite(scores["val_loss"])),
        **scores,
        "wall_s": train_s,
        "compile_s": compile_s,
        "eval_s": eval_s,
        "grad_evals": done,
        "value_evals": value_evals,
        "hvp_evals": hvp_evals,
        "passes": done + value_evals + hvp_evals,
        "diagnostics": summarize_steps(per_step),
        "curve": downsample(per_step),
        "per_step": per_step,
    }


def summarize_steps(per_step: Mapping[str, np.ndarray]) -> dict[str, float]:
    """A few numbers per run to scan quickly before opening the per-step arrays."""
    out = {
        "final_loss_window": _finite_mean(per_step["loss"][-max(1, len(per_step["loss"]) // 10) :])
    }
    for name in ("step_size", "learning_rate", "estim_lr"):
        if name in per_step:
            values = per_step[name]
            out[f"{name}_final"] = float(values[-1])
            out[f"{name}_geomean"] = float(np.exp(np.mean(np.log(np.maximum(values, 1e-38)))))
    if "searched" in per_step:
        out["searched_fraction"] = float(per_step["searched"].mean())
    if "num_evaluations" in per_step:
        out["evaluations_per_step"] = float(per_step["num_evaluations"].mean())
    return out


def _finite_mean(values) -> float:
    values = np.asarray(values, np.float64)
    return float(values.mean()) if np.isfinite(values).all() else float("nan")


def downsample(per_step: Mapping[str, np.ndarray], points: int = CURVE_POINTS) -> dict[str, list]:
    """Means over equal windows of steps (the last step of each window labels it)."""
    size = len(per_step["loss"])
    edges = np.unique(np.linspace(0, size, min(points, size) + 1).astype(int))
    curve = {"step": [int(e) for e in edges[1:]]}
    for name in ("loss", "step_size", "learning_rate", "estim_lr", "num_evaluations"):
        if name in per_step:
            values = per_step[name].astype(np.float64)
            curve[name] = [_round(values[a:b].mean()) for a, b in itertools.pairwise(edges)]
    return curve


def _round(x: float) -> float | None:
    return float(f"{x:.5g}") if math.isfinite(x) else None


# --------------------------------------------------------------------------------------------
# Summary


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


# --------------------------------------------------------------------------------------------
# Report: markdown tables and plots


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
        "`HVPs` are Hessian-vector products (curvature methods).",
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
            f"({'higher' if task['higher_is_better'] else 'lower'} is better).",
            "",
            f"| rank | optimizer | chosen | test {metric} | train loss | wall s "
            "| grad evals | extra fwd | HVPs |",
            "|---:|---|---|---|---|---:|---:|---:|---:|",
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
                f"{row['grad_evals']:.0f} | {row['value_evals']:.0f} | {row['hvp_evals']:.0f} |"
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


# --------------------------------------------------------------------------------------------
# Orchestration


def _run_key(task: str, name: str, member: str, kwargs: Mapping, seed: int, steps: int, batch: int):
    return json.dumps(
        [task, name, member, kwargs, seed, steps, batch], sort_keys=True, default=repr
    )


def load_reusable(paths: Sequence[str]) -> dict[str, dict]:
    """Runs of earlier result files, keyed by their full configuration; per-step data included."""
    found = {}
    for path in paths:
        with open(path) as f:
            old = json.load(f)
        steps_path = path.removesuffix(".json") + "_steps.npz"
        arrays = np.load(steps_path) if os.path.exists(steps_path) else {}
        for run in old["runs"]:
            prefix = _steps_prefix(run)
            run = dict(
                run,
                per_step={k[len(prefix) :]: arrays[k] for k in arrays if k.startswith(prefix)},
            )
            found[run["key"]] = run
    return found


def _steps_prefix(run: Mapping) -> str:
    return f"{run['task']}|{run['optimizer']}|{run['member']}|{run['seed']}|"


def machine_description() -> str:
    device = jax.devices()[0]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    kind = device.device_kind if device.platform != "cpu" else platform.processor() or "cpu"
    return f"{device.platform} ({kind}), {cores} CPU cores"


def git_description() -> str:
    """The checkout's commit, and whether salsa_optax/ or benchmarks/ differ from it."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        git = functools.partial(
            subprocess.run, cwd=root, capture_output=True, text=True, check=True
        )
        commit = git(["git", "rev-parse", "--short", "HEAD"]).stdout.strip()
        changed = git(["git", "status", "--porcelain", "salsa_optax", "benchmarks"]).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" with uncommitted changes" if changed.strip() else "")


def _version(module: str) -> str:
    try:
        return importlib.import_module(module).__version__
    except (ImportError, AttributeError):
        return "unavailable"


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
        results["tasks"][task_name] = {
            "description": task.description,
            "metric": task.metric,
            "higher_is_better": task.higher_is_better,
            "steps": ctx.steps,
            "batch_size": ctx.batch_size,
            "seeds": list(ctx.seeds),
            "train_examples": ctx.train_size,
            "lr_grid_scale": task.lr_grid_scale,
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
            key = _run_key(task_name, name, member, kwargs, seed, ctx.steps, ctx.batch_size)
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
                run = train_run(ctx, compiled_as, tx, eval_params, seed)
                run = {"key": key, "task": task_name, "optimizer": name, "member": member,
                       "kwargs": kwargs, "reused": False, **run}  # fmt: skip
            steps_data = run.pop("per_step")
            per_step.update({_steps_prefix(run) + k: v for k, v in steps_data.items()})
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
        "command": "python -m benchmarks.quality " + " ".join(args.argv),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine_description(),
        "jax": jax.__version__,
        "optax": optax.__version__,
        "salsa_optax": _version("salsa_optax"),
        "git": git_description(),
        "python": platform.python_version(),
        "load_average_start": os.getloadavg()[0],
    }


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


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.quality",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument(
        "--quick",
        dest="preset",
        action="store_const",
        const="quick",
        help="small budgets, runs on 2 CPU cores in under 15 minutes (default)",
    )
    preset.add_argument(
        "--cpu",
        dest="preset",
        action="store_const",
        const="cpu",
        help="every task at budgets 2 CPU cores finish in a few hours (the README's table)",
    )
    preset.add_argument(
        "--full",
        dest="preset",
        action="store_const",
        const="full",
        help="every task at full budget (larger machines / GPU)",
    )
    parser.add_argument("--tasks", help=f"comma-separated; known: {', '.join(TASKS)}")
    parser.add_argument(
        "--optimizers",
        help="comma-separated names, globs (salsa*), "
        "group:<group>, 'default' or 'all' (default: 'default')",
    )
    parser.add_argument(
        "--extra-optimizer",
        action="append",
        default=[],
        metavar="NAME=BASE[:K=V,...]",
        help="a registry entry derived from BASE",
    )
    parser.add_argument("--seeds", help="comma-separated seeds (default: the preset's per task)")
    parser.add_argument(
        "--steps",
        type=parse_steps,
        help="override the step budget: N for every task, or TASK=N,... for some",
    )
    parser.add_argument("--batch-size", type=int, help="override every task's batch size")
    parser.add_argument("--out", default=RESULTS_DIR, help="output folder")
    parser.add_argument(
        "--tag",
        help="output names quality_<tag>.*; default: the preset's "
        "name, or 'custom' when the selection or budget is changed",
    )
    parser.add_argument(
        "--reuse",
        nargs="*",
        default=[],
        metavar="JSON",
        help="earlier result files whose runs with the same configuration are "
        "taken instead of rerun (only valid while the optimizer code is unchanged)",
    )
    parser.add_argument("--reuse-only", action="store_true",
                        help="train only the --rerun names; report the other runs found in the "
                        "--reuse files (the tables say where a row has fewer seeds)")  # fmt: skip
    parser.add_argument("--rerun", default="", metavar="NAMES",
                        help="comma-separated names or globs trained again despite --reuse "
                        "(after a change to their code)")  # fmt: skip
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--list", action="store_true", help="print the registries and exit")
    args = parser.parse_args(argv)
    args.preset = args.preset or "quick"
    changed = args.tasks or args.optimizers or args.seeds or args.steps or args.batch_size
    args.tag = args.tag or ("custom" if changed or args.extra_optimizer else args.preset)
    args.argv = list(argv)
    return args


def list_registries() -> str:
    lines = ["tasks:"] + [f"  {name}" for name in TASKS] + ["optimizers:"]
    for name, entry in OPTIMIZERS.items():
        factory = entry.factory if isinstance(entry.factory, str) else entry.factory.__name__
        default = "*" if name in DEFAULT_OPTIMIZERS else " "
        lines.append(
            f" {default}{name:<20} {entry.group:<12} {factory} {dict(entry.kwargs) or ''}"
            f"{' grid ' + str(dict(entry.grid)) if entry.grid else ''}"
        )
    return "\n".join([*lines, "(* = in the default selection)"])


def main(argv: Sequence[str] | None = None) -> dict | None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.list:
        print(list_registries())
        return None
    results = run_benchmark(args)
    print(markdown_report(results))
    return results


if __name__ == "__main__":
    main()
