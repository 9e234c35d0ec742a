#!/usr/bin/env bash
# Runs the benchmarks of bench/ (build first: scripts/build.sh) and the PyTorch peer when torch
# is importable. Figures are for this machine only; compare ratios measured in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
./build/bench/bench_train "$@"
./build/bench/bench_lyapunov
"${PYTHON:-python3}" bench/peers/run_peers.py --threads "$(nproc)" --repeats 3 || true
