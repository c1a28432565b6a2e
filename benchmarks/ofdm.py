"""OFDM channel estimation: AdaFortiTran vs FortiTran vs the linear model vs LS and LMMSE.

One run, one training set for every model: TDL-A slots on the reference grid (120 x 14,
40 x 2 pilots) whose SNR, delay spread and Doppler are drawn from the reference's sets
(0..25 dB, 25..300 ns, 50..1000 Hz), so a single model must cover all conditions. Test sets:
the reference's three sweeps (SNR at 200 ns / 500 Hz; delay spread at 10 dB / 600 Hz; Doppler
at 10 dB / 100 ns) plus two low-Doppler points at 25 dB (50 and 100 Hz).

Models train with the released recipe (Adam, ExponentialLR 0.995 per epoch, early stopping
with patience 3 on a 10% validation split, best epoch restored; ``sigformer.recipes.ofdm``).
The mixed-condition sample LMMSE is a fair baseline: fitted on max(10 P^2, n_train) slots of the
same training mixture (64,000 for the 80 pilots of the reference grid).

Prints the NMSE (dB) table with the genie-LMMSE bound (true correlation per condition: the
MMSE estimator for these Gaussian channels), each estimator's gap to the bound, the targets
(AdaFortiTran < FortiTran < linear < LS at every point; AdaFortiTran within 1 dB of the bound
on average and never more than 3 dB from it; better than the mixed-condition sample LMMSE at
every point; >= 3 dB better than it at 25 dB and low Doppler) and inference frames/s against
LMMSE. Writes JSON and a PNG of the curves.

    python benchmarks/ofdm.py [--preset small|tiny|paper] [--n-train 8000] [--epochs 6]
    python benchmarks/ofdm.py --pretrained runs/ofdm_ada runs/ofdm_forti runs/ofdm_linear

``--pretrained`` evaluates trained checkpoints without training: each path is a checkpoint
folder (``config.json`` inside), a training folder of ``scripts/train_ofdm.py`` (its ``best/``
is used) or a folder holding such folders.
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

from sigformer.checkpoint import load_checkpoint
from sigformer.data.ofdm import REFERENCE_SWEEPS, OFDMConfig, simulate_ofdm, simulate_sweeps
from sigformer.models import create_model
from sigformer.rf.channel_estimation import (
    GenieLMMSE,
    LSInterpolation,
    fair_sample_lmmse_slots,
    fit_sample_lmmse_on_mixture,
)
from sigformer.rf.ofdm import (
    ModelEstimator,
    estimator_targets,
    evaluate_sweeps,
    format_sweep_table,
    plot_sweeps,
    pretrained_problems,
    train_channel_estimator,
)

warnings.filterwarnings("ignore", message=".*does not have many workers.*")
REPO = Path(__file__).resolve().parents[1]
LOW_DOPPLER = {"vary": "doppler_hz", "values": [50, 100], "fixed": {"snr_db": 25,
                                                                    "delay_spread_ns": 200}}


def frames_per_second(estimator, data, repeats: int = 3) -> float:
    estimator.predict(data.subset(slice(0, 8)))  # warm-up
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        estimator.predict(data)
        best = min(best, time.perf_counter() - t0)
    return len(data) / best


def simulator_speed(rounds: int = 3) -> dict[str, dict[str, float]]:
    """Slots/s of the reference and fast engines, alternated in one process (best of
    ``rounds``) on the default grid: plain TDL-A and with the ICI switch."""
    cases = {"TDL-A": ({}, 4096), "TDL-A + ICI": ({"ici": True}, 512)}
    result = {}
    for case, (kwargs, n) in cases.items():
        best = {"reference": 0.0, "fast": 0.0}
        for _ in range(rounds):
            for engine in best:
                t0 = time.perf_counter()
                simulate_ofdm(n, seed=1, engine=engine, **kwargs)
                best[engine] = max(best[engine], n / (time.perf_counter() - t0))
        result[case] = {**best, "speedup": best["fast"] / best["reference"]}
        print(f"simulator {case:12s}: reference {best['reference']:,.0f} slots/s, fast "
              f"{best['fast']:,.0f} slots/s ({result[case]['speedup']:.1f}x)", flush=True)
    return result


LABELS = {"adafortitran": "AdaFortiTran", "fortitran": "FortiTran", "ofdm_linear": "linear"}


def checkpoint_folders(paths: list[str]) -> list[Path]:
    """Checkpoint folders named by ``paths`` (a checkpoint, a training folder with ``best/``,
    or a folder of those)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if (path / "config.json").is_file():
            found.append(path)
        elif (path / "best" / "config.json").is_file():
            found.append(path / "best")
        elif path.is_dir():
            inner = checkpoint_folders([str(p) for p in sorted(path.iterdir()) if p.is_dir()])
            if not inner:
                raise SystemExit(f"{path} holds no sigformer checkpoint")
            found.extend(inner)
        else:
            raise SystemExit(f"{path} is not a checkpoint folder")
    return found


def load_pretrained(paths: list[str], config: OFDMConfig) -> tuple[dict, dict]:
    """The checkpoints to evaluate; refused when made for another grid / pilot pattern or SNR
    definition than the sweeps (TDL-A, pilot SNR); another channel profile is noted."""
    estimators, info = {}, {}
    for folder in checkpoint_folders(paths):
        model, cfg = load_checkpoint(folder)
        problems, note = pretrained_problems(cfg, config, "pilot", "A")
        if problems:
            raise SystemExit(f"{folder}: " + "; ".join(problems))
        if note:
            print(f"note: {folder} was {note}")
        label = LABELS.get(cfg["model"], cfg["model"])
        if label in estimators:
            label = f"{label} ({folder})"
        estimators[label] = ModelEstimator(model, label)
        info[label] = {"folder": str(folder), "parameters": sum(
            p.numel() for p in model.parameters()), "extra": cfg.get("extra", {})}
        print(f"loaded {label}: {info[label]['parameters']:,} parameters from {folder}")
    return estimators, info


