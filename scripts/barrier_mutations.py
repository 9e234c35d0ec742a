#!/usr/bin/env python3
"""Barrier mutation sweep: is every __syncthreads in kernels/ necessary?

For each __syncthreads() call in kernels/ (or a seeded sample of them), remove that one call,
rebuild the emulated kernel tests (tests/rnnsweep_kernel_tests) and run them. Every launch in
that binary runs under the emulator's schedules, so a barrier whose removal lets a race change
any bit of device memory makes a test fail (caught). A barrier whose removal no test notices
(missed) is either redundant (remove it: it costs time on the GPU) or guards a case that no test
covers (add the test).

By default the sweep works on a copy of the tree in a scratch folder (its first build takes a
few minutes). With --build DIR it uses that configured build folder of this checkout instead
(CI: build/, already built) and mutates the checkout's files in place, one at a time, putting
each back as it was after its run, also when interrupted (SIGINT, SIGTERM).
Exit status: 0 when every mutant was caught, 1 when one was missed, 2 on bad arguments or when
the unmutated tests fail.

  scripts/barrier_mutations.py                 every barrier (about 16 minutes on 2 cores)
  scripts/barrier_mutations.py --sample 3 --seed 7 --build build   three, chosen by the seed
  scripts/barrier_mutations.py --list          the barriers, numbered, without running anything
"""
import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BARRIER = re.compile(r"__syncthreads\(\)\s*;")
# The kernel-level tests: the backend tests (CudaBackend.*) run the same kernels on whole grids
# and take minutes under the schedules; the emulator's own tests do not use kernels/.
DEFAULT_FILTER = "-CudaBackend.*:Emulator.*:Schedules.*"


def barrier_sites(root):
    """(path relative to root, 1-based line, column) of every __syncthreads(); in code."""
    sites = []
    for path in sorted((root / "kernels").glob("*.cu*")):
        if path.name == "portability.cuh":
            continue  # the mapping itself: it names barriers in comments only
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            code = line.split("//", 1)[0]
            for match in BARRIER.finditer(code):
                sites.append((path.relative_to(root).as_posix(), number, match.start()))
    return sites


def tracked_files(root):
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=root, check=True,
                         capture_output=True, text=True).stdout
    return [f for f in out.splitlines() if f and (root / f).is_file()]


def run(cmd, cwd, timeout, log):
    start = time.monotonic()
    try:
        p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=timeout)
        output, code = p.stdout, p.returncode
    except subprocess.TimeoutExpired as e:
        output = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        code = None
    log.write(f"$ {' '.join(map(str, cmd))}\n{output}\n")
    return code, output, time.monotonic() - start


