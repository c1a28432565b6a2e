"""Motor-imagery benchmark on PhysioNet eegmmidb S001, imagined left vs right hand (runs 4, 8, 12).

Side by side, same data, same preprocessing (8-32 Hz zero-phase band-pass, MOABB's default;
0-4 s epochs; Euclidean alignment per fold as in DBConformer's CV protocol) and the same
stratified 5-fold CV x 3 seeds:

* DBConformer (sigformer),
* braindecode EEGNet, ShallowFBCSPNet and EEGConformer,
* pyriemann tangent space + logistic regression.

Prints a table of accuracy (mean ± std over folds and seeds), balanced accuracy, kappa,
parameters and CPU inference time per trial, and the forward-time ratio DBConformer /
EEGConformer at batch 64 (on this data and on the reference 22-channel, 1001-sample input).
Writes everything to JSON.

    python benchmarks/eeg_mi.py [--data ../shared/data/eeg_mi/eegmmidb] [--epochs 80]
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
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from sigformer.data import load_eegmmidb
from sigformer.estimators import SignalClassifier
from sigformer.evaluation import within_session_cv
from sigformer.models import create_model
from sigformer.stages import BandPass, EuclideanAlignment, Pipeline, Scale

warnings.filterwarnings("ignore", message=".*does not have many workers.*")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "eeg_mi" / "eegmmidb"


def neural_models(sfreq: float) -> dict[str, dict]:
    # DBConformer's 125-sample patch and 63-tap kernel are 0.5 s and 0.25 s at 250 Hz;
    # keep those durations at this dataset's rate.
    patch = int(round(0.5 * sfreq))
    kernel = int(round(0.25 * sfreq)) | 1
    return {
        "DBConformer": dict(model="dbconformer",
                            model_params=dict(patch_size=patch, kernel_size=kernel)),
        "EEGNet": dict(model="braindecode.EEGNet", model_params={}),
        "ShallowFBCSPNet": dict(model="braindecode.ShallowFBCSPNet", model_params={}),
        "EEGConformer": dict(model="braindecode.EEGConformer", model_params={}),
    }


def riemann_pipeline():
    from pyriemann.estimation import Covariances
    from pyriemann.tangentspace import TangentSpace

    return make_pipeline(Covariances("oas"), TangentSpace(metric="riemann"),
                         LogisticRegression(max_iter=1000))


@torch.inference_mode()
def forward_time(model: torch.nn.Module, shape: tuple[int, ...], repeats: int = 10) -> float:
    """Median seconds per forward pass on CPU (after warm-up)."""
    model.eval()
    x = torch.randn(*shape)
    for _ in range(2):
        model(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def n_params(model: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def forward_ratios(n_chans: int, n_times: int, sfreq: float) -> dict:
    """Forward time at batch 64, DBConformer / EEGConformer, on this data's shape and on the
    reference BNCI2014001 input (22 x 1001 at 250 Hz)."""
    ratios = {}
    for label, (c, t, sf) in {f"eegmmidb_{n_chans}x{n_times}": (n_chans, n_times, sfreq),
                              "reference_22x1001": (22, 1001, 250.0)}.items():
        params = neural_models(sf)["DBConformer"]["model_params"] if sf != 250.0 else {}
        db = create_model("dbconformer", n_chans=c, n_outputs=2, n_times=t, sfreq=sf, **params)
        ec = create_model("braindecode.EEGConformer", n_chans=c, n_outputs=2, n_times=t,
                          sfreq=sf)
        t_db, t_ec = forward_time(db, (64, c, t)), forward_time(ec, (64, c, t))
        ratios[label] = {"dbconformer_s": t_db, "eegconformer_s": t_ec, "ratio": t_db / t_ec,
                         "dbconformer_params": n_params(db), "eegconformer_params": n_params(ec)}
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=80, help="training epochs per fit")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" /
                        "eeg_mi.json")
    parser.add_argument("--timing-only", action="store_true",
                        help="re-measure forward times and ratios into an existing JSON report "
                             "(run on an otherwise idle machine)")
    args = parser.parse_args()
    if args.timing_only:
        report = json.loads(args.out.read_text()) if args.out.exists() else {}
        report["forward_ratio_batch64"] = forward_ratios(64, 640, 160.0)
        for label, r in report["forward_ratio_batch64"].items():
            print(f"  {label:18s} {1e3 * r['dbconformer_s']:7.1f} ms / "
                  f"{1e3 * r['eegconformer_s']:7.1f} ms = {r['ratio']:.3f}x")
        args.out.write_text(json.dumps(report, indent=2))
        return
    if not (args.data / "S001R04.edf").exists():
        raise SystemExit(f"eegmmidb S001 not found in {args.data}; pass --data")

    pre = Pipeline([BandPass(8, 32, phase="zero"), Scale(1e6)])
    epochs = load_eegmmidb(args.data, 1, "imagined_left_right", tmin=0.0, tmax=4.0,
                           preprocess=pre)
    X, y = epochs.data.astype(np.float32), epochs.labels
    n_trials, n_chans, n_times = X.shape
    print(f"eegmmidb S001 runs 4/8/12: {n_trials} trials x {n_chans} ch x {n_times} samples "
          f"@ {epochs.sfreq:g} Hz, classes {np.bincount(y).tolist()}")
    print(f"{args.folds}-fold CV x seeds {args.seeds}, {args.epochs} epochs per fit, "
          f"torch threads {torch.get_num_threads()}\n")

    results: dict[str, dict] = {}
    candidates = {name: make_pipeline(EuclideanAlignment(mode="batch"), SignalClassifier(
        **spec, max_epochs=args.epochs, lr=1e-3, batch_size=32))
        for name, spec in neural_models(epochs.sfreq).items()}
    candidates["TS+LR (pyriemann)"] = make_pipeline(EuclideanAlignment(mode="batch"),
                                                    riemann_pipeline())
    for name, estimator in candidates.items():
        t0 = time.perf_counter()
        res = within_session_cv(estimator, X, y, n_splits=args.folds, seeds=args.seeds)
        summary = res.summary()
        row = {k: summary[k] for k in ("accuracy", "balanced_accuracy", "kappa", "roc_auc")}
        row["cv_seconds"] = round(time.perf_counter() - t0, 1)
        if name in neural_models(epochs.sfreq):
            spec = neural_models(epochs.sfreq)[name]
            model = create_model(spec["model"], n_chans=n_chans, n_outputs=2, n_times=n_times,
                                 sfreq=epochs.sfreq, **spec["model_params"])
            row["parameters"] = n_params(model)
            row["ms_per_trial_batch64"] = 1e3 * forward_time(model, (64, n_chans, n_times)) / 64
            row["ms_single_trial"] = 1e3 * forward_time(model, (1, n_chans, n_times))
        else:
            fitted = candidates[name].fit(X, y)
            t1 = time.perf_counter()
            for _ in range(5):
                fitted.predict_proba(X)
            row["parameters"] = int(fitted[-1][-1].coef_.size + fitted[-1][-1].intercept_.size)
            row["ms_per_trial_batch64"] = 1e3 * (time.perf_counter() - t1) / (5 * n_trials)
            row["ms_single_trial"] = None
        results[name] = row
        print(f"  {name:18s} acc {row['accuracy']['mean']:.3f} ± {row['accuracy']['std']:.3f}"
              f"  ({row['cv_seconds']} s)")

    ratios = forward_ratios(n_chans, n_times, epochs.sfreq)

    print_metric_table(results, 18, extra=[
        ("params", 9, lambda r: f"{r['parameters']:,d}"),
        ("ms/trial@64", 11, lambda r: f"{r['ms_per_trial_batch64']:.3f}"),
        ("ms@1", 7, lambda r: "-" if r["ms_single_trial"] is None
         else f"{r['ms_single_trial']:.2f}"),
    ])
    print("\nforward time at batch 64, DBConformer / EEGConformer (target <= 0.3):")
    for label, r in ratios.items():
        status = "meets target" if r["ratio"] <= 0.3 else "MISSES target"
        print(f"  {label:18s} {1e3 * r['dbconformer_s']:7.1f} ms / {1e3 * r['eegconformer_s']:7.1f}"
              f" ms = {r['ratio']:.3f}x  ({status}; params {r['dbconformer_params']:,} vs "
              f"{r['eegconformer_params']:,})")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "eeg_mi", "data": "eegmmidb S001 runs 4,8,12 (imagined left/right)",
        "n_trials": n_trials, "n_channels": n_chans, "n_times": n_times,
        "sfreq": epochs.sfreq, "folds": args.folds, "seeds": args.seeds,
        "epochs_per_fit": args.epochs, "preprocessing": "bandpass 8-32 Hz zero-phase, "
        "0-4 s epochs, Euclidean alignment per fold", "results": results,
        "forward_ratio_batch64": ratios,
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "processor": platform.processor()},
    }
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
