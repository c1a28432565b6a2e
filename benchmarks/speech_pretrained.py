"""Trained separation bundles on speakers they never heard: SI-SDRi by mixture class, the
oracle-mask ceilings beside them, and the streaming real-time factor on 2 cores.

Test mixtures are made from every speaker of ``../shared/data/speech`` that the bundle never
heard: the bundle records the files it trained on, and a speaker counts as heard when any of
its files (by today's speaker rules, :data:`~sigformer.data.mixtures.SPEAKER_RULES`) was
among them. Each such speaker has a role: validation (its files were the run's validation set:
they steered the learning-rate schedule and, for a ``-best`` checkpoint, chose the
checkpoint, so they are not independent of the weights) or test (never used for any training
decision). Every pair of speakers is mixed at each overlap ratio (1.0 = fully overlapped, as
WSJ0-2mix; 0.6 and 0.3 = partly overlapped turns), relative level drawn in +-2.5 dB, segments
at random offsets. Gender pairs come from the file names where they say so,
otherwise from the median F0 of the voiced frames (torchaudio's pitch detector; above 165 Hz =
female): an estimate, reported as such.

Systems, side by side on the same mixtures: the mixture itself (floor, 0 dB SI-SDRi), the
bundle run exactly as ``sigformer separate`` runs it (chunks and overlap from the bundle,
speaker order aligned across chunks), and the ideal ratio / binary masks (ceilings). The
real-time factor is that of ``sigformer separate`` on a 30 s mixture with 2 threads.

    python benchmarks/speech_pretrained.py --model BUNDLE [--perceptual] [--quick]

Targets (issue 16): SI-SDRi >= 6 dB on average and never below the mixture (SI-SDRi > 0) on
any class (overlap ratio, gender pair), judged on the mixtures whose two speakers are both
test-role: the headline, printed and in the JSON's ``targets`` (and ``targets_test_role``,
with the figures). With fewer than two test-role speakers there is no such mixture and the
headline is "not evaluated" (``targets`` then holds None). The same lines on every unheard
mixture (validation-role speakers included) are given next to them (``targets_all_unheard``).
RTF < 0.5 streaming on 2 cores (no speaker in it: judged once).
"""

from __future__ import annotations

import argparse
import itertools
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO.parent / "shared" / "data" / "speech"
OVERLAPS = (1.0, 0.6, 0.3)
FEMALE_F0_HZ = 165.0
# the issue-16 separation targets judged on speakers (the RTF one is judged apart)
TARGETS = ("si_sdri_ge_6db", "never_below_mixture_per_class")


def median_f0(audio: np.ndarray, rate: int) -> float:
    """Median pitch (Hz) over the loudest half of 40 ms frames."""
    import torchaudio.functional as AF

    x = torch.as_tensor(audio, dtype=torch.float32)
    pitch = AF.detect_pitch_frequency(x, rate, frame_time=0.04, freq_low=60).numpy()
    frame = len(x) // max(len(pitch), 1)
    energy = np.array([np.mean(audio[i * frame:(i + 1) * frame] ** 2)
                       for i in range(len(pitch))])
    voiced = (energy >= np.median(energy)) & (pitch > 60) & (pitch < 400)
    return float(np.median(pitch[voiced])) if voiced.any() else float("nan")


def gender_of(utterance, audio: np.ndarray, rate: int) -> tuple[str, str]:
    """('female'|'male', 'name'|'f0') for one test utterance."""
    if utterance.gender:
        return utterance.gender, "name"
    return ("female" if median_f0(audio, rate) > FEMALE_F0_HZ else "male"), "f0"


