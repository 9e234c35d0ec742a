#!/usr/bin/env python3
"""Figures of a sweep's results, in the spirit of the study's figures.

    scripts/plot.py RESULTS_DIR [--out DIR] [--force] [--summary] [--dpi N]
    (needs pandas >= 1.5 and matplotlib >= 3.6, as in Debian 12: pip install pandas matplotlib)

Reads the tables of RESULTS_DIR (networks.csv, and where present summary.csv, curves.csv,
lyapunov_curves.csv) as
pandas reads them, with no options, and writes into RESULTS_DIR/plots/ (or --out DIR), never
over an existing file unless --force (without it the figures that exist are kept and the
missing ones drawn):

- learning_curves.png (figures 1, 2, 5): loss against iteration, one panel per task x rule, one
  line per gain at that gain's best lr (summary.csv), without flossing: the mean across seeds,
  with a band from the lowest to the highest seed.
- max_le.png (figure 3): the largest Lyapunov exponent before and after training against gain,
  one panel per task x rule: mean and min-max band across the seeds of each gain's best lr,
  without flossing; a triangle at the bottom marks a gain where a network's exponent is -inf
  (every unit silent), left out of the mean. A `rnnsweep lyapunov` folder gives the exponent
  before training only, one panel per task (an initial network is the same under every rule).
- alignment.png (needs alignment = true): the cosine of the local rules' W_h gradient with BPTT's
  against training iteration, one panel per task x local rule, one line per gain at that gain's
  best lr, without flossing: mean across seeds with a min-max band.
- psychometric.png (needs RESULTS_DIR/evaluate/psychometric.csv, from `rnnsweep evaluate
  RESULTS_DIR`): the fraction of trials choosing the second option against the signed condition
  (romo f1 - f2, "f2 > f1"; 2af signed coherence, output 2; dms match, "non-match") of the trained
  networks, one panel per task x rule, one line per gain at that gain's best lr, without flossing:
  mean across seeds with a min-max band.
- flossing.png (figure 4): tail loss at the best lr against gain with and without flossing
  (mean +- std across seeds), one panel per task x rule (e-prop and whichever rules the sweep has).
- max_le_training.png (needs le_every > 0, lyapunov_curves.csv): the largest Lyapunov exponent
  against training iteration, one panel per task x rule, one line per gain at that gain's best lr,
  without flossing: mean across seeds with a min-max band (a -inf exponent is left out).
- heatmap_tail_loss.png: tail loss, mean across the seeds that did not diverge, over gain x lr,
  one panel per task x rule, without flossing; cells where every seed diverged are hatched,
  cells where some did say how many, and each gain's best lr is outlined; the colour scale spans
  3 decades above the task's lowest loss (worse cells saturate, their numbers are printed).
- heatmap_tail_accuracy.png: the same for the tail accuracy.
- gain_summary.csv: per task, rule, flossing and gain, the best lr, the tail loss and accuracy
  there (mean, std across seeds, seeds diverged), and the mean max LE before training, after
  flossing and after training at that lr (a `rnnsweep lyapunov` folder: task, rule, gain,
  seeds, max_le_init mean and std across seeds). --summary also prints it as a table on stdout.

It prints one line per file written and one line per figure it cannot draw, saying why (a
`rnnsweep lyapunov` folder has no training, a sweep without flossing has no flossing figure).
Exit status: 0 when at least one figure was drawn and nothing failed; 1 when nothing could be
drawn or a figure failed unexpectedly; 2 for a folder that is not a results folder, plots that
that all exist already (without --force) or missing pandas / matplotlib.
"""
import argparse
import copy
import math
import os
import sys

FIGURES = ("learning_curves.png", "max_le.png", "max_le_training.png", "alignment.png", "psychometric.png",
           "flossing.png", "heatmap_tail_loss.png", "heatmap_tail_accuracy.png")
# the condition of each task's psychometric curve (rnnsweep evaluate's psychometric.csv)
PSYCHOMETRIC = {"romo": ("f1_minus_f2", "f1 - f2"), "2af": ("signed_coherence", "signed coherence (%)"),
                "dms": ("match", "match (1) / non-match (0)")}
SUMMARY_CSV = "gain_summary.csv"
NETWORK_COLUMNS = ("network", "task", "rule", "gain", "lr", "seed", "floss", "status", "max_le_init")
PANEL_W, PANEL_H = 3.1, 2.4
DPI = 100  # --dpi
LOSS_DECADES = 3  # the tail-loss heat map's colour scale: this many decades above the lowest loss


class NotDrawn(Exception):
    """A figure this folder cannot give; the message says why."""


def fail(message):
    print(f"plot.py: {message}", file=sys.stderr)
    return 2


def as_bool(series):
    if series.dtype == bool:
        return series
    return series.astype(str).str.strip().str.lower().isin(("true", "1", "1.0"))


def fmt(x, digits=3):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}g}"


