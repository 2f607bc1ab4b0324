#!/usr/bin/env bash
# Mutation testing (mutmut) of the named modules of salsa_optax/_src, one after the other; writes
# benchmarks/results/mutation.{md,json}. Needs the dev extra (mutmut). Example:
#   bash scripts/mutation.sh eg_step_size layerwise_curvature schedules
# --max-children N runs N mutants at once (default 1). mutmut's working copy is mutants/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
exec python -m benchmarks.mutation "$@"
