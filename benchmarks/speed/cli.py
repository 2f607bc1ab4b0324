"""Per-step cost of SaLSa against Adam, optax's line search and the authors' PyTorch optimizer.

Run from the repository root (about 10 minutes on one CPU core; the same command uses a GPU when
JAX sees one)::

    python -m benchmarks.speed
    python -m benchmarks.speed --models mlp --steps 60 --no-scaling --no-torch   # a quick look

``--from-json`` writes the tables and plots of a results file again (of a run on another machine,
say) without timing anything::

    python -m benchmarks.speed --from-json benchmarks/results/speed_gpu.json
"""

import argparse
import json
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

import jax

from benchmarks import provenance
from benchmarks.speed.environment import configure_threads, torch_unavailable
from benchmarks.speed.measure import run
from benchmarks.speed.plots import plot_overhead, plot_scaling
from benchmarks.speed.registry import MODELS, VARIANTS
from benchmarks.speed.report import markdown
from benchmarks.speed.runners import CompileCounter


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.speed", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--models", default="mlp,resnet,transformer", help=f"of {', '.join(MODELS)}"
    )
    parser.add_argument("--variants", default=",".join(VARIANTS), help="adam is always run")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant")
    parser.add_argument("--steps", type=int, default=100, help="timed steps per variant")
    parser.add_argument("--start-steps", type=int, default=20, help="reported apart")
    parser.add_argument("--chunk", type=int, default=10, help="steps per turn")
    parser.add_argument(
        "--settle-steps",
        type=int,
        default=300,
        help="untimed salsa() steps before the settled regime is timed (0: not timed)",
    )
    parser.add_argument("--settled-steps", type=int, default=200, help="timed settled steps")
    parser.add_argument(
        "--pipelined-steps",
        type=int,
        default=0,
        help="steps of Adam, a skipped step and settled salsa() queued back to back (0: none)",
    )
    parser.add_argument("--pipelined-chunk", type=int, default=25, help="queued steps per turn")
    parser.add_argument("--horizon-steps", type=int, default=2000, help="0: no horizon run")
    parser.add_argument("--scaling-steps", type=int, default=60)
    parser.add_argument("--scaling-widths", default="64,256,1024")
    parser.add_argument("--scaling-batch-sizes", default="32,128,512")
    parser.add_argument("--no-scaling", action="store_true")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--pin", choices=("auto", "yes", "no"), default="auto")
    parser.add_argument("--cpu", type=int, default=None, help="core to pin (default: the last)")
    parser.add_argument("--out", default=str(provenance.RESULTS_DIR))
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument(
        "--tag", default="", help="the results are speed_<backend>_<tag>.* (speed_<backend>.*)"
    )
    parser.add_argument(
        "--from-json",
        type=pathlib.Path,
        default=None,
        help="write the tables and plots of this results file again, beside it; time nothing",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.from_json:
        results = json.loads(args.from_json.read_text())
        stem = args.from_json.with_suffix("")
        paths = write_results(results, stem, plots=not args.no_plots)
        print("[speed] wrote " + ", ".join(str(p) for p in paths))
        return results
    skip_torch = "--no-torch given" if args.no_torch else torch_unavailable()
    if skip_torch:
        print(f"[speed] skipping the PyTorch comparison: {skip_torch}")
    threads = configure_threads(args.pin, args.cpu, with_torch=not skip_torch)
    compiles = CompileCounter()
    jax.monitoring.register_event_duration_secs_listener(compiles)
    try:
        results = run(args, compiles, with_torch=not skip_torch)
    finally:
        jax.monitoring.unregister_event_duration_listener(compiles)
    results["environment"].update(
        threads, command=provenance.command_line("python -m benchmarks.speed", argv)
    )
    results["torch_skipped"] = skip_torch
    tag = f"_{args.tag}" if args.tag else ""
    stem = pathlib.Path(args.out) / f"speed_{results['environment']['backend']}{tag}"
    paths = write_results(results, stem, plots=not args.no_plots)
    print("[speed] wrote " + ", ".join(str(p) for p in paths))
    return results


def write_results(results: dict[str, Any], stem: pathlib.Path, plots: bool) -> list[pathlib.Path]:
    """``stem.json``, ``stem.md`` and, with ``plots``, the figures ``stem_*.png``."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".json"), stem.with_suffix(".md")]
    paths[0].write_text(json.dumps(results, indent=1) + "\n")
    paths[1].write_text(markdown(results))
    if plots:
        paths.append(plot_overhead(results, pathlib.Path(f"{stem}_overhead.png")))
        if "scaling" in results or "horizon" in results:
            paths.append(plot_scaling(results, pathlib.Path(f"{stem}_scaling.png")))
    return paths
