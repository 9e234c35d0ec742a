#!/usr/bin/env bash
# The test suite built with AddressSanitizer and UndefinedBehaviorSanitizer (build-asan), every
# report fatal. CI runs it after scripts/test.sh. The tests that run kernels on the block
# emulator are left out (RNNSWEEP_EMULATED_KERNEL_TESTS=OFF): its fiber stack switches are not
# annotated for ASan, which then reports false stack errors. The CLI tests spawn the rnnsweep
# binary, instrumented as well; it inherits the options below.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-$(nproc)}
flags="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"

# -O1 -g1 (line tables): about half the compile time of -O2 -g over the Eigen code, full stack
# traces with file and line, and still fast enough for the test suite.
cmake -S . -B build-asan \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
  -DRNNSWEEP_CUDA=OFF -DRNNSWEEP_BENCH=OFF -DRNNSWEEP_NATIVE=OFF -DRNNSWEEP_EMULATED_KERNEL_TESTS=OFF \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" > /dev/null
# only what ctest runs (rnnsweep_tests depends on the rnnsweep CLI)
cmake --build build-asan --target rnnsweep_tests rnnsweep_fuzz_replay -j"$jobs"

export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1"
# plot.figures only runs the instrumented binary under Python: the CLI tests cover that already
ctest --test-dir build-asan --output-on-failure -j"$jobs" -E '^plot\.'
