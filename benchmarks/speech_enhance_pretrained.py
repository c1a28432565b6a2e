"""Trained DeFTAN-II enhancement bundles on speakers, rooms and noises they never heard, side by
side with the classical beamformers on the same scenes (issue 16).

    python benchmarks/speech_enhance_pretrained.py --model BUNDLE_OR_CHECKPOINT \\
        [--n-scenes 24] [--perceptual] [--quick] [--subarray-model SMALLER_BUNDLE]
        [--out results.json]

``--model`` is an enhancement bundle (a folder written by ``scripts/package_speech.py``, or a
catalogue name) or a training checkpoint folder of ``scripts/train_speech.py --task enhance``
(``runs/deftan2_4mic`` or ``runs/deftan2_4mic-best``, evaluated mid-training without
packaging: it is packaged into a temporary bundle exactly as ``package_speech.py`` would,
with the same chunking).

Test scenes, honest by construction:

* speech only from speakers the model never heard: the bundle (or the run's
  ``<run>-split.json``) records the files it trained on, and a speaker counts as heard when any
  of its files (by today's speaker rules) was among them
  (:func:`~sigformer.data.mixtures.unheard_utterances`); ``--data`` must hold every
  training and validation file of the record, else the run is refused (another layout would
  make every speaker look unheard). Validation-role speakers are marked: they steered the
  learning-rate schedule and, for ``-best``, checkpoint selection, so they are not
  independent of the model;
* noise only from the record's held-out noise files (``noise_files["test"]``, never trained
  on); a record without them is refused unless ``--allow-heard-noise`` (then every noise file
  is used and the JSON says so);
* rooms drawn from seed ``--seed`` (30 000; training draws its rooms from generators seeded
  by small integers) in the training family: :class:`~sigformer.data.room.SceneConfig` with
  the model's microphone count and the array radius its record states (5-10 cm), at the
  model's rate, 4 s each. Results are also given by RT60 bin (< 0.5, 0.5-0.8, > 0.8 s) and
  SNR bin (0-5, 5-10, 10-15 dB).

Systems: the unprocessed microphone 0 (floor); delay-and-sum at the true DOA and at the
SRP-PHAT estimate; the MVDRs with estimated statistics (Souden and RTF-MVDR with energy-VAD
statistics, MVDR steered at the SRP-PHAT DOA with the VAD noise covariance): the issue's
"MVDR with estimated statistics"; with ``--subarray-model``, a bundle for a smaller
circular array of the same radius (e.g. 4 of the 8 microphones) run by ``sigformer enhance``
on the sub-array it fits (mics 0, 2, 4, 6), so the table shows what the extra microphones
buy (it must not have heard the scenes' speakers or noises either); the bundle run by
``sigformer enhance`` itself (its
streaming runtime and chunking, through a float WAV file); the Souden MVDR with oracle
statistics (direct path vs the rest) as the ceiling. Metrics: SI-SDR against the direct path
at microphone 0 and its gain over microphone 0 (SI-SDRi); with ``--perceptual`` PESQ (wide
band at 16 kHz, narrow band at 8 kHz) and STOI.

Targets (issue 16): SI-SDRi >= 5 dB on average, and ahead of the best MVDR with estimated
statistics, judged on the scenes of test-role speakers (never used for any training decision:
the headline, printed and in the JSON's ``targets``); the same lines on every unheard scene
(validation-role speakers included) are given next to them (``targets_all_unheard``).
Speakers take turns with the test-role ones first, so even a short run has test-role scenes.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import math
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO.parent / "shared" / "data" / "speech"
SCENE_SEED = 30_000
RT60_BINS = {"<0.5 s": (0.0, 0.5), "0.5-0.8 s": (0.5, 0.8), ">0.8 s": (0.8, math.inf)}
SNR_BINS = {"0-5 dB": (-math.inf, 5.0), "5-10 dB": (5.0, 10.0), "10-15 dB": (10.0, math.inf)}
FLOOR = "unprocessed (mic 0)"
CEILING = "MVDR Souden (oracle, ceiling)"
# the "MVDR with estimated statistics": nothing oracle goes into these
ESTIMATED_MVDR = ("MVDR Souden (VAD)", "RTF-MVDR (VAD)", "MVDR (SRP-PHAT DOA, VAD noise)")


def package_script():
    """``scripts/package_speech.py`` as a module (split records, packaging a checkpoint)."""
    spec = importlib.util.spec_from_file_location("package_speech",
                                                  REPO / "scripts" / "package_speech.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Model(NamedTuple):
    """The model under test: a bundle folder ``sigformer enhance`` loads, and its record.
    (A NamedTuple: tests load this file as a module outside ``sys.modules``, where a
    dataclass cannot resolve its annotations.)"""

    folder: Path
    name: str
    kind: str  # "bundle" or "checkpoint"
    training: dict
    rate: int
    n_mics: int
    n_params: int
    digest: str
    chunk_s: float
    overlap_s: float


def _is_checkpoint(path: Path) -> bool:
    """A training checkpoint folder (config without a bundle task), not a bundle."""
    config = path / "config.json"
    return config.is_file() and json.loads(config.read_text()).get("task") is None


def resolve_model(spec: str, workdir: Path) -> Model:
    """The bundle to run for ``--model``: the bundle itself, or a training checkpoint packaged
    into ``workdir`` as ``scripts/package_speech.py`` would (its record found beside it)."""
    from sigformer.bundle import Bundle

    package = package_script()
    path = Path(spec)
    if path.is_dir() and _is_checkpoint(path):
        bundle, facts, task = package.speech_bundle(path)
        if task != "enhance":
            raise SystemExit(f"{spec} is a {task!r} run, not an enhancement one "
                             f"(train_speech.py --task enhance)")
        folder = bundle.save(workdir / path.name, card=f"# {path.name}\n\nThe checkpoint "
                             f"{path} packaged for benchmarking.\n")
        kind, name = "checkpoint", path.name
    else:
        bundle = Bundle.load(spec)
        if bundle.task != "enhance":
            raise SystemExit(f"{spec} is a {bundle.task!r} bundle, not an enhancement one")
        folder, kind, name = Path(bundle.path), "bundle", Path(str(spec)).name
        facts = bundle.extra.get("training") or {}
    if not facts.get("files"):
        raise SystemExit(f"{spec} records no training files (extra.training.files): cannot tell "
                         f"which speakers it heard; package it with scripts/package_speech.py")
    model = bundle.model
    return Model(folder=folder, name=name, kind=kind, training=facts,
                 rate=int(bundle.input_spec.sfreq), n_mics=int(bundle.input_spec.n_channels),
                 n_params=sum(p.numel() for p in model.parameters()),
                 digest=package.weights_digest(model),
                 chunk_s=float(bundle.extra.get("chunk_s", 4.0)),
                 overlap_s=float(bundle.extra.get("overlap_s", 0.5)))


def scene_config(rate: int, n_mics: int, array: dict | None = None):
    """The training scene family (``train_speech.py --task enhance``) for this model: the
    array radius its record states (``training["array"]``), else the one that script draws."""
    from sigformer.data.room import ENHANCE_TRAINING_RADIUS, SceneConfig

    radius = (array or {}).get("radius_m", ENHANCE_TRAINING_RADIUS)
    return SceneConfig(sample_rate=rate, n_mics=n_mics,
                       radius=tuple(radius) if isinstance(radius, list) else radius)


def held_out_noises(training: dict, data: Path, allow_heard: bool) -> tuple[list[Path], bool]:
    """``(noise files, held_out)``: the record's test noises (never trained on), or with
    ``allow_heard`` and no such record every noise file under ``data``."""
    from sigformer.data.mixtures import list_speech

    held = list((training.get("noise_files") or {}).get("test") or [])
    if held:
        paths = [data / f for f in held]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise SystemExit(f"the record's held-out noise files are missing under {data}: "
                             f"{missing[:3]}")
        return paths, True
    if not allow_heard:
        raise SystemExit("the model's record holds no held-out noise files (noise_files['test'] "
                         "is missing or empty: the run trained on every noise file), so no "
                         "noise is unheard; retrain with scripts/train_speech.py "
                         "--noise-test-share > 0, or pass --allow-heard-noise to score on "
                         "noises it heard (the JSON records it)")
    noises = list_speech(data)[1]
    if not noises:
        raise SystemExit(f"no noise files under {data}")
    return list(noises), False


def check_data_root(training: dict, utterances: list, data: Path) -> None:
    """Refuse a speech folder that does not hold every training and validation file of the
    record (another folder or layout): nothing would match them, and every speaker, heard
    ones included, would count as unheard."""
    listed = {_relative(u.path, data) for u in utterances}
    recorded = [f for split in ("train", "val") for f in training["files"].get(split, [])]
    missing = [f for f in recorded if f not in listed]
    if missing:
        expected = training.get("data_root") or "the folder the run trained from"
        raise SystemExit(f"{len(missing)} of the {len(recorded)} training and validation files "
                         f"the model's record names are not speech files under {data} (e.g. "
                         f"{missing[:3]}); the record's paths are relative to {expected}: pass "
                         f"--data pointing at that folder, in the same layout, or heard "
                         f"speakers would count as unheard")


def scene_plan(n_scenes: int, n_speakers: int, n_noises: int) -> list[tuple[int, int]]:
    """``(speaker, noise)`` indices of each scene: speakers take turns, and speaker ``s`` in
    its ``r``-th turn gets noise ``(s + r) % n_noises``, so every speaker meets every noise
    once there are ``n_speakers * n_noises`` scenes, whatever the two counts share (a
    rotation by the scene index alone ties speakers to noises when they share a factor)."""
    return [(i % n_speakers, (i % n_speakers + i // n_speakers) % n_noises)
            for i in range(n_scenes)]


def draw_scenes(utterances: list, roles: dict, noises: list[Path], config, seconds: float,
                n_scenes: int, seed: int, data: Path) -> list:
    """``n_scenes`` scenes by :func:`scene_plan` (test-role speakers take the first turns, so
    a short run still has scenes of speakers no training decision used), each a random
    segment of one of the speaker's files and of the noise, the room from ``seed + i``."""
    from sigformer.data.mixtures import AudioPool, segment_of
    from sigformer.data.room import simulate_scene

    speakers = sorted({u.speaker for u in utterances}, key=lambda s: (roles[s] != "test", s))
    files = {s: [i for i, u in enumerate(utterances) if u.speaker == s] for s in speakers}
    speech_pool = AudioPool(utterances, config.sample_rate)
    noise_pool = AudioPool(noises, config.sample_rate)
    rng = np.random.default_rng(seed)
    length = int(round(seconds * config.sample_rate))
    scenes = []
    for i, (s, n) in enumerate(scene_plan(n_scenes, len(speakers), len(noises))):
        speaker = speakers[s]
        k = files[speaker][int(rng.integers(len(files[speaker])))]
        speech = segment_of(speech_pool.get(k), length, rng)
        noise = segment_of(noise_pool.get(n), length, rng)
        scene = simulate_scene(speech, noise, config, seed=seed + i)
        scene.info.update(speaker=speaker, role=roles[speaker], scene_seed=seed + i,
                          speech_file=_relative(utterances[k].path, data),
                          noise_file=_relative(noises[n], data))
        scenes.append(scene)
    return scenes


