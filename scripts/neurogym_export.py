#!/usr/bin/env python3
"""Export a neurogym environment's supervised trials as an rnnsweep task file (.npz).

    python3 scripts/neurogym_export.py ENV_ID --trials N --out FILE.npz [--kwargs JSON] [--seed S]
        [--eval-trials M] [--tau MS] [--T STEPS] [--compress]

Each row is one trial, as neurogym's env.new_trial() makes it: the observations env.ob (T x I)
and the ground truth env.gt (T, the action a supervised network should take at each step;
neurogym's label 0 is fixate). Trials shorter than the longest are padded at the end with zero
inputs and label 0 (keep fixating), so that every row has the same T (or --T, which must be at
least the longest trial). The file holds

    x (N x T x I float32), labels (N x T int32), outputs (the size of the action space),
    dt and tau (ms: the leak is 1 - dt/tau; dt is the env's, tau --tau), x_eval and labels_eval
    (--eval-trials more trials, a held-out pool), and notes: env, kwargs, seed, neurogym_version,
    trial_steps (each trial's length before padding).

Train on it with tasks = ["file:NAME"] and a table [file.NAME] path = "FILE.npz"
(docs/model.md, section 3.4). The neurogym version is pinned in scripts/requirements-neurogym.txt.
"""
import argparse
import json
import sys

import numpy as np


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("env_id", help="a neurogym environment id, e.g. GoNogo-v0")
    p.add_argument("--trials", type=int, required=True, help="trials in the training pool")
    p.add_argument("--out", required=True, help="the .npz file to write")
    p.add_argument("--kwargs", default="{}", help="keyword arguments of the environment, as JSON")
    p.add_argument("--seed", type=int, default=0, help="seed of the environment's random trials (default 0)")
    p.add_argument("--eval-trials", type=int, default=0, help="trials in a held-out pool x_eval (default 0: none)")
    p.add_argument("--tau", type=float, default=100.0, help="the network's time constant in ms (default 100)")
    p.add_argument("--T", type=int, default=0, help="steps per row (default: the longest trial)")
    p.add_argument("--compress", action="store_true",
                   help="numpy.savez_compressed (rnnsweep reads it where it was built with zlib)")
    a = p.parse_args(argv)
    try:
        a.kwargs = json.loads(a.kwargs)
        if not isinstance(a.kwargs, dict):
            raise ValueError("not an object")
    except ValueError as e:
        p.error(f"--kwargs: not a JSON object ({e}); e.g. --kwargs '{{\"dt\": 20}}'")
    if a.trials < 1:
        p.error("--trials: allowed: an integer >= 1")
    if a.eval_trials < 0:
        p.error("--eval-trials: allowed: an integer >= 0")
    if not a.tau > 0:
        p.error("--tau: allowed: a number > 0 (ms)")
    if not a.out.endswith(".npz"):
        p.error("--out: allowed: a file name ending in .npz")
    return a


def draw_trials(env, n):
    """n trials of env: lists of (ob: T x I, gt: T)."""
    inner = env.unwrapped
    out = []
    for _ in range(n):
        inner.new_trial()
        ob = np.asarray(inner.ob, dtype=np.float64)
        gt = np.asarray(inner.gt)
        if ob.ndim != 2 or gt.ndim != 1 or len(gt) != len(ob):
            raise SystemExit(f"neurogym_export: {env.spec.id if env.spec else '?'}: trials have ob {ob.shape} and gt "
                             f"{gt.shape}; this exporter handles one discrete action per step (gt of shape (T,))")
        out.append((ob, gt.astype(np.int64)))
    return out


def pack(trials, T):
    N, I = len(trials), trials[0][0].shape[1]
    x = np.zeros((N, T, I), dtype=np.float32)
    labels = np.zeros((N, T), dtype=np.int32)
    for n, (ob, gt) in enumerate(trials):
        x[n, :len(ob)] = ob
        labels[n, :len(gt)] = gt
    return x, labels


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    import gymnasium  # noqa: F401  (neurogym's dependency; imported for a clear error if absent)
    import neurogym as ngym

    try:
        env = ngym.make(a.env_id, **a.kwargs)
    except Exception as e:  # an unknown id or a bad keyword: one line
        raise SystemExit(f"neurogym_export: cannot make {a.env_id!r} with {a.kwargs}: {e}")
    if not hasattr(env.action_space, "n"):
        raise SystemExit(f"neurogym_export: {a.env_id}: the action space {env.action_space} is not discrete")
    env.reset(seed=a.seed)
    train = draw_trials(env, a.trials)
    held = draw_trials(env, a.eval_trials)
    longest = max(len(ob) for ob, _ in train + held)
    T = a.T or longest
    if T < longest:
        raise SystemExit(f"neurogym_export: --T {a.T} is shorter than the longest trial ({longest} steps)")
    x, labels = pack(train, T)
    arrays = dict(x=x, labels=labels, outputs=np.int32(env.action_space.n),
                  dt=np.float64(env.unwrapped.dt), tau=np.float64(a.tau),
                  trial_steps=np.array([len(ob) for ob, _ in train], dtype=np.int32),
                  env=np.array(a.env_id), kwargs=np.array(json.dumps(a.kwargs, sort_keys=True)),
                  seed=np.int64(a.seed), neurogym_version=np.array(ngym.__version__))
    if held:
        arrays["x_eval"], arrays["labels_eval"] = pack(held, T)
    if not env.unwrapped.dt < a.tau + 1e-12:
        raise SystemExit(f"neurogym_export: the env's dt ({env.unwrapped.dt} ms) is larger than --tau {a.tau}")
    (np.savez_compressed if a.compress else np.savez)(a.out, **arrays)
    print(f"{a.out}: {a.env_id}, {x.shape[0]} trials of {T} steps, {x.shape[2]} inputs, "
          f"{env.action_space.n} outputs, dt {env.unwrapped.dt} ms" + (f", {len(held)} held out" if held else ""))


if __name__ == "__main__":
    main()
