"""Muse headband ERPs (eeg-notebooks P300 and N170), leave-one-subject-out.

Side by side on the same epochs and the same folds (one held-out subject per fold):

* a sigformer model (DBConformer, sized for 4 channels and 0.9 s epochs) trained with the
  EEG recipe: Euclidean alignment per subject, balanced class weights, inner validation split
  with early stopping and best-epoch restore, segment-recombination augmentation;
* xDAWN covariances + tangent space + logistic regression (pyriemann), the classical ERP
  baseline.

Preprocessing (as the eeg-notebooks analyses): the four EEG channels (TP9, AF7, AF8, TP10) in
microvolts, 1-30 Hz zero-phase band-pass on the continuous recording, epochs -0.1..0.8 s
around each marker, epochs with any sample beyond 100 uV dropped. The rate is the Muse
nominal 256 Hz: the CSV timestamps are rounded, so they are not used as a time base.

``--erp-rate 64`` adds both candidates again on the same epochs decimated to 64 Hz (after the
30 Hz low-pass nothing is lost; the usual ERP-decoding input rate, as EEGNet's P300 setup
uses 128 Hz): a DBConformer sized for it (0.125 s patches and kernel, one transformer layer,
16-dim embeddings: ~1,100 training trials of 4 channels) beside xDAWN on the same input.

Reports balanced accuracy and ROC-AUC (P300 is 15 % targets), and the few-shot curve of the
sigformer model: accuracy on each subject after fine-tuning with k trials per class.

    python benchmarks/eeg_muse.py [--data ../shared/data/eeg_muse] [--epochs 60] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _table import print_metric_table
from scipy.signal import butter, decimate, sosfiltfilt
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from sigformer.estimators import SignalClassifier
from sigformer.evaluation import cross_subject, few_shot_curve

warnings.filterwarnings("ignore", message=".*does not have many workers.*")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "eeg_muse"
SFREQ = 256.0  # Muse 2016 nominal rate
CHANNELS = ("TP9", "AF7", "AF8", "TP10")
TASKS = {"P300": {1: "non-target", 2: "target"}, "N170": {1: "house", 2: "face"}}
TMIN, TMAX, REJECT_UV = -0.1, 0.8, 100.0


def read_muse_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """EEG ``(4, n_samples)`` in microvolts and the marker column (0 = no event)."""
    table = pd.read_csv(path)
    marker = next(c for c in table.columns if c.startswith("Marker"))
    return table[list(CHANNELS)].to_numpy(float).T, table[marker].to_numpy(int)


def subject_epochs(files: list[Path], codes: dict[int, str]) -> tuple[np.ndarray, np.ndarray]:
    sos = butter(4, [1.0, 30.0], "bandpass", fs=SFREQ, output="sos")
    start, stop = int(round(TMIN * SFREQ)), int(round(TMAX * SFREQ))
    X, y = [], []
    for f in files:
        data, marker = read_muse_csv(f)
        data = sosfiltfilt(sos, data, axis=-1)
        for onset in np.flatnonzero(np.isin(marker, list(codes))):
            if onset + start < 0 or onset + stop > data.shape[1]:
                continue
            trial = data[:, onset + start:onset + stop]
            if np.abs(trial).max() <= REJECT_UV:
                X.append(trial)
                y.append(int(marker[onset]) - 1)  # 0: first code, 1: second
    return np.asarray(X, np.float32), np.asarray(y)


def load_task(root: Path, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X, y, subjects = [], [], []
    for folder in sorted((root / task).glob("subject*")):
        files = sorted(folder.glob("*.csv*"))
        if not files:
            continue
        Xs, ys = subject_epochs(files, TASKS[task])
        if len(np.unique(ys)) < 2:
            continue
        X.append(Xs)
        y.append(ys)
        subjects.append(np.full(len(ys), folder.name, dtype=object))
    if len(X) < 2:
        raise SystemExit(f"fewer than 2 subjects with both classes under {root / task}")
    return np.concatenate(X), np.concatenate(y), np.concatenate(subjects).astype(str)


def subsample(X, y, subjects, per_class: int, seed: int = 0):
    """At most ``per_class`` epochs per class and subject (``--quick`` only)."""
    rng = np.random.default_rng(seed)
    keep = np.concatenate([rng.permutation(np.flatnonzero((subjects == s) & (y == c)))[:per_class]
                           for s in np.unique(subjects) for c in np.unique(y)])
    keep.sort()
    return X[keep], y[keep], subjects[keep]


def decimate_epochs(X: np.ndarray, rate: float) -> np.ndarray:
    """Epochs at ``rate`` Hz (an integer divisor of 256): zero-phase FIR anti-aliasing."""
    factor = SFREQ / rate
    if factor != int(factor) or factor < 1:
        raise SystemExit(f"--erp-rate must divide {SFREQ:g} Hz by an integer, got {rate:g}")
    if factor == 1:
        return X
    return decimate(X, int(factor), ftype="fir", axis=-1, zero_phase=True).astype(np.float32)


def sigformer_model(epochs: int, quick: bool, rate: float = SFREQ) -> SignalClassifier:
    # 0.125 s temporal patches (32 samples at 256 Hz), 0.125 s temporal kernel
    patch = int(round(0.125 * rate))
    params = dict(patch_size=patch, kernel_size=patch + 1)
    if quick or rate < SFREQ:  # the smaller model for the smaller input (and --quick)
        params.update(emb_size=16, num_heads=4, depth=1, spa_dim=8)
    return SignalClassifier(
        model="dbconformer", model_params=params, max_epochs=epochs, lr=1e-3, batch_size=32,
        euclidean_alignment=True, class_weight="balanced", validation_split=0.2,
        early_stopping_patience=max(2, epochs // 5), lr_schedule="cosine",
        augmentation=[{"name": "segment_recombination", "n_segments": 4, "ratio": 0.5}])


def xdawn_tangent_space():
    from pyriemann.estimation import XdawnCovariances
    from pyriemann.tangentspace import TangentSpace

    return make_pipeline(XdawnCovariances(nfilter=2, estimator="oas"),
                         TangentSpace(metric="riemann"),
                         LogisticRegression(max_iter=1000, class_weight="balanced"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--shots", type=int, nargs="+", default=[0, 2, 5, 10])
    parser.add_argument("--fine-tune-epochs", type=int, default=20)
    parser.add_argument("--fine-tune-lr", type=float, default=1e-4,
                        help="learning rate of the few-shot fine-tunes (a tenth of training's)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny model, 2 epochs, 1 seed, one task, 8 epochs per class and "
                             "subject: checks the script runs")
    parser.add_argument("--erp-rate", type=float, default=None,
                        help="also run both candidates on the epochs decimated to this rate "
                             "(Hz, 256 / integer), the DBConformer sized for it")
    parser.add_argument("--few-shot-only", action="store_true",
                        help="only the few-shot curve (e.g. another --fine-tune-lr), written to "
                             "eeg_muse_fewshot.json; the leave-one-subject-out rows are skipped")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.seeds, args.tasks = 2, [0], args.tasks[:1]
        args.shots, args.fine_tune_epochs = [0, 2], 1
    # --quick checks that the script runs: it writes a report only when --out is given
    name = "eeg_muse_fewshot.json" if args.few_shot_only else "eeg_muse.json"
    out = args.out or (None if args.quick else REPO / "benchmarks" / "results" / name)
    if not args.data.is_dir():
        raise SystemExit(f"Muse recordings not found in {args.data}; pass --data")

    report = {"benchmark": "eeg_muse", "protocol": "leave-one-subject-out", "epochs": args.epochs,
              "erp_rate_hz": args.erp_rate,
              "seeds": args.seeds, "preprocessing": f"1-30 Hz band-pass, {TMIN}..{TMAX} s, "
              f"reject > {REJECT_UV} uV, microvolts", "tasks": {}}
    for task in args.tasks:
        X, y, subjects = load_task(args.data, task)
        if args.quick:
            X, y, subjects = subsample(X, y, subjects, per_class=8)
        counts = {str(s): np.bincount(y[subjects == s], minlength=2).tolist()
                  for s in np.unique(subjects)}
        print(f"\n{task}: {len(X)} epochs x {X.shape[1]} ch x {X.shape[2]} samples; "
              f"per subject [{TASKS[task][1]}, {TASKS[task][2]}]: {counts}")
        rows = {}
        candidates = {"DBConformer (sigformer recipe)": (sigformer_model(args.epochs, args.quick), X),
                      "xDAWN+TS+LR (pyriemann)": (xdawn_tangent_space(), X)}
        if args.erp_rate:
            low = decimate_epochs(X, args.erp_rate)
            rate = f"{args.erp_rate:g} Hz"
            candidates[f"DBConformer, {rate} (sigformer)"] = (
                sigformer_model(args.epochs, args.quick, args.erp_rate), low)
            candidates[f"xDAWN+TS+LR, {rate}"] = (xdawn_tangent_space(), low)
        for name, (est, data) in ({} if args.few_shot_only else candidates).items():
            t0 = time.perf_counter()
            res = cross_subject(est, data, y, subjects=subjects, seeds=args.seeds)
            summary = res.summary()
            row = {k: summary[k] for k in ("accuracy", "balanced_accuracy", "kappa", "roc_auc")}
            row["per_subject"] = res.rows
            row["seconds"] = round(time.perf_counter() - t0, 1)
            rows[name] = row
            print(f"  {name:32s} bal. acc {row['balanced_accuracy']['mean']:.3f}  "
                  f"AUC {row['roc_auc']['mean']:.3f}  ({row['seconds']} s)")
        if rows:
            print_metric_table(rows, 32, extra=[
                ("ROC-AUC", 15,
                 lambda r: f"{r['roc_auc']['mean']:.3f} ± {r['roc_auc']['std']:.3f}")])

        smallest = {s: min(c) for s, c in counts.items()}
        targets = [s for s, m in smallest.items() if m > max(args.shots)]
        targets = targets[:1] if args.quick else targets
        t0 = time.perf_counter()
        curve = few_shot_curve(sigformer_model(args.epochs, args.quick), X, y,
                               subjects=subjects, targets=targets, shots=args.shots,
                               n_repeats=len(args.seeds), fine_tune_epochs=args.fine_tune_epochs,
                               fine_tune_lr=args.fine_tune_lr)
        few_shot = {"targets": targets, "fine_tune_epochs": args.fine_tune_epochs,
                    "fine_tune_lr": args.fine_tune_lr, **curve.to_dict(),
                    "balanced_accuracy": {str(k): v for k, v in
                                          curve.curve("balanced_accuracy").items()},
                    "seconds": round(time.perf_counter() - t0, 1)}
        print("  few-shot (DBConformer, fine-tuned on k trials per class of the held-out "
              "subject): " + ", ".join(f"k={k}: bal. acc {v['mean']:.3f}" for k, v in
                                       curve.curve("balanced_accuracy").items()))
        report["tasks"][task] = {"n_epochs": len(X), "per_subject_counts": counts,
                                 "results": rows, "few_shot": few_shot}

    report["machine"] = {"python": platform.python_version(), "torch": torch.__version__,
                         "threads": torch.get_num_threads()}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, default=str))
        print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
