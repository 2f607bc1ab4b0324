"""How one run is trained: the compiled step, the loop, the evaluation and the run's record.

Every run trains with one compiled step per (task, optimizer): forward+backward, then
``tx.update(grads, state, params, value=, grad=, value_fn=)``, so a line search's trial evaluations
and its search-frequency schedule run inside the compiled step. Reported wall time is training time
only; compilation and evaluation are recorded separately.
"""

import itertools
import math
import time
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from benchmarks.quality.context import TaskContext, batch_indices, split_model
from benchmarks.tasks import Task

CHUNK_STEPS = 250  # steps between fetching diagnostics and checking for divergence


CURVE_POINTS = 100  # points kept per run in the JSON's curves (the .npz keeps every step)


def tree_get(tree, key):
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
    info = tree_get(opt_state, "info")
    fields = getattr(info, "_fields", ())
    names = ("step_size", "searched", "num_evaluations", "num_backtracks", "search_outcome",
             "refreshed")  # fmt: skip
    for name in names:
        if name in fields:
            out[name] = getattr(info, name)
    if "num_linesearch_steps" in fields:
        out["num_evaluations"] = info.num_linesearch_steps
    for name in ("learning_rate", "estim_lr", "step_multiplier"):
        leaf = tree_get(opt_state, name)
        if isinstance(leaf, jax.Array) and leaf.ndim == 0:
            out[name] = leaf
    noise = tree_get(opt_state, "noise")
    if noise is not None:
        out["noise_ratio"] = noise.ratio()
    return out


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
    if ctx.recalibration_batches and ctx.recalibrate is not None:
        # Batches of a fixed permutation (seed 0): the same for every optimizer and seed.
        chosen = batch_indices(ctx.train_size, ctx.batch_size, ctx.recalibration_batches, 0)
        batches = jax.tree.map(lambda a: a[jnp.asarray(chosen)], ctx.train)
        rest = ctx.recalibrate(params, rest, batches)
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
    if "noise_ratio" in per_step:
        ratio = per_step["noise_ratio"][len(per_step["noise_ratio"]) // 10 :]
        out["noise_ratio_min"] = float(ratio.min())
        out["noise_ratio_median"] = float(np.median(ratio))
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
