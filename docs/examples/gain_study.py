# %% [markdown]
# # The gain effect, from Python
# A small sweep of leaky ReLU RNNs on romo and 2AF, trained with BPTT and e-prop from initial
# connectivities W_h ~ N(0, g^2/H) of five gains, then the loss after training and the largest
# Lyapunov exponent before and after, against the gain. Run it as a script
# (`python docs/examples/gain_study.py`, about 10 s on two CPU cores) or cell by cell
# (`# %%`) in Jupyter or VS Code, from the repository root or anywhere with `RNNSWEEP_CONFIG`.

# %%
import os

import matplotlib

matplotlib.use("Agg")  # a file, not a window: also on a machine without a display
import matplotlib.pyplot as plt

import rnnsweep

here = os.path.dirname(os.path.abspath(__file__))
config = os.environ.get("RNNSWEEP_CONFIG", os.path.join(here, "..", "..", "configs", "quick.toml"))
out = os.environ.get("RNNSWEEP_OUT", "results/gain_study")

# %%
res = rnnsweep.run(config, out=out, force=True, set={
    "tasks": ["romo", "2af"], "rules": ["bptt", "eprop"], "gains": [0.2, 0.5, 1.0, 1.5, 2.0],
    "lrs": [3e-3], "seeds": [0, 1, 2], "floss": [False], "hidden": 32, "batch": 16, "iters": 300,
    "le_steps": 100, "le_warmup": 20, "le_batch": 2,
})
res

# %%
# one row per network, grid coordinates included: the mean over seeds of each task, rule and gain
nets = res.networks
by_gain = nets.groupby(["task", "rule", "gain"])[["tail_loss", "max_le_init", "max_le_trained"]].mean()
by_gain

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
for (task, rule), rows in by_gain.reset_index().groupby(["task", "rule"]):
    axes[0].plot(rows["gain"], rows["tail_loss"], marker="o", label=f"{task}, {rule}")
    axes[1].plot(rows["gain"], rows["max_le_trained"], marker="o", label=f"{task}, {rule}")
axes[0].set(xlabel="gain g", ylabel="loss after training (mean of the last 10%)", yscale="log")
axes[1].axhline(0, color="0.5", lw=0.8, ls=":")
axes[1].set(xlabel="gain g", ylabel="largest Lyapunov exponent, trained")
axes[0].legend(fontsize=8)
fig.tight_layout()
figure = os.path.join(res.folder, "gain_study.png")
fig.savefig(figure, dpi=120)
print("wrote", figure)

# %%
# the learning curves of one gain, straight from the curves table
curves = res.curves[(res.curves["gain"] == 1.0) & (res.curves["task"] == "2af")]
curves.groupby(["rule", "iteration"])["loss"].mean().unstack(0).tail()