def first_failure(output):
    m = re.search(r"^\[  FAILED  \] (\S+)", output, re.M)
    if m:
        return m.group(1)
    if "RaceDetected" in output or "race in" in output:
        return "race report"
    return "non-zero exit"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", type=int, default=0, help="mutate only N barriers, chosen by --seed (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample")
    parser.add_argument("--only", default="", help="comma-separated barrier numbers (as --list prints them)")
    parser.add_argument("--list", action="store_true", help="print the barriers and exit")
    parser.add_argument("--filter", default=DEFAULT_FILTER, help=f"gtest filter (default {DEFAULT_FILTER})")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per mutant's test run (default 600)")
    parser.add_argument("--work", default="", help="scratch folder (default: a new temporary one, removed after)")
    parser.add_argument("--build", default="", help="configured build folder of this checkout: mutate in place")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--trust-unmutated", action="store_true",
                        help="skip the run of the unmutated tests (CI: its suite has just passed on the same build)")
    args = parser.parse_args()

    sites = barrier_sites(ROOT)
    if args.list:
        for i, (path, line, _) in enumerate(sites, start=1):
            print(f"{i:3d} {path}:{line}: {(ROOT / path).read_text().splitlines()[line - 1].strip()}")
        return 0
    chosen = list(range(len(sites)))
    if args.only:
        try:
            chosen = [int(x) - 1 for x in args.only.split(",")]
        except ValueError:
            print(f"barrier_mutations: --only takes barrier numbers 1..{len(sites)}, got '{args.only}'", file=sys.stderr)
            return 2
        if any(i < 0 or i >= len(sites) for i in chosen):
            print(f"barrier_mutations: --only takes barrier numbers 1..{len(sites)}, got '{args.only}'", file=sys.stderr)
            return 2
    elif args.sample:
        if args.sample < 0:
            print("barrier_mutations: --sample must be >= 0", file=sys.stderr)
            return 2
        chosen = sorted(random.Random(args.seed).sample(chosen, min(args.sample, len(chosen))))

    in_place = bool(args.build)
    if in_place and not (Path(args.build) / "CMakeCache.txt").exists():
        print(f"barrier_mutations: --build '{args.build}' is not a configured build folder (scripts/build.sh makes "
              "build/)", file=sys.stderr)
        return 2
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="rnnsweep-mutants-"))
    work.mkdir(parents=True, exist_ok=True)
    src, build = (ROOT, Path(args.build).resolve()) if in_place else (work / "src", work / "build")
    log_path = work / "mutants.log"
    where = f"in place, building in {build}" if in_place else "on a copy"
    print(f"barrier mutations: {len(chosen)} of {len(sites)} barriers, {where}; logs in {work}", flush=True)
    if not in_place:
        for f in tracked_files(ROOT):
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
    # the file being mutated and its text, put back on any exit, signals included
    pending = {}

    def put_back(*_):
        for target, text in list(pending.items()):
            target.write_text(text)
            pending.pop(target)
        if _:
            sys.exit(130)

    signal.signal(signal.SIGINT, put_back)
    signal.signal(signal.SIGTERM, put_back)
    results = []
    with open(log_path, "w") as log:
        if not in_place:
            code, out, _ = run(["cmake", "-S", str(src), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                                "-DRNNSWEEP_CUDA=OFF", "-DRNNSWEEP_BENCH=OFF", "-DRNNSWEEP_NATIVE=OFF"],
                               work, None, log)
            if code != 0:
                print(f"barrier_mutations: configure failed (see {log_path})", file=sys.stderr)
                return 2
        build_cmd = ["cmake", "--build", str(build), "--target", "rnnsweep_kernel_tests", f"-j{args.jobs}"]
        test_cmd = [str(build / "tests" / "rnnsweep_kernel_tests"), f"--gtest_filter={args.filter}",
                    "--gtest_fail_fast", "--gtest_brief=1"]
        code, out, seconds = run(build_cmd, work, None, log)
        if code != 0:
            print(f"barrier_mutations: the unmutated build failed (see {log_path})", file=sys.stderr)
            return 2
        if args.trust_unmutated:
            print("  unmutated: not rerun (--trust-unmutated: they just passed on this build)", flush=True)
        else:
            code, out, seconds = run(test_cmd, work, args.timeout, log)
            if code != 0:
                print(f"barrier_mutations: the unmutated tests fail or time out ({first_failure(out)}); see {log_path}",
                      file=sys.stderr)
                return 2
            print(f"  unmutated: tests pass in {seconds:.0f} s", flush=True)
        for i in chosen:
            path, line, column = sites[i]
            target = src / path
            original = target.read_text()
            lines = original.splitlines(keepends=True)
            text = lines[line - 1]
            match = BARRIER.match(text, column)
            lines[line - 1] = text[:column] + ";  /* mutant: barrier removed */" + text[match.end():]
            pending[target] = original
            target.write_text("".join(lines))
            try:
                code, out, _ = run(build_cmd, work, None, log)
                if code != 0:
                    verdict, why, seconds = "caught", "does not build", 0.0
                else:
                    code, out, seconds = run(test_cmd, work, args.timeout, log)
                    if code is None:
                        verdict, why = "caught", f"timed out after {args.timeout} s"
                    elif code != 0:
                        verdict, why = "caught", first_failure(out)
                    else:
                        verdict, why = "MISSED", "every test passed"
            finally:
                put_back()
            results.append((i, verdict))
            print(f"  {i + 1:3d} {path}:{line}: {verdict} ({why}; {seconds:.0f} s)  {text.strip()}", flush=True)
    missed = [i for i, v in results if v == "MISSED"]
    print(f"barrier mutations: {len(results) - len(missed)} of {len(results)} caught"
          + (f"; missed: {', '.join(f'{sites[i][0]}:{sites[i][1]}' for i in missed)}" if missed else ""))
    if in_place:  # the rebuilt objects were of mutants: make the build match the checkout again
        run(build_cmd, work, None, open(os.devnull, "w"))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
