"""OFDM channel estimation: AdaFortiTran vs FortiTran vs the linear model vs LS and LMMSE.

One run, one training set for every model: TDL-A slots on the reference grid (120 x 14,
40 x 2 pilots) whose SNR, delay spread and Doppler are drawn from the reference's sets
(0..25 dB, 25..300 ns, 50..1000 Hz), so a single model must cover all conditions. Test sets:
the reference's three sweeps (SNR at 200 ns / 500 Hz; delay spread at 10 dB / 600 Hz; Doppler
at 10 dB / 100 ns) plus two low-Doppler points at 25 dB (50 and 100 Hz).

Prints the NMSE (dB) table with the genie-LMMSE bound (true correlation per condition: the
MMSE estimator for these Gaussian channels), each estimator's gap to the bound, the targets
(AdaFortiTran < FortiTran < linear < LS at every point; AdaFortiTran within 1 dB of the bound
everywhere; >= 3 dB better than the mixed-condition sample LMMSE at 25 dB and low Doppler) and
inference frames/s against LMMSE. Writes JSON and a PNG of the curves.

    python benchmarks/ofdm.py [--preset small|tiny|paper] [--n-train 8000] [--epochs 6]
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

from sigformer.data.ofdm import REFERENCE_SWEEPS, simulate_ofdm, simulate_sweeps
from sigformer.models import create_model
from sigformer.rf.channel_estimation import GenieLMMSE, LSInterpolation, SampleLMMSE
from sigformer.rf.ofdm import (
    ModelEstimator,
    evaluate_sweeps,
    format_sweep_table,
    plot_sweeps,
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


def check_targets(points: list[dict]) -> dict[str, bool]:
    ada, forti, lin = "AdaFortiTran", "FortiTran", "linear"
    order = all(r["nmse_db"][ada] < r["nmse_db"][forti] < r["nmse_db"][lin] < r["nmse_db"]["LS"]
                for r in points)
    within = all(r["gap_to_bound_db"][ada] <= 1.0 for r in points)
    low = [r for r in points if r["sweep"] == "low_doppler_25dB"]
    gain = all(r["nmse_db"]["LMMSE (sample)"] - r["nmse_db"][ada] >= 3.0 for r in low)
    return {"Ada < Forti < linear < LS at every point": order,
            "Ada within 1 dB of the genie bound at every point": within,
            "Ada >= 3 dB better than mixed sample LMMSE at 25 dB, low Doppler": gain}


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
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "ofdm.json"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    preset = None if args.preset == "paper" else args.preset
    t0 = time.perf_counter()
    train = simulate_ofdm(args.n_train, seed=args.seed)
    sweeps = simulate_sweeps(args.n_test, seed=args.seed + 1,
                             sweeps={**REFERENCE_SWEEPS, "low_doppler_25dB": LOW_DOPPLER})
    print(f"simulated {len(train)} training slots and "
          f"{sum(len(p) for p in sweeps.values())} test points x {args.n_test} in "
          f"{time.perf_counter() - t0:.1f} s")
    estimators = {"LS": LSInterpolation(), "LMMSE (sample)": SampleLMMSE().fit(train)}
    models = {
        "linear": (create_model("ofdm_linear"), args.linear_epochs, 1e-2),
        "FortiTran": (create_model("fortitran", preset), args.epochs, args.lr),
        "AdaFortiTran": (create_model("adafortitran", preset), args.epochs, args.lr),
    }
    training = {}
    for name, (model, epochs, lr) in models.items():
        n_params = sum(p.numel() for p in model.parameters())
        t0 = time.perf_counter()
        hist = train_channel_estimator(model, train, max_epochs=epochs, lr=lr,
                                       batch_size=args.batch_size, seed=args.seed,
                                       progress_bar=False)
        seconds = time.perf_counter() - t0
        training[name] = {"parameters": n_params, "epochs": epochs, "lr": lr,
                          "train_seconds": round(seconds, 1),
                          "final_train_nmse_db": hist.series("train_nmse_db")[-1]}
        print(f"trained {name:13s} {n_params:>9,d} params, {epochs} epochs in {seconds:.0f} s "
              f"(train NMSE {training[name]['final_train_nmse_db']:.2f} dB)", flush=True)
        estimators[name] = ModelEstimator(model, name)
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
    print("ratio AdaFortiTran / sample LMMSE frames/s: "
          f"{fps['AdaFortiTran'] / fps['LMMSE (sample)']:.4f}")
    targets = check_targets(result["points"])
    print("\ntargets:")
    for k, v in targets.items():
        print(f"  {'MET ' if v else 'MISS'} {k}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_sweeps(result, out.with_suffix(".png"), title=f"TDL-A, preset {args.preset}, "
                f"{args.n_train} training slots")
    report = {"args": vars(args), "machine": platform.machine(), "threads":
              torch.get_num_threads(), "training": training, "points": result["points"],
              "frames_per_second": fps, "targets": targets}
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
