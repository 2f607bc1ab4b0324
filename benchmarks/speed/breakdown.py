"""What a skipped step costs beyond an Adam step, item by item.

Run from the repository root (a few minutes on one pinned CPU core)::

    python -m benchmarks.speed.breakdown
    python -m benchmarks.speed.breakdown --models mlp --rounds 40

For each model it times five steps on the same batches, interleaved ``--chunk`` steps at a time
in one process:

- ``adam`` and ``salsa_skipped`` (SaLSa that never searches) in the benchmark's harness: the
  training step jitted over the ``nnx`` state, whose every leaf Python flattens and wraps at
  each call;
- the same two steps taking their state as a flat list of arrays (the jitted function rebuilds
  the ``nnx`` state inside its trace): each leaf then costs only the runtime's handling of a
  buffer;
- ``adam`` followed by a finiteness guard, with the state as a flat list: SaLSa's check of the
  value and gradient (:func:`salsa_optax._src.validation.all_finite`; SaLSa also checks its
  incoming updates, which are the gradient itself in this step), the update zeroed where it
  fails.

From the medians it splits what a skipped step costs beyond Adam's into the state's extra leaves
in the harness, the finiteness check, and the rest (the search's loop and the scalar
bookkeeping, the guarded moments, the update's read of the gradient), each as a share of the Adam
step in the harness. Writes ``speed_breakdown_<backend>.{md,json}`` to ``--out``.
"""

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from benchmarks import provenance
from benchmarks.speed.environment import configure_threads, environment
from benchmarks.speed.measure import make_batches
from benchmarks.speed.registry import MODELS, VARIANTS
from benchmarks.speed.runners import JaxRunner
from salsa_optax._src.validation import all_finite

# (name, harness, optimizer): the five steps timed.
TIMED = (
    ("adam", "nnx", "adam"),
    ("salsa_skipped", "nnx", "salsa_skipped"),
    ("adam", "flat", "adam"),
    ("salsa_skipped", "flat", "salsa_skipped"),
    ("adam_guarded", "flat", "adam_guarded"),
)


def finiteness_guard() -> optax.GradientTransformationExtraArgs:
    """Zeroes the updates unless the value and gradient are finite, as SaLSa does."""

    def update_fn(updates, state, params=None, *, value=None, grad=None, **extra_args):
        del params, extra_args
        finite = all_finite((value, grad))
        return jax.tree.map(lambda u: jnp.where(finite, u, 0), updates), state

    return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update_fn)


def optimizer(name: str) -> optax.GradientTransformation:
    if name == "adam_guarded":
        return optax.chain(VARIANTS["adam"].make(), finiteness_guard())
    return VARIANTS[name].make()


def step_function(harness: str, runner: JaxRunner) -> tuple[Callable[[], None], int]:
    """One blocking step of ``runner``'s training step in ``harness``, and its state's leaves."""
    leaves, treedef = jax.tree.flatten(runner.state)
    if harness == "nnx":
        runner.compile()
        return runner.step, len(leaves)

    def flat_step(flat_state, batch):
        state, metrics = runner.trace_counter(treedef.unflatten(flat_state), batch)
        return jax.tree.leaves(state), metrics

    jitted = jax.jit(flat_step, donate_argnums=0)
    carry = {"state": [x.copy() for x in leaves], "index": 0}

    def step() -> None:
        batch = runner.batches[carry["index"] % len(runner.batches)]
        carry["index"] += 1
        carry["state"], metrics = jitted(carry["state"], batch)
        jax.block_until_ready((carry["state"], metrics))

    return step, len(leaves)


