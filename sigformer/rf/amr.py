"""Automatic modulation recognition: per-SNR evaluation, complexity measures, real captures
(symbol-rate estimation and resampling, SigMF classification, grouped-by-capture evaluation).

Training lives in :mod:`sigformer.recipes.amr` (the SKD trainer, on-the-fly generation, the
``task: amr`` pipeline); its entry points are re-exported here, loaded on first use: the
inference half (burst decisions, ``classify_sigmf``) must not pay for Lightning, so a
stream's first burst decision does not wait for the trainers to import.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ..data.sigmf_io import CAPTURE_NORMALIZATION, check_min_power_db

if TYPE_CHECKING:  # for annotations and type checkers: these modules load Lightning
    from ..bundle import Bundle
    from ..data.modgen import ModGenConfig
    from ..data.radioml import AMRDataset
    from ..recipes.amr import StreamRecipe, distillation_loss, train_amr  # see __getattr__
    from ..training import History

__all__ = ["HIGH_SNR_DB", "BurstGroup", "BurstGroups", "accuracy_by_parameter",
           "accuracy_by_snr", "burst_decision", "capture_dataset", "classify_sigmf",
           "condition_capture", "count_flops", "distillation_loss", "tone_centre",
           "estimate_samples_per_symbol", "evaluate_amr", "evaluate_by_capture", "frame_bursts",
           "inference_ms_per_frame", "leave_one_capture_out", "load_amr_data",
           "plot_accuracy_by_snr", "run_amr_pipeline", "train_amr"]

HIGH_SNR_DB = 10.0

# the training entry points of sigformer.recipes.amr, re-exported without importing them here
_RECIPE_NAMES = ("BASELINES", "STUDENTS", "GeneratedFrames", "StreamRecipe",
                 "distillation_loss", "fit_stream", "has_finished", "train_amr")


def __getattr__(name: str) -> Any:
    # PEP 562: ``from sigformer.rf.amr import train_amr`` imports the recipe on first use
    if name in _RECIPE_NAMES:
        from ..recipes import amr as recipe

        return getattr(recipe, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_RECIPE_NAMES])


def predict_logits(model: nn.Module, X: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """:func:`sigformer.training.predict_logits`, imported when first called (the training
    module imports Lightning)."""
    from ..training import predict_logits as predict

    return predict(model, X, batch_size)


def accuracy_by_snr(y_true: np.ndarray, y_pred: np.ndarray, snr: np.ndarray
                    ) -> dict[float, float]:
    return {float(s): float(np.mean(y_pred[snr == s] == y_true[snr == s]))
            for s in np.unique(snr)}


def accuracy_by_parameter(data: AMRDataset, y_pred: np.ndarray, mask: np.ndarray | None = None,
                          n_bins: int = 3, min_frames: int = 30) -> dict[str, list[dict]]:
    """Accuracy per equal-count bin of every numeric drawn parameter (``data.params``: sps,
    CFO, phase noise, paths, IQ imbalance, ...), over the frames in ``mask`` (e.g. >= 10 dB)
    where the parameter applies - where a model fails, by impairment. Signed offsets (CFO,
    DC, IQ gain) are binned by magnitude. Parameters with fewer than ``min_frames`` frames or
    a single value are left out. ``{name: [{"low", "high", "n", "accuracy"}, ...]}``."""
    if y_pred.shape != data.y.shape:
        raise ValueError(f"y_pred must hold one prediction per frame ({data.y.shape}), got "
                         f"{y_pred.shape}")
    mask = np.ones(len(data.y), bool) if mask is None else np.asarray(mask, bool)
    correct = y_pred == data.y
    out: dict[str, list[dict]] = {}
    for name, values in sorted(data.params.items()):
        if values.dtype.kind not in "fiu" or name == "snr_db":
            continue
        magnitude = np.abs(values.astype(np.float64))
        ok = mask & np.isfinite(magnitude)
        if ok.sum() < min_frames or np.ptp(magnitude[ok]) == 0:
            continue
        edges = np.unique(np.quantile(magnitude[ok], np.linspace(0, 1, n_bins + 1)))
        # each bin is [edge, next edge), the last one closed
        which = np.clip(np.searchsorted(edges, magnitude[ok], side="right") - 1, 0,
                        len(edges) - 2)
        out[name] = [{"low": float(edges[b]), "high": float(edges[b + 1]),
                      "n": int(np.sum(which == b)),
                      "accuracy": float(np.mean(correct[ok][which == b]))}
                     for b in range(len(edges) - 1) if np.any(which == b)]
    return out


def evaluate_amr(model: nn.Module, data: AMRDataset, high_snr_db: float = HIGH_SNR_DB
                 ) -> dict[str, Any]:
    """Overall and high-SNR accuracy, accuracy per SNR and confusion matrices (the high-SNR
    ones None when no frame is at ``high_snr_db`` or above)."""
    from sklearn.metrics import confusion_matrix

    pred = predict_logits(model, data.X).argmax(1)
    high = data.snr >= high_snr_db
    labels = np.arange(len(data.classes))
    return {
        "accuracy": float(np.mean(pred == data.y)),
        "high_snr_accuracy": float(np.mean(pred[high] == data.y[high])) if high.any() else None,
        "accuracy_by_snr": accuracy_by_snr(data.y, pred, data.snr),
        "confusion": confusion_matrix(data.y, pred, labels=labels),
        "confusion_high_snr": confusion_matrix(data.y[high], pred[high], labels=labels)
        if high.any() else None,
    }


def _accuracy_text(value: float | None) -> str:
    return "n/a (no frame at that SNR)" if value is None else f"{value:.3f}"


def count_flops(model: nn.Module, frame_shape: tuple[int, int]) -> int:
    """Floating-point operations of one forward pass on one frame: torch's FLOP counter
    (matrix multiplications and convolutions, 2 per multiply-accumulate) plus the gate
    matrix products of recurrent layers, which that counter does not see."""
    from torch.utils.flop_counter import FlopCounterMode

    recurrent = 0

    def lstm_hook(module: nn.LSTM, inputs, _output):
        nonlocal recurrent
        x = inputs[0]
        steps = x.shape[1] if module.batch_first else x.shape[0]
        gates = 4 * module.hidden_size
        for layer in range(module.num_layers):
            width = module.input_size if layer == 0 else module.hidden_size
            recurrent += 2 * steps * gates * (width + module.hidden_size)

    hooks = [m.register_forward_hook(lstm_hook) for m in model.modules()
             if isinstance(m, nn.LSTM)]
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *frame_shape))
    finally:
        for h in hooks:
            h.remove()
    return int(counter.get_total_flops()) + recurrent


def inference_ms_per_frame(model: nn.Module, X: np.ndarray, batch_size: int = 256,
                           repeats: int = 3) -> float:
    """Best-of-``repeats`` CPU wall time per frame (ms) for batched inference."""
    predict_logits(model, X[:batch_size], batch_size)  # warm-up
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict_logits(model, X, batch_size)
        best = min(best, time.perf_counter() - t0)
    return 1e3 * best / len(X)


def plot_accuracy_by_snr(results: dict[str, dict[float, float]], path=None, title: str = "",
                         n_classes: int | None = None):
    """Accuracy against SNR, one line per model, with the chance line (``1 / n_classes``)."""
    from ..report import add_chance_line, pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, by_snr in results.items():
        snrs = sorted(by_snr)
        ax.plot(snrs, [by_snr[s] for s in snrs], marker="o", ms=3, label=name)
    if n_classes:
        add_chance_line(ax, 1.0 / n_classes)
    ax.set(xlabel="SNR (dB)", ylabel="accuracy", ylim=(0, 1), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


# --- real captures: symbol rate, centring, resampling -----------------------------------------

def _otsu(values: np.ndarray, bins: int = 64) -> tuple[float, float]:
    """Two-level threshold of ``values`` (Otsu) and its effectiveness (between-class variance
    over total variance, 0..1: near 1 for two clean levels)."""
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = hist / max(hist.sum(), 1)
    w0 = np.cumsum(weight)
    m0 = np.cumsum(weight * centres)
    total_mean, total_var = m0[-1], float(np.var(values))
    between = (total_mean * w0 - m0) ** 2 / np.maximum(w0 * (1 - w0), 1e-12)
    best = int(np.argmax(between[:-1]))
    return float(edges[best + 1]), float(between[best] / max(total_var, 1e-30))


def _runs_by_level(levels: np.ndarray) -> dict[int, np.ndarray]:
    """Lengths of the runs of equal values per value, leaving out the value -1 (inactive)."""
    change = np.flatnonzero(np.diff(levels)) + 1
    bounds = np.concatenate([[0], change, [len(levels)]])
    lengths, values = np.diff(bounds), levels[bounds[:-1]]
    return {int(v): lengths[values == v] for v in np.unique(values) if v >= 0}


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    return np.convolve(x, np.ones(width) / width, mode="same") if width > 1 else x


def _binarise(feature: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, float]:
    """Otsu levels (0/1, -1 where inactive) with 1-2 sample glitches removed."""
    from scipy.ndimage import median_filter

    threshold, separation = _otsu(feature[active])
    levels = median_filter((feature > threshold).astype(np.int64), 5)
    return np.where(active, levels, -1), separation


def _fundamental(runs: dict[int, np.ndarray], min_sps: float, max_sps: float,
                 max_edge_shift: float = 0.15) -> tuple[float | None, float]:
    """The symbol length ``T``: the largest period of which the run lengths are whole
    multiples, allowing one edge shift ``d`` (an asymmetric threshold or rise time lengthens
    the runs of one level by ``d`` and shortens the other's: ``r = k T +- d``, ``|d| <=
    max_edge_shift T``). Score: mean of ``cos(2 pi (r -+ d) / T)`` over the runs up to 16 T
    (runs shorter than 0.7 T score 0), maximised over ``d``. Refined by least squares.
    Returns ``(T, score)``, the score near 1 for a clean fit."""
    levels = sorted(runs)
    runs = {v: runs[v][runs[v] >= min_sps].astype(float) for v in levels}
    runs = {v: r[np.linspace(0, len(r) - 1, 1500).astype(int)] if len(r) > 1500 else r
            for v, r in runs.items()}  # an even subset bounds the cost on long captures
    if sum(len(r) for r in runs.values()) < 4:
        return None, 0.0
    periods = np.exp(np.arange(np.log(min_sps), np.log(max_sps), 0.005))
    sign = {v: (1.0 if i == 0 else -1.0) for i, v in enumerate(levels)}
    resultant = np.zeros(len(periods), complex)
    count = np.zeros(len(periods))
    for v, r in runs.items():
        ratio = r[None, :] / periods[:, None]
        used = ratio <= 16
        fit = used & (ratio >= 0.7)
        phase = np.exp(2j * np.pi * ratio) * fit
        part = phase.sum(axis=1)
        resultant += part if sign[v] > 0 else np.conj(part)  # the shift enters with -+
        count += used.sum(axis=1)
    # max over |phi| <= phi_max of Re(resultant e^{-i phi}) with phi = 2 pi d / T
    phi_max = 2 * np.pi * max_edge_shift
    psi = np.angle(resultant)
    scores = np.abs(resultant) * np.cos(np.maximum(np.abs(psi) - phi_max, 0)) / np.maximum(
        count, 1)
    scores[count < 4] = 0.0
    if scores.max() <= 0:
        return None, 0.0
    best = np.flatnonzero(scores >= 0.9 * scores.max())[-1]
    period = periods[best]
    shift = np.clip(psi[best], -phi_max, phi_max) / (2 * np.pi) * period
    rows, targets = [], []
    for v, r in runs.items():
        used = r[(r <= 16 * period) & (r >= 0.7 * period)]
        k = np.maximum(np.round((used - sign[v] * shift) / period), 1)
        rows += [[kk, sign[v]] for kk in k]
        targets += list(used)
    solution = np.linalg.lstsq(np.array(rows), np.array(targets), rcond=None)[0]
    refined = float(solution[0]) if solution[0] > 0 else float(period)
    return refined, float(scores[best])


def _envelope_feature(iq: np.ndarray, min_sps: float, max_sps: float
                      ) -> tuple[float, float | None, float, np.ndarray, np.ndarray]:
    """The envelope of ``iq`` binarised: ``(separation, T, score, envelope, levels)``."""
    envelope = _smooth(np.abs(iq), 3)
    levels, separation = _binarise(envelope, np.ones(len(iq), bool))
    return (separation, *_fundamental(_runs_by_level(levels), min_sps, max_sps), envelope,
            levels)


def _usable(separation: float, sps: float | None, score: float) -> bool:
    # two clean levels (a unimodal feature splits at best at 2/pi ~ 0.64) and a clean fit
    return sps is not None and separation >= 0.8 and score >= 0.7


def estimate_samples_per_symbol(iq: np.ndarray, *, min_sps: float = 2.0,
                                max_sps: float | None = None, active_db: float = 20.0
                                ) -> dict[str, Any]:
    """Blind symbol-length estimate of a capture of ASK/OOK- or FSK-like bursts.

    Two features are binarised with Otsu's threshold: the envelope (ASK/OOK, over the whole
    capture) and the instantaneous frequency over the loud samples (FSK, after removing the
    DC offset). The envelope is taken both with and without the DC offset removed, and the
    cleaner split kept: removing the mean suits a receiver's DC offset beside a carrier away
    from 0 Hz, but with the carrier near 0 Hz the mean is the signal's own (OOK levels
    ``{0, 1}`` become ``{p, 1 - p}`` in magnitude). Each feature gives run lengths per level;
    the symbol length is the largest period of which they are whole multiples
    (:func:`_fundamental`). The feature with the cleaner fit wins. Returns ``sps`` (None when
    no feature has two clear levels, e.g. PSK/QAM or analog), the ``feature`` used, its
    two-level ``separation`` and the fit ``score``.

    Symbols shorter than 3 samples are not found, whatever ``min_sps`` (the shortest
    period searched): the features are smoothed over 3 samples and the binarised levels
    cleaned of 1-2 sample glitches (a 5-sample median filter), which erases such runs (a
    3-sample filter finds none at 2.5 samples per symbol either, and loses OOK estimates at
    3-5 samples per symbol and 10 dB SNR)."""
    iq = np.asarray(iq)
    iq = iq[np.isfinite(iq)]
    nothing = {"sps": None, "feature": None, "separation": 0.0, "score": 0.0}
    if len(iq) < 64:
        return nothing
    max_sps = max_sps or max(min_sps * 2, len(iq) / 8)
    centred = iq - iq.mean()
    if not np.abs(centred).max() > 0:  # a constant: no levels
        return nothing
    candidates = [_envelope_feature(centred, min_sps, max_sps),
                  _envelope_feature(iq, min_sps, max_sps)]
    # a usable fit first, then the cleaner split (on a tie the DC-removed one)
    separation, sps, score, _, _ = max(candidates, key=lambda c: (_usable(*c[:3]), c[0]))
    results = [("envelope", separation, sps, score)]
    # the frequency feature stays on the DC-removed capture (a DC offset pulls the phase)
    separation, _, _, envelope, levels = candidates[0]
    loud = envelope >= envelope.max() * 10 ** (-active_db / 20)
    if separation > 0.8:
        loud &= levels == 1
    freq = np.zeros(len(iq))
    freq[1:] = np.angle(centred[1:] * np.conj(centred[:-1]))
    freq = _smooth(freq, 3)
    if loud.sum() > 16:
        levels, f_separation = _binarise(freq, loud)
        results.append(("frequency", f_separation, *_fundamental(_runs_by_level(levels),
                                                                 min_sps, max_sps)))
    # the finer structure is the symbol (the envelope of FSK bursts only shows the bursts)
    usable = [r for r in results if _usable(*r[1:])]
    if not usable:
        best = max(results, key=lambda r: r[1])
        return {"sps": None, "feature": best[0], "separation": best[1], "score": best[3]}
    name, separation, sps, score = min(usable, key=lambda r: r[2])
    return {"sps": sps, "feature": name, "separation": separation, "score": score}


def _active_products(iq: np.ndarray, active_db: float) -> tuple[np.ndarray, np.ndarray]:
    """Lag-1 products ``x[k] conj(x[k-1])`` (their angle is the instantaneous frequency) and
    the mask of samples within ``active_db`` of the loudest."""
    iq = np.asarray(iq)
    iq = np.where(np.isfinite(iq), iq, 0)
    power = np.abs(iq[1:]) ** 2
    return iq[1:] * np.conj(iq[:-1]), power >= power.max() * 10 ** (-active_db / 10)


def carrier_offset(iq: np.ndarray, active_db: float = 20.0) -> float:
    """Power-weighted mean instantaneous frequency (cycles/sample) of the active samples."""
    product, active = _active_products(iq, active_db)
    return float(np.angle(np.sum(product[active])) / (2 * np.pi))


def tone_centre(iq: np.ndarray, active_db: float = 20.0, min_separation: float = 0.8
                ) -> float:
    """Carrier frequency (cycles/sample) of the active samples, aware of FSK: where the
    instantaneous frequency has two clean levels (Otsu separation >= ``min_separation``) the
    carrier is midway between the two tones, whatever their shares; otherwise the
    power-weighted mean frequency (:func:`carrier_offset`)."""
    product, active = _active_products(iq, active_db)
    freq = _smooth(np.angle(product) / (2 * np.pi), 3)[active]
    if len(freq) > 16:
        threshold, separation = _otsu(freq)
        low, high = freq[freq <= threshold], freq[freq > threshold]
        if separation >= min_separation and min(len(low), len(high)) >= 0.05 * len(freq):
            return float((np.median(low) + np.median(high)) / 2)
    return float(np.angle(np.sum(product[active])) / (2 * np.pi))


def condition_capture(iq: np.ndarray, target_sps: float, *, sps: float | None = None,
                      centre: bool = True, fine_centre: bool = True,
                      max_denominator: int = 256, min_sps: float = 2.0
                      ) -> tuple[np.ndarray, dict[str, Any]]:
    """Bring a capture to ``target_sps`` samples per symbol before framing: estimate the
    symbol length (or use ``sps``), shift the carrier to 0 Hz, resample by the rational
    factor nearest ``target_sps / sps`` (polyphase, anti-aliased), then (``fine_centre``)
    re-centre at the new rate with :func:`tone_centre`. Returns the conditioned IQ and
    ``info`` (``sps``, ``factor`` = new samples per old sample (exactly ``ratio`` =
    ``(up, down)``), ``carrier_offset``,
    ``fine_offset`` (cycles per new sample), ``estimate``); with no usable estimate the
    capture is only centred (``factor`` 1)."""
    iq = np.asarray(iq, np.complex128)
    estimate = None
    if sps is None:
        estimate = estimate_samples_per_symbol(iq, min_sps=min_sps)
        sps = estimate["sps"]
    offset = carrier_offset(iq) if centre else 0.0
    if offset:
        iq = iq * np.exp(-2j * np.pi * offset * np.arange(len(iq)))
    info = {"sps": sps, "carrier_offset": offset, "estimate": estimate, "factor": 1.0,
            "fine_offset": 0.0}
    if sps is None:
        return iq.astype(np.complex64), info
    ratio = symbol_ratio(target_sps, sps, max_denominator)
    if ratio != 1:
        from ..stages import resample_array  # the one resampler (polyphase Kaiser FIR)

        iq = resample_array(iq, ratio.denominator, ratio.numerator)
    info["factor"] = ratio.numerator / ratio.denominator
    info["ratio"] = (ratio.numerator, ratio.denominator)  # exact, for mapping sample ranges
    if centre and fine_centre:
        # a small error of the first estimate grows by 1 / factor after decimation (0.005
        # cycles/sample at 500 samples per symbol is 0.3 at 8): estimate again at the new
        # rate, midway between FSK tones
        fine = tone_centre(iq)
        iq = iq * np.exp(-2j * np.pi * fine * np.arange(len(iq)))
        info["fine_offset"] = fine
    return iq.astype(np.complex64), info


def _skip_resampled_nan(iq: np.ndarray, bad: np.ndarray, target_sps: float, *,
                        sps: float | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """:func:`condition_capture` for a capture with NaN/Inf samples ``bad`` under
    ``nan_policy="skip"``: a resampler spreads one NaN over its whole filter, so the
    samples are interpolated for the estimate (none with a known ``sps``) and the
    resampling only, and every conditioned sample that an interpolated one reaches through
    the filter (the bad mask resampled by the same filter: nonzero exactly there) is set
    back to NaN, so framing with ``"skip"`` drops those frames and only those."""
    from ..data.sigmf_io import apply_nan_policy

    conditioned, info = condition_capture(apply_nan_policy(iq, "interpolate"), target_sps,
                                          sps=sps)
    reached = bad
    if "ratio" in info and info["factor"] != 1.0:
        from ..stages import resample_array

        up, down = info["ratio"]
        reached = resample_array(bad.astype(np.float64), down, up) != 0
        # and each bad sample's own position (the filter's weight there is never zero)
        reached[np.minimum(np.flatnonzero(bad) * up // down, len(reached) - 1)] = True
    conditioned = conditioned.copy()
    conditioned[reached[:len(conditioned)]] = np.nan
    return conditioned, info


def _recording_iq(recording, path) -> np.ndarray:
    from ..data.io import DataError

    if not recording.is_complex:
        raise DataError(f"{path}: {recording.datatype} holds real samples; modulation "
                        f"recognition needs complex IQ")
    return recording.samples if recording.samples.ndim == 1 else recording.samples[:, 0]


# --- SigMF -----------------------------------------------------------------------------------

def _frequency_edges(annotations, iq: np.ndarray, recording) -> bool:
    """``core:freq_lower_edge``/``core:freq_upper_edge`` (Hz) of each annotation from the
    occupied band (99 % of the power) of its samples; needs ``core:sample_rate``. The band is
    relative to the ``core:frequency`` of the capture segment where the run starts (0 Hz,
    i.e. baseband, when absent)."""
    from ..data.sigmf_io import occupied_band, set_frequency_edges

    rate = recording.sample_rate
    if not rate:
        return False
    for a in annotations:  # each run around its own capture segment's centre (as the stream)
        low, high = occupied_band(iq[a.start:a.start + a.count])
        set_frequency_edges(a, low, high, sample_rate=rate,
                            centre=recording.frequency_at(a.start) or 0.0)
    return True


DECISIONS = ("frame", "burst")


def _check_decision(decision: str, allowed: Sequence[str] = DECISIONS) -> None:
    if decision not in allowed:
        raise ValueError(f"decision must be one of {list(allowed)}, got {decision!r}")


def frame_bursts(starts: np.ndarray, hop: int, max_gap: int = 1) -> np.ndarray:
    """Burst index of each kept frame: consecutive frames (``starts`` on a ``hop`` grid, the
    quiet ones dropped) belong to one burst unless more than ``max_gap`` frames are missing
    between them (a short fade or a dropped frame does not split a transmission)."""
    starts = np.asarray(starts)
    if len(starts) == 0:
        return np.zeros(0, np.int64)
    missing = np.round(np.diff(starts) / hop).astype(np.int64) - 1
    return np.concatenate([[0], np.cumsum(missing > max_gap)]).astype(np.int64)


def carrier_only_frames(frames: np.ndarray, max_envelope_cv: float = 0.1,
                        max_frequency_std: float = 0.02) -> np.ndarray:
    """Frames ``(n, 2, L)`` that hold a steady carrier and nothing else: envelope variation
    (std / mean) below ``max_envelope_cv`` and instantaneous frequency of the loud samples
    steadier than ``max_frequency_std`` cycles/sample. No modulation is visible in them
    (an OOK "on" run, one FSK tone held, an AM/FM source at rest), so a burst decision
    leaves them out of its vote."""
    z = frames[:, 0].astype(np.float64) + 1j * frames[:, 1]
    envelope = np.abs(z)
    cv = envelope.std(1) / np.maximum(envelope.mean(1), 1e-12)
    freq = np.angle(z[:, 1:] * np.conj(z[:, :-1])) / (2 * np.pi)
    loud = envelope[:, 1:] > 0.5 * envelope.max(1, keepdims=True)
    count = np.maximum(loud.sum(1), 1)
    mean = (freq * loud).sum(1) / count
    spread = np.sqrt((((freq - mean[:, None]) ** 2) * loud).sum(1) / count)
    return (cv < max_envelope_cv) & (spread < max_frequency_std)


def log_probabilities(logits: np.ndarray) -> np.ndarray:
    """Log-softmax of model outputs in float64 (what the burst vote averages)."""
    return torch.log_softmax(torch.as_tensor(np.asarray(logits)).double(), 1).numpy()


def _group_probabilities(log_proba: np.ndarray, groups: np.ndarray,
                         informative: np.ndarray | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Group of each frame (0..n_groups-1) and each group's normalised probabilities:
    softmax of the mean log-probability over the group's frames, where only
    ``informative`` frames vote in groups that have any."""
    _, inverse = np.unique(groups, return_inverse=True)
    weight = np.ones(len(log_proba)) if informative is None else informative.astype(float)
    has_any = np.bincount(inverse, weight) > 0
    weight = np.where(has_any[inverse], weight, 1.0)  # no informative frame: all vote
    sums = np.zeros((inverse.max() + 1, log_proba.shape[1]))
    np.add.at(sums, inverse, log_proba * weight[:, None])
    mean = sums / np.bincount(inverse, weight)[:, None]
    mean = np.exp(mean - mean.max(1, keepdims=True))
    return inverse, mean / mean.sum(1, keepdims=True)


