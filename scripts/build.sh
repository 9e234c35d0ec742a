#!/usr/bin/env bash
# Configures and builds rnnsweep in build/ (Release). The CUDA backend is built where nvcc is
# found; everything else builds and runs without it.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
