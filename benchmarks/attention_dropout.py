"""Training without attention dropout: the quality it costs and the speed it buys (issue 13).

A third arm stacks bf16 autocast on it (``--bf16``, the training benchmark's
``fast-noattn-bf16``), so the quality of the fastest training path is measured the same way.

On a CPU, dropout on the attention weights forces PyTorch's unfused attention (docs/
performance.md), so ``fast_path(attention_dropout=False)`` trains AdaFortiTran 2.98x (small)
and 2.19x (paper) faster; ClST and DBConformer gain 1.03x and the other models have no such
dropout, so AdaFortiTran is the model whose default this decides.

Per seed, both arms start from the same initial weights (``--seed`` seeds them), see the same
simulated slots in the same order and use the released recipe (``scripts/train_ofdm.py``:
Adam, ExponentialLR 0.995, batch 64); they differ only in the switch. Each arm's best epoch is
then scored on one common test set of the training mixture (its own seed, the same for every
run) and on the reference SNR sweep against the genie-LMMSE bound. Prints per-seed NMSE, the
paired difference (no attention dropout minus reference) next to the seed-to-seed spread, and
the samples/s each arm trained at; writes JSON.

    python benchmarks/attention_dropout.py --runs runs/attnq --seeds 0 1
    python benchmarks/attention_dropout.py --runs runs/attnq --seeds 0 1 --collect

``--collect`` only scores runs that finished (no training). Training a run that already has
a checkpoint resumes it.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from sigformer.checkpoint import load_checkpoint
from sigformer.data.ofdm import REFERENCE_SWEEPS, REFERENCE_TRAIN, simulate_ofdm, simulate_sweeps
from sigformer.rf.channel_estimation import GenieLMMSE, nmse_db
from sigformer.rf.ofdm import ModelEstimator, evaluate_sweeps

REPO = Path(__file__).resolve().parents[1]
ARMS = {"reference": [], "no attention dropout": ["--no-attention-dropout"],
        # the fastest stack the training benchmark measures (fast-noattn-bf16)
        "no attention dropout + bf16": ["--no-attention-dropout", "--bf16"]}
FOLDER = {"reference": "ref", "no attention dropout": "noattn",
          "no attention dropout + bf16": "noattn_bf16"}
TEST_SEED = 424242  # one test set for every run, independent of the training seeds


def run_folder(runs: Path, arm: str, seed: int) -> Path:
    return runs / f"{FOLDER[arm]}_s{seed}"


def train(args: argparse.Namespace, arm: str, seed: int) -> None:
    folder = run_folder(args.runs, arm, seed)
    cmd = [sys.executable, str(REPO / "scripts" / "train_ofdm.py"), "--preset", args.preset,
           "--n-train", str(args.n_train), "--epochs", str(args.epochs), "--patience", "0",
           "--seed", str(seed), "--out", str(folder), "--resume", *ARMS[arm]]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    print(f"training {arm}, seed {seed} -> {folder}", flush=True)
    subprocess.run(cmd, check=True)


def score(folder: Path, test, sweeps, bound) -> dict:
    summary = json.loads((folder / "summary.json").read_text())
    model, _ = load_checkpoint(folder / "best")
    estimator = ModelEstimator(model, "model")
    sweep = evaluate_sweeps({"model": estimator}, sweeps, bound)["points"]
    speeds = [e["samples_per_s"] for e in summary["epochs"]]
    return {"test_nmse_db": nmse_db(estimator.predict(test), test.channels),
            "best_val_nmse_db": min(e["val_nmse_db"] for e in summary["epochs"]),
            "best_epoch": summary["best_epoch"], "epochs": len(summary["epochs"]),
            "run": {k: summary["args"][k] for k in ("preset", "n_train", "epochs", "seed")},
            "samples_per_s": float(np.median(speeds)),
            "sweep_gap_to_bound_db": {f"{p['sweep']}={p['value']:g}":
                                      p["gap_to_bound_db"]["model"] for p in sweep}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, default=REPO / "runs" / "attnq")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--n-train", type=int, default=10_000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--n-test", type=int, default=2_000, help="common mixture test slots")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--collect", action="store_true", help="score finished runs only")
    ap.add_argument("--out", type=Path,
                    default=REPO / "benchmarks" / "results" / "attention_dropout.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not args.collect:
        for seed in args.seeds:  # arms alternate, so machine load falls on both
            for arm in ARMS:
                train(args, arm, seed)
    test = simulate_ofdm(args.n_test, seed=TEST_SEED, **{k: REFERENCE_TRAIN[k] for k in (
        "snr_db", "delay_spread_ns", "doppler_hz")})
    sweeps = simulate_sweeps(300, sweeps={"snr": REFERENCE_SWEEPS["snr"]}, seed=TEST_SEED + 1)
    bound = GenieLMMSE("A")
    results: dict[str, dict[int, dict]] = {arm: {} for arm in ARMS}
    for seed in args.seeds:
        for arm in ARMS:
            folder = run_folder(args.runs, arm, seed)
            if not (folder / "summary.json").is_file():
                print(f"skipping {folder}: not finished (no summary.json)")
                continue
            results[arm][seed] = score(folder, test, sweeps, bound)
    report = summarise(results, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nwrote {args.out}")


def summarise(results: dict, args: argparse.Namespace) -> dict:
    runs = [r["run"] for arm in results.values() for r in arm.values()]
    if runs:  # --collect: the runs say how they were trained
        args.preset, args.n_train, args.epochs = (runs[0][k] for k in ("preset", "n_train",
                                                                       "epochs"))
    print(f"\nAdaFortiTran {args.preset}, {args.n_train:,} slots x {args.epochs} epochs; "
          f"NMSE (dB) of the best epoch on {args.n_test:,} common mixture test slots")
    arms = {arm: compare_arm(results, arm) for arm in ARMS if arm != "reference"}
    paired = sorted(results["reference"])
    ref_values = [results["reference"][s]["test_nmse_db"] for s in paired]
    spread = float(np.ptp(ref_values)) if len(ref_values) > 1 else None
    print(f"reference seed-to-seed range {'n/a' if spread is None else f'{spread:.3f} dB'}")
    first = arms["no attention dropout"]  # the keys earlier reports had
    return {"benchmark": "attention_dropout", "model": "adafortitran", "preset": args.preset,
            "n_train": args.n_train, "epochs": args.epochs, "n_test": args.n_test,
            "test_seed": TEST_SEED, "seeds": args.seeds, "threads": args.threads,
            "machine": platform.machine(), "torch": torch.__version__,
            "results": {arm: {str(s): v for s, v in r.items()} for arm, r in results.items()},
            "paired_difference_db": first["paired_difference_db"],
            "mean_difference_db": first["mean_difference_db"],
            "reference_seed_range_db": spread,
            "speed_ratio": first["speed_ratio"],
            "arms": arms}


def compare_arm(results: dict, arm: str) -> dict:
    """Per seed: ``arm`` minus the reference in test NMSE (dB; negative is better) and the
    ratio of their training samples/s."""
    paired = sorted(set(results["reference"]) & set(results[arm]))
    print(f"\n{arm}")
    print(f"{'seed':>5} {'reference':>10} {'this arm':>10} {'difference':>11} "
          f"{'ref slots/s':>12} {'arm slots/s':>12} {'speed ratio':>12}")
    diffs, ratios = [], []
    for seed in paired:
        ref, fast = results["reference"][seed], results[arm][seed]
        diffs.append(fast["test_nmse_db"] - ref["test_nmse_db"])
        ratios.append(fast["samples_per_s"] / ref["samples_per_s"])
        print(f"{seed:>5} {ref['test_nmse_db']:>10.3f} {fast['test_nmse_db']:>10.3f} "
              f"{diffs[-1]:>+11.3f} {ref['samples_per_s']:>12.1f} "
              f"{fast['samples_per_s']:>12.1f} {ratios[-1]:>11.2f}x")
    if diffs:
        print(f"mean difference {np.mean(diffs):+.3f} dB; median speed ratio "
              f"{np.median(ratios):.2f}x")
    return {"paired_difference_db": dict(zip(map(str, paired), diffs)),
            "mean_difference_db": float(np.mean(diffs)) if diffs else None,
            "speed_ratio": dict(zip(map(str, paired), ratios))}

if __name__ == "__main__":
    main()
