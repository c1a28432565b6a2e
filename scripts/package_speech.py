"""Package a speech model trained by ``scripts/train_speech.py`` as a catalogue bundle.

    python scripts/package_speech.py runs/mossformer_small --log runs/mossformer_small.log \\
        --name sep-mossformer-small-dm8k [--results benchmarks/results/speech_pretrained.json]
    python scripts/package_speech.py runs/deftan2_4mic-best --log runs/deftan2_4mic.log \\
        --dest runs/bundles [--results runs/enh.json]   # name: enh-deftan2-small-4mic-16k

The task comes from the run's split record (``--task separate`` or ``enhance``). The bundle
(safetensors + JSON with checksums, written atomically) records the input spec (mono audio at
the training rate for separation; ``n_mics``-channel array audio at the training rate for
enhancement), the chunking ``sigformer separate`` / ``enhance`` / ``stream`` use, and the
training facts: steps, segment length, batch, recipe, the speaker-disjoint split (so the
benchmarks can refuse test speakers the model heard), for enhancement the noise split (so
the benchmark scores noises it never heard) and the training time read from the log.
With ``--results`` the model card reports the measurements: SI-SDRi by class against the
oracle ceilings and the real-time factor (``benchmarks/speech_pretrained.py``), or SI-SDR
improvement over the reference microphone against the beamformers, by RT60 and SNR
(``benchmarks/speech_enhance_pretrained.py``; refused unless it measured these weights with
this bundle's chunking, and refused for a ``--quick`` smoke run).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# what validation speakers decided: not independent of a -best checkpoint
VALIDATION_ROLE = ("they steer the learning-rate schedule and, for a -best checkpoint, its "
                   "selection, so they are not independent of these weights")
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


def loss_name(recipe: str | None) -> str:
    """The training loss named in a logged recipe line (``SpeechRecipe(loss='pcm', ...)``)."""
    found = re.search(r"loss='(\w+)'", recipe or "")
    names = {"pcm": "PCM loss", "si_sdr": "negative SI-SDR loss",
             "pit_si_snr": "PIT SI-SNR loss"}
    return names.get(found.group(1), found.group(1)) if found else "loss not recorded"


def validation_lines(facts: dict, items: str, note: str = "") -> list[str]:
    """The card's validation table: the last recorded entries."""
    return [f"Validation ({facts['n_val']} fixed {facts['segment_seconds']:g} s {items} of the "
            f"validation speakers{note}), last entries:", "",
            "| step | SI-SDR (dB) | SI-SDRi (dB) | lr |", "|---:|---:|---:|---:|",
            *[f"| {h['step']} | {h['si_sdr']:.2f} | {h['si_sdri']:.2f} | {h['lr']:.1e} |"
              for h in facts["validation"]]]


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
    enhance = run_task(record) == "enhance"
    facts = {"steps": step, "steps_trained": total,
             "preset": args.get("preset") or "small",
             "batch_size": args.get("batch_size"),
             "segment_seconds": args.get("seconds") or (2.0 if enhance else 4.0),
             "lr": args.get("lr"),
             "init": args.get("init"), "init_training": init_training(args.get("init")),
             "data": enhance_data(record) if enhance else separation_data(record),
             "split_seed": record["split_seed"], "files": record["files"],
             "speakers": record["speakers"], "heard_speakers": heard_speakers(record),
             "train_seconds_of_speech": round(sum(_duration(root / f) for f in
                                                  record["files"]["train"]), 1),
             "n_val": args.get("n_val"),
             "validation": history[-8:], **read_log(log)}
    if "noise_files" in record:  # either task: a run fine-tuned from the bundle keeps them out
        facts["noise_files"] = record["noise_files"]
    if enhance:  # what the enhancement benchmark needs to draw unheard scenes
        facts.update(task="enhance", n_mics=int(args.get("n_mics") or 4),
                     sample_rate=int(args.get("sample_rate") or 16000), data_root=str(root),
                     noise_files=record.get("noise_files"), array=training_array(record))
    return facts


