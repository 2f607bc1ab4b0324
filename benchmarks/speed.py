"""Per-step cost of SaLSa against Adam, optax's line search and the authors' PyTorch optimizer.

Run from the repository root (about 10 minutes on one CPU core; the same command uses a GPU when
JAX sees one)::

    python -m benchmarks.speed
    python -m benchmarks.speed --models mlp --steps 60 --no-scaling --no-torch   # a quick look

Every variant trains its own copy of a model on the same batches with one jit-compiled step
(``examples.common.train_step``, the path a Flax user takes). The variants run interleaved in one
process, a few steps each in turn, so that a change of machine load hits them alike; each step is
timed to ``block_until_ready``. Compilation and the first ``--warmup`` steps are excluded; the first
``--start-steps`` steps (where SaLSa always searches) are reported apart from the steady state.
The overhead of a variant is the ratio of its mean step time to Adam's over the same chunk of
steps; the spread is over chunks. Two probes, one forward pass and one forward+backward, give the
"physical limit": a step that evaluates the loss ``e`` more times than Adam cannot cost less
than ``1 + e * forward / adam_step`` Adam steps.

Writes ``speed_<backend>.json`` (hardware, configuration, every number), ``speed_<backend>.md``
(tables) and ``speed_<backend>_{overhead,scaling}.png`` to ``--out`` (``benchmarks/results``).
The PyTorch comparison needs the ``compare`` extra (``torch``, ``salsa-optimizer``) and is
skipped with a message without it.
"""

import argparse
import datetime
import itertools
import json
import os
import pathlib
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import salsa_optax
from benchmarks import speed_models
from examples.common.train_step import TraceCounter, optimizer_step, pure_train_step

THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"

VARIANTS: dict[str, Callable[[], optax.GradientTransformation]] = {
    "adam": lambda: optax.adam(1e-3),
    "salsa": salsa_optax.salsa,
    "salsa_every_step": lambda: salsa_optax.salsa(adaptive_search_frequency=False),
    "sls": salsa_optax.sls,
    "optax_backtracking": lambda: optax.chain(
        optax.adam(1.0), optax.scale_by_backtracking_linesearch(max_backtracking_steps=15)
    ),
    "sgd": lambda: optax.sgd(1e-2),
    "salsa_sgd": salsa_optax.salsa_sgd,
}
SCALING_VARIANTS = ("adam", "salsa", "salsa_every_step")
TORCH_VARIANTS = ("torch_adam", "torch_salsa", "torch_salsa_every_step")
PROBES = ("forward", "forward_backward")
TORCH_COUNTERPARTS = {
    "adam": "torch_adam",
    "salsa": "torch_salsa",
    "salsa_every_step": "torch_salsa_every_step",
}

MODELS: dict[str, Callable[[], speed_models.SpeedModel]] = {
    "mlp": speed_models.mlp,
    "resnet": speed_models.resnet,
    "resnet16": lambda: speed_models.resnet(16),
    "cnn": speed_models.cnn,
    "transformer": speed_models.transformer,
    "tiny": speed_models.tiny,
}


class Plan(NamedTuple):
    """How many steps are timed and how they are interleaved.

    Attributes:
      warmup: untimed steps per variant before the timed ones (a transform whose state changes
        type after its first step, as optax's line search does, recompiles in the second).
      steps: timed steps per variant.
      start_steps: the first timed steps, reported apart (SaLSa's warm-up searches).
      chunk: steps a variant runs before the next one takes its turn.
    """

    warmup: int
    steps: int
    start_steps: int
    chunk: int

    def chunks(self) -> list[tuple[int, int]]:
        """``[lo, hi)`` step ranges; no chunk straddles the end of the start phase."""
        starts = range(0, self.start_steps, self.chunk)
        edges = sorted({*starts, *range(self.start_steps, self.steps, self.chunk)})
        return [(lo, hi) for lo, hi in zip(edges, [*edges[1:], self.steps], strict=True) if hi > lo]


# ----------------------------------------------------------------------------------------------
# Runners: one object per timed thing; `step()` does one step and returns once its results exist.


class CompileCounter:
    """Counts XLA backend compilations in the process (a `jax.monitoring` listener)."""

    def __init__(self):
        self.count = 0

    def __call__(self, event: str, duration: float, **kwargs: Any) -> None:
        del duration, kwargs
        if event == BACKEND_COMPILE_EVENT:
            self.count += 1