def burst_decision(logits: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """The class probabilities of one burst from its frames' model outputs ``logits`` and
    the frames ``(n, 2, L)`` as fed to the model: softmax of the mean log-probability over
    the frames that are not a steady carrier (:func:`carrier_only_frames`; all frames when
    none is); independent frames make its argmax the most likely class of the whole burst.
    The one decision of ``classify_sigmf(decision="burst")``, ``evaluate_by_capture`` and
    the IQ stream."""
    _, mean = _group_probabilities(log_probabilities(logits), np.zeros(len(frames), np.int64),
                                   informative=~carrier_only_frames(frames))
    return mean[0]


@dataclass
class BurstGroup:
    """Frames decided together: their frame indices, what the caller attached to each, and
    whether the group starts a burst (False: it continues one cut at ``max_burst_frames``)."""

    indices: list[int]
    items: list[Any]
    new_burst: bool


class BurstGroups:
    """Causal grouping of frames (indices on the hop grid, increasing) into bursts, for
    ``classify_sigmf`` (frames gated beforehand) and the IQ stream (gated here).

    A burst is a run of kept frames with at most ``max_gap`` quiet or missing frames
    between them (as :func:`frame_bursts`). Its frames are held and handed back as a
    :class:`BurstGroup` once it ends (more than ``max_gap`` quiet frames follow), once it
    reaches ``max_burst_frames`` frames (a new group of the same burst starts: this bounds
    the latency and memory on a continuous signal) or at :meth:`flush`.

    ``min_power_db`` (with a ``power`` per frame): a frame more than that many dB below the
    loudest frame pushed so far is quiet, as is a frame with no power at all (a source that
    has not started). When a louder frame arrives, held frames that are now below the gate
    are dropped as if they had been quiet (they were never handed back), so the noise floor
    before the first transmission does not join it; runs of held frames that the dropping
    separates from the newest frames are handed back only at the next frame that does not
    raise the gate again (a burst's partial first frame raises it part of the way, the next
    one all the way: noise frames just above the first gate are dropped by the second, as
    classify-iq's whole-capture gate drops them), or when the running burst reaches
    ``max_burst_frames`` first (groups come back in order); groups handed back are final. The gate
    never decays (classify-iq gates on the loudest frame of the whole capture, and the
    stream must decide as it does): ``n_quiet`` counts the frames below it when they
    arrived, ``n_dropped`` the held frames a louder one dropped."""

    def __init__(self, max_gap: int = 1, max_burst_frames: int | None = None,
                 min_power_db: float | None = None):
        if isinstance(max_gap, bool) or not isinstance(max_gap, (int, np.integer)) \
                or max_gap < 0:
            raise ValueError(f"max_gap must be a whole number of frames >= 0, got {max_gap!r}")
        if max_burst_frames is not None and (
                isinstance(max_burst_frames, bool)
                or not isinstance(max_burst_frames, (int, np.integer)) or max_burst_frames < 1):
            raise ValueError(f"max_burst_frames must be a whole number of frames >= 1 or None "
                             f"(unbounded), got {max_burst_frames!r}")
        check_min_power_db(min_power_db)
        self.max_gap, self.max_burst_frames = int(max_gap), max_burst_frames
        self.min_power_db = min_power_db
        self.reset()

    def reset(self) -> None:
        self._held: list[tuple[int, float | None, Any]] = []  # (index, power, item)
        # earlier runs a regate split off the held frames, handed back once the gate holds
        self._pending: list[list[tuple[int, float | None, Any]]] = []
        self._rose = False  # the frame being pushed raised the gate
        # last frame already handed back of the burst the first unreleased run continues
        self._anchor: int | None = None
        self._previous = -1
        self.loudest = 0.0
        self.n_bursts = self.n_groups = 0
        self.n_quiet = self.n_dropped = 0

    def _last(self) -> int | None:
        if self._held:
            return self._held[-1][0]
        return self._pending[-1][-1][0] if self._pending else self._anchor

    def _release_pending(self) -> list[BurstGroup]:
        """Hand back the runs a regate split off: the gate held, so they are final. The held
        run is separated from them by a gap, so it starts a burst of its own."""
        if not self._pending:
            return []
        out = [g for run in self._pending for g in self._close(run)]
        self._pending = []
        self._anchor = None
        return out

    def _check(self, index: int) -> None:
        if index <= self._previous:
            raise ValueError(f"frame indices must increase: {index} after {self._previous}")
        self._previous = index

    def _close(self, frames: list) -> list[BurstGroup]:
        if not frames:
            return []
        first = frames[0][0]
        new = self._anchor is None or first - self._anchor - 1 > self.max_gap
        self._anchor = frames[-1][0]
        self.n_groups += 1
        self.n_bursts += new
        return [BurstGroup([f[0] for f in frames], [f[2] for f in frames], new)]

    def _quiet_through(self, index: int) -> list[BurstGroup]:
        """No kept frame after the last one up to ``index``: the burst ends once more than
        ``max_gap`` frames are missing."""
        last = self._last()
        if last is None or index - last <= self.max_gap:
            return []
        out = self._release_pending()
        out, self._held = out + self._close(self._held), []
        self._anchor = None
        return out

    def _regate(self) -> None:
        """Drop unreleased frames now below the gate; a gap they leave splits the frames into
        runs: the newest stays held, the earlier ones wait (pending) until the gate holds."""
        threshold = self.loudest * 10 ** (-self.min_power_db / 10)
        frames = [f for run in self._pending for f in run] + self._held
        kept = [f for f in frames if f[1] >= threshold]
        if len(kept) == len(frames):
            return
        self.n_dropped += len(frames) - len(kept)
        runs: list[list] = []
        current: list = []
        for frame in kept:
            last = current[-1][0] if current else (runs[-1][-1][0] if runs else self._anchor)
            if last is not None and frame[0] - last - 1 > self.max_gap:
                if current:
                    runs.append(current)
                elif not runs:  # the first kept frame no longer continues the handed-back run
                    self._anchor = None
                current = []
            current.append(frame)
        self._pending, self._held = runs, current

    def _is_loud(self, power: float | None) -> tuple[bool, list[BurstGroup]]:
        if self.min_power_db is None:
            return True, []
        if power is None or not np.isfinite(power):
            raise ValueError(f"a power gate (min_power_db={self.min_power_db}) needs each "
                             f"frame's finite power, got {power!r}")
        out = []
        if power > self.loudest:
            self.loudest = float(power)
            self._regate()
            self._rose = True
        else:  # the gate holds: runs split off earlier are final
            out = self._release_pending()
        return power > 0 and power >= self.loudest * 10 ** (-self.min_power_db / 10), out

    def push(self, index: int, item: Any = None, power: float | None = None
             ) -> list[BurstGroup]:
        """Frame ``index`` (with its mean ``power`` when gating); the groups it completes."""
        index = int(index)
        self._check(index)
        loud, out = self._is_loud(power)
        if not loud:
            self.n_quiet += 1
            return out + self._quiet_through(index)
        if self._rose and self._held and index - self._held[-1][0] - 1 > self.max_gap:
            # this frame raised the gate and ends the held run: it waits with the others
            # until the gate holds (the next frame may raise it further and drop it)
            self._pending.append(self._held)
            self._held = []
        self._rose = False
        if self._held or not self._pending:  # else the runs wait, and this frame starts one
            out += self._quiet_through(index - 1)
        self._held.append((index, power, item))
        if self.max_burst_frames is not None and len(self._held) >= self.max_burst_frames:
            out += self._release_pending()
            out += self._close(self._held)
            self._held = []
        return out

    def skip(self, index: int) -> list[BurstGroup]:
        """Frame ``index`` is missing (unusable samples): it counts as quiet."""
        index = int(index)
        self._check(index)
        return self._release_pending() + self._quiet_through(index)

    def flush(self) -> list[BurstGroup]:
        """The end of the frames: the running burst's held frames."""
        out = self._release_pending()
        out, self._held = out + self._close(self._held), []
        self._anchor = None
        return out


def _grid_indices(starts: np.ndarray, hop: int) -> np.ndarray:
    """Increasing frame indices on the ``hop`` grid for increasing frame ``starts``
    (samples): each step is the rounded number of hops between neighbours, as
    :func:`frame_bursts` counts missing frames, and at least 1 (the overlapping frames of two
    annotations stay neighbours, as there)."""
    starts = np.asarray(starts)
    if len(starts) == 0:
        return np.zeros(0, np.int64)
    steps = np.maximum(np.round(np.diff(starts) / hop).astype(np.int64), 1)
    first = int(np.round(starts[0] / hop))
    return np.concatenate([[first], first + np.cumsum(steps)]).astype(np.int64)


def _burst_rows(starts: np.ndarray, hop: int, max_gap: int = 1,
                max_burst_frames: int | None = None) -> list[np.ndarray]:
    """The rows of kept frames (``starts`` increasing, quiet frames already dropped) that
    are decided together, group by group: :class:`BurstGroups`, as the stream groups."""
    grouper = BurstGroups(max_gap, max_burst_frames)  # gated beforehand: no power gate
    groups = [g for k, i in enumerate(_grid_indices(starts, hop)) for g in grouper.push(i, k)]
    return [np.asarray(g.items) for g in groups + grouper.flush()]


def _classifier_parts(model: nn.Module | Bundle, classes: Sequence[str] | None,
                      normalization: str | None) -> tuple[nn.Module, list[str], str]:
    """The network, class names and frame normalisation ``classify_sigmf`` runs with. A
    :class:`~sigformer.bundle.Bundle` brings its labels and the normalisation it was trained
    on (frames scaled otherwise give chance-level predictions); a bare model needs
    ``classes`` and is given frames as RadioML 2016 scales them (``"l1"``) unless told."""
    from ..bundle import Bundle

    if not isinstance(model, Bundle):
        if classes is None:
            raise ValueError("classes (the label of each model output) are needed with a bare "
                             "model; pass the Bundle itself to use its labels")
        return model, list(classes), (CAPTURE_NORMALIZATION if normalization is None
                                      else normalization)
    bundle = model
    if bundle.task != "classify" or bundle.model_spec is None or \
            bundle.model_spec.layout != "iq":
        raise ValueError(f"classify_sigmf needs an IQ classification bundle, got task "
                         f"{bundle.task!r} with input {bundle.model_spec!r}")
    if classes is not None and len(classes) != len(bundle.labels):
        raise ValueError(f"classes names {len(classes)} labels but the bundle has "
                         f"{len(bundle.labels)} outputs ({bundle.labels}); leave classes out "
                         f"to use the bundle's")
    recorded = bundle.frame_normalization
    if normalization is not None and normalization != recorded:
        import warnings

        warnings.warn(f"normalization={normalization!r} overrides the {recorded!r} scaling "
                      f"this bundle was trained on; its predictions may be near chance "
                      f"(leave normalization out to use the bundle's)", UserWarning,
                      stacklevel=3)
    return (bundle.model, list(bundle.labels if classes is None else classes),
            recorded if normalization is None else normalization)


def _check_sps_and_hop(target_sps: float | None, sps: float | None, hop: int | None,
                       hop_s: float | None) -> None:
    """The symbol-length and hop arguments of :func:`classify_sigmf`, checked before any
    file is read."""
    import math

    if sps is not None:
        if not (math.isfinite(sps) and sps > 0):
            raise ValueError(f"sps (the capture's samples per symbol) must be a number > 0, "
                             f"got {sps!r}")
        if target_sps is None:
            raise ValueError(f"sps={sps:g} states the capture's samples per symbol, but there "
                             f"is no target to resample to: give target_sps (--target-sps) "
                             f"or a bundle that records extra['target_sps']")
    if hop is not None and hop_s is not None:
        raise ValueError(f"give the frame hop once: hop={hop} (samples) or hop_s={hop_s:g} "
                         f"(seconds), not both")
    if hop_s is not None and not (math.isfinite(hop_s) and hop_s > 0):
        raise ValueError(f"hop_s must be a number of seconds > 0, got {hop_s!r}")


def hop_samples(hop_s: float, rate: float) -> int:
    """``hop_s`` seconds as a hop in samples at ``rate`` Hz (at least one sample): the one
    rounding ``classify-iq --hop-s`` and the stream's ``hop_s`` share, so a hop in seconds and
    the hop in samples it equals give the same frames in both."""
    return max(1, int(round(hop_s * rate)))


def symbol_ratio(target_sps: float, sps: float, max_denominator: int = 256) -> Fraction:
    """Resampling ratio (new samples per old sample) from ``sps`` to ``target_sps`` samples
    per symbol: the nearest fraction with a small denominator, which keeps the polyphase
    resampler short; never zero. ``classify-iq`` and the IQ stream both use it."""
    ratio = Fraction(float(target_sps) / float(sps)).limit_denominator(max_denominator)
    return ratio if ratio.numerator else Fraction(1, max_denominator)


def classify_sigmf(path: str | Path, model: nn.Module | Bundle,
                   classes: list[str] | None = None, *,
                   normalization: str | None = None, hop: int | None = None,
                   min_power_db: float | None = 30.0, out_meta: str | Path | None = None,
                   in_place: bool = False, copy_data: bool | None = None,
                   batch_size: int = 256, nan_policy: str = "raise",
                   target_sps: float | None = None, sps: float | None = None,
                   hop_s: float | None = None, decision: str = "frame",
                   max_gap: int = 1, max_burst_frames: int | None = None,
                   verify_checksum: bool = True) -> dict[str, Any]:
    """Frame a SigMF recording, classify every frame and write the predictions as SigMF
    annotations (merged runs of equal labels, best frame confidence, frequency edges when the
    sample rate is known, the ``sigformer:`` extension declared).

    ``model``: a :class:`~sigformer.bundle.Bundle` (its labels and its recorded frame
    normalisation are used unless ``classes`` / ``normalization`` are given) or a bare model
    with ``classes``; a bare model's frames are ``"l1"``-normalised unless told otherwise.

    Nothing is written unless ``out_meta`` (a new, complete recording: see
    :func:`~sigformer.data.sigmf_io.write_annotations`) or ``in_place=True`` is given; the
    input is never modified otherwise. ``target_sps``: estimate the symbol length, centre and
    resample to that many samples per symbol before framing (family models); ``sps``: the
    capture's known samples per symbol, used instead of the blind estimate (needs
    ``target_sps``; reported back as ``samples_per_symbol``). ``hop``: frame hop in samples
    of the framed (resampled) capture, default one frame; ``hop_s``: the hop in seconds
    instead, at the capture's ``core:sample_rate`` (required) times the resampling factor,
    rounded as the stream rounds its ``hop_s``. Frames quieter
    than ``min_power_db`` below the loudest (gaps between bursts) are skipped; NaN/Inf
    samples follow ``nan_policy``; with ``target_sps``, ``"skip"`` interpolates them only so
    that the capture can be estimated and resampled, then drops every frame the resampler
    carried them into (:func:`_skip_resampled_nan`). ``decision="burst"``: the frames of one burst (consecutive
    kept frames, at most ``max_gap`` missing frames between them: :func:`frame_bursts`) all
    get the class of the burst's largest mean log-probability, with that decision's
    probability as confidence; annotations stay per frame position. ``max_burst_frames``
    decides a longer burst in groups of that many frames (None: whole bursts; the IQ stream
    needs a bound, 64 by default, and gives the same decisions as this with the same value:
    :class:`BurstGroups`, :func:`burst_decision`; probabilities within 1e-6, as it runs the
    model on other batches). Returns the annotations, a label
    histogram, ``bursts`` (one row per decided group: start and count in original samples,
    frames, and the group's label with ``decision="burst"``, else None) and ``frames`` (each
    kept frame's ``start`` in original samples, ``label`` and class ``probabilities``)."""
    from ..data.io import DataError
    from ..data.sigmf_io import (
        check_replaceable,
        frame_signal,
        prediction_annotations,
        read_sigmf,
        retune_points,
        write_annotations,
    )

    _check_decision(decision)
    check_min_power_db(min_power_db)
    _check_sps_and_hop(target_sps, sps, hop, hop_s)
    model, classes, normalization = _classifier_parts(model, classes, normalization)
    frame_length = int(getattr(model, "n_times", 0)) or None
    if frame_length is None:
        raise ValueError("the model does not declare its frame length (n_times)")
    if out_meta is not None and in_place:
        raise ValueError("pass out_meta or in_place=True, not both")
    if in_place:  # a read-only input is refused before the model runs, not after
        check_replaceable(path, in_place=True)
    recording = read_sigmf(path, nan_policy=nan_policy, verify_checksum=verify_checksum)
    iq = _recording_iq(recording, path)
    if hop_s is not None and not recording.sample_rate:  # before the model runs
        raise DataError(f"{path} has no core:sample_rate, so hop_s={hop_s:g} s (--hop-s) "
                        f"cannot be turned into samples; give the hop in samples instead "
                        f"(hop=N, --hop N)")
    conditioned, info = iq, {"factor": 1.0}
    if target_sps is not None:
        bad = ~np.isfinite(iq)
        if bad.all():
            raise DataError(f"{path}: every sample is NaN or Inf; no frame to classify")
        if bad.any():  # nan_policy "skip" (the others left no NaN)
            conditioned, info = _skip_resampled_nan(iq, bad, target_sps, sps=sps)
        else:
            conditioned, info = condition_capture(iq, target_sps, sps=sps)
    if hop_s is not None:
        hop = hop_samples(hop_s, recording.sample_rate * info["factor"])
    if len(conditioned) < frame_length:
        raise DataError(f"{path} has {len(conditioned)} samples (after resampling), fewer than "
                        f"one {frame_length}-sample frame")
    frames, starts = frame_signal(conditioned, frame_length, hop, normalization=normalization,
                                  min_power_db=min_power_db, nan_policy=nan_policy)
    if len(frames) == 0:
        raise DataError(f"{path}: no frame to classify (all NaN or below min_power_db)")
    groups = _burst_rows(starts, hop or frame_length, max_gap, max_burst_frames)
    # one batched pass over all frames (a pass per group costs ~8x on many short bursts);
    # the stream batches each group instead, which moves the outputs by ~1e-7 only
    logits = predict_logits(model, frames, batch_size)
    if decision == "burst":
        probabilities = np.zeros((len(frames), len(classes)))
        for rows in groups:
            probabilities[rows] = burst_decision(logits[rows], frames[rows])
    else:
        probabilities = np.exp(log_probabilities(logits))
    best = probabilities.argmax(1)
    confidence = probabilities[np.arange(len(best)), best]
    labels = [classes[i] for i in best]
    scale = 1.0 / info["factor"]  # original samples per conditioned sample
    original_starts = np.round(starts * scale).astype(np.int64)
    span = min(int(np.ceil(frame_length * scale)), len(iq))
    annotations = prediction_annotations(original_starts, span, labels, confidence,
                                         breaks=retune_points(recording.captures))
    for a in annotations:
        a.count = min(a.count, len(iq) - a.start)
    edges = _frequency_edges(annotations, iq, recording)
    meta = None
    if out_meta is not None or in_place:
        meta = str(write_annotations(path, annotations, out_meta, in_place=in_place,
                                     copy_data=copy_data))
    values, counts = np.unique(labels, return_counts=True)
    burst_rows = []
    for rows in groups:
        first, last = int(original_starts[rows[0]]), int(original_starts[rows[-1]])
        burst_rows.append({"start": first, "count": min(last + span, len(iq)) - first,
                           "frames": len(rows), "label": labels[rows[0]] if
                           decision == "burst" else None})
    return {"meta": meta, "n_frames": len(frames), "annotations": annotations,
            "frame_labels": dict(zip(values.tolist(), counts.tolist())),
            "frequency_edges": edges, "samples_per_symbol": info.get("sps"),
            "resample_factor": info["factor"], "decision": decision, "bursts": burst_rows,
            "frames": {"start": original_starts, "label": labels,
                       "probabilities": probabilities}}


def capture_dataset(paths, frame_length: int = 128, *, classes: list[str] | None = None,
                    label_map: dict[str, str] | None = None, target_sps: float | None = None,
                    hop: int | None = None, normalization: str = "rms",
                    min_power_db: float | None = 20.0, nan_policy: str = "raise"
                    ) -> AMRDataset:
    """Labelled frames from annotated SigMF captures (to fine-tune on one's own captures or to
    evaluate): every annotation with a ``core:label`` (mapped through ``label_map``) becomes
    frames; ``params["capture"]`` holds the index of each frame's capture (names in
    ``info["captures"]``) for grouped evaluation. ``target_sps`` conditions each capture as
    :func:`condition_capture` does, annotations moved with it."""
    from ..data.io import DataError
    from ..data.radioml import AMRDataset
    from ..data.sigmf_io import frame_signal, read_sigmf

    X, labels, origin, names, starts = [], [], [], [], []
    for i, path in enumerate(paths):
        recording = read_sigmf(path, nan_policy=nan_policy)
        iq = _recording_iq(recording, path)
        factor = 1.0
        if target_sps is not None:
            iq, info = condition_capture(iq, target_sps)
            factor = info["factor"]
        names.append(Path(path).name.removesuffix(".sigmf-meta"))
        for a in recording.annotations:
            if a.label is None:
                continue
            label = (label_map or {}).get(a.label, a.label)
            if classes is not None and label not in classes:
                raise DataError(f"{path}: annotation label {label!r} is not one of the "
                                f"classes {list(classes)}; map it with label_map")
            start, stop = int(a.start * factor), int((a.start + a.count) * factor)
            frames, frame_starts = frame_signal(iq, frame_length, hop, start=start, stop=stop,
                                                normalization=normalization,
                                                min_power_db=min_power_db,
                                                nan_policy=nan_policy)
            X.append(frames)
            starts += [int(v) for v in frame_starts]
            labels += [label] * len(frames)
            origin += [i] * len(frames)
    if not labels:
        raise DataError(f"no labelled annotation long enough for {frame_length}-sample frames")
    classes = list(classes) if classes is not None else sorted(set(labels))
    return AMRDataset(np.concatenate(X), [classes.index(v) for v in labels],
                      np.full(len(labels), np.nan), tuple(classes),
                      {"source": "sigformer.capture_dataset", "captures": names,
                       "target_sps": target_sps, "hop": hop or frame_length},
                      {"capture": np.asarray(origin), "start": np.asarray(starts)})


def leave_one_capture_out(data: AMRDataset):
    """``(capture name, train index, test index)`` per capture: never test on a capture that
    was trained on (``params["capture"]`` from :func:`capture_dataset`)."""
    if "capture" not in data.params:
        raise ValueError("the dataset records no capture per frame (params['capture']); build "
                         "it with capture_dataset")
    groups = data.params["capture"]
    names = data.info.get("captures") or [str(g) for g in np.unique(groups)]
    for g in np.unique(groups):
        yield names[int(g)], np.flatnonzero(groups != g), np.flatnonzero(groups == g)


def _decision_groups(capture: np.ndarray, starts: np.ndarray | None, hop: int | None,
                     decision: str, max_gap: int) -> list[np.ndarray]:
    """Rows decided together: each capture's (``"capture"``) or each burst's, grouped as
    ``classify_sigmf`` groups them (:func:`_burst_rows`; bursts never span two captures)."""
    out = []
    for g in np.unique(capture):
        rows = np.flatnonzero(capture == g)
        if decision == "capture":
            out.append(rows)
            continue
        at = np.asarray(starts)[rows]
        order = np.argsort(at, kind="stable")
        out += [rows[order][k] for k in _burst_rows(at[order], int(hop), max_gap)]
    return out


def evaluate_by_capture(model: nn.Module, data: AMRDataset, decision: str = "frame",
                        max_gap: int = 1) -> dict[str, float]:
    """Frame accuracy of ``model`` on each capture of ``data`` separately.

    ``decision``: ``"frame"`` (each frame on its own), ``"burst"`` (the frames of one burst
    share the class of the burst's largest mean log-probability, as
    ``classify_sigmf(decision="burst")``; needs ``params["start"]``, each frame's start in
    samples on a ``info["hop"]`` grid) or ``"capture"`` (one decision per capture: the
    accuracy is then 0 or 1)."""
    _check_decision(decision, DECISIONS + ("capture",))
    if "capture" not in data.params:
        raise ValueError("the dataset records no capture per frame (params['capture'])")
    if decision == "burst" and ("start" not in data.params or not data.info.get("hop")):
        raise ValueError("decision='burst' needs each frame's start in samples "
                         "(params['start']) and the frame hop (info['hop']); "
                         "use decision='capture' or 'frame' for this dataset")
    logits = predict_logits(model, data.X)
    capture = np.asarray(data.params["capture"])
    if decision == "frame":
        pred = logits.argmax(1)
    else:
        X, pred = np.asarray(data.X), np.zeros(len(capture), np.int64)
        for rows in _decision_groups(capture, data.params.get("start"), data.info.get("hop"),
                                     decision, max_gap):
            pred[rows] = burst_decision(logits[rows], X[rows]).argmax()
    names = data.info.get("captures") or []
    out = {}
    for g in np.unique(data.params["capture"]):
        rows = data.params["capture"] == g
        name = names[int(g)] if int(g) < len(names) else str(g)
        out[name] = float(np.mean(pred[rows] == data.y[rows]))
    return out


# --- pipeline -----------------------------------------------------------------------------

def load_amr_data(a) -> AMRDataset:
    """The frames an ``amr`` pipeline section asks for, renormalised per frame."""
    from ..data.radioml import AMRDataset, generate_radioml, load_rml2016, load_rml2018
    from ..data.sigmf_io import normalize_frames

    if a.source == "generator":
        return generate_radioml(a.n_per_condition, snrs=a.snrs, frame_length=a.frame_length,
                                seed=a.seed, normalization=a.normalization,
                                generator=a.generator)
    if a.path is None:
        from ..tasks.config import PipelineConfigError

        raise PipelineConfigError(f"amr.source {a.source!r} needs amr.path")
    if a.source == "rml2016":
        data = load_rml2016(a.path, allow_pickle=a.allow_pickle)
    elif a.source == "rml2018":
        data = load_rml2018(a.path, max_frames=a.max_frames, seed=a.seed)
    else:
        data = AMRDataset.load(a.path)
    if a.max_frames is not None and len(data) > a.max_frames:
        keep = np.random.default_rng(a.seed).choice(len(data), a.max_frames, replace=False)
        data = data.subset(np.sort(keep))
    data.X = normalize_frames(data.X, a.normalization)
    return data


# --- shipped-bundle training and the pipeline runner (evaluation lives here) -------------

RESUME_HOW = ("Resume with the original values (scripts/train_amr.py: the same --epochs, "
              "--frames, --batch-size, --lr; for SKD students --temperature, --alpha), train "
              "into a new --out, or delete {folder} to retrain that model")
# extra fields that decide what a model was trained on (compared on resume, beside the recipe)
DATA_FIELDS = ("classes", "frame_length", "seed", "generator_config")


def _as_json(value: Any) -> Any:
    """``value`` as a checkpoint's JSON reads it back (tuples become lists), for comparing."""
    return json.loads(json.dumps(value))


def generator_record(config: ModGenConfig | None) -> dict[str, Any]:
    """The generator settings (``None``: the default :class:`ModGenConfig`) as recorded in a
    checkpoint's ``extra["generator_config"]``."""
    from ..data.modgen import ModGenConfig

    return _as_json(asdict(config if config is not None else ModGenConfig()))


def teacher_fingerprint(folder: str | Path) -> str | None:
    """The sha256 of a finished teacher's ``model.safetensors`` (from its ``config.json``),
    recorded by its SKD students; None while ``folder`` holds no finished teacher."""
    from ..checkpoint import read_config
    from ..recipes.amr import has_finished

    if not has_finished(folder):
        return None
    return read_config(folder)["files"]["model.safetensors"]["sha256"]


def load_teacher_bundle(source: str | Path, *, classes: Sequence[str], frame_length: int
                        ) -> tuple[nn.Module, str]:
    """A trained teacher from a catalogue name or bundle folder, and the sha256 of its weights
    (recorded by the students distilled from it). Refused unless it classifies ``classes`` in
    this order, from ``frame_length``-sample frames normalised to unit RMS, as the students
    will be trained: its logits would otherwise teach the wrong classes."""
    from ..catalogue import resolve_bundle_path
    from ..checkpoint import CheckpointError, read_config
    from ..pretrained import from_pretrained

    path = resolve_bundle_path(source)
    config = read_config(path)
    extra, kwargs = config.get("extra") or {}, config.get("kwargs") or {}
    if extra.get("training_done") is False:  # a run folder still training, or stopped
        raise CheckpointError(f"the teacher {source} ({path}) has not finished training (epoch "
                              f"{extra.get('epoch', '?')} of its run): finish it with "
                              "--resume, or name a finished teacher")
    labels = (config.get("head") or {}).get("labels") or extra.get("classes")
    if not labels:
        raise CheckpointError(f"the teacher {source} ({path}) records no class list (neither "
                              "head.labels nor extra.classes): it cannot be checked against "
                              f"this run's classes {list(classes)}")
    found = {"classes": list(labels), "frame length": kwargs.get("n_times"),
             "normalization": extra.get("normalization")}
    wanted = {"classes": list(classes), "frame length": frame_length, "normalization": "rms"}
    differ = [f"{k} {found[k]!r} (this run: {wanted[k]!r})" for k in wanted
              if found[k] != wanted[k]]
    if differ:
        raise CheckpointError(f"the teacher {source} ({path}) does not fit this run: "
                              + "; ".join(differ))
    return from_pretrained(path).eval(), config["files"]["model.safetensors"]["sha256"]


def load_teacher_init(source: str | Path, *, classes: Sequence[str], frame_length: int,
                      name: str, kwargs: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    """Start weights for the teacher (``train_amr.py --init``: fine-tune a shipped bundle) and
    the record its checkpoints keep (source, weights' sha256, what the start had been trained
    on). Refused unless the bundle is this run's model with the same constructor arguments
    (e.g. the same ``--clst-preset``) and fits the run's classes, frame length and scaling."""
    from ..catalogue import resolve_bundle_path
    from ..checkpoint import CheckpointError, read_config
    from ..checkpoint_io import kwargs_to_json

    model, sha256 = load_teacher_bundle(source, classes=classes, frame_length=frame_length)
    config = read_config(resolve_bundle_path(source))
    want = _as_json(kwargs_to_json(kwargs))
    if config["model"] != name or config["kwargs"] != want:
        changed = sorted(k for k in {*want, *config["kwargs"]}
                         if want.get(k) != config["kwargs"].get(k))
        raise CheckpointError(f"--init {source} holds a {config['model']!r} model built with "
                              f"{config['kwargs']}; this run trains {name!r} with {want} "
                              f"(differs in {changed or 'the model name'}: e.g. another "
                              "--clst-preset)")
    data = (config.get("provenance") or {}).get("data") or {}
    record = {"source": str(source), "sha256": sha256,
              # a fine-tuned start counts its own start's epochs too (epochs_total)
              "frames_seen": data.get("frames_seen"),
              "epochs": data.get("epochs_total", data.get("epochs")),
              "training_time": (config.get("provenance") or {}).get("training_time")}
    return model, record


def check_reusable(folder: Path, recipe: StreamRecipe, extra: dict[str, Any],
                   log: Callable[[str], None] = print,
                   model: tuple[str, dict[str, Any]] | None = None) -> None:
    """Refuse to reuse the model in ``folder`` (finished or not) when it was trained with
    another recipe or on other data than ``recipe``/``extra`` ask for (``DATA_FIELDS``:
    classes, frame length, run seed, generator settings - those of them ``extra`` holds), by
    another teacher (``extra["teacher"]``: :func:`teacher_fingerprint`, None for "no finished
    teacher"), or, with ``model=(name, kwargs)``, is another architecture (e.g. another
    preset): its results would otherwise sit in one report beside models trained
    differently. Fields an earlier sigformer did not record are reused with one note."""
    from ..checkpoint import CheckpointError, read_config
    from ..recipes.amr import reuse_exempt
    from ..recipes.resume_check import recipe_changes, refuse_changes

    config = read_config(folder)
    saved = config["extra"]
    exempt = reuse_exempt(distilled="teacher" in extra)  # only SKD students record one
    if saved.get("recipe") is None:
        log(f"note: {folder} records no training recipe: reused without checking it")
    else:
        refuse_changes(str(folder), recipe_changes(saved["recipe"], recipe, exempt=exempt),
                       RESUME_HOW.format(folder=folder), exempt=exempt)
    if model is not None:
        _refuse_architecture(folder, config, *model)
    missing = [k for k in (*DATA_FIELDS, "teacher") if k in extra and k not in saved]
    if missing:
        log(f"note: {folder} records no {', '.join(missing)} (written by an earlier "
            "sigformer): reused without checking them")
    data = {k: (saved[k], _as_json(extra[k])) for k in DATA_FIELDS
            if k in saved and k in extra and saved[k] != _as_json(extra[k])}
    if data:
        listed = ", ".join(_describe_change(k, *pair) for k, pair in data.items())
        raise CheckpointError(f"cannot resume from {folder}: it was trained on other frames: "
                              f"{listed}. Resume with the run's original --seed, --mode and "
                              f"--target-sps, train into a new --out, or delete {folder} to "
                              f"retrain that model")
    started, start = (saved.get("init") or {}).get("sha256"), (extra.get("init") or {}).get("sha256")
    if started != start:
        raise CheckpointError(f"cannot resume from {folder}: it was "
                              + (f"fine-tuned from {saved['init']['source']} (sha256 "
                                 f"{started[:12]}...)" if started else "trained from scratch")
                              + ", this run " + (f"starts from --init {extra['init']['source']}"
                                                 if start else "has no --init")
                              + f". Resume with the original --init, train into a new --out, "
                              f"or delete {folder} to retrain that model")
    if "teacher" in saved and "teacher" in extra and saved["teacher"] != extra["teacher"]:
        given = saved.get("teacher_source")
        now = (f"the teacher there now has sha256 {extra['teacher']}" if extra["teacher"]
               else "no finished teacher is there now (it will be trained again)")
        if given and extra.get("teacher_source") != given:
            now += f"; it was distilled from --teacher {given}: pass that again to resume"
        raise CheckpointError(f"cannot resume from {folder}: it was distilled from a teacher "
                              f"whose model.safetensors has sha256 {saved['teacher']}, but "
                              f"{now}. Delete {folder} to distil it again from this teacher, "
                              f"or train into a new --out")


def _refuse_architecture(folder: Path, config: dict[str, Any], name: str,
                         kwargs: dict[str, Any]) -> None:
    """Refuse a checkpoint of another model or other constructor arguments than
    ``create_model(name, **kwargs)`` would record (loading it would fail on the tensor
    shapes, or silently reuse the old architecture)."""
    from ..checkpoint import CheckpointError
    from ..checkpoint_io import kwargs_to_json

    want = _as_json(kwargs_to_json(kwargs))
    if config["model"] == name and config["kwargs"] == want:
        return
    changed = sorted(k for k in {*want, *config["kwargs"]}
                     if want.get(k) != config["kwargs"].get(k))
    raise CheckpointError(
        f"cannot resume from {folder}: it holds a {config['model']!r} model built with "
        f"{config['kwargs']}, this run builds {name!r} with {want} (differs in "
        f"{changed or 'the model name'}; e.g. another --clst-preset). Resume with the original "
        f"model settings, train into a new --out, or delete {folder} to retrain that model")


def _describe_change(key: str, before: Any, now: Any) -> str:
    if isinstance(before, dict) and isinstance(now, dict):  # the generator: only what moved
        moved = sorted(k for k in {*before, *now} if before.get(k) != now.get(k))
        return f"{key} " + ", ".join(f"{k} {before.get(k)!r} -> {now.get(k)!r}" for k in moved)
    return f"{key} {before!r} -> {now!r}"


def train_bundles(out: str | Path, *, classes: Sequence[str], config: ModGenConfig | None,
                  recipe: StreamRecipe, test: AMRDataset, teacher_name: str = "clst",
                  teacher_preset: str | None = None, students: Sequence[str] | None = None,
                  baselines: Sequence[str] | None = None, seed: int = 0, resume: bool = False,
                  log: Callable[[str], None] = print, log_every: int = 50,
                  validation: AMRDataset | None = None,
                  record: dict[str, Any] | None = None,
                  teacher_bundle: str | Path | None = None,
                  plain_students: bool = True,
                  device: str | None = None,
                  teacher_init: str | Path | None = None) -> dict[str, Any]:
    """Teacher, then each student (default: the recipe's ``STUDENTS``) with SKD and without,
    then the baselines (default ``BASELINES``) - the same generator, budget and optimiser for
    all. ``teacher_bundle`` (a catalogue name or a bundle folder): distil from that trained
    teacher instead of training one (its classes, frame length and normalisation must be this
    run's); ``plain_students=False`` skips the students without SKD (e.g. when an earlier run
    at the same budget holds them). ``teacher_init`` (a catalogue name or bundle folder of the
    same model and preset): the teacher starts from those weights and trains ``recipe`` on
    (a fine-tune; recorded as ``extra["init"]``). ``device``: where every model trains (e.g. ``"cuda"``;
    None: the CPU). Each model in ``out/<label>/`` (a checkpoint every epoch, ``resume=True`` continues
    an interrupted run and skips finished models; a model, finished or not, trained with
    another recipe, class list, frame length, seed, generator or architecture, or an SKD
    student distilled from another teacher, is refused before anything trains).
    ``validation``: a grid generated apart from ``test`` (another seed), evaluated after every
    epoch (``val_acc``, monitoring only); None: no per-epoch curve (the test set is never
    looked at during training). Returns the evaluation of every model on ``test`` (also
    written to ``out/report.json`` after every model, beside ``record``: e.g. the command
    line, so the report of a run stopped between models says how it was trained)."""
    from ..checkpoint import load_checkpoint
    from ..checkpoint_io import user_path
    from ..models import create_model
    from ..models.registry import resolve_kwargs
    from ..recipes.amr import BASELINES, STUDENTS, GeneratedFrames, fit_stream, has_finished

    students = STUDENTS if students is None else students
    baselines = BASELINES if baselines is None else baselines

    out = user_path(out)
    out.mkdir(parents=True, exist_ok=True)
    shape = dict(n_outputs=len(classes), n_times=test.frame_length)
    extra = {"classes": list(classes), "normalization": "rms",
             "frame_length": test.frame_length, "recipe": asdict(recipe),
             "generator": "modgen", "seed": seed, "generator_config": generator_record(config)}
    rows: dict[str, Any] = {}
    builds = {teacher_name: (teacher_name, teacher_preset),  # label -> (model name, preset)
              **{f"{n}{skd}": (n, None) for n in students for skd in ("+SKD", "")},
              **{n: (n, None) for n in baselines}}

    if teacher_bundle is not None and teacher_init is not None:
        raise ValueError("teacher_bundle (distil from a trained teacher) and teacher_init "
                         "(fine-tune the teacher) exclude each other")
    given = None if teacher_bundle is None else load_teacher_bundle(
        teacher_bundle, classes=classes, frame_length=test.frame_length)
    start = None if teacher_init is None else load_teacher_init(
        teacher_init, classes=classes, frame_length=test.frame_length, name=teacher_name,
        kwargs=resolve_kwargs(teacher_name, teacher_preset, **shape))
    if given is not None:
        del builds[teacher_name]
    if not plain_students:  # skipped, unless a resumed run holds them finished: reported
        for name in students:
            if not (resume and has_finished(out / name)):
                del builds[name]

    def model_extra(label: str) -> dict[str, Any]:
        # an SKD student records its teacher, so a retrained teacher is not paired with it
        skd = label.endswith("+SKD")
        if label == teacher_name and start is not None:
            return {**extra, "label": label, "init": start[1]}
        if not skd:
            return {**extra, "label": label}
        if given is not None:
            return {**extra, "label": label, "teacher": given[1],
                    "teacher_source": str(teacher_bundle)}
        return {**extra, "label": label, "teacher": teacher_fingerprint(out / teacher_name)}

    if resume:  # every model the run would reuse, finished or not, before any training
        for label, (name, preset) in builds.items():
            if (out / label / "config.json").is_file():
                check_reusable(out / label, recipe, model_extra(label), log,
                               model=(name, resolve_kwargs(name, preset, **shape)))

    def run(label: str, name: str, preset=None, teacher=None) -> nn.Module:
        folder = out / label
        if given is not None and label == teacher_name:
            model = given[0]
            log(f"[{label}] the teacher is {teacher_bundle} (sha256 {given[1][:12]}...), "
                "not trained here")
        elif resume and has_finished(folder):
            model, _ = load_checkpoint(folder)
            log(f"[{label}] finished earlier, loaded from {folder}")
        else:
            torch.manual_seed(seed)
            model = create_model(name, preset, **shape)
            if start is not None and label == teacher_name:
                model.load_state_dict(start[0].state_dict())
                log(f"[{label}] starts from {teacher_init} (sha256 "
                    f"{start[1]['sha256'][:12]}...): a fine-tune")
            # a fine-tune draws the epochs after its start's: frames it has not seen
            offset = int(start[1]["epochs"] or 0) if start is not None and \
                label == teacher_name else 0
            stream = GeneratedFrames(classes, config, frame_length=test.frame_length,
                                     seed=seed, epoch_offset=offset)
            fit_stream(model, stream, recipe, teacher=teacher, validation=validation,
                       checkpoint_dir=folder, resume=resume, label=label, log=log,
                       log_every=log_every, extra=model_extra(label), device=device)
        result = evaluate_amr(model, test)
        rows[label] = {"accuracy": result["accuracy"],
                       "high_snr_accuracy": result["high_snr_accuracy"],
                       "accuracy_by_snr": result["accuracy_by_snr"],
                       "parameters": int(sum(p.numel() for p in model.parameters())),
                       **({"source": str(teacher_bundle)}
                          if given is not None and label == teacher_name else {})}
        log(f"[{label}] test accuracy {result['accuracy']:.3f}, >= 10 dB "
            f"{_accuracy_text(result['high_snr_accuracy'])}")
        # after every model, with the run's record: an interrupted run's report is usable
        (out / "report.json").write_text(json.dumps({**(record or {}), "models": rows},
                                                    indent=2, default=float))
        return model

    teacher = run(teacher_name, teacher_name, teacher_preset)
    for name in students:
        run(f"{name}+SKD", name, teacher=teacher)
        if name in builds:
            run(name, name)
    for name in baselines:
        run(name, name)
    return rows


# --- the task: amr pipeline ------------------------------------------------------------------

def _model_row(model: nn.Module, test: AMRDataset, hist: History, seconds: float
               ) -> dict[str, Any]:

    row = evaluate_amr(model, test)
    row.update(parameters=int(sum(p.numel() for p in model.parameters())),
               flops=count_flops(model, test.X.shape[1:]),
               ms_per_frame=inference_ms_per_frame(model, test.X[:512]),
               train_seconds=round(seconds, 1),
               final_train_loss=hist.series("train_loss")[-1])
    return row


def run_amr_pipeline(cfg, out_dir: str | Path | None = None, log=print) -> dict[str, Any]:
    """``task: amr``: load/generate frames, train the models, distil students from the
    teacher (and train them alone), evaluate per SNR, write metrics, plots and checkpoints."""
    from ..checkpoint import save_checkpoint
    from ..models import create_model
    from ..recipes.amr import train_amr
    from ..report import plot_confusion_matrix

    a = cfg.amr
    out = Path(out_dir or cfg.output.dir.format(name=cfg.name))
    t0 = time.perf_counter()
    log(f"[1/4] loading frames ({a.source})")
    data = load_amr_data(a)
    train, test = data.split(a.test_size, a.seed)
    log(f"      {len(train)} training / {len(test)} test frames of {data.frame_length} samples, "
        f"{len(data.classes)} classes, SNR {data.snr.min():g}..{data.snr.max():g} dB")
    shape = dict(n_chans=data.X.shape[1], n_outputs=len(data.classes),
                 n_times=data.frame_length)
    models: dict[str, nn.Module] = {}
    rows: dict[str, dict[str, Any]] = {}

    def fit(label, m, teacher_logits=None, alpha=1.0):
        model = create_model(m.name, m.preset, **shape, **m.params)
        t = time.perf_counter()
        hist = train_amr(model, train.X, train.y, teacher_logits=teacher_logits,
                         temperature=a.distill.temperature, alpha=alpha,
                         max_epochs=m.max_epochs, batch_size=m.batch_size, lr=m.lr,
                         weight_decay=m.weight_decay, seed=a.seed,
                         progress_bar=cfg.train.progress_bar)
        rows[label] = _model_row(model, test, hist, time.perf_counter() - t)
        models[label] = model
        log(f"      {label:24s} acc {rows[label]['accuracy']:.3f}, >= {HIGH_SNR_DB:g} dB "
            f"{_accuracy_text(rows[label]['high_snr_accuracy'])}, "
            f"{rows[label]['parameters']:,} params")

    log(f"[2/4] training {len(a.models)} model(s)")
    labels = {}
    for m in a.models:
        label = m.name if m.preset is None else f"{m.name}:{m.preset}"
        labels[m.name] = labels[label] = label
        fit(label, m)
    d = a.distill
    if d.students:
        if d.teacher not in labels:
            from ..tasks.config import PipelineConfigError

            raise PipelineConfigError(f"amr.distill.teacher {d.teacher!r} is not one of the "
                                      f"trained models {sorted(set(labels.values()))}")
        teacher = models[labels[d.teacher]]
        log(f"[3/4] distilling {len(d.students)} student(s) from {labels[d.teacher]} "
            f"(T={d.temperature:g}, alpha={d.alpha:g})")
        teacher_logits = predict_logits(teacher, train.X)
        for m in d.students:
            fit(f"{m.name}+SKD", m, teacher_logits, d.alpha)
            if d.compare_without:
                fit(m.name, m)
    report: dict[str, Any] = {
        "pipeline": cfg.name, "source": a.source, "classes": list(data.classes),
        "n_train": len(train), "n_test": len(test), "high_snr_db": HIGH_SNR_DB,
        "models": {k: {kk: vv for kk, vv in v.items() if not kk.startswith("confusion")}
                   for k, v in rows.items()},
        "seconds": round(time.perf_counter() - t0, 2),
    }
    log(f"[4/4] writing the report to {out}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline.json").write_text(cfg.model_dump_json(indent=2))
    (out / "metrics.json").write_text(json.dumps(report, indent=2, default=str))
    plot_accuracy_by_snr({k: v["accuracy_by_snr"] for k, v in rows.items()},
                         out / "accuracy_vs_snr.png", title=cfg.name,
                         n_classes=len(data.classes))
    for label, row in rows.items():
        safe = label.replace(":", "_").replace("+", "_")
        high = row["confusion_high_snr"] is not None  # else every SNR: none is that high
        plot_confusion_matrix(row["confusion_high_snr"] if high else row["confusion"],
                              data.classes, out / f"confusion_{safe}.png",
                              title=f"{label}, SNR >= {HIGH_SNR_DB:g} dB" if high
                              else f"{label}, all SNRs (none >= {HIGH_SNR_DB:g} dB)")
        if cfg.output.save_model:
            save_checkpoint(out / "models" / safe, models[label],
                            extra={"classes": list(data.classes),
                                   "normalization": a.normalization,
                                   "frame_length": data.frame_length})
    return report