def init_training(init: str | None) -> dict | None:
    """What the checkpoint a run was fine-tuned from records of its own training (name,
    microphones, steps, minutes), so the card's budget covers both runs; None without one."""
    if not init:
        return None
    config = Path(init) / "config.json"
    if not config.is_file():
        return {"name": Path(init).name}
    saved = json.loads(config.read_text())
    training = saved.get("extra", {}).get("training") or {}
    return {"name": Path(init).name, "n_mics": saved.get("kwargs", {}).get("n_mics"),
            "steps": training.get("steps"), "steps_trained": training.get("steps_trained"),
            "train_seconds": training.get("train_seconds")}


def init_lines(facts: dict) -> list[str]:
    """The card's fine-tuning line: where the weights started, and that run's budget."""
    if not facts.get("init"):
        return []
    start = facts.get("init_training") or {"name": Path(facts["init"]).name}
    line = f"- Fine-tuned from `{start['name']}`"
    n_mics = facts.get("n_mics")
    if start.get("n_mics") and n_mics and start["n_mics"] != n_mics:
        from sigformer.models.speech.deftan2 import circular_subarray

        positions = circular_subarray(start["n_mics"], n_mics)
        line += (f", widened from its {start['n_mics']} microphones to {n_mics} (its "
                 f"microphones at positions {', '.join(map(str, positions))} of this array, "
                 f"the new ones' weights starting at zero)")
    if start.get("train_seconds"):
        trained, kept = start.get("steps_trained") or start.get("steps"), start.get("steps")
        line += (f"; its own training: {trained:,} steps"
                 + (f" (weights of step {kept:,})" if kept and kept != trained else "")
                 + f", {start['train_seconds'] / 60:.0f} min on a 2-core CPU")
    else:
        line += f" (`{facts['init']}`; its own budget is in its training log)"
    return [line + "."]


def training_array(record: dict) -> dict:
    """The microphone array of the training rooms: recorded with the split, or for runs that
    predate the record, the one ``train_speech.py --task enhance`` has always drawn."""
    if record.get("array"):
        return record["array"]
    from sigformer.data.room import ENHANCE_TRAINING_RADIUS, SceneConfig

    n_mics = int(record["args"].get("n_mics") or 4)
    return SceneConfig(n_mics=n_mics, radius=ENHANCE_TRAINING_RADIUS).array()


def run_task(record: dict) -> str:
    """``separate`` or ``enhance``: the ``--task`` the run was trained with."""
    return record["args"].get("task") or "separate"


def separation_data(record: dict) -> str:
    args, root = record["args"], Path(record["data"])
    noise = args.get("noise_snr")
    speed = args.get("speed") or (0.95, 1.05)
    return ("dynamic two-speaker mixtures of every training-split file under "
            f"{root.name}/ (speed perturbation {speed[0]:g}-{speed[1]:g}, level "
            f"+-2.5 dB, gain +-6 dB, "
            + (f"noise at {noise[0]:g}-{noise[1]:g} dB SNR" if noise else "no noise")
            + f", reverberation in {float(args.get('reverb') or 0):.0%} of mixtures)")


def enhance_data(record: dict) -> str:
    """The scene family of ``train_speech.py --task enhance`` (its SceneConfig: the defaults
    of :class:`~sigformer.data.room.SceneConfig` with a 5-10 cm radius range)."""
    from sigformer.data.room import SceneConfig

    args, root = record["args"], Path(record["data"])
    c = SceneConfig()
    noises = record.get("noise_files")
    noise = (f"{len(noises['train'])} training noise files ({len(noises['test'])} more held "
             f"out for test, never trained on)" if noises else
             "every noise file (none held out: this run predates the noise split)")
    n_mics = int(args.get('n_mics') or 4)
    return (f"rooms simulated on the fly for {_a(n_mics)} {n_mics}-microphone "
            f"circular array of radius 5-10 cm (RT60 {c.rt60[0]:g}-{c.rt60[1]:g} s, room "
            f"{c.room_xy[0]:g}-{c.room_xy[1]:g} m, talker {c.source_distance[0]:g}-"
            f"{c.source_distance[1]:g} m away, one point noise source at {c.snr_db[0]:g}-"
            f"{c.snr_db[1]:g} dB SNR) from every training-split file under {root.name}/ and "
            f"{noise}; target: the direct-path speech at microphone 0")


