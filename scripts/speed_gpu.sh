#!/usr/bin/env bash
# The speed benchmark on a GPU, in one sitting of about ten minutes (an H200):
#   speed_gpu           the MLP, ResNet-8 and transformer: warm-up, settled regime, skipped step,
#                       and steps queued back to back;
#   speed_gpu_cmdbuf    the MLP again with XLA's command buffers taking conditionals and loops
#                       (--xla_gpu_enable_command_buffer=+CONDITIONAL,+WHILE);
#   speed_gpu_bert_base a BERT-base encoder (110 M parameters), batch 32 of 128 tokens;
#   speed_gpu_resnet50  a ResNet-50 (23.5 M parameters), batch 128.
# Each run writes speed_gpu*.{json,md} to OUT (default benchmarks/results); one that fails does not
# stop the others. `python -m benchmarks.speed --from-json FILE` writes a file's tables and plots.
#   bash scripts/speed_gpu.sh [OUT]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results}
export PYTHONUNBUFFERED=1
# The settled and queued runs compile the same steps again: the persistent cache serves them.
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/salsa_optax_jax_cache}
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
speed=(python3 -m benchmarks.speed --no-torch --no-scaling --horizon-steps 0 --no-plots --out "$out")
small=(--variants salsa,salsa_every_step,salsa_skipped,optax_backtracking --pipelined-steps 200)
large=(--variants salsa,salsa_skipped --steps 60 --settle-steps 300 --settled-steps 100
  --pipelined-steps 100)
"${speed[@]}" --models mlp,resnet,transformer "${small[@]}"
XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_command_buffer=+CONDITIONAL,+WHILE" \
  "${speed[@]}" --tag cmdbuf --models mlp --variants salsa,salsa_skipped --pipelined-steps 200
"${speed[@]}" --tag bert_base --models bert_base --batch-size 32 "${large[@]}"
"${speed[@]}" --tag resnet50 --models resnet50 --batch-size 128 "${large[@]}"
