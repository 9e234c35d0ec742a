#!/usr/bin/env bash
# The GPU machine's check, in one call: build with nvcc for sm_90, run the whole test suite
# with RNNSWEEP_REQUIRE_GPU=1 (a skipped CUDA test is a failure there), run the benchmarks,
# and leave the logs under $OUT (default: ./device-out).
#
# The device machine has no network: the Debian packages of scripts/install-deps.sh must be
# there already; the script says which are missing instead of trying to install them.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-device-out}"
mkdir -p "$out"
{
  nvidia-smi || echo "nvidia-smi failed"
  nvcc --version | tail -1
} > "$out/device.txt" 2>&1
missing=()
for p in cmake g++ libeigen3-dev libcli11-dev libtomlplusplus-dev librandom123-dev nlohmann-json3-dev libgtest-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "device-check: missing packages (no network here to install them): ${missing[*]}" | tee "$out/summary.txt"
  exit 1
fi
status=0
cmake -S . -B build-device -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 > "$out/configure.log" 2>&1 || status=1
cmake --build build-device -j"$(nproc)" > "$out/build.log" 2>&1 || status=1
if [ $status -eq 0 ]; then
  RNNSWEEP_REQUIRE_GPU=1 ctest --test-dir build-device --output-on-failure -j4 > "$out/tests.log" 2>&1 || status=1
  ./build-device/bench/bench_train > "$out/bench_train.txt" 2>&1 || status=1
  ./build-device/bench/bench_lyapunov > "$out/bench_lyapunov.txt" 2>&1 || status=1
fi
{
  echo "status: $status"
  tail -3 "$out/tests.log" 2>/dev/null
  cat "$out/bench_train.txt" "$out/bench_lyapunov.txt" 2>/dev/null
} | tee "$out/summary.txt"
exit $status
