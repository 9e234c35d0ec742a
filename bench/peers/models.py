"""What every peer shares: the benchmark's shape, rnnsweep's reference files, Romo trials and
the command line that run_peers.py drives each peer through.

The peers (torch_loop.py, torch_bmm.py, jax_scan.py) are the model of docs/model.md written
the way people write it in each framework, so that rnnsweep's speed can be compared with
them on the same machine. Their framework code lives in their own files; this module only
needs numpy, so run_peers.py can import it where no framework is installed.

Data layout, for every peer: trials are time-major, x (T, B, I), target and mask (T, B, O);
a stack of K networks puts K first. Weights are rnnsweep's: W_h (H, H), W_x (H, I), w (O, H).

Each peer module defines

    NAME                                 short name used in the table
    backend_info(device) -> str          framework, version, device, threads; raises
                                         ImportError (or RuntimeError) when unusable
    reference_losses(weights, batches, rule, device) -> [loss0, loss1]
        loss of batch 0 on the given weights, one Adam step (lr 1e-3) on its gradient, then
        the loss of batch 1: what rnnsweep logs as iterations 0 and 1
    train_rate(networks, iters, warmup, rule, device) -> network-iterations per second

and ends with `peer_main(sys.modules[__name__])`, which gives it two subcommands (`check`
and `time`) that print one JSON object on stdout. run_peers.py runs each peer in its own
process, so the frameworks' thread pools never compete with each other.
"""
import argparse
import json
import os
import sys

import numpy as np

# The benchmark shape (bench_train, bench_cuda and the issue): romo with a 100-step trial.
H, B, T, I, O = 64, 32, 100, 1, 2
LEAK = 0.5  # a = 1 - dt/tau with romo.dt_over_tau = 0.5
LR = 1e-3
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
RULES = ("bptt", "eprop")


# ---------------------------------------------------------------------------------------
# rnnsweep's files: --save-weights matrices and `rnnsweep trials` CSV


def load_weights(weights_dir, network=0, stage="init"):
    """One network's matrices as written by `rnnsweep run --save-weights` (float32)."""
    weights = {}
    for name in ("W_h", "W_x", "w"):
        path = os.path.join(weights_dir, f"net{network}_{stage}_{name}.npy")
        weights[name] = np.load(path).astype(np.float32)
    return weights


def read_trials(path):
    """A batch written by `rnnsweep trials`, as time-major float32 (x, target, mask).

    The CSV has one row per (trial, step) and columns x0.., target0.., mask0.."""
    with open(path) as f:
        header = f.readline().strip().split(",")
    table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    col = {name: i for i, name in enumerate(header)}
    trial = table[:, col["trial"]].astype(int)
    step = table[:, col["step"]].astype(int)
    n_trials, n_steps = trial.max() + 1, step.max() + 1

    def block(prefix):
        cols = sorted((c for c in header if c.startswith(prefix) and c[len(prefix):].isdigit()),
                      key=lambda c: int(c[len(prefix):]))
        out = np.zeros((n_steps, n_trials, len(cols)), dtype=np.float32)
        out[step, trial] = table[:, [col[c] for c in cols]]
        return out

    return block("x"), block("target"), block("mask")


def numpy_loss(weights, x, target, mask, leak=LEAK):
    """The romo loss of one network in float64 numpy: a check of the harness itself (file
    reading, layout, the model equations) that needs no framework."""
    W_h, W_x, w = (weights[k].astype(np.float64) for k in ("W_h", "W_x", "w"))
    h = np.zeros((x.shape[1], W_h.shape[0]))
    sq = 0.0
    for t in range(x.shape[0]):
        h = leak * h + (1 - leak) * (np.maximum(h, 0) @ W_h.T + x[t] @ W_x.T)
        y = np.maximum(h, 0) @ w.T
        sq += np.sum(mask[t] * (y - target[t]) ** 2)
    return 0.5 * sq / np.sum(mask, dtype=np.float64)


# ---------------------------------------------------------------------------------------
# Trials for timing


