"""Speech: real-time factor and peak memory against audio length, whole-file vs streaming,
and separation quality after a fixed short CPU training budget.

Part 1 (``--part speed``): for each length (1 to 60 s) and mode, a fresh subprocess loads the
model, runs inference and reports wall time and its peak RSS growth over the loaded model:
whole-file inference (one forward pass over the whole signal, as the official code does)
against sigformer's streaming path (:class:`~sigformer.speech.chunked.ChunkedProcessor`, 4 s
chunks with 0.5 s overlap, speaker order aligned). Target: streaming peak memory flat
(within 10%) from 10 s to 60 s.

Part 2 (``--part quality``): (a) tiny MossFormer trained for a fixed number of steps on
dynamic mixtures of the training speakers of ``../shared/data/speech`` (speaker-disjoint
splits, :func:`~sigformer.data.mixtures.speaker_splits`; synthetic voices if absent),
evaluated on mixtures of the held-out test speakers against the input mixture (floor) and
the oracle ideal ratio / binary masks (ceilings). The peer is asteroid's ConvTasNet, trained
on the same mixtures for the same steps in a separate virtual environment
(``--asteroid-python``, default ``/tmp/asteroid_env/bin/python``; reported as unavailable,
with the reason, when that interpreter or asteroid is missing).
(b) DeFTAN-II (small) trained for a fixed budget with the PCM loss on simulated noisy
reverberant 4-mic scenes, against the unprocessed reference microphone and every beamformer.

Part 3 (``--part beamformers``): every classical beamformer (delay-and-sum with GCC-PHAT /
true / SRP-PHAT DOA, Souden and RTF MVDR with oracle and VAD statistics, MVDR steered at the
true DOA, the former GEV MVDR) on simulated reverberant scenes of test speakers, with
SI-SDR / PESQ / STOI against the direct-path target.

    python benchmarks/speech.py [--part speed|quality|beamformers|all] [--quick]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

warnings.filterwarnings("ignore", message=".*does not have many workers.*")
REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO.parent / "shared" / "data" / "speech"
CLEAN = SPEECH / "clean"
ASTEROID_PYTHON = "/tmp/asteroid_env/bin/python"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


MODELS = {"mossformer": (8000, 1), "deftan2": (16000, 4)}  # rate, input channels


def _measure(args: tuple) -> dict:
    """In a fresh process: peak RSS growth and wall time of one inference run."""
    name, preset, mode, seconds, threads = args
    rate, channels = MODELS[name]
    torch.set_num_threads(threads)
    from sigformer.models import create_model
    from sigformer.speech.chunked import model_function, process_array

    model = create_model(name, preset).eval()
    fn = model_function(model, multichannel=name == "deftan2")
    fn(np.zeros((channels, rate), np.float32))  # warm-up at 1 s
    x = np.random.default_rng(0).standard_normal((channels, int(seconds * rate))).astype(
        np.float32)
    base = _rss_mb()
    t0 = time.perf_counter()
    if mode == "whole":
        out = fn(x)
    else:
        out = process_array(fn, x, int(4.0 * rate), int(0.5 * rate), align=True)
    wall = time.perf_counter() - t0
    assert out.shape[1] == x.shape[1]
    return {"model": name, "mode": mode, "seconds": seconds, "wall_s": wall,
            "rtf": wall / seconds, "peak_rss_growth_mb": _rss_mb() - base}


def speed(args, name: str) -> dict:
    ctx = mp.get_context("spawn")
    rows = []
    for seconds in args.lengths:
        for mode in ("whole", "streaming"):
            with ctx.Pool(1) as pool:
                row = pool.apply(_measure, ((name, args.preset, mode, seconds, args.threads),))
            rows.append(row)
            print(f"  {name} {mode:9s} {seconds:5.0f} s: RTF {row['rtf']:.3f}, peak RSS +"
                  f"{row['peak_rss_growth_mb']:.0f} MB", flush=True)
    print(f"\n{'length (s)':>10s} {'whole RTF':>10s} {'stream RTF':>11s} {'whole +MB':>10s} "
          f"{'stream +MB':>11s}")
    by = {(r["mode"], r["seconds"]): r for r in rows}
    for s in args.lengths:
        w, st = by[("whole", s)], by[("streaming", s)]
        print(f"{s:10.0f} {w['rtf']:10.3f} {st['rtf']:11.3f} {w['peak_rss_growth_mb']:10.0f} "
              f"{st['peak_rss_growth_mb']:11.0f}")
    flat = None
    if 10 in args.lengths and max(args.lengths) >= 60:
        m10 = by[("streaming", 10)]["peak_rss_growth_mb"]
        m60 = by[("streaming", max(args.lengths))]["peak_rss_growth_mb"]
        flat = m60 <= 1.1 * max(m10, 1.0)
        print(f"\nstreaming peak memory 10 s -> {max(args.lengths):.0f} s: {m10:.0f} -> "
              f"{m60:.0f} MB ({'MET' if flat else 'MISS'} target: within 10%)")
    return {"rows": rows, "streaming_memory_flat": flat}


def asteroid_worker(data_path: str, out_path: str) -> None:
    """Run inside the asteroid virtual environment (numpy + torch + asteroid only): train
    ConvTasNet on the saved training mixtures with negative PIT SI-SDR for the same steps and
    batch size, and write its estimates of the test mixtures."""
    from asteroid.losses import PITLossWrapper, pairwise_neg_sisdr
    from asteroid.models import ConvTasNet

    torch.set_num_threads(2)
    torch.manual_seed(0)
    data = np.load(data_path)
    model = ConvTasNet(n_src=2, n_blocks=4, n_repeats=2, bn_chan=64, hid_chan=128,
                       skip_chan=64, sample_rate=8000)
    loss_fn = PITLossWrapper(pairwise_neg_sisdr, pit_from="pw_mtx")
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(int(data["steps"])):
        idx = rng.choice(len(data["train_mix"]), int(data["batch"]))
        loss = loss_fn(model(torch.tensor(data["train_mix"][idx])),
                       torch.tensor(data["train_refs"][idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        est = np.stack([model(torch.tensor(m)[None])[0].numpy() for m in data["test_mix"]])
    np.savez(out_path, estimates=est, train_seconds=time.perf_counter() - t0,
             n_params=sum(p.numel() for p in model.parameters()))


def run_asteroid_peer(python: str, train_mix, train_refs, test_mix, steps: int, batch: int
                      ) -> tuple[np.ndarray | None, str]:
    """ConvTasNet from the asteroid venv on the same data; ``(estimates, note)``."""
    if not Path(python).is_file():
        return None, (f"asteroid unavailable: no interpreter at {python} (create it with "
                      f"`python -m venv /tmp/asteroid_env && /tmp/asteroid_env/bin/pip install "
                      f"asteroid requests`)")
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "data.npz", Path(tmp) / "out.npz"
        np.savez(data, train_mix=train_mix, train_refs=train_refs, test_mix=test_mix,
                 steps=steps, batch=batch)
        done = subprocess.run([python, __file__, "--asteroid-worker", str(data), str(out)],
                              capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            return None, f"asteroid failed: {done.stderr.strip().splitlines()[-1][:200]}"
        result = np.load(out)
        return result["estimates"], (f"asteroid ConvTasNet ({int(result['n_params']):,} "
                                     f"parameters), {steps} steps in "
                                     f"{float(result['train_seconds']):.0f} s")


def quality(args) -> dict:
    from sigformer.data.mixtures import make_mixture, synthetic_voices
    from sigformer.models import create_model
    from sigformer.speech.chunked import model_function, process_array
    from sigformer.speech.metrics import evaluate_separation, oracle_masks, pit_loss

    rate, length = 8000, int(args.seconds * 8000)
    if SPEECH.is_dir():
        from sigformer.data.mixtures import AudioPool, list_speech, speaker_splits

        splits = speaker_splits(list_speech(SPEECH)[0])

        def pool_of(items):
            pool = AudioPool(items, rate)
            return [x for x in (pool.get(i) for i in range(len(pool))) if len(x) > length]

        train_pool, test_pool = pool_of(splits["train"]), pool_of(splits["test"])
        source = (f"{SPEECH}: {len({u.speaker for u in splits['train']})} training speakers, "
                  f"test speakers {sorted({u.speaker for u in splits['test']})}")
    else:
        train_pool = synthetic_voices(6, 8.0, rate, 0)
        test_pool = synthetic_voices(6, 3.0, rate, 1)
        source = "synthetic voices"
    rng = np.random.default_rng(0)

    def draw(pool, n):
        mixes, refs = [], []
        for _ in range(n):
            i, j = rng.choice(len(pool), 2, replace=False)
            srcs = []
            for k in (i, j):
                start = int(rng.integers(0, len(pool[k]) - length))
                srcs.append(pool[k][start:start + length])
            mix, ref, _ = make_mixture(srcs, overlap=1.0,
                                       level_db=[0.0, float(rng.uniform(-2.5, 2.5))])
            mixes.append(mix)
            refs.append(ref)
        return np.stack(mixes), np.stack(refs)

    train_mix, train_refs = draw(train_pool, args.n_train)
    test_mix, test_refs = draw(test_pool, args.n_test)
    torch.manual_seed(0)
    model = create_model("mossformer", "tiny", dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    t0 = time.perf_counter()
    for step in range(args.steps):
        idx = rng.choice(len(train_mix), 4)
        loss = pit_loss(model(torch.tensor(train_mix[idx])), torch.tensor(train_refs[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            print(f"  step {step}: train SI-SNR {-loss.item():.2f} dB", flush=True)
    train_s = time.perf_counter() - t0
    fn = model_function(model)
    peer_est, peer = run_asteroid_peer(args.asteroid_python, train_mix, train_refs, test_mix,
                                       args.steps, 4)
    systems = {"mixture (floor)": lambda i, m, r: np.stack([m, m]),
               "MossFormer tiny": lambda i, m, r: process_array(fn, m[None], 4 * rate,
                                                                rate // 2, align=True),
               "oracle IRM (ceiling)": lambda i, m, r: oracle_masks(m, r),
               "oracle IBM (ceiling)": lambda i, m, r: oracle_masks(m, r, binary=True)}
    if peer_est is not None:
        systems["asteroid ConvTasNet"] = lambda i, m, r: peer_est[i]
    results = {}
    for name, run in systems.items():
        rows = [evaluate_separation(run(i, m, r), r, m, rate)
                for i, (m, r) in enumerate(zip(test_mix, test_refs))]
        results[name] = {k: float(np.mean([row[k] for row in rows])) for k in rows[0]}
    print(f"\npeer: {peer}")
    print(f"\n{'system':22s} {'SI-SDR':>8s} {'SI-SDRi':>8s} {'SDR':>7s} {'PESQ':>6s} {'STOI':>6s}")
    for name, r in results.items():
        print(f"{name:22s} {r['si_sdr']:8.2f} {r['si_sdri']:8.2f} {r['sdr']:7.2f} "
              f"{r['pesq']:6.2f} {r['stoi']:6.3f}")
    return {"data": source, "steps": args.steps, "train_seconds": round(train_s, 1),
            "n_test": args.n_test, "results": results, "peer": peer}


def enhancement(args) -> dict:
    """DeFTAN-II (small) vs unprocessed, delay-and-sum and MVDR on simulated noisy reverberant
    4-mic scenes built from the real speakers and noise (the enhancement pipeline)."""
    from sigformer.pipeline import load_config
    from sigformer.speech.pipeline import run_enhancement_pipeline

    noise = CLEAN.parent / "noise"
    cfg = load_config({"name": "bench_enhance", "task": "enhance", "enhance": {
        "clean_dir": str(CLEAN) if CLEAN.is_dir() else None,
        "noise_dir": str(noise) if noise.is_dir() else None,
        "n_train": args.enh_train, "n_test": args.n_test, "seconds": 2.0,
        "max_epochs": args.enh_epochs, "preset": "small"},
        "output": {"save_model": False}})
    report = run_enhancement_pipeline(cfg, REPO / "runs" / "bench_enhance",
                                      log=lambda m: print(m, flush=True))
    return {k: report[k] for k in ("results", "n_parameters", "n_train", "n_test", "seconds")}


def beamformers(args) -> dict:
    """Every classical beamformer on simulated reverberant scenes (test speakers, real
    noise), SI-SDR / PESQ / STOI against the direct-path target at microphone 0."""
    from sigformer.data.mixtures import list_speech, speaker_splits, synthetic_voices
    from sigformer.data.room import EnhancementScenes, SceneConfig, simulate_scene
    from sigformer.speech.metrics import pesq_score, si_sdr, stoi_score
    from sigformer.speech.pipeline import beamformer_systems

    rate = 16000
    rng = np.random.default_rng(0)
    config = SceneConfig(n_mics=args.n_mics, snr_db=(0.0, 10.0))
    if SPEECH.is_dir():
        speech, noises = list_speech(SPEECH)
        scenes_ds = EnhancementScenes(speaker_splits(speech)["test"], noises, config,
                                      args.seconds_enh, seed=1)
        scenes = [scenes_ds.draw(rng) for _ in range(args.n_scenes)]
    else:
        voices = synthetic_voices(args.n_scenes, args.seconds_enh, rate, 0)
        scenes = [simulate_scene(v, rng.standard_normal(len(v)).astype(np.float32), config,
                                 seed=i) for i, v in enumerate(voices)]
    systems = {"unprocessed (mic 0)": lambda sc: sc.mixture[0], **beamformer_systems(rate)}
    results = {}
    for name, run in systems.items():
        rows = []
        for sc in scenes:
            est, t = run(sc), sc.target[0]
            rows.append({"si_sdr": float(si_sdr(est, t)),
                         "pesq": pesq_score(estimate=est, reference=t, sample_rate=rate),
                         "stoi": stoi_score(estimate=est, reference=t, sample_rate=rate)})
        results[name] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        print(f"  {name:32s} SI-SDR {results[name]['si_sdr']:6.2f}  PESQ "
              f"{results[name]['pesq']:.2f}  STOI {results[name]['stoi']:.3f}", flush=True)
    return {"n_scenes": len(scenes), "n_mics": args.n_mics,
            "rt60": [sc.info["rt60"] for sc in scenes],
            "snr_db": [sc.info["snr_db"] for sc in scenes], "results": results}


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--asteroid-worker":
        asteroid_worker(sys.argv[2], sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("speed", "quality", "beamformers", "all"),
                    default="all")
    ap.add_argument("--quick", action="store_true",
                    help="tiny budgets (smoke run): short lengths, few steps and scenes")
    ap.add_argument("--n-scenes", type=int, default=12, help="scenes (beamformer part)")
    ap.add_argument("--n-mics", type=int, default=4, help="microphones (beamformer part)")
    ap.add_argument("--seconds-enh", type=float, default=4.0, help="scene length (s)")
    ap.add_argument("--asteroid-python", default=ASTEROID_PYTHON,
                    help="interpreter of a virtual environment with asteroid installed")
    ap.add_argument("--preset", default="small", help="MossFormer preset for the speed part")
    ap.add_argument("--lengths", type=float, nargs="+", default=[1, 5, 10, 30, 60])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=600, help="training steps (quality part)")
    ap.add_argument("--seconds", type=float, default=2.0, help="mixture length (quality)")
    ap.add_argument("--n-train", type=int, default=200)
    ap.add_argument("--n-test", type=int, default=10)
    ap.add_argument("--enh-train", type=int, default=48, help="training scenes (enhancement)")
    ap.add_argument("--enh-epochs", type=int, default=8)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "speech.json"))
    args = ap.parse_args()
    if args.quick:
        args.lengths, args.steps, args.n_train, args.n_test = [1, 5], 20, 16, 2
        args.enh_train, args.enh_epochs, args.n_scenes = 4, 1, 2
    torch.set_num_threads(args.threads)
    report = {"args": vars(args), "machine": platform.machine()}
    if args.part in ("speed", "all"):
        report["speed"] = {}
        for name in MODELS:
            print(f"\n{name} ({args.preset}) inference, whole file vs streaming:")
            report["speed"][name] = speed(args, name)
    if args.part in ("quality", "all"):
        print("\nseparation quality after a fixed CPU budget:")
        report["quality"] = quality(args)
        print("\nenhancement quality after a fixed CPU budget (simulated 4-mic scenes):")
        report["enhancement"] = enhancement(args)
    if args.part in ("beamformers", "all"):
        print(f"\nbeamformers on simulated reverberant {args.n_mics}-mic scenes:")
        report["beamformers"] = beamformers(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
