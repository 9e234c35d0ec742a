#!/usr/bin/env python3
"""PyTorch, one network at a time: how the study trains its grid.

Each grid point is its own nn.Module with its own torch.optim.Adam, and the grid is a Python
loop over networks; inside a network, a Python loop over the T time steps builds the autograd
graph, and loss.backward() is BPTT. e-prop is the same code with the presynaptic rate of the
recurrent term detached (docs/model.md, section 4). The input projection and the read-out are
computed for all steps at once, outside the time loop, as a careful PyTorch user would; only
the recurrence itself is stepped.

The rate of a sequential loop does not depend on how many networks it runs, so the timing
may use fewer networks than the stacked peers (run_peers.py --loop-networks).

Run it through run_peers.py, or alone: `python torch_loop.py time --networks 8 --iters 20`.
"""
import sys
import time

from models import ADAM_BETAS, ADAM_EPS, LEAK, LR, init_weights, peer_main, trial_pool

NAME = "torch-loop"


def backend_info(device):
    import torch

    _setup(torch, device)
    where = torch.cuda.get_device_name() if device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    return f"PyTorch {torch.__version__}, {where}"


def _setup(torch, device):
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("torch.cuda.is_available() is False")
    if device == "cpu":
        import os

        torch.set_num_threads(len(os.sched_getaffinity(0)))
        # BPTT through 100 contracting steps produces subnormal gradients, which x86
        # handles far slower; flushing them gives PyTorch its best figure.
        torch.set_flush_denormal(True)
    else:
        torch.backends.cuda.matmul.allow_tf32 = False  # float32 arithmetic, like rnnsweep


def _model_class():
    import torch

    class LeakyReluRNN(torch.nn.Module):
        """h_{t+1} = a h_t + (1 - a)(W_h relu(h_t) + W_x x_t),  y_t = w relu(h_{t+1})."""

        def __init__(self, W_h, W_x, w, leak=LEAK):
            super().__init__()
            self.W_h = torch.nn.Parameter(W_h)
            self.W_x = torch.nn.Parameter(W_x)
            self.w = torch.nn.Parameter(w)
            self.leak = leak

        def forward(self, x, detach_rate=False):
            """x (T, B, I) -> y (T, B, O)."""
            a = self.leak
            # The input term of every step at once, split into steps with unbind: indexing
            # drive[t] instead would make each step's backward add into a zero tensor the
            # size of all of drive, T times over (a quarter of the run time at T = 100).
            drive = (x @ self.W_x.T).unbind(0)  # T x (B, H)
            h = x.new_zeros(x.shape[1], self.W_h.shape[0])
            rates = []
            for drive_t in drive:
                r = torch.relu(h)
                if detach_rate:  # e-prop: no gradient through the presynaptic rate
                    r = r.detach()
                h = a * h + (1 - a) * (r @ self.W_h.T + drive_t)
                rates.append(torch.relu(h))
            return torch.stack(rates) @ self.w.T

    return LeakyReluRNN


def romo_loss(y, target, mask):
    return 0.5 * (mask * (y - target) ** 2).sum() / mask.sum()


def _make(torch, W_h, W_x, w, device):
    model = _model_class()(*(torch.as_tensor(m, device=device) for m in (W_h, W_x, w)))
    opt = torch.optim.Adam(model.parameters(), lr=LR, betas=ADAM_BETAS, eps=ADAM_EPS)
    return model, opt


def _train_step(model, opt, x, target, mask, rule):
    y = model(x, detach_rate=(rule == "eprop"))
    loss = romo_loss(y, target, mask)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


def reference_losses(weights, batches, rule, device):
    import torch

    _setup(torch, device)
    model, opt = _make(torch, weights["W_h"], weights["W_x"], weights["w"], device)
    losses = []
    for x, target, mask in batches:
        batch = [torch.as_tensor(v, device=device) for v in (x, target, mask)]
        losses.append(_train_step(model, opt, *batch, rule).item())
    return losses


def train_rate(networks, iters, warmup, rule, device):
    import torch

    _setup(torch, device)
    weights = init_weights(networks)
    pool = [[torch.as_tensor(v, device=device) for v in batch] for batch in trial_pool(networks)]
    nets = [_make(torch, weights["W_h"][k], weights["W_x"][k], weights["w"][k], device)
            for k in range(networks)]

    def run(n):
        for k, (model, opt) in enumerate(nets):  # the grid, one network after another
            for i in range(n):
                x, target, mask = (v[k] for v in pool[i % len(pool)])
                _train_step(model, opt, x, target, mask, rule)

    run(warmup)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    run(iters)
    if device == "cuda":
        torch.cuda.synchronize()
    return networks * iters / (time.perf_counter() - start)


if __name__ == "__main__":
    sys.exit(peer_main(sys.modules[__name__]))