def test_mixtures(utterances, rate: int, seconds: float, per_cell: int, seed: int):
    """``[(mixture, references, info)]`` over every speaker pair and overlap ratio."""
    from sigformer.data.mixtures import AudioPool, make_mixture

    pool = AudioPool(utterances, rate)
    audio = [pool.get(i) for i in range(len(utterances))]
    genders = [gender_of(u, a, rate) for u, a in zip(utterances, audio)]
    rng = np.random.default_rng(seed)
    length = int(seconds * rate)
    items = []
    for i, j in itertools.combinations(range(len(utterances)), 2):
        if utterances[i].speaker == utterances[j].speaker:
            continue
        pair = "".join(sorted(genders[k][0][0].upper() for k in (i, j)))
        for overlap in OVERLAPS:
            for _ in range(per_cell):
                srcs = []
                for k in (i, j):
                    x = audio[k]
                    start = int(rng.integers(0, max(len(x) - length, 0) + 1))
                    srcs.append(x[start:start + length])
                mix, refs, _ = make_mixture(srcs, overlap=overlap,
                                            level_db=[0.0, float(rng.uniform(-2.5, 2.5))])
                items.append((mix, refs, {"speakers": [utterances[i].speaker,
                                                       utterances[j].speaker],
                                          "overlap": overlap, "gender_pair": pair}))
    return items, {u.speaker: {"gender": g, "from": how}
                   for u, (g, how) in zip(utterances, genders)}


def separate_like_cli(bundle, mixture: np.ndarray, rate: int) -> np.ndarray:
    """The bundle's sources for one mono mixture, chunked as ``sigformer separate`` does."""
    from sigformer.speech.chunked import model_function, process_array

    extra = bundle.extra
    fn = model_function(bundle.model.eval())
    return process_array(fn, mixture[None], int(extra.get("chunk_s", 4.0) * rate),
                         int(extra.get("overlap_s", 0.5) * rate), align=True)


def long_mixture(utterances, rate: int, seconds: float) -> np.ndarray:
    """Two different talkers, each tiled to ``seconds``, summed: a long file for the RTF."""
    from sigformer.data.mixtures import AudioPool

    first = utterances[0]
    second = next(u for u in utterances if u.speaker != first.speaker)
    pool = AudioPool([first, second], rate)
    n = int(seconds * rate)
    return sum(np.resize(pool.get(i), n) for i in range(2)).astype(np.float32)


def cli_real_time_factor(model_name: str, mixture: np.ndarray, rate: int) -> dict:
    """Wall time of ``sigformer separate`` (the streaming runtime) on one file."""
    from sigformer.cli import main as cli_main
    from sigformer.speech.audio import write_audio

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mix.wav"
        write_audio(path, mixture, rate)
        t0 = time.perf_counter()
        code = cli_main(["separate", str(path), "--model", model_name, "--out",
                         str(Path(tmp) / "o")])
        wall = time.perf_counter() - t0
        if code != 0 or len(list((Path(tmp) / "o").glob("*.wav"))) != 2:
            raise SystemExit(f"sigformer separate failed (exit {code}): no RTF to report")
    seconds = len(mixture) / rate
    return {"seconds": seconds, "wall_s": round(wall, 2), "rtf": round(wall / seconds, 3)}


def summarise(rows: list[dict], key: str) -> dict:
    groups: dict = {}
    for r in rows:
        groups.setdefault(str(r["info"][key]), []).append(r)
    return {g: {"n": len(rs),
                **{m: float(np.mean([r[m] for r in rs])) for m in ("si_sdri", "si_sdr")},
                "min_si_sdri": float(min(r["si_sdri"] for r in rs))}
            for g, rs in sorted(groups.items())}


def test_role_rows(rows: list[dict], roles: dict[str, str]) -> list[dict]:
    """The rows of mixtures whose speakers are all test-role (no training decision used any
    of them)."""
    return [r for r in rows if all(roles[k] == "test" for k in r["info"]["speakers"])]


def assess(rows: list[dict]) -> dict | None:
    """The issue-16 target lines on the model's ``rows`` (None when there are none): mean
    SI-SDRi >= 6 dB, and above the mixture (SI-SDRi > 0) on every class among these rows (each
    overlap ratio and each gender pair), with the figures they were judged on."""
    if not rows:
        return None
    classes = {f"overlap {k}": v for k, v in summarise(rows, "overlap").items()}
    classes.update({f"gender pair {k}": v for k, v in summarise(rows, "gender_pair").items()})
    mean = float(np.mean([r["si_sdri"] for r in rows]))
    below = [name for name, v in classes.items() if not v["si_sdri"] > 0]  # NaN counts below
    return {"n": len(rows), "si_sdri": mean,
            "min_si_sdri": float(min(r["si_sdri"] for r in rows)),
            "classes": {name: {"n": v["n"], "si_sdri": v["si_sdri"]}
                        for name, v in classes.items()},
            "classes_below_mixture": below,
            "met": {"si_sdri_ge_6db": mean >= 6.0, "never_below_mixture_per_class": not below}}


