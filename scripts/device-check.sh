#!/usr/bin/env bash
# The GPU machine's check, in one call of at most ~8 minutes: build for sm_90, the whole test
# suite with RNNSWEEP_REQUIRE_GPU=1 (a skipped GPU test is a failure there), compute-sanitizer
# memcheck and racecheck on the GPU kernel tests, the benchmarks, and one real sweep of
# configs/quick.toml on the CUDA backend. Logs go to $OUT (default ./device-out), eight files:
# summary.txt (read it first), build.log, tests.log, sanitizer.log, bench.txt, RESULTS.md,
# run.log and the sweep's networks.csv.
#
# The GPU machine has nvcc, CMake and a C++ compiler but none of the Debian -dev packages and no
# network: run scripts/fetch-debs.sh beforehand on a networked machine and send debs/ along;
# they are unpacked here into debs/root (dpkg -x) and CMake is pointed at that prefix.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-device-out}"
mkdir -p "$out"
status=0
step() { echo "== $* ($(date +%T))" | tee -a "$out/summary.txt"; }
fail() { echo "FAILED: $*" | tee -a "$out/summary.txt"; status=1; }

{
  nvidia-smi || echo "nvidia-smi failed"
  nvcc --version | tail -1
  command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null || echo "no compute-sanitizer found"
} >> "$out/summary.txt" 2>&1

step "dependencies"
if [ -d debs ] && ls debs/*.deb >/dev/null 2>&1; then
  prefix="$PWD/debs/root"
  mkdir -p "$prefix"
  for deb in debs/*.deb; do dpkg -x "$deb" "$prefix" || fail "dpkg -x $deb"; done
  export CMAKE_PREFIX_PATH="$prefix/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  export LD_LIBRARY_PATH="$prefix/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
elif ! dpkg -s libeigen3-dev libboost-context-dev libgtest-dev >/dev/null 2>&1; then
  fail "no debs/ and the packages are not installed: run scripts/fetch-debs.sh on a networked machine first"
  exit 1
fi

step "configure and build (sm_90)"
jobs="$(nproc)"
{ cmake -S . -B build-device -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DRNNSWEEP_NATIVE=OFF -DRNNSWEEP_GPU_PROGRAMS=ON &&
  cmake --build build-device -j"$jobs"; } > "$out/build.log" 2>&1 || { fail "build (see build.log)"; exit 1; }

step "tests (RNNSWEEP_REQUIRE_GPU=1)"
RNNSWEEP_REQUIRE_GPU=1 timeout 240 ctest --test-dir build-device --output-on-failure -j8 > "$out/tests.log" 2>&1 ||
  fail "tests (see tests.log)"
grep -E "tests passed|tests failed" "$out/tests.log" | tee -a "$out/summary.txt"

step "compute-sanitizer"
sanitizer="$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer /opt/nvidia/*/compute-sanitizer 2>/dev/null | head -1)"
if [ -n "$sanitizer" ]; then
  filter='TrainStep*:*TrainStep.*romo*:Spectrum.MatchesTheCpuOnEveryTask:Floss.*'
  for tool in memcheck racecheck; do
    timeout 120 "$sanitizer" --tool "$tool" --error-exitcode 3 build-device/tests/rnnsweep_gpu_tests \
      --gtest_filter="$filter" >> "$out/sanitizer.log" 2>&1 || fail "compute-sanitizer $tool (see sanitizer.log)"
    tail -2 "$out/sanitizer.log" >> "$out/summary.txt"
  done
else
  fail "compute-sanitizer not found"
fi

step "benchmarks"
timeout 120 build-device/bench/bench_cuda --results "$out/RESULTS.md" > "$out/bench.txt" 2>&1 || fail "bench_cuda"
timeout 60 build-device/bench/bench_cuda --networks 16384 --iters 10 >> "$out/bench.txt" 2>&1 || fail "bench_cuda K=16384"
cat "$out/bench.txt" >> "$out/summary.txt"

step "a real sweep: configs/quick.toml on the cuda backend"
rm -rf device-run
timeout 180 build-device/rnnsweep run configs/quick.toml --backend cuda --out device-run > "$out/run.log" 2>&1 ||
  fail "rnnsweep run (see run.log)"
cp device-run/networks.csv "$out/networks.csv" 2>/dev/null
tail -3 "$out/run.log" >> "$out/summary.txt"

echo "status: $status" | tee -a "$out/summary.txt"
exit $status
