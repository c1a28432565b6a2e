"""Motor-imagery benchmark on PhysioNet eegmmidb S001: imagined left vs right hand (runs 4, 8,
12) and imagined fists vs feet (runs 6, 10, 14).

Side by side, same data, same preprocessing (8-32 Hz zero-phase band-pass, MOABB's default;
0-4 s epochs in microvolts; Euclidean alignment of the training and test folds separately, as
in DBConformer's CV protocol) and the same stratified 5-fold CV x 3 seeds:

* DBConformer with the EEG recipe (sigformer): segment-recombination augmentation (8 segments,
  within class), inner 20 % validation split with early stopping and best-epoch restore,
  Euclidean alignment;
* optionally DBConformer with the paper's protocol (final epoch, no validation) and braindecode
  EEGNet, ShallowFBCSPNet and EEGConformer (``--models``);
* pyriemann tangent space + logistic regression.

Prints a table of accuracy (mean ± std over folds and seeds), balanced accuracy, kappa,
parameters and CPU inference time per trial, and the forward-time ratio DBConformer /
EEGConformer at batch 64 (on this data and on the reference 22-channel, 1001-sample input).
Writes everything to JSON.

    python benchmarks/eeg_mi.py [--data ../shared/data/eeg_mi/eegmmidb] [--epochs 100] [--quick]
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


RECIPE = dict(euclidean_alignment=True, validation_split=0.2, restore_best_weights=True,
              augmentation=[{"name": "segment_recombination", "n_segments": 8}])
TASKS = ("imagined_left_right", "imagined_hands_feet")
DEFAULT_MODELS = ("DBConformer (recipe)", "TS+LR (pyriemann)")


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


def candidates(sfreq: float, epochs: int, quick: bool) -> dict:
    """Every model of the comparison as an sklearn estimator (EA inside the estimator or as
    the first pipeline step, so the test fold is aligned on its own)."""
    specs = neural_models(sfreq)
    if quick:
        specs["DBConformer"]["model_params"].update(emb_size=16, num_heads=4, depth=1, spa_dim=8)
    patience = max(2, epochs // 5)
    out = {
        "DBConformer (recipe)": SignalClassifier(**specs["DBConformer"], **RECIPE,
                                                 early_stopping_patience=patience,
                                                 max_epochs=epochs, lr=1e-3, batch_size=32),
        "DBConformer (paper protocol)": SignalClassifier(**specs["DBConformer"],
                                                         euclidean_alignment=True,
                                                         max_epochs=epochs, lr=1e-3,
                                                         batch_size=32),
    }
    for name in ("EEGNet", "ShallowFBCSPNet", "EEGConformer"):
        out[name] = make_pipeline(EuclideanAlignment(mode="batch"), SignalClassifier(
            **specs[name], max_epochs=epochs, lr=1e-3, batch_size=32))
    out["TS+LR (pyriemann)"] = make_pipeline(EuclideanAlignment(mode="batch"), riemann_pipeline())
    return out


def size_and_speed(name: str, estimator, X, y, sfreq: float) -> dict:
    n_trials, n_chans, n_times = X.shape
    if not name.startswith("TS+LR"):
        spec = neural_models(sfreq)[name.split(" ")[0]]
        model = create_model(spec["model"], n_chans=n_chans, n_outputs=2, n_times=n_times,
                             sfreq=sfreq, **spec["model_params"])
        return {"parameters": n_params(model),
                "ms_per_trial_batch64": 1e3 * forward_time(model, (64, n_chans, n_times)) / 64,
                "ms_single_trial": 1e3 * forward_time(model, (1, n_chans, n_times))}
    fitted = estimator.fit(X, y)
    t1 = time.perf_counter()
    for _ in range(5):
        fitted.predict_proba(X)
    return {"parameters": int(fitted[-1][-1].coef_.size + fitted[-1][-1].intercept_.size),
            "ms_per_trial_batch64": 1e3 * (time.perf_counter() - t1) / (5 * n_trials),
            "ms_single_trial": None}


def run_task(task: str, args) -> dict:
    pre = Pipeline([BandPass(8, 32, phase="zero"), Scale(1e6)])
    epochs = load_eegmmidb(args.data, 1, task, tmin=0.0, tmax=4.0, preprocess=pre)
    X, y = epochs.data.astype(np.float32), epochs.labels
    n_trials, n_chans, n_times = X.shape
    print(f"\n{task}: {n_trials} trials x {n_chans} ch x {n_times} samples "
          f"@ {epochs.sfreq:g} Hz, classes {np.bincount(y).tolist()}")
    print(f"{args.folds}-fold CV x seeds {args.seeds}, {args.epochs} epochs per fit, "
          f"torch threads {torch.get_num_threads()}")
    results: dict[str, dict] = {}
    for name, estimator in candidates(epochs.sfreq, args.epochs, args.quick).items():
        if name not in args.models:
            continue
        t0 = time.perf_counter()
        res = within_session_cv(estimator, X, y, n_splits=args.folds, seeds=args.seeds)
        summary = res.summary()
        row = {k: summary[k] for k in ("accuracy", "balanced_accuracy", "kappa", "roc_auc")}
        row["cv_seconds"] = round(time.perf_counter() - t0, 1)
        row["stopped_at_epoch"] = [len(h) for h in res.histories] or None
        row.update(size_and_speed(name, estimator, X, y, epochs.sfreq))
        results[name] = row
        print(f"  {name:28s} acc {row['accuracy']['mean']:.3f} ± {row['accuracy']['std']:.3f}"
              f"  ({row['cv_seconds']} s)")
    print_metric_table(results, 28, extra=[
        ("params", 9, lambda r: f"{r['parameters']:,d}"),
        ("ms/trial@64", 11, lambda r: f"{r['ms_per_trial_batch64']:.3f}"),
    ])
    return {"n_trials": n_trials, "n_channels": n_chans, "n_times": n_times,
            "sfreq": epochs.sfreq, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--epochs", type=int, default=100, help="maximum training epochs per fit")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS),
                        help="subset of: DBConformer (recipe), DBConformer (paper protocol), "
                             "EEGNet, ShallowFBCSPNet, EEGConformer, TS+LR (pyriemann)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny DBConformer, 2 epochs, 2 folds, 1 seed, one task")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--timing-only", action="store_true",
                        help="re-measure forward times and ratios into an existing JSON report "
                             "(run on an otherwise idle machine)")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.folds, args.seeds, args.tasks = 2, 2, [0], args.tasks[:1]
    # --quick checks that the script runs: it writes a report only when --out is given
    out = args.out or (None if args.quick else REPO / "benchmarks" / "results" / "eeg_mi.json")
    if args.timing_only:
        out = out or REPO / "benchmarks" / "results" / "eeg_mi.json"
        report = json.loads(out.read_text()) if out.exists() else {}
        report["forward_ratio_batch64"] = forward_ratios(64, 640, 160.0)
        for label, r in report["forward_ratio_batch64"].items():
            print(f"  {label:18s} {1e3 * r['dbconformer_s']:7.1f} ms / "
                  f"{1e3 * r['eegconformer_s']:7.1f} ms = {r['ratio']:.3f}x")
        out.write_text(json.dumps(report, indent=2))
        return
    if not (args.data / "S001R04.edf").exists():
        raise SystemExit(f"eegmmidb S001 not found in {args.data}; pass --data")

    report = {
        "benchmark": "eeg_mi", "data": "eegmmidb S001", "folds": args.folds,
        "seeds": args.seeds, "max_epochs_per_fit": args.epochs,
        "recipe": {k: v for k, v in RECIPE.items()},
        "preprocessing": "bandpass 8-32 Hz zero-phase, 0-4 s epochs, microvolts, Euclidean "
                         "alignment of train and test folds separately",
        "tasks": {task: run_task(task, args) for task in args.tasks},
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "processor": platform.processor()},
    }
    if not args.quick:
        report["forward_ratio_batch64"] = forward_ratios(64, 640, 160.0)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
        print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
