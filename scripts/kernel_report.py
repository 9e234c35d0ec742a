#!/usr/bin/env python3
"""The kernels as the compiler built them for sm_90 (H100 / H200), without a GPU.

    scripts/kernel_report.py [--build DIR] [--check] [--markdown FILE] [--model]

Reads the sm_90 code of kernels/ from a build folder (default build/, made by scripts/build.sh
wherever nvcc is found; every kernels/*.cu object carries an sm_90 cubin), with the tools NVIDIA
publishes on PyPI (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm; also found on PATH
or in $CUDA_TOOLS):
- cuobjdump -res-usage: registers, stack frame, static shared memory of every kernel;
- bench/kernel_instances (built with the CUDA library): each instance's block size and dynamic
  shared memory at its shape, hence resident blocks and warps per multiprocessor on an H100 /
  H200 (65536 registers, 228 KiB of shared memory, 2048 threads, 32 blocks);
- nvdisasm of the cubin: inside each loop that holds a block barrier (the time-step loops:
  the forward one and, for BPTT, the backward one), the static counts of FFMA and HMMA, shared
  loads by width (LDS, LDS.64, LDS.128), shared stores, generic loads and stores (LD/ST, which
  also serve global memory and cost an address-space check), global loads and stores, shuffles,
  barriers, local-memory accesses, FP64 operations, and all instructions.
--model adds the modeled ceiling of bench/MODEL.md beside the targets. --check asserts the
limits the training kernels are designed to (for the H = 64, batch 32 register instances: at
most 128 registers, no stack, at least 16 resident warps, no generic loads in the time loops,
at most 2 barriers per step) and exits 1 when one fails. Exit 2: tools or build missing.
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP_WITHOUT_TOOLS = False  # --skip-without-tools: exit 77 (ctest's "skipped") where they are missing

# H100 / H200 (sm_90): per multiprocessor
SM_REGISTERS = 65536
SM_SHARED = 228 * 1024
BLOCK_SHARED_RESERVED = 1024
SM_THREADS = 2048
SM_BLOCKS = 32
REGISTER_GRANULE = 256  # registers are allocated per warp in units of 256
SMS, CLOCK_HZ = 132, 1.98e9  # H200 SXM: multiprocessors, boost clock seen in a session (KINDS.md)
# SM cycles per warp-level m16n8k8 TF32 HMMA (1024 FMAs): the tensor cores' dense TF32 peak is
# one a cycle per SM (about 1024 FMAs a cycle), which wgmma reaches; mma.sync is assumed to get
# half of it (an assumption of the model, bench/MODEL.md, until ncu measures it)
HMMA_CYCLES = 2.0


def tool(name):
    env = os.environ.get("CUDA_TOOLS")
    candidates = [os.path.join(env, name)] if env else []
    found = shutil.which(name)
    if found:
        candidates.append(found)
    try:
        import nvidia  # the PyPI packages install under site-packages/nvidia/cu*/bin
        for base in nvidia.__path__:
            candidates += sorted(glob.glob(os.path.join(base, "cu*", "bin", name)), reverse=True)
    except ImportError:
        pass
    for c in candidates:
        if os.access(c, os.X_OK):
            return c
    print(f"kernel_report: {name} not found; pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm "
          "(or put it on PATH, or set CUDA_TOOLS)", file=sys.stderr)
    sys.exit(77 if SKIP_WITHOUT_TOOLS else 2)


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        sys.exit(f"kernel_report: `{' '.join(cmd)}` failed: {p.stderr.strip()[:500]}")
    return p.stdout


def short_name(mangled):
    """A readable name for a kernel symbol."""
    m = re.search(r"train_registers_kernelINS1_8GeometryILi(\d+)ELi(\d+)ELi(\d+)ELi(\d+)EEELb([01])EN\w*?(Regression|Choice)EEEv",
                  mangled)
    if m:
        H, Bt, Q, R, bptt, task = m.groups()
        return f"train_registers<H={H},Bt={Bt},Q={Q},R={R},{'bptt' if bptt == '1' else 'eprop/rflo'},{task}>"
    m = re.search(r"train_mma_kernelINS1_11MmaGeometryILi(\d+)ELi(\d+)EEELb([01])EN\w*?(Regression|Choice)EEEv", mangled)
    if m:
        H, Bt, bptt, task = m.groups()
        return f"train_mma<H={H},Bt={Bt},{'bptt' if bptt == '1' else 'eprop/rflo'},{task}>"
    m = re.search(r"spectrum_registers_kernelINS1_16SpectrumGeometryILi(\d+)EEEEEv", mangled)
    if m:
        return f"spectrum_registers<H={m.group(1)},k={m.group(1)}>"
    m = re.search(r"floss_registers_kernelINS1_13FlossGeometryILi(\d+)ELi(\d+)EEEEEv", mangled)
    if m:
        return f"floss_registers<H={m.group(1)},k={m.group(2)}>"
    m = re.search(r"([a-z_]+_kernel)(?:I|E)", mangled)
    return m.group(1) if m else mangled[:60]


def resource_usage(objects, cuobjdump):
    usage = {}
    for obj in objects:
        text = run([cuobjdump, "-res-usage", obj])
        arch = None
        for line in text.splitlines():
            if line.startswith("arch = "):
                arch = line.split("=")[1].strip()
            m = re.match(r"\s*Function (\S+):", line)
            if m:
                current = m.group(1)
                continue
            m = re.match(r"\s*REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", line)
            if m and arch == "sm_90":
                usage[current] = dict(zip(("regs", "stack", "static_shared", "local"), map(int, m.groups())))
    return usage


def parse_sass(text):
    """{function: [(address, label or None, instruction text)]} from nvdisasm output."""
    functions, current, pending = {}, None, []
    for line in text.splitlines():
        m = re.match(r"\s*\.text\.(\S+):$", line)
        if m:
            current = m.group(1)
            functions[current] = []
            continue
        m = re.match(r"\.(L_x_\d+):", line.strip())
        if m:
            pending.append(m.group(1))
            continue
        m = re.match(r"\s+/\*([0-9a-f]+)\*/\s+(.*?)\s*;", line)
        if m and current:
            functions[current].append((int(m.group(1), 16), pending, m.group(2)))
            pending = []
    return functions


COUNTS = {
    "FFMA": r"\bFFMA\b",
    "HMMA": r"\bHMMA\b",
    "LDS": r"\bLDS(\.U8|\.S8|\.U16|\.S16)?\s",
    "LDS.64": r"\bLDS\.64\b",
    "LDS.128": r"\bLDS\.128\b",
    "STS": r"\bSTS(\.\d+)?\b",
    "LD/ST generic": r"\b(LD|ST)\.E",
    "LDG": r"\bLDG\b",
    "STG": r"\bSTG\b",
    "SHFL": r"\bSHFL\b",
    "BAR": r"\bBAR\.SYNC\b",
    "LDL/STL": r"\b(LDL|STL)\b",
    "FP64": r"\bD(FMA|MUL|ADD)\b",
    "F2F.F64": r"\bF2F\.F64\.F32\b",
    "MUFU": r"\bMUFU\b",
}


def barrier_loops(code):
    """(start, end) address ranges of the loops that hold a block barrier, outermost first."""
    labels = {}
    for addr, names, _ in code:
        for n in names:
            labels[n] = addr
    loops = []
    for addr, _, text in code:
        # a loop's back edge is a predicated branch to an earlier label; unconditional backward
        # branches are the returns of out-of-line slow paths (division, ...) placed at the end
        m = re.match(r"@!?U?P\w+\s+BRA\b.*?`?\(?\.(L_x_\d+)", text)
        if m and m.group(1) in labels and labels[m.group(1)] <= addr:
            loops.append((labels[m.group(1)], addr))
    bars = [a for a, _, t in code if re.search(COUNTS["BAR"], t)]
    with_bar = [(lo, hi) for lo, hi in loops if any(lo <= b <= hi for b in bars)]
    # keep the maximal ones (a time loop, not an inner loop that happens to hold the barrier)
    outer = [l for l in with_bar if not any(o != l and o[0] <= l[0] and l[1] <= o[1] for o in with_bar)]
    return sorted(set(outer))


def loop_counts(code, lo, hi):
    seg = [t for a, _, t in code if lo <= a <= hi]
    out = {k: sum(1 for t in seg if re.search(p, t)) for k, p in COUNTS.items()}
    out["instructions"] = len(seg)
    return out


def occupancy(regs, threads, shared):
    warps = (threads + 31) // 32
    per_warp = (regs * 32 + REGISTER_GRANULE - 1) // REGISTER_GRANULE * REGISTER_GRANULE
    by_regs = SM_REGISTERS // (per_warp * warps) if regs else SM_BLOCKS
    by_shared = SM_SHARED // (shared + BLOCK_SHARED_RESERVED)
    by_threads = SM_THREADS // threads
    blocks = min(by_regs, by_shared, by_threads, SM_BLOCKS)
    return blocks, blocks * warps


def instances(build):
    exe = os.path.join(build, "bench", "kernel_instances")
    if not os.access(exe, os.X_OK):
        sys.exit(f"kernel_report: no {exe}: build with CUDA first (scripts/build.sh where nvcc is found)")
    return [json.loads(l) for l in run([exe]).splitlines() if l.startswith("{")]


def instance_key(name):
    """(kernel, H, Bt, family, task) from short_name, to meet the kernel_instances lines."""
    m = re.match(r"train_registers<H=(\d+),Bt=(\d+),Q=\d+,R=\d+,(\S+?),(\w+)>", name)
    if m:
        return ("train_registers", int(m.group(1)), int(m.group(2)), m.group(3), m.group(4))
    m = re.match(r"train_mma<H=(\d+),Bt=(\d+),(\S+?),(\w+)>", name)
    if m:
        return ("train_mma", int(m.group(1)), int(m.group(2)), m.group(3), m.group(4))
    m = re.match(r"spectrum_registers<H=(\d+),k=\d+>", name)
    if m:
        return ("spectrum_registers", int(m.group(1)), None, None, None)
    m = re.match(r"floss_registers<H=(\d+),k=(\d+)>", name)
    if m:  # (k in kernel_instances' Bt field)
        return ("floss_registers", int(m.group(1)), int(m.group(2)), None, None)
    return (name, None, None, None, None)


def all_loops(code):
    """(start, end) of every loop (a predicated backward branch), as barrier_loops finds them."""
    labels = {}
    for addr, names, _ in code:
        for n in names:
            labels[n] = addr
    loops = set()
    for addr, _, text in code:
        m = re.match(r"@!?U?P\w+\s+BRA\b.*?`?\(?\.(L_x_\d+)", text)
        if m and m.group(1) in labels and labels[m.group(1)] <= addr:
            loops.add((labels[m.group(1)], addr))
    return sorted(loops)


def spectrum_loops(code):
    """The register spectrum kernel's loops, found by nesting: the trial loop (the outermost loop
    with a barrier that holds another), the step loop inside it, and inside that the QR's column
    loop (with a barrier) and the Jacobian's loop over units (no barrier, the most FP64)."""
    bars = [a for a, _, t in code if re.search(COUNTS["BAR"], t)]
    loops = all_loops(code)
    has_bar = lambda l: any(l[0] <= b <= l[1] for b in bars)
    inside = lambda inner, outer: inner != outer and outer[0] <= inner[0] and inner[1] <= outer[1]
    with_bar = [l for l in loops if has_bar(l)]
    trials = [l for l in with_bar if any(inside(o, l) for o in with_bar)]
    if not trials:
        return None
    trial = max(trials, key=lambda l: l[1] - l[0])
    steps = [l for l in with_bar if inside(l, trial) and any(inside(o, l) for o in with_bar)]
    if not steps:
        return None
    step = max(steps, key=lambda l: l[1] - l[0])
    qr = max((l for l in with_bar if inside(l, step)), key=lambda l: l[1] - l[0])
    plain = [l for l in loops if inside(l, step) and not has_bar(l) and not inside(l, qr)]
    jac = max(plain, key=lambda l: loop_counts(code, *l)["FP64"]) if plain else None
    return {"step": step, "qr": qr, "jacobian": jac}