def _relative(path, root: Path) -> str:
    path, root = Path(path).resolve(), Path(root).resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def enhance_like_cli(model: Model, mixture: np.ndarray, workdir: Path) -> tuple[np.ndarray, dict]:
    """The bundle's output for one array mixture, by ``sigformer enhance`` itself (float WAV
    in and out: its streaming runtime and chunking, nothing reimplemented here)."""
    from sigformer.cli import main as cli_main
    from sigformer.speech.audio import read_audio, write_audio

    mics, out = workdir / "mics.wav", workdir / "enhanced.wav"
    write_audio(mics, mixture, model.rate)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli_main(["enhance", str(mics), "--model", str(model.folder), "--out", str(out)])
    if code != 0 or not out.is_file():
        raise SystemExit(f"sigformer enhance failed on a benchmark scene (exit {code})")
    audio, rate = read_audio(out)
    if rate != model.rate or audio.shape != (1, mixture.shape[1]):
        raise SystemExit(f"sigformer enhance returned {audio.shape} at {rate} Hz for a "
                         f"{mixture.shape} input at {model.rate} Hz")
    text = printed.getvalue()
    report = json.loads(text[text.index("{"):]) if "{" in text else {}
    return audio[0], report


def beamformer_systems(rate: int) -> dict:
    """``name -> (kind, fn(scene, doa) -> (samples,))`` for the classical systems; ``doa`` is
    the scene's SRP-PHAT estimate (computed once, used by every DOA-steered estimate)."""
    from sigformer.speech import beamforming as bf

    def pos(sc):
        return np.asarray(sc.info["mic_positions"])

    def vad_noise_mvdr(sc, doa):
        return bf.doa_mvdr(sc.mixture, rate, pos(sc), azimuth=doa,
                           vad=bf.energy_vad(sc.mixture))

    return {
        FLOOR: ("floor", lambda sc, doa: sc.mixture[0]),
        "DS (true DOA)": ("oracle DOA", lambda sc, doa: bf.delay_and_sum(
            sc.mixture, rate, mic_positions=pos(sc), azimuth=sc.info["source_azimuth"],
            colatitude=sc.info["source_colatitude"])),
        "DS (SRP-PHAT DOA)": ("estimated", lambda sc, doa: bf.delay_and_sum(
            sc.mixture, rate, mic_positions=pos(sc), azimuth=doa)),
        "MVDR Souden (VAD)": ("estimated", lambda sc, doa: bf.souden_mvdr(sc.mixture)),
        "RTF-MVDR (VAD)": ("estimated", lambda sc, doa: bf.rtf_mvdr(sc.mixture)),
        "MVDR (SRP-PHAT DOA, VAD noise)": ("estimated", vad_noise_mvdr),
        CEILING: ("ceiling", lambda sc, doa: bf.souden_mvdr(
            sc.mixture, speech=sc.direct, noise=sc.mixture - sc.direct)),
    }


