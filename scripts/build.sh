#!/usr/bin/env bash
# Configures and builds rnnsweep in build/ (Release). The CUDA backend is built where nvcc is
# found; everything else builds and runs without it. RNNSWEEP_CMAKE_ARGS adds CMake options
# (CI: -DRNNSWEEP_GPU_PROGRAMS=ON, so that the GPU machine's programs compile there too).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC2086 # (a list of options)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release ${RNNSWEEP_CMAKE_ARGS:-} >/dev/null
cmake --build build -j"$(nproc)"
