#!/usr/bin/env bash
# The GPU machine's check, in one call that always returns a verdict within its deadline:
#
#   scripts/device-check.sh [--deadline SECONDS] [--out DIR] [--jobs N] [--programs-from BUILD]
#
# (--out defaults to $OUT, else device-out/; --deadline to 420. --programs-from, for CI: the
# build step configures build-device as always, then takes the programs from BUILD, a build of
# this checkout made with -DRNNSWEEP_GPU_PROGRAMS=ON, instead of compiling them a second time.)
# Steps, in this order, each
# capped by what is left of the deadline (a step that would start with too little left is
# skipped and named in the verdict):
#   build       Ninja, sm_90, warnings not errors (one new warning from that machine's compiler
#               must not lose the window); stops at once if the CUDA programs were not built
#   gpu-tests   the kernel and backend tests compiled by nvcc, RNNSWEEP_REQUIRE_GPU=1 (a skip
#               is a failure); stops here, with one line, where there is no GPU
#   tune        `rnnsweep tune`: every kernel instance timed per shape -> tuning.json, which the
#               steps after it run with (RNNSWEEP_TUNING)
#   bench       bench_cuda at K = 1024, 4096, 16384 (validated against the CPU first): fp32,
#               tf32x3, the layered path (cuBLAS) and the general kernel, each rule
#   ncu         Nsight Compute on the H = 64, batch 32 e-prop instances (fp32 and tf32x3): achieved
#               occupancy, issue and shared-memory pipe utilisation, top stall reasons (bench.log)
#   run-vs-cpu  configs/quick.toml on the CUDA backend and on the CPU backend (all cores),
#               compared column by column (scripts/compare_runs.py)
#   sanitizers  compute-sanitizer memcheck on a small real run; racecheck and synccheck on a
#               GPU test filter of about a minute; all with RNNSWEEP_REQUIRE_GPU=1, --print-limit
#   peers       bench/peers/run_peers.py --device cuda (PyTorch, JAX) at the bench's shape
#   suite       the CPU test suite (its CLI tests use --backend auto, so CUDA here) if time is left
#
# Results, at most 8 files in DIR: summary.md (read it first: the verdict, a row per step, the
# figures), build.log, tests.log (gpu-tests and suite), tuning.json, bench.md (bench_cuda and
# peers tables), bench.log, compare.log, sanitizer.log. Exit 0 when every step passed, 1 when
# one failed, 3 when the machine has no GPU (everything before gpu-tests ran), 4 when the
# deadline cut steps off, 2 for bad arguments.
#
# The GPU machine has CMake, Ninja, nvcc and a C++ compiler but none of the Debian -dev packages
# and no network: run scripts/fetch-debs.sh here first and carry debs/; they are unpacked into
# debs/root (dpkg -x, nothing installed system-wide) and CMake is pointed at it. The build is
# made there, not carried: a build made here links this machine's libraries and paths, and a
# failure to run there would cost the window (README: The GPU check).
set -uo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

deadline=420
out="${OUT:-device-out}"
jobs="$(nproc)"
programs_from=""
while [ $# -gt 0 ]; do
  case "$1" in
    --deadline) deadline="${2:-}"; shift 2 ;;
    --out) out="${2:-}"; shift 2 ;;
    --jobs) jobs="${2:-}"; shift 2 ;;
    --programs-from) programs_from="${2:-}"; shift 2 ;;
    *) echo "device-check: unknown argument '$1' (allowed: --deadline SECONDS, --out DIR, --jobs N, --programs-from BUILD)" >&2; exit 2 ;;
  esac
done
case "$deadline" in ''|*[!0-9]*) echo "device-check: --deadline '$deadline': allowed: whole seconds >= 60" >&2; exit 2 ;; esac
case "$jobs" in ''|*[!0-9]*|0) echo "device-check: --jobs '$jobs': allowed: a positive integer" >&2; exit 2 ;; esac
[ "$deadline" -ge 60 ] || { echo "device-check: --deadline $deadline: allowed: whole seconds >= 60" >&2; exit 2; }
if [ -n "$programs_from" ] && [ ! -f "$programs_from/CMakeCache.txt" ]; then
  echo "device-check: --programs-from '$programs_from': allowed: a configured build folder of this checkout" >&2
  exit 2