def weights_digest(model) -> str:
    """SHA-256 of the model's tensors (names and values): the same for a checkpoint and the
    bundle packaged from it, so a benchmark result can be matched to the weights it measured."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


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
        f"{facts['speakers']['val']} ({VALIDATION_ROLE}). Speakers "
        f"heard in training, by today's speaker rules: {facts['heard_speakers']}.",
        f"- Budget: {facts['steps']:,} steps of {facts['batch_size']} x "
        f"{facts['segment_seconds']:g} s mixtures ({hours:.1f} h of mixtures seen; "
        f"{facts['steps_trained']:,} steps trained in all), "
        f"{facts.get('train_seconds', 0) / 60:.0f} min of training on a 2-core CPU.",
        *init_lines(facts),
        f"- Recipe: {facts.get('recipe')}. The published recipe's learning rate is 1.5e-4 for "
        f"the 42 M-parameter model; this model was trained at {facts['lr']}.", "",
        *validation_lines(facts, "mixtures")]
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
        if only.get("n") and "targets_test_role" not in results:  # else in the target lines
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
        lines += ["", *separation_targets_lines(results)]
    lines += ["", "## Limits", "",
              f"Trained on {facts['train_seconds_of_speech'] / 60:.1f} minutes of speech from "
              f"{len(facts['heard_speakers'])} talkers: expect it to do worse on voices, "
              f"languages and microphones unlike those. Training data: {facts['data']}."]
    return "\n".join(lines) + "\n"


def _verdicts(met: dict) -> str:
    return ", ".join(f"{k} {'not evaluated' if v is None else 'met' if v else 'NOT met'}"
                     for k, v in met.items())


def separation_targets_lines(results: dict) -> list[str]:
    """The card's issue-16 target paragraphs from a ``benchmarks/speech_pretrained.py``
    report: the headline on mixtures of test-role speakers only (or why it was not evaluated),
    the same on every unheard mixture beside it, and the real-time factor."""
    targets = dict(results["targets"])
    rtf = {k: targets.pop(k) for k in ("rtf_lt_0.5",) if k in targets}
    if "targets_all_unheard" not in results:  # a report from before the test-role headline
        return [f"Targets of issue 16, judged on every unheard mixture (validation-role "
                f"speakers included; an older benchmark report): {_verdicts(results['targets'])}."]
    head, every = results.get("targets_test_role"), results["targets_all_unheard"]
    title = ("Targets of issue 16 on mixtures of test-role speakers only (never used for any "
             "training decision)")
    lines = [f"{title}: {head['n']} mixtures, SI-SDRi {head['si_sdri']:.2f} dB. "
             f"{_verdicts(targets)}." if head else
             f"{title}: **not evaluated**: {results.get('targets_note') or 'no such mixture'}.",
             "", f"The same on every unheard mixture (validation-role speakers included: "
                 f"{VALIDATION_ROLE}): {every['n']} mixtures, SI-SDRi {every['si_sdri']:.2f} dB. "
                 f"{_verdicts(every['met'])}."]
    if rtf:
        lines += ["", f"Real-time target: {_verdicts(rtf)}."]
    return lines


def enhance_card(name: str, n_params: int, rate: int, facts: dict, results: dict | None
                 ) -> str:
    """The model card of an enhancement bundle (with the benchmark's table when given)."""
    hours = facts["steps"] * facts["batch_size"] * facts["segment_seconds"] / 3600
    n_mics = facts["n_mics"]
    noises = facts.get("noise_files") or {}
    lines = [
        f"# {name}", "",
        f"DeFTAN-II (`{facts['preset']}` preset, {n_params:,} parameters) for speech "
        f"enhancement with {_a(n_mics)} {n_mics}-microphone array at {rate} Hz: noisy "
        f"reverberant array "
        f"audio in, the direct-path speech at microphone 0 out. Trained by sigformer on a "
        f"2-core CPU. Use it with `sigformer enhance mics.wav --model {name} --out clean.wav` "
        f"(one {n_mics}-channel file or one mono file per microphone, in the array's order; "
        f"any rate: audio is resampled in and out) or `sigformer stream {name} ...`.", "",
        "## Training", "",
        f"- Data: {facts['data']}: {len(facts['speakers']['train'])} training speakers, "
        f"{facts['train_seconds_of_speech']} s of speech in all. Validation speakers "
        f"{facts['speakers']['val']} ({VALIDATION_ROLE}). Speakers "
        f"heard in training, by today's speaker rules: {facts['heard_speakers']}.",
        f"- Noise files held out for test (never trained on): "
        f"{noises.get('test') or 'none'}.",
        f"- Budget: {facts['steps']:,} steps of {facts['batch_size']} x "
        f"{facts['segment_seconds']:g} s scenes ({hours:.1f} h of scenes seen; "
        f"{facts['steps_trained']:,} steps trained in all), "
        f"{facts.get('train_seconds', 0) / 60:.0f} min of training on a 2-core CPU.",
        *init_lines(facts),
        f"- Recipe: {facts.get('recipe')} ({loss_name(facts.get('recipe'))})"
        + (f"; learning rate {facts['lr']}." if facts.get("lr") else "."), "",
        *validation_lines(facts, "scenes", "; SI-SDRi = SI-SDR gain over microphone 0")]
    if results:
        lines += ["", *enhance_results_lines(results, name)]
    lines += ["", "## Limits", "",
              f"Trained on {facts['train_seconds_of_speech'] / 60:.1f} minutes of speech from "
              f"{len(facts['heard_speakers'])} talkers, simulated shoebox rooms and "
              f"{len(noises.get('train') or [])} noise recordings: expect it to do worse on "
              f"voices, rooms, noises and arrays unlike those (the geometry must be "
              f"{_a(n_mics)} {n_mics}-microphone circular array of about 5-10 cm radius)."]
    return "\n".join(lines) + "\n"


def _a(number: int) -> str:
    """The article before a number said aloud: "an 8-microphone", "a 4-microphone"."""
    return "an" if str(number).startswith("8") or number in (11, 18) else "a"


def _cell(value, fmt: str = ".2f") -> str:
    return "" if value is None else format(value, fmt)


HEARD_NOISE_WARNING = ("**Caution: these scenes use noise files the model HEARD in training "
                       "(`--allow-heard-noise`: its record holds no held-out noise). They "
                       "measure unheard speakers and rooms only, not unheard noise.**")


def enhance_results_lines(results: dict, name: str) -> list[str]:
    """The card's section for a ``benchmarks/speech_enhance_pretrained.py`` report of these
    weights (checked by :func:`check_results`; the model's row is shown as ``name``)."""
    cond = results["conditions"]
    roles = ", ".join(f"{k}: {v}" for k, v in cond["speakers"].items())
    noise = "held-out noise files " if cond["noise_held_out"] else \
        "noise files it HEARD in training (--allow-heard-noise) "
    title = ("## Measured on unheard speakers, rooms and noises" if cond["noise_held_out"] else
             "## Measured on unheard speakers and rooms, with noises it HEARD")
    lines = [f"{title} (`benchmarks/speech_enhance_pretrained.py`)", "",
             *([HEARD_NOISE_WARNING, ""] if not cond["noise_held_out"] else []),
             f"{cond['n_scenes']} scenes of {cond['seconds']:g} s at {cond['sample_rate']} Hz "
             f"(rooms drawn from seed {cond['seed']}, the training family), speakers it never "
             f"heard ({roles}), {noise}{cond['noise_files']}. SI-SDR against the direct path "
             f"at microphone 0; SI-SDRi = gain over microphone 0; in dB. Measured on "
             f"`{results['model']}` (these weights: the digest matches).", ""]
    rt60, snr = results["rt60_bins"], results["snr_bins"]
    perceptual = cond["perceptual"]
    head = (["system", "SI-SDR", "SI-SDRi", "worst"] + [f"RT60 {b}" for b in rt60]
            + [f"SNR {b}" for b in snr] + (["PESQ", "STOI"] if perceptual else []))
    lines += ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for system, r in results["results"].items():
        label = name if system == results["model_system"] else system
        cells = [label, _cell(r["mean"]["si_sdr"]), _cell(r["mean"]["si_sdri"]),
                 _cell(r["min_si_sdri"])]
        cells += [_cell(r["by_rt60"][b]["si_sdri"]) for b in rt60]
        cells += [_cell(r["by_snr"][b]["si_sdri"]) for b in snr]
        if perceptual:
            cells += [_cell(r["mean"].get("pesq")), _cell(r["mean"].get("stoi"), ".3f")]
        lines.append("| " + " | ".join(cells) + " |")
    counts = ", ".join(f"{b}: {results['results'][results['model_system']]['by_rt60'][b]['n']}"
                       for b in rt60)
    lines += ["", f"Scenes per RT60 bin: {counts}."]
    lines += ["", _targets_line("Targets of issue 16 on the scenes of test-role speakers "
                                "(never used for any training decision)", results["targets"]),
              "", _targets_line("The same on every unheard scene (validation-role speakers "
                                "included: they steered the schedule and, for a -best "
                                "checkpoint, its selection)", results["targets_all_unheard"])]
    lines += subarray_lines(results, name)
    if not cond["noise_held_out"]:
        lines += ["", HEARD_NOISE_WARNING]
    return lines


def subarray_lines(results: dict, name: str) -> list[str]:
    """What the extra microphones bought: this model against each smaller array's bundle run
    on the sub-array of the same scenes (``--subarray-model``), on test-role and all scenes."""
    lines = []
    ours = results["model_system"]
    for system, r in results["results"].items():
        if r.get("kind") != "model on a sub-array (sigformer enhance)":
            continue
        parts = []
        test = [s for s in results["scenes"] if s["role"] == "test"]
        for label, rows in (("the {} test-role scenes", test),
                            ("all {} scenes", results["scenes"])):
            if not rows:
                continue
            gain = [s["systems"][ours]["si_sdri"] - s["systems"][system]["si_sdri"]
                    for s in rows]
            parts.append(f"{sum(gain) / len(gain):+.2f} dB on {label.format(len(rows))} "
                         f"(better on {sum(g > 0 for g in gain)})")
        lines += ["", f"Against {system} on the same scenes (what the other microphones buy): "
                      f"{name} {'; '.join(parts)}."]
    return lines


def _targets_line(title: str, block: dict | None) -> str:
    """One paragraph of the benchmark's target lines (``assess`` in the benchmark)."""
    if block is None:
        return f"{title}: no such scenes were drawn."
    comp = block["comparison"]
    return (f"{title}: {block['n']} scenes, SI-SDRi {block['si_sdri']:.2f} dB; against the best "
            f"MVDR with estimated statistics ({comp['best_estimated']}) "
            f"{comp['si_sdri_difference_db']:+.2f} dB, better on {comp['wins']} of {comp['n']}"
            + (f"; PESQ {comp['pesq_difference']:+.2f}, STOI {comp['stoi_difference']:+.3f}"
               if comp.get("pesq_difference") is not None else "") + ". "
            + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in block["met"].items())
            + ".")


