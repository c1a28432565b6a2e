"""Long training of the shipped modulation-recognition bundles on the realistic generator.

``--mode rml`` (default): the eleven RML2016.10a classes. ClST (teacher) first, then KD-CNN
and KD-MobileNet with SKD and the same students without SKD, then the baselines VT-CNN2,
ResNet and MCLDNN - every model with the same budget (``--epochs`` x ``--frames`` fresh
generated frames) and optimiser. The test set is a held-out RadioML-2016-style grid from the
generator (``--test-per-condition`` frames per class and SNR, -20..18 dB, another seed); the
per-epoch curve (``val_acc``) is measured on a smaller validation grid of the same kind
(``--val-per-condition``, a third seed), so nothing during training looks at the test set.

``--mode family``: the modulation-family model for real captures (ASK, FSK, PSK, QAM, analog)
at ``--target-sps`` samples per symbol; ClST and KD-CNN (SKD). Evaluated on the generator's
test grid and, when ``../shared/data/rf_sigmf`` (or ``--captures``) exists, per capture
after symbol-rate estimation and resampling (captures are never trained on).

Every model is checkpointed into ``--out/<label>/`` after each epoch; ``--resume`` continues
an interrupted run (finished models are loaded, not retrained) with the same ``--epochs``,
``--frames``, ``--batch-size`` and ``--lr`` (they shape the cosine; a change is refused, for
finished models too, before anything trains: delete a model's folder to retrain it), and the
same ``--seed``, ``--mode``/``--target-sps`` (the generator) and ``--clst-preset``; an SKD
student is refused when the teacher beside it is not the one it was distilled from (each
checkpoint records these; one written before they were recorded is reused with a note);
``--workers`` may change (and ``--init``, the bundle a fine-tune starts from, may not).
``--init amr-clst-modgen`` fine-tunes the shipped ClST: it trains ``--epochs`` more on the
generator's epochs after the ones it was trained on. Progress lines give frames/s and the ETA. Run it in the
background, e.g.::

    nohup python scripts/train_amr.py --out runs/amr --frames 300000 --epochs 20 \\
        --threads 2 > runs/amr.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from sigformer.data.modgen import (
    FAMILY_CLASSES,
    RML2016_CLASSES,
    ModGenConfig,
    family_mode_config,
)
from sigformer.data.radioml import RML2016_SNRS, generate_radioml
from sigformer.recipes.amr import BASELINES, STUDENTS, StreamRecipe
from sigformer.recipes.device import add_device_argument, check_device_argument
from sigformer.rf.amr import train_bundles

REPO = Path(__file__).resolve().parents[1]
CAPTURES = REPO.parent / "shared" / "data" / "rf_sigmf"


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output folder (one sub-folder per model)")
    ap.add_argument("--mode", choices=("rml", "family"), default="rml")
    ap.add_argument("--frames", type=int, default=200_000, help="fresh frames per epoch")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    add_device_argument(ap)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader generator workers")
    ap.add_argument("--test-per-condition", type=int, default=200)
    ap.add_argument("--val-per-condition", type=int, default=50,
                    help="frames per class and SNR of the validation grid evaluated after "
                         "every epoch (0: no per-epoch curve)")
    ap.add_argument("--clst-preset", default=None, help="ClST preset (default: full size)")
    ap.add_argument("--students", default=",".join(STUDENTS))
    ap.add_argument("--teacher", default=None,
                    help="distil the students from this trained teacher (a catalogue name, "
                         "e.g. amr-clst-modgen, or a bundle folder) instead of training a "
                         "ClST first")
    ap.add_argument("--init", default=None,
                    help="fine-tune: the ClST starts from this trained bundle (a catalogue "
                         "name, e.g. amr-clst-modgen, or a bundle folder; the same preset) and "
                         "trains --epochs more on the generator's next epochs (frames it has "
                         "not seen); pair with --students '' --baselines '' for the teacher "
                         "alone")
    ap.add_argument("--no-plain-students", action="store_true",
                    help="skip the students trained without SKD (an earlier run at the same "
                         "budget holds them)")
    ap.add_argument("--temperature", type=float, default=StreamRecipe.temperature,
                    help="SKD temperature of the distilled students (the shipped ones use 1, "
                         "chosen on validation by scripts/amr_skd_sweep.py); a finished "
                         "teacher or baseline is reused whatever it says")
    ap.add_argument("--alpha", type=float, default=StreamRecipe.alpha,
                    help="weight of the hard-label term in the SKD loss")
    ap.add_argument("--baselines", default=",".join(BASELINES),
                    help="comma-separated baselines ('' for none)")
    ap.add_argument("--target-sps", type=float, default=8.0, help="family mode")
    ap.add_argument("--captures", default=str(CAPTURES), help="family mode: SigMF folder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--log-every", type=int, default=50, help="steps between progress lines")
    args = ap.parse_args(argv)
    for name in ("frames", "epochs", "batch_size", "threads", "test_per_condition"):
        if getattr(args, name) <= 0:
            ap.error(f"--{name.replace('_', '-')} must be positive")
    check_device_argument(ap, args.device)
    if args.val_per_condition < 0:
        ap.error("--val-per-condition must be >= 0")
    if args.init is not None and args.teacher is not None:
        ap.error("--init (fine-tune the ClST) and --teacher (distil from a trained teacher, "
                 "no ClST trained) exclude each other")
    return args


# seeds of the generated grids: the test grid and the validation grid differ from each other
# and from every training batch (batch s of epoch e is drawn from (seed, e, s))
TEST_SEED, VAL_SEED = 10_000, 20_000


def evaluate_captures(out: Path, folder: Path, target_sps: float, log,
                      rows: dict | None = None) -> dict:
    """Frame accuracy per real capture of the run's family models: those of ``rows`` (the
    run's report: ``out/<label>``, or the bundle a row names as its ``source``, e.g. a
    ``--teacher``); every model folder in ``out`` without ``rows``."""
    from sigformer.catalogue import resolve_bundle_path
    from sigformer.checkpoint import load_checkpoint
    from sigformer.rf.amr import capture_dataset, evaluate_by_capture

    metas = sorted(folder.glob("*.sigmf-meta"))
    if not metas:
        log(f"no SigMF captures in {folder}: skipping the real-capture evaluation")
        return {}
    data = capture_dataset(metas, classes=list(FAMILY_CLASSES), target_sps=target_sps,
                           normalization="rms")
    if rows is None:
        models = {p.name: p for p in sorted(out.iterdir()) if (p / "config.json").is_file()}
    else:
        models = {label: resolve_bundle_path(row["source"]) if row.get("source")
                  else out / label for label, row in rows.items()}
    results = {}
    for label, path in models.items():
        model, _ = load_checkpoint(path)
        results[label] = evaluate_by_capture(model, data)
        log(f"[{label}] per capture: " + ", ".join(
            f"{k} {v:.2f}" for k, v in results[label].items()))
    return results


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out).expanduser()  # "--out=~/runs/x" reaches us unexpanded
    out.mkdir(parents=True, exist_ok=True)

    def log(line: str) -> None:
        print(time.strftime("%H:%M:%S ") + line, flush=True)

    family = args.mode == "family"
    classes = FAMILY_CLASSES if family else RML2016_CLASSES
    config = family_mode_config(args.target_sps) if family else ModGenConfig()
    recipe = StreamRecipe(epochs=args.epochs, frames_per_epoch=args.frames,
                          batch_size=args.batch_size, lr=args.lr, num_workers=args.workers,
                          temperature=args.temperature, alpha=args.alpha)
    test = generate_radioml(args.test_per_condition, snrs=RML2016_SNRS, classes=classes,
                            config=config, seed=TEST_SEED + args.seed, normalization="rms")
    validation = None
    if args.val_per_condition:
        validation = generate_radioml(args.val_per_condition, snrs=RML2016_SNRS,
                                      classes=classes, config=config,
                                      seed=VAL_SEED + args.seed, normalization="rms")
    n_val = 0 if validation is None else len(validation)
    log(f"{args.mode} mode: {len(classes)} classes, {args.epochs} epochs x {args.frames:,} "
        f"fresh frames per model, test grid {len(test):,} frames, validation grid "
        f"{n_val:,} frames")
    students = [s for s in args.students.split(",") if s]
    baselines = [] if family else [b for b in args.baselines.split(",") if b]
    from sigformer.checkpoint import CheckpointError

    try:
        rows = train_bundles(out, classes=classes, config=config, recipe=recipe, test=test,
                             teacher_preset=args.clst_preset, students=students,
                             baselines=baselines, seed=args.seed, resume=args.resume, log=log,
                             log_every=args.log_every, validation=validation,
                             record={"args": vars(args)}, teacher_bundle=args.teacher,
                             plain_students=not args.no_plain_students, device=args.device,
                             teacher_init=args.init)
    except CheckpointError as err:  # a refused resume: the message says what to do
        raise SystemExit(f"error: {err}") from None
    report = {"args": vars(args), "models": rows}
    if family:
        report["captures"] = evaluate_captures(out, Path(args.captures).expanduser(),
                                               args.target_sps, log, rows)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=float))
    log(f"wrote {out / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