class Results:
    def __init__(self, folder, pd):
        self.folder = folder
        self.pd = pd
        self.partial = read_partial(folder)  # None for a finished run
        net = pd.read_csv(os.path.join(folder, "networks.csv"))
        missing = [c for c in NETWORK_COLUMNS if c not in net.columns]
        if missing:
            raise ValueError(f"{folder}/networks.csv has no column {missing[0]}; is it a results folder of rnnsweep?")
        if net.empty:
            raise ValueError(f"{folder}/networks.csv has no networks")
        net["floss"] = as_bool(net["floss"])
        for c in ("max_le_init", "max_le_trained", "max_le_flossed", "tail_loss", "tail_accuracy"):
            if c in net.columns:
                net[c] = pd.to_numeric(net[c], errors="coerce")
        # A sweep over inits or shapes draws each (task, init, hidden, batch) as a task of its own:
        # every figure's panels and every table's rows then keep them apart without a further axis.
        self.folds = [c for c in ("init", "hidden", "batch") if c in net.columns and net[c].nunique() > 1]
        net["task"] = self.folded(net)
        self.networks = net
        self.tasks = list(dict.fromkeys(net["task"]))
        self.rules = list(dict.fromkeys(net["rule"]))
        self.gains = sorted(net["gain"].unique())
        self.lrs = sorted(net["lr"].unique())
        self.trained = bool((net["status"] != "untrained").any())
        # The flossing setting of the figures that compare gains: off where the sweep has it.
        self.base_floss = False if (~net["floss"]).any() else True
        self.summary = self._read("summary.csv")
        if self.summary is not None:
            self.summary["floss"] = as_bool(self.summary["floss"])
            self.summary["task"] = self.folded(self.summary)
        self.curves = self._read("curves.csv")
        self.lyapunov_curves = self._read("lyapunov_curves.csv")
        self.psychometric = self._read(os.path.join("evaluate", "psychometric.csv"))

    def folded(self, table):
        """the task column, with the init and shape appended where the sweep has several"""
        label = {"init": "", "hidden": "H=", "batch": "batch "}
        task = table["task"].astype(str)
        for c in self.folds:
            task = task + " / " + label[c] + table[c].astype(str)
        return task

    def _read(self, name):
        path = os.path.join(self.folder, name)
        return self.pd.read_csv(path) if os.path.exists(path) else None

    def floss_note(self):
        return "without flossing" if not self.base_floss else "all networks flossed (the sweep has no floss = false)"

    def need_training(self, what):
        if not self.trained:
            raise NotDrawn(f"no trained networks in this folder (a `rnnsweep lyapunov` folder), so no {what}")

    def need(self, name):
        if getattr(self, name.split(".")[0]) is None:
            raise NotDrawn(f"{self.folder} has no {name}")

    def at_best_lr(self, floss):
        """networks.csv rows at the best lr (summary.csv) of their task, rule and gain."""
        best = self.summary[self.summary["floss"] == floss][["task", "rule", "gain", "best_lr"]]
        net = self.networks[self.networks["floss"] == floss]
        return net.merge(best, left_on=["task", "rule", "gain", "lr"], right_on=["task", "rule", "gain", "best_lr"])


def finite(values):
    import numpy as np

    v = np.asarray(values, dtype=float)
    return np.where(np.isfinite(v), v, np.nan)


def panel_grid(plt, r, title, sharey="row", extra_w=1.2, rules=None, sharex=True):
    rules = rules or r.rules
    fig, axes = plt.subplots(len(r.tasks), len(rules), squeeze=False, sharex=sharex, sharey=sharey,
                             # at least two panels wide, so that a one-rule sweep's title fits
                             figsize=(PANEL_W * max(2, len(rules)) + extra_w, PANEL_H * len(r.tasks) + 0.6),
                             layout="constrained")
    for i, task in enumerate(r.tasks):
        for j, rule in enumerate(rules):
            axes[i][j].set_title(f"{task}, {rule}", fontsize=10)
    fig.suptitle(title + (f"\n[partial: {r.partial}]" if r.partial else ""), fontsize=10)
    return fig, axes


def draw_seed_bands(ax, sub, column, colors, **line):
    """one line per gain: the mean of `column` across seeds against iteration, with a band from the
    lowest to the highest seed"""
    for g, rows in sub.groupby("gain"):
        by_it = rows.groupby("iteration")[column]
        mean, lo, hi = by_it.mean(), by_it.min(), by_it.max()
        ax.fill_between(mean.index, lo.values, hi.values, color=colors[g], alpha=0.2, lw=0)
        ax.plot(mean.index, mean.values, color=colors[g], lw=1.2, marker="o" if len(mean) < 3 else None, ms=3,
                **line)


def gain_legend(plt, axes, gains, colors):
    handles = [plt.Line2D([], [], color=colors[g], lw=1.5) for g in gains]
    axes[0][-1].legend(handles, [f"{g:g}" for g in gains], title="gain g", fontsize=8, title_fontsize=8,
                       loc="upper left", bbox_to_anchor=(1.02, 1.0))


def gain_colors(plt, gains):
    cmap = plt.get_cmap("viridis")
    return {g: cmap(0.9 * i / max(1, len(gains) - 1)) for i, g in enumerate(gains)}