fi
mkdir -p "$out" || { echo "device-check: --out '$out': cannot create it" >&2; exit 2; }
out="$(cd "$out" && pwd)"
rm -f "$out"/summary.md "$out"/build.log "$out"/tests.log "$out"/tuning.json "$out"/bench.md "$out"/bench.log \
  "$out"/compare.log "$out"/sanitizer.log

start=$SECONDS
build=build-device
rows=()       # one summary table row per step
figures=()    # lines of results for the summary
failed=()
cut=()
verdict=""

left() { echo $((deadline - (SECONDS - start))); }

# run_step NAME CAP LOG COMMAND...: runs COMMAND with at most min(CAP, time left - 10 s),
# appending its output to LOG; records the row. Returns the command's status (124: timed out,
# 125: skipped for want of time).
run_step() {
  local name="$1" cap="$2" log="$3"
  shift 3
  local budget=$(( $(left) - 10 ))
  [ "$cap" -lt "$budget" ] && budget="$cap"
  if [ "$budget" -lt 15 ]; then
    rows+=("| $name | skipped: $(left) s of the deadline left | |")
    cut+=("$name")
    return 125
  fi
  echo "== $name ($(date -u +%T), budget ${budget} s): $*" >> "$log"
  local t0=$SECONDS rc
  # through bash, so that COMMAND may be one of the functions below (exported with export -f)
  timeout --kill-after=5 "$budget" bash -c '"$@"' "$name" "$@" >> "$log" 2>&1
  rc=$?
  local took=$((SECONDS - t0))
  if [ $rc -eq 0 ]; then
    rows+=("| $name | ok | ${took} s |")
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    rows+=("| $name | TIMED OUT after ${budget} s (see $(basename "$log")) | ${took} s |")
    failed+=("$name")
  else
    rows+=("| $name | FAILED, exit $rc (see $(basename "$log")) | ${took} s |")
    failed+=("$name")
  fi
  return $rc
}

