"""Package an OFDM channel estimator trained by ``scripts/train_ofdm.py`` as a catalogue bundle.

    python benchmarks/ofdm.py --pretrained runs/ofdm_ada_small \\
        --out benchmarks/results/ofdm_pretrained.json
    python scripts/package_ofdm.py runs/ofdm_ada_small --name ofdm-adafortitran-small-tdla \\
        --results benchmarks/results/ofdm_pretrained.json

Packaging does not make the bundle a default: list it in ``DEFAULT_PRETRAINED`` of
``sigformer/catalogue.py`` only if ``sigformer run ... --pretrained`` should find it by model
name (it also checks the grid). The bundle (``sigformer/catalogue/<name>``) is the run's best epoch with the OFDM grid as its
input spec, the training mixture and recipe, the training time (from the run's epochs) and the
measured results of the benchmark run: NMSE per test point of the model next to LS, the
mixed-condition sample LMMSE and the genie-LMMSE bound, and issue 14's targets, met or not.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LABELS = {"adafortitran": "AdaFortiTran", "fortitran": "FortiTran", "ofdm_linear": "linear"}


def model_label(results: dict, folder: Path, model: str) -> str:
    """The benchmark's column name for the run at ``folder``."""
    for label, info in (results.get("pretrained") or {}).items():
        if Path(info["folder"]).resolve() == folder.resolve():
            return label
    raise SystemExit(f"the results file does not hold the run {folder} (pass the JSON that "
                     f"benchmarks/ofdm.py --pretrained {folder.parent} wrote); it holds "
                     f"{sorted(results.get('pretrained') or {})}; model {model}")


def measured(results: dict, label: str) -> dict:
    """Per test point: the model, LS, sample LMMSE and the bound (dB), the gaps to the bound
    and issue 14's targets."""
    from sigformer.rf.ofdm import REFERENCE_SWEEP_NAMES, estimator_targets

    points, gaps, extra = {}, [], {}
    for p in results["points"]:
        nmse = p["nmse_db"]
        name = f"{p['sweep']}={p['value']:g}"
        points[name] = {
            "model": round(nmse[label], 3), "LS": round(nmse["LS"], 3),
            "LMMSE (sample)": round(nmse["LMMSE (sample)"], 3),
            "bound (genie LMMSE)": round(p["bound_db"], 3)}
        if p["sweep"] in REFERENCE_SWEEP_NAMES:
            gaps.append(p["gap_to_bound_db"][label])
        else:
            extra[name] = round(p["gap_to_bound_db"][label], 3)
    return {"nmse_db_per_point": points,
            # over the test sweep (the reference's SNR / delay-spread / Doppler sweeps)
            "mean_gap_to_bound_db": round(float(np.mean(gaps)), 3),
            "worst_gap_to_bound_db": round(float(np.max(gaps)), 3),
            "gap_to_bound_db_at_extra_points": extra,
            # the benchmark's own definition (sigformer.rf.ofdm.estimator_targets)
            "targets": estimator_targets(results["points"], model=label),
            "sample_lmmse_fit_slots": results.get("sample_lmmse_fit_slots")}


def limitations(args: dict, epochs: int, result: dict, missed: list[str]) -> list[str]:
    """What a user of the bundle should know, from the run and its measured results."""
    notes = ["trained on one TDL profile and the reference's condition ranges; statistics "
             "outside them give a warning and extrapolate"]
    if args.get("preset") != "paper":
        notes.append(f"the {args.get('preset')!r} preset, not the paper configuration "
                     f"(1,081,826 parameters)")
    if epochs < 10:
        notes.append(f"{epochs} epochs, not the release's 10")
    beaten = [k for k, v in result["nmse_db_per_point"].items() if v["LS"] < v["model"]]
    if beaten:
        notes.append(f"plain LS is better at {', '.join(beaten)} (every estimator trained on "
                     f"the mixed conditions floors there)")
    if missed:
        notes.append(f"targets not met: {'; '.join(missed)}")
    return notes


SHARED_CPU = "; the machine was shared with other work part of the time"


def on_cpu(device: str | None) -> bool:
    """Whether a device name is the CPU (runs before ``--device`` existed recorded none)."""
    return str(device or "cpu").startswith("cpu")


def epoch_devices(summary: dict) -> list[str]:
    """Where each epoch trained: its own record, else the run's ``--device`` (epochs before
    the rows recorded it), else the CPU."""
    default = summary.get("args", {}).get("device") or "cpu"
    return [e.get("device") or default for e in summary.get("epochs", [])]


def default_budget(args: dict, devices: list[str] | None = None) -> str:
    """The hardware a run trained on, from its epochs' devices and recorded arguments."""
    devices = devices or [args.get("device") or "cpu"]
    cpu = f"{args.get('threads') or 'default (all)'} torch threads on a 2-core CPU VM"
    gpus = sorted({d for d in devices if not on_cpu(d)})
    if not gpus:
        return f"{cpu}, no GPU"
    gpu = f"GPU ({', '.join(gpus)}; the slots simulated on the CPU)"
    n_cpu = sum(on_cpu(d) for d in devices)
    if n_cpu == 0:
        return f"one {gpu}"
    return (f"mixed: {n_cpu} epoch(s) on {cpu}, {len(devices) - n_cpu} on a {gpu} (the "
            "thread count is the last invocation's)")


