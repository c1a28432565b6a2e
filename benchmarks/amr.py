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
    python benchmarks/amr.py --pretrained [NAME_OR_FOLDER ...]

``--pretrained`` trains nothing: it evaluates trained bundles - every shipped IQ
classification bundle of the catalogue when none is named, else catalogue names, bundle
folders or model folders of ``scripts/train_amr.py`` - on a held-out RadioML-2016-style grid
of the realistic generator (``--n-per-condition`` frames per class and SNR, -20..18 dB, seed
30,000 + ``--seed``: ``scripts/train_amr.py`` and ``scripts/amr_skd_sweep.py`` draw batch
``(seed, epoch, step)``, validate on 20,000 + seed and test on 10,000 + seed), each frame
scaled as the bundle records (``extra.normalization``). Prints overall,
>= 10 dB and per-SNR accuracy; writes ``benchmarks/results/amr_pretrained.json`` and a PNG.

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

import numpy as np
import torch
from _table import print_table, save_results

from sigformer.bundle import Bundle
from sigformer.catalogue import list_pretrained, resolve_bundle_path
from sigformer.checkpoint import load_checkpoint
from sigformer.checkpoint_io import read_config
from sigformer.data.modgen import family_mode_config
from sigformer.data.radioml import RML2016_SNRS, AMRDataset, generate_radioml
from sigformer.models import create_model
from sigformer.rf.amr import (
    HIGH_SNR_DB,
    accuracy_by_parameter,
    accuracy_by_snr,
    count_flops,
    evaluate_amr,
    inference_ms_per_frame,
    plot_accuracy_by_snr,
    train_amr,
)
from sigformer.spec import SignalSpec
from sigformer.training import predict_logits

warnings.filterwarnings("ignore", message=".*does not have many workers.*")
REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BASELINES = ("amr_resnet", "mcldnn", "vtcnn2")
STUDENTS = ("kd_cnn", "kd_mobilenet")
# training streams draw batch (seed, epoch, step), validate on 20,000 + seed and test on
# 10,000 + seed (scripts/train_amr.py, scripts/amr_skd_sweep.py): this grid is none of them
HELD_OUT_SEED = 30_000


# --- --pretrained: shipped bundles on a held-out grid, no training ---------------------------

def shipped_iq_classifiers() -> list[str]:
    """Catalogue names of every shipped bundle that classifies IQ frames."""
    names = []
    for entry in list_pretrained():
        spec = read_config(entry["path"]).get("input_spec") or {}
        if entry["task"] == "classify" and spec.get("layout") == "iq":
            names.append(entry["name"])
    return names


def load_amr_bundle(source: str) -> Bundle:
    """A modulation-recognition bundle from a catalogue name or folder; a model folder of
    ``scripts/train_amr.py`` (a checkpoint without bundle fields) is wrapped from the classes,
    frame length and normalisation it records."""
    path = resolve_bundle_path(source)
    if read_config(path).get("task") is None:
        model, config = load_checkpoint(path)
        extra = config.get("extra", {})
        if "classes" not in extra:
            raise SystemExit(f"{path} is a checkpoint without a task or recorded classes; "
                             f"expected a bundle or a model folder of scripts/train_amr.py")
        spec = SignalSpec.iq(1.0, int(extra.get("frame_length", 128)))
        return Bundle(model=model, task="classify", input_spec=spec, model_spec=spec,
                      labels=list(extra["classes"]), path=path,
                      extra={"normalization": extra.get("normalization", "rms")})
    bundle = Bundle.load(path)
    if bundle.task != "classify" or bundle.input_spec is None or \
            bundle.input_spec.layout != "iq":
        raise SystemExit(f"{source} is not a modulation-recognition bundle (task "
                         f"{bundle.task!r}, input {bundle.input_spec!r}); expected an IQ "
                         f"classification bundle")
    return bundle


def held_out_grid(bundle: Bundle, n_per_condition: int, seed: int) -> AMRDataset:
    """RadioML-2016-style frames for ``bundle``: its classes in its label order (so class
    index = probability column), its frame length and per-frame scaling."""
    # a family bundle is tested on frames like its training ones (conditioned captures)
    target_sps = bundle.extra.get("target_sps")
    config = family_mode_config(float(target_sps)) if target_sps else None
    try:
        return generate_radioml(n_per_condition, snrs=RML2016_SNRS, classes=bundle.labels,
                                frame_length=bundle.window, seed=seed,
                                normalization=bundle.extra.get("normalization", "l1"),
                                config=config)
    except ValueError as err:
        raise SystemExit(f"{bundle.path}: cannot generate its classes {bundle.labels}: "
                         f"{err}") from None


