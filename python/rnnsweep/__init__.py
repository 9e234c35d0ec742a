"""rnnsweep from Python: run, load and analyse sweeps of small recurrent networks.

    import rnnsweep
    res = rnnsweep.run("configs/quick.toml", set={"iters": 200, "gains": [0.5, 1.0]})
    res.networks      # pandas DataFrames (lists of dicts without pandas), grid coordinates on every table
    res.curves        # network, iteration, loss, accuracy, ... + task, init, hidden, batch, rule, gain, lr, seed, floss
    res.lyapunov
    res.summary
    res = rnnsweep.load("results/quick-...")      # the same object from any results folder
    W = res.weights(network=3, stage="final")     # dict of numpy arrays (run with save_weights=True)
    ev = res.evaluate(trials=256)                 # saved networks on fresh trials: arrays and tables
    x = rnnsweep.trials("romo", data_seed=0, iteration=0, batch=32)

`run` runs the rnnsweep command in this process (python/_rnnsweep.cpp), with the GIL released,
and writes the same results folder as `rnnsweep run` on the command line: resume, merge and the
byte-identical tables hold. Ctrl-C stops it after checkpointing and raises KeyboardInterrupt;
`rnnsweep.run(resume=folder)` continues. A bad config raises ValueError with the command line's
one-line message, and nothing is written. The tables and their columns are the README's
("Outputs"); this module only reads them.
"""
import csv
import json
import math
import os
import threading

from . import _rnnsweep

__version__ = _rnnsweep.__version__
__all__ = ["run", "load", "trials", "Results", "command"]

# the grid coordinates of a network (networks.csv), joined onto every per-network table
GRID = ["task", "init", "hidden", "batch", "rule", "gain", "lr", "seed", "data_seed", "floss"]
TABLES = {  # attribute: file
    "networks": "networks.csv", "curves": "curves.csv", "floss_curves": "floss_curves.csv",
    "lyapunov": "lyapunov.csv", "lyapunov_curves": "lyapunov_curves.csv", "summary": "summary.csv",
    "timings": "timings.csv",
}


