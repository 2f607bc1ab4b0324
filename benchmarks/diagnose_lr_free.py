"""salsa() against Prodigy, D-Adaptation and tuned Adam on one axis: the effective Adam rate.

Every optimizer here moves along an Adam direction ``P m̂`` (``P = 1/(sqrt(v̂) + eps)``) times a
scalar, its *effective Adam learning rate*:

- tuned Adam: its constant rate;
- Prodigy and D-Adaptation (optax.contrib, defaults): ``d * lr`` (``estim_lr``; lr = 1);
- salsa(): on a skipped step the used step size times ``‖P g‖ / ‖P m̂‖`` (the momentum step is
  rescaled to the search direction's length); on a searched step the used step size itself (it
  moves to the accepted trial point on ``-P g``, as long as a skipped step would). Variants
  multiplied by ``k`` (``optax.chain(salsa(), optax.scale(k))``) count ``k`` times that.

Also logged: the training loss, salsa()'s Armijo margin (smallest ``|lhs - rhs| / |rhs|`` of the
step's tests; on a step accepted at its first trial, the accepted trial's) and whether the first
trial was accepted, and on BatchNorm networks the norm of each conv kernel feeding a BatchNorm
(scale-invariant: its effective rate is ``η / ‖w‖²``) and its relative update ``‖Δw‖ / ‖w‖``::

  python -m benchmarks.diagnose_lr_free --task mnist1d_cnn
  python -m benchmarks.diagnose_lr_free --task fashion_resnet --seeds 1 --optimizers salsa,prodigy

``salsa`` here is ``salsa()``'s default before 0.3, every step the search's
(``benchmarks.quality.factories.SEARCHED_STEP``), the optimizer this diagnosis was made for.
Optimizer names: ``salsa``, ``prodigy``, ``dadapt_adamw``, ``adam`` (the rate ``quality_cpu.md``
chose), ``salsa_x<k>`` (``optax.chain(salsa(), optax.scale(k))``), ``salsa_c0<d>``
(``slope_rtol=0.<d>``). Writes ``benchmarks/results/diagnosis_lr_free_<task>.{json,png}`` and
every step of every run in ``..._steps.npz`` (``--replot`` summarizes and plots it again without
training); the figure and the JSON also carry the committed per-step curves of
``quality_cpu_steps.npz`` (Prodigy's and D-Adaptation's ``d`` and tuned Adam's loss, every seed)
where the task has them. The first run of each optimizer's wall time includes its compilation.
"""

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from benchmarks import provenance
from benchmarks.quality import context, harness
from benchmarks.quality.factories import salsa_searched_step
from benchmarks.tasks import get_task
from salsa_optax._src.directions import AdamDirectionsState
from salsa_optax._src.transform import ScaleBySalsaState

TUNED_ADAM = {"mnist1d_cnn": 3e-2, "fashion_resnet": 1e-2}  # quality_cpu.md's chosen rates
DEFAULT_OPTIMIZERS = {
    "mnist1d_cnn": "salsa,prodigy,dadapt_adamw,adam,salsa_x2,salsa_x4,salsa_c03,salsa_c02",
    "fashion_resnet": "salsa,prodigy",
}
COMMITTED = os.path.join(str(provenance.RESULTS_DIR), "quality_cpu_steps.npz")
BATCHNORM_TASKS = {"fashion_resnet"}  # every conv kernel feeds a BatchNorm
CHECKPOINTS = (10, 50, 100, 200, 500, 1000, 1500, 2000, 2580, 6000)


def make_optimizer(name, task_name):
    """The optimizer called ``name``."""
    if name == "adam":
        return optax.adam(TUNED_ADAM[task_name])
    if name == "prodigy":
        return optax.contrib.prodigy()
    if name == "dadapt_adamw":
        return optax.contrib.dadapt_adamw()
    if name == "salsa":
        return salsa_searched_step()
    if name.startswith("salsa_x"):  # salsa_x2: step_multiplier = 2
        return salsa_searched_step(step_multiplier=float(name.removeprefix("salsa_x")))
    if name.startswith("salsa_c"):  # salsa_c03: slope_rtol = 0.3
        return salsa_searched_step(slope_rtol=float("0." + name.removeprefix("salsa_c0")))
    raise ValueError(f"unknown optimizer {name!r}")