# The spectrum model's latency assumptions (bench/MODEL.md, "The spectrum kernel"): cycles per
# instruction on the QR column's dependent chain (DFMA ~8 cycles, shuffles and shared loads
# ~25-30, with some overlap), on the rest of a step, and a block barrier's cost.
CPI_COLUMN, CPI_REST, BARRIER_CYCLES = 4.0, 2.0, 40.0
UNITS_ON = 0.5  # fraction of units with h > 0, whose Jacobian columns are summed


def spectrum_model(row, code):
    """Modeled network-steps/s of a register spectrum instance (one step with a QR, per
    trajectory): throughput of the SM's FP64 lanes (2 warp-DFMA a cycle), issue (4 a cycle) and
    shared wavefronts (1 a cycle), against the latency of the QR's chain of k columns per block,
    which the resident blocks overlap."""
    found = spectrum_loops(code)
    m = re.match(r"spectrum_registers<H=(\d+)", row["kernel"])
    if not found or not m or not row.get("threads"):
        return None
    H = k = int(m.group(1))
    warps = row["threads"] // 32
    count = lambda l: loop_counts(code, *l) if l else {key: 0 for key in list(COUNTS) + ["instructions"]}
    step, qr, jac = count(found["step"]), count(found["qr"]), count(found["jacobian"])
    # warp w holds columns 8w .. 8w + 7 and works in the column iterations j < 8w + 7
    qr_per_warp = sum(min(k - 1, 8 * w + 7) for w in range(warps)) / warps
    per_warp = {key: step[key] - qr[key] - jac[key] + qr_per_warp * qr[key] + H * UNITS_ON * jac[key]
                for key in step}
    fp64 = (per_warp["FP64"] + per_warp["F2F.F64"]) * warps / 2
    issue = per_warp["instructions"] * warps / 4
    shared = (per_warp["LDS"] + per_warp["LDS.64"] + per_warp["LDS.128"] + per_warp["STS"] + per_warp["SHFL"]) * warps
    throughput = max(fp64, issue, shared)
    rest = step["instructions"] - qr["instructions"] - jac["instructions"] + H * UNITS_ON * jac["instructions"]
    latency = (k - 1) * (qr["instructions"] * CPI_COLUMN + BARRIER_CYCLES) + rest * CPI_REST
    blocks = row.get("blocks_per_sm") or 1
    cycles = max(throughput, latency / blocks)
    names = ["FP64", "issue", "shared", "QR latency"]
    values = [fp64, issue, shared, latency / blocks]
    return {"cycles_per_step": cycles, "bound": names[values.index(cycles)], "fp64_fraction": fp64 / cycles,
            "network_steps_per_s": SMS * CLOCK_HZ / cycles, "latency_per_block": latency, "throughput": throughput}