def check_results(results: dict | None, path: Path | None, name: str, task: str, model,
                  chunk_s: float = 4.0, overlap_s: float = 0.5) -> None:
    """Refuse a results file that did not measure this model: separation results name the
    bundle; enhancement results carry the digest of the weights they measured (a benchmark
    run on the training checkpoint then matches the bundle packaged from it) and the chunking
    they ran with (``chunk_s``, ``overlap_s``: the bundle's), and must not be a ``--quick``
    smoke run."""
    if not results:
        return
    if task == "separate":
        if results.get("model") != name:
            raise SystemExit(f"{path} measured {results.get('model')!r}, not {name!r}")
        return
    if results.get("task") != "enhance":
        raise SystemExit(f"{path} is not a benchmarks/speech_enhance_pretrained.py report (its "
                         f"task is {results.get('task')!r}); this run is an enhancement run")
    measured = (results.get("bundle") or {}).get("weights_sha256")
    if measured != weights_digest(model):
        raise SystemExit(f"{path} measured other weights ({results.get('model')!r}, digest "
                         f"{str(measured)[:12]}...) than {name!r} packages "
                         f"({weights_digest(model)[:12]}...): rerun the benchmark on this "
                         f"checkpoint or bundle")
    bundle = results.get("bundle") or {}
    measured = (bundle.get("chunk_s"), bundle.get("overlap_s"))
    if measured != (chunk_s, overlap_s):
        raise SystemExit(f"{path} measured the weights with chunk_s, overlap_s = {measured}, but "
                         f"this bundle streams with {(chunk_s, overlap_s)}: chunking changes "
                         f"the output, so rerun the benchmark on a bundle packaged with "
                         f"--chunk-s {chunk_s:g} --overlap-s {overlap_s:g}, or package with "
                         f"the chunking it measured")
    quick = (results.get("conditions") or {}).get("quick")
    if quick is not False:
        raise SystemExit(f"{path} is " + ("a --quick smoke run" if quick else
                                          "a report that does not say whether it was a "
                                          "--quick smoke run (an older benchmark)")
                         + ": too few, too short scenes for a model card; rerun "
                         "benchmarks/speech_enhance_pretrained.py without --quick")


