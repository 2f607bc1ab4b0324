#!/usr/bin/env bash
# Installs everything (scripts/setup.sh), checks lint and formatting, and runs the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ruff check .
ruff format --check .
python -m pytest -n 2 -q