def headline_targets(block: dict | None, rtf: dict | None) -> dict:
    """The JSON's flat ``targets`` (what model cards read): the test-role verdicts, None for
    each when ``block`` is None (not evaluated), and the RTF verdict when it was measured."""
    targets = {name: (block["met"][name] if block else None) for name in TARGETS}
    if rtf is not None:
        targets["rtf_lt_0.5"] = rtf["rtf"] < 0.5
    return targets


def not_evaluated_note(roles: dict[str, str]) -> str:
    """Why the headline could not be judged: fewer than two test-role speakers."""
    test = sorted(s for s, role in roles.items() if role == "test")
    return (f"only {len(test)} test-role speaker{'' if len(test) == 1 else 's'} among the "
            f"unheard ones ({', '.join(test) or 'none'}) and a mixture of test-role speakers "
            f"needs two; the figures on every unheard mixture include validation-role "
            f"speakers, which steered training decisions")


def print_targets(title: str, block: dict | None, note: str | None = None) -> None:
    if block is None:
        print(f"{title}: NOT EVALUATED" + (f": {note}" if note else ""))
        return
    worst = min(block["classes"].items(), key=lambda kv: kv[1]["si_sdri"])
    print(f"{title}: {block['n']} mixtures, SI-SDRi {block['si_sdri']:+.2f} dB, worst class "
          f"{worst[0]} {worst[1]['si_sdri']:+.2f} dB")
    for name, met in block["met"].items():
        print(f"  target {name}: {'MET' if met else 'NOT MET'}")


def load_bundle(spec: str):
    """The separation bundle for ``--model`` and its training record (files it heard)."""
    from sigformer.bundle import Bundle

    bundle = Bundle.load(spec)
    if bundle.task != "separate":
        raise SystemExit(f"{spec} is a {bundle.task!r} bundle, not a separation one")
    training = bundle.extra.get("training", {})
    if not training.get("files"):
        raise SystemExit(f"{spec} records no training files (extra.training.files): "
                         f"cannot tell which speakers it heard; package it with "
                         f"scripts/package_speech.py")
    return bundle, training


def score_systems(systems: dict, items: list, roles: dict[str, str], rate: int,
                  perceptual: bool) -> tuple[dict, dict]:
    """``(results, rows)``: each system's summary over every unheard mixture (with its mean
    on the test-role ones) and its per-mixture rows."""
    from sigformer.speech.metrics import evaluate_separation

    results, all_rows = {}, {}
    for name, run in systems.items():
        rows = []
        for mix, refs, info in items:
            with torch.inference_mode():
                scores = evaluate_separation(run(mix, refs), refs, mix, rate,
                                             perceptual=perceptual)
            rows.append({**scores, "info": info})
        untouched = test_role_rows(rows, roles)
        results[name] = {"mean": {k: float(np.mean([r[k] for r in rows]))
                                  for k in rows[0] if k != "info"},
                         "min_si_sdri": float(min(r["si_sdri"] for r in rows)),
                         "by_overlap": summarise(rows, "overlap"),
                         "by_gender_pair": summarise(rows, "gender_pair"),
                         "test_role_only": {  # speakers no training decision ever saw
                             "n": len(untouched),
                             "si_sdri": float(np.mean([r["si_sdri"] for r in untouched]))
                             if untouched else None}}
        all_rows[name] = rows
    return results, all_rows