def train_models(args, train) -> tuple[dict, dict]:
    preset = None if args.preset == "paper" else args.preset
    models = {
        "linear": (create_model("ofdm_linear"), args.linear_epochs, 1e-2),
        "FortiTran": (create_model("fortitran", preset), args.epochs, args.lr),
        "AdaFortiTran": (create_model("adafortitran", preset), args.epochs, args.lr),
    }
    estimators, training = {}, {}
    for name, (model, epochs, lr) in models.items():
        n_params = sum(p.numel() for p in model.parameters())
        t0 = time.perf_counter()
        hist = train_channel_estimator(model, train, max_epochs=epochs, lr=lr,
                                       batch_size=args.batch_size, seed=args.seed,
                                       early_stopping_patience=args.patience or None)
        seconds = time.perf_counter() - t0
        training[name] = {"parameters": n_params, "epochs_run": len(hist.epochs),
                          "max_epochs": epochs, "lr": lr, "train_seconds": round(seconds, 1),
                          "best_epoch": hist.best_epoch,
                          "final_train_nmse_db": hist.series("train_nmse_db")[-1],
                          "best_val_nmse_db": min(hist.series("val_nmse_db"), default=None)}
        print(f"trained {name:13s} {n_params:>9,d} params, {len(hist.epochs)}/{epochs} epochs "
              f"in {seconds:.0f} s (train NMSE {training[name]['final_train_nmse_db']:.2f} dB, "
              f"best epoch {hist.best_epoch})", flush=True)
        estimators[name] = ModelEstimator(model, name)
    return estimators, training


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small", help="model preset (paper = 1,081,826 params)")
    ap.add_argument("--n-train", type=int, default=8000)
    ap.add_argument("--n-test", type=int, default=300, help="slots per test point")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--linear-epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--patience", type=int, default=3, help="early stopping; 0 = off")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--pretrained", nargs="+", default=None, metavar="DIR",
                    help="evaluate these trained checkpoints instead of training")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "ofdm.json"))
    ap.add_argument("--simulator-speed", action="store_true",
                    help="only measure the simulator's engines (slots/s) and exit")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.simulator_speed:
        speed = simulator_speed()
        out = Path(args.out).with_name("ofdm_simulator.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"machine": platform.machine(), "slots_per_s": speed},
                                  indent=2))
        print(f"wrote {out}")
        return
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    train = None if args.pretrained else simulate_ofdm(args.n_train, seed=args.seed)
    sweeps = simulate_sweeps(args.n_test, seed=args.seed + 1,
                             sweeps={**REFERENCE_SWEEPS, "low_doppler_25dB": LOW_DOPPLER})
    print(f"simulated {args.n_train if train is not None else 0} training slots and "
          f"{sum(len(p) for p in sweeps.values())} test points x {args.n_test} in "
          f"{time.perf_counter() - t0:.1f} s")
    config = sweeps["snr"][0][1].config
    n_fit = max(fair_sample_lmmse_slots(config), args.n_train if train is not None else 0)
    t0 = time.perf_counter()
    sample = fit_sample_lmmse_on_mixture(n_fit, train=train, seed=args.seed + 2)
    print(f"fitted the mixed-condition sample LMMSE on {sample.n_fitted_:,} slots of the "
          f"training mixture in {time.perf_counter() - t0:.1f} s")
    estimators = {"LS": LSInterpolation(), "LMMSE (sample)": sample}
    if args.pretrained:
        models, training = load_pretrained(args.pretrained, config)
    else:
        models, training = train_models(args, train)
    estimators.update(models)
    bound = GenieLMMSE("A")
    result = evaluate_sweeps(estimators, sweeps, bound)
    print("\nNMSE (dB); 'bound' = LMMSE with the true correlation of each test condition")
    print(format_sweep_table(result))
    names = list(estimators)
    print("\nworst / mean gap to the bound (dB): " + ", ".join(
        f"{n} {max(r['gap_to_bound_db'][n] for r in result['points']):.2f} / "
        f"{np.mean([r['gap_to_bound_db'][n] for r in result['points']]):.2f}" for n in names))
    speed_data = sweeps["snr"][0][1]
    fps = {n: frames_per_second(e, speed_data) for n, e in estimators.items()}
    fps["LMMSE (genie)"] = frames_per_second(bound, speed_data)
    print(f"\ninference frames/s (CPU, {torch.get_num_threads()} threads): " + ", ".join(
        f"{n} {v:,.0f}" for n, v in fps.items()))
    if "AdaFortiTran" in fps:
        print("ratio AdaFortiTran / sample LMMSE frames/s: "
              f"{fps['AdaFortiTran'] / fps['LMMSE (sample)']:.4f}")
    targets = estimator_targets(result["points"])
    print("\ntargets:")
    for k, v in targets.items():
        print(f"  {'MET ' if v else 'MISS'} {k}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    title = ("TDL-A, pretrained checkpoints" if args.pretrained else
             f"TDL-A, preset {args.preset}, {args.n_train} training slots")
    plot_sweeps(result, out.with_suffix(".png"), title=title)
    report = {"args": vars(args), "machine": platform.machine(), "threads":
              torch.get_num_threads(), "training" if not args.pretrained else "pretrained":
              training, "sample_lmmse_fit_slots": sample.n_fitted_,
              "points": result["points"], "frames_per_second": fps, "targets": targets}
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
