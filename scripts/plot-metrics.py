#!/usr/bin/python3
"""Plots bin/train's JSON Lines metrics against step: loss and validation loss, validation
accuracy or RMSE when the run measured them, learning rate, gradient norm, tokens/s and MFU.
Several runs are overlaid, each labelled by its file name.

    scripts/plot-metrics.py data/demo-metrics.jsonl [more.jsonl ...] -o run.png

Needs Debian's python3-matplotlib (scripts/install-deps.sh installs it).
"""
import argparse
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402


def read_run(path):
    steps, vals = [], []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"plot-metrics: {path} line {n} is not JSON ({e}): is it a metrics file "
                         f"written by bin/train --metrics?")
            if "event" in rec:
                continue
            (vals if "val_loss" in rec else steps).append(rec)
    if not steps:
        sys.exit(f"plot-metrics: {path} holds no step records: pass the file bin/train "
                 f"--metrics wrote")
    return steps, vals


def series(records, key):
    xs, ys = [], []
    for r in records:
        v = r.get(key)
        if isinstance(v, (int, float)) and math.isfinite(v):
            xs.append(r["step"])
            ys.append(v)
    return xs, ys


def smoothed(ys, weight):
    """Exponential moving average, debiased at the start (as TensorBoard's smoothing)."""
    out, avg = [], 0.0
    for i, y in enumerate(ys, 1):
        avg = weight * avg + (1 - weight) * y
        out.append(avg / (1 - weight ** i))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("metrics", nargs="+", help="JSON Lines files written by bin/train --metrics")
    p.add_argument("-o", "--out", required=True, help="the PNG to write")
    p.add_argument("--title", default=None, help="figure title (default: the files' names)")
    p.add_argument("--smooth", type=float, default=0.9,
                   help="moving-average weight in [0, 1) for the per-step curves, drawn over the "
                        "raw ones (0: raw only)")
    a = p.parse_args()
    runs = [(os.path.splitext(os.path.basename(m))[0], *read_run(m)) for m in a.metrics]

    panels = [("loss", "loss (train, and validation dashed)"), ("lr", "learning rate"),
              ("grad_norm", "gradient norm (before clipping)"), ("tokens_per_s", "tokens/s"),
              ("mfu", "MFU")]
    has_acc = any(series(v, "val_accuracy")[0] for _, _, v in runs)
    has_rmse = any(series(v, "val_rmse")[0] for _, _, v in runs)
    if has_acc:
        panels.insert(1, ("val_accuracy", "validation accuracy"))
    if has_rmse:
        panels.insert(1, ("val_rmse", "validation RMSE"))
    cols = 2
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(12, 3.2 * rows), squeeze=False)
    for ax, (key, title) in zip(axes.flat, panels):
        for i, (name, steps, vals) in enumerate(runs):
            color = f"C{i}"
            if key in ("val_accuracy", "val_rmse"):
                xs, ys = series(vals, key)
                if xs:
                    ax.plot(xs, ys, "o-", color=color, label=name)
                continue
            xs, ys = series(steps, key)
            if xs and key != "lr" and 0 < a.smooth < 1:
                ax.plot(xs, ys, color=color, lw=0.6, alpha=0.25)
                ax.plot(xs, smoothed(ys, a.smooth), color=color, lw=1.2, label=name)
            elif xs:
                ax.plot(xs, ys, color=color, lw=1.2, label=name)
            if key == "loss":
                vx, vy = series(vals, "val_loss")
                if vx:
                    ax.plot(vx, vy, "o--", color=color, label=f"{name} (val)")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if key == "loss":
            ax.legend(fontsize="small")
        if key == "mfu":
            ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        if key == "val_accuracy":
            ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(a.title or ", ".join(name for name, _, _ in runs))
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"plot-metrics: {len(runs)} run(s), {sum(len(s) for _, s, _ in runs)} steps -> {a.out}")


if __name__ == "__main__":
    main()
