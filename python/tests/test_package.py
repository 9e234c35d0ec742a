"""The Python package against the command line it wraps: the same results folders byte for byte,
ValueError for bad input with nothing written, Ctrl-C checkpoints and resume continues to the
uninterrupted tables, loading finished, interrupted and merged folders, weights, evaluate, trials.

Run from the repository root, with the package installed: python -m pytest python/tests
"""
import csv
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import rnnsweep
from rnnsweep import _rnnsweep

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICK = os.path.join(ROOT, "configs", "quick.toml")
# small enough for seconds on two cores: 2 tasks x 2 rules x 2 gains x 2 seeds
SMALL = {"tasks": ["romo", "2af"], "rules": ["bptt", "eprop"], "gains": [0.5, 1.5], "lrs": [1e-3],
         "seeds": [0, 1], "floss": [False], "hidden": 16, "batch": 8, "iters": 30, "le_steps": 40,
         "le_warmup": 10, "le_batch": 2}
TABLES = ["networks.csv", "curves.csv", "lyapunov.csv", "summary.csv", "floss_curves.csv"]


def cli():
    """The rnnsweep command the wheel installed beside this Python."""
    here = os.path.join(os.path.dirname(sys.executable), "rnnsweep")
    return here if os.path.exists(here) else shutil.which("rnnsweep")


def sets(overrides):
    return [a for k, v in overrides.items() for a in ("--set", f"{k}={rnnsweep._toml(v)}")]


def same_tables(a, b, names=TABLES):
    for name in names:
        with open(os.path.join(a, name), "rb") as f, open(os.path.join(b, name), "rb") as g:
            assert f.read() == g.read(), f"{name} differs between {a} and {b}"


def test_run_writes_what_the_command_line_writes(tmp_path):
    res = rnnsweep.run(QUICK, set=SMALL, out=tmp_path / "py", threads=1, progress=False)
    assert res.status == "complete"
    subprocess.run([cli(), "run", QUICK, *sets(SMALL), "--out", str(tmp_path / "cli"), "--threads", "1", "--quiet"],
                   check=True, capture_output=True)
    same_tables(tmp_path / "py", tmp_path / "cli")
    # the grid coordinates on every table
    assert len(res.networks) == 16
    for column in ("task", "rule", "gain", "lr", "seed", "floss"):
        assert column in res.curves.columns and column in res.lyapunov.columns
    joined = res.curves.merge(res.networks[["network", "gain"]], on="network", suffixes=("", "_n"))
    assert (joined["gain"] == joined["gain_n"]).all()
    assert set(res.summary["task"]) == {"romo", "2af"}
    again = rnnsweep.load(tmp_path / "cli")
    assert again.curves.equals(rnnsweep.load(tmp_path / "py").curves)


