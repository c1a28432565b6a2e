"""Warnings for a training run that ended with a collapsed model.

A model can finish training without an error and still be useless: it predicts one class for
everything, its channel estimates are no better than predicting zero, its codebook uses a
handful of codes, or its "separated" output is worse than the mixture. Task runners call these
checks on their validation results; each warning names the symptom and the usual causes.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np


class CollapseWarning(UserWarning):
    """The trained model shows a symptom of collapse."""


def _warn(symptom: str, causes: str) -> str:
    message = f"{symptom}. Usual causes: {causes}."
    warnings.warn(message, CollapseWarning, stacklevel=3)
    return message


def check_predictions(predictions: Sequence, *, min_share: float = 0.98) -> str | None:
    """Constant predictions: one class takes >= ``min_share`` of all predictions."""
    values, counts = np.unique(np.asarray(predictions), return_counts=True)
    if len(counts) == 0:
        return None
    share = counts.max() / counts.sum()
    label = values[counts.argmax()]
    label = label.item() if isinstance(label, np.generic) else label  # 'a', not np.str_('a')
    if share >= min_share and counts.sum() >= 10:
        return _warn(f"the model predicts {label!r} for {share:.0%} of "
                     f"{counts.sum()} examples (constant predictions)",
                     "too few training steps, a learning rate far too high or too low, input "
                     "scaling off by orders of magnitude (volts vs microvolts), or a strong "
                     "class imbalance without weighting")
    return None


def check_nmse(nmse_db: float, *, threshold_db: float = -1.0) -> str | None:
    """Channel estimates no better than zero: NMSE near 0 dB."""
    if np.isfinite(nmse_db) and nmse_db > threshold_db:
        return _warn(f"the channel estimator's NMSE is {nmse_db:.2f} dB, about what predicting "
                     f"zero gives (0 dB)",
                     "too few training steps or slots, a learning rate too high, or pilots/"
                     "targets on different scales (normalise the grids)")
    return None


def check_codebook(usage: float, n_codes: int, perplexity: float | None = None, *,
                   min_usage: float = 0.05) -> str | None:
    """A codebook that uses only a few of its codes."""
    used = usage * n_codes
    if usage < min_usage or used < 4:
        extra = "" if perplexity is None else f", perplexity {perplexity:.1f}"
        return _warn(f"the codebook uses {used:.0f} of its {n_codes} codes ({usage:.1%}"
                     f"{extra})",
                     "codes initialised far from the data (use k-means initialisation), no "
                     "dead-code restart, a commitment weight too high, or too few training "
                     "steps")
    return None


def check_separation(si_sdri_db: float | Sequence[float], *, min_db: float = 0.0
                     ) -> str | None:
    """Separated sources no better than the mixture (SI-SDR improvement <= 0 dB)."""
    value = float(np.mean(si_sdri_db))
    if np.isfinite(value) and value <= min_db:
        return _warn(f"the separated sources are {value:.2f} dB SI-SDR from the mixture's "
                     f"(no improvement)",
                     "too few training steps, mixtures or speakers, a learning rate too high, "
                     "or a sample rate different from training")
    return None


def check_enhancement(gain_db: float, *, min_db: float = 0.0) -> str | None:
    """Enhanced speech no better than the reference microphone."""
    if np.isfinite(gain_db) and gain_db <= min_db:
        return _warn(f"the enhanced output is {gain_db:+.2f} dB SI-SDR against the unprocessed "
                     f"reference microphone (no improvement)",
                     "too few training steps or scenes, array geometry different from "
                     "training, or a learning rate too high")
    return None
