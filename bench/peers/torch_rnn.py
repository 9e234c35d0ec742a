#!/usr/bin/env python3
"""The same model in PyTorch on the CPU: the peer that bench_train is compared with.

H = 64, batch 32, T = 100, Adam, K networks stacked and stepped with bmm (the fastest way
PyTorch has to train many small RNNs at once), for bptt (autograd) and eprop (autograd with
the recurrent presynaptic rate detached, as in the study). Prints network-iterations per
second per rule, or says that torch is not importable.
"""
import argparse
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--networks", type=int, default=8)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("torch_rnn: torch is not importable here; no PyTorch figure (pip install torch to get one)")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    # BPTT through 100 contracting steps produces subnormal gradients, which x86 handles
    # ~100x slower; flushing them gives PyTorch its best figure.
    torch.set_flush_denormal(True)
    K, H, I, O, B, T, a = args.networks, 64, 1, 2, 32, 100, 0.5
    g = torch.Generator().manual_seed(0)
    for rule in ("bptt", "eprop"):
        W_h = (torch.randn(K, H, H, generator=g) / H**0.5).requires_grad_()
        W_x = (torch.rand(K, H, I, generator=g) * 2 - 1).requires_grad_()
        w = ((torch.rand(K, O, H, generator=g) * 2 - 1) / H**0.5).requires_grad_()
        opt = torch.optim.Adam([W_h, W_x, w], lr=1e-3)
        x = torch.rand(T, K, I, B, generator=g)
        target = torch.rand(T, K, O, B, generator=g)

        def step():
            h = torch.zeros(K, H, B)
            loss = 0.0
            for t in range(T):
                r = torch.relu(h)
                pre = r.detach() if rule == "eprop" else r
                h = a * h + (1 - a) * (torch.bmm(W_h, pre) + torch.bmm(W_x, x[t]))
                y = torch.bmm(w, torch.relu(h))
                loss = loss + 0.5 * ((y - target[t]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

        step()  # warm-up
        start = time.perf_counter()
        for _ in range(args.iters):
            step()
        rate = K * args.iters / (time.perf_counter() - start)
        print(f"torch_rnn: {rule} {rate:.1f} network-iterations/s ({K} networks, {torch.get_num_threads()} threads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
