#!/usr/bin/env bash
# Quick start, step 2: the whole test suite (installs and builds first if needed).
# On a GPU machine, RNNSWEEP_REQUIRE_GPU=1 turns skipped CUDA tests into failures.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)"