def floss_model(row, code):
    """Modeled chain steps/s of a register flossing instance: one step of the forward chain (its
    Jacobian and QR, from the SASS as spectrum_model counts them) and one step of the adjoint
    (from the kernel's tiling, bench/MODEL.md, "The flossing kernel"), per network."""
    found = spectrum_loops(code)
    m = re.match(r"floss_registers<H=(\d+),k=(\d+)>", row["kernel"])
    if not found or not m or not row.get("threads"):
        return None
    H, k = int(m.group(1)), int(m.group(2))
    threads, warps, blocks = row["threads"], row["threads"] // 32, row.get("blocks_per_sm") or 1
    count = lambda l: loop_counts(code, *l) if l else {key: 0 for key in list(COUNTS) + ["instructions"]}
    step, qr, jac = count(found["step"]), count(found["qr"]), count(found["jacobian"])
    qr_per_warp = sum(min(k - 1, 8 * w + 7) for w in range(warps)) / warps
    per_warp = {key: step[key] - qr[key] - jac[key] + qr_per_warp * qr[key] + H * UNITS_ON * jac[key] for key in step}
    fp64 = (per_warp["FP64"] + per_warp["F2F.F64"]) * warps / 2
    issue = per_warp["instructions"] * warps / 4
    shared = (per_warp["LDS"] + per_warp["LDS.64"] + per_warp["LDS.128"] + per_warp["STS"] + per_warp["SHFL"]) * warps
    rest = step["instructions"] - qr["instructions"] - jac["instructions"] + H * UNITS_ON * jac["instructions"]
    latency = (k - 1) * (qr["instructions"] * CPI_COLUMN + BARRIER_CYCLES) + rest * CPI_REST
    forward = max(fp64, issue, shared, latency / blocks)
    # The adjoint step, per thread, from kernels/floss_registers.cu's tiles: C = Q_bar^T Q (4 x k/16
    # a thread, H rows), M_bar = Q_bar + Q C ((H/32) x 8, k terms), dW_h += M_bar (D Q_prev)^T
    # (H^2/(8 threads) x 8, k terms, and a scaling per pair of terms and column), Q_bar = ... W_h^T
    # M_bar ((H/32) x 8, H terms); the back substitution on the H threads of the rows (k^2/2 + k).
    tr, tj, gr = H // 32, k // 16, H * H // (threads * 8)
    fp64_thread = H * 4 * tj + k * tr * 8 + (k // 2) * (gr * 16 + 16) + H * tr * 8
    b_fp64 = (warps * fp64_thread + (H // 32) * (k * k / 2 + k)) / 2
    # shared loads per warp instruction counted at one wavefront (conflict-free), as above
    b_shared = warps * (H * (2 + tj / 2) + k * (tr + 4) + (k // 2) * (gr + 8) + H * (tr + 4))
    # four barriers; the dependent chains of one accumulator in each product (8 cycles a DFMA) and
    # of the back substitution (k^2 / 4 with its two accumulators)
    b_latency = 4 * BARRIER_CYCLES + 8 * (H + k + k + H) + 8 * k * k / 4
    backward = max(b_fp64, b_shared, b_latency / blocks)
    cycles = forward + backward
    names = ["FP64", "issue", "shared", "QR latency"]
    f_bound = names[[fp64, issue, shared, latency / blocks].index(forward)]
    b_bound = ["FP64", "shared", "latency"][[b_fp64, b_shared, b_latency / blocks].index(backward)]
    rate = SMS * CLOCK_HZ / cycles
    return {"cycles_per_step": cycles, "forward_cycles": forward, "backward_cycles": backward,
            "bound": f"{f_bound} (chain), {b_bound} (adjoint)", "network_steps_per_s": rate,
            "floss_iterations_per_s": rate / FLOSS_STEPS}


# flossing iterations/s are quoted at the study's chain: floss_steps = 100 (its 20 warm-up steps
# only advance the state, about 1% of a chain step's cost, and are left out)
FLOSS_STEPS = 100


def model(row):
    """Modeled network-steps per second on an H200 (bench/MODEL.md): per network and step, the
    SM's busiest resource among FP32 lanes (4 warp-FFMAs a cycle), tensor cores (one m16n8k8
    TF32 HMMA a cycle), instruction issue (4 a cycle) and shared-memory wavefronts (1 a cycle;
    LDS.128 counted at 1, conflict-free)."""
    # only for kernels whose time-loop bodies are straight-line code (every inner loop unrolled
    # at compile time): elsewhere a static count is not a per-step count
    if not row["kernel"].startswith(("train_registers<", "train_mma<")) or not row["loops"] or not row.get("threads"):
        return None
    warps = row["threads"] // 32
    # a training step runs every time loop once per step (BPTT: forward and backward)
    c = {k: sum(L["counts"][k] for L in row["loops"]) for k in row["loops"][0]["counts"]}
    fma = c["FFMA"] * warps / 4
    mma = c["HMMA"] * warps * HMMA_CYCLES
    issue = c["instructions"] * warps / 4
    shared = (c["LDS"] + c["LDS.64"] + c["LDS.128"] + c["STS"] + c["SHFL"]) * warps
    cycles = max(fma, mma, issue, shared)
    bound = ["FMA", "tensor", "issue", "shared"][[fma, mma, issue, shared].index(cycles)]
    return {"cycles_per_step": cycles, "bound": bound, "fma_fraction": fma / cycles, "mma_fraction": mma / cycles,
            "network_steps_per_s": SMS * CLOCK_HZ / cycles}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--model", action="store_true")
    ap.add_argument("--markdown", metavar="FILE")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--skip-without-tools", action="store_true", help="exit 77 when cuobjdump or nvdisasm is missing")
    args = ap.parse_args()
    global SKIP_WITHOUT_TOOLS
    SKIP_WITHOUT_TOOLS = args.skip_without_tools
    objects = sorted(glob.glob(os.path.join(args.build, "CMakeFiles", "rnnsweep_cuda.dir", "kernels", "*.cu.o")))
    if not objects:
        print(f"kernel_report: no CUDA objects under {args.build}: build with nvcc first (scripts/build.sh)",
              file=sys.stderr)
        return 2
    cuobjdump, nvdisasm = tool("cuobjdump"), tool("nvdisasm")
    usage = resource_usage(objects, cuobjdump)
    shapes = {}
    for inst in instances(args.build):
        shapes[(inst["kernel"], inst.get("H"), inst.get("Bt"), inst.get("family"), inst.get("task"))] = inst
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for obj in objects:
            out = os.path.join(tmp, os.path.basename(obj))
            os.makedirs(out)
            run([cuobjdump, "-xelf", "all", os.path.abspath(obj)], cwd=out)
            for cubin in glob.glob(os.path.join(out, "*sm_90*.cubin")):
                for fn, code in parse_sass(run([nvdisasm, "-c", cubin])).items():
                    if fn not in usage:
                        continue
                    name = short_name(fn)
                    row = dict(kernel=name, file=os.path.basename(obj).replace(".o", ""), **usage[fn])
                    inst = shapes.get(instance_key(name))
                    if inst:
                        row["threads"], row["dynamic_shared"], row["shape"] = inst["threads"], inst["shared"], inst["shape"]
                        row["blocks_per_sm"], row["warps_per_sm"] = occupancy(
                            row["regs"], row["threads"], row["static_shared"] + row["dynamic_shared"])
                    row["loops"] = [dict(range=[lo, hi], counts=loop_counts(code, lo, hi)) for lo, hi in barrier_loops(code)]
                    found = spectrum_loops(code) if name.startswith(("spectrum_registers<", "floss_registers<")) else None
                    if found:  # its step loop (holding the QR's) and the QR's column loop, as counted
                        row["loops"] = [dict(range=list(found[key]), counts=loop_counts(code, *found[key]), label=label)
                                        for key, label in (("step", "step"), ("qr", "QR column"))]
                        if name.startswith("floss_registers<"):
                            # and the adjoint's step loop: the barrier loop after the chain's
                            adjoint = [l for l in barrier_loops(code) if l[0] > found["step"][1]]
                            if adjoint:
                                row["loops"].append(dict(range=list(adjoint[-1]), label="adjoint",
                                                         counts=loop_counts(code, *adjoint[-1])))
                    if args.model:
                        row["model"] = model(row)
                        if row["kernel"].startswith("spectrum_registers<"):
                            row["model"] = spectrum_model(row, code)
                        if row["kernel"].startswith("floss_registers<"):
                            row["model"] = floss_model(row, code)
                    rows.append(row)
    rows.sort(key=lambda r: (r["file"], r["kernel"]))

    head = ("| kernel | shape | regs | stack | shared (dyn) | threads | blocks / warps per SM | loop | instr | FFMA | HMMA | "
            "LDS | LDS.64 | LDS.128 | STS | LD/ST gen | LDG | STG | SHFL | BAR | LDL/STL | FP64 |")
    lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for r in rows:
        for k, loop in enumerate(r["loops"] or [None]):
            c = loop["counts"] if loop else {}
            occ = f"{r['blocks_per_sm']} / {r['warps_per_sm']}" if "blocks_per_sm" in r else ""
            lines.append(
                f"| {r['kernel'] if k == 0 else ''} | {r.get('shape', '') if k == 0 else ''} | "
                f"{r['regs'] if k == 0 else ''} | {r['stack'] if k == 0 else ''} | "
                f"{(str(r['static_shared']) + ' (' + str(r.get('dynamic_shared', '?')) + ')') if k == 0 else ''} | "
                f"{r.get('threads', '') if k == 0 else ''} | {occ if k == 0 else ''} | "
                f"{loop['label'] if loop and 'label' in loop else ('forward', 'backward')[k] if len(r['loops']) == 2 else (k + 1 if loop else 'none')} | "
                + " | ".join(str(c.get(key, "")) for key in
                             ("instructions", "FFMA", "HMMA", "LDS", "LDS.64", "LDS.128", "STS", "LD/ST generic", "LDG", "STG",
                              "SHFL", "BAR", "LDL/STL", "FP64")) + " |")
    text = "\n".join(lines)
    if args.model:
        text += "\n\nModeled ceiling on an H200 (bench/MODEL.md), all of a kernel's time loops once per step:\n\n"
        text += "| kernel | bound | FMA pipe | tensor cores | network-steps/s |\n|---|---|---|---|---|\n"
        for r in rows:
            if r.get("model") and not r["kernel"].startswith(("spectrum", "floss")):
                m = r["model"]
                text += (f"| {r['kernel']} | {m['bound']} | {100 * m['fma_fraction']:.0f}% | "
                         f"{100 * m['mma_fraction']:.0f}% | {m['network_steps_per_s']:.3g} |\n")
        spectra = [r for r in rows if r.get("model") and r["kernel"].startswith("spectrum")]
        if spectra:
            text += ("\nSpectra (one step with its QR, per trajectory; target 5,000,000 network-steps/s at k = 64; "
                     "the general kernel before these instances: about 1,700,000):\n\n"
                     "| kernel | bound | FP64 lanes | QR chain per block (cycles) | network-steps/s |\n|---|---|---|---|---|\n")
            for r in spectra:
                m = r["model"]
                text += (f"| {r['kernel']} | {m['bound']} | {100 * m['fp64_fraction']:.0f}% | "
                         f"{m['latency_per_block']:,.0f} | {m['network_steps_per_s']:.3g} |\n")
        flossing = [r for r in rows if r.get("model") and r["kernel"].startswith("floss_registers")]
        if flossing:
            text += ("\nFlossing (one chain step: the forward step with its QR and the adjoint step, per network; "
                     f"iterations at floss_steps = {FLOSS_STEPS}):\n\n"
                     "| kernel | bound | cycles per step (chain + adjoint) | chain steps/s | flossing iterations/s |\n"
                     "|---|---|---|---|---|\n")
            for r in flossing:
                m = r["model"]
                text += (f"| {r['kernel']} | {m['bound']} | {m['forward_cycles']:,.0f} + {m['backward_cycles']:,.0f} | "
                         f"{m['network_steps_per_s']:.3g} | {m['floss_iterations_per_s']:,.0f} |\n")
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)

    if args.check:
        failures = []
        registers = [r for r in rows if r["kernel"].startswith("train_registers<H=64,Bt=32,")]
        mma = [r for r in rows if r["kernel"].startswith("train_mma<H=64,Bt=32,")]
        if len(registers) != 4:
            failures.append(f"expected 4 H = 64, batch 32 register instances, found {len(registers)}")
        if len(mma) != 4:
            failures.append(f"expected 4 H = 64, batch 32 tensor-core instances, found {len(mma)}")
        for r in mma:
            for k, loop in enumerate(r["loops"]):
                if loop["counts"]["HMMA"] == 0:
                    failures.append(f"{r['kernel']}: no HMMA in time loop {k}")
        targets = registers + mma
        for r in targets:
            name = r["kernel"]
            if r["regs"] > 128:
                failures.append(f"{name}: {r['regs']} registers > 128")
            if r["stack"] != 0:
                failures.append(f"{name}: {r['stack']} bytes of stack")
            if r.get("warps_per_sm", 0) < 16:
                failures.append(f"{name}: {r.get('warps_per_sm')} resident warps per SM < 16")
            for k, loop in enumerate(r["loops"]):
                c = loop["counts"]
                if c["LD/ST generic"]:
                    failures.append(f"{name}: {c['LD/ST generic']} generic loads/stores in time loop {k}")
                if c["BAR"] > 2:
                    failures.append(f"{name}: {c['BAR']} barriers in time loop {k}")
                if c["LDS.128"] == 0 and name.startswith("train_registers<"):
                    failures.append(f"{name}: no 128-bit shared loads in time loop {k}")
                if c["LDL/STL"]:
                    failures.append(f"{name}: {c['LDL/STL']} local-memory accesses in time loop {k}")
            if not r["loops"]:
                failures.append(f"{name}: no time loop with a barrier found")
        # the register spectrum instance at the paper's shape (bench/MODEL.md, "The spectrum kernel")
        spectrum = [r for r in rows if r["kernel"] == "spectrum_registers<H=64,k=64>"]
        if len(spectrum) != 1:
            failures.append(f"expected the spectrum_registers<H=64,k=64> instance, found {len(spectrum)}")
        for r in spectrum:
            name = r["kernel"]
            labels = [loop.get("label") for loop in r["loops"]]
            if labels != ["step", "QR column"]:
                failures.append(f"{name}: its step and QR loops were not found (loops: {labels})")
            for loop in r["loops"]:
                c = loop["counts"]
                if c["LDL/STL"]:
                    failures.append(f"{name}: {c['LDL/STL']} local-memory accesses in its {loop.get('label')} loop")
                if c["LD/ST generic"]:
                    failures.append(f"{name}: {c['LD/ST generic']} generic loads/stores in its {loop.get('label')} loop")
            if r["loops"] and r["loops"][-1]["counts"]["BAR"] != 1:
                failures.append(f"{name}: {r['loops'][-1]['counts']['BAR']} barriers per QR column (want 1)")
            if r.get("warps_per_sm", 0) < 16:
                failures.append(f"{name}: {r.get('warps_per_sm')} resident warps per SM < 16")
            if r.get("dynamic_shared", 1 << 30) + r["static_shared"] + BLOCK_SHARED_RESERVED > SM_SHARED // 4:
                failures.append(f"{name}: shared memory for fewer than 4 blocks per SM")
            if args.model and r.get("model") and r["model"]["network_steps_per_s"] < 5e6:
                failures.append(f"{name}: modeled {r['model']['network_steps_per_s']:.3g} network-steps/s < 5e6")
        # the register flossing instance at the study's shape (bench/MODEL.md, "The flossing kernel")
        floss = [r for r in rows if r["kernel"] == "floss_registers<H=64,k=32>"]
        if len(floss) != 1:
            failures.append(f"expected the floss_registers<H=64,k=32> instance, found {len(floss)}")
        for r in floss:
            name = r["kernel"]
            labels = [loop.get("label") for loop in r["loops"]]
            if labels != ["step", "QR column", "adjoint"]:
                failures.append(f"{name}: its step, QR and adjoint loops were not found (loops: {labels})")
            for loop in r["loops"]:
                c = loop["counts"]
                if c["LDL/STL"] or c["LD/ST generic"]:
                    failures.append(f"{name}: local or generic memory accesses in its {loop.get('label')} loop")
            if len(r["loops"]) > 1 and r["loops"][1]["counts"]["BAR"] != 1:
                failures.append(f"{name}: {r['loops'][1]['counts']['BAR']} barriers per QR column (want 1)")
            if len(r["loops"]) > 2 and r["loops"][2]["counts"]["BAR"] > 4:
                failures.append(f"{name}: {r['loops'][2]['counts']['BAR']} barriers per adjoint step (want at most 4)")
            if r["stack"] > 40:
                failures.append(f"{name}: {r['stack']} bytes of stack (the Box-Muller path's 40 at most)")
            if r.get("blocks_per_sm", 0) < 2:
                failures.append(f"{name}: {r.get('blocks_per_sm')} resident blocks per SM < 2")
        # the modeled rates that `rnnsweep plan --backend cuda` uses where no GPU is at hand
        if args.model:
            source = open(os.path.join(ROOT, "host", "gpu_model.cpp")).read()
            by_name = {r["kernel"]: r for r in rows}
            listed = re.findall(r'\{"([^"]+)", ([0-9.e+]+), (\d+)\}', source)
            if not listed:
                failures.append("host/gpu_model.cpp: no modeled rates found")
            for name, rate, blocks in listed:
                r = by_name.get(name)
                if not r or not r.get("model"):
                    failures.append(f"host/gpu_model.cpp lists {name}, which the report does not model")
                    continue
                modeled = r["model"]["network_steps_per_s"]
                if abs(float(rate) / modeled - 1) > 0.10:
                    failures.append(f"host/gpu_model.cpp: {name} at {float(rate):.3g} network-steps/s, the report "
                                    f"models {modeled:.3g}: update it")
                if int(blocks) != r.get("blocks_per_sm"):
                    failures.append(f"host/gpu_model.cpp: {name} at {blocks} blocks per SM, the report has "
                                    f"{r.get('blocks_per_sm')}")
        for f in failures:
            print("CHECK FAILED:", f, file=sys.stderr)
        if failures:
            return 1
        print(f"kernel_report: the {len(targets)} H = 64, batch 32 register and tensor-core instances, the "
              "H = 64 spectrum instance and the H = 64, k = 32 flossing instance are within their limits",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
