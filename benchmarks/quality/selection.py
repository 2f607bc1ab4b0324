"""What one command runs: the tasks of a preset, the optimizers, their grid members and budgets."""

import ast
import fnmatch
import importlib
import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from benchmarks.quality.registry import DEFAULT_OPTIMIZERS, Optimizer
from benchmarks.tasks import TASKS

PRESETS = {
    "quick": ("digits_mlp", "mnist1d_cnn"),
    "cpu": tuple(TASKS),
    "full": tuple(TASKS),
}


def resolve(ref: str | Callable) -> Callable:
    """``"module:attribute"`` -> the attribute; a callable is returned as is."""
    if callable(ref):
        return ref
    module, attribute = ref.split(":")
    return getattr(importlib.import_module(module), attribute)


def parse_value(text: str) -> Any:
    """A Python literal, or the text itself when it is not one (``variant=sps``)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_extra_optimizer(spec: str, registry: Mapping[str, Optimizer]) -> tuple[str, Optimizer]:
    """``NAME=BASE[:KEY=VALUE,...]`` -> ``(NAME, entry)``: BASE's entry with the keys overridden.

    A list value is a grid axis; a scalar value for a key BASE grids over replaces that axis.

    >>> from benchmarks.quality.registry import OPTIMIZERS
    >>> name, entry = parse_extra_optimizer("a3=adam:learning_rate=3e-3", OPTIMIZERS)
    >>> name, entry.factory, dict(entry.kwargs), dict(entry.grid)
    ('a3', 'optax:adam', {'learning_rate': 0.003}, {})
    >>> _, entry = parse_extra_optimizer("s=salsa:slope_rtol=0.1,betas=(0.9, 0.99)", OPTIMIZERS)
    >>> dict(entry.kwargs)
    {'slope_rtol': 0.1, 'betas': (0.9, 0.99)}
    """
    match = re.fullmatch(r"\s*(\w+)\s*=\s*(\w+)\s*(?::(.*))?", spec)
    if not match:
        raise ValueError(f"--extra-optimizer {spec!r}: expected NAME=BASE[:KEY=VALUE,...]")
    name, base_name, overrides = match.groups()
    if base_name not in registry:
        raise ValueError(f"--extra-optimizer {spec!r}: unknown base {base_name!r}")
    base = registry[base_name]
    kwargs, grid = dict(base.kwargs), dict(base.grid)
    # Split on the commas that start a new KEY=, so tuple values keep theirs.
    for item in re.split(r",(?=\s*\w+\s*=)", overrides or ""):
        if not item.strip():
            continue
        key, _, text = item.partition("=")
        key, value = key.strip(), parse_value(text.strip())
        grid.pop(key, None)
        kwargs.pop(key, None)
        if isinstance(value, list):
            grid[key] = tuple(value)
        else:
            kwargs[key] = value
    return name, base._replace(kwargs=kwargs, grid=grid)


def grid_members(entry: Optimizer, lr_scale: float = 1.0) -> list[tuple[str, dict[str, Any]]]:
    """``[(member label, full kwargs)]``, one per grid point; the label is ``""`` without a grid.

    ``lr_scale`` multiplies a ``learning_rate`` axis: a task centres the grids on its own scale.
    """
    axes = {
        key: [float(f"{v * lr_scale:.6g}") for v in values] if key == "learning_rate" else values
        for key, values in entry.grid.items()
    }
    members = []
    for point in itertools.product(*axes.values()):
        chosen = dict(zip(axes, point, strict=True))
        label = ",".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in chosen.items()
        )
        members.append((label, {**entry.kwargs, **chosen}))
    return members


def parse_steps(spec: str) -> int | dict[str, int]:
    """``--steps``: one budget for every task, or ``TASK=N`` pairs for some.

    >>> parse_steps("100")
    100
    >>> parse_steps("fashion_resnet=2580,digits_mlp=50")
    {'fashion_resnet': 2580, 'digits_mlp': 50}
    """
    if "=" not in spec:
        return int(spec)
    pairs = [item.split("=", 1) for item in spec.split(",")]
    return {task.strip(): int(steps) for task, steps in pairs}


def select_optimizers(patterns: str | None, registry: Mapping[str, Optimizer]) -> list[str]:
    """Names matching comma-separated names, globs, ``group:<g>``, ``default`` or ``all``."""
    if not patterns:
        return [n for n in DEFAULT_OPTIMIZERS if n in registry]
    chosen = []
    for pattern in patterns.split(","):
        pattern = pattern.strip()
        if pattern == "default":
            names = [n for n in DEFAULT_OPTIMIZERS if n in registry]
        elif pattern == "all":
            names = list(registry)
        elif pattern.startswith("group:"):
            names = [n for n, e in registry.items() if e.group == pattern[len("group:") :]]
        else:
            names = fnmatch.filter(registry, pattern)
        if not names:
            raise ValueError(f"--optimizers: {pattern!r} matches no registered optimizer")
        chosen += [n for n in names if n not in chosen]
    return chosen


def with_priors(names: Sequence[str], registry: Mapping[str, Optimizer]) -> list[str]:
    """``names`` with every entry's prior run inserted before it."""
    ordered = []
    for name in names:
        prior = registry[name].prior
        if prior and prior not in ordered:
            ordered += [n for n in with_priors([prior], registry) if n not in ordered]
        if name not in ordered:
            ordered.append(name)
    return ordered