def save(fig, path, plt, tight=False):
    """A 256-colour PNG: a third of the size of matplotlib's RGBA one, so committed figures stay small.
    tight: the saved area grows to hold what lies outside the figure (a legend below it)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None}, **({"bbox_inches": "tight"} if tight else {}))
    plt.close(fig)
    try:
        from PIL import Image

        buf.seek(0)
        with Image.open(buf) as im:
            im.convert("RGB").quantize(colors=256, dither=Image.Dither.NONE).save(path, format="png", optimize=True)
    except Exception:  # an older Pillow: keep matplotlib's own PNG
        with open(path, "wb") as f:
            f.write(buf.getvalue())


def short(x):
    """A cell label: 2 significant digits, exponents without '+' and leading zeros (3e7, 2e-4)."""
    if not math.isfinite(x):
        return str(x)
    if x != 0 and (abs(x) >= 1000 or abs(x) < 0.001):
        m, e = f"{x:.0e}".split("e")
        return f"{m}e{int(e)}"
    return f"{float(f'{x:.2g}'):g}"


def draw_learning_curves(r, path, plt):
    import numpy as np

    r.need_training("learning curves")
    r.need("curves.csv")
    r.need("summary.csv")
    chosen = r.at_best_lr(r.base_floss)
    data = r.curves.merge(chosen[["network", "task", "rule", "gain", "seed"]], on="network")
    if data.empty:
        raise NotDrawn("curves.csv has no rows for the networks at the best lr")
    data = data.assign(loss=finite(data["loss"]))
    n_seeds = r.networks["seed"].nunique()
    fig, axes = panel_grid(plt, r, f"Learning curves at each gain's best lr, {r.floss_note()}\n"
                                   f"line: mean across {n_seeds} seeds; band: lowest to highest seed", sharey="row")
    colors = gain_colors(plt, r.gains)
    s = r.summary[r.summary["floss"] == r.base_floss]
    for i, task in enumerate(r.tasks):
        for j, rule in enumerate(r.rules):
            ax = axes[i][j]
            sub = data[(data["task"] == task) & (data["rule"] == rule)]
            draw_seed_bands(ax, sub, "loss", colors)
            here = s[(s["task"] == task) & (s["rule"] == rule)]
            dead = here[(here["n_diverged"] >= here["n_seeds"]) & (here["n_seeds"] > 0)]["gain"]
            if len(dead):
                ax.text(0.5, 0.96, "every seed diverged at the best lr: g = " + ", ".join(f"{g:g}" for g in dead),
                        transform=ax.transAxes, fontsize=7, color="C3", ha="center", va="top",
                        bbox=dict(facecolor="white", alpha=0.8, lw=0, pad=1))
            if sub.empty:
                ax.text(0.5, 0.5, "no curves", ha="center", va="center", transform=ax.transAxes)
            elif np.isfinite(sub["loss"]).any() and (sub["loss"] > 0).any():
                ax.set_yscale("log")
            if i == len(r.tasks) - 1:
                ax.set_xlabel("training iteration")
            if j == 0:
                ax.set_ylabel("loss (batch)")
    gain_legend(plt, axes, r.gains, colors)
    save(fig, path, plt)


def draw_max_le(r, path, plt):
    import numpy as np

    net = r.networks
    if not net["max_le_init"].notna().any():
        raise NotDrawn("networks.csv has no max_le_init values (no spectra were computed)")
    if r.trained and r.summary is not None:
        rows = r.at_best_lr(r.base_floss)
        how = f"networks at each gain's best lr, {r.floss_note()}"
        phases = (("max_le_init", "before training", "0.45", "o"), ("max_le_trained", "after training", "C3", "s"))
    else:
        rows = net
        how = ("initial networks (`rnnsweep lyapunov`)" if not r.trained else "all networks (no summary.csv)")
        phases = (("max_le_init", "before training", "0.45", "o"),)
        if r.trained:
            phases += (("max_le_trained", "after training", "C3", "s"),)
    # An initial network is the same whatever its rule, lr or flossing: one panel per task, each
    # (task, gain, seed) once.
    rules = r.rules if r.trained else ["any rule"]
    if not r.trained:
        rows = rows.drop_duplicates(["task", "gain", "seed"])
    fig, axes = panel_grid(plt, r, f"Largest Lyapunov exponent against gain: mean and min-max across seeds,\n{how}",
                           sharey=True, rules=rules)
    any_silent = False
    for i, task in enumerate(r.tasks):
        for j, rule in enumerate(rules):
            ax = axes[i][j]
            sub = rows[(rows["task"] == task) & ((rows["rule"] == rule) | (not r.trained))]
            for col, label, color, marker in phases:
                if col not in sub.columns:
                    continue
                vals = sub.assign(v=finite(sub[col])).groupby("gain")["v"]
                mean, lo, hi = vals.mean(), vals.min(), vals.max()
                ax.fill_between(mean.index, lo.values, hi.values, color=color, alpha=0.2, lw=0)
                ax.plot(mean.index, mean.values, marker=marker, ms=4, color=color, lw=1.2, label=label)
                silent = sorted(sub[sub[col] == -np.inf]["gain"].unique())
                if silent:
                    ax.plot(silent, [0.03] * len(silent), "v", color=color, ms=6, mfc="none",
                            transform=ax.get_xaxis_transform(), clip_on=False)
                    any_silent = True
            ax.axhline(0, color="k", lw=0.6, ls=":")
            if i == len(r.tasks) - 1:
                ax.set_xlabel("gain g")
            if j == 0:
                ax.set_ylabel(r"$\lambda_{max}$ (per step)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if any_silent:
        handles.append(plt.Line2D([], [], ls="none", marker="v", mfc="none", color="0.3"))
        labels.append("$\\lambda_{max} = -\\infty$ for a seed\n(every unit silent;\nleft out of the mean)")
    axes[0][-1].legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    save(fig, path, plt)


def draw_max_le_training(r, path, plt):
    r.need_training("spectra during training")
    if r.lyapunov_curves is None:
        raise NotDrawn("no lyapunov_curves.csv: the sweep did not track spectra during training (le_every = N)")
    r.need("summary.csv")
    chosen = r.at_best_lr(r.base_floss)
    le = r.lyapunov_curves
    le = le[le["index"] == 1].merge(chosen[["network", "task", "rule", "gain", "seed"]], on="network")
    if le.empty:
        raise NotDrawn("lyapunov_curves.csv has no rows for the networks at the best lr")
    le = le.assign(v=finite(le["exponent"]))
    n_seeds = r.networks["seed"].nunique()
    fig, axes = panel_grid(plt, r, f"Largest Lyapunov exponent during training at each gain's best lr, "
                                   f"{r.floss_note()}\nline: mean across {n_seeds} seeds; band: lowest to highest seed")
    colors = gain_colors(plt, r.gains)
    for i, task in enumerate(r.tasks):
        for j, rule in enumerate(r.rules):
            ax = axes[i][j]
            sub = le[(le["task"] == task) & (le["rule"] == rule)]
            draw_seed_bands(ax, sub, "v", colors)
            ax.axhline(0, color="0.3", lw=0.6, ls=":")
            if sub.empty:
                ax.text(0.5, 0.5, "no tracked spectra", ha="center", va="center", transform=ax.transAxes)
            if i == len(r.tasks) - 1:
                ax.set_xlabel("training iteration")
            if j == 0:
                ax.set_ylabel(r"$\lambda_{max}$ (per step)")
    gain_legend(plt, axes, r.gains, colors)
    save(fig, path, plt)


def has_alignment(r):
    return r.curves is not None and "alignment" in r.curves.columns and r.curves["alignment"].notna().any()


def draw_alignment(r, path, plt):
    r.need_training("gradient alignment")
    r.need("curves.csv")
    if not has_alignment(r):
        raise NotDrawn("curves.csv has no alignment: the sweep did not measure it (alignment = true)")
    r.need("summary.csv")
    chosen = r.at_best_lr(r.base_floss)
    data = r.curves[r.curves["alignment"].notna()].merge(chosen[["network", "task", "rule", "gain", "seed"]],
                                                          on="network")
    if data.empty:
        raise NotDrawn("curves.csv has no alignment for the networks at the best lr")
    data = data.assign(v=finite(data["alignment"]))
    rules = [rule for rule in r.rules if rule != "bptt"]
    n_seeds = r.networks["seed"].nunique()
    fig, axes = panel_grid(plt, r, f"Alignment of the rule's W_h gradient with BPTT's at each gain's best lr, "
                                   f"{r.floss_note()}\nline: mean across {n_seeds} seeds; band: lowest to highest seed",
                           rules=rules)
    colors = gain_colors(plt, r.gains)
    for i, task in enumerate(r.tasks):
        for j, rule in enumerate(rules):
            ax = axes[i][j]
            sub = data[(data["task"] == task) & (data["rule"] == rule)]
            draw_seed_bands(ax, sub, "v", colors)
            ax.axhline(0, color="0.3", lw=0.6, ls=":")
            if sub.empty:
                ax.text(0.5, 0.5, "no alignment", ha="center", va="center", transform=ax.transAxes)
            if i == len(r.tasks) - 1:
                ax.set_xlabel("training iteration")
            if j == 0:
                ax.set_ylabel(r"cos($\Delta W_h$, BPTT)")
    gain_legend(plt, axes, r.gains, colors)
    save(fig, path, plt)


def draw_psychometric(r, path, plt):
    r.need_training("psychometric curves")
    if r.psychometric is None:
        raise NotDrawn(f"{r.folder} has no evaluate/psychometric.csv (rnnsweep evaluate {r.folder} writes it)")
    r.need("summary.csv")
    # the built-in tasks only: a file task's trials carry no condition rnnsweep knows of
    tasks = [t for t in r.tasks if t.split(" / ")[0] in PSYCHOMETRIC]
    if not tasks:
        raise NotDrawn("no task of this sweep has a psychometric condition (romo, 2af, dms; file tasks have none)")
    r = copy.copy(r)
    r.tasks = tasks
    p = r.psychometric
    p = p[(p["stage"] == "final") & (p["condition"] == p["task"].map(lambda t: PSYCHOMETRIC.get(t, ("",))[0]))]
    chosen = r.at_best_lr(r.base_floss)
    # folded task names (init, shape) come from networks.csv through the network id
    data = p.drop(columns="task").merge(chosen[["network", "task", "rule", "gain", "seed"]], on="network")
    if data.empty:
        raise NotDrawn("evaluate/psychometric.csv has no trained network at the best lr (evaluate them: "
                       "rnnsweep evaluate RESULTS_DIR)")
    data = data.rename(columns={"level": "iteration"})  # draw_seed_bands' x axis
    n_seeds = r.networks["seed"].nunique()
    trials = int(r.psychometric["trials"].groupby([r.psychometric["network"], r.psychometric["stage"],
                                                   r.psychometric["condition"]]).sum().max())
    fig, axes = panel_grid(plt, r, f"Psychometric curves of the trained networks at each gain's best lr, "
                                   f"{r.floss_note()}, {trials} fresh trials\nline: mean across {n_seeds} seeds; "
                                   "band: lowest to highest seed", sharey=True, sharex="row")
    colors = gain_colors(plt, r.gains)
    base = {t: t.split(" / ")[0] for t in r.tasks}
    for i, task in enumerate(r.tasks):
        for j, rule in enumerate(r.rules):
            ax = axes[i][j]
            sub = data[(data["task"] == task) & (data["rule"] == rule)]
            draw_seed_bands(ax, sub, "p_second", colors)
            ax.axhline(0.5, color="0.3", lw=0.6, ls=":")
            ax.set_ylim(-0.03, 1.03)
            if sub.empty:
                ax.text(0.5, 0.5, "not evaluated", ha="center", va="center", transform=ax.transAxes)
            ax.set_xlabel(PSYCHOMETRIC[base[task]][1], fontsize=8)
            if j == 0:
                ax.set_ylabel("P(second choice)")
    gain_legend(plt, axes, r.gains, colors)
    save(fig, path, plt)


def draw_flossing(r, path, plt):
    import numpy as np

    r.need_training("flossing comparison")
    r.need("summary.csv")
    s = r.summary
    if not s["floss"].any():
        raise NotDrawn("this sweep has no floss = true networks")
    if s["floss"].all():
        raise NotDrawn("this sweep has no floss = false networks to compare with")
    dead = ~np.isfinite(finite(s["tail_loss_mean"]))
    fig, axes = panel_grid(plt, r, "Tail loss at each gain's best lr, with and without gradient flossing\n"
                                   "mean \u00b1 std across seeds" + ("; x at the top: every lr diverged" if dead.any() else ""),
                           sharey="row")
    styles = ((False, "without flossing", "C0", "o", "-"), (True, "with flossing", "C1", "s", "--"))
    for i, task in enumerate(r.tasks):
        for j, rule in enumerate(r.rules):
            ax = axes[i][j]
            drew = False
            for floss, label, color, marker, ls in styles:
                sub = s[(s["task"] == task) & (s["rule"] == rule) & (s["floss"] == floss)].sort_values("gain")
                gain = sub["gain"].to_numpy(dtype=float)
                mean = finite(sub["tail_loss_mean"])
                std = np.nan_to_num(finite(sub["tail_loss_std"]))
                ok = np.isfinite(mean) & (mean > 0)
                # on the log axis the lower bar stops short of 0
                yerr = [np.minimum(std[ok], 0.9 * mean[ok]), std[ok]]
                ax.errorbar(gain[ok], mean[ok], yerr=yerr, color=color, marker=marker, ms=4, ls=ls, lw=1.2,
                            capsize=2, label=label)
                if (~ok).any():
                    ax.plot(gain[~ok], [0.97] * int((~ok).sum()), "x", color=color, ms=6,
                            transform=ax.get_xaxis_transform(), clip_on=False)
                drew = drew or ok.any()
            if not drew:
                ax.text(0.5, 0.5, "every lr diverged\nat every gain", ha="center", va="center", transform=ax.transAxes,
                        fontsize=8, color="C3")
            ax.set_yscale("log")
            if i == len(r.tasks) - 1:
                ax.set_xlabel("gain g")
            if j == 0:
                ax.set_ylabel("tail loss")
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    save(fig, path, plt)


def draw_heatmap(r, path, plt, column, label):
    import numpy as np
    from matplotlib import colors as mcolors
    from matplotlib.patches import Patch, Rectangle

    r.need_training(f"{column} to map")
    net = r.networks[r.networks["floss"] == r.base_floss]
    if column not in net.columns:
        raise NotDrawn(f"networks.csv has no {column} column")
    gains, lrs = r.gains, r.lrs
    ng, nl = len(gains), len(lrs)
    best = None
    if r.summary is not None:
        best = r.summary[r.summary["floss"] == r.base_floss]
    is_loss = column == "tail_loss"
    annotate = ng <= 10 and nl <= 10
    seen = set()  # kinds of divergence shown, for the legend
    font = 7 if ng <= 5 else 6
    fig, axes = plt.subplots(len(r.tasks), len(r.rules), squeeze=False,
                             figsize=(PANEL_W * len(r.rules) + 1.0, (PANEL_H + 0.1) * len(r.tasks) + 1.0),
                             layout="constrained")
    for i, task in enumerate(r.tasks):
        cells = {}
        for rule in r.rules:
            sub = net[(net["task"] == task) & (net["rule"] == rule)]
            mean = np.full((nl, ng), np.nan)
            ndiv = np.zeros((nl, ng), int)
            nall = np.zeros((nl, ng), int)
            for (g, lr), rows in sub.groupby(["gain", "lr"]):
                a, b = lrs.index(lr), gains.index(g)
                ok = rows[rows["status"] == "ok"]
                v = finite(ok[column])
                nall[a, b] = len(rows)
                ndiv[a, b] = int((rows["status"] == "diverged").sum())
                if np.isfinite(v).any():
                    mean[a, b] = np.nanmean(v)
            cells[rule] = (mean, ndiv, nall)
        allv = np.concatenate([c[0].ravel() for c in cells.values()])
        allv = allv[np.isfinite(allv)]
        if is_loss:
            allv = allv[allv > 0]
            lo, hi = (allv.min(), allv.max()) if len(allv) else (1e-3, 1.0)
            # the scale covers LOSS_DECADES decades above the lowest loss; worse cells saturate
            capped = hi > lo * 10 ** LOSS_DECADES
            hi = min(hi, lo * 10 ** LOSS_DECADES)
            if hi <= lo * 1.0001:
                lo, hi = lo / 2, hi * 2
            norm, cmap = mcolors.LogNorm(lo, hi), plt.get_cmap("viridis")
        else:
            capped = False
            norm, cmap = mcolors.Normalize(0, 1), plt.get_cmap("viridis")
        for j, rule in enumerate(r.rules):
            ax = axes[i][j]
            mean, ndiv, nall = cells[rule]
            shown = np.ma.masked_invalid(np.where(mean > 0, mean, np.nan) if is_loss else mean)
            im = ax.imshow(shown, norm=norm, cmap=cmap, origin="lower", aspect="auto")
            for a in range(nl):
                for b in range(ng):
                    if nall[a, b] == 0:
                        continue
                    if ndiv[a, b] == nall[a, b]:
                        seen.add("all")
                        ax.add_patch(Rectangle((b - 0.5, a - 0.5), 1, 1, facecolor="0.85", edgecolor="0.4",
                                               hatch="xxx", lw=0))
                        continue
                    if annotate and np.isfinite(mean[a, b]):
                        rgba = cmap(norm(mean[a, b]))
                        light = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] > 0.55
                        text = short(mean[a, b])
                        if ndiv[a, b]:
                            seen.add("some")
                            text += f"\n{ndiv[a, b]}/{nall[a, b]} div"
                        ax.text(b, a, text, ha="center", va="center", fontsize=font,
                                color="black" if light else "white")
                    elif ndiv[a, b]:
                        seen.add("some")
                        ax.text(b, a, f"{ndiv[a, b]}/{nall[a, b]}", ha="center", va="center", fontsize=6, color="red")
            if best is not None:
                for _, row in best[(best["task"] == task) & (best["rule"] == rule)].iterrows():
                    if row["gain"] in gains and row["best_lr"] in lrs:
                        b, a = gains.index(row["gain"]), lrs.index(row["best_lr"])
                        ax.add_patch(Rectangle((b - 0.5, a - 0.5), 1, 1, fill=False, edgecolor="red", lw=1.8))
            ax.set_xticks(range(ng), [f"{g:g}" for g in gains], fontsize=8)
            ax.set_yticks(range(nl), [f"{lr:g}" for lr in lrs], fontsize=8)
            ax.set_title(f"{task}, {rule}", fontsize=10)
            if i == len(r.tasks) - 1:
                ax.set_xlabel("gain g")
            if j == 0:
                ax.set_ylabel("learning rate")
        cb = fig.colorbar(im, ax=list(axes[i]), shrink=0.9, pad=0.02, extend="max" if capped else "neither")
        cb.set_label(f"{label} ({task})" + (", log scale" if is_loss else "")
                     + (f"\ncapped at 10^{LOSS_DECADES} x the lowest" if capped else ""), fontsize=7)
        cb.ax.tick_params(labelsize=7)
    n_seeds = r.networks["seed"].nunique()
    fig.suptitle(f"{label[0].upper() + label[1:]} over gain x lr, {r.floss_note()}: mean across the seeds "
                 f"that did not diverge (of {n_seeds})" + (f"\n[partial: {r.partial}]" if r.partial else ""),
                 fontsize=10)
    handles = []
    if "all" in seen:
        handles.append(Patch(facecolor="0.85", edgecolor="0.4", hatch="xxx", label="every seed diverged"))
    if best is not None:
        handles.append(Patch(facecolor="none", edgecolor="red", lw=1.8,
                             label="best lr of the gain (lowest mean tail loss, summary.csv)"))
    if "some" in seen:
        handles.append(Patch(facecolor="none", edgecolor="none", label="k/n div: k of n seeds diverged"))
    if not handles:
        handles.append(Patch(facecolor="none", edgecolor="none", label="no network diverged"))
    # below the panels, and the saved figure grown to hold it (loc="outside ..." would do this
    # too, but needs matplotlib 3.7; Debian stable has 3.6)
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(handles), fontsize=8,
               frameon=False)
    save(fig, path, plt, tight=True)


def gain_summary(r):
    """The numbers behind the figures, one row per task, rule, flossing and gain (a DataFrame)."""
    pd = r.pd
    net = r.networks
    if not r.trained or r.summary is None:
        # the initial network depends on the seed, not on the lr or flossing: one value per seed
        per_seed = net.assign(v=net["max_le_init"]).groupby(["task", "rule", "gain", "seed"], sort=False)["v"]
        g = per_seed.mean().reset_index().groupby(["task", "rule", "gain"], sort=False)["v"]
        out = pd.DataFrame({"seeds": g.size(), "max_le_init_mean": g.mean(), "max_le_init_std": g.std()})
        return out.reset_index()
    s = r.summary.copy()
    rows = []
    for floss in (False, True):
        if not (s["floss"] == floss).any():
            continue
        at = r.at_best_lr(floss)
        for col in ("max_le_init", "max_le_flossed", "max_le_trained"):
            if col not in at.columns:
                at[col] = float("nan")
        le = at.groupby(["task", "rule", "gain"], sort=False)[["max_le_init", "max_le_flossed", "max_le_trained"]].mean()
        le.columns = [c + "_mean" for c in le.columns]
        part = s[s["floss"] == floss].merge(le.reset_index(), on=["task", "rule", "gain"], how="left")
        rows.append(part)
    out = pd.concat(rows, ignore_index=True)
    order = {t: k for k, t in enumerate(r.tasks)}
    rorder = {t: k for k, t in enumerate(r.rules)}
    out = out.assign(_t=out["task"].map(order), _r=out["rule"].map(rorder))
    out = out.sort_values(["_t", "_r", "floss", "gain"], kind="stable").drop(columns=["_t", "_r"])
    cols = ["task", "rule", "floss", "gain", "best_lr", "n_seeds", "n_diverged", "tail_loss_mean", "tail_loss_std",
            "tail_accuracy_mean", "tail_accuracy_std", "max_le_init_mean", "max_le_flossed_mean", "max_le_trained_mean"]
    return out[[c for c in cols if c in out.columns]].reset_index(drop=True)


def print_summary(table, trained):
    if not trained:
        print("Largest Lyapunov exponent before training (per step), mean +- std across the seeds of each gain:")
        print(f"{'task':<6} {'rule':<6} {'gain':>6} {'seeds':>5} {'max LE init':>20}")
        for _, x in table.iterrows():
            print(f"{x['task']:<6} {x['rule']:<6} {x['gain']:>6g} {x['seeds']:>5d} "
                  f"{fmt(x['max_le_init_mean']):>9} +- {fmt(x['max_le_init_std']):<8}")
        return
    print("Per task, rule, flossing and gain, at the gain's best lr: tail loss mean +- std across seeds "
          "(div: seeds diverged), tail accuracy mean, and mean largest Lyapunov exponent (per step) "
          "before training, after flossing, after training:")
    print(f"{'task':<6} {'rule':<6} {'floss':<5} {'gain':>6} {'best_lr':>8} {'tail loss':>21} {'div':>5} "
          f"{'acc':>6} {'LE init':>8} {'LE floss':>8} {'LE trained':>10}")
    for _, x in table.iterrows():
        loss = f"{fmt(x['tail_loss_mean'])} +- {fmt(x['tail_loss_std'], 2)}"
        print(f"{x['task']:<6} {x['rule']:<6} {str(bool(x['floss'])).lower():<5} {x['gain']:>6g} {x['best_lr']:>8g} "
              f"{loss:>21} {str(x['n_diverged']) + '/' + str(x['n_seeds']):>5} {fmt(x['tail_accuracy_mean'], 2):>6} "
              f"{fmt(x.get('max_le_init_mean')):>8} {fmt(x.get('max_le_flossed_mean')):>8} "
              f"{fmt(x.get('max_le_trained_mean')):>10}")


def read_partial(folder):
    """For a snapshot of an unfinished run (`rnnsweep tables`): 'k of n networks, written at T'."""
    import json

    try:
        with open(os.path.join(folder, "manifest.json")) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    p = manifest.get("partial") if manifest.get("status") == "partial" else None
    if not isinstance(p, dict):
        return None
    return (f"{p.get('networks_in_tables', '?')} of {p.get('networks', '?')} networks, written at "
            f"{p.get('written_at', '?')} while the run was {p.get('run_status', '?')}")


def main():
    global DPI
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", help="a folder written by rnnsweep run (or rnnsweep lyapunov, or merge)")
    ap.add_argument("--out", metavar="DIR", help="write the figures into DIR instead of RESULTS_DIR/plots")
    ap.add_argument("--force", action="store_true", help="replace existing plots")
    ap.add_argument("--summary", action="store_true", help="also print the per-gain summary table on stdout")
    ap.add_argument("--dpi", type=int, default=DPI, help=f"resolution of the figures (default {DPI}; 30 to 600)")
    args = ap.parse_args()
    if not 30 <= args.dpi <= 600:
        return fail(f"--dpi {args.dpi}: allowed: an integer in [30, 600]")
    DPI = args.dpi
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import pandas as pd
    except ImportError as e:
        return fail(f"{e.name} is not importable; pip install pandas matplotlib")

    folder = args.results
    if not os.path.isdir(folder):
        return fail(f"{folder} is not a folder")
    if not os.path.exists(os.path.join(folder, "networks.csv")):
        if not os.path.exists(os.path.join(folder, "manifest.json")):
            return fail(f"{folder} has no networks.csv; is it the folder of `rnnsweep run` or `rnnsweep lyapunov`?")
        snapshot = os.path.join(folder, "partial")
        if not os.path.exists(os.path.join(snapshot, "networks.csv")):
            return fail(f"{folder} has no networks.csv: the run is unfinished; `rnnsweep tables {folder}` writes "
                        f"the tables of its finished networks into {snapshot}, `rnnsweep run --resume {folder}` "
                        "finishes it")
        # an unfinished run: its finished networks, as `rnnsweep tables` (or the interruption) left them
        print(f"plot.py: {folder} is unfinished: drawing the tables of its finished networks in {snapshot} "
              f"(`rnnsweep tables {folder}` refreshes them)")
        folder = snapshot
    partial = read_partial(folder)
    if partial:
        print(f"plot.py: partial tables: {partial}")
    try:
        r = Results(folder, pd)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        return fail(f"{folder}: a table cannot be read: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    except (ValueError, KeyError) as e:
        return fail(str(e).splitlines()[0] if str(e) else f"{folder}/networks.csv cannot be read")

    out = args.out or os.path.join(folder, "plots")
    # the figures this folder can give: max_le_training.png only where spectra were tracked
    # and alignment.png only where the sweep measured it
    gives = {"max_le_training.png": r.lyapunov_curves is not None, "alignment.png": has_alignment(r),
             "psychometric.png": r.psychometric is not None}
    names = tuple(n for n in FIGURES if gives.get(n, True)) + (SUMMARY_CSV,)
    existing = [n for n in names if os.path.exists(os.path.join(out, n))] if not args.force else []
    if existing and len(existing) == len(names):
        return fail(f"{os.path.join(out, existing[0])} exists (and every other plot); pass --force to replace them")
    os.makedirs(out, exist_ok=True)

    drawers = {
        "learning_curves.png": lambda p: draw_learning_curves(r, p, plt),
        "max_le.png": lambda p: draw_max_le(r, p, plt),
        "max_le_training.png": lambda p: draw_max_le_training(r, p, plt),
        "alignment.png": lambda p: draw_alignment(r, p, plt),
        "psychometric.png": lambda p: draw_psychometric(r, p, plt),
        "flossing.png": lambda p: draw_flossing(r, p, plt),
        "heatmap_tail_loss.png": lambda p: draw_heatmap(r, p, plt, "tail_loss", "tail loss"),
        "heatmap_tail_accuracy.png": lambda p: draw_heatmap(r, p, plt, "tail_accuracy", "tail accuracy"),
    }
    drawn, failed, kept = 0, 0, 0
    for name in FIGURES:
        path = os.path.join(out, name)
        if name in existing:  # drawn before: kept; the missing figures are drawn
            print(f"{name}: exists, kept (--force replaces it)")
            kept += 1
            continue
        try:
            drawers[name](path)
        except NotDrawn as e:
            print(f"{name}: not drawn: {e}")
            continue
        except Exception as e:  # one figure's failure must not cost the others
            failed += 1
            plt.close("all")
            print(f"{name}: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        drawn += 1
        print(f"{name}: wrote {path} ({os.path.getsize(path) // 1024} KB)")
    try:
        if SUMMARY_CSV in existing:
            raise FileExistsError
        table = gain_summary(r)
        table.to_csv(os.path.join(out, SUMMARY_CSV), index=False)
        print(f"{SUMMARY_CSV}: wrote {os.path.join(out, SUMMARY_CSV)}")
        if args.summary:
            print()
            print_summary(table, r.trained and r.summary is not None)
    except FileExistsError:
        print(f"{SUMMARY_CSV}: exists, kept (--force replaces it)")
    except Exception as e:
        failed += 1
        print(f"{SUMMARY_CSV}: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
    if not drawn and not kept:
        print(f"plot.py: no figure could be drawn from {folder}", file=sys.stderr)
    return 1 if failed or not (drawn or kept) else 0


if __name__ == "__main__":
    sys.exit(main())
