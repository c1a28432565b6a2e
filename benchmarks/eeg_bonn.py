"""Bonn epilepsy EEG: TFM-Tokenizer vs single-channel braindecode baselines vs band power + LR.

Same data and splits for every model: 5 s windows of the Bonn segments (single channel),
resampled to 200 Hz and 95th-percentile scaled (TFM's preprocessing, used for all models),
stratified 5-fold CV grouped by segment (windows of one segment never straddle train and
test). Two tasks: seizure vs rest (S vs Z/O/N/F) and 5-class (Z, O, N, F, S).

* TFM: tokenizer pretraining on the training fold, masked-token pretraining of the encoder,
  then fine-tuning (``tfm_classifier``); codebook usage and perplexity on the test fold.
* braindecode models that accept one channel: EEGNet, SleepStagerChambon2018 and SPARCNet
  (the TUEV baseline of the TFM and BIOT papers). ShallowFBCSPNet and Deep4Net fail with one
  channel in braindecode 1.8.1 (their combined temporal-spatial convolution), so they are not
  in the comparison.
* log band power (delta..gamma, Welch) + logistic regression.

Prints accuracy, balanced accuracy, kappa (mean ± std over folds) and parameters per task,
the TFM codebook perplexity, and tokenization throughput (tokens/s) of the TFM tokenizer vs a
plain STFT on the same windows. Writes JSON.

    python benchmarks/eeg_bonn.py [--size small|paper] [--epochs 20] [--folds 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _table import print_metric_table
from scipy.signal import welch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, cohen_kappa_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sigformer.data import load_bonn
from sigformer.estimators import SignalClassifier
from sigformer.models import create_model
from sigformer.models.eeg.tfm_tokenizer import tfm_prepare
from sigformer.tokenizers import STFTTokenizer

warnings.filterwarnings("ignore", message=".*does not have many workers.*")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "eeg_bonn" / "bonn_ZONFS_001-080.npz"
BANDS = ((0.5, 4), (4, 8), (8, 13), (13, 30), (30, 70))

SIZES = {
    "small": dict(tokenizer_params=dict(emb_size=32, code_size=32, n_codes=512, freq_depth=1,
                                        temporal_depth=1, decoder_depth=2, heads=4,
                                        dead_code_threshold=0.1),
                  encoder_params=dict(emb_size=32, depth=2, heads=4)),
    "paper": dict(),  # 1,166,100-parameter tokenizer, 64x4 encoder
}


class BandPowerLR(ClassifierMixin, BaseEstimator):
    """log band powers (Welch) -> standardise -> logistic regression."""

    def __init__(self, sfreq: float = 200.0):
        self.sfreq = sfreq

    def _features(self, X):
        f, p = welch(X[:, 0], self.sfreq, nperseg=int(self.sfreq))
        return np.log(np.stack([p[:, (f >= lo) & (f < hi)].mean(1) for lo, hi in BANDS], 1)
                      + 1e-12)

    def fit(self, X, y):
        self.model_ = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        self.model_.fit(self._features(X), y)
        self.classes_ = self.model_.classes_
        return self

    def predict(self, X):
        return self.model_.predict(self._features(X))


def candidates(size: str, epochs: int) -> dict:
    tfm = dict(SIZES[size], tokenizer_epochs=epochs, mtp_epochs=max(1, epochs // 2),
               pretrain_batch_size=128, pretrain_lr=1e-3)
    at_200hz = {"sfreq": 200.0}
    return {
        "TFM (tokenizer+MTP+encoder)": lambda: SignalClassifier(
            model="tfm_classifier", model_params=tfm, max_epochs=epochs, lr=1e-3,
            batch_size=64),
        "EEGNet": lambda: SignalClassifier(model="braindecode.EEGNet", max_epochs=epochs,
                                           lr=1e-3, batch_size=64, model_params=at_200hz),
        "SleepStagerChambon2018": lambda: SignalClassifier(
            model="braindecode.SleepStagerChambon2018", max_epochs=epochs, lr=1e-3,
            batch_size=64, model_params=at_200hz),
        "SPARCNet": lambda: SignalClassifier(model="braindecode.SPARCNet", max_epochs=epochs,
                                             lr=1e-3, batch_size=64, model_params=at_200hz),
        "band power + LR": lambda: BandPowerLR(200.0),
    }


def n_params(est, X, n_classes) -> int:
    module = getattr(est, "module_", None)
    if module is not None:
        return int(sum(p.numel() for p in module.parameters()))
    return int(est.model_[-1].coef_.size + est.model_[-1].intercept_.size)


def codebook_stats(est, X) -> dict:
    tok = est.module_.tokenizer
    tok.quantizer.reset_usage()
    tok.transform(X)
    return {"usage": tok.quantizer.codebook_usage(), "perplexity": tok.quantizer.usage_perplexity()}


@torch.inference_mode()
def throughput(X: np.ndarray, size: str, repeats: int = 3) -> dict:
    tok = create_model("tfm_tokenizer", **SIZES[size].get("tokenizer_params", {})).eval()
    stft = STFTTokenizer(200, 100, 100)
    x = torch.as_tensor(X[:256])
    out = {}
    for name, fn in (("tfm_tokenizer", tok.encode), ("plain_stft", stft.encode)):
        fn(x)
        t0 = time.perf_counter()
        for _ in range(repeats):
            n_tokens = len(fn(x)) * len(x)
        out[name] = n_tokens * repeats / (time.perf_counter() - t0)
    out["ratio_tfm_over_stft"] = out["tfm_tokenizer"] / out["plain_stft"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--window", type=float, default=5.0)
    parser.add_argument("--tasks", nargs="+", default=["seizure_vs_rest", "five_class"])
    parser.add_argument("--models", nargs="+", default=[
        "TFM (tokenizer+MTP+encoder)", "EEGNet", "SleepStagerChambon2018", "band power + LR"],
        help="subset of the candidates; add SPARCNet (920k parameters, slow on CPU)")
    parser.add_argument("--out", type=Path,
                        default=REPO / "benchmarks" / "results" / "eeg_bonn.json")
    args = parser.parse_args()
    if not args.data.exists():
        raise SystemExit(f"Bonn data not found at {args.data}; pass --data")

    report = {"benchmark": "eeg_bonn", "size": args.size, "epochs": args.epochs,
              "folds": args.folds, "window_s": args.window, "tasks": {}}
    for task in args.tasks:
        ep = load_bonn(args.data, task, window_s=args.window)
        X = tfm_prepare(ep.data, ep.sfreq)
        y, groups = ep.labels, ep.groups
        print(f"\n{task}: {len(X)} windows of {X.shape[-1]} samples at 200 Hz, classes "
              f"{dict(zip(ep.event_id, np.bincount(y).tolist()))}")
        cv = StratifiedGroupKFold(args.folds, shuffle=True, random_state=0)
        rows = {}
        for name, make in candidates(args.size, args.epochs).items():
            if name not in args.models:
                continue
            t0 = time.perf_counter()
            scores, extra = {"accuracy": [], "balanced_accuracy": [], "kappa": []}, []
            for train, test in cv.split(X, y, groups):
                est = make().fit(X[train], y[train])
                pred = est.predict(X[test])
                scores["accuracy"].append(accuracy_score(y[test], pred))
                scores["balanced_accuracy"].append(balanced_accuracy_score(y[test], pred))
                scores["kappa"].append(cohen_kappa_score(y[test], pred))
                if name.startswith("TFM"):
                    extra.append(codebook_stats(est, X[test]))
            row = {k: {"mean": float(np.mean(v)), "std": float(np.std(v))}
                   for k, v in scores.items()}
            row["parameters"] = n_params(est, X, len(ep.event_id))
            row["seconds"] = round(time.perf_counter() - t0, 1)
            if extra:
                row["codebook"] = {k: float(np.mean([e[k] for e in extra])) for k in extra[0]}
            rows[name] = row
            print(f"  {name:28s} acc {row['accuracy']['mean']:.3f} ± "
                  f"{row['accuracy']['std']:.3f}  ({row['seconds']} s)")
        report["tasks"][task] = rows

        def codebook_line(name: str, r: dict) -> None:
            if "codebook" in r:
                print(f"{'':28s} codebook usage {r['codebook']['usage']:.2f}, perplexity "
                      f"{r['codebook']['perplexity']:.1f}")

        print_metric_table(rows, 28, extra=[("params", 10, lambda r: f"{r['parameters']:,d}")],
                           after_row=codebook_line)

    tp = throughput(X, args.size)
    report["throughput_tokens_per_s"] = tp
    print(f"\ntokenization throughput (batch 256, 5 s windows): TFM tokenizer "
          f"{tp['tfm_tokenizer']:,.0f} tokens/s vs plain STFT {tp['plain_stft']:,.0f} tokens/s "
          f"(ratio {tp['ratio_tfm_over_stft']:.4f})")
    report["machine"] = {"python": platform.python_version(), "torch": torch.__version__,
                         "threads": torch.get_num_threads()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