finish() {
  local code=0
  if [ -n "$verdict" ]; then
    code="${2:-1}"
  elif [ ${#failed[@]} -gt 0 ]; then
    verdict="FAIL: ${failed[*]}"
    code=1
  elif [ ${#cut[@]} -gt 0 ]; then
    verdict="INCOMPLETE: the deadline cut off ${cut[*]}"
    code=4
  else
    verdict="PASS: every step"
  fi
  {
    echo "# Device check: $verdict"
    echo
    echo "$(date -u +%FT%TZ), $(left) s of the ${deadline} s deadline left; GPU: ${gpu_name:-none}; $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?') $(git -C "$root" status --porcelain 2>/dev/null | grep -q . && echo '(uncommitted changes)')"
    echo
    echo "| step | result | time |"
    echo "|---|---|---|"
    printf '%s\n' "${rows[@]}"
    if [ ${#figures[@]} -gt 0 ]; then
      echo
      printf '%s\n' "${figures[@]}"
    fi
  } > "$out/summary.md"
  echo "device-check: $verdict (summary: $out/summary.md)"
  exit "$code"
}

{
  echo "== machine"
  if command -v nvidia-smi >/dev/null; then nvidia-smi 2>&1; else echo "nvidia-smi: not installed"; fi
  nvcc --version 2>&1 | tail -2
  cmake --version | head -1
  ninja --version 2>&1 || echo "ninja: not found"
  c++ --version 2>&1 | head -1
} >> "$out/build.log" 2>&1

# ---- build ----
deps() {
  if [ -d debs ] && ls debs/*.deb >/dev/null 2>&1; then
    mkdir -p debs/root
    for deb in debs/*.deb; do dpkg -x "$deb" debs/root || return 1; done
  elif ! dpkg -s libeigen3-dev libboost-context-dev libgtest-dev libcli11-dev >/dev/null 2>&1; then
    echo "no debs/ and the packages are not installed: run scripts/fetch-debs.sh on a networked machine and carry debs/"
    return 1
  fi
}
if [ -d debs/root ] || ls debs/*.deb >/dev/null 2>&1; then
  export CMAKE_PREFIX_PATH="$root/debs/root/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  export LD_LIBRARY_PATH="$root/debs/root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export CPATH="$root/debs/root/usr/include${CPATH:+:$CPATH}"
fi
configure_and_build() {
  deps || return 1
  cmake -G Ninja -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DRNNSWEEP_NATIVE=OFF \
    -DRNNSWEEP_GPU_PROGRAMS=ON -DRNNSWEEP_WERROR=OFF -DRNNSWEEP_EMULATED_KERNEL_TESTS=OFF || return 1
  # --programs-from: configured as above, compiled already (CI's own build)
  [ -n "$programs_from" ] && { echo "programs from $programs_from (--programs-from): not compiled here"; return 0; }
  # the CPU suite's programs are built by its own step, last, when there is time for it
  cmake --build "$build" -j"$jobs" --target rnnsweep rnnsweep_gpu_tests bench_cuda
}
export build jobs root programs_from
export -f deps configure_and_build
run_step build 300 "$out/build.log" configure_and_build || finish "" 1
[ -n "$programs_from" ] && build="$(cd "$programs_from" && pwd)"
missing=""
for program in rnnsweep tests/rnnsweep_gpu_tests bench/bench_cuda; do
  [ -x "$build/$program" ] || missing="$missing $program"
done
if [ -n "$missing" ]; then
  rows+=("| cuda programs | MISSING:$missing (CUDA not found by CMake? see build.log) | |")
  verdict="FAIL: the build has no CUDA programs:$missing"
  finish "" 1
fi
if [ -n "$programs_from" ]; then
  rows+=("| cuda programs | from $programs_from (--programs-from): rnnsweep, rnnsweep_gpu_tests, bench_cuda | |")
else
  rows+=("| cuda programs | built: rnnsweep, rnnsweep_gpu_tests, bench_cuda | |")
fi

# ---- is there a GPU? ----
gpu_name="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
if [ -z "$gpu_name" ]; then
  if command -v nvidia-smi >/dev/null; then why="$(nvidia-smi -L 2>&1 | head -1)"; else why="not installed"; fi
  rows+=("| gpu-tests and after | not run: no GPU (nvidia-smi: ${why:-no output}) | |")
  verdict="NO GPU: stopped before gpu-tests, the first step that needs one (nvidia-smi: ${why:-no output})"
  finish "" 3
fi
export RNNSWEEP_REQUIRE_GPU=1

# ---- gpu-tests ----
run_step gpu-tests 120 "$out/tests.log" "$build/tests/rnnsweep_gpu_tests" --gtest_brief=1
figures+=("- gpu-tests: $(grep -E '^\[  (PASSED|FAILED)  \]' "$out/tests.log" | tr '\n' ' ')")

# ---- tune ----
shapes=all
[ "$(left)" -lt 300 ] && shapes=paper
if run_step tune 70 "$out/bench.log" "$build/rnnsweep" tune --out "$out/tuning.json" --shapes "$shapes" --quiet; then
  export RNNSWEEP_TUNING="$out/tuning.json"
  figures+=("- tune ($shapes shapes): $(python3 -c "import json,sys; t=json.load(open(sys.argv[1])); print(sum(len(g['entries']) for g in t['gpus'].values()), 'entries')" "$out/tuning.json" 2>/dev/null)")
fi

# ---- bench ----
bench() {
  for K in 1024 4096 16384; do
    echo "## bench_cuda, K = $K"
    "$build/bench/bench_cuda" --networks "$K" --iters 20 || return 1
    echo
  done
}
export -f bench
run_step bench 150 "$out/bench.log" bench
sed -n '/^## bench_cuda/,$p' "$out/bench.log" | grep -E '^(##|\||#)' > "$out/bench.md"
figures+=("" "bench_cuda (bench.md):" "" "$(grep -E '^\| (bptt|eprop|rflo|spectrum|flossing)' "$out/bench.md" | head -40)")

# ---- ncu ----
# One launch of each fused e-prop instance at the study's shape, the sections the training-kernels
# issue asks for; appended to bench.log (the file count is capped) and summarised in summary.md.
profile() {
  command -v ncu > /dev/null || { echo "ncu not found"; return 1; }
  for kernel in train_registers_kernel train_mma_kernel; do
    echo "## ncu $kernel (bench_cuda --rules eprop --networks 1024 --iters 1 --no-spectra)"
    ncu --kernel-name "regex:$kernel" --launch-count 1 --section SpeedOfLight --section Occupancy \
      --section SchedulerStats --section WarpStateStats --section ComputeWorkloadAnalysis \
      --section MemoryWorkloadAnalysis "$build/bench/bench_cuda" --rules eprop --networks 1024 --iters 1 --no-spectra \
      || return 1
  done
}
export -f profile
if run_step ncu 60 "$out/ncu.log" profile; then
  cat "$out/ncu.log" >> "$out/bench.log"
  figures+=("" "ncu (bench.log):" "" "$(grep -E '^## ncu|Achieved Occupancy|Issue Slots Busy|Shared Memory|Stall|SM Busy|Compute \(SM\) Throughput' "$out/ncu.log" | head -30)")
fi
rm -f "$out/ncu.log"  # (in bench.log: at most 8 files come back)

# ---- run-vs-cpu ----
run_vs_cpu() {
  rm -rf "$build/run-cuda" "$build/run-cpu"
  "$build/rnnsweep" run configs/quick.toml --backend cuda --out "$build/run-cuda" --quiet || return 1
  "$build/rnnsweep" run configs/quick.toml --backend cpu --threads "$jobs" --out "$build/run-cpu" --quiet || return 1
  python3 scripts/compare_runs.py "$build/run-cuda" "$build/run-cpu"
}
export -f run_vs_cpu
run_step run-vs-cpu 120 "$out/compare.log" run_vs_cpu
figures+=("- run-vs-cpu: $(grep -E '^compare:' "$out/compare.log" | tail -1)")
figures+=("- run-vs-cpu, configs/quick.toml, CUDA then CPU ($jobs threads): $(grep -hoE '"(total_s|network_iterations_per_s)": *[0-9.e+]*' "$build/run-cuda/manifest.json" "$build/run-cpu/manifest.json" 2>/dev/null | tr '\n' ' ')")

# ---- sanitizers ----
sanitizer="$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer /opt/nvidia/*/compute-sanitizer 2>/dev/null | head -1)"
sanitize() {
  [ -n "$sanitizer" ] || { echo "compute-sanitizer not found"; return 1; }
  local status=0 small="--set tasks=romo,2af,dms --set iters=3 --set gains=[1.0] --set lrs=[1e-3] --set seeds=[0]"
  rm -rf "$build/run-memcheck"
  echo "-- memcheck: a small real run"
  # shellcheck disable=SC2086
  timeout 100 "$sanitizer" --tool memcheck --error-exitcode 3 --print-limit 20 "$build/rnnsweep" run configs/quick.toml \
    $small --set le_steps=20 --set le_warmup=5 --set floss_iters=2 --set floss_steps=10 --backend cuda --out "$build/run-memcheck" \
    --quiet || status=1
  local filter='TrainStepShapes.*:TrainStepPaperShape.*:Spectrum.ZeroRecurrence*:Spectrum.WithoutWarmup*:Floss.WithoutWarmup*:CudaTasks.*'
  for tool in racecheck synccheck; do
    echo "-- $tool: $filter"
    timeout 90 "$sanitizer" --tool "$tool" --error-exitcode 3 --print-limit 20 "$build/tests/rnnsweep_gpu_tests" \
      --gtest_filter="$filter" --gtest_brief=1 || status=1
  done
  return $status
}
export sanitizer
export -f sanitize
run_step sanitizers 300 "$out/sanitizer.log" sanitize
figures+=("- sanitizers: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|^-- ' "$out/sanitizer.log" | tr '\n' ' ')")

# ---- peers ----
run_step peers 120 "$out/bench.log" python3 bench/peers/run_peers.py --device cuda --build "$build" --networks 4096 \
  --iters 10 --markdown "$out/peers.tmp"
if [ -f "$out/peers.tmp" ]; then
  { echo; echo "## Peers (bench/peers/run_peers.py --device cuda)"; echo; cat "$out/peers.tmp"; } >> "$out/bench.md"
  figures+=("" "peers (bench.md):" "" "$(grep -E '^\|' "$out/peers.tmp")")
  rm -f "$out/peers.tmp"
fi

# ---- suite ----
suite() {
  cmake --build "$build" -j"$jobs" --target rnnsweep_tests rnnsweep_fuzz_replay || return 1
  ctest --test-dir "$build" --output-on-failure -j"$jobs" -E '^gpu\.'
}
export -f suite
run_step suite 600 "$out/tests.log" suite
figures+=("- suite: $(grep -E 'tests passed|tests failed' "$out/tests.log" | tail -1)")

finish
