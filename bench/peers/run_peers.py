#!/usr/bin/env python3
"""rnnsweep against the same model in PyTorch and JAX, on one machine, in one call.

1. Reference: rnnsweep trains one bptt and one eprop network (seed 0, gain 1, lr 1e-3,
   H = 64, batch 32, romo with T = 100) for two iterations with --save-weights, and writes the
   trials of iterations 0 and 1 with `rnnsweep trials`. Its curves.csv holds the loss of
   iteration 0 (initial weights) and of iteration 1 (after one Adam step).
2. Check: every peer computes those two losses, for both rules, from the same weights and
   trials. A peer that disagrees by more than --rtol is not timed (a fast wrong model proves
   nothing). A float64 numpy forward checks the harness itself first.
3. Timing: rnnsweep (bench_train on the CPU, bench_cuda with --device cuda) and each peer
   that passed train K networks for N iterations after a warm-up, with Adam, bptt and eprop;
   every one runs in its own process, one after another, on the same cores. The table gives
   network-iterations per second (K * N / seconds) and how many times faster rnnsweep is.
   With --repeats R the whole round runs R times and each cell is the median.

The peers and what they stand for:
    torch-loop  PyTorch, one network at a time (the study's way)      torch_loop.py
    torch-bmm   PyTorch, K networks stacked in bmm                     torch_bmm.py
    jax-scan    JAX, lax.scan + vmap over networks + jit               jax_scan.py
A peer whose framework is not installed is skipped with a message. Install them with
    python3 -m venv /tmp/peers-venv && /tmp/peers-venv/bin/pip install -r bench/peers/requirements.txt
and run this script with that interpreter:
    /tmp/peers-venv/bin/python bench/peers/run_peers.py [--networks 8] [--iters 20] [--markdown FILE]
On a GPU machine add --device cuda (needs PyTorch and JAX builds with CUDA, e.g.
`pip install -U "jax[cuda12]"`, and a CUDA build of rnnsweep with build/bench/bench_cuda).
"""
import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile

try:
    import numpy as np
except ImportError:
    sys.exit("run_peers: needs numpy (pip install -r bench/peers/requirements.txt, see bench/peers/README.md)")

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import models  # noqa: E402

PEERS = {"torch-loop": "torch_loop.py", "torch-bmm": "torch_bmm.py", "jax-scan": "jax_scan.py"}

REFERENCE_CONFIG = """\
# written by bench/peers/run_peers.py: the networks whose losses the peers must reproduce
tasks = ["romo"]
rules = ["bptt", "eprop"]
gains = [1.0]
lrs = [1e-3]
seeds = [0]
floss = [false]
hidden = 64
batch = 32
iters = 2
log_every = 1
le_steps = 10
le_warmup = 0
le_batch = 1

[romo]
T = 100
"""


def say(*parts):
    print(*parts, file=sys.stderr, flush=True)


