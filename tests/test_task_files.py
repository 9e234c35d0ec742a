#!/usr/bin/env python3
"""Task files as numpy and neurogym write them (tests/test_task_files.cpp checks the rest).

    test_task_files.py RNNSWEEP_BINARY numpy      numpy's savez, savez_compressed and a Fortran-order
                                                  array give the trials `rnnsweep trials` prints
    test_task_files.py RNNSWEEP_BINARY neurogym   scripts/neurogym_export.py on three neurogym tasks
                                                  beyond the study's, then a small grid on each
                                                  (both backends' CPU reference): the loss falls

neurogym runs in the Python of $RNNSWEEP_NEUROGYM_PYTHON, else build/neurogym-venv (CI makes it from
scripts/requirements-neurogym.txt), else this Python; without neurogym the test skips (exit 77).
"""
import csv
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SKIP = 77

# The environments tried (the README lists them): beyond the study's 2AF and DMS, one each of
# go/no-go, context-dependent integration and interval timing. kwargs keep the trials short.
ENVS = [
    ("GoNogo-v0", "{}"),
    ("ContextDecisionMaking-v0", "{}"),
    ("ReadySetGo-v0", '{"dt": 80}'),
]


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"FAILED: {' '.join(cmd)}\n{r.stdout}\n{r.stderr}")
    return r.stdout


def test_numpy(binary, tmp):
    try:
        import numpy as np
    except ImportError:
        print("numpy not installed: skipped")
        return SKIP
    rng = np.random.default_rng(1)
    N, T, I, O = 5, 6, 2, 2
    x = rng.standard_normal((N, T, I)).astype(np.float32)
    target = rng.standard_normal((N, T, O)).astype(np.float32)
    mask = np.ones((N, T, O), dtype=bool)
    files = {
        "stored": lambda p: np.savez(p, x=x, target=target, mask=mask, dt_over_tau=0.5),
        "compressed": lambda p: np.savez_compressed(p, x=x, target=target, mask=mask, dt_over_tau=0.5),
        # a transposed copy is written in Fortran order; the reader must undo it
        "fortran": lambda p: np.savez(p, x=np.asfortranarray(x), target=np.asfortranarray(target),
                                      mask=mask, dt_over_tau=0.5),
    }
    for name, save in files.items():
        path = os.path.join(tmp, name + ".npz")
        save(path)
        out = os.path.join(tmp, name + ".csv")
        run([binary, "trials", "--task", "file:t", "--set", "tasks=file:t", "--set", f'file.t.path="{path}"',
             "--data-seed", "3", "--iteration", "2", "--batch", "8", "--out", out])
        rows = list(csv.DictReader(open(out)))
        # which row each trial is: the documented Philox draw, checked here through the values
        for b in range(8):
            mine = [r for r in rows if int(r["trial"]) == b]
            got = np.array([[float(r[f"x{i}"]) for i in range(I)] for r in sorted(mine, key=lambda r: int(r["step"]))])
            matches = [n for n in range(N) if np.array_equal(got.astype(np.float32), x[n])]
            if len(matches) != 1:
                sys.exit(f"FAILED: {name}: trial {b} is no single row of x")
            n = matches[0]
            want_t = np.array([[float(r[f"target{o}"]) for o in range(O)] for r in sorted(mine, key=lambda r: int(r["step"]))])
            if not np.array_equal(want_t.astype(np.float32), target[n]):
                sys.exit(f"FAILED: {name}: trial {b}'s targets are not row {n}'s")
        print(f"ok: numpy {name}")
    return 0


def neurogym_python():
    for candidate in (os.environ.get("RNNSWEEP_NEUROGYM_PYTHON"),
                      os.path.join(ROOT, "build", "neurogym-venv", "bin", "python"), sys.executable):
        if candidate and os.path.exists(candidate):
            r = subprocess.run([candidate, "-c", "import neurogym"], capture_output=True)
            if r.returncode == 0:
                return candidate
    return None


def test_neurogym(binary, tmp):
    python = neurogym_python()
    if not python:
        print("neurogym not installed (pip install -r scripts/requirements-neurogym.txt): skipped")
        return SKIP
    tasks, tables = [], []
    for i, (env, kwargs) in enumerate(ENVS):
        path = os.path.join(tmp, f"env{i}.npz")
        print(run([python, os.path.join(ROOT, "scripts", "neurogym_export.py"), env, "--trials", "256",
                   "--eval-trials", "64", "--kwargs", kwargs, "--seed", "0", "--out", path]).strip())
        tasks.append(f"file:env{i}")
        tables.append(f'[file.env{i}]\npath = "{path}"\n')
    config = os.path.join(tmp, "neurogym.toml")
    with open(config, "w") as f:
        f.write("tasks = [%s]\n" % ", ".join(f'"{t}"' for t in tasks))
        f.write('rules = ["bptt", "eprop"]\ngains = [0.5, 1.0]\nlrs = [1e-2]\nseeds = [0]\n'
                "hidden = 32\nbatch = 16\niters = 200\nlog_every = 10\neval_every = 100\neval_trials = 64\n"
                "le_steps = 50\nle_warmup = 10\nle_batch = 2\n" + "".join(tables))
    out = os.path.join(tmp, "run")
    run([binary, "run", config, "--backend", "cpu", "--quiet", "--out", out])
    networks = {r["network"]: r for r in csv.DictReader(open(os.path.join(out, "networks.csv")))}
    first, last = {}, {}
    for r in csv.DictReader(open(os.path.join(out, "curves.csv"))):
        first.setdefault(r["network"], float(r["loss"]))
        last[r["network"]] = float(r["loss"])
    failed = False
    for n, r in networks.items():
        # the mean of the last 10% against the first iteration: the loss of every network falls
        falls = float(r["tail_loss"]) < 0.8 * first[n]
        print(f"{r['task']:>12} {r['rule']:>5} gain {r['gain']:>3}: loss {first[n]:.3f} -> {float(r['tail_loss']):.3f}"
              f" (held-out {float(r['eval_final_loss']):.3f}), accuracy {float(r['tail_accuracy']):.2f}"
              + ("" if falls else "  <- did not fall"))
        failed |= not falls
    if failed:
        sys.exit("FAILED: a network's loss did not fall")
    return 0


def main():
    binary, which = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        sys.exit({"numpy": test_numpy, "neurogym": test_neurogym}[which](binary, tmp))


if __name__ == "__main__":
    main()
