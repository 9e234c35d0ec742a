#!/usr/bin/env bash
# Fuzzes the config parsers (tests/fuzz/fuzz_config.cpp) with libFuzzer for SECONDS (default 300),
# starting from the committed corpus, then merges what it found back into tests/fuzz/corpus
# (minimised: only inputs that add coverage). Needs clang with libFuzzer; builds in build-fuzz.
# A finding stops the run and leaves crash-*/timeout-* in build-fuzz/findings; fix the parser
# and copy the input into the corpus, which ctest replays (fuzz.config_corpus).
# Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-300}
jobs=${JOBS:-2}

cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER="${CXX:-clang++}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DRNNSWEEP_CUDA=OFF -DRNNSWEEP_BENCH=OFF -DRNNSWEEP_NATIVE=OFF -DRNNSWEEP_EMULATED_KERNEL_TESTS=OFF \
  > /dev/null
cmake --build build-fuzz --target rnnsweep_fuzz_config -j"$jobs"

# New inputs go to a scratch corpus; the committed one is only read, then merged into.
work=build-fuzz/corpus
findings=build-fuzz/findings
mkdir -p "$work" "$findings"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
build-fuzz/tests/rnnsweep_fuzz_config "$work" tests/fuzz/corpus \
  -dict=tests/fuzz/config.dict -max_total_time="$seconds" -max_len=2048 -timeout=5 -rss_limit_mb=2048 \
  -artifact_prefix="$findings/" -print_final_stats=1
# -use_counters=0: keep only the inputs that reach new code, not new hit counts (a small corpus)
build-fuzz/tests/rnnsweep_fuzz_config -merge=1 -use_counters=0 tests/fuzz/corpus "$work" \
  -max_len=2048 -timeout=5
echo "fuzz.sh: tests/fuzz/corpus holds $(ls tests/fuzz/corpus | wc -l) inputs" \
  "($(du -sh tests/fuzz/corpus | cut -f1))"