class JaxRunner:
    """One optax transform training its own copy of the model, one jitted step at a time."""

    def __init__(self, name: str, tx, spec: speed_models.SpeedModel, batches: Sequence[dict]):
        self.name = name
        self.batches = batches
        self.index = 0
        model = spec.make_model(nnx.Rngs(0))
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
        graphdef, state = nnx.split((model, optimizer))

        def step_fn(model, optimizer, batch):
            loss, _ = optimizer_step(
                model, optimizer, lambda m: (speed_models.classification_loss(spec, m, batch), None)
            )
            return {"loss": loss, **search_metrics(optimizer.opt_state)}

        self.trace_counter = TraceCounter(pure_train_step(graphdef, step_fn))
        self.train_step = jax.jit(self.trace_counter, donate_argnums=0)
        # Donation needs one buffer per leaf; an initial state may share a buffer between leaves.
        self.state = jax.tree.map(lambda x: x.copy(), state)
        self.param_bytes = tree_bytes(nnx.state(model, nnx.Param))
        self.opt_state_bytes = tree_bytes(optimizer.opt_state)
        self.memory: dict[str, Any] = {}
        self.metrics: list[dict] = []

    def compile(self) -> float:
        """Compiles the step ahead of time (the jitted call reuses it); returns seconds."""
        start = time.perf_counter()
        compiled = self.train_step.lower(self.state, self.batches[0]).compile()
        seconds = time.perf_counter() - start
        self.memory = compiled_memory(compiled)
        return seconds

    def step(self) -> None:
        batch = self.batches[self.index % len(self.batches)]
        self.index += 1
        self.state, metrics = self.train_step(self.state, batch)
        jax.block_until_ready((self.state, metrics))
        self.metrics.append(metrics)

    def search_record(self, warmup: int) -> tuple[np.ndarray, np.ndarray]:
        """Per timed step: ``value_fn`` evaluations and whether it searched."""
        metrics = jax.device_get(self.metrics[warmup:])
        evaluations = np.array([m["evaluations"] for m in metrics], dtype=float)
        return evaluations, np.array([m["searched"] for m in metrics], dtype=bool)


class ProbeRunner:
    """Times the loss alone (``forward``) or with its gradient (``forward_backward``)."""

    steps_per_chunk = 3  # a reference cost, not a trajectory: a few samples per turn suffice

    def __init__(self, name: str, spec: speed_models.SpeedModel, batches: Sequence[dict]):
        self.name = name
        self.batches = batches
        self.index = 0
        graphdef, params, rest = nnx.split(spec.make_model(nnx.Rngs(0)), nnx.Param, ...)

        def loss(params, batch):
            model = nnx.merge(graphdef, params, rest, copy=True)
            return speed_models.classification_loss(spec, model, batch)

        self.fn = jax.jit(loss if name == "forward" else jax.value_and_grad(loss))
        self.params = params

    def compile(self) -> float:
        start = time.perf_counter()
        self.fn.lower(self.params, self.batches[0]).compile()
        return time.perf_counter() - start

    def step(self) -> None:
        batch = self.batches[self.index % len(self.batches)]
        self.index += 1
        jax.block_until_ready(self.fn(self.params, batch))


class TorchRunner:
    """PyTorch Adam or the authors' ``SaLSA`` on the same architecture and batches."""

    def __init__(self, name: str, spec: speed_models.SpeedModel, batches: Sequence[dict]):
        import torch

        self.torch = torch
        self.name = name
        on_gpu = jax.default_backend() == "gpu" and torch.cuda.is_available()
        self.device = "cuda" if on_gpu else "cpu"
        to_torch = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(self.device)
        self.batches = [
            (to_torch(b["x"].transpose(0, 3, 1, 2)), to_torch(b["y"].astype(np.int64)))
            for b in batches
        ]
        self.index = 0
        torch.manual_seed(0)
        self.model = speed_models.torch_model(spec).to(self.device)
        if name == "torch_adam":
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        else:
            from salsa.SaLSA import SaLSA

            self.optimizer = SaLSA(self.model.parameters(), speed_up=name == "torch_salsa")
        self.evaluations: list[int] = []
        self.searched: list[bool] = []

    def compile(self) -> float:
        return 0.0

    def step(self) -> None:
        x, y = self.batches[self.index % len(self.batches)]
        self.index += 1
        loss_fn = self.torch.nn.functional.cross_entropy
        if self.name == "torch_adam":
            self.optimizer.zero_grad()
            loss_fn(self.model(x), y).backward()
            self.optimizer.step()
            self.evaluations.append(0)
            self.searched.append(False)
        else:

            def closure(backwards=False):
                loss = loss_fn(self.model(x), y)
                if backwards:
                    self.optimizer.zero_grad()
                    loss.backward()
                return loss

            forwards = self.optimizer.state["n_forwards"]
            self.optimizer.step(closure)
            self.evaluations.append(self.optimizer.state["n_forwards"] - forwards - 1)
            self.searched.append(self.optimizer.tslls == 0)
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def search_record(self, warmup: int) -> tuple[np.ndarray, np.ndarray]:
        return np.array(self.evaluations[warmup:], dtype=float), np.array(self.searched[warmup:])


def search_metrics(opt_state: Any) -> dict[str, jax.Array]:
    """``value_fn`` evaluations of the last step and whether it searched, from the state's info."""
    info = optax.tree_utils.tree_get(opt_state, "info")
    if info is None:  # no line search
        evaluations, searched = jnp.zeros((), jnp.int32), False
    elif hasattr(info, "num_evaluations"):  # SaLSa
        evaluations, searched = info.num_evaluations, info.searched
    else:  # optax's backtracking line search: one value_fn call per iteration, every step
        evaluations, searched = info.num_linesearch_steps, True
    # `jnp.asarray` also unwraps the nnx.Optimizer's state variables.
    return {"evaluations": jnp.asarray(evaluations), "searched": jnp.asarray(searched)}


def tree_bytes(tree: Any) -> int:
    return int(sum(x.nbytes for x in jax.tree.leaves(tree)))


