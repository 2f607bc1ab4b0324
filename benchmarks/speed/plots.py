"""Figures of a results dictionary: overhead per variant and model, and its scaling."""

import pathlib
from typing import Any

from benchmarks.speed.registry import VARIANTS, label
from benchmarks.speed.report import steady


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
        ax.bar(xs, ys, width, yerr=errors, capsize=2, label=label(variant))
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
    """Overhead against batch size and width (MLP), and against the length of the run: a panel
    for each that ``results`` holds (``--no-scaling`` leaves the longer run alone)."""
    plt = _pyplot()
    points = results.get("scaling", {"points": []})["points"]
    sweeps = [("batch_size", ("width", 256)), ("width", ("batch_size", 128))] if points else []
    horizon = results.get("horizon")
    count = len(sweeps) + (horizon is not None)
    fig, axes = plt.subplots(1, count, figsize=(5 * count, 4), squeeze=False)
    axes = list(axes[0])
    for ax, (axis, fixed) in zip(axes[: len(sweeps)], sweeps, strict=True):
        swept = sorted((p for p in points if p[fixed[0]] == fixed[1]), key=lambda p: p[axis])
        xs = [p[axis] for p in swept]
        for variant, style in (("salsa", "o-"), ("salsa_every_step", "s-")):
            ys = [steady(p, variant)["ratio"]["median"] for p in swept]
            ax.plot(xs, ys, style, label=label(variant))
        limits = [steady(p, "salsa_every_step")["physical_limit"] for p in swept]
        ax.plot(xs, limits, "k--", label="physical limit of the every-step search")
        ax.plot(
            xs,
            [1 + p["forward_over_forward_backward"] for p in swept],
            "k:",
            label="1 + forward / (forward+backward)",
        )
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel(f"{axis.replace('_', ' ')} ({fixed[0].replace('_', ' ')} {fixed[1]})")
        ax.set_ylabel("step time / optax.adam step time")
    if sweeps:
        axes[0].legend(fontsize=7)
    if horizon is not None:
        ax = axes[-1]
        windows = horizon["windows"]
        xs = [w["last_step"] for w in windows]
        ax.plot(xs, [w["wall_ratio_of_means"] for w in windows], "o-", label="salsa() / Adam")
        ax.plot(xs, [w["searched_fraction"] for w in windows], "s--", label="searched fraction")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("step (end of window)")
        ax.legend(fontsize=7)
        ax.set_title("over a longer run (MLP 784-256-256-10)", fontsize=9)
    fig.suptitle(f"SaLSa's per-step overhead ({results['environment']['backend']})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
