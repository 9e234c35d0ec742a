#!/usr/bin/env python3
"""PyTorch with the networks stacked: K networks trained as one batch of matrices.

The fastest way PyTorch offers to train many small independent RNNs at once: every weight
gets a leading network axis (W_h is K x H x H), each time step is one torch.baddbmm over all
K networks, and one autograd graph and one Adam hold them all. Adam is elementwise, so one
optimiser over the stacked tensors takes exactly the step that K separate optimisers would.
As in torch_loop.py, the input projection and the read-out are batched over all steps and
only the recurrence is stepped; e-prop detaches the recurrent presynaptic rate.

Run it through run_peers.py, or alone: `python torch_bmm.py time --networks 8 --iters 20`.
"""
import sys
import time

from models import ADAM_BETAS, ADAM_EPS, LEAK, LR, init_weights, peer_main, trial_pool
from torch_loop import _setup, backend_info  # noqa: F401  (same framework, same settings)

NAME = "torch-bmm"


def forward(W_h, W_x, w, x, rule, leak=LEAK):
    """Stacked networks: W_h (K, H, H), W_x (K, H, I), w (K, O, H), x (K, T, B, I)
    -> y (K, T, B, O)."""
    import torch

    K, T, B, _ = x.shape
    a = leak
    drive = torch.bmm(x.reshape(K, T * B, -1), W_x.transpose(1, 2)).reshape(K, T, B, -1)
    W_hT = W_h.transpose(1, 2)
    h = x.new_zeros(K, B, W_h.shape[1])
    rates = []
    for drive_t in drive.unbind(1):  # not drive[:, t]: see torch_loop.py
        r = torch.relu(h)
        if rule == "eprop":  # no gradient through the presynaptic rate
            r = r.detach()
        h = a * h + (1 - a) * torch.baddbmm(drive_t, r, W_hT)
        rates.append(torch.relu(h))
    rates = torch.stack(rates, dim=1)  # (K, T, B, H)
    return torch.bmm(rates.reshape(K, T * B, -1), w.transpose(1, 2)).reshape(K, T, B, -1)


def romo_loss(y, target, mask):
    """Sum over networks of each network's romo loss (its gradient is each network's own)."""
    per_net = 0.5 * (mask * (y - target) ** 2).sum(dim=(1, 2, 3)) / mask.sum(dim=(1, 2, 3))
    return per_net.sum(), per_net


class StackedTrainer:
    def __init__(self, weights, device):
        import torch

        self.params = [torch.tensor(weights[k], device=device, requires_grad=True)
                       for k in ("W_h", "W_x", "w")]
        self.opt = torch.optim.Adam(self.params, lr=LR, betas=ADAM_BETAS, eps=ADAM_EPS)

    def step(self, x, target, mask, rule):
        total, per_net = romo_loss(forward(*self.params, x, rule), target, mask)
        self.opt.zero_grad()
        total.backward()
        self.opt.step()
        return per_net


def reference_losses(weights, batches, rule, device):
    import torch

    _setup(torch, device)
    trainer = StackedTrainer({k: v[None] for k, v in weights.items()}, device)  # K = 1
    losses = []
    for x, target, mask in batches:
        batch = [torch.as_tensor(v[None], device=device) for v in (x, target, mask)]
        losses.append(trainer.step(*batch, rule)[0].item())
    return losses


def train_rate(networks, iters, warmup, rule, device):
    import torch

    _setup(torch, device)
    trainer = StackedTrainer(init_weights(networks), device)
    pool = [[torch.as_tensor(v, device=device) for v in batch] for batch in trial_pool(networks)]
    for i in range(warmup):
        trainer.step(*pool[i % len(pool)], rule)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(iters):
        trainer.step(*pool[i % len(pool)], rule)
    if device == "cuda":
        torch.cuda.synchronize()
    return networks * iters / (time.perf_counter() - start)


if __name__ == "__main__":
    sys.exit(peer_main(sys.modules[__name__]))
