"""Where a step's device time goes: its kernels by total time, from a profiler trace.

Run from the repository root::

    python -m benchmarks.speed.kernels --models resnet50 --variants adam,salsa_skipped

For each model and variant it compiles the benchmark's training step, runs it ``--warmup`` times,
then traces ``--steps`` steps with ``jax.profiler`` (a Perfetto trace) and sums the duration of
every kernel by name: how many launches a step makes, how long they take together, and the
longest ones. On a GPU the kernels are the events of the device's processes; on a CPU, where a
step's kernels run on the host's threads, they are the events of XLA's thunks (those naming an
``hlo_op``) that contain no other (a loop's event spans its body's). The variants of a model
run in one process, so their sums compare. Writes ``speed_kernels_<backend>.json`` (and, with
``--hlo``, each compiled step's HLO text) to ``--out``.
"""

import argparse
import collections
import gzip
import json
import pathlib
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

import jax

from benchmarks import provenance
from benchmarks.speed import models
from benchmarks.speed.environment import configure_threads, environment
from benchmarks.speed.measure import make_batches
from benchmarks.speed.registry import MODELS, VARIANTS
from benchmarks.speed.runners import JaxRunner


def process_names(trace: dict[str, Any]) -> dict[int, str]:
    return {
        event["pid"]: event["args"]["name"]
        for event in trace["traceEvents"]
        if event.get("ph") == "M" and event.get("name") == "process_name"
    }


def device_events(trace: dict[str, Any]) -> list[dict[str, Any]]:
    """The complete events (``ph == "X"``) of the trace's device processes (``/device:``)."""
    names = process_names(trace)
    return [
        event
        for event in trace["traceEvents"]
        if event.get("ph") == "X" and "/device:" in names.get(event.get("pid"), "")
    ]


def thunk_events(trace: dict[str, Any]) -> list[dict[str, Any]]:
    """The complete events of XLA:CPU's thunks (``args["hlo_op"]``) that contain no other thunk
    of their thread: the kernels, not the loops and conditionals that run them."""
    thunks = sorted(
        (
            event
            for event in trace["traceEvents"]
            if event.get("ph") == "X" and "hlo_op" in event.get("args", {})
        ),
        # A loop and its body's first kernel may start together: the loop sorts first.
        key=lambda event: (
            event["pid"],
            event["tid"],
            float(event["ts"]),
            -float(event.get("dur", 0.0)),
        ),
    )
    kernels = []
    for event, after in zip(thunks, [*thunks[1:], None], strict=True):
        end = float(event["ts"]) + float(event.get("dur", 0.0))
        contains = (
            after is not None
            and (after["pid"], after["tid"]) == (event["pid"], event["tid"])
            and float(after["ts"]) < end
        )
        if not contains:
            kernels.append(event)
    return kernels


def kernel_events(trace: dict[str, Any]) -> list[dict[str, Any]]:
    """A device's kernel events where the trace has a device, else the host's thunks."""
    return device_events(trace) or thunk_events(trace)


def kernel_summary(events: Sequence[dict[str, Any]], steps: int, top: int) -> dict[str, Any]:
    """Per step: launches and their total microseconds; the ``top`` names by time."""
    by_name: dict[str, list[float]] = collections.defaultdict(list)
    for event in events:
        by_name[event["name"]].append(float(event.get("dur", 0.0)))
    ranked = sorted(by_name.items(), key=lambda item: -sum(item[1]))
    return {
        "launches_per_step": sum(len(d) for d in by_name.values()) / steps,
        "device_us_per_step": sum(sum(d) for d in by_name.values()) / steps,
        "top": [
            {"name": name[:120], "count_per_step": len(d) / steps, "us_per_step": sum(d) / steps}
            for name, d in ranked[:top]
        ],
    }


def profile(model: str, variant: str, batch_size: int, warmup: int, steps: int, top: int, hlo):
    spec = MODELS[model]()
    host_batches, _ = make_batches(spec, batch_size, 4)
    batches = [models.jax_input(b) for b in host_batches]
    runner = JaxRunner(variant, VARIANTS[variant].make(), spec, batches)
    runner.compile()
    if hlo is not None:
        (hlo / f"{model}_{variant}.hlo.txt").write_text(runner.compiled.as_text())
    for _ in range(warmup):
        runner.step()
    with tempfile.TemporaryDirectory() as log_dir:
        with jax.profiler.trace(log_dir, create_perfetto_trace=True):
            for _ in range(steps):
                runner.step()
        (path,) = pathlib.Path(log_dir).rglob("perfetto_trace.json.gz")
        trace = json.loads(gzip.decompress(path.read_bytes()))
    summary = kernel_summary(kernel_events(trace), steps, top)
    processes = sorted(set(process_names(trace).values()))
    return {
        "model": model,
        "variant": variant,
        "batch_size": batch_size,
        **summary,
        "processes": processes,
    }


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed.kernels", description=__doc__)
    parser.add_argument("--models", default="mlp,resnet50")
    parser.add_argument("--variants", default="adam,salsa_skipped")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--top", type=int, default=25, help="longest kernel names kept")
    parser.add_argument("--hlo", action="store_true", help="write each step's compiled HLO too")
    parser.add_argument("--out", default=str(provenance.RESULTS_DIR))
    parser.add_argument(
        "--pin", choices=("auto", "yes", "no"), default="auto", help="as benchmarks.speed"
    )
    args = parser.parse_args(argv)
    threads = configure_threads(args.pin, None, with_torch=False)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for model in args.models.split(","):
        for variant in args.variants.split(","):
            row = profile(
                model,
                variant,
                args.batch_size,
                args.warmup,
                args.steps,
                args.top,
                out if args.hlo else None,
            )
            print(
                f"[speed.kernels] {model} {variant}: {row['launches_per_step']:.0f} launches, "
                f"{row['device_us_per_step']:.0f} us per step (processes: "
                f"{', '.join(row['processes'])})",
                flush=True,
            )
            for entry in row["top"][:12]:
                print(
                    f"    {entry['us_per_step']:9.1f} us  x{entry['count_per_step']:6.1f}  "
                    f"{entry['name']}",
                    flush=True,
                )
            rows.append(row)
    env = environment()
    env["threads"] = threads
    env["command"] = provenance.command_line("python -m benchmarks.speed.kernels", argv)
    (path,) = provenance.write_rows(out, f"speed_kernels_{env['backend']}", env, rows)
    print(f"[speed.kernels] wrote {path}")
    return rows


if __name__ == "__main__":
    main()