def breakdown(model: str, batch_size: int, rounds: int, chunk: int) -> dict[str, Any]:
    """The five steps' times on one model, and the items a skipped step's excess splits into."""
    spec = MODELS[model]()
    batches, _ = make_batches(spec, batch_size, 4)
    steps, leaves, times = {}, {}, {}
    for name, harness, tx in TIMED:
        key = f"{name}/{harness}"
        steps[key], leaves[key] = step_function(
            harness, JaxRunner(tx, optimizer(tx), spec, batches)
        )
        for _ in range(3):  # compiles, then warms up
            steps[key]()
        times[key] = []
    for _ in range(rounds):
        for key, step in steps.items():
            start = time.perf_counter()
            for _ in range(chunk):
                step()
            times[key].append((time.perf_counter() - start) / chunk * 1e3)
    ms = {key: statistics.median(values) for key, values in times.items()}
    adam = ms["adam/nnx"]
    items = {
        "state leaves in the harness": (ms["salsa_skipped/nnx"] - ms["salsa_skipped/flat"])
        - (ms["adam/nnx"] - ms["adam/flat"]),
        "finiteness check": ms["adam_guarded/flat"] - ms["adam/flat"],
        "the rest of the skipped step": ms["salsa_skipped/flat"] - ms["adam_guarded/flat"],
    }
    return {
        "model": model,
        "batch_size": batch_size,
        "ms_per_step": ms,
        "ms_per_step_all": times,
        "state_leaves": leaves,
        "skipped_over_adam": ms["salsa_skipped/nnx"] / adam,
        "excess_ms": ms["salsa_skipped/nnx"] - adam,
        "items_ms": items,
        "items_share_of_adam": {name: value / adam for name, value in items.items()},
    }


def markdown(rows: Sequence[dict[str, Any]], env: dict[str, Any]) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in env["versions"].items())
    names = list(rows[0]["items_ms"]) if rows else []
    lines = [
        f"# What a skipped step costs beyond Adam's ({env['backend']})",
        "",
        f"- date: {env['date']}; commit {env['git_commit']}",
        f"- machine: {env['cpu']} ({env['cpu_count']} cores), device {env['device']}; "
        f"threads: {env['threads']}",
        f"- versions: {versions}",
        f"- command: `{env['command']}`",
        "- medians over the rounds, each step timed to its end. *Harness*: the benchmark's step "
        "jitted over the `nnx` state; *flat*: the same step taking its state as a list of "
        "arrays. Items as a share of the Adam step in the harness: the state's extra leaves in "
        "the harness (the skipped step's harness overhead beyond Adam's), the finiteness check "
        "(Adam with SaLSa's guard against Adam, flat) and the rest (the skipped step against "
        "the guarded Adam step, flat).",
        "",
        "| model | Adam, ms (harness / flat) | skipped step, ms (harness / flat) | × Adam "
        "| state leaves (Adam / SaLSa) | " + " | ".join(names) + " |",
        "|---|---|---|---|---|" + "---|" * len(names),
    ]
    for row in rows:
        ms, leaves = row["ms_per_step"], row["state_leaves"]
        shares = " | ".join(
            f"{row['items_ms'][name]:+.3f} ms ({100 * row['items_share_of_adam'][name]:+.1f} %)"
            for name in names
        )
        lines.append(
            f"| {MODELS[row['model']]().description} "
            f"| {ms['adam/nnx']:.3f} / {ms['adam/flat']:.3f} "
            f"| {ms['salsa_skipped/nnx']:.3f} / {ms['salsa_skipped/flat']:.3f} "
            f"| {row['skipped_over_adam']:.3f} "
            f"| {leaves['adam/nnx']} / {leaves['salsa_skipped/nnx']} | {shares} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.speed.breakdown", description=__doc__
    )
    parser.add_argument("--models", default="mlp,resnet,transformer")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=30, help="turns of every step")
    parser.add_argument("--chunk", type=int, default=10, help="steps per turn")
    parser.add_argument("--pin", choices=("auto", "yes", "no"), default="auto")
    parser.add_argument("--out", default=str(provenance.RESULTS_DIR))
    args = parser.parse_args(argv)
    threads = configure_threads(args.pin, None, with_torch=False)
    rows = []
    for model in args.models.split(","):
        row = breakdown(model, args.batch_size, args.rounds, args.chunk)
        print(
            f"[speed.breakdown] {model}: skipped step {row['skipped_over_adam']:.3f} x Adam; "
            + ", ".join(f"{k} {v:+.3f} ms" for k, v in row["items_ms"].items()),
            flush=True,
        )
        rows.append(row)
    env = environment() | {"threads": threads}
    env["command"] = provenance.command_line("python -m benchmarks.speed.breakdown", argv)
    name = f"speed_breakdown_{env['backend']}"
    paths = provenance.write_rows(args.out, name, env, rows, markdown(rows, env))
    print(f"[speed.breakdown] wrote {', '.join(map(str, paths))}")
    return rows


if __name__ == "__main__":
    main()
