#!/usr/bin/env bash
# The main job, from a fresh Debian machine with Python 3: install what is needed
# (scripts/setup.sh), then train the CPU-sized ResNet with salsa()'s defaults on real
# Fashion-MNIST (3 epochs) and print the summary.
#
#   bash examples/resnet/run_default.sh                       # workdir /tmp/resnet_cpu
#   WORKDIR=/tmp/run2 bash examples/resnet/run_default.sh --set optimizer=adam
#
# Extra arguments go to examples.resnet.main. Running it again with the same WORKDIR resumes
# (or, if that run finished, only prints its summary again).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/setup.sh
# shellcheck disable=SC1091
source .venv/bin/activate
JAX_PLATFORMS=cpu python -m examples.resnet.main \
  --config=cpu --workdir="${WORKDIR:-/tmp/resnet_cpu}" "$@"
