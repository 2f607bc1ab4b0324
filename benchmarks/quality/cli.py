"""Quality benchmark: SaLSa against tuned baselines and learning-rate-free optimizers.

Usage::

  python -m benchmarks.quality --quick
  python -m benchmarks.quality --tasks digits_mlp,mnist1d_cnn --optimizers salsa,adam \
      --seeds 0,1,2 --extra-optimizer 'salsa_c01=salsa:slope_rtol=0.1,smoothing=0.99' --tag c01
  python -m benchmarks.quality --list

In ``--extra-optimizer NAME=BASE[:KEY=VALUE,...]`` a value is a Python literal; a list value makes
that key a grid axis (``adam_wide=adam:learning_rate=[1e-5,1e-4,1e-3,1e-2,1e-1]``).
"""

import argparse
import sys
from collections.abc import Sequence

from benchmarks import provenance
from benchmarks.quality.registry import DEFAULT_OPTIMIZERS, OPTIMIZERS
from benchmarks.quality.report import markdown_report
from benchmarks.quality.runner import run_benchmark
from benchmarks.quality.selection import parse_steps
from benchmarks.tasks import TASKS


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
    parser.add_argument("--out", default=str(provenance.RESULTS_DIR), help="output folder")
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
    parser.add_argument("--recalibrate-batchnorm", type=int, default=0, metavar="N",
                        help="before evaluating a model with BatchNorm, recompute its "
                        "statistics over N training batches at the final weights (every "
                        "optimizer alike)")  # fmt: skip
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