def score(estimate: np.ndarray, scene, rate: int, perceptual: bool) -> dict:
    """SI-SDR (and SI-SDRi over mic 0) against the direct path at mic 0; PESQ/STOI when asked
    (None where PESQ finds no utterance)."""
    from sigformer.speech.metrics import SpeechMetricError, pesq_score, si_sdr, stoi_score

    target = scene.target[0].astype(np.float64)
    value = float(si_sdr(np.asarray(estimate, np.float64), target))
    row = {"si_sdr": value,
           "si_sdri": value - float(si_sdr(scene.mixture[0].astype(np.float64), target))}
    if perceptual:
        try:
            row["pesq"] = pesq_score(estimate, target, rate)
        except SpeechMetricError:
            row["pesq"] = None
        row["stoi"] = stoi_score(estimate, target, rate)
    return row


def bin_of(value: float, bins: dict) -> str:
    return next(name for name, (low, high) in bins.items() if low <= value < high)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def summarise(rows: list[dict], system: str, metrics: tuple[str, ...]) -> dict:
    """Mean, worst and per-bin / per-role means of one system over the scene rows."""
    def group(key) -> dict:
        out: dict = {}
        for r in rows:
            out.setdefault(key(r), []).append(r["systems"][system]["si_sdri"])
        return out

    def by(key, names) -> dict:
        groups = group(key)
        return {n: {"n": len(groups.get(n, [])), "si_sdri": _mean(groups.get(n, []))}
                for n in names}

    scores = [r["systems"][system] for r in rows]
    return {"n": len(rows),
            "mean": {m: _mean(s.get(m) for s in scores) for m in metrics},
            "min_si_sdri": float(min(s["si_sdri"] for s in scores)),
            "by_rt60": by(lambda r: bin_of(r["rt60"], RT60_BINS), RT60_BINS),
            "by_snr": by(lambda r: bin_of(r["snr_db"], SNR_BINS), SNR_BINS),
            "by_role": by(lambda r: r["role"], ("validation", "test"))}