def compiled_memory(compiled: Any) -> dict[str, Any]:
    """Bytes of a compiled step from XLA's memory analysis (``{}`` where the backend has none)."""
    try:
        stats = compiled.memory_analysis()
    except (NotImplementedError, jax.errors.JaxRuntimeError):
        stats = None
    if stats is None:
        return {}
    fields = ("argument", "output", "alias", "temp")
    memory = {f"{f}_bytes": int(getattr(stats, f"{f}_size_in_bytes")) for f in fields}
    # Donated inputs alias outputs: live at once are the inputs, the new outputs and temporaries.
    memory["peak_bytes"] = (
        memory["argument_bytes"]
        + memory["output_bytes"]
        - memory["alias_bytes"]
        + memory["temp_bytes"]
    )
    return memory


# ----------------------------------------------------------------------------------------------
# Measurement.


def run_interleaved(
    runners: Sequence[Any], plan: Plan, compiles: CompileCounter
) -> dict[str, dict[str, Any]]:
    """Warms every runner up, then times ``plan.steps`` steps of each, interleaved by chunk.

    Returns, per runner, seconds per timed step by wall clock (``wall``) and in CPU time of this
    process (``cpu``: on a shared machine, the time other processes take is not in it),
    ``compile_seconds``, and ``recompiles``: XLA compilations during the runner's timed steps.
    """
    record = {}
    for runner in runners:
        compile_seconds = runner.compile()
        for _ in range(plan.warmup):
            runner.step()
        record[runner.name] = {
            "wall": np.full(plan.steps, np.nan),
            "cpu": np.full(plan.steps, np.nan),
            "compile_seconds": compile_seconds,
            "recompiles": 0,
        }
    for i, (lo, hi) in enumerate(plan.chunks()):
        shift = i % len(runners)  # rotate the order so no variant always runs first
        for runner in [*runners[shift:], *runners[:shift]]:
            entry = record[runner.name]
            before = compiles.count
            for step in range(lo, min(hi, lo + getattr(runner, "steps_per_chunk", hi))):
                wall, cpu = time.perf_counter(), time.process_time()
                runner.step()
                entry["wall"][step] = time.perf_counter() - wall
                entry["cpu"][step] = time.process_time() - cpu
            entry["recompiles"] += compiles.count - before
    return record


def chunk_means(times: np.ndarray, chunks: Sequence[tuple[int, int]]) -> np.ndarray:
    """Mean step time of each chunk (untimed steps, NaN, left out)."""
    return np.array([np.nanmean(times[lo:hi]) for lo, hi in chunks])


def ratio_stats(ratios: np.ndarray) -> dict[str, float]:
    """Median and spread of per-chunk ratios."""
    q25, q50, q75 = np.percentile(ratios, [25, 50, 75])
    return {
        "median": float(q50),
        "p25": float(q25),
        "p75": float(q75),
        "min": float(ratios.min()),
        "max": float(ratios.max()),
    }


def steady_chunks(plan: Plan) -> list[tuple[int, int]]:
    return [c for c in plan.chunks() if c[0] >= plan.start_steps]


def steady_ratio(times: np.ndarray, baseline: np.ndarray, plan: Plan) -> dict | None:
    """Per-chunk ratios of mean step times in the steady state: median and spread."""
    chunks = steady_chunks(plan)
    if not chunks:
        return None
    return ratio_stats(chunk_means(times, chunks) / chunk_means(baseline, chunks))


def summarize_variant(
    times: np.ndarray,
    baseline: np.ndarray,
    forward_ms: float | None,
    plan: Plan,
    search: tuple[np.ndarray, np.ndarray],
) -> dict[str, Any]:
    """Step time, overhead against ``baseline`` and line-search counts of one variant.

    With ``forward_ms`` (the cost of one loss evaluation) the steady state also gets its physical
    limit, ``1 + evaluations per step * forward_ms / baseline step``.
    """
    chunks = steady_chunks(plan)
    evaluations, searched = search
    steady = slice(plan.start_steps, plan.steps)
    start = slice(0, plan.start_steps)
    summary: dict[str, Any] = {}
    if plan.start_steps:
        summary["start"] = phase_summary(
            times[start], baseline[start], evaluations[start], searched[start]
        )
    if not chunks:
        return summary
    steady_summary = phase_summary(
        times[steady], baseline[steady], evaluations[steady], searched[steady]
    )
    ratio = steady_ratio(times, baseline, plan)
    steady_summary.update(step_ms=1e3 * float(np.median(chunk_means(times, chunks))), ratio=ratio)
    if forward_ms is not None:
        baseline_ms = 1e3 * float(np.median(chunk_means(baseline, chunks)))
        limit = 1 + steady_summary["evaluations_per_step"] * forward_ms / baseline_ms
        steady_summary.update(physical_limit=limit, excess_over_limit=ratio["median"] / limit)
    summary["steady"] = steady_summary
    return summary


def phase_summary(times, baseline, evaluations, searched) -> dict[str, Any]:
    """Means over one phase (start or steady) of a variant's steps."""
    summary = {
        "steps": len(times),
        "mean_step_ms": 1e3 * float(times.mean()),
        "ratio_of_means": float(times.mean() / baseline.mean()),
        "ratio_of_medians": float(np.median(times) / np.median(baseline)),
        "evaluations_per_step": float(evaluations.mean()),
        "searched_fraction": float(searched.mean()),
    }
    if searched.any() and not searched.all():
        summary["searched_step_ms"] = 1e3 * float(np.median(times[searched]))
        summary["skipped_step_ms"] = 1e3 * float(np.median(times[~searched]))
        summary["baseline_median_ms"] = 1e3 * float(np.median(baseline))
    return summary


