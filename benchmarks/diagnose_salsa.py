"""Why SaLSa's step size settles where it does: per-step diagnostics of the full optimizer.

For each SaLSa variant on a quality-benchmark task, logs every step's stored and used step size,
the norms of the search direction ``P g`` and of the momentum direction ``P m̂`` (``P`` Adam's
preconditioner), the norm of the update actually applied, the Armijo margin and whether the step
searched; then plots them and prints a summary::

  python -m benchmarks.diagnose_salsa --task mnist1d_cnn --steps 1500
  python -m benchmarks.diagnose_salsa --task digits_mlp \
      --variant default= --variant growing=increase_factor=1.1

Writes ``benchmarks/results/diagnosis_<task>.{json,png}``.
"""

import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import salsa_optax
from benchmarks import provenance
from benchmarks.quality import context, harness, selection
from benchmarks.quality.factories import SEARCHED_STEP
from benchmarks.tasks import get_task

# salsa() keyword arguments of each variant: the published optimizer, the published growth with
# the rescaled skipped steps of the default, and the default (both as before 0.3: every step the
# search's, the optimizers this diagnosis was made for).
DEFAULT_VARIANTS = {
    "published": dict(salsa_optax.PUBLISHED_DEFAULTS),
    "rescaled": {
        **SEARCHED_STEP,
        "increase_factor": salsa_optax.PUBLISHED_DEFAULTS["increase_factor"],
    },
    "default": dict(SEARCHED_STEP),
}


def direction_norms(grad, state, b1=0.9, b2=0.999, eps=1e-8):
    """``(‖P g‖, ‖P m̂‖)`` from the gradient and the optimizer state after the step."""
    t = state.count
    moments = state.directions
    mu_hat = optax.tree.bias_correction(moments.mu, b1, t)
    nu_hat = optax.tree.bias_correction(moments.nu, b2, t)
    precond = jax.tree.map(lambda v: 1 / (jnp.sqrt(v) + eps), nu_hat)
    return (
        optax.tree.norm(jax.tree.map(jnp.multiply, precond, grad)),
        optax.tree.norm(jax.tree.map(jnp.multiply, precond, mu_hat)),
    )


def make_step(ctx, tx):
    base_step = harness.make_train_step(ctx.task, ctx.graphdef, tx)

    def step(carry, train, indices):
        params = carry[0]
        batch_grad = jax.grad(lambda p: _loss(ctx, p, carry, train, indices))(params)
        new_carry, diagnostics = base_step(carry, train, indices)
        state = new_carry[2]
        search_norm, momentum_norm = direction_norms(batch_grad, state)
        update = jax.tree.map(jnp.subtract, new_carry[0], params)
        return new_carry, {
            "loss": diagnostics["loss"],
            "stored": state.learning_rate,
            "used": state.info.step_size,
            "searched": state.info.searched,
            "margin": state.info.armijo_margin,
            "search_direction_norm": search_norm,
            "momentum_direction_norm": momentum_norm,
            "update_norm": optax.tree.norm(update),
        }

    return jax.jit(step)


def _loss(ctx, params, carry, train, indices):
    """The step's minibatch loss at ``params`` (same batch and key as the train step)."""
    _, rest, _, key, step = carry
    _, step_key = jax.random.split(key)
    batch = jax.tree.map(lambda a: a[indices[step]], train)
    return ctx.task.loss(nnx.merge(ctx.graphdef, params, rest, copy=True), batch, step_key)


def run(task_name, variants, steps, seed=0):
    ctx = context.TaskContext.build(get_task(task_name), "quick", steps, None)
    indices = jnp.asarray(context.batch_indices(ctx.train_size, ctx.batch_size, ctx.steps, seed))
    logs = {}
    for name, kwargs in variants.items():
        tx = salsa_optax.salsa(**kwargs)
        model = context.split_model(ctx.task, seed)
        carry = (model.params, model.rest, tx.init(model.params), jax.random.key(seed), 0)
        carry = jax.tree.map(jnp.asarray, carry)
        step = make_step(ctx, tx)
        rows = []
        for _ in range(ctx.steps):
            carry, row = step(carry, ctx.train, indices)
            rows.append(row)
        logs[name] = {
            k: np.stack([np.asarray(r[k]) for r in jax.device_get(rows)]) for k in rows[0]
        }
        params, rest = carry[0], carry[1]
        batches, weights = ctx.eval_splits["test"]
        logs[name]["test_metric"] = float(ctx.evaluate(params, rest, batches, weights)[1])
    return logs


def summarize(logs):
    out = {}
    for name, log in logs.items():
        late = slice(len(log["loss"]) // 2, None)
        searched = log["searched"].astype(bool)
        ratio = log["search_direction_norm"] / log["momentum_direction_norm"]
        out[name] = {
            "test_metric": log["test_metric"],
            "final_loss": float(np.mean(log["loss"][-50:])),
            "stored_step_size_late_median": float(np.median(log["stored"][late])),
            "search_over_momentum_norm_late_median": float(np.median(ratio[late])),
            "update_norm_late_median": float(np.median(log["update_norm"][late])),
            "searched_fraction": float(searched.mean()),
            "margin_median": float(np.median(log["margin"][searched & np.isfinite(log["margin"])])),
        }
    return out


def plot(logs, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    panels = [
        ("stored", "stored step size η"),
        ("ratio", "‖P g‖ / ‖P m̂‖ (search / momentum direction)"),
        ("update_norm", "‖update‖ applied"),
        ("loss", "minibatch loss"),
    ]
    for ax, (key, label) in zip(axes.flat, panels, strict=True):
        for name, log in logs.items():
            values = (
                log["search_direction_norm"] / log["momentum_direction_norm"]
                if key == "ratio"
                else log[key]
            )
            ax.plot(values, label=name, lw=0.8)
        ax.set_title(label, fontsize=10)
        ax.set_yscale("log")
    axes[0, 0].legend()
    for ax in axes[1]:
        ax.set_xlabel("step")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_variant(spec):
    name, _, assignments = spec.partition("=")
    kwargs = {}
    for item in filter(None, assignments.split(",")):
        key, _, value = item.partition("=")
        kwargs[key] = selection.parse_value(value)
    return name, kwargs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="mnist1d_cnn")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variant", action="append", help="NAME=KEY=VALUE,... of salsa()")
    parser.add_argument("--out", default=str(provenance.RESULTS_DIR))
    args = parser.parse_args(argv)
    variants = dict(map(parse_variant, args.variant)) if args.variant else DEFAULT_VARIANTS
    logs = run(args.task, variants, args.steps, args.seed)
    summary = summarize(logs)
    os.makedirs(args.out, exist_ok=True)
    prefix = os.path.join(args.out, f"diagnosis_{args.task}")
    with open(prefix + ".json", "w") as f:
        json.dump({"task": args.task, "variants": variants, "summary": summary}, f, indent=1)
    plot(logs, prefix + ".png", f"SaLSa diagnostics on {args.task}")
    print(json.dumps(summary, indent=1))
    print(f"wrote {prefix}.json and {prefix}.png")


if __name__ == "__main__":
    main()
