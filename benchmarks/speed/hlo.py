"""What one training step runs, read off its compiled HLO: Adam's step beside SaLSa's skipped one.

Run from the repository root (a minute on one CPU core; nothing is timed)::

    python -m benchmarks.speed.hlo
    python -m benchmarks.speed.hlo --models mlp --variants adam,salsa_skipped

For each model and variant it compiles the benchmark's training step (the runners' jitted
``examples.common.train_step``, state donated) and counts the instructions the step executes —
those of the entry computation and, in a conditional, of its first branch (of a ``lax.cond``,
the false branch; SaLSa's transform runs its search in a loop whose body a skipped step does
not run, and which is counted with the conditionals) — by kind and size:
kernels writing an array the size of a parameter leaf or more (passes over the parameters),
smaller ones (mostly scalar bookkeeping, each a kernel launch of its own), copies, and the
state's arrays (each one an argument and a result of every call). Writes ``speed_hlo_<backend>.md``
and ``.json`` to ``--out`` (``benchmarks/results``).
"""

import argparse
import math
import re
import sys
from collections.abc import Sequence
from typing import Any

import jax
from flax import nnx

from benchmarks import provenance
from benchmarks.speed.environment import environment
from benchmarks.speed.measure import make_batches
from benchmarks.speed.registry import MODELS, VARIANTS
from benchmarks.speed.runners import JaxRunner

# Instructions that move no data and launch nothing.
_FREE = ("parameter", "constant", "get-tuple-element", "tuple", "bitcast")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%\S+ = (\S+?)(?:\{[^}]*\})? ([\w-]+)\(")
_BRANCHES = re.compile(r"branch_computations=\{([^}]*)\}")


def computations(hlo: str) -> dict[str, list[str]]:
    """The HLO module's computations by name (``ENTRY`` for the entry one), as instruction lines."""
    found, name = {}, None
    for line in hlo.splitlines():
        header = re.match(r"^(ENTRY )?%?(\S+) .*\{$", line)
        if header and not line.startswith(" "):
            name = "ENTRY" if header.group(1) else header.group(2)
            found[name] = []
        elif line == "}":
            name = None
        elif name is not None:
            found[name].append(line)
    return found


def executed(hlo: str) -> list[str]:
    """The entry computation's instructions and, for each conditional, those of its first branch
    (the one a skipped step takes)."""
    module = computations(hlo)
    lines = []
    for line in module["ENTRY"]:
        lines.append(line)
        called = _BRANCHES.search(line)
        if called and " conditional(" in line:
            names = [b.strip().lstrip("%") for b in called.group(1).split(",")]
            lines.extend(module[names[0]])
    return lines


def count_kernels(lines: Sequence[str], leaf_size: int) -> dict[str, int]:
    """Instructions that launch work, by kind (copies, other kernels) and by whether they write
    at least ``leaf_size`` elements (passes over the parameters) or fewer."""
    counts = dict.fromkeys(
        ("parameter-sized", "smaller", "parameter-sized copies", "smaller copies", "control flow"),
        0,
    )
    for line in lines:
        if " conditional(" in line or " while(" in line:  # tuple-shaped: not matched below
            counts["control flow"] += 1
            continue
        match = _INSTRUCTION.match(line)
        if not match or match.group(2) in _FREE:
            continue
        shape, op = match.groups()
        dims = re.search(r"\[([\d,]*)\]", shape)
        size = math.prod(int(d) for d in dims.group(1).split(",") if d) if dims else 0
        kind = "parameter-sized" if size >= leaf_size else "smaller"
        counts[f"{kind} copies" if op == "copy" else kind] += 1
    return counts


def step_profile(model: str, variant: str, batch_size: int) -> dict[str, Any]:
    """The counts of one model's step with one variant."""
    spec = MODELS[model]()
    batches, _ = make_batches(spec, batch_size, 1)
    runner = JaxRunner(variant, VARIANTS[variant].make(), spec, batches)
    runner.compile()
    hlo = runner.compiled.as_text()
    params = nnx.state(spec.make_model(nnx.Rngs(0)), nnx.Param)
    # The smallest weight matrix or kernel: smaller leaves (biases, scales) count as small.
    leaf_size = min(x.size for x in jax.tree.leaves(params) if x.ndim >= 2)
    return {
        "model": model,
        "variant": variant,
        "state_arrays": len(jax.tree.leaves(runner.state)),
        "parameter_leaves": len(jax.tree.leaves(params)),
        **count_kernels(executed(hlo), leaf_size),
    }


def markdown(rows: Sequence[dict[str, Any]], env: dict[str, Any]) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in env["versions"].items())
    lines = [
        f"# What a step runs ({env['backend']})",
        "",
        f"- date: {env['date']}; commit {env['git_commit']}",
        f"- versions: {versions}",
        f"- command: `{env['command']}`",
        "- counted in the compiled training step (state donated): the entry computation and, in a "
        "conditional, its first branch (a loop's body, which a skipped step does not run, is not "
        "counted). *Control flow*: loops and conditionals. *Parameter-sized*: kernels writing as "
        "many elements as the smallest weight matrix or more; *smaller*: the rest (scalars, "
        "biases, per-leaf vectors); each is a kernel launch of its own.",
        "",
        "| model | variant | state arrays | parameter leaves | parameter-sized kernels "
        "| smaller kernels | parameter-sized copies | smaller copies | control flow |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {MODELS[row['model']]().description} | {VARIANTS[row['variant']].label} "
            f"| {row['state_arrays']} | {row['parameter_leaves']} | {row['parameter-sized']} "
            f"| {row['smaller']} | {row['parameter-sized copies']} | {row['smaller copies']} "
            f"| {row['control flow']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed.hlo", description=__doc__)
    parser.add_argument("--models", default="mlp,resnet,transformer")
    parser.add_argument("--variants", default="adam,salsa_skipped")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", default=str(provenance.RESULTS_DIR))
    args = parser.parse_args(argv)
    rows = [
        step_profile(model, variant, args.batch_size)
        for model in args.models.split(",")
        for variant in args.variants.split(",")
    ]
    for row in rows:
        print(row)
    env = environment()
    env["command"] = provenance.command_line("python -m benchmarks.speed.hlo", argv)
    name = f"speed_hlo_{env['backend']}"
    paths = provenance.write_rows(args.out, name, env, rows, markdown(rows, env))
    print(f"[speed.hlo] wrote {', '.join(map(str, paths))}")
    return rows


if __name__ == "__main__":
    main()