def print_table(results: dict) -> None:
    print(f"{'system':32s} {'SI-SDRi':>8s} {'worst':>7s} " +
          " ".join(f"{'ov ' + str(o):>7s}" for o in OVERLAPS) + f" {'test-role':>9s}")
    for name, r in results.items():
        by, only = r["by_overlap"], r["test_role_only"]["si_sdri"]
        print(f"{name[:32]:32s} {r['mean']['si_sdri']:8.2f} {r['min_si_sdri']:7.2f} " +
              " ".join(f"{by[str(o)]['si_sdri']:7.2f}" for o in OVERLAPS) +
              (f" {'-':>9s}" if only is None else f" {only:9.2f}"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True,
                    help="separation bundle (catalogue name or folder, e.g. one written by "
                         "scripts/package_speech.py)")
    ap.add_argument("--data", default=str(SPEECH))
    ap.add_argument("--per-cell", type=int, default=4, help="mixtures per speaker pair and "
                                                            "overlap ratio")
    ap.add_argument("--seconds", type=float, default=3.0, help="length of each source segment")
    ap.add_argument("--perceptual", action="store_true", help="also PESQ / STOI (slower)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--quick", action="store_true", help="one mixture per cell, no RTF run")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" /
                                         "speech_pretrained.json"))
    args = ap.parse_args(argv)
    if not Path(args.data).is_dir():
        print(f"no speech data at {args.data}: nothing to evaluate on")
        return 1
    torch.set_num_threads(args.threads)
    from sigformer.data.mixtures import list_speech, unheard_utterances
    from sigformer.speech.metrics import oracle_masks

    bundle, training = load_bundle(args.model)
    rate = int(bundle.input_spec.sfreq)
    test, roles = unheard_utterances(list_speech(args.data)[0], training["files"], args.data)
    if len(roles) < 2:
        raise SystemExit(f"fewer than two speakers in {args.data} were not heard in training: "
                         f"nothing fair to test on")
    per_cell = 1 if args.quick else args.per_cell
    items, genders = test_mixtures(test, rate, args.seconds, per_cell, args.seed)
    for speaker, info in genders.items():
        info["role"] = roles[speaker]
    systems = {
        "mixture (floor)": lambda m, r: np.stack([m] * len(r)),
        args.model: lambda m, r: separate_like_cli(bundle, m, rate),
        "oracle IRM (ceiling)": lambda m, r: oracle_masks(m, r),
        "oracle IBM (ceiling)": lambda m, r: oracle_masks(m, r, binary=True),
    }
    results, rows = score_systems(systems, items, roles, rate, args.perceptual)
    # the headline: test-role speakers only (validation-role ones steered the schedule and,
    # for -best, picked the checkpoint); every unheard mixture beside it
    headline = assess(test_role_rows(rows[args.model], roles))
    everything = assess(rows[args.model])
    note = None if headline else not_evaluated_note(roles)
    rtf = None
    if not args.quick:
        rtf = cli_real_time_factor(args.model, long_mixture(test, rate, 30.0), rate)
    targets = headline_targets(headline, rtf)

    print(f"{len(items)} test mixtures of speakers the model never heard at {rate} Hz:")
    for speaker, info in genders.items():
        print(f"  {speaker}: {info['gender']} (from {info['from']}), {info['role']} speaker")
    print()
    print_table(results)
    model_row = results[args.model]
    print("\nby gender pair (SI-SDRi):", {k: round(v["si_sdri"], 2)
                                         for k, v in model_row["by_gender_pair"].items()})
    print_targets("issue-16 targets on mixtures of test-role speakers only (never used for any "
                  "training decision)", headline, note)
    print_targets("the same on every unheard mixture (validation-role speakers included: they "
                  "steered the schedule and, for -best, picked the checkpoint)", everything)
    if rtf is not None:
        print(f"sigformer separate on {rtf['seconds']:.0f} s: {rtf['wall_s']} s wall, "
              f"RTF {rtf['rtf']} ({args.threads} threads)")
        print(f"  target rtf_lt_0.5: {'MET' if targets['rtf_lt_0.5'] else 'NOT MET'}")
    report = {"model": args.model, "sample_rate": rate, "n_mixtures": len(items),
              "seconds_per_source": args.seconds, "overlaps": list(OVERLAPS),
              "test_speakers": genders, "results": results, "rtf": rtf,
              "targets": targets, "targets_on": "test-role speakers" if headline else
              "not evaluated", "targets_note": note, "targets_test_role": headline,
              "targets_all_unheard": everything,
              "threads": args.threads, "machine": platform.machine(), "quick": args.quick,
              "bundle_training": training}
    from sigformer.atomic import atomic_write_json

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, report)  # never a half-written report
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