def package(run: Path, name: str, results_path: Path, dest: Path,
            budget: str | None = None, notes: list[str] | None = None) -> Path:
    """``budget``: the hardware line of the card (default: from the run's ``--device`` and
    ``--threads``), e.g. to name the GPU model; ``notes``: more limitations for the card
    (e.g. how it compares with another shipped bundle)."""
    from sigformer.bundle import Bundle
    from sigformer.checkpoint import load_checkpoint
    from sigformer.tasks.estimate_channel import grid_spec

    summary = json.loads((run / "summary.json").read_text())
    model, config = load_checkpoint(run / "best")
    extra = config.get("extra", {})
    results = json.loads(results_path.read_text())
    label = model_label(results, run / "best", config["model"])
    result = measured(results, label)
    spec = grid_spec(extra["ofdm_config"])
    epochs = summary["epochs"]
    seconds = sum(e["seconds"] for e in epochs)
    args = summary["args"]
    n_params = sum(p.numel() for p in model.parameters())
    missed = [k for k, ok in result["targets"].items() if not ok]
    init = extra.get("init") or {}
    epochs_before = int(init.get("epochs_run") or 0)
    budget_line = budget or default_budget(args, epoch_devices(summary))
    time_line = (f"{seconds / 60:.1f} min of training epochs (sum of the epochs' wall time"
                 f"{SHARED_CPU if any(map(on_cpu, epoch_devices(summary))) else ''})")
    if init:
        budget_line = f"this fine-tune: {budget_line}; the initial bundle: {init.get('budget')}"
        time_line = f"{time_line}, after the initial bundle's {init.get('training_time')}"
    provenance = {
        "title": f"{LABELS.get(config['model'], config['model'])} ({args['preset']}) OFDM "
                 f"channel estimator, {extra.get('profile', 'TDL-A')}",
        "summary": f"{n_params:,} parameters; mean gap to the genie LMMSE "
                   f"{result['mean_gap_to_bound_db']:.2f} dB (worst "
                   f"{result['worst_gap_to_bound_db']:.2f} dB) over the reference's SNR, "
                   f"delay-spread and Doppler sweeps",
        "data": {"simulator": "sigformer.data.ofdm.simulate_ofdm",
                 "profile": extra.get("profile"), "snr_definition": extra.get("snr_definition"),
                 "training_draws": extra.get("training_draws"),
                 "training_slots": extra.get("n_train"), "validation_slots": extra.get("n_val"),
                 "epochs_run": epochs_before + len(epochs),
                 # counted like epochs_run: the initial bundle's epochs come first
                 "best_epoch": None if summary["best_epoch"] is None
                 else epochs_before + summary["best_epoch"] + 1,
                 "slots_seen": int(init.get("slots_seen") or 0)
                 + int(extra.get("n_train", 0)) * len(epochs),
                 "test_sets": "the reference's SNR / delay-spread / Doppler sweeps plus two "
                              "low-Doppler points at 25 dB, another seed "
                              "(benchmarks/ofdm.py --pretrained)"},
        "data_licence": "synthetic (simulated by sigformer): no third-party data",
        "recipe": {**summary["recipe"],
                   "attention_dropout": extra.get("attention_dropout", True),
                   "fused_projections": bool(args.get("fast"))},
        "budget": budget_line,
        "training_time": time_line,
        "results": result,
        "limitations": "; ".join(limitations(args, epochs_before + len(epochs), result, missed)
                                 + list(notes or []))}
    if init:
        provenance["fine_tuned_from"] = fine_tuned_from(init, len(epochs), extra)
    bundle = Bundle(model=model, task="estimate_channel", input_spec=spec, model_spec=spec,
                    extra=extra, provenance=provenance)
    return bundle.save(dest / name)


def fine_tuned_from(init: dict, epochs: int, extra: dict) -> str:
    """The card's line on the bundle a run started from (``train_ofdm.py --init``) and what
    the fine-tune changed."""
    switches = []
    if init.get("attention_dropout", True) != extra.get("attention_dropout", True):
        switches.append("attention dropout "
                        + ("off" if not extra.get("attention_dropout", True) else "on"))
    lr = (extra.get("recipe") or {}).get("lr")
    changed = f" with {', '.join(switches)}" if switches else ""
    return (f"{init.get('source')} ({init.get('epochs_run')} epochs), then {epochs} more "
            f"epoch(s) on {extra.get('n_train'):,} slots{changed}"
            + (f", lr {lr:g}" if lr else ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a scripts/train_ofdm.py output folder")
    ap.add_argument("--name", required=True, help="catalogue name, e.g. "
                                                  "ofdm-adafortitran-small-tdla")
    ap.add_argument("--results", type=Path, required=True,
                    help="JSON written by benchmarks/ofdm.py --pretrained on this run")
    ap.add_argument("--dest", type=Path, default=REPO / "sigformer" / "catalogue")
    ap.add_argument("--budget", default=None,
                    help="the card's hardware line (default: from the run's --device and "
                         "--threads), e.g. to name the GPU")
    ap.add_argument("--note", action="append", default=[],
                    help="another limitation for the card (repeatable)")
    args = ap.parse_args(argv)
    print(package(args.run, args.name, args.results, args.dest, args.budget, args.note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
