#!/usr/bin/env python3
"""Figures of a sweep's results, in the spirit of the study's figures.

    scripts/plot.py RESULTS_DIR        (needs pandas and matplotlib: pip install pandas matplotlib)

Writes into RESULTS_DIR/plots/ (never over an existing file unless --force):
- learning_curves.png: mean loss across seeds against iteration, one line per gain, at the best
  lr of that gain (summary.csv), one panel per (task, rule), without flossing (figures 1, 2, 5);
- max_le.png: max Lyapunov exponent before and after training against gain, per task and
  rule, mean across networks (figure 3);
- flossing.png: tail loss at the best lr against gain, with and without flossing, per task and
  rule (figure 4; only when the sweep has both floss values).
Everything is read from the CSV files as pandas reads them, with no options.
"""
import argparse
import os
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", help="a folder written by rnnsweep run")
    ap.add_argument("--force", action="store_true", help="replace existing plots")
    args = ap.parse_args()
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import pandas as pd
    except ImportError as e:
        print(f"plot.py: {e.name} is not importable; pip install pandas matplotlib", file=sys.stderr)
        return 2
    for name in ("networks.csv", "curves.csv", "summary.csv"):
        if not os.path.exists(os.path.join(args.results, name)):
            print(f"plot.py: {args.results} has no {name}; is it the folder of a finished `rnnsweep run`?",
                  file=sys.stderr)
            return 2
    out = os.path.join(args.results, "plots")
    os.makedirs(out, exist_ok=True)
    targets = [os.path.join(out, f) for f in ("learning_curves.png", "max_le.png", "flossing.png")]
    existing = [t for t in targets if os.path.exists(t)]
    if existing and not args.force:
        print(f"plot.py: {existing[0]} exists; pass --force to replace the plots", file=sys.stderr)
        return 2

    networks = pd.read_csv(os.path.join(args.results, "networks.csv"))
    curves = pd.read_csv(os.path.join(args.results, "curves.csv"))
    summary = pd.read_csv(os.path.join(args.results, "summary.csv"))
    tasks = list(dict.fromkeys(networks["task"]))
    rules = list(dict.fromkeys(networks["rule"]))
    gains = sorted(networks["gain"].unique())
    colors = {g: plt.cm.viridis(i / max(1, len(gains) - 1)) for i, g in enumerate(gains)}

    def panels():
        fig, axes = plt.subplots(len(tasks), len(rules), figsize=(4 * len(rules), 3 * len(tasks)), squeeze=False)
        for i, task in enumerate(tasks):
            for j, rule in enumerate(rules):
                axes[i][j].set_title(f"{task}, {rule}")
        return fig, axes

    # Learning curves at each gain's best lr, flossing off.
    best = summary[~summary["floss"]][["task", "rule", "gain", "best_lr"]]
    chosen = networks[~networks["floss"]].merge(best, left_on=["task", "rule", "gain", "lr"],
                                                right_on=["task", "rule", "gain", "best_lr"])
    data = curves.merge(chosen[["network", "task", "rule", "gain"]], on="network")
    fig, axes = panels()
    for i, task in enumerate(tasks):
        for j, rule in enumerate(rules):
            ax = axes[i][j]
            sub = data[(data["task"] == task) & (data["rule"] == rule)]
            for g, rows in sub.groupby("gain"):
                mean = rows.groupby("iteration")["loss"].mean()
                ax.plot(mean.index, mean.values, color=colors[g], label=f"g = {g:g}")
            ax.set_yscale("log")
            ax.set_xlabel("iteration")
            ax.set_ylabel("loss")
    axes[0][-1].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(targets[0], dpi=120)

    # Max LE before and after training.
    fig, axes = panels()
    ok = networks[networks["status"] == "ok"]
    for i, task in enumerate(tasks):
        for j, rule in enumerate(rules):
            ax = axes[i][j]
            sub = ok[(ok["task"] == task) & (ok["rule"] == rule)].groupby("gain")
            ax.plot(sub["max_le_init"].mean(), "o-", color="gray", label="before training")
            ax.plot(sub["max_le_trained"].mean(), "o-", color="C3", label="after training")
            ax.axhline(0, color="k", lw=0.5)
            ax.set_xlabel("gain g")
            ax.set_ylabel("max LE (per step)")
    axes[0][-1].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(targets[1], dpi=120)

    # Flossing: tail loss at the best lr with and without it.
    if summary["floss"].nunique() == 2:
        fig, axes = panels()
        for i, task in enumerate(tasks):
            for j, rule in enumerate(rules):
                ax = axes[i][j]
                for floss, style in ((False, "o-"), (True, "s--")):
                    sub = summary[(summary["task"] == task) & (summary["rule"] == rule) & (summary["floss"] == floss)]
                    ax.errorbar(sub["gain"], sub["tail_loss_mean"], yerr=sub["tail_loss_std"], fmt=style,
                                label="flossed" if floss else "not flossed", capsize=2)
                ax.set_yscale("log")
                ax.set_xlabel("gain g")
                ax.set_ylabel("tail loss (best lr)")
        axes[0][-1].legend(fontsize="small")
        fig.tight_layout()
        fig.savefig(targets[2], dpi=120)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
