"""Modulation recognition: ClST vs ResNet vs MCLDNN vs VT-CNN2, and SKD students.

One run, same data and budget for every model: RadioML-2016.10a-style frames from
``generate_radioml`` (11 classes, SNR -20..18 dB, 2 x 128; ``--generator modgen`` the
realistic generator of ``sigformer.data.modgen``, ``legacy`` the earlier RML2016-style one), per-frame RMS scaling, a stratified 70/30 split, and the same trainer
(AdamW, warm-up + cosine, the same epochs and batch size) for every model. Students
(KD-CNN, KD-MobileNet) are trained twice: with signal knowledge distillation from the trained
ClST (hybrid loss, T = 4, alpha = 0.5) and alone with cross-entropy.

Prints overall and high-SNR (>= 10 dB) accuracy, parameters, FLOPs per frame and CPU
inference time per frame, the SKD gains and the targets (ClST >= best baseline overall and at
high SNR; each student with SKD > the same student without). Writes JSON and a PNG of
accuracy against SNR.

    python benchmarks/amr.py [--n-per-condition 100] [--epochs 15] [--threads 2]
                             [--generator modgen|legacy]

Generator and training throughput: ``benchmarks/modgen.py``. The long training of the shipped
bundles on fresh frames: ``scripts/train_amr.py``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import torch

from sigformer.data.radioml import generate_radioml
from sigformer.models import create_model
from sigformer.rf.amr import (
    count_flops,
    evaluate_amr,
    inference_ms_per_frame,
    plot_accuracy_by_snr,
    train_amr,
)
from sigformer.training import predict_logits

warnings.filterwarnings("ignore", message=".*does not have many workers.*")
REPO = Path(__file__).resolve().parents[1]
BASELINES = ("amr_resnet", "mcldnn", "vtcnn2")
STUDENTS = ("kd_cnn", "kd_mobilenet")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-per-condition", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--clst-preset", default=None, help="ClST preset (default: full size)")
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--generator", choices=("modgen", "legacy"), default="modgen")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "amr.json"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data = generate_radioml(args.n_per_condition, seed=args.seed, normalization="rms",
                            generator=args.generator)
    train, test = data.split(0.3, seed=args.seed)
    print(f"generated {len(data)} frames in {time.perf_counter() - t0:.1f} s: {len(train)} "
          f"train / {len(test)} test, {len(data.classes)} classes")
    rows, models = {}, {}

    def fit(label: str, name: str, preset=None, teacher_logits=None, alpha=1.0):
        torch.manual_seed(args.seed)
        model = create_model(name, preset, n_outputs=len(data.classes))
        t = time.perf_counter()
        train_amr(model, train.X, train.y, teacher_logits=teacher_logits,
                  temperature=args.temperature, alpha=alpha, max_epochs=args.epochs,
                  batch_size=args.batch_size, lr=args.lr, seed=args.seed)
        seconds = time.perf_counter() - t
        result = evaluate_amr(model, test)
        rows[label] = {
            "accuracy": result["accuracy"], "high_snr_accuracy": result["high_snr_accuracy"],
            "accuracy_by_snr": result["accuracy_by_snr"],
            "parameters": sum(p.numel() for p in model.parameters()),
            "flops": count_flops(model, (2, data.frame_length)),
            "ms_per_frame": inference_ms_per_frame(model, test.X[:1024]),
            "train_seconds": round(seconds, 1)}
        models[label] = model
        print(f"  {label:18s} acc {result['accuracy']:.3f}  >=10 dB "
              f"{result['high_snr_accuracy']:.3f}  ({seconds:.0f} s)", flush=True)

    fit("ClST", "clst", args.clst_preset)
    for name in BASELINES:
        fit(name, name)
    teacher_logits = predict_logits(models["ClST"], train.X)
    for name in STUDENTS:
        fit(f"{name}+SKD", name, teacher_logits=teacher_logits, alpha=args.alpha)
        fit(name, name)

    header = (f"{'model':18s} {'accuracy':>9s} {'>=10 dB':>9s} {'params':>11s} "
              f"{'MFLOPs':>9s} {'ms/frame':>9s}")
    print("\n" + header + "\n" + "-" * len(header))
    for label, r in rows.items():
        print(f"{label:18s} {r['accuracy']:9.3f} {r['high_snr_accuracy']:9.3f} "
              f"{r['parameters']:>11,d} {r['flops'] / 1e6:9.2f} {r['ms_per_frame']:9.4f}")
    best = max(BASELINES, key=lambda b: rows[b]["accuracy"])
    best_high = max(BASELINES, key=lambda b: rows[b]["high_snr_accuracy"])
    gains = {s: {"overall": rows[f"{s}+SKD"]["accuracy"] - rows[s]["accuracy"],
                 "high_snr": rows[f"{s}+SKD"]["high_snr_accuracy"]
                 - rows[s]["high_snr_accuracy"]} for s in STUDENTS}
    print("\nSKD gain (accuracy points, with - without): " + ", ".join(
        f"{s} {g['overall'] * 100:+.1f} overall / {g['high_snr'] * 100:+.1f} at >=10 dB"
        for s, g in gains.items()))
    print(f"ratio ClST / {best} accuracy: {rows['ClST']['accuracy'] / rows[best]['accuracy']:.3f}")
    targets = {
        f"ClST >= best baseline overall ({best})":
            rows["ClST"]["accuracy"] >= rows[best]["accuracy"],
        f"ClST >= best baseline at >=10 dB ({best_high})":
            rows["ClST"]["high_snr_accuracy"] >= rows[best_high]["high_snr_accuracy"],
        **{f"{s} with SKD > without": gains[s]["overall"] > 0 for s in STUDENTS},
    }
    print("\ntargets:")
    for k, v in targets.items():
        print(f"  {'MET ' if v else 'MISS'} {k}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_accuracy_by_snr({k: v["accuracy_by_snr"] for k, v in rows.items()},
                         out.with_suffix(".png"), title="RadioML-style frames, same budget")
    out.write_text(json.dumps({"args": vars(args), "machine": platform.machine(),
                               "threads": torch.get_num_threads(), "n_train": len(train),
                               "n_test": len(test), "models": rows, "skd_gain": gains,
                               "targets": targets}, indent=2, default=float))
    print(f"\nwrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
