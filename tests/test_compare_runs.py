#!/usr/bin/env python3
"""scripts/compare_runs.py (the device check's CUDA-against-CPU comparison) on real folders.

    python3 tests/test_compare_runs.py RNNSWEEP_BINARY

Two runs of one small config on the CPU backend (1 and 2 threads: byte-identical tables) must
PASS; copies with one planted difference each must FAIL naming the table and column: a grid
coordinate, the loss at iteration 0 (strict, rel 1e-5), an initial exponent (strict, abs 1e-8).
A difference in a trained number far from the start is reported as drift and PASSes. Bad
arguments exit 2. Only the standard library is needed.
"""
import csv
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
COMPARE = os.path.join(HERE, "..", "scripts", "compare_runs.py")

CONFIG = """\
tasks = ["romo", "dms"]
rules = ["bptt", "eprop"]
gains = [0.5, 1.5]
lrs = [1e-3]
seeds = [0]
floss = [false, true]
hidden = 8
batch = 4
iters = 30
log_every = 5
le_steps = 20
le_warmup = 5
le_batch = 1
floss_iters = 3
floss_k = 4
floss_steps = 10
floss_warmup = 5
"""

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print(f"FAIL: {what}")


def compare(a, b):
    p = subprocess.run([sys.executable, COMPARE, a, b], capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def edit(folder, table, match, column, change):
    """Applies change(text) to `column` of the first row of `table` where match(row)."""
    path = os.path.join(folder, table)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    fields = list(rows[0].keys())
    for r in rows:
        if match(r):
            r[column] = change(r[column])
            break
    else:
        raise AssertionError(f"no row of {table} matched")
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def main():
    binary = sys.argv[1]
    with tempfile.TemporaryDirectory(prefix="rnnsweep-compare-") as tmp:
        config = os.path.join(tmp, "c.toml")
        with open(config, "w") as f:
            f.write(CONFIG)
        a, b = os.path.join(tmp, "a"), os.path.join(tmp, "b")
        for out, threads in ((a, "1"), (b, "2")):
            p = subprocess.run([binary, "run", config, "--backend", "cpu", "--threads", threads, "--quiet", "--out", out],
                               capture_output=True, text=True)
            if p.returncode != 0:
                print(p.stderr)
                return 1
        code, text = compare(a, b)
        check(code == 0 and "compare: PASS" in text, f"identical runs pass:\n{text}")
        check("curves.csv" in text and "lyapunov.csv" in text and "floss_curves.csv" in text, "every table is read")

        planted = [
            ("a grid coordinate", "networks.csv", lambda r: r["network"] == "1", "task", lambda v: "2af",
             "networks.csv task"),
            ("the loss at iteration 0", "curves.csv", lambda r: r["iteration"] == "0", "loss",
             lambda v: repr(float(v) * (1 + 1e-4)), "curves.csv loss"),
            ("an initial exponent", "lyapunov.csv", lambda r: r["phase"] == "init", "lambda",
             lambda v: repr(float(v) + 1e-6), "lyapunov.csv lambda"),
        ]
        for what, table, match, column, change, says in planted:
            c = os.path.join(tmp, "changed")
            shutil.rmtree(c, ignore_errors=True)
            shutil.copytree(b, c)
            edit(c, table, match, column, change)
            code, text = compare(c, a)
            check(code == 1 and "compare: FAIL" in text and says in text, f"{what} is caught:\n{text}")

        # drift after training is reported, not judged
        c = os.path.join(tmp, "drift")
        shutil.copytree(b, c)
        edit(c, "networks.csv", lambda r: r["network"] == "0", "final_loss", lambda v: repr(float(v) * 1.01))
        code, text = compare(c, a)
        check(code == 0 and "final_loss: drift median" in text, f"trained drift passes and is reported:\n{text}")

        code, text = compare(a, os.path.join(tmp, "nothing"))
        check(code == 2 and "usage" in text, f"a missing folder is exit 2:\n{text}")
    if failures:
        print(f"{len(failures)} checks failed")
        return 1
    print("compare_runs: every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