def compare(rows: list[dict], results: dict, model_system: str) -> dict:
    """The bundle against the best MVDR with estimated statistics (by mean SI-SDRi)."""
    best = max(ESTIMATED_MVDR, key=lambda s: results[s]["mean"]["si_sdri"])
    ours, theirs = results[model_system]["mean"], results[best]["mean"]
    wins = sum(r["systems"][model_system]["si_sdri"] > r["systems"][best]["si_sdri"]
               for r in rows)
    out = {"best_estimated": best, "si_sdri_difference_db": ours["si_sdri"] - theirs["si_sdri"],
           "wins": int(wins), "n": len(rows)}
    for metric in ("pesq", "stoi"):
        if ours.get(metric) is not None and theirs.get(metric) is not None:
            out[f"{metric}_difference"] = ours[metric] - theirs[metric]
    return out


def assess(rows: list[dict], model_system: str, metrics: tuple[str, ...]) -> dict | None:
    """The issue-16 target lines on ``rows`` (None when there are none): the model's mean
    SI-SDRi, its comparison with the best MVDR with estimated statistics on these rows, and
    whether each target is met."""
    if not rows:
        return None
    results = {s: summarise(rows, s, metrics) for s in (model_system, *ESTIMATED_MVDR)}
    comparison = compare(rows, results, model_system)
    ours = results[model_system]["mean"]["si_sdri"]
    return {"n": len(rows), "si_sdri": ours, "comparison": comparison,
            "met": {"si_sdri_ge_5db_over_mic0": ours >= 5.0,
                    "ahead_of_mvdr_with_estimated_statistics":
                        comparison["si_sdri_difference_db"] > 0}}


