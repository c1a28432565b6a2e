"""Choose the SKD temperature and weight on the validation grid, at the shipped budget.

The shipped students were distilled with Hinton's defaults (``T = 4``, ``alpha = 0.5``; the
ClST paper does not publish its values) and ended below the same architecture trained without
distillation. This script trains one student per ``(T, alpha)`` pair from an already trained
teacher (``scripts/train_amr.py``'s ``OUT/clst``) with the same generator, frames, budget and
optimiser as that run, then reports accuracy on the run's VALIDATION grid (what the choice is
made on) and on its TEST grid (reported, never used to choose). Each student is checkpointed
every epoch into ``OUT/<student>+SKD-T<T>-a<alpha>/``; ``--resume`` continues. The no-SKD
student of the same run (``RUN/<student>``), when present, is evaluated beside them::

    nohup python scripts/amr_skd_sweep.py --run runs/amr2 --student kd_cnn \\
        --pairs 1:0.5,2:0.5 --seed 0 --test-per-condition 100 --out runs/skd_sweep \\
        --resume > runs/skd_sweep.log 2>&1 &

``--seed`` and ``--test-per-condition`` are read from ``RUN/report.json`` once the run has
finished (``--seed`` also from the teacher's checkpoint of a run that records it); until then
pass the values the run was started with. Each student records the run's seed, the generator
settings and its teacher (the sha256 of ``RUN/clst/model.safetensors``); ``--resume`` refuses
a student whose recipe, data, architecture or teacher differ (``~`` in --run/--out is the home
folder).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from sigformer.checkpoint import load_checkpoint, read_config
from sigformer.checkpoint_io import user_path
from sigformer.data.modgen import RML2016_CLASSES, ModGenConfig
from sigformer.data.radioml import RML2016_SNRS, generate_radioml
from sigformer.models import create_model
from sigformer.recipes.amr import GeneratedFrames, StreamRecipe, fit_stream, has_finished
from sigformer.rf.amr import (
    check_reusable,
    evaluate_amr,
    generator_record,
    teacher_fingerprint,
)

# the grids of scripts/train_amr.py (same seeds, so the numbers are comparable with its report)
TEST_SEED, VAL_SEED = 10_000, 20_000


def parse_pairs(text: str) -> list[tuple[float, float]]:
    pairs = []
    for item in text.split(","):
        try:
            t, a = (float(v) for v in item.split(":"))
        except ValueError:
            raise SystemExit(f"error: --pairs item {item!r} is not T:alpha (e.g. 2:0.5)") from None
        if t <= 0 or not 0 <= a < 1:
            raise SystemExit(f"error: --pairs item {item!r}: need T > 0 and 0 <= alpha < 1")
        pairs.append((t, a))
    return pairs


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a scripts/train_amr.py --mode rml output folder")
    ap.add_argument("--student", default="kd_cnn")
    ap.add_argument("--pairs", default="1:0.5,2:0.5,2:0.8", help="T:alpha,T:alpha,...")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--val-per-condition", type=int, default=50)
    ap.add_argument("--seed", type=int, default=None,
                    help="the run's --seed (needed when RUN/report.json does not record it)")
    ap.add_argument("--test-per-condition", type=int, default=None,
                    help="the run's --test-per-condition (needed when RUN/report.json does "
                         "not record it)")
    ap.add_argument("--resume", action="store_true")
    return ap.parse_args(argv)


def run_settings(run: Path, args: argparse.Namespace) -> tuple[StreamRecipe, int, int]:
    """The teacher's recipe (from its checkpoint), and the run's seed and test-grid size: from
    ``RUN/report.json`` once the run has finished (an unfinished run's report has no
    arguments), else from ``--seed`` / ``--test-per-condition``; a mismatch is refused."""
    extra = read_config(run / "clst")["extra"]
    if list(extra.get("classes", [])) != list(RML2016_CLASSES):
        raise SystemExit(f"error: {run / 'clst'} was trained on classes {extra.get('classes')}; "
                         f"the sweep is for --mode rml runs ({len(RML2016_CLASSES)} RML2016 "
                         "classes)")
    report = run / "report.json"
    recorded = json.loads(report.read_text()).get("args", {}) if report.is_file() else {}
    if recorded.get("seed") is None and "seed" in extra:  # recorded by newer train_amr runs
        recorded = {**recorded, "seed": extra["seed"]}
    values = {}
    for name in ("seed", "test_per_condition"):
        given, saved = getattr(args, name), recorded.get(name)
        flag = "--" + name.replace("_", "-")
        if saved is not None and given is not None and int(given) != int(saved):
            raise SystemExit(f"error: {flag} {given} differs from the run's {saved} "
                             f"({report})")
        if saved is None and given is None:
            raise SystemExit(f"error: {report} does not record the run's {flag} (the run has "
                             f"not finished); pass the value the run was started with")
        values[name] = int(saved if saved is not None else given)
    return StreamRecipe(**extra["recipe"]), values["seed"], values["test_per_condition"]


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    run, out = user_path(args.run), user_path(args.out)  # "--out=~/x" reaches us unexpanded
    out.mkdir(parents=True, exist_ok=True)

    def log(line: str) -> None:
        print(time.strftime("%H:%M:%S ") + line, flush=True)

    if not has_finished(run / "clst"):
        raise SystemExit(f"error: {run / 'clst'} holds no finished teacher")
    recipe, seed, test_per = run_settings(run, args)
    classes, config = RML2016_CLASSES, ModGenConfig()
    test = generate_radioml(test_per, snrs=RML2016_SNRS, classes=classes, config=config,
                            seed=TEST_SEED + seed, normalization="rms")
    validation = generate_radioml(args.val_per_condition, snrs=RML2016_SNRS, classes=classes,
                                  config=config, seed=VAL_SEED + seed, normalization="rms")
    teacher, _ = load_checkpoint(run / "clst")
    teacher.eval()
    rows: dict[str, dict] = {}

    def record(label: str, model: torch.nn.Module, pair=None) -> None:
        val, tst = evaluate_amr(model, validation), evaluate_amr(model, test)
        rows[label] = {"temperature": None if pair is None else pair[0],
                       "alpha": None if pair is None else pair[1],
                       "val_accuracy": val["accuracy"],
                       "val_high_snr_accuracy": val["high_snr_accuracy"],
                       "test_accuracy": tst["accuracy"],
                       "test_high_snr_accuracy": tst["high_snr_accuracy"]}
        log(f"[{label}] validation {val['accuracy']:.3f} / {val['high_snr_accuracy']:.3f}, "
            f"test {tst['accuracy']:.3f} / {tst['high_snr_accuracy']:.3f}")
        (out / "sweep.json").write_text(json.dumps(_report(args, recipe, rows), indent=2))

    record("clst (teacher)", teacher)
    if has_finished(run / args.student):
        record(f"{args.student} (no SKD)", load_checkpoint(run / args.student)[0])
    if has_finished(run / f"{args.student}+SKD"):
        record(f"{args.student}+SKD (T=4, alpha=0.5, shipped)",
               load_checkpoint(run / f"{args.student}+SKD")[0], (4.0, 0.5))
    shape = dict(n_outputs=len(classes), n_times=test.frame_length)
    # what decides a student's data and teacher (train_amr's fields), compared on --resume
    extra = {"classes": list(classes), "normalization": "rms",
             "frame_length": test.frame_length, "seed": seed,
             "generator_config": generator_record(config),
             "teacher": teacher_fingerprint(run / "clst")}
    for t, a in parse_pairs(args.pairs):
        label = f"{args.student}+SKD-T{t:g}-a{a:g}"
        folder = out / label
        student_recipe = replace(recipe, temperature=t, alpha=a)
        if args.resume and (folder / "config.json").is_file():
            # a student of another budget, data, architecture or teacher is refused, not
            # mixed in
            check_reusable(folder, student_recipe, extra, log, model=(args.student, shape))
        if args.resume and has_finished(folder):
            model = load_checkpoint(folder)[0]
        else:
            torch.manual_seed(seed)  # the same initial weights as the run's students
            model = create_model(args.student, **shape)
            stream = GeneratedFrames(classes, config, frame_length=test.frame_length, seed=seed)
            fit_stream(model, stream, student_recipe, teacher=teacher,
                       validation=validation, checkpoint_dir=folder, resume=args.resume,
                       label=label, log=log, extra={**extra, "label": label})
        record(label, model, (t, a))
    best = max((k for k, r in rows.items() if r["alpha"] is not None),
               key=lambda k: rows[k]["val_accuracy"], default=None)
    log(f"best on validation: {best}")
    (out / "sweep.json").write_text(json.dumps(_report(args, recipe, rows, best), indent=2))
    return 0


def _report(args, recipe: StreamRecipe, rows: dict, best: str | None = None) -> dict:
    return {"run": str(args.run), "student": args.student,
            "budget": {"epochs": recipe.epochs, "frames_per_epoch": recipe.frames_per_epoch,
                       "batch_size": recipe.batch_size, "lr": recipe.lr},
            "chosen_on": "validation grid (seed 20000 + run seed); test reported only",
            "best_on_validation": best, "rows": rows}


if __name__ == "__main__":
    sys.exit(main())
