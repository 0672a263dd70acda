#!/usr/bin/python3
"""Draws what a model looked at, from a file bin/attention wrote (docs/attention.md).

    scripts/plot-attention.py maps.h5 -o attention.png [--samples 16]

- images: each sample with the attention rollout of what the head reads (the class token's row,
  or the mean of every row under --pool mean) over the patch grid, laid over the image, titled
  with the predicted and the true class;
- texts and prompts: the tokens coloured by that rollout, and the last layer's attention
  (heads averaged) as a token-by-token heat map of the first sample;
- series: each series with every time step shaded by its importance.

Needs Debian's python3-h5py and python3-matplotlib.
"""
import argparse
import sys

import h5py
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def text_of(attr):
    return attr.decode() if isinstance(attr, bytes) else str(attr)


def importance(f, i):
    """Per input position (class token excluded): the rollout row the head reads."""
    roll = f["rollout"][i]
    cls = int(f.attrs["has_cls"])
    n = roll.shape[0]
    if "lengths" in f:
        n = cls + int(f["lengths"][i])
    if text_of(f.attrs["task"]) == "lm":
        row = roll[n - 1, :n]  # what the next-token prediction drew on
    elif cls:
        row = roll[0, :n]
    else:
        row = roll[:n, :n].mean(axis=0)
    w = row[cls:]
    span = w.max() - w.min()  # shown relative: the least looked-at 0, the most 1
    return (w - w.min()) / span if span > 0 else np.zeros_like(w)


def label(f, i, names):
    def name(k):
        return names[k] if k < len(names) else str(k)
    if "predicted" in f and "labels" in f:
        p, t = int(f["predicted"][i]), int(f["labels"][i])
        return f"pred {name(p)}\ntrue {name(t)}" + ("" if p == t else "  (wrong)")
    if "predictions" in f:
        return "pred " + ", ".join(f"{v:.2f}" for v in f["predictions"][i][:3])
    return f"sample {int(f['sample_index'][i])}"


def token_text(t):
    if t == 256:
        return "<|eot|>"
    c = chr(t) if 32 <= t < 127 else {10: "\\n", 9: "\\t"}.get(t, f"<{t}>")
    return c


def plot_images(f, n, names, out):
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.5 * rows), squeeze=False)
    patch = int(f.attrs["patch"])
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = f["inputs"][i]
        H, W, C = img.shape
        grid = importance(f, i).reshape(H // patch, W // patch)
        heat = np.kron(grid, np.ones((patch, patch)))
        rgb = C in (3, 4)  # else grey: one channel, or the mean of several
        ax.imshow(img if rgb else img.mean(axis=-1), cmap=None if rgb else "gray")
        ax.imshow(heat, cmap="inferno", alpha=0.5, extent=(-0.5, W - 0.5, H - 0.5, -0.5))
        ax.set_title(label(f, i, names), fontsize=9)
    fig.suptitle("attention rollout over the patches (bright: looked at)")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(out, dpi=110)


def plot_texts(f, n, names, out):
    fig = plt.figure(figsize=(13, 1.2 * n + 5))
    cmap = plt.get_cmap("YlOrRd")
    for i in range(n):
        tokens = [int(t) for t in f["inputs"][i]]
        w = importance(f, i)
        tokens = tokens[:len(w)]
        ax = fig.add_axes([0.02, 1 - (i + 1) * 0.9 / (n + 4), 0.96, 0.8 / (n + 4)])
        ax.axis("off")
        x = 0.0
        ax.text(0, 0.9, label(f, i, names).replace("\n", " | "), fontsize=8, va="top")
        for t, v in zip(tokens, w):
            s = token_text(t)
            ax.text(x, 0.2, s, fontsize=9, family="monospace",
                    bbox=dict(facecolor=cmap(float(v)), edgecolor="none", pad=0.5))
            x += 0.0072 * max(1, len(s))
            if x > 0.98:
                break
    ax = fig.add_axes([0.25, 0.03, 0.5, 3.2 / (n + 4)])
    att = f["attention"][0][-1].mean(axis=0)
    m = len(importance(f, 0)) + int(f.attrs["has_cls"])
    im = ax.imshow(att[:m, :m], cmap="viridis")
    ax.set_title("first sample: last layer's attention, heads averaged (row: query)", fontsize=9)
    fig.colorbar(im, ax=ax)
    fig.savefig(out, dpi=110)


def plot_series(f, n, names, out):
    fig, axes = plt.subplots(n, 1, figsize=(10, 1.8 * n), squeeze=False)
    for i, ax in enumerate(axes[:, 0]):
        x = f["inputs"][i][:, 0]
        w = importance(f, i)
        for t, v in enumerate(w):
            ax.axvspan(t - 0.5, t + 0.5, color=plt.get_cmap("Oranges")(float(v)), lw=0)
        ax.plot(x, color="black", lw=1)
        ax.set_ylabel(label(f, i, names), fontsize=7, rotation=0, ha="right")
    axes[-1, 0].set_xlabel("time step (shaded by attention rollout)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("maps", help="the HDF5 file bin/attention wrote")
    p.add_argument("-o", "--out", required=True, help="the PNG to write")
    p.add_argument("--samples", type=int, default=16, help="draw at most this many samples")
    a = p.parse_args()
    try:
        f = h5py.File(a.maps, "r")
    except OSError as e:
        sys.exit(f"plot-attention: cannot read {a.maps} ({e}): pass a file bin/attention wrote")
    with f:
        if int(f.attrs.get("format_version", 0)) != 1 or "rollout" not in f:
            sys.exit(f"plot-attention: {a.maps} is not an attention file (docs/attention.md)")
        n = min(a.samples, f["rollout"].shape[0])
        names = [s for s in text_of(f.attrs.get("class_names", "")).split("\n") if s]
        kind = text_of(f.attrs["kind"])
        if kind == "image":
            plot_images(f, n, names, a.out)
        elif kind == "series":
            plot_series(f, n, names, a.out)
        else:
            plot_texts(f, n, names, a.out)
    print(f"plot-attention: {n} {kind} sample(s) -> {a.out}")


if __name__ == "__main__":
    main()