def print_targets(title: str, block: dict | None) -> None:
    if block is None:
        print(f"{title}: no such scenes")
        return
    comp = block["comparison"]
    print(f"{title}: {block['n']} scenes, SI-SDRi {block['si_sdri']:+.2f} dB; vs the best MVDR "
          f"with estimated statistics ({comp['best_estimated']}) "
          f"{comp['si_sdri_difference_db']:+.2f} dB, better on {comp['wins']} of {comp['n']}"
          + (f", PESQ {comp['pesq_difference']:+.2f}" if "pesq_difference" in comp else "")
          + (f", STOI {comp['stoi_difference']:+.3f}" if "stoi_difference" in comp else ""))
    for target, met in block["met"].items():
        print(f"  {target}: {'met' if met else 'NOT met'}")


def print_table(results: dict, perceptual: bool) -> None:
    head = (f"{'system':34s} {'SI-SDR':>7s} {'SI-SDRi':>8s} {'worst':>7s} "
            + " ".join(f"{'RT60 ' + b:>10s}" for b in RT60_BINS) + " "
            + " ".join(f"{'SNR ' + b:>11s}" for b in SNR_BINS)
            + (f" {'PESQ':>5s} {'STOI':>6s}" if perceptual else ""))
    print(head)

    def cell(value, width: int, fmt: str = ".2f") -> str:
        return f"{'-':>{width}s}" if value is None else f"{value:{width}{fmt}}"

    for name, r in results.items():
        line = (f"{name[:34]:34s} {r['mean']['si_sdr']:7.2f} {r['mean']['si_sdri']:8.2f} "
                f"{r['min_si_sdri']:7.2f} "
                + " ".join(cell(r["by_rt60"][b]["si_sdri"], 10) for b in RT60_BINS) + " "
                + " ".join(cell(r["by_snr"][b]["si_sdri"], 11) for b in SNR_BINS))
        if perceptual:
            line += f" {cell(r['mean'].get('pesq'), 5)} {cell(r['mean'].get('stoi'), 6, '.3f')}"
        print(line)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True,
                    help="enhancement bundle (folder or catalogue name) or a checkpoint folder "
                         "of scripts/train_speech.py --task enhance (e.g. "
                         "runs/deftan2_4mic-best)")
    ap.add_argument("--data", default=None,
                    help="speech and noise folder (default: the one the run trained from, "
                         f"else {SPEECH})")
    ap.add_argument("--n-scenes", type=int, default=None, help="scenes (24; --quick: 2)")
    ap.add_argument("--seconds", type=float, default=None, help="scene length (4; --quick: 1)")
    ap.add_argument("--seed", type=int, default=SCENE_SEED,
                    help="rooms and segments (far from the small seeds training draws from)")
    ap.add_argument("--perceptual", action="store_true", help="also PESQ / STOI (slower)")
    ap.add_argument("--allow-heard-noise", action="store_true",
                    help="score on noise files the model heard when its record holds no "
                         "held-out ones (recorded in the JSON)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for the beamformers (sigformer enhance runs its model "
                         "with its own default, 1)")
    ap.add_argument("--subarray-model", action="append", default=[],
                    help="also run this enhancement bundle for a smaller circular array on "
                         "the sub-array of each scene it fits (a 4-mic bundle on mics 0, 2, "
                         "4, 6 of an 8-mic scene): what the extra microphones buy "
                         "(repeatable; it must not have heard any test speaker)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 2 scenes of 1 s, no perceptual metrics")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" /
                                         "speech_enhance_pretrained.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.perceptual = False
    args.n_scenes = args.n_scenes or (2 if args.quick else 24)
    args.seconds = args.seconds or (1.0 if args.quick else 4.0)
    if args.n_scenes < 1 or args.seconds <= 0:
        ap.error(f"--n-scenes must be >= 1 and --seconds > 0, got {args.n_scenes} and "
                 f"{args.seconds}")
    return args


