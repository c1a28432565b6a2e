"""Package a separation model trained by ``scripts/train_speech.py`` as a catalogue bundle.

    python scripts/package_speech.py runs/mossformer_small --log runs/mossformer_small.log \\
        --name sep-mossformer-small-dm8k [--results benchmarks/results/speech_pretrained.json]

The bundle (safetensors + JSON with checksums, written atomically) records the input spec
(mono audio at the training rate), the chunking ``sigformer separate`` / ``stream`` use, and
the training facts: steps, segment length, batch, recipe, the speaker-disjoint split (so the
benchmark can refuse test speakers the model heard) and the training time read from the log.
With ``--results`` (from ``benchmarks/speech_pretrained.py``) the model card reports the
measured SI-SDRi by class against the oracle ceilings, and the real-time factor.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEP_LINE = re.compile(r"step (\d+)/\d+\s+([\d.]+) steps/s\s+loss ([-\d.naninf]+)")
START_LINE = re.compile(r"^(separate|enhance): (\w+) \(([\d,]+) parameters\), recipe (.*)$")


def read_log(path: Path | None) -> dict:
    """Steps, training seconds (sum over the progress windows) and the recipe line."""
    if path is None or not path.is_file():
        return {}
    seconds, last_step, recipe, previous = 0.0, 0, None, 0
    for line in path.read_text().splitlines():
        start = START_LINE.match(line)
        if start:
            recipe, previous = start.group(4), 0
        match = STEP_LINE.search(line)
        if match:
            step, rate = int(match.group(1)), float(match.group(2))
            if step > previous and rate > 0:
                seconds += (step - previous) / rate
            previous = last_step = step
        resumed = re.search(r"resumed from .* at step (\d+)", line)
        if resumed:
            previous = int(resumed.group(1))
    return {"logged_steps": last_step, "train_seconds": round(seconds), "recipe": recipe}


def split_record(run: Path) -> tuple[Path, dict]:
    """The ``<run>-split.json`` that ``train_speech.py`` writes (a ``<run>-best`` folder
    shares its run's record)."""
    from sigformer.recipes.speech import BEST_SUFFIX

    main_run = run.with_name(run.name.removesuffix(BEST_SUFFIX))
    path = main_run.with_name(main_run.name + "-split.json")
    if not path.is_file():
        raise SystemExit(f"{path} is missing: the run records which files it trained on there "
                         f"(scripts/train_speech.py writes it); without it the test speakers "
                         f"cannot be checked")
    return main_run, json.loads(path.read_text())


def heard_speakers(record: dict) -> list[str]:
    """Speakers of the training files under today's speaker rules (a rule added after the
    run may group files the run's split kept apart: those speakers count as heard)."""
    from sigformer.data.mixtures import list_speech

    root = Path(record["data"])
    train = set(record["files"]["train"])
    return sorted({u.speaker for u in list_speech(root)[0]
                   if str(u.path.resolve().relative_to(root)) in train})


def training_facts(run: Path, log: Path | None) -> dict:
    main_run, record = split_record(run)
    history_file = main_run / "history.json"
    history = json.loads(history_file.read_text()) if history_file.is_file() else []
    step = int(json.loads((run / "config.json").read_text()).get("extra", {}).get("step", 0))
    total = int(json.loads((main_run / "config.json").read_text()).get("extra", {}).get(
        "step", step))
    args = record["args"]
    root = Path(record["data"])
    noise = args.get("noise_snr")
    speed = args.get("speed") or (0.95, 1.05)
    facts = {"steps": step, "steps_trained": total,
             "preset": args.get("preset") or "small",
             "batch_size": args.get("batch_size"), "segment_seconds": args.get("seconds"),
             "lr": args.get("lr"),
             "init": args.get("init"),
             "data": "dynamic two-speaker mixtures of every training-split file under "
                     f"{root.name}/ (speed perturbation {speed[0]:g}-{speed[1]:g}, level "
                     f"+-2.5 dB, gain +-6 dB, "
                     + (f"noise at {noise[0]:g}-{noise[1]:g} dB SNR" if noise else "no noise")
                     + f", reverberation in {float(args.get('reverb') or 0):.0%} of mixtures)",
             "split_seed": record["split_seed"], "files": record["files"],
             "speakers": record["speakers"], "heard_speakers": heard_speakers(record),
             "train_seconds_of_speech": round(sum(_duration(root / f) for f in
                                                  record["files"]["train"]), 1),
             "n_val": args.get("n_val"),
             "validation": history[-8:], **read_log(log)}
    return facts


def _duration(path: Path) -> float:
    import soundfile as sf

    return float(sf.info(str(path)).duration)


def model_card(name: str, n_params: int, rate: int, facts: dict, results: dict | None) -> str:
    hours = facts["steps"] * facts["batch_size"] * facts["segment_seconds"] / 3600
    lines = [
        f"# {name}", "",
        f"MossFormer (`{facts['preset']}` preset, {n_params:,} parameters) for two-speaker "
        f"separation at "
        f"{rate} Hz, trained by sigformer on a 2-core CPU. Use it with "
        f"`sigformer separate mix.wav --model {name} --out folder` (any input rate: audio is "
        f"resampled in and out) or `sigformer stream {name} --source wav:mix.wav`.", "",
        "## Training", "",
        f"- Data: {facts['data']}: {len(facts['speakers']['train'])} training speakers, "
        f"{facts['train_seconds_of_speech']} s of speech in all. Validation speakers "
        f"{facts['speakers']['val']} (they steer the learning-rate schedule only). Speakers "
        f"heard in training, by today's speaker rules: {facts['heard_speakers']}.",
        f"- Budget: {facts['steps']:,} steps of {facts['batch_size']} x "
        f"{facts['segment_seconds']:g} s mixtures ({hours:.1f} h of mixtures seen; "
        f"{facts['steps_trained']:,} steps trained in all), "
        f"{facts.get('train_seconds', 0) / 60:.0f} min of training on a 2-core CPU.",
        *([f"- Fine-tuned from the checkpoint `{facts['init']}` (its own budget is in its "
           f"training log), with the data above."] if facts.get("init") else []),
        f"- Recipe: {facts.get('recipe')}. The published recipe's learning rate is 1.5e-4 for "
        f"the 42 M-parameter model; this model was trained at {facts['lr']}.", "",
        f"Validation ({facts['n_val']} fixed {facts['segment_seconds']:g} s mixtures of the "
        f"validation speakers), last entries:", "",
        "| step | SI-SDR (dB) | SI-SDRi (dB) | lr |", "|---:|---:|---:|---:|"]
    lines += [f"| {h['step']} | {h['si_sdr']:.2f} | {h['si_sdri']:.2f} | {h['lr']:.1e} |"
              for h in facts["validation"]]
    if results:
        lines += ["", "## Measured on held-out speakers (`benchmarks/speech_pretrained.py`)", "",
                  f"{results['n_mixtures']} mixtures of the speakers it never heard ("
                  + ", ".join(f"{k}: {v['role']}, {v['gender']}"
                              for k, v in results["test_speakers"].items())
                  + f") at overlap ratios {results['overlaps']}; SI-SDRi in dB.", "",
                  "| system | mean | worst mixture | " +
                  " | ".join(f"overlap {o}" for o in results["overlaps"]) + " |",
                  "|---|---:|---:|" + "---:|" * len(results["overlaps"])]
        for system, r in results["results"].items():
            by = r["by_overlap"]
            lines.append(f"| {system} | {r['mean']['si_sdri']:.2f} | {r['min_si_sdri']:.2f} | "
                         + " | ".join(f"{by[str(o)]['si_sdri']:.2f}"
                                      for o in results["overlaps"]) + " |")
        only = results["results"][name].get("test_role_only") or {}
        if only.get("n"):
            lines += ["", f"Mixtures of test-role speakers only (never used for any training "
                          f"decision): {only['n']}, SI-SDRi {only['si_sdri']:.2f} dB."]
        ours = results["results"][name]["by_gender_pair"]
        lines += ["", "By gender pair (SI-SDRi): " + ", ".join(
            f"{k} {v['si_sdri']:.2f} dB (n={v['n']})" for k, v in ours.items()) +
            " (gender from the file name or estimated from F0)."]
        if results.get("rtf"):
            rtf = results["rtf"]
            lines += ["", f"Real-time factor of `sigformer separate` on {rtf['seconds']:.0f} s "
                          f"of audio with {results['threads']} threads: {rtf['rtf']}."]
        lines += ["", "Targets of issue 16: " + ", ".join(
            f"{k} {'met' if v else 'NOT met'}" for k, v in results["targets"].items()) + "."]
    lines += ["", "## Limits", "",
              f"Trained on {facts['train_seconds_of_speech'] / 60:.1f} minutes of speech from "
              f"{len(facts['heard_speakers'])} talkers: expect it to do worse on voices, "
              f"languages and microphones unlike those. Training data: {facts['data']}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="checkpoint folder written by scripts/train_speech.py")
    ap.add_argument("--name", default="sep-mossformer-small-dm8k")
    ap.add_argument("--log", type=Path, help="the training log (steps/s lines, recipe)")
    ap.add_argument("--results", type=Path, help="benchmarks/speech_pretrained.py JSON")
    ap.add_argument("--chunk-s", type=float, default=4.0)
    ap.add_argument("--overlap-s", type=float, default=0.5)
    ap.add_argument("--dest", type=Path, default=REPO / "sigformer" / "catalogue")
    args = ap.parse_args(argv)
    from sigformer.bundle import Bundle
    from sigformer.checkpoint import load_checkpoint
    from sigformer.spec import SignalSpec

    run = Path(args.run)
    model, _ = load_checkpoint(run)
    model.eval()
    rate = int(getattr(model, "sample_rate", 8000))
    facts = training_facts(run, args.log)
    results = json.loads(args.results.read_text()) if args.results else None
    if results and results.get("model") != args.name:
        raise SystemExit(f"{args.results} measured {results.get('model')!r}, not {args.name!r}")
    n_params = sum(p.numel() for p in model.parameters())
    spec = SignalSpec.audio(rate, 1)
    bundle = Bundle(model=model, task="separate", input_spec=spec, model_spec=spec,
                    labels=["s1", "s2"],
                    extra={"chunk_s": args.chunk_s, "overlap_s": args.overlap_s,
                           "training": facts},
                    provenance={"summary": "mossformer 2-speaker separation",
                                "trained_by": "scripts/train_speech.py"})
    out = bundle.save(args.dest / args.name,
                      card=model_card(args.name, n_params, rate, facts, results))
    print(f"wrote {out} ({facts['steps']} steps, {n_params:,} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
