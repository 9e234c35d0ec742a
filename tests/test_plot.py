#!/usr/bin/env python3
"""scripts/plot.py on small results folders made here with the real binary.

    python3 tests/test_plot.py RNNSWEEP_BINARY

Runs a tiny sweep (2 tasks, 3 rules, 3 gains, 2 lrs of which one diverges on romo, 2 seeds,
flossing off and on; its saved networks evaluated), then checks that plot.py draws every figure it promises as a valid PNG,
writes its summary table, refuses to overwrite without --force, writes elsewhere with --out; that
a `rnnsweep lyapunov` folder gives the max LE figure and one "not drawn" line per other figure;
that a sweep without flossing says why it has no flossing figure; and that a folder that is not
a results folder is one line and exit 2. Exit 77 (ctest: skipped) without pandas or matplotlib.
"""
import os
import struct
import json
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PLOT = os.path.join(HERE, "..", "scripts", "plot.py")
FIGURES = ("learning_curves.png", "max_le.png", "max_le_training.png", "alignment.png", "psychometric.png",
           "flossing.png", "heatmap_tail_loss.png", "heatmap_tail_accuracy.png")
MAX_BYTES = 150 * 1024  # committed figures must stay small

CONFIG = """\
tasks = ["romo", "2af"]
rules = ["bptt", "eprop", "rflo"]
gains = [0.5, 1.0, 2.0]
lrs = [1e-3, 10.0]
seeds = [0, 1]
floss = [false, true]
hidden = 8
batch = 4
iters = 30
log_every = 5
le_steps = 20
le_warmup = 5
le_batch = 1
floss_iters = 5
floss_k = 4
floss_steps = 10
floss_warmup = 5
le_every = 10
alignment = true
eval_every = 10
eval_trials = 8
"""

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print(f"FAIL: {what}")
    return cond


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def plot(*args):
    return run([sys.executable, PLOT, *args])


def check_png(path):
    name = os.path.basename(path)
    if not check(os.path.isfile(path), f"{path} was not written"):
        return
    with open(path, "rb") as f:
        data = f.read()
    check(data[:8] == b"\x89PNG\r\n\x1a\n", f"{name}: not a PNG (magic bytes)")
    check(data[12:16] == b"IHDR", f"{name}: no IHDR chunk")
    width, height = struct.unpack(">II", data[16:24])
    check(width >= 400 and height >= 300, f"{name}: {width} x {height} pixels is too small to be a figure")
    check(data[-8:-4] == b"IEND", f"{name}: truncated (no IEND chunk)")
    check(5000 < len(data) <= MAX_BYTES, f"{name}: {len(data)} bytes, expected 5 KB to {MAX_BYTES // 1024} KB")


def has_line(text, prefix):
    return any(line.startswith(prefix) for line in text.splitlines())