def find(state, kind):
    """The first node of type ``kind`` in an optimizer state (chains are tuples)."""
    if isinstance(state, kind):
        return state
    if isinstance(state, tuple):
        for child in state:
            found = find(child, kind)
            if found is not None:
                return found
    return None


def bn_kernels(params):
    """``{path: kernel}`` of the conv kernels (every one feeds a BatchNorm in these ResNets)."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    out = {}
    for path, leaf in leaves:
        name = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
        if "conv" in name and "kernel" in name:
            out[name] = leaf
    return out


def make_step(ctx, tx, b1=0.9, b2=0.999, eps=1e-8):
    base_step = harness.make_train_step(ctx.task, ctx.graphdef, tx)

    def step(carry, train, indices):
        params, rest, _, key, step = carry
        _, step_key = jax.random.split(key)
        batch = jax.tree.map(lambda a: a[indices[step]], train)

        def loss_fn(p):
            return ctx.task.loss(nnx.merge(ctx.graphdef, p, rest, copy=True), batch, step_key)

        new_carry, diagnostics = base_step(carry, train, indices)
        new_params, state = new_carry[0], new_carry[2]
        row = {"loss": diagnostics["loss"]}
        salsa_state = find(state, ScaleBySalsaState)
        if salsa_state is not None:
            moments = find(salsa_state.directions, AdamDirectionsState)
            t = salsa_state.count
            mu_hat = optax.tree.bias_correction(moments.mu, b1, t)
            nu_hat = optax.tree.bias_correction(moments.nu, b2, t)
            precond = jax.tree.map(lambda v: 1 / (jnp.sqrt(v) + eps), nu_hat)
            grad = jax.grad(loss_fn)(params)
            search = optax.tree.norm(jax.tree.map(jnp.multiply, precond, grad))
            momentum = optax.tree.norm(jax.tree.map(jnp.multiply, precond, mu_hat))
            info = salsa_state.info
            ratio = search / momentum
            used = info.step_size
            row |= {
                "stored": salsa_state.learning_rate,
                "used": used,
                "searched": info.searched,
                "first_accepted": info.searched & (info.num_backtracks == 0),
                "margin": info.armijo_margin,
                "ratio": ratio,
                "eff_lr": jnp.where(info.searched, used, used * ratio),
                "eff_lr_length": used * ratio,  # every step as long as a skipped one
            }
        else:
            d = harness.tree_get(state, "estim_lr")
            row["eff_lr"] = d if d is not None else jnp.asarray(TUNED_ADAM[ctx.task.name])
        if ctx.task.name in BATCHNORM_TASKS:
            kernels, new_kernels = bn_kernels(params), bn_kernels(new_params)
            row["kernel_norm"] = jnp.stack([jnp.linalg.norm(w) for w in new_kernels.values()])
            row["kernel_rel_update"] = jnp.stack(
                [
                    jnp.linalg.norm(new_kernels[k] - w) / jnp.linalg.norm(w)
                    for k, w in kernels.items()
                ]
            )
        return new_carry, row

    return jax.jit(step)


def run_one(ctx, name, seed, compiled):
    tx = make_optimizer(name, ctx.task.name)
    if name not in compiled:
        compiled[name] = make_step(ctx, tx)
    step = compiled[name]
    model = context.split_model(ctx.task, seed)
    carry = (model.params, model.rest, tx.init(model.params), jax.random.key(seed), 0)
    carry = jax.tree.map(lambda x: jnp.copy(jnp.asarray(x)), carry)
    indices = jnp.asarray(context.batch_indices(ctx.train_size, ctx.batch_size, ctx.steps, seed))
    tic = time.perf_counter()
    rows = []
    for _ in range(ctx.steps):
        carry, row = step(carry, ctx.train, indices)
        rows.append(row)
    rows = jax.device_get(rows)
    wall = time.perf_counter() - tic
    log = {k: np.stack([np.asarray(r[k]) for r in rows]) for k in rows[0]}
    batches, weights = ctx.eval_splits["test"]
    log["test_metric"] = float(ctx.evaluate(carry[0], carry[1], batches, weights)[1])
    log["wall_s"] = wall
    return log


def committed_curves(task_name):
    """Per-step ``d`` of Prodigy / D-Adaptation and tuned Adam's loss from the committed runs."""
    if not os.path.exists(COMMITTED):
        return {}
    data = np.load(COMMITTED)
    adam = f"learning_rate={TUNED_ADAM.get(task_name)}"
    wanted = {
        ("prodigy", ""): "prodigy",
        ("dadapt_adamw", ""): "dadapt_adamw",
        ("adam", adam): "adam",
    }
    out = {}
    for key in data.files:
        task, opt, member, _seed, field = key.split("|")
        name = wanted.get((opt, member))
        if task == task_name and name and field in ("loss", "estim_lr"):
            field = "eff_lr" if field == "estim_lr" else field
            out.setdefault(name, {}).setdefault(field, []).append(data[key])
    return {name: {k: np.stack(v) for k, v in fields.items()} for name, fields in out.items()}