def probe_summary(record: dict, plan: Plan, clock: str) -> dict[str, float]:
    forward, forward_backward = (
        1e3 * float(np.median(chunk_means(record[name][clock], plan.chunks()))) for name in PROBES
    )
    return {
        "forward_ms": forward,
        "forward_backward_ms": forward_backward,
        "forward_over_forward_backward": forward / forward_backward,
    }


def make_batches(batch_size: int, count: int) -> tuple[list[dict], str]:
    """``count`` host batches of images (cycled through by every runner), and the data source."""
    data, source = speed_models.load_images(batch_size * count)
    batches = [
        {k: v[i : i + batch_size] for k, v in data.items()}
        for i in range(0, len(data["y"]), batch_size)
    ]
    return batches, source


def benchmark_model(
    spec: speed_models.SpeedModel,
    variants: Sequence[str],
    batch_size: int,
    plan: Plan,
    compiles: CompileCounter,
    clocks: Sequence[str],
    with_torch: bool,
) -> dict[str, Any]:
    """Times every variant (and the probes, and torch if asked) on one model."""
    host_batches, source = make_batches(batch_size, min(64, plan.warmup + plan.steps))
    batches = [speed_models.jax_input(b) for b in host_batches]
    jax_runners = [JaxRunner(v, VARIANTS[v](), spec, batches) for v in variants]
    probes = [ProbeRunner(p, spec, batches) for p in PROBES]
    torch_runners = (
        [TorchRunner(t, spec, host_batches) for t in TORCH_VARIANTS] if with_torch else []
    )
    print(
        f"[speed] {spec.description}, batch {batch_size}: {plan.steps} steps x "
        f"{len(jax_runners) + len(probes) + len(torch_runners)} runners",
        flush=True,
    )
    record = run_interleaved([*jax_runners, *probes, *torch_runners], plan, compiles)

    probes_by_clock = {clock: probe_summary(record, plan, clock) for clock in clocks}
    adam = next(r for r in jax_runners if r.name == "adam")
    result: dict[str, Any] = {
        "description": spec.description,
        "batch_size": batch_size,
        "data": source,
        "param_bytes": adam.param_bytes,
        **probes_by_clock["wall"],
        "probes": probes_by_clock,
        "variants": {},
    }
    for runner in jax_runners:
        search = runner.search_record(plan.warmup)
        summary: dict[str, Any] = {}
        for clock in clocks:
            times = record[runner.name][clock]
            forward_ms = probes_by_clock[clock]["forward_ms"]
            summary[clock] = summarize_variant(
                times, record["adam"][clock], forward_ms, plan, search
            )
            if runner.name == "salsa_sgd" and "sgd" in record:
                summary[clock]["ratio_to_sgd"] = steady_ratio(times, record["sgd"][clock], plan)
        summary.update(
            compile_count=runner.trace_counter.count,
            recompiles_while_timing=record[runner.name]["recompiles"],
            compile_seconds=record[runner.name]["compile_seconds"],
            memory=memory_summary(runner, adam),
        )
        result["variants"][runner.name] = summary
    if torch_runners:
        result["torch"] = torch_summary(record, torch_runners, plan, clocks)
    print_progress(result, record)
    return result


def print_progress(result: dict[str, Any], record: dict) -> None:
    """One line per runner: compile seconds, mean step time, steady ratio to its baseline."""
    print(f"[speed]   forward / (forward+backward) {result['forward_over_forward_backward']:.3f}")
    summaries = {**result["variants"], **result.get("torch", {})}
    for name, entry in record.items():
        phase = summaries.get(name, {}).get("wall", {}).get("steady", {})
        print(
            f"[speed]   {name:24s} compile {entry['compile_seconds']:6.1f} s, "
            f"{1e3 * np.nanmean(entry['wall']):8.3f} ms/step, "
            f"x baseline {(phase.get('ratio') or {}).get('median', float('nan')):.3f}",
            flush=True,
        )


def memory_summary(runner: JaxRunner, adam: JaxRunner) -> dict[str, Any]:
    memory: dict[str, Any] = {
        "opt_state_bytes": runner.opt_state_bytes,
        "opt_state_extra_param_copies": (runner.opt_state_bytes - adam.opt_state_bytes)
        / runner.param_bytes,
        **runner.memory,
    }
    if runner.memory and adam.memory:
        memory["peak_ratio_to_adam"] = runner.memory["peak_bytes"] / adam.memory["peak_bytes"]
        memory["temp_extra_param_copies"] = (
            runner.memory["temp_bytes"] - adam.memory["temp_bytes"]
        ) / runner.param_bytes
    return memory


def torch_summary(record, torch_runners, plan, clocks) -> dict[str, Any]:
    """The authors' optimizer against torch Adam, and our SaLSa against theirs."""
    summary: dict[str, Any] = {}
    for runner in torch_runners:
        search = runner.search_record(plan.warmup)
        summary[runner.name] = {
            clock: summarize_variant(
                record[runner.name][clock], record["torch_adam"][clock], None, plan, search
            )
            for clock in clocks
        }
    summary["speedups"] = {
        ours: {
            clock: steady_ratio(record[theirs][clock], record[ours][clock], plan)
            for clock in clocks
        }
        for ours, theirs in TORCH_COUNTERPARTS.items()
        if ours in record
    }
    return summary