def predict_batched(bundle: Bundle, X: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    # batches bound the attention maps' memory on a full grid
    return np.concatenate([bundle.predict_proba(X[i:i + batch_size])
                           for i in range(0, len(X), batch_size)])


def evaluate_bundle(bundle: Bundle, data: AMRDataset) -> dict:
    """Overall, >= 10 dB and per-SNR accuracy, the >= 10 dB confusion matrix, size."""
    from sklearn.metrics import confusion_matrix

    pred = predict_batched(bundle, data.X).argmax(1)
    high = data.snr >= HIGH_SNR_DB
    model = bundle.model
    return {
        "model": getattr(model, "sigformer_config", {}).get("name", type(model).__name__),
        "path": _shown(bundle.path), "labels": list(bundle.labels),
        "chance": 1.0 / len(bundle.labels),
        "accuracy": float(np.mean(pred == data.y)),
        "high_snr_accuracy": float(np.mean(pred[high] == data.y[high])),
        "accuracy_by_snr": accuracy_by_snr(data.y, pred, data.snr),
        "confusion_high_snr": confusion_matrix(data.y[high], pred[high],
                                               labels=np.arange(len(bundle.labels))).tolist(),
        # where the >= 10 dB errors are, by each drawn impairment's range (tertiles)
        "high_snr_accuracy_by_parameter": accuracy_by_parameter(data, pred, high),
        "parameters": sum(p.numel() for p in model.parameters()),
        "flops": count_flops(model, (2, data.frame_length)),
    }


def _shown(path: Path | None) -> str:
    """A path relative to the repository when inside it (results are committed)."""
    path = Path(path or "").resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def print_pretrained(rows: dict[str, dict]) -> None:
    print_table(["bundle", "model", "params", "MFLOPs", "accuracy", f">={HIGH_SNR_DB:g} dB",
                 "chance"],
                [[k, r["model"], f"{r['parameters']:,}", f"{r['flops'] / 1e6:.2f}",
                  f"{r['accuracy']:.3f}", f"{r['high_snr_accuracy']:.3f}",
                  f"{r['chance']:.3f}"] for k, r in rows.items()])
    snrs = sorted({s for r in rows.values() for s in r["accuracy_by_snr"]})
    print("\naccuracy by SNR")
    print_table(["SNR (dB)", *rows],
                [[f"{s:g}", *(f"{r['accuracy_by_snr'].get(s, float('nan')):.3f}"
                              for r in rows.values())] for s in snrs])


def run_pretrained(args) -> None:
    sources = args.pretrained or shipped_iq_classifiers()
    if not sources:
        raise SystemExit("no IQ classification bundle in the catalogue "
                         "(`sigformer models --pretrained` lists it); name bundles after "
                         "--pretrained")
    seed = HELD_OUT_SEED + args.seed
    grids: dict[tuple, AMRDataset] = {}
    rows = {}
    for source in sources:
        bundle = load_amr_bundle(source)
        key = (tuple(bundle.labels), bundle.window, bundle.extra.get("normalization"))
        if key not in grids:  # bundles with the same classes see the same frames
            t0 = time.perf_counter()
            grids[key] = held_out_grid(bundle, args.n_per_condition, seed)
            print(f"generated {len(grids[key]):,} held-out frames ({len(bundle.labels)} "
                  f"classes, seed {seed}) in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        rows[source] = evaluate_bundle(bundle, grids[key])
        print(f"  {source}: accuracy {rows[source]['accuracy']:.3f}, >= {HIGH_SNR_DB:g} dB "
              f"{rows[source]['high_snr_accuracy']:.3f} ({time.perf_counter() - t0:.0f} s)",
              flush=True)
    print()
    print_pretrained(rows)
    out = Path(args.out or RESULTS / "amr_pretrained.json")
    save_results(out, rows, args=vars(args), threads=torch.get_num_threads(),
                 held_out={"generator": "modgen", "seed": seed, "snrs": list(RML2016_SNRS),
                           "n_per_condition": args.n_per_condition,
                           "high_snr_db": HIGH_SNR_DB})
    chance = {r["chance"] for r in rows.values()}
    plot_accuracy_by_snr({k: r["accuracy_by_snr"] for k, r in rows.items()},
                         out.with_suffix(".png"), title="shipped bundles, held-out grid",
                         n_classes=round(1 / chance.pop()) if len(chance) == 1 else None)
    print(f"wrote {out.with_suffix('.png')}")


# --- training: every model with the same budget --------------------------------------------


def main(argv: list[str] | None = None) -> None:
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
    ap.add_argument("--pretrained", nargs="*", default=None, metavar="BUNDLE",
                    help="evaluate trained bundles without training (none named: every "
                         "shipped IQ classification bundle)")
    ap.add_argument("--out", default=None, help="results JSON (default: "
                    "benchmarks/results/amr.json, or amr_pretrained.json with --pretrained)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.pretrained is not None:
        run_pretrained(args)
        return
    args.out = args.out or str(RESULTS / "amr.json")
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
