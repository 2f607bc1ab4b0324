"""Longer steps than the search's on deterministic losses: does the run still reach the optimum?

``salsa(step_multiplier=μ, multiplier_distance=0.25, multiplier_noise=None, rescale_distance=None)``
moves each parameter leaf that has left its start up to μ times the step the search accepted. On
minibatch training from scratch μ = 2 helps (README, *Fifth round*); here the loss is the same at
every step. The last column is ``salsa()`` itself, whose ``multiplier_noise`` keeps its μ = 2 off
on a loss without noise (README, *Seventh round*). The problems are those of the core tests
(``tests/objectives.py``: a quadratic, Rosenbrock, logistic regression, a small MLP; the least
squares and regularised logistic regression of ``tests/test_convergence.py``). Each cell trains
``--steps`` steps from the problem's start and reports the final loss and gradient norm::

  python -m benchmarks.deterministic_multipliers --multipliers 1,1.3,1.5,1.7,2

Writes ``benchmarks/results/deterministic_multipliers.{md,json}``.
"""

import argparse
import datetime
import json
import os
import sys

import jax
import optax

import salsa_optax
from benchmarks import provenance

sys.path.insert(0, str(provenance.REPOSITORY / "tests"))
from objectives import (  # the core tests' problems
    OBJECTIVES,
    Objective,
    least_squares,
    make_train_step,
    regularised_logistic,
)

DEFAULT = "salsa()"


def optimizer(column: str):
    """The column's optimizer: the ungated option with multiplier μ, or ``salsa()``."""
    if column == DEFAULT:
        return salsa_optax.salsa()
    return salsa_optax.salsa(
        step_multiplier=float(column),
        multiplier_distance=0.25,
        multiplier_noise=None,
        rescale_distance=None,
    )


def final_point(objective: Objective, column: str, steps: int) -> dict[str, float]:
    """Loss and gradient norm after ``steps`` steps of the column's optimizer."""
    tx = optimizer(column)
    step = make_train_step(tx, objective)
    params, state = objective.params, tx.init(objective.params)
    for _ in range(steps):
        params, state, _ = step(params, state)
    loss, grad = jax.value_and_grad(objective.loss)(params, objective.x, objective.y)
    noise = optax.tree.get(state, "noise")
    point = {"loss": float(loss), "grad_norm": float(optax.tree.norm(grad))}
    if noise is not None:
        # The noise gate's ratio: residual over linear change, root mean squares (0: closed).
        point["gate_ratio"] = float(noise.ratio())
    return point


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--multipliers", default="1,1.3,1.5,1.7,2")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--out", default=str(provenance.RESULTS_DIR))
    args = parser.parse_args(argv)
    columns = [str(float(m)) for m in args.multipliers.split(",")] + [DEFAULT]
    problems = [*OBJECTIVES, least_squares()[0], regularised_logistic()]
    rows = {
        problem.name: {c: final_point(problem, c, args.steps) for c in columns}
        for problem in problems
    }
    command = provenance.command_line(
        "python -m benchmarks.deterministic_multipliers", sys.argv[1:] if argv is None else argv
    )
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    lines = [
        "# Longer steps on deterministic losses",
        "",
        f"`{command}` — {when} UTC, salsa_optax {salsa_optax.__version__} "
        f"(git {provenance.git_description()}), jax {jax.__version__}.",
        "",
        f"Loss after {args.steps} steps of `salsa(step_multiplier=μ, multiplier_distance=0.25, "
        "multiplier_noise=None, rescale_distance=None)` (μ = 1: every step the search's) and of "
        "`salsa()`; in "
        "parentheses the gradient norm.",
        "",
        "| problem | "
        + " | ".join(c if c == DEFAULT else f"μ = {float(c):g}" for c in columns)
        + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for name, cells in rows.items():
        values = [f"{c['loss']:.2e} ({c['grad_norm']:.1e})" for c in cells.values()]
        lines.append(f"| {name} | " + " | ".join(values) + " |")
    ratios = ", ".join(f"{name} {cells[DEFAULT]['gate_ratio']:.1e}" for name, cells in rows.items())
    lines += ["", f"`salsa()`'s noise gate at the end, residual / linear change: {ratios}."]
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, "deterministic_multipliers")
    with open(stem + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(stem + ".json", "w") as f:
        json.dump({"command": command, "steps": args.steps, "rows": rows}, f, indent=1)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
