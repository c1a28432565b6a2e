"""Plots people would rather look at than read: confusion matrices and learning curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    # no backend switch here: headless sessions fall back to Agg by themselves, and notebooks
    # keep their inline backend
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(cm: np.ndarray, classes: Sequence[str], path=None, title: str = ""):
    """Counts with row-normalised percentages; saved as PNG when ``path`` is given."""
    plt = _pyplot()
    cm = np.asarray(cm)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 2.5, 1.2 * len(classes) + 2))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{cm[i, j]}\n{100 * norm[i, j]:.0f}%", ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xticklabels=classes,
           yticklabels=classes, xlabel="predicted", ylabel="true", title=title or "confusion")
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true class")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def plot_learning_curves(histories: Sequence[Sequence[dict]], path=None, title: str = ""):
    """Training loss and accuracy per epoch, one faint line per fold and their mean."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key in zip(axes, ("loss", "acc")):
        for prefix, color in (("train", "tab:blue"), ("val", "tab:orange")):
            curves = [[e[f"{prefix}_{key}"] for e in h if f"{prefix}_{key}" in e]
                      for h in histories]
            curves = [c for c in curves if c]
            if not curves:
                continue
            for c in curves:
                ax.plot(np.arange(1, len(c) + 1), c, color=color, alpha=0.25, lw=1)
            n = min(len(c) for c in curves)
            ax.plot(np.arange(1, n + 1), np.mean([c[:n] for c in curves], axis=0), color=color,
                    lw=2, label=f"{prefix} (mean of {len(curves)})")
        ax.set(xlabel="epoch", ylabel=key, title=f"{title} {key}".strip())
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    if path is not None:
        fig.savefig(Path(path), dpi=110)
        plt.close(fig)
    return fig


def plot_codebook_usage(counts: np.ndarray, path=None, title: str = ""):
    """Code usage sorted by frequency (log scale), with usage and perplexity in the title."""
    plt = _pyplot()
    counts = np.asarray(counts, dtype=float)
    p = counts / max(counts.sum(), 1)
    nz = p[p > 0]
    perplexity = float(np.exp(-(nz * np.log(nz)).sum())) if nz.size else 0.0
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.bar(np.arange(len(counts)), np.sort(counts)[::-1], width=1.0, color="tab:blue")
    ax.set_yscale("log")
    ax.set(xlabel="code (sorted by use)", ylabel="count",
           title=f"{title} codebook: {int((counts > 0).sum())}/{len(counts)} codes used, "
                 f"perplexity {perplexity:.1f}".strip())
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def plot_token_grid(ids: np.ndarray, labels=None, classes=None, n_channels: int = 1,
                    path=None, title: str = "", per_class: int = 4):
    """Token ids of a few windows per class as images (rows: channels, columns: frames)."""
    plt = _pyplot()
    ids = np.asarray(ids)
    labels = np.zeros(len(ids), int) if labels is None else np.asarray(labels)
    classes = classes or [str(c) for c in np.unique(labels)]
    picks = [(c, i) for c in range(len(classes)) for i in np.flatnonzero(labels == c)[:per_class]]
    fig, axes = plt.subplots(len(classes), per_class, figsize=(2.2 * per_class,
                                                              1.0 + 0.9 * len(classes)),
                             squeeze=False)
    vmax = ids.max() if ids.size else 1
    for ax in axes.ravel():
        ax.axis("off")
    counters = {c: 0 for c in range(len(classes))}
    for c, i in picks:
        ax = axes[c, counters[c]]
        counters[c] += 1
        ax.imshow(ids[i].reshape(n_channels, -1), aspect="auto", cmap="tab20", vmin=0,
                  vmax=vmax, interpolation="nearest")
        ax.set_title(f"{classes[c]} #{i}", fontsize=8)
    fig.suptitle(f"{title} token ids (rows: channels, columns: frames)".strip(), fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig
