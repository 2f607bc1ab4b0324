"""Quality benchmark: SaLSa against tuned baselines and learning-rate-free optimizers.

Runs a grid of optimizers × tasks × seeds and writes, under ``--out`` (``benchmarks/results/``):
``quality_<tag>.json`` (configuration, hardware, every run, the summary), ``quality_<tag>.md`` (the
results tables), ``quality_<tag>_steps.npz`` (per-step diagnostics of every run) and
``quality_<tag>_<task>_{loss,step_size}.png``. ``python -m benchmarks.quality --help`` has the
command line.

Optimizers live in :data:`OPTIMIZERS`, keyed by name: a factory, its keyword arguments and, for the
tuned baselines, a grid whose best member is chosen on the validation split (never the test split).

One module per concern:

- ``registry``: what is compared (``factories``: the optimizers it builds itself);
- ``selection``: what one command runs (presets, ``--optimizers``, ``--extra-optimizer``, grids);
- ``context``, ``harness``: a task made ready, and how one run is trained and recorded;
- ``reuse``: runs taken from earlier result files;
- ``summary``, ``report``, ``plots``: the chosen results, the tables, the figures;
- ``runner``, ``cli``: the whole benchmark and its command line.
"""

from benchmarks.quality.cli import main
from benchmarks.quality.registry import (
    ADAM_GRID,
    DEFAULT_OPTIMIZERS,
    OPTIMIZERS,
    SGD_GRID,
    Optimizer,
)
from benchmarks.quality.selection import grid_members, parse_extra_optimizer, select_optimizers

__all__ = [
    "ADAM_GRID",
    "DEFAULT_OPTIMIZERS",
    "OPTIMIZERS",
    "SGD_GRID",
    "Optimizer",
    "grid_members",
    "main",
    "parse_extra_optimizer",
    "select_optimizers",
]
