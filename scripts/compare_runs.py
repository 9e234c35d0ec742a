#!/usr/bin/env python3
"""Compare two results folders of the same config column by column (e.g. the CUDA backend's
run against the CPU backend's): scripts/compare_runs.py GOT_DIR WANT_DIR.

Every table (networks, curves, lyapunov, floss_curves, summary) is read with the csv module and
its columns are checked by kind:
- identity columns (ids, grid coordinates, phases, indices) must be equal as text;
- numbers computed from the same initial weights must agree within float or double rounding,
  strictly: the loss at iteration 0 (rel 1e-5: double sums of float outputs), the losses over the
  first 10 iterations (rel 1e-3: a few float Adam steps, sign-sensitive near zero gradients), the
  initial spectra (abs 1e-8: double on both), the first flossing loss (rel 1e-6);
- numbers after training drift apart in float arithmetic and are reported (median and largest
  relative difference), not judged; status/divergence disagreements are reported too, since
  a network at a high learning rate may diverge on one side only after hundreds of steps.
Exit 0 when every identity and strict check holds, 1 otherwise, 2 for bad arguments. Only the
Python standard library is needed.
"""
import csv
import math
import os
import statistics
import sys

IDENTITY = {
    "networks.csv": ["network", "task", "init", "hidden", "batch", "rule", "gain", "lr", "seed", "data_seed", "floss"],
    "curves.csv": ["network", "iteration"],
    "lyapunov.csv": ["network", "phase", "index"],
    "floss_curves.csv": ["network", "training_iteration", "iteration"],
    "summary.csv": ["task", "init", "hidden", "batch", "rule", "gain", "floss", "n_seeds"],
}
KEYS = {
    "networks.csv": ["network"],
    "curves.csv": ["network", "iteration"],
    "lyapunov.csv": ["network", "phase", "index"],
    "floss_curves.csv": ["network", "training_iteration", "iteration"],
    "summary.csv": ["task", "init", "hidden", "batch", "rule", "gain", "floss"],
}


def number(text):
    if text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return None


def read(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return rows


def rel(a, b):
    if a == b or (math.isnan(a) and math.isnan(b)):
        return 0.0
    if math.isinf(a) or math.isinf(b) or math.isnan(a) or math.isnan(b):
        return math.inf
    return abs(a - b) / max(abs(b), 1e-12)


def strict_rule(table, column, row):
    """(tolerance, 'rel' or 'abs') when this cell must agree strictly, else None."""
    if table == "curves.csv" and column == "loss":
        it = int(row["iteration"])
        if it == 0:
            return 1e-5, "rel"
        if it <= 10:
            return 1e-3, "rel"
    if table == "lyapunov.csv" and column == "lambda" and row["phase"] == "init":
        return 1e-8, "abs"
    if table == "networks.csv" and column == "max_le_init":
        return 1e-8, "abs"
    if table == "networks.csv" and column == "floss_loss_first":
        return 1e-6, "rel"
    if table == "floss_curves.csv" and column == "floss_loss" and int(row["iteration"]) == 0:
        return 1e-6, "rel"
    return None


def compare(got_dir, want_dir, out):
    failures = []
    for table in IDENTITY:
        got_path, want_path = os.path.join(got_dir, table), os.path.join(want_dir, table)
        if not os.path.exists(want_path) and not os.path.exists(got_path):
            continue
        if not os.path.exists(got_path) or not os.path.exists(want_path):
            failures.append(f"{table}: present in one folder only")
            continue
        got, want = read(got_path), read(want_path)
        print(f"== {table}: {len(got)} rows against {len(want)}", file=out)
        if not want or not got or list(got[0].keys()) != list(want[0].keys()):
            failures.append(f"{table}: different columns or no rows")
            continue
        keys = [k for k in KEYS[table] if k in want[0]]  # folders written before the init axis have no init
        index = {tuple(r[k] for k in keys): r for r in got}
        missing = [tuple(r[k] for k in keys) for r in want if tuple(r[k] for k in keys) not in index]
        if missing or len(got) != len(want):
            failures.append(f"{table}: {len(missing)} rows of the reference missing, {len(got)} vs {len(want)} rows")
            continue
        for column in want[0].keys():
            if column in IDENTITY[table]:
                bad = [r for r in want if index[tuple(r[k] for k in keys)][column] != r[column]]
                print(f"  {column}: identity, {'equal' if not bad else f'{len(bad)} differ'}", file=out)
                if bad:
                    failures.append(f"{table} {column}: {len(bad)} rows differ (first: {bad[0]})")
                continue
            diffs, strict_bad, text_bad, worst = [], [], [], (0.0, None)
            for r in want:
                g = index[tuple(r[k] for k in keys)]
                a, b = number(g[column]), number(r[column])
                if a is None or b is None:
                    if g[column] != r[column]:
                        text_bad.append((r, g[column], r[column]))
                    continue
                d = rel(a, b)
                rule = strict_rule(table, column, r)
                if rule:
                    tol, kind = rule
                    err = abs(a - b) if kind == "abs" and math.isfinite(a) and math.isfinite(b) else d
                    if kind == "abs" and (math.isinf(a) or math.isinf(b)):
                        err = 0.0 if a == b else math.inf
                    if err > tol:
                        strict_bad.append((r, a, b, err, tol, kind))
                else:
                    diffs.append(d)
                    if d > worst[0]:
                        worst = (d, r)
            parts = []
            if diffs:
                finite = [d for d in diffs if math.isfinite(d)]
                parts.append(f"drift median {statistics.median(finite) if finite else math.inf:.2e}, largest "
                             f"{worst[0]:.2e}" + (f" ({', '.join(f'{k}={worst[1][k]}' for k in keys)})"
                                                   if worst[1] else ""))
            if text_bad:
                r, a, b = text_bad[0]
                parts.append(f"{len(text_bad)} cells differ as text (first: {a!r} vs {b!r} at " +
                             ", ".join(f"{k}={r[k]}" for k in keys) + ")")
            if strict_bad:
                r, a, b, err, tol, kind = max(strict_bad, key=lambda x: x[3])
                msg = (f"{table} {column}: {len(strict_bad)} strict cells beyond tolerance, worst {kind} "
                       f"{err:.2e} > {tol:g} ({a!r} vs {b!r} at " + ", ".join(f"{k}={r[k]}" for k in keys) + ")")
                failures.append(msg)
                parts.append(f"STRICT FAIL: {msg}")
            elif any(strict_rule(table, column, r) for r in want):
                parts.append("strict cells agree")
            if not parts:
                parts.append("equal")
            line = f"  {column}: " + "; ".join(parts)
            print(line, file=out)
    return failures


def main():
    if len(sys.argv) != 3 or not all(os.path.isdir(d) for d in sys.argv[1:]):
        print("usage: scripts/compare_runs.py GOT_DIR WANT_DIR (two results folders of one config)", file=sys.stderr)
        return 2
    failures = compare(sys.argv[1], sys.argv[2], sys.stdout)
    if failures:
        print("compare: FAIL: " + "; ".join(failures))
        return 1
    print("compare: PASS: identity columns equal, strict numbers within tolerance (drift reported above)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