def romo_trials(rng, networks, batch=B, steps=T):
    """Romo trials with docs/model.md's defaults, each network its own batch, stacked as
    x (K, T, B, 1), target and mask (K, T, B, 2), float32.

    Only the timing uses these (the distribution matters little for speed); the equality
    check uses rnnsweep's own trials. Trials that would run past `steps` are cut there."""
    shape = (networks, batch)
    f1 = rng.uniform(0.5, 1.5, shape)
    f2 = rng.uniform(0.5, 1.5, shape)
    close = np.abs(f1 - f2) < 0.2
    while close.any():  # redraw the pair until |f1 - f2| >= 0.2
        f1[close] = rng.uniform(0.5, 1.5, close.sum())
        f2[close] = rng.uniform(0.5, 1.5, close.sum())
        close = np.abs(f1 - f2) < 0.2
    delay = (rng.uniform(2, 8, shape) / 0.5).astype(int)
    t = np.arange(steps)[None, :, None]  # broadcast against (K, 1, B)
    d = delay[:, None, :]
    f2_on, resp_on = 8 + d, 20 + d
    x = np.where((t >= 6) & (t < 8), f1[:, None, :], 0.0)
    x = np.where((t >= f2_on) & (t < f2_on + 2), f2[:, None, :], x)
    response = (t >= resp_on) & (t < resp_on + 20)
    first_wins = (f1 > f2)[:, None, :]
    target = np.stack([np.where(response & first_wins, 0.5, 0.0),
                       np.where(response & ~first_wins, 0.5, 0.0)], axis=-1)
    m = ((t < 10 + d) | response).astype(np.float64)
    mask = np.stack([m, m], axis=-1)
    return (x[..., None].astype(np.float32), target.astype(np.float32), mask.astype(np.float32))


def trial_pool(networks, pool=4, seed=0):
    """`pool` batches for K networks, generated before timing so that no peer times its data
    generation (rnnsweep, which draws a fresh batch every iteration, does). Each is a tuple
    (x, target, mask) as romo_trials returns."""
    rng = np.random.default_rng(seed)
    return [romo_trials(rng, networks) for _ in range(pool)]


def init_weights(networks, seed=0):
    """K networks' initial weights with rnnsweep's distributions (gain 1), stacked:
    W_h (K, H, H), W_x (K, H, I), w (K, O, H), float32."""
    rng = np.random.default_rng(seed)
    return {
        "W_h": (rng.standard_normal((networks, H, H)) / np.sqrt(H)).astype(np.float32),
        "W_x": rng.uniform(-1 / np.sqrt(I), 1 / np.sqrt(I), (networks, H, I)).astype(np.float32),
        "w": rng.uniform(-1 / np.sqrt(H), 1 / np.sqrt(H), (networks, O, H)).astype(np.float32),
    }


# ---------------------------------------------------------------------------------------
# The peers' command line


def limit_cpus(threads):
    """Pin this process to `threads` CPUs (before a framework starts its thread pool), so
    every peer and rnnsweep run on the same number of cores. 0 or more than there are:
    leave it."""
    cpus = sorted(os.sched_getaffinity(0))
    if 0 < threads < len(cpus):
        os.sched_setaffinity(0, cpus[:threads])


def peer_main(peer):
    """`python PEER.py check --reference DIR [--device D]` prints
        {"peer", "info", "losses": {rule: [loss0, loss1]}}
    for rnnsweep's network 0 (bptt) and 1 (eprop) in DIR (weights/, trials0.csv, trials1.csv);
    `python PEER.py time --networks K --iters N [--warmup W] [--device D] [--threads P]` prints
        {"peer", "info", "rates": {rule: network-iterations/s}}.
    When the framework is missing or unusable it prints {"peer", "unavailable": reason} and
    exits 0: a missing peer is skipped, never an error."""
    ap = argparse.ArgumentParser(description=(peer.__doc__ or "").strip().splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="losses of iterations 0 and 1 on rnnsweep's weights and trials")
    check.add_argument("--reference", required=True, help="folder written by run_peers.py")
    time_ = sub.add_parser("time", help="network-iterations per second")
    time_.add_argument("--networks", type=int, default=8)
    time_.add_argument("--iters", type=int, default=20)
    time_.add_argument("--warmup", type=int, default=2)
    time_.add_argument("--rules", default=",".join(RULES))
    for p in (check, time_):
        p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
        p.add_argument("--threads", type=int, default=0, help="CPU cores to use (0: all)")
    args = ap.parse_args()

    if args.device == "cpu":
        limit_cpus(args.threads)
    result = {"peer": peer.NAME}
    try:
        result["info"] = peer.backend_info(args.device)
    except (ImportError, RuntimeError) as e:
        result["unavailable"] = f"{type(e).__name__}: {e}"
        print(json.dumps(result))
        return 0

    if args.command == "check":
        batches = [read_trials(os.path.join(args.reference, f"trials{i}.csv")) for i in (0, 1)]
        weights_dir = os.path.join(args.reference, "weights")
        result["losses"] = {
            rule: [float(v) for v in peer.reference_losses(load_weights(weights_dir, net), batches,
                                                           rule, args.device)]
            for net, rule in enumerate(RULES)
        }
    else:
        result["rates"] = {
            rule: peer.train_rate(args.networks, args.iters, args.warmup, rule, args.device)
            for rule in args.rules.split(",")
        }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit("models.py is a library; run run_peers.py or one of the peers")