def speech_bundle(run: Path, *, log: Path | None = None, chunk_s: float = 4.0,
                  overlap_s: float = 0.5):
    """``(bundle, facts, task)`` for a training checkpoint folder: a separation bundle (mono
    input) or an enhancement bundle (``n_mics``-channel array input), both at the training
    rate, with the chunking the audio commands use and the training facts."""
    from sigformer.bundle import Bundle
    from sigformer.checkpoint import load_checkpoint
    from sigformer.spec import SignalSpec

    model, _ = load_checkpoint(run)
    model.eval()
    facts = training_facts(run, log)
    task = facts.get("task", "separate")
    extra = {"chunk_s": chunk_s, "overlap_s": overlap_s, "training": facts}
    provenance = {"trained_by": "scripts/train_speech.py"}
    if task == "enhance":
        rate = int(getattr(model, "sample_rate", facts["sample_rate"]))
        n_mics = int(getattr(model, "n_mics", facts["n_mics"]))
        if n_mics != facts["n_mics"]:
            raise SystemExit(f"{run} holds a {n_mics}-microphone model but its record says "
                             f"--n-mics {facts['n_mics']}: the record is not this run's")
        spec = SignalSpec.audio(rate, n_mics)
        bundle = Bundle(model=model, task="enhance", input_spec=spec, model_spec=spec,
                        labels=["enhanced"], extra={**extra, "array": facts["array"]},
                        provenance={"summary": f"deftan2 {n_mics}-mic speech enhancement",
                                    **provenance})
    else:
        rate = int(getattr(model, "sample_rate", 8000))
        spec = SignalSpec.audio(rate, 1)
        bundle = Bundle(model=model, task="separate", input_spec=spec, model_spec=spec,
                        labels=["s1", "s2"], extra=extra,
                        provenance={"summary": "mossformer 2-speaker separation",
                                    **provenance})
    return bundle, facts, task