def data_root(args, training: dict) -> Path:
    """``--data``, else the folder the run trained from, else the shared speech folder."""
    for candidate in (args.data, training.get("data_root"), SPEECH):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    raise SystemExit(f"no speech data at {args.data or training.get('data_root') or SPEECH}: "
                     f"nothing to evaluate on")


class SubarrayModel(NamedTuple):
    """A bundle for a smaller circular array, run on the scene microphones it fits."""

    model: Model
    positions: list[int]

    @property
    def name(self) -> str:
        return f"{self.model.name} (mics {', '.join(map(str, self.positions))})"


def subarray_models(specs: list[str], model: Model, roles: dict, noises: list[Path],
                    speech: list, data: Path, workdir: Path) -> list[SubarrayModel]:
    """``--subarray-model`` bundles, each placed on the sub-array of ``model``'s array it was
    trained for; refused unless its array is a smaller circular one of the same radius and
    rate, and unless it, too, never heard the scenes' speakers and noises."""
    from sigformer.data.io import DataError
    from sigformer.data.mixtures import unheard_utterances
    from sigformer.models.speech.deftan2 import circular_subarray

    out = []
    for i, spec in enumerate(specs):
        small = resolve_model(spec, workdir / f"subarray{i}")
        problem = None
        if small.rate != model.rate:
            problem = f"runs at {small.rate} Hz, the scenes at {model.rate} Hz"
        elif small.n_mics >= model.n_mics:
            problem = (f"takes {small.n_mics} microphones: not a smaller array than the "
                       f"{model.n_mics} of {model.name}")
        elif (small.training.get("array") or {}).get("radius_m") != \
                (model.training.get("array") or {}).get("radius_m"):
            problem = (f"was trained for array radius "
                       f"{(small.training.get('array') or {}).get('radius_m')} m, the scenes "
                       f"use {(model.training.get('array') or {}).get('radius_m')} m")
        if problem:
            raise SystemExit(f"--subarray-model {spec} {problem}")
        try:
            positions = circular_subarray(small.n_mics, model.n_mics)
            unheard = unheard_utterances(speech, small.training["files"], data)[1]
        except (ValueError, DataError) as err:
            raise SystemExit(f"--subarray-model {spec}: {err}") from None
        heard = sorted(set(roles) - set(unheard))
        if heard:
            raise SystemExit(f"--subarray-model {spec} heard speakers of these scenes in "
                             f"training ({heard}): its row would not be a fair comparison")
        recorded = small.training.get("noise_files")
        heard_noises = sorted({str(n) for n in noises} & {
            str(data / f) for f in (recorded or {}).get("train") or []})
        if recorded is None or heard_noises:
            raise SystemExit(f"--subarray-model {spec} " + (
                f"trained on noise files of these scenes ({heard_noises})" if recorded else
                "records no noise split (it may have trained on every noise file)")
                + ": its row would not be a fair comparison")
        out.append(SubarrayModel(small, positions))
    return out