def run(cmd, timeout, **kw):
    """Run a command; return (returncode, stdout, stderr), never raise on failure."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        return -1, "", f"timed out after {timeout} s"
    except OSError as e:
        return -1, "", str(e)


def machine_name(device):
    if device == "cuda":
        rc, out, _ = run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], 30)
        if rc == 0 and out.strip():
            return out.strip().splitlines()[0]
    rc, out, _ = run(["lscpu"], 30)
    m = re.search(r"^Model name:\s*(.+)$", out, re.M) if rc == 0 else None
    name = m.group(1).strip() if m else platform.processor() or "unknown CPU"
    return f"{name}, {os.cpu_count()} cores"


# ---------------------------------------------------------------------------------------
# 1. rnnsweep's reference losses


def make_reference(rnnsweep, folder):
    """Weights, trials and losses of rnnsweep's networks 0 (bptt) and 1 (eprop) in folder.
    Returns {rule: [loss0, loss1]}."""
    config = os.path.join(folder, "reference.toml")
    with open(config, "w") as f:
        f.write(REFERENCE_CONFIG)
    out = os.path.join(folder, "run")
    steps = [[rnnsweep, "run", config, "--save-weights", "--out", out, "--quiet", "--backend", "cpu"]]
    for i in (0, 1):
        steps.append([rnnsweep, "trials", "--task", "romo", "--data-seed", "0", "--iteration", str(i),
                      "--batch", "32", "--set", "romo.T=100", "--out", os.path.join(folder, f"trials{i}.csv")])
    for cmd in steps:
        rc, _, err = run(cmd, 300)
        if rc != 0:
            sys.exit(f"run_peers: `{' '.join(cmd)}` failed: {err.strip()}")
    os.symlink(os.path.join(out, "weights"), os.path.join(folder, "weights"))
    losses = {rule: [None, None] for rule in models.RULES}
    with open(os.path.join(out, "curves.csv")) as f:
        header = f.readline().strip().split(",")
        for line in f:
            row = dict(zip(header, line.strip().split(",")))
            net, it = int(row["network"]), int(row["iteration"])
            if net < len(models.RULES) and it in (0, 1):
                losses[models.RULES[net]][it] = float(row["loss"])
    return losses


def close(a, b, rtol):
    return a is not None and b is not None and np.isfinite(a) and abs(a - b) <= rtol * abs(b)


def check_harness(folder, reference, rtol):
    """The float64 numpy forward on rnnsweep's files must give rnnsweep's iteration-0 loss."""
    weights = models.load_weights(os.path.join(folder, "weights"), 0)
    x, target, mask = models.read_trials(os.path.join(folder, "trials0.csv"))
    loss = models.numpy_loss(weights, x, target, mask)
    if not close(loss, reference["bptt"][0], rtol):
        sys.exit(f"run_peers: the harness's own numpy loss {loss!r} differs from rnnsweep's "
                 f"{reference['bptt'][0]!r}: the reference files are read wrongly; stopping")
    return loss


def peer_environment():
    """The peers' environment: OpenMP threads wait passively unless OMP_WAIT_POLICY is set.

    PyTorch's CPU kernels run on OpenMP, whose threads spin at every barrier by default. On a
    machine shared with other work a spinning thread holds a core its partner needs, and
    2-thread PyTorch fell to a tenth of its 1-thread speed on the loaded 2-core development
    machine (2 against 25 network-iterations/s); with passive waits 2 threads ran as fast as
    1. Set OMP_WAIT_POLICY=ACTIVE to time PyTorch's default. rnnsweep's threads never spin."""
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def run_peer(python, peer, args, timeout):
    """One peer subcommand in its own process -> (dict, None) or (None, why)."""
    rc, out, err = run([python, os.path.join(HERE, PEERS[peer])] + args, timeout, cwd=HERE,
                       env=peer_environment())
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if rc != 0 or not lines:
        tail = " | ".join(err.strip().splitlines()[-3:])
        return None, f"exit {rc}: {tail or 'no output'}"
    result = json.loads(lines[-1])
    if "unavailable" in result:
        return None, f"not available ({result['unavailable']})"
    return result, None


# ---------------------------------------------------------------------------------------
# 3. rnnsweep's own timing


def time_rnnsweep(build, device, networks, iters, threads, timeout):
    """{row name: {rule: network-iterations/s}} from bench_train (CPU) or bench_cuda."""
    if device == "cpu":
        cmd = [os.path.join(build, "bench", "bench_train"), "--networks", str(networks),
               "--iters", str(iters), "--threads", str(threads)]
        rc, out, err = run(cmd, timeout)
        if rc != 0:
            sys.exit(f"run_peers: `{' '.join(cmd)}` failed: {err.strip() or out.strip()}")
        rows = {f"rnnsweep CPU, {threads} threads": {}, "rnnsweep CPU, 1 thread": {}}
        # "bptt   2   1061.0   531.0   2.00   0.0316->0.0290": rule, threads, all, one, ...
        for m in re.finditer(r"^(bptt|eprop)\s+\d+\s+([\d.]+)\s+([\d.]+)", out, re.M):
            rows[f"rnnsweep CPU, {threads} threads"][m.group(1)] = float(m.group(2))
            rows["rnnsweep CPU, 1 thread"][m.group(1)] = float(m.group(3))
    else:
        cmd = [os.path.join(build, "bench", "bench_cuda"), "--networks", str(networks), "--iters", str(iters)]
        rc, out, err = run(cmd, timeout)
        if rc != 0:
            sys.exit(f"run_peers: `{' '.join(cmd)}` failed: {err.strip() or out.strip()}")
        rows = {"rnnsweep CUDA": {}, "rnnsweep CPU, 1 core (bench_cuda)": {}}
        # "| bptt, network-iterations/s | rate | peak fraction | CPU 1 core | ratio |"
        for m in re.finditer(r"^\|\s*(bptt|eprop), network-iterations/s\s*\|\s*([\d.]+)\s*\|[^|]*\|\s*([\d.]+)",
                             out, re.M):
            rows["rnnsweep CUDA"][m.group(1)] = float(m.group(2))
            rows["rnnsweep CPU, 1 core (bench_cuda)"][m.group(1)] = float(m.group(3))
    if not all(set(r) == set(models.RULES) for r in rows.values()):
        sys.exit(f"run_peers: could not read the rates from `{' '.join(cmd)}`:\n{out}")
    return rows


# ---------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--networks", type=int, default=None,
                    help="K networks per timed run (default 8 on the CPU, 4096 with --device cuda)")
    ap.add_argument("--loop-networks", type=int, default=None,
                    help="networks torch-loop trains one after another (default min(K, 8)); "
                         "its rate does not depend on it")
    ap.add_argument("--iters", type=int, default=20, help="timed iterations (default 20)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed iterations first (default 2)")
    ap.add_argument("--repeats", type=int, default=1, help="rounds of timing; cells are medians")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                    help="CPU cores for every engine (default: all this process may use)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--peers", default=",".join(PEERS), help="comma list of " + ", ".join(PEERS))
    ap.add_argument("--build", default=os.path.join(REPO, "build"), help="rnnsweep's build folder")
    ap.add_argument("--python", default=sys.executable, help="interpreter that runs the peers")
    ap.add_argument("--rtol", type=float, default=1e-5, help="relative loss tolerance of the check")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per subprocess")
    ap.add_argument("--markdown", metavar="FILE", help="also write the results as markdown")
    args = ap.parse_args()
    K = args.networks or (4096 if args.device == "cuda" else 8)
    loop_K = args.loop_networks or min(K, 8)
    peers = [p for p in args.peers.split(",") if p]
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        ap.error(f"unknown peer {unknown[0]}; choose from {', '.join(PEERS)}")
    rnnsweep = os.path.join(args.build, "rnnsweep")
    if not os.access(rnnsweep, os.X_OK):
        sys.exit(f"run_peers: no {rnnsweep}; build it first (scripts/build.sh)")

    machine = machine_name(args.device)
    load_before = os.getloadavg()
    say(f"run_peers: {machine}; load average {load_before[0]:.2f}; K = {K}, N = {args.iters}, "
        f"{args.threads} threads, device {args.device}")

    # 1-2. reference and check
    notes = {}
    with tempfile.TemporaryDirectory(prefix="rnnsweep-peers-") as folder:
        reference = make_reference(rnnsweep, folder)
        harness = check_harness(folder, reference, max(args.rtol, 1e-5))
        say(f"reference (rnnsweep CPU): bptt losses {reference['bptt']}, eprop {reference['eprop']}; "
            f"numpy float64 iteration 0: {harness!r}")
        checked = {}
        for peer in peers:
            cmd = ["check", "--reference", folder, "--device", args.device, "--threads", str(args.threads)]
            result, why = run_peer(args.python, peer, cmd, args.timeout)
            if result is None:
                notes[peer] = why
                say(f"{peer}: skipped, {why}")
                continue
            bad = [f"{rule} iteration {it}: {result['losses'][rule][it]!r} vs rnnsweep {reference[rule][it]!r}"
                   for rule in models.RULES for it in (0, 1)
                   if not close(result["losses"][rule][it], reference[rule][it], args.rtol)]
            worst = max(abs(result["losses"][r][i] / reference[r][i] - 1) for r in models.RULES for i in (0, 1))
            if bad:
                notes[peer] = f"NOT TIMED: loss differs from rnnsweep's beyond rtol {args.rtol:g}: " + "; ".join(bad)
                say(f"{peer}: {notes[peer]}")
                continue
            checked[peer] = result["info"]
            say(f"{peer}: {result['info']}; losses match rnnsweep (largest relative difference {worst:.1e})")

    # 3. timing rounds
    samples = {}  # row -> rule -> [rates]
    infos = {}
    for round_ in range(args.repeats):
        rows = time_rnnsweep(args.build, args.device, K, args.iters, args.threads, args.timeout)
        for peer, info in checked.items():
            n = loop_K if peer == "torch-loop" else K
            cmd = ["time", "--networks", str(n), "--iters", str(args.iters), "--warmup", str(args.warmup),
                   "--device", args.device, "--threads", str(args.threads)]
            result, why = run_peer(args.python, peer, cmd, args.timeout)
            if result is None:
                notes[peer] = f"timing failed: {why}"
                say(f"{peer}: timing failed, {why}")
                continue
            rows[peer] = result["rates"]
            infos[peer] = f"{result['info']}, K = {n}"
        for row, rates in rows.items():
            for rule, rate in rates.items():
                samples.setdefault(row, {}).setdefault(rule, []).append(rate)
        say(f"round {round_ + 1}/{args.repeats}: " +
            "; ".join(f"{row} " + "/".join(f"{rates[r]:.0f}" for r in models.RULES) for row, rates in rows.items()))
    load_after = os.getloadavg()

    # 4. table
    rates = {row: {rule: statistics.median(v) for rule, v in by_rule.items()} for row, by_rule in samples.items()}
    ours = next(iter(rates))  # the first row: rnnsweep on all threads, or CUDA
    lines = [
        f"Machine: {machine}. Load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
        f"(1-minute, {os.cpu_count()} cores). Model: H = 64, batch 32, romo T = 100, Adam lr 1e-3; "
        f"K = {K} networks ({loop_K} for torch-loop), {args.iters} timed iterations after {args.warmup} "
        f"warm-up, {args.threads} threads, device {args.device}"
        + (f", medians of {args.repeats} rounds" if args.repeats > 1 else "")
        + f"; peers run with OMP_WAIT_POLICY={peer_environment()['OMP_WAIT_POLICY']}. "
        f"Every peer timed here reproduced rnnsweep's losses of iterations 0 and 1 for bptt and eprop "
        f"within {args.rtol:g} relative.",
        "",
        f"| engine | bptt net-iter/s | eprop net-iter/s | bptt: {ours} / engine | eprop: {ours} / engine |",
        "|---|---|---|---|---|",
    ]
    for row, r in rates.items():
        ratio = [f"{rates[ours][rule] / r[rule]:.1f}x" for rule in models.RULES]
        lines.append(f"| {row} | {r['bptt']:.0f} | {r['eprop']:.0f} | {ratio[0]} | {ratio[1]} |")
    lines.append("")
    for peer in peers:
        if peer in infos:
            lines.append(f"- {peer}: {infos[peer]}")
        else:
            lines.append(f"- {peer}: {notes.get(peer, 'not run')}")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