def default_name(task: str, facts: dict) -> str:
    if task == "enhance":
        return (f"enh-deftan2-{facts['preset']}-{facts['n_mics']}mic-"
                f"{facts['sample_rate'] // 1000}k")
    return "sep-mossformer-small-dm8k"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="checkpoint folder written by scripts/train_speech.py")
    ap.add_argument("--name", default=None,
                    help="bundle name (default: sep-mossformer-small-dm8k for separation, "
                         "enh-deftan2-<preset>-<n>mic-<rate>k for enhancement)")
    ap.add_argument("--log", type=Path, help="the training log (steps/s lines, recipe)")
    ap.add_argument("--results", type=Path,
                    help="benchmarks/speech_pretrained.py (separation) or "
                         "benchmarks/speech_enhance_pretrained.py (enhancement) JSON")
    ap.add_argument("--chunk-s", type=float, default=4.0)
    ap.add_argument("--overlap-s", type=float, default=0.5)
    ap.add_argument("--dest", type=Path, default=REPO / "sigformer" / "catalogue")
    args = ap.parse_args(argv)

    run = Path(args.run)
    bundle, facts, task = speech_bundle(run, log=args.log, chunk_s=args.chunk_s,
                                        overlap_s=args.overlap_s)
    name = args.name or default_name(task, facts)
    results = json.loads(args.results.read_text()) if args.results else None
    check_results(results, args.results, name, task, bundle.model, args.chunk_s,
                  args.overlap_s)
    n_params = sum(p.numel() for p in bundle.model.parameters())
    rate = int(bundle.input_spec.sfreq)
    card = enhance_card(name, n_params, rate, facts, results) if task == "enhance" else \
        model_card(name, n_params, rate, facts, results)
    out = bundle.save(args.dest / name, card=card)
    print(f"wrote {out} ({facts['steps']} steps, {n_params:,} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