# ----------------------------------------------------------------------------------------------
# How the overhead moves with batch size and width (on the MLP, where it is largest), and with
# the length of the run (the schedule searches less and less often as the step size settles).


def benchmark_scaling(
    plan: Plan, compiles: CompileCounter, clocks, widths, batch_sizes
) -> dict[str, Any]:
    points = [(256, b) for b in batch_sizes] + [(w, 128) for w in widths if w != 256]
    results = []
    for width, batch_size in points:
        model = benchmark_model(
            speed_models.mlp(width), SCALING_VARIANTS, batch_size, plan, compiles, clocks, False
        )
        results.append({"width": width, **model})
    return {"model": "mlp", "points": results}


def benchmark_horizon(steps: int, compiles: CompileCounter, clocks) -> dict[str, Any]:
    """salsa() against Adam on the MLP over ``steps`` steps, summarised in growing windows."""
    plan = Plan(warmup=2, steps=steps, start_steps=0, chunk=50)
    spec = speed_models.mlp()
    host_batches, source = make_batches(128, 64)
    batches = [speed_models.jax_input(b) for b in host_batches]
    runners = [JaxRunner(v, VARIANTS[v](), spec, batches) for v in ("adam", "salsa")]
    print(f"[speed] horizon: {spec.description}, {steps} steps of adam and salsa()", flush=True)
    record = run_interleaved(runners, plan, compiles)
    evaluations, searched = runners[1].search_record(plan.warmup)
    edges = [e for e in (0, 20, 100, 300, 1000, 3000, 10000) if e < steps] + [steps]
    windows = []
    for lo, hi in itertools.pairwise(edges):
        window = {"first_step": lo + 1, "last_step": hi}
        window.update(
            searched_fraction=float(searched[lo:hi].mean()),
            evaluations_per_step=float(evaluations[lo:hi].mean()),
        )
        for clock in clocks:
            salsa, adam = record["salsa"][clock][lo:hi], record["adam"][clock][lo:hi]
            window[f"{clock}_ratio_of_means"] = float(salsa.mean() / adam.mean())
        windows.append(window)
    return {"description": spec.description, "data": source, "steps": steps, "windows": windows}


# ----------------------------------------------------------------------------------------------
# Environment, output.


def configure_threads(pin: str, cpu: int | None, with_torch: bool) -> dict[str, Any]:
    """One compute thread for XLA (and torch), the process pinned to one core; before any jax op.

    ``pin="auto"`` pins unless an NVIDIA GPU is there (its runtime wants its own threads).
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "intra_op_parallelism_threads" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {THREAD_FLAGS}".strip()
    gpu = pathlib.Path("/dev/nvidiactl").exists() and os.environ.get("JAX_PLATFORMS") != "cpu"
    pinned = None
    if pin == "yes" or (pin == "auto" and not gpu):
        pinned = max(os.sched_getaffinity(0)) if cpu is None else cpu
        os.sched_setaffinity(0, {pinned})
    threads = {"xla_flags": os.environ["XLA_FLAGS"], "pinned_cpu": pinned}
    if with_torch:
        import torch

        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
        threads.update(torch_version=torch.__version__, torch_threads=torch.get_num_threads())
    return threads


def torch_unavailable() -> str | None:
    """Why the PyTorch comparison cannot run, or None when it can."""
    try:
        import torch  # noqa: F401
        from salsa.SaLSA import SaLSA  # noqa: F401
    except ImportError as error:
        return f"{error}; install the compare extra: pip install -e '.[compare]'"
    return None


def environment() -> dict[str, Any]:
    device = jax.devices()[0]
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "backend": jax.default_backend(),
        "device": device.device_kind,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "versions": {
            "jax": jax.__version__,
            "optax": optax.__version__,
            "flax": package_version("flax"),
            "salsa_optax": salsa_optax.__version__,
        },
        "git_commit": git_commit(),
        "load_average_before": os.getloadavg(),
    }
    return info


def package_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def cpu_name() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", default="mlp,resnet,transformer", help=f"of {', '.join(MODELS)}"
    )
    parser.add_argument("--variants", default=",".join(VARIANTS), help="adam is always run")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant")
    parser.add_argument("--steps", type=int, default=100, help="timed steps per variant")
    parser.add_argument("--start-steps", type=int, default=20, help="reported apart")
    parser.add_argument("--chunk", type=int, default=10, help="steps per turn")
    parser.add_argument("--horizon-steps", type=int, default=2000, help="0: no horizon run")
    parser.add_argument("--scaling-steps", type=int, default=60)
    parser.add_argument("--scaling-widths", default="64,256,1024")
    parser.add_argument("--scaling-batch-sizes", default="32,128,512")
    parser.add_argument("--no-scaling", action="store_true")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--pin", choices=("auto", "yes", "no"), default="auto")
    parser.add_argument("--cpu", type=int, default=None, help="core to pin (default: the last)")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--no-plots", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
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
    results["environment"].update(threads, command=" ".join(["python -m benchmarks.speed", *argv]))
    results["torch_skipped"] = skip_torch
    paths = write_results(results, pathlib.Path(args.out), plots=not args.no_plots)
    print("[speed] wrote " + ", ".join(str(p) for p in paths))
    return results


def run(args: argparse.Namespace, compiles: CompileCounter, with_torch: bool) -> dict[str, Any]:
    """Every model, then the horizon and scaling runs; the results without the report."""
    variants = ["adam", *[v for v in args.variants.split(",") if v != "adam"]]
    plan = Plan(args.warmup, args.steps, min(args.start_steps, args.steps), args.chunk)
    environment_info = environment()
    # CPU time says nothing of work that a GPU does asynchronously.
    clocks = ("wall", "cpu") if environment_info["backend"] == "cpu" else ("wall",)
    results: dict[str, Any] = {
        "environment": environment_info,
        "plan": plan._asdict(),
        "clocks": clocks,
        "models": {},
    }
    for name in args.models.split(","):
        results["models"][name] = benchmark_model(
            MODELS[name](), variants, args.batch_size, plan, compiles, clocks, with_torch
        )
    if args.horizon_steps:
        results["horizon"] = benchmark_horizon(args.horizon_steps, compiles, clocks)
    if not args.no_scaling:
        scaling_plan = plan._replace(
            steps=args.scaling_steps, start_steps=min(args.start_steps, args.scaling_steps)
        )
        results["scaling"] = benchmark_scaling(
            scaling_plan,
            compiles,
            clocks,
            [int(w) for w in args.scaling_widths.split(",")],
            [int(b) for b in args.scaling_batch_sizes.split(",")],
        )
    results["environment"]["load_average_after"] = os.getloadavg()
    return results


# ----------------------------------------------------------------------------------------------
# Report: JSON, markdown tables, plots.

VARIANT_LABELS = {
    "adam": "optax.adam",
    "salsa": "salsa()",
    "salsa_every_step": "salsa(adaptive_search_frequency=False)",
    "sls": "sls()",
    "optax_backtracking": "adam + optax backtracking (15)",
    "sgd": "optax.sgd",
    "salsa_sgd": "salsa_sgd()",
    "torch_adam": "torch.optim.Adam",
    "torch_salsa": "SaLSA (authors', speed_up)",
    "torch_salsa_every_step": "SaLSA (authors', every step)",
}


def write_results(results: dict[str, Any], out: pathlib.Path, plots: bool) -> list[pathlib.Path]:
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"speed_{results['environment']['backend']}"
    paths = [stem.with_suffix(".json"), stem.with_suffix(".md")]
    paths[0].write_text(json.dumps(results, indent=1) + "\n")
    paths[1].write_text(markdown(results))
    if plots:
        paths.append(plot_overhead(results, pathlib.Path(f"{stem}_overhead.png")))
        if "scaling" in results or "horizon" in results:
            paths.append(plot_scaling(results, pathlib.Path(f"{stem}_scaling.png")))
    return paths


def fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def spread(ratio: dict[str, float] | None) -> str:
    if not ratio:
        return "—"
    return f"{ratio['median']:.3f} ({ratio['p25']:.3f}–{ratio['p75']:.3f})"


def median(ratio: dict[str, float] | None) -> float | None:
    return ratio["median"] if ratio else None


def steady(model: dict, variant: str, clock: str = "wall") -> dict[str, Any]:
    return model["variants"].get(variant, {}).get(clock, {}).get("steady", {})


def markdown(results: dict[str, Any]) -> str:
    env, plan = results["environment"], results["plan"]
    torch_info = (
        f", torch {env['torch_version']} with {env['torch_threads']} thread(s)"
        if "torch_threads" in env
        else ""
    )
    lines = [
        f"# Per-step cost of SaLSa ({env['backend']})",
        "",
        f"- date: {env['date']}; commit {env['git_commit']}",
        f"- machine: {env['cpu']} ({env['cpu_count']} cores), device {env['device']}; "
        f"pinned core {env['pinned_cpu']}, XLA_FLAGS `{env['xla_flags']}`{torch_info}",
        f"- load average (1, 5, 15 min) before {fmt_load(env['load_average_before'])}, "
        f"after {fmt_load(env.get('load_average_after'))}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in env['versions'].items())}",
        f"- command: `{env['command']}`",
        f"- {plan['steps']} timed steps per variant after {plan['warmup']} untimed ones "
        f"(compiled ahead of time), variants interleaved {plan['chunk']} steps at a time. Ratios "
        f"are medians over chunks of the steady state (steps {plan['start_steps'] + 1}–"
        f"{plan['steps']}), interquartile range in brackets; wall clock unless marked CPU "
        "(CPU time of the benchmark process, which excludes time taken by other processes).",
        "",
        "## Headline",
        "",
        *headline(results),
    ]
    for name, model in results["models"].items():
        lines += ["", *model_table(name, model, plan, results["clocks"])]
        if "torch" in model:
            lines += ["", *torch_table(model, results["clocks"])]
    if results.get("torch_skipped"):
        lines += ["", f"PyTorch comparison skipped: {results['torch_skipped']}."]
    if "horizon" in results:
        lines += ["", *horizon_table(results["horizon"], results["clocks"])]
    if "scaling" in results:
        lines += ["", *scaling_table(results["scaling"])]
    return "\n".join(lines) + "\n"


def fmt_load(load: Sequence[float] | None) -> str:
    return "—" if load is None else " / ".join(f"{x:.2f}" for x in load)


def headline(results: dict[str, Any]) -> list[str]:
    cpu = "cpu" in results["clocks"]
    lines = [
        "| model | salsa() / Adam | salsa, every step / Adam (physical limit) "
        "| optax backtracking / Adam | ours vs authors' PyTorch SaLSa | optimizer state "
        "| compilations |",
        "|---|---|---|---|---|---|---|",
    ]
    for model in results["models"].values():
        every = steady(model, "salsa_every_step")
        speedup = model.get("torch", {}).get("speedups", {}).get("salsa", {})
        state = model["variants"].get("salsa", {}).get("memory", {})
        compiles = {v["compile_count"] for v in model["variants"].values()}
        salsa_cpu = f" (CPU {fmt(median(steady(model, 'salsa', 'cpu').get('ratio')), 3)})"
        lines.append(
            f"| {model['description']}, batch {model['batch_size']} "
            f"| {fmt(median(steady(model, 'salsa').get('ratio')), 3)}{salsa_cpu if cpu else ''} "
            f"| {fmt(median(every.get('ratio')), 3)} ({fmt(every.get('physical_limit'), 3)}) "
            f"| {fmt(median(steady(model, 'optax_backtracking').get('ratio')), 3)} "
            f"| {fmt(median(speedup.get('wall')))}× faster "
            f"| Adam's + {fmt(state.get('opt_state_extra_param_copies'))} param copies "
            f"| {', '.join(map(str, sorted(compiles)))} |"
        )
    return lines


def model_table(name: str, model: dict, plan: dict, clocks: Sequence[str]) -> list[str]:
    cpu = "cpu" in clocks
    lines = [
        f"## {name}: {model['description']}, batch {model['batch_size']} ({model['data']})",
        "",
        f"One forward pass {model['forward_ms']:.3f} ms, forward+backward "
        f"{model['forward_backward_ms']:.3f} ms: **forward / (forward+backward) = "
        f"{model['forward_over_forward_backward']:.3f}**"
        + (
            f" (CPU time: {model['probes']['cpu']['forward_over_forward_backward']:.3f})"
            if cpu
            else ""
        )
        + ", the least a line-search trial can cost. Parameters: "
        f"{model['param_bytes'] / 2**20:.2f} MiB.",
        "",
        "| variant | ms/step | × Adam, steady |"
        + (" × Adam, CPU |" if cpu else "")
        + f" × Adam, steps 1–{plan['start_steps']} | value_fn evals/step | searched "
        "| physical limit | × limit | compilations (during timing) | state: param copies "
        "beyond Adam's | peak memory × Adam |",
        "|---|---|---|" + ("---|" if cpu else "") + "---|---|---|---|---|---|---|---|",
    ]
    for variant, summary in model["variants"].items():
        wall, mem = summary["wall"], summary["memory"]
        s, first = wall.get("steady", {}), wall.get("start", {})
        cpu_ratio = f" {spread(steady(model, variant, 'cpu').get('ratio'))} |"
        lines.append(
            f"| {VARIANT_LABELS[variant]} | {fmt(s.get('step_ms'))} | {spread(s.get('ratio'))} |"
            + (cpu_ratio if cpu else "")
            + f" {fmt(first.get('ratio_of_means'), 3)} | {fmt(s.get('evaluations_per_step'))} "
            f"| {fmt(s.get('searched_fraction'))} | {fmt(s.get('physical_limit'), 3)} "
            f"| {fmt(s.get('excess_over_limit'), 3)} "
            f"| {summary['compile_count']} ({summary['recompiles_while_timing']}) "
            f"| {mem['opt_state_extra_param_copies']:+.2f} "
            f"| {fmt(mem.get('peak_ratio_to_adam'), 3)} |"
        )
    sgd = model["variants"].get("salsa_sgd", {}).get("wall", {}).get("ratio_to_sgd")
    if sgd:
        lines += ["", f"salsa_sgd() / optax.sgd, steady: {spread(sgd)}."]
    salsa = steady(model, "salsa")
    if "searched_step_ms" in salsa:
        lines += [
            "",
            f"salsa(), steady state, medians: a searching step {salsa['searched_step_ms']:.3f} ms,"
            f" a skipped step {salsa['skipped_step_ms']:.3f} ms, an Adam step "
            f"{salsa['baseline_median_ms']:.3f} ms.",
        ]
    return lines


def torch_table(model: dict[str, Any], clocks: Sequence[str]) -> list[str]:
    torch_results = model["torch"]
    cpu = "cpu" in clocks
    lines = [
        "### Against the authors' PyTorch optimizer (same architecture, batches and threads)",
        "",
        "| variant | ms/step | × torch Adam, steady | evals/step | searched "
        "| ours (JAX) ms/step | ours faster by |" + (" ours faster by, CPU |" if cpu else ""),
        "|---|---|---|---|---|---|---|" + ("---|" if cpu else ""),
    ]
    for ours, theirs in TORCH_COUNTERPARTS.items():
        s = torch_results[theirs]["wall"].get("steady", {})
        speedup = torch_results["speedups"].get(ours, {})
        lines.append(
            f"| {VARIANT_LABELS[theirs]} | {fmt(s.get('step_ms'))} | {spread(s.get('ratio'))} "
            f"| {fmt(s.get('evaluations_per_step'))} | {fmt(s.get('searched_fraction'))} "
            f"| {fmt(steady(model, ours).get('step_ms'))} | {spread(speedup.get('wall'))}× |"
            + (f" {spread(speedup.get('cpu'))}× |" if cpu else "")
        )
    return lines


def horizon_table(horizon: dict[str, Any], clocks: Sequence[str]) -> list[str]:
    lines = [
        f"## The schedule over a longer run: salsa() / Adam on the {horizon['description']}",
        "",
        "| steps | searched | value_fn evals/step | salsa() / Adam |"
        + (" CPU |" if "cpu" in clocks else ""),
        "|---|---|---|---|" + ("---|" if "cpu" in clocks else ""),
    ]
    for w in horizon["windows"]:
        lines.append(
            f"| {w['first_step']}–{w['last_step']} | {w['searched_fraction']:.2f} "
            f"| {w['evaluations_per_step']:.2f} | {w['wall_ratio_of_means']:.3f} |"
            + (f" {w['cpu_ratio_of_means']:.3f} |" if "cpu" in clocks else "")
        )
    return lines


def scaling_table(scaling: dict[str, Any]) -> list[str]:
    lines = [
        "## Scaling: MLP 784-w-w-10, overhead against batch size and width",
        "",
        "| width | batch | Adam ms/step | salsa() / Adam | every step / Adam | its limit "
        "| forward / (forward+backward) |",
        "|---|---|---|---|---|---|---|",
    ]
    for point in scaling["points"]:
        every = steady(point, "salsa_every_step")
        lines.append(
            f"| {point['width']} | {point['batch_size']} "
            f"| {fmt(steady(point, 'adam').get('step_ms'), 3)} "
            f"| {spread(steady(point, 'salsa').get('ratio'))} | {spread(every.get('ratio'))} "
            f"| {fmt(every.get('physical_limit'), 3)} "
            f"| {point['forward_over_forward_backward']:.3f} |"
        )
    return lines


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_overhead(results: dict[str, Any], path: pathlib.Path) -> pathlib.Path:
    """Steady-state step time over Adam's per variant and model, with each physical limit."""
    plt = _pyplot()
    models = results["models"]
    variants = [v for v in VARIANTS if v != "adam"]
    fig, ax = plt.subplots(figsize=(5.5 + 2.5 * len(models), 4.5))
    width = 0.8 / len(variants)
    for j, variant in enumerate(variants):
        points = [
            (i + (j - (len(variants) - 1) / 2) * width, steady(model, variant))
            for i, model in enumerate(models.values())
            if steady(model, variant)
        ]
        if not points:
            continue
        xs = [x for x, _ in points]
        ratios = [s["ratio"] for _, s in points]
        ys = [r["median"] for r in ratios]
        errors = [
            [r["median"] - r["p25"] for r in ratios],
            [r["p75"] - r["median"] for r in ratios],
        ]
        ax.bar(xs, ys, width, yerr=errors, capsize=2, label=VARIANT_LABELS[variant])
        limits = [s["physical_limit"] for _, s in points]
        ax.scatter(xs, limits, marker="_", s=150, color="black", zorder=3)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xticks(range(len(models)), [m["description"].split(" (")[0] for m in models.values()])
    ax.set_ylabel("step time / optax.adam step time (steady state)")
    ax.set_title(
        f"Per-step cost ({results['environment']['backend']}); black ticks: the physical limit "
        "for the loss evaluations made",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_scaling(results: dict[str, Any], path: pathlib.Path) -> pathlib.Path:
    """Overhead against batch size and width (MLP), and against the length of the run."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    scaling = results.get("scaling", {"points": []})
    for ax, axis, fixed in (
        (axes[0], "batch_size", ("width", 256)),
        (axes[1], "width", ("batch_size", 128)),
    ):
        points = sorted(
            (p for p in scaling["points"] if p[fixed[0]] == fixed[1]), key=lambda p: p[axis]
        )
        xs = [p[axis] for p in points]
        for variant, style in (("salsa", "o-"), ("salsa_every_step", "s-")):
            ys = [steady(p, variant)["ratio"]["median"] for p in points]
            ax.plot(xs, ys, style, label=VARIANT_LABELS[variant])
        limits = [steady(p, "salsa_every_step")["physical_limit"] for p in points]
        ax.plot(xs, limits, "k--", label="physical limit of the every-step search")
        ax.plot(
            xs,
            [1 + p["forward_over_forward_backward"] for p in points],
            "k:",
            label="1 + forward / (forward+backward)",
        )
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel(f"{axis.replace('_', ' ')} ({fixed[0].replace('_', ' ')} {fixed[1]})")
        ax.set_ylabel("step time / optax.adam step time")
    axes[0].legend(fontsize=7)
    if "horizon" in results:
        windows = results["horizon"]["windows"]
        xs = [w["last_step"] for w in windows]
        axes[2].plot(xs, [w["wall_ratio_of_means"] for w in windows], "o-", label="salsa() / Adam")
        axes[2].plot(
            xs, [w["searched_fraction"] for w in windows], "s--", label="searched fraction"
        )
        axes[2].axhline(1.0, color="grey", lw=0.8)
        axes[2].set_xscale("log")
        axes[2].set_xlabel("step (end of window)")
        axes[2].legend(fontsize=7)
    axes[2].set_title("over a longer run (MLP 784-256-256-10)", fontsize=9)
    fig.suptitle(f"SaLSa's per-step overhead ({results['environment']['backend']})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