def _toml(value):
    """A Python value as the TOML of a --set value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"set: {value!r} is not a finite number")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise ValueError(f"set: {value!r} ({type(value).__name__}) is not a TOML value; allowed: "
                     "bool, int, float, str or a list of them")


def _set_args(overrides):
    args = []
    for key, value in (overrides or {}).items():
        args += ["--set", f"{key}={_toml(value)}"]
    return args


def command(*args, progress=False):
    """Runs `rnnsweep ARGS...` in this process and returns its exit code (ValueError on bad input)."""
    return _execute([str(a) for a in args], progress)


def _execute(args, progress, desc="rnnsweep"):
    _rnnsweep.reset()
    box = {}
    # an Event, not Thread.join: a join interrupted by KeyboardInterrupt can leave is_alive() False
    # while the thread runs on (CPython before 3.13)
    finished = threading.Event()

    def work():
        try:
            box["code"] = _rnnsweep.command(args)
        except BaseException as e:  # re-raised on the caller's thread
            box["error"] = e
        finally:
            finished.set()

    bar = _bar(desc) if progress else None
    thread = threading.Thread(target=work, name="rnnsweep", daemon=True)
    thread.start()
    interrupted = False
    try:
        try:
            while not finished.wait(0.2):
                if bar is not None:
                    _advance(bar)
        except KeyboardInterrupt:
            # Ctrl-C: the run checkpoints its networks in flight and returns; wait for that
            interrupted = True
            _rnnsweep.stop()
            while not finished.is_set():
                try:
                    finished.wait(0.2)
                except KeyboardInterrupt:
                    pass  # the checkpoint is being written
        if bar is not None and box.get("code") == 0:
            bar.n = bar.total  # the run has unpublished its counters: it did every unit
            bar.refresh()
    finally:
        if bar is not None:
            bar.close()
    if "error" in box:
        raise box["error"]
    if interrupted or box.get("code") == 3:
        folder = _rnnsweep.last_run_dir()
        raise KeyboardInterrupt(f"rnnsweep: stopped after checkpointing; continue with "
                                f"rnnsweep.run(resume={folder!r})")
    return box.get("code", 1)


def _bar(desc):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=1, desc=desc, unit=" work units", dynamic_ncols=True)


def _advance(bar):
    p = _rnnsweep.progress()
    if p is None:
        return
    done, total = p
    if total and bar.total != total:
        bar.total = total
    bar.n = done
    bar.refresh()


def run(config=None, set=None, *, resume=None, out=None, backend=None, threads=None, shard=None,
        save_weights=False, force=False, lyapunov_only=False, progress=True):
    """Trains every network of a config's grid (as `rnnsweep run`) and returns its Results.

    config: a TOML file (configs/); set: {key: value} overrides (the README's config keys);
    resume: an interrupted run's folder to continue (then no config, set, out, shard, save_weights,
    force); out: the results folder (default results/<config>-<time>); backend: "auto", "cpu" or
    "cuda"; lyapunov_only: only the initial spectra (`rnnsweep lyapunov`); progress: a tqdm bar.
    """
    if resume is not None:
        given = [k for k, v in dict(config=config, set=set, out=out, shard=shard).items() if v is not None]
        given += [k for k, v in dict(save_weights=save_weights, force=force, lyapunov_only=lyapunov_only).items() if v]
        if given:
            raise ValueError("run(resume=...) takes its config, shard and options from the folder; drop "
                             + ", ".join(given))
        args = ["run", "--resume", os.fspath(resume)]
    else:
        if config is None:
            raise ValueError("run: name a config file (or resume=FOLDER to continue a run)")
        args = ["lyapunov" if lyapunov_only else "run", os.fspath(config)] + _set_args(set)
        if out is not None:
            args += ["--out", os.fspath(out)]
        if shard is not None:
            args += ["--shard", str(shard)]
        if save_weights:
            if lyapunov_only:
                raise ValueError("run: save_weights is for training runs, not lyapunov_only")
            args.append("--save-weights")
        if force:
            args.append("--force")
    if backend is not None:
        args += ["--backend", str(backend)]
    if threads is not None:
        args += ["--threads", str(int(threads))]
    args.append("--quiet")
    code = _execute(args, progress, desc="rnnsweep run")
    if code != 0:
        raise RuntimeError(f"rnnsweep {' '.join(args)}: exit code {code}")
    return load(_rnnsweep.last_run_dir())


def trials(task, data_seed=0, iteration=0, batch=32, config=None, set=None):
    """The training batch `iteration` of `data_seed` (what a network with that data seed trains on
    there): {"x": (batch, T, I), "label": (batch, T)} or {"x", "target", "mask"}, numpy arrays, and
    "leak" (a = 1 - dt/tau). Task parameters from `config` and `set` (file tasks need the config)."""
    args = []
    for a in _set_args(set)[1::2]:
        args.append(a)
    return _rnnsweep.trials(str(task), int(data_seed), int(iteration), int(batch),
                            os.fspath(config) if config is not None else "", args)


def load(folder):
    """The Results of a results folder: finished, interrupted or still running (the networks
    finished so far), merged, or a `rnnsweep lyapunov` folder."""
    return Results(folder)


def _pandas():
    try:
        import pandas
        return pandas
    except ImportError:
        return None


class Results:
    """A results folder's tables (DataFrames with pandas, else lists of dicts), its manifest, its
    saved weights and its evaluation."""

    def __init__(self, folder):
        self.folder = os.path.abspath(os.fspath(folder))
        path = os.path.join(self.folder, "manifest.json")
        if not os.path.exists(path):
            raise ValueError(f"load: '{self.folder}' holds no manifest.json: not an rnnsweep results folder")
        with open(path) as f:
            self.manifest = json.load(f)
        self.status = self.manifest.get("status", "unknown")
        self.config = self.manifest.get("config", {})
        self.tables_folder = self.folder
        self._tables = {}
        if self.status in ("running", "interrupted", "failed"):
            # the networks finished so far, as `rnnsweep tables` writes them (refreshed on each load);
            # none finished yet: empty tables
            self.tables_folder = os.path.join(self.folder, "partial")
            if self.manifest.get("networks_finished", 0) > 0 or os.path.exists(os.path.join(self.folder, "results.jsonl")):
                _execute(["tables", self.folder], False)

    def __repr__(self):
        return (f"rnnsweep.Results('{self.folder}', status={self.status!r}, "
                f"networks={self.manifest.get('networks', '?')})")

    def _read(self, name):
        path = os.path.join(self.tables_folder, TABLES[name])
        pd = _pandas()
        if not os.path.exists(path):
            return pd.DataFrame() if pd else []
        if pd:
            table = pd.read_csv(path)
        else:
            with open(path, newline="") as f:
                table = list(csv.DictReader(f))
        if name in ("networks", "summary"):
            return table
        return self._with_grid(table)

    def _with_grid(self, table):
        grid = self.networks
        pd = _pandas()
        if pd:
            if len(table) == 0 or "network" not in table:
                return table
            columns = ["network"] + [c for c in GRID if c in grid.columns and c not in table.columns]
            return table.merge(grid[columns], on="network", how="left")
        by_id = {row["network"]: row for row in grid}
        return [dict(row, **{c: by_id.get(row["network"], {}).get(c) for c in GRID}) for row in table]

    def _table(name, doc):
        """A table read on first use and kept on the instance."""
        def get(self):
            if name not in self._tables:
                self._tables[name] = self._read(name)
            return self._tables[name]
        return property(get, doc=doc)

    networks = _table("networks", "networks.csv: one row per network, its grid coordinates and results")
    curves = _table("curves", "curves.csv with the grid coordinates")
    floss_curves = _table("floss_curves", "floss_curves.csv with the grid coordinates")
    lyapunov = _table("lyapunov", "lyapunov.csv with the grid coordinates")
    lyapunov_curves = _table("lyapunov_curves", "lyapunov_curves.csv with the grid coordinates (le_every > 0)")
    summary = _table("summary", "summary.csv: the best lr of each task, rule, gain and flossing")
    timings = _table("timings", "timings.csv with the grid coordinates")
    del _table

    def to_xarray(self, table="networks"):
        """A table as an xarray Dataset over the grid (needs pandas and xarray): networks indexed
        by its grid coordinates, curves also by iteration."""
        frame = getattr(self, table)
        index = [c for c in GRID if c != "data_seed" and c in frame.columns]
        if table in ("curves", "lyapunov_curves", "floss_curves"):
            index.append("iteration")
        if table == "lyapunov":
            index += ["stage", "index"]
        return frame.drop(columns=[c for c in ("network", "data_seed") if c in frame.columns]).set_index(index).to_xarray()

    def weights(self, network, stage="final"):
        """The saved weights of `network` at `stage` ("init" or "final"): {"W_h", "W_x", "w"} and
        "b", "b_out" with bias, "B" for RFLO networks, as numpy arrays (run with save_weights=True)."""
        import numpy as np
        if stage not in ("init", "final"):
            raise ValueError(f"weights: stage {stage!r}; allowed: init or final")
        folder = os.path.join(self.folder, "weights")
        stem = os.path.join(folder, f"net{int(network)}_{stage}_")
        if not os.path.exists(stem + "W_h.npy"):
            raise ValueError(f"weights: no saved weights of network {network} in '{folder}' "
                             "(run with save_weights=True, or --save-weights)")
        out = {name: np.load(stem + name + ".npy") for name in ("W_h", "W_x", "w", "b", "b_out")
               if os.path.exists(stem + name + ".npy")}
        feedback = os.path.join(folder, f"net{int(network)}_B.npy")
        if os.path.exists(feedback):
            out["B"] = np.load(feedback)
        return out

    def evaluate(self, networks=None, trials=256, data_seed=0, stage="final", states=True, out=None,
                 force=False, threads=None):
        """`rnnsweep evaluate` on this folder's saved networks and its results, read back:
        {"trials", "evaluation", "psychometric"} tables, "inputs" {task: {"x", "label" | "target",
        "mask"}} (trial, step, channel), and "h" and "y" {(network, stage): array (trial, step, unit)}.
        networks: ids (a list, or text such as "0,3,10-19"); out: default FOLDER/evaluate (force=True
        replaces an earlier evaluation there)."""
        import numpy as np
        args = ["evaluate", self.folder, "--trials", str(int(trials)), "--data-seed", str(int(data_seed)),
                "--stage", str(stage)]
        if networks is not None:
            ids = networks if isinstance(networks, str) else ",".join(str(int(n)) for n in networks)
            args += ["--networks", ids]
        if not states:
            args.append("--no-states")
        folder = os.fspath(out) if out is not None else os.path.join(self.folder, "evaluate")
        args += ["--out", folder]
        if force:
            args.append("--force")
        if threads is not None:
            args += ["--threads", str(int(threads))]
        _execute(args, False)
        with open(os.path.join(folder, "manifest.json")) as f:
            files = json.load(f)["files"]
        pd = _pandas()
        result = {"folder": folder, "inputs": {}, "h": {}, "y": {}}
        for name in ("trials", "evaluation", "psychometric"):
            path = os.path.join(folder, name + ".csv")
            result[name] = pd.read_csv(path) if pd else list(csv.DictReader(open(path, newline="")))
        tasks = {t.replace(":", "_"): t for t in self.config.get("tasks", [])}
        for name in files:
            if not name.endswith(".npy"):
                continue
            array = np.load(os.path.join(folder, name))
            stem = name[:-4]
            if stem.startswith("net"):
                network, st, kind = stem[3:].split("_", 2)
                result[kind][(int(network), st)] = array
            else:
                prefix, kind = stem.rsplit("_", 1)
                result["inputs"].setdefault(tasks.get(prefix, prefix), {})[kind] = array
        return result
