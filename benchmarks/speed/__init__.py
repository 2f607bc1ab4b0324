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

One module per concern:

- ``registry``: what is timed (the optax variants, the PyTorch counterparts, the models of
  ``models``);
- ``runners``, ``timing``: one timed thing each, and how their steps are interleaved and timed;
- ``measure``, ``summary``: the runs of a model, the scaling and horizon runs, and their numbers;
- ``environment``: threads, pinned core, machine;
- ``report``, ``plots``: the tables and figures;
- ``cli``: the command line.
"""

from benchmarks.speed.cli import main
from benchmarks.speed.registry import MODELS, VARIANTS, Variant
from benchmarks.speed.timing import Plan, steady_chunks

__all__ = ["MODELS", "VARIANTS", "Plan", "Variant", "main", "steady_chunks"]
