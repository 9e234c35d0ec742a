#!/usr/bin/env python3
"""JAX: one network's loss written with lax.scan, vmapped over networks, the whole training
step under one jit.

The loss of a single network scans the recurrence over time (carry h, emit relu(h)); the input
projection and the read-out are batched over all steps around the scan. jax.value_and_grad
differentiates it (BPTT; e-prop stops the gradient of the recurrent presynaptic rate with
lax.stop_gradient), jax.vmap maps it over the K networks, and jax.jit compiles loss, gradient
and the Adam update of all networks into one XLA program per rule. Adam is written out here
in PyTorch's order of operations (docs/model.md, Optimiser), so no optimiser package is
needed; optax.adam computes the same step up to rounding.

float32 matrix products run at full precision (jax_default_matmul_precision = "highest"),
as in rnnsweep; on a GPU, JAX's default would otherwise use TF32.

Run it through run_peers.py, or alone: `python jax_scan.py time --networks 8 --iters 20`.
"""
import functools
import os
import sys
import time

from models import ADAM_BETAS, ADAM_EPS, LEAK, LR, init_weights, peer_main, trial_pool

NAME = "jax-scan"


def _jax(device):
    """Import JAX for `device` ("cpu" or "cuda"); raise RuntimeError if it cannot run there."""
    if device == "cpu":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        threads = len(os.sched_getaffinity(0))
        if threads == 1:
            os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                       " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    import jax

    jax.config.update("jax_default_matmul_precision", "highest")
    platform = "cpu" if device == "cpu" else "gpu"
    try:
        dev = jax.devices(platform)[0]
    except RuntimeError as e:
        raise RuntimeError(f"JAX has no {platform} device ({e})") from None
    jax.config.update("jax_default_device", dev)
    return jax, dev


def backend_info(device):
    jax, dev = _jax(device)
    where = dev.device_kind if device == "cuda" else f"cpu, {len(os.sched_getaffinity(0))} cores"
    return f"JAX {jax.__version__}, {where}"


def _build(jax, rule, device, leak=LEAK):
    """The jitted training step of K stacked networks for one rule:
    step(params, adam, x, target, mask) -> (params, adam, per-network losses)."""
    jnp, lax = jax.numpy, jax.lax

    def loss(params, x, target, mask):
        """One network: x (T, B, I), target and mask (T, B, O)."""
        W_h, W_x, w = params["W_h"], params["W_x"], params["w"]
        drive = x @ W_x.T  # (T, B, H)

        def advance(h, drive_t):
            r = jax.nn.relu(h)
            if rule == "eprop":  # no gradient through the presynaptic rate
                r = lax.stop_gradient(r)
            h = leak * h + (1 - leak) * (r @ W_h.T + drive_t)
            return h, jax.nn.relu(h)

        h0 = jnp.zeros((x.shape[1], W_h.shape[0]), x.dtype)
        _, rates = lax.scan(advance, h0, drive)
        y = rates @ w.T
        return 0.5 * jnp.sum(mask * (y - target) ** 2) / jnp.sum(mask)

    grads_of_all = jax.vmap(jax.value_and_grad(loss))
    b1, b2 = ADAM_BETAS

    def adam(p, g, m, v, n):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        step_size = LR / (1 - b1 ** n)
        denom = jnp.sqrt(v) / jnp.sqrt(1 - b2 ** n) + ADAM_EPS
        return p - step_size * m / denom, m, v

    # Donating the old weights and moments lets XLA update them in place (GPU; the CPU
    # backend ignores donation and would warn).
    @functools.partial(jax.jit, donate_argnums=(0, 1) if device == "cuda" else ())
    def step(params, state, x, target, mask):
        losses, grads = grads_of_all(params, x, target, mask)
        n = state["n"] + 1
        new = {k: adam(params[k], grads[k], state["m"][k], state["v"][k], n) for k in params}
        params = {k: new[k][0] for k in params}
        state = {"n": n, "m": {k: new[k][1] for k in params}, "v": {k: new[k][2] for k in params}}
        return params, state, losses

    return step


def _init(jax, weights):
    jnp = jax.numpy
    params = {k: jnp.asarray(v) for k, v in weights.items()}
    zeros = {k: jnp.zeros_like(v) for k, v in params.items()}
    return params, {"n": jnp.zeros((), jnp.float32), "m": zeros, "v": dict(zeros)}


def reference_losses(weights, batches, rule, device):
    jax, _ = _jax(device)
    step = _build(jax, rule, device)
    params, state = _init(jax, {k: v[None] for k, v in weights.items()})  # K = 1
    losses = []
    for x, target, mask in batches:
        params, state, loss = step(params, state, *(jax.numpy.asarray(v[None]) for v in (x, target, mask)))
        losses.append(float(loss[0]))
    return losses


def train_rate(networks, iters, warmup, rule, device):
    jax, _ = _jax(device)
    step = _build(jax, rule, device)
    params, state = _init(jax, init_weights(networks))
    pool = [[jax.numpy.asarray(v) for v in batch] for batch in trial_pool(networks)]
    for i in range(max(warmup, 1)):  # the first call compiles
        params, state, losses = step(params, state, *pool[i % len(pool)])
    losses.block_until_ready()
    start = time.perf_counter()
    for i in range(iters):
        params, state, losses = step(params, state, *pool[i % len(pool)])
    losses.block_until_ready()
    return networks * iters / (time.perf_counter() - start)


if __name__ == "__main__":
    sys.exit(peer_main(sys.modules[__name__]))
