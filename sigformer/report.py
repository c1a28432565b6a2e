"""Plots people would rather look at than read: confusion matrices, learning curves (train and
validation, with the chance level), accuracy-vs-SNR chance lines, shared colour scales for grids
of images, and before/after plots for enhancement."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def pyplot():
    # no backend switch here: headless sessions fall back to Agg by themselves, and notebooks
    # keep their inline backend
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(cm: np.ndarray, classes: Sequence[str], path=None, title: str = ""):
    """Counts with row-normalised percentages; saved as PNG when ``path`` is given."""
    plt = pyplot()
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


def chance_level(y=None, n_classes: int | None = None) -> float:
    """Accuracy of always predicting the majority class of ``y`` (or ``1 / n_classes``)."""
    if y is not None:
        counts = np.unique(np.asarray(y), return_counts=True)[1]
        return float(counts.max() / counts.sum())
    if not n_classes or n_classes < 1:
        raise ValueError("chance_level needs labels y or n_classes >= 1")
    return 1.0 / n_classes


def add_chance_line(ax, chance: float, label: str | None = None, **kwargs):
    """Dashed horizontal line at the chance accuracy (learning curves, accuracy vs SNR)."""
    style = {"color": "grey", "ls": "--", "lw": 1.2, **kwargs}
    return ax.axhline(chance, label=label or f"chance ({chance:.2f})", **style)


def plot_learning_curves(histories: Sequence[Sequence[dict]], path=None, title: str = "",
                         chance: float | None = None):
    """Training and validation loss and accuracy per epoch, one faint line per fold and their
    mean; ``chance`` draws the chance accuracy on the accuracy panel, and the epoch whose
    weights were restored (``best_epoch`` rows) is marked."""
    plt = pyplot()
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
                    lw=2, label=f"{'validation' if prefix == 'val' else prefix} "
                                f"(mean of {len(curves)})")
        if key == "acc" and chance is not None:
            add_chance_line(ax, chance)
        ax.set(xlabel="epoch", ylabel=key, title=f"{title} {key}".strip())
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    if path is not None:
        fig.savefig(Path(path), dpi=110)
        plt.close(fig)
    return fig


def shared_color_limits(arrays: Sequence[np.ndarray], symmetric: bool = False,
                        percentile: float = 100.0) -> tuple[float, float]:
    """One ``(vmin, vmax)`` for several images so their colours compare (finite values only;
    ``percentile`` < 100 clips outliers; ``symmetric`` centres the scale on 0)."""
    values = np.concatenate([np.asarray(a, dtype=float).ravel() for a in arrays])
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("shared_color_limits got no finite values")
    if symmetric:
        vmax = float(np.percentile(np.abs(values), percentile))
        return -vmax, vmax
    return (float(np.percentile(values, 100 - percentile)),
            float(np.percentile(values, percentile)))


def imshow_grid(images: Sequence[np.ndarray], titles: Sequence[str] | None = None, path=None,
                ncols: int = 3, cmap: str = "viridis", label: str = "", symmetric: bool = False,
                suptitle: str = ""):
    """Images on one shared colour scale with a single colour bar for the whole grid."""
    plt = pyplot()
    vmin, vmax = shared_color_limits(images, symmetric=symmetric)
    nrows = int(np.ceil(len(images) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols + 1, 2.6 * nrows),
                             squeeze=False)
    im = None
    for i, ax in enumerate(axes.ravel()):
        if i >= len(images):
            ax.axis("off")
            continue
        im = ax.imshow(np.asarray(images[i]), aspect="auto", origin="lower", cmap=cmap,
                       vmin=vmin, vmax=vmax, interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.colorbar(im, ax=axes.ravel().tolist(), label=label, shrink=0.9)
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def plot_accuracy_vs_snr(snr_db: Sequence[float], accuracies: dict[str, Sequence[float]],
                         chance: float, path=None, title: str = ""):
    """Accuracy per SNR for several models, with the chance line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, acc in accuracies.items():
        ax.plot(snr_db, acc, marker="o", label=name)
    add_chance_line(ax, chance)
    ax.set(xlabel="SNR (dB)", ylabel="accuracy", ylim=(0, 1.02), title=title or "accuracy vs SNR")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def plot_enhancement(before: np.ndarray, after: np.ndarray, sfreq: float,
                     reference: np.ndarray | None = None, path=None, title: str = "",
                     nperseg: int | None = None):
    """Waveforms (top) and spectrograms on one shared dB scale (bottom) of a signal before and
    after enhancement (and the clean reference when known)."""
    from scipy.signal import spectrogram

    plt = pyplot()
    signals = {"before": before, "after": after}
    if reference is not None:
        signals["reference"] = reference
    signals = {k: np.asarray(v, dtype=float).ravel() for k, v in signals.items()}
    nperseg = nperseg or min(512, max(16, int(sfreq * 0.032)))
    specs = {}
    for name, x in signals.items():
        f, t, sxx = spectrogram(x, fs=sfreq, nperseg=min(nperseg, len(x)))
        specs[name] = (f, t, 10 * np.log10(sxx + 1e-12))
    vmin, vmax = shared_color_limits([s[2] for s in specs.values()], percentile=99.5)
    vmin = max(vmin, vmax - 80)  # an 80 dB range keeps silence from washing out the speech
    fig, axes = plt.subplots(2, len(signals), figsize=(4.2 * len(signals) + 1, 5.5),
                             squeeze=False)
    im = None
    for col, (name, x) in enumerate(signals.items()):
        axes[0, col].plot(np.arange(len(x)) / sfreq, x, lw=0.5)
        axes[0, col].set(title=name, xlabel="time (s)")
        f, t, db = specs[name]
        im = axes[1, col].pcolormesh(t, f, db, vmin=vmin, vmax=vmax, shading="auto")
        axes[1, col].set(xlabel="time (s)", ylabel="frequency (Hz)")
    fig.colorbar(im, ax=axes[1].tolist(), label="power (dB)")
    if title:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def plot_codebook_usage(counts: np.ndarray, path=None, title: str = ""):
    """Code usage sorted by frequency (log scale), with usage and perplexity in the title."""
    plt = pyplot()
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
    plt = pyplot()
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
