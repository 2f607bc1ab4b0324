"""The markdown tables of a results dictionary."""

from collections.abc import Sequence
from typing import Any

from benchmarks.speed.registry import TORCH_COUNTERPARTS, label


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
        "",
        *regime_table(results),
        *pipelined_table(results),
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
        wall = median(speedup.get("wall"))
        versus_torch = "not run" if wall is None else f"{fmt(wall)}× faster"
        lines.append(
            f"| {model['description']}, batch {model['batch_size']} "
            f"| {fmt(median(steady(model, 'salsa').get('ratio')), 3)}{salsa_cpu if cpu else ''} "
            f"| {fmt(median(every.get('ratio')), 3)} ({fmt(every.get('physical_limit'), 3)}) "
            f"| {fmt(median(steady(model, 'optax_backtracking').get('ratio')), 3)} "
            f"| {versus_torch} "
            f"| Adam's + {fmt(state.get('opt_state_extra_param_copies'))} param copies "
            f"| {', '.join(map(str, sorted(compiles)))} |"
        )
    return lines


def regime_table(results: dict[str, Any]) -> list[str]:
    """salsa() / Adam per phase of a run, and a step the schedule skips / an Adam step."""
    plan = results["plan"]
    lines = [
        "### Warm-up, settled regime and skipped step (wall clock, × Adam; searched fraction)",
        "",
        "| model | skipped step (`salsa_skipped`) | salsa(), steps 1–"
        f"{plan['start_steps']} | salsa(), steps {plan['start_steps'] + 1}–{plan['steps']} "
        "| salsa(), settled | settled: value_fn evals/step | settled: skipped steps, ms "
        "(Adam's) |",
        "|---|---|---|---|---|---|---|",
    ]
    for model in results["models"].values():
        wall = model["variants"].get("salsa", {}).get("wall", {})
        start, early = wall.get("start", {}), wall.get("steady", {})
        settled = model.get("settled", {}).get("wall", {}).get("steady", {})
        steps = model.get("settled", {})
        skipped = (
            f"{settled['skipped_step_ms']:.3f} ({settled['baseline_median_ms']:.3f})"
            if "skipped_step_ms" in settled
            else "—"
        )
        lines.append(
            f"| {model['description']} "
            f"| {spread(steady(model, 'salsa_skipped').get('ratio'))} "
            f"| {fmt(start.get('ratio_of_means'), 3)} ({fmt(start.get('searched_fraction'))}) "
            f"| {spread(early.get('ratio'))} ({fmt(early.get('searched_fraction'))}) "
            + (
                f"| steps {steps['first_step']}–{steps['last_step']}: "
                f"{spread(settled.get('ratio'))} ({fmt(settled.get('searched_fraction'))}) "
                if settled
                else "| — "
            )
            + f"| {fmt(settled.get('evaluations_per_step'))} | {skipped} |"
        )
    return lines


def pipelined_table(results: dict[str, Any]) -> list[str]:
    """Adam, a skipped step and settled salsa() with steps queued back to back, where run."""
    models = [m for m in results["models"].values() if "pipelined" in m]
    if not models:
        return []
    lines = [
        "",
        "### Steps queued back to back (wall clock per step, × Adam)",
        "",
        "Each run of steps is timed from its first call to the end of its last step, as a "
        "training loop that does not read its metrics runs; a wait of the host for the device "
        "inside a step shows here.",
        "",
        "| model | Adam, ms/step | skipped step (`salsa_skipped`) | salsa(), settled "
        "| settled: searched fraction |",
        "|---|---|---|---|---|",
    ]
    for model in models:
        run = model["pipelined"]
        lines.append(
            f"| {model['description']} | {run['adam']['step_ms']:.3f} "
            f"| {spread(run['salsa_skipped']['ratio'])} "
            f"| steps {run['salsa_first_step']}–{run['salsa_last_step']}: "
            f"{spread(run['salsa']['ratio'])} | {fmt(run['salsa_searched_fraction'])} |"
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
            f"| {label(variant)} | {fmt(s.get('step_ms'))} | {spread(s.get('ratio'))} |"
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
            f"| {label(theirs)} | {fmt(s.get('step_ms'))} | {spread(s.get('ratio'))} "
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