def _at(values, steps, window=50):
    """Geometric mean over the ``window`` steps ending at each checkpoint (values > 0)."""
    values = np.maximum(np.asarray(values, float), 1e-38)
    return {
        str(s): float(np.exp(np.log(values[max(0, s - window) : s]).mean()))
        for s in steps
        if s <= len(values)
    }


def _geomean(curves):
    return np.exp(np.mean(np.log(np.maximum(curves, 1e-38)), axis=0))


def summarize(logs, committed, steps):
    checkpoints = [s for s in CHECKPOINTS if s < steps] + [steps]
    windows = [(0, 100), (100, 500), (500, steps // 2), (steps // 2, steps)]
    out = {}
    for name, seeds in logs.items():
        eff = _geomean(np.stack([log["eff_lr"] for log in seeds]))
        entry = {
            "test_metric": [log["test_metric"] for log in seeds],
            "test_metric_mean": float(np.mean([log["test_metric"] for log in seeds])),
            "final_loss_last100": float(np.mean([log["loss"][-100:].mean() for log in seeds])),
            "wall_s": [round(log["wall_s"], 1) for log in seeds],
            "eff_lr_at_step": _at(eff, checkpoints),
        }
        if "stored" in seeds[0]:
            searched = np.concatenate([log["searched"] for log in seeds]).astype(bool)
            # Step after which the stored step size no longer changes, per seed.
            entry["stored_last_change_step"] = [
                int(np.flatnonzero(np.diff(log["stored"]) != 0).max(initial=-1) + 2)
                for log in seeds
            ]
            entry["stored_final"] = [float(log["stored"][-1]) for log in seeds]
            entry["eff_lr_length_at_step"] = _at(
                _geomean(np.stack([log["eff_lr_length"] for log in seeds])), checkpoints
            )
            entry["ratio_at_step"] = _at(
                np.median(np.stack([log["ratio"] for log in seeds]), axis=0), checkpoints
            )
            entry["searched_fraction"] = float(searched.mean())
            per_window = {}
            for lo, hi in windows:
                s = np.concatenate([log["searched"][lo:hi] for log in seeds]).astype(bool)
                first = np.concatenate([log["first_accepted"][lo:hi] for log in seeds])
                margin = np.concatenate([log["margin"][lo:hi] for log in seeds])
                ok = first.astype(bool) & np.isfinite(margin)
                per_window[f"{lo}-{hi}"] = {
                    "searches": int(s.sum()),
                    "first_trial_accepted_fraction": float(first[s].mean()) if s.any() else None,
                    "margin_first_accepted_median": float(np.median(margin[ok]))
                    if ok.any()
                    else None,
                    "margin_first_accepted_p10_p90": [
                        float(np.percentile(margin[ok], 10)),
                        float(np.percentile(margin[ok], 90)),
                    ]
                    if ok.any()
                    else None,
                }
            entry["search_windows"] = per_window
        if "kernel_norm" in seeds[0]:
            norms = np.mean([log["kernel_norm"] for log in seeds], axis=0)  # [steps, kernels]
            rel = np.mean([log["kernel_rel_update"] for log in seeds], axis=0)
            entry["kernel_norm_median_at_step"] = _at(np.median(norms, axis=1), checkpoints)
            entry["kernel_rel_update_median_at_step"] = _at(np.median(rel, axis=1), checkpoints)
            # η_eff / ‖w‖²: the rate a scale-invariant kernel feels (median over kernels).
            entry["eff_lr_over_norm_sq_at_step"] = _at(
                eff / np.median(norms**2, axis=1), checkpoints
            )
        out[name] = entry
    for name, fields in committed.items():
        entry = out.setdefault(f"{name} (committed)", {})
        entry["seeds"] = len(fields["loss"])
        entry["final_loss_last100"] = float(fields["loss"][:, -100:].mean())
        if "eff_lr" in fields:
            eff = _geomean(fields["eff_lr"])
            entry["eff_lr_at_step"] = _at(eff, checkpoints)
            late = eff[len(eff) // 4 :]
            entry["eff_lr_growth_from_quarter_to_end"] = float(late[-1] / late[0])
            entry["eff_lr_reaches_90pct_of_final_at_step"] = int(
                np.argmax(eff >= 0.9 * eff[-1]) + 1
            )
    return out


def _smooth(x, width=25):
    x = np.asarray(x, float)
    kernel = np.ones(width) / width
    return np.convolve(
        np.pad(x, (width // 2, width - 1 - width // 2), mode="edge"), kernel, "valid"
    )


def plot(logs, committed, path, task_name):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    colors = {}

    def color(name):
        return colors.setdefault(name, f"C{len(colors) % 10}")

    ax = axes[0, 0]
    for name, seeds in logs.items():
        eff = _geomean(np.stack([log["eff_lr"] for log in seeds]))
        ax.plot(np.exp(_smooth(np.log(eff))), lw=0.9, color=color(name), label=name)
    for name, fields in committed.items():
        if "eff_lr" in fields:
            ax.plot(_geomean(fields["eff_lr"]), lw=1.2, ls="--", color=color(name),
                    label=f"{name} (committed, {len(fields['eff_lr'])} seeds)")  # fmt: skip
    if "adam" not in logs:
        ax.axhline(TUNED_ADAM[task_name], color=color("adam"), ls=":", label="tuned adam")
    ax.set(
        yscale="log",
        title="effective Adam learning rate (seed geomean, 25-step smoothing)",
        xlabel="step",
    )
    ax.legend(fontsize=7)

    ax = axes[0, 1]
    for name, seeds in logs.items():
        ax.plot(_smooth(np.mean([log["loss"] for log in seeds], 0)), lw=0.8, color=color(name),
                label=name)  # fmt: skip
    for name, fields in committed.items():
        ax.plot(_smooth(fields["loss"].mean(0)), lw=1.0, ls="--", color=color(name),
                label=f"{name} (committed)")  # fmt: skip
    ax.set(yscale="log", title="training minibatch loss (25-step mean)", xlabel="step")
    ax.legend(fontsize=7)

    ax = axes[1, 0]
    searching = [name for name, seeds in logs.items() if "margin" in seeds[0]]
    for name in searching[:2]:  # salsa() and at most one variant: more are unreadable
        seeds = logs[name]
        for i, log in enumerate(seeds):
            ok = log["first_accepted"].astype(bool) & np.isfinite(log["margin"])
            ax.scatter(np.flatnonzero(ok), log["margin"][ok], s=3, color=color(name),
                       label=f"{name}: first trial accepted" if i == 0 else None)  # fmt: skip
            later = log["searched"].astype(bool) & ~ok & np.isfinite(log["margin"])
            ax.scatter(np.flatnonzero(later), log["margin"][later], s=3, marker="x",
                       color=color(name), alpha=0.4,
                       label=f"{name}: backtracked" if i == 0 else None)  # fmt: skip
    ax.set(yscale="log", title="salsa Armijo margin |lhs-rhs|/|rhs| of searched steps",
           xlabel="step")  # fmt: skip
    ax.legend(fontsize=6)

    ax = axes[1, 1]
    if any("kernel_norm" in seeds[0] for seeds in logs.values()):
        for name, seeds in logs.items():
            norms = np.mean([log["kernel_norm"] for log in seeds], axis=0)
            ax.plot(np.median(norms, axis=1), color=color(name), label=f"{name}: median ‖w‖")
            rel = np.mean([log["kernel_rel_update"] for log in seeds], axis=0)
            ax.plot(_smooth(np.median(rel, axis=1)), color=color(name), ls=":",
                    label=f"{name}: median ‖Δw‖/‖w‖")  # fmt: skip
        ax.set(yscale="log", title="conv kernels before BatchNorm", xlabel="step")
    else:
        for name, seeds in logs.items():
            if "ratio" in seeds[0]:
                ax.plot(_smooth(np.median([log["ratio"] for log in seeds], 0)), color=color(name),
                        label=name)  # fmt: skip
        ax.set(yscale="log", title="salsa ‖P g‖ / ‖P m̂‖ (25-step mean)", xlabel="step")
    ax.legend(fontsize=7)
    fig.suptitle(f"effective learning rates on {task_name}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def train_all(ctx, names, seeds):
    logs, compiled = {}, {}
    for name in names:
        logs[name] = []
        for seed in seeds:
            log = run_one(ctx, name, seed, compiled)
            logs[name].append(log)
            print(f"{name} seed {seed}: test {log['test_metric']:.4f}, {log['wall_s']:.1f} s",
                  flush=True)  # fmt: skip
    return logs


def save_steps(logs, path):
    """Every step of every run, keys ``optimizer|seed_index|field`` (scalars as 0-d arrays)."""
    arrays = {
        f"{name}|{i}|{field}": np.asarray(value)
        for name, seeds in logs.items()
        for i, log in enumerate(seeds)
        for field, value in log.items()
    }
    np.savez_compressed(path, **arrays)


def load_steps(path):
    data = np.load(path)
    logs = {}
    for key in data.files:
        name, i, field = key.split("|")
        seeds = logs.setdefault(name, [])
        while len(seeds) <= int(i):
            seeds.append({})
        value = data[key]
        seeds[int(i)][field] = value.item() if value.ndim == 0 else value
    return logs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="mnist1d_cnn", choices=sorted(TUNED_ADAM))
    parser.add_argument("--optimizers", default=None, help="comma-separated; default per task")
    parser.add_argument("--seeds", default=None, help="comma-separated (default: the task's)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--out", default=str(provenance.RESULTS_DIR))
    parser.add_argument(
        "--replot", action="store_true", help="summarize and plot the saved _steps.npz again"
    )
    args = parser.parse_args(argv)
    task = get_task(args.task)
    ctx = context.TaskContext.build(task, "cpu", args.steps, None)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else task.budgets["cpu"].seeds
    names = (args.optimizers or DEFAULT_OPTIMIZERS[args.task]).split(",")
    os.makedirs(args.out, exist_ok=True)
    prefix = os.path.join(args.out, f"diagnosis_lr_free_{args.task}")
    meta_path = prefix + ".json"
    if args.replot:
        logs = load_steps(prefix + "_steps.npz")
        with open(meta_path) as f:
            seeds = json.load(f)["seeds"]
    else:
        logs = train_all(ctx, names, seeds)
        save_steps(logs, prefix + "_steps.npz")
    steps = len(next(iter(logs.values()))[0]["loss"])
    committed = committed_curves(args.task) if steps == task.budgets["cpu"].steps else {}
    summary = summarize(logs, committed, steps)
    meta = {"task": args.task, "steps": steps, "batch_size": ctx.batch_size, "seeds": list(seeds),
            "tuned_adam_lr": TUNED_ADAM[args.task]}  # fmt: skip
    with open(meta_path, "w") as f:
        json.dump({**meta, "summary": summary}, f, indent=1)
    plot(logs, committed, prefix + ".png", args.task)
    print(json.dumps(summary, indent=1))
    print(f"wrote {prefix}.json, .png and _steps.npz")


if __name__ == "__main__":
    main()