def main():
    if len(sys.argv) != 2:
        print("usage: test_plot.py RNNSWEEP_BINARY", file=sys.stderr)
        return 2
    binary = sys.argv[1]
    missing = []
    for module in ("pandas", "matplotlib"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        print(f"SKIPPED: {' and '.join(missing)} not importable by {sys.executable} (pip install pandas matplotlib)")
        return 77
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="rnnsweep-plot-") as tmp:
        config = os.path.join(tmp, "tiny.toml")
        with open(config, "w") as f:
            f.write(CONFIG)
        full, lya, nofloss = (os.path.join(tmp, d) for d in ("full", "lyapunov", "nofloss"))
        for cmd in ([binary, "run", config, "--out", full, "--quiet", "--save-weights"],
                    [binary, "evaluate", full, "--trials", "16", "--no-states"],
                    [binary, "lyapunov", config, "--out", lya, "--quiet"],
                    [binary, "run", config, "--set", "floss=[false]", "--out", nofloss, "--quiet"]):
            rc, out, err = run(cmd)
            if not check(rc == 0, f"{' '.join(cmd[1:3])} exited {rc}: {err.strip()}"):
                return 1

        # A full sweep: every figure, the summary table, one line per file.
        rc, out, err = plot(full, "--summary")
        check(rc == 0, f"plot.py on a full sweep exited {rc}: {err.strip()}")
        check("not drawn" not in out, f"plot.py left out a figure of a full sweep:\n{out}")
        check(not err.strip(), f"plot.py wrote to stderr on a full sweep:\n{err}")
        plots = os.path.join(full, "plots")
        for name in FIGURES:
            check(has_line(out, f"{name}: wrote "), f"no '{name}: wrote' line in:\n{out}")
            check_png(os.path.join(plots, name))
        table = os.path.join(plots, "gain_summary.csv")
        if check(os.path.isfile(table), "gain_summary.csv was not written"):
            with open(table) as f:
                lines = f.read().splitlines()
            check("tail_loss_mean" in lines[0] and "max_le_trained_mean" in lines[0],
                  f"gain_summary.csv header: {lines[0]}")
            check(len(lines) == 1 + 2 * 3 * 2 * 3, f"gain_summary.csv: {len(lines) - 1} rows, expected 36")
        check("tail loss" in out and "LE trained" in out, "--summary printed no table")

        # Existing plots are kept without --force, replaced with it.
        before = {n: open(os.path.join(plots, n), "rb").read() for n in FIGURES}
        mtimes = {n: os.path.getmtime(os.path.join(plots, n)) for n in FIGURES}
        rc, out, err = plot(full)
        check(rc == 2 and "--force" in err, f"plot.py over existing plots: exit {rc}, {err.strip()!r}")
        check(all(os.path.getmtime(os.path.join(plots, n)) == mtimes[n] for n in FIGURES),
              "plot.py without --force touched existing plots")
        # one figure gone: drawn again, the others kept
        os.remove(os.path.join(plots, "max_le.png"))
        rc, out, err = plot(full)
        check(rc == 0 and "max_le.png: wrote" in out and "learning_curves.png: exists, kept" in out,
              f"plot.py with one figure missing: exit {rc}, {out.strip()!r} {err.strip()!r}")
        check(open(os.path.join(plots, "max_le.png"), "rb").read() == before["max_le.png"],
              "the missing figure was drawn differently")
        check(all(os.path.getmtime(os.path.join(plots, n)) == mtimes[n] for n in FIGURES if n != "max_le.png"),
              "plot.py without --force touched existing plots")
        rc, out, err = plot(full, "--force")
        check(rc == 0, f"plot.py --force exited {rc}: {err.strip()}")
        check(all(open(os.path.join(plots, n), "rb").read() == before[n] for n in FIGURES),
              "plot.py draws different bytes from the same results")

        # --out: another destination.
        other = os.path.join(tmp, "docs-figures")
        rc, out, err = plot(full, "--out", other)
        check(rc == 0, f"plot.py --out exited {rc}: {err.strip()}")
        for name in FIGURES:
            check_png(os.path.join(other, name))

        # --dpi: smaller figures at a lower resolution; outside [30, 600] one line and exit 2.
        low = os.path.join(tmp, "low-dpi")
        rc, out, err = plot(full, "--out", low, "--dpi", "60")
        check(rc == 0, f"plot.py --dpi 60 exited {rc}: {err.strip()}")
        check(os.path.getsize(os.path.join(low, "learning_curves.png")) <
              os.path.getsize(os.path.join(other, "learning_curves.png")), "--dpi 60 must give a smaller figure")
        rc, out, err = plot(full, "--out", low, "--dpi", "5")
        check(rc == 2 and "--dpi" in err and len(err.strip().splitlines()) == 1, f"--dpi 5: exit {rc}, {err!r}")

        # A `rnnsweep lyapunov` folder: the max LE figure, and why there is nothing else.
        rc, out, err = plot(lya)
        check(rc == 0, f"plot.py on a lyapunov folder exited {rc}: {err.strip()}")
        check_png(os.path.join(lya, "plots", "max_le.png"))
        check(has_line(out, "max_le.png: wrote "), f"no 'max_le.png: wrote' line in:\n{out}")
        for name in FIGURES:
            if name != "max_le.png":
                check(has_line(out, f"{name}: not drawn: "), f"no '{name}: not drawn: ...' line in:\n{out}")
                check(not os.path.exists(os.path.join(lya, "plots", name)), f"{name} drawn from a lyapunov folder")

        # A sweep without flossing (nor an evaluation): all but the flossing figure, and why.
        rc, out, err = plot(nofloss)
        check(rc == 0, f"plot.py on a sweep without flossing exited {rc}: {err.strip()}")
        check(has_line(out, "flossing.png: not drawn: this sweep has no floss = true networks"),
              f"no flossing 'not drawn' line in:\n{out}")
        for name in FIGURES:
            if name not in ("flossing.png", "psychometric.png"):
                check_png(os.path.join(nofloss, "plots", name))
        check(not os.path.exists(os.path.join(nofloss, "plots", "psychometric.png")),
              "psychometric.png drawn without an evaluation")

        # An unfinished run (its journal's first 10 networks, and half of the 11th as a run being
        # appended to leaves it): plot.py says how to get tables; `rnnsweep tables` writes them,
        # without touching the journal, into partial/, which plot.py then draws, marked partial.
        unfinished = os.path.join(tmp, "unfinished")
        os.mkdir(unfinished)
        with open(os.path.join(full, "results.jsonl")) as f:
            journal = f.read().splitlines(keepends=True)
        torn = "".join(journal[:10]) + journal[10][: len(journal[10]) // 2]
        with open(os.path.join(unfinished, "results.jsonl"), "w") as f:
            f.write(torn)
        with open(os.path.join(full, "manifest.json")) as f:
            manifest = json.load(f)
        manifest["status"] = "running"
        with open(os.path.join(unfinished, "manifest.json"), "w") as f:
            json.dump(manifest, f)
        rc, out, err = plot(unfinished)
        check(rc == 2 and f"rnnsweep tables {unfinished}" in err, f"plot.py on an unfinished run: exit {rc}, {err!r}")
        rc, out, err = run([binary, "tables", unfinished])
        check(rc == 0, f"rnnsweep tables exited {rc}: {err.strip()}")
        with open(os.path.join(unfinished, "results.jsonl")) as f:
            check(f.read() == torn, "rnnsweep tables changed the journal of a run that may be appending to it")
        snapshot = os.path.join(unfinished, "partial")
        with open(os.path.join(snapshot, "networks.csv")) as f:
            rows = f.read().splitlines()
        check(len(rows) == 1 + 10, f"partial networks.csv: {len(rows) - 1} networks, expected the 10 finished")
        with open(os.path.join(full, "networks.csv")) as f:
            finished = set(f.read().splitlines())
        check(all(row in finished for row in rows), "partial networks.csv rows differ from the finished run's")
        ids = [int(row.split(",")[0]) for row in rows[1:]]
        check(ids == sorted(ids), f"partial networks.csv is not in network order: {ids}")
        with open(os.path.join(snapshot, "manifest.json")) as f:
            m = json.load(f)
        check(m["status"] == "partial" and m["partial"]["networks_in_tables"] == 10
              and m["partial"]["run_status"] == "running", f"partial manifest: {m.get('status')} {m.get('partial')}")
        rc, out, err = plot(unfinished)
        check(rc == 0 and "partial tables: 10 of 144 networks" in out,
              f"plot.py on a run with partial tables: exit {rc}, {out.strip()!r} {err.strip()!r}")
        check_png(os.path.join(snapshot, "plots", "learning_curves.png"))

        # Not a results folder: one line, exit 2, nothing written.
        empty = os.path.join(tmp, "empty")
        os.mkdir(empty)
        rc, out, err = plot(empty)
        lines = (out + err).strip().splitlines()
        check(rc == 2 and len(lines) == 1, f"plot.py on an empty folder: exit {rc}, output {lines}")
        check(not os.path.exists(os.path.join(empty, "plots")), "plot.py made plots/ in a folder that is not results")

    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    print(f"PASS: plot.py draws {len(FIGURES)} figures, handles lyapunov-only, no-flossing and non-results "
          f"folders ({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