def test_bad_config_raises_value_error_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match=r"config key 'gains'.*allowed"):
        rnnsweep.run(QUICK, set=dict(SMALL, gains=[-1.0]), out=tmp_path / "bad", progress=False)
    with pytest.raises(ValueError, match=r"unknown config key 'itres'.*did you mean 'iters'"):
        rnnsweep.run(QUICK, set={"itres": 3}, out=tmp_path / "bad", progress=False)
    with pytest.raises(ValueError, match="cannot read config"):
        rnnsweep.run(tmp_path / "missing.toml", out=tmp_path / "bad", progress=False)
    with pytest.raises(ValueError, match="resume"):
        rnnsweep.run(QUICK, resume=tmp_path, progress=False)
    assert not (tmp_path / "bad").exists()
    # the same message the command line prints
    r = subprocess.run([cli(), "run", QUICK, "--set", "gains=[-1.0]", "--out", str(tmp_path / "bad")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    try:
        rnnsweep.run(QUICK, set={"gains": [-1.0]}, out=tmp_path / "bad", progress=False)
    except ValueError as e:
        assert str(e) in r.stderr


def test_ctrl_c_checkpoints_and_resume_continues(tmp_path):
    long = dict(SMALL, iters=400, checkpoint_every=20)
    folder = tmp_path / "stopped"

    def interrupt():
        # once some work is done, the Ctrl-C of a terminal or a notebook's interrupt
        deadline = time.time() + 60
        while time.time() < deadline:
            p = _rnnsweep.progress()
            if p and p[0] > 200:
                break
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt, match="resume="):
        rnnsweep.run(QUICK, set=long, out=folder, threads=1, progress=True)
    stopped = rnnsweep.load(folder)
    assert stopped.status == "interrupted"
    assert len(stopped.networks) < 16  # what had finished, from the partial tables
    assert any(name.endswith(".ckpt") for name in os.listdir(folder / "checkpoints"))
    done = rnnsweep.run(resume=folder, threads=1, progress=False)
    assert done.status == "complete"
    rnnsweep.run(QUICK, set=long, out=tmp_path / "whole", threads=1, progress=False)
    same_tables(folder, tmp_path / "whole")


def test_weights_evaluate_and_trials(tmp_path):
    res = rnnsweep.run(QUICK, set=dict(SMALL, rules=["rflo"], bias=True), out=tmp_path / "w", save_weights=True,
                       progress=False)
    W = res.weights(network=3, stage="final")
    assert W["W_h"].shape == (16, 16) and W["W_x"].shape == (16, 1) and W["w"].shape == (2, 16)
    assert W["b"].shape == (16, 1) and W["B"].shape == (16, 2)
    assert not np.array_equal(W["W_h"], res.weights(3, "init")["W_h"])
    with pytest.raises(ValueError, match="stage"):
        res.weights(3, "middle")
    ev = res.evaluate(networks=[0, 5], trials=8)
    assert ev["h"][(0, "final")].shape == (8, 56, 16)
    assert ev["inputs"]["romo"]["x"].shape == (8, 56, 1)
    assert set(ev["evaluation"]["network"]) == {0, 5}
    with pytest.raises(ValueError, match="--force"):
        res.evaluate(networks=[0], trials=8)  # an earlier evaluation is not replaced silently
    # trials: the numbers `rnnsweep trials` writes
    t = rnnsweep.trials("2af", data_seed=3, iteration=5, batch=4)
    path = tmp_path / "t.csv"
    subprocess.run([cli(), "trials", "--task", "2af", "--data-seed", "3", "--iteration", "5", "--batch", "4",
                    "--out", str(path)], check=True)
    rows = list(csv.DictReader(open(path)))
    for r in rows:
        b, s = int(r["trial"]), int(r["step"])
        assert [np.float32(float(r[f"x{i}"])) for i in range(3)] == list(t["x"][b, s])
        assert int(r["label"]) == t["label"][b, s]
    with pytest.raises(ValueError, match="unknown task"):
        rnnsweep.trials("romeo")


def test_load_merged_and_lyapunov_folders(tmp_path):
    for i in range(2):
        rnnsweep.run(QUICK, set=SMALL, shard=f"{i}/2", out=tmp_path / f"s{i}", progress=False)
    assert rnnsweep.command("merge", tmp_path / "s0", tmp_path / "s1", "--out", tmp_path / "merged") == 0
    merged = rnnsweep.load(tmp_path / "merged")
    assert merged.status == "complete" and len(merged.networks) == 16
    lyap = rnnsweep.run(QUICK, set=SMALL, lyapunov_only=True, out=tmp_path / "lyap", progress=False)
    assert len(lyap.networks) == 16 and len(lyap.curves) == 0
    with pytest.raises(ValueError, match="manifest"):
        rnnsweep.load(tmp_path)


def test_to_xarray(tmp_path):
    pytest.importorskip("xarray")
    res = rnnsweep.run(QUICK, set=SMALL, out=tmp_path / "x", progress=False)
    ds = res.to_xarray()
    assert dict(ds.sizes)["gain"] == 2 and "final_loss" in ds