def run_systems(scenes: list, model: Model, perceptual: bool, workdir: Path,
                subarrays: list[SubarrayModel] = ()) -> tuple[list[dict], dict, float]:
    """Per-scene rows with every system's scores, the system kinds, and the wall seconds of
    ``sigformer enhance`` over all scenes (the model under test only)."""
    from sigformer.speech.beamforming import estimate_doa

    systems = beamformer_systems(model.rate)
    kinds = {name: kind for name, (kind, _) in systems.items()}
    for sub in subarrays:
        kinds[sub.name] = "model on a sub-array (sigformer enhance)"
    kinds[model.name] = "model (sigformer enhance)"
    rows, enhance_wall = [], 0.0
    for i, sc in enumerate(scenes):
        positions = np.asarray(sc.info["mic_positions"])
        doa = estimate_doa(sc.mixture, model.rate, positions)
        error = abs((doa - sc.info["source_azimuth"] + np.pi) % (2 * np.pi) - np.pi)
        scores = {}
        for name, (_, run) in systems.items():
            with torch.inference_mode():
                scores[name] = score(run(sc, doa), sc, model.rate, perceptual)
        t0 = time.perf_counter()
        enhanced, _ = enhance_like_cli(model, sc.mixture, workdir)
        enhance_wall += time.perf_counter() - t0
        scores[model.name] = score(enhanced, sc, model.rate, perceptual)
        for sub in subarrays:
            enhanced, _ = enhance_like_cli(sub.model, sc.mixture[sub.positions], workdir)
            scores[sub.name] = score(enhanced, sc, model.rate, perceptual)
        info = sc.info
        rows.append({"scene": i, "speaker": info["speaker"], "role": info["role"],
                     "speech_file": info["speech_file"], "noise_file": info["noise_file"],
                     "scene_seed": info["scene_seed"], "rt60": info["rt60"],
                     "snr_db": info["snr_db"], "distance": info["distance"],
                     "room": info["room"], "doa_error_deg": float(np.degrees(error)),
                     "systems": scores})
        print(f"  scene {i + 1}/{len(scenes)}: RT60 {info['rt60']:.2f} s, SNR "
              f"{info['snr_db']:.1f} dB, {info['role']} speaker {info['speaker']}: model "
              f"{scores[model.name]['si_sdri']:+.2f} dB SI-SDRi", flush=True)
    order = ([n for n in systems if n != CEILING] + [sub.name for sub in subarrays]
             + [model.name, CEILING])
    return rows, {n: kinds[n] for n in order}, enhance_wall


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from sigformer.data.mixtures import list_speech, unheard_utterances

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model = resolve_model(args.model, workdir)
        data = data_root(args, model.training)
        speech = list_speech(data)[0]
        check_data_root(model.training, speech, data)
        test, roles = unheard_utterances(speech, model.training["files"], data)
        if not roles:
            raise SystemExit(f"every speaker in {data} was heard in training: nothing fair to "
                             f"test on")
        noises, held_out = held_out_noises(model.training, data, args.allow_heard_noise)
        subarrays = subarray_models(args.subarray_model, model, roles, noises, speech, data,
                                    workdir)
        config = scene_config(model.rate, model.n_mics, model.training.get("array"))
        scenes = draw_scenes(test, roles, noises, config, args.seconds, args.n_scenes,
                             args.seed, data)
        print(f"{len(scenes)} scenes of {args.seconds:g} s at {model.rate} Hz, "
              f"{model.n_mics} mics, {len(roles)} unheard speakers, "
              f"{len(noises)} {'held-out' if held_out else 'HEARD'} noise files", flush=True)
        rows, kinds, enhance_wall = run_systems(scenes, model, args.perceptual, workdir,
                                                subarrays)

    metrics = ("si_sdr", "si_sdri") + (("pesq", "stoi") if args.perceptual else ())
    results = {name: {"kind": kind, **summarise(rows, name, metrics)}
               for name, kind in kinds.items()}
    # the headline: test-role speakers only (validation-role ones steered the schedule and,
    # for -best, picked the checkpoint); every unheard scene beside it
    targets = assess([r for r in rows if r["role"] == "test"], model.name, metrics)
    targets_all = assess(rows, model.name, metrics)

    print()
    print_table(results, args.perceptual)
    audio_s = args.seconds * len(scenes)
    print(f"\nsigformer enhance: {enhance_wall:.1f} s wall for {audio_s:g} s of audio (bundle "
          f"loading included; the machine may be shared)")
    print_targets("issue-16 targets on test-role speakers (never used for any training "
                  "decision)", targets)
    print_targets("the same on every unheard scene (validation-role speakers included: they "
                  "steered the schedule and, for -best, picked the checkpoint)", targets_all)
    if not held_out:
        print("  NOTE: scored on noise files the model heard in training (--allow-heard-noise)")

    report = {
        "task": "enhance", "model": args.model, "model_system": model.name,
        "bundle": {"name": model.name, "kind": model.kind, "folder": str(model.folder)
                   if model.kind == "bundle" else None, "n_params": model.n_params,
                   "preset": model.training.get("preset"), "step": model.training.get("steps"),
                   "n_mics": model.n_mics, "sample_rate": model.rate,
                   "chunk_s": model.chunk_s, "overlap_s": model.overlap_s,
                   "weights_sha256": model.digest},
        "conditions": {
            "n_scenes": len(scenes), "seconds": args.seconds, "sample_rate": model.rate,
            "n_mics": model.n_mics, "seed": args.seed,
            "scene_seeds": [r["scene_seed"] for r in rows],
            "scene_config": asdict(config), "data": str(data),
            "speakers": dict(sorted(roles.items())),
            "speech_files": sorted({r["speech_file"] for r in rows}),
            "noise_files": [_relative(n, data) for n in noises],
            "noise_held_out": held_out, "allow_heard_noise": args.allow_heard_noise,
            "quick": args.quick, "perceptual": args.perceptual, "threads": args.threads,
            "subarray_models": [{"name": sub.model.name, "positions": sub.positions,
                                 "weights_sha256": sub.model.digest} for sub in subarrays]},
        "rt60_bins": list(RT60_BINS), "snr_bins": list(SNR_BINS),
        "results": results, "targets": targets, "targets_all_unheard": targets_all,
        "enhance_wall_s": round(enhance_wall, 2), "machine": platform.machine(),
        "scenes": rows, "bundle_training": model.training}
    from sigformer.atomic import atomic_write_json

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, report)  # never a half-written report
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
