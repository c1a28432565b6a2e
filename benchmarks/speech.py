"""Speech: real-time factor and peak memory against audio length, whole-file vs streaming,
and separation quality after a fixed short CPU training budget.

Part 1 (``--part speed``): for each length (1 to 60 s) and mode, a fresh subprocess loads the
model, runs inference and reports wall time and its peak RSS growth over the loaded model:
whole-file inference (one forward pass over the whole signal, as the official code does)
against sigformer's streaming path (:class:`~sigformer.speech.chunked.ChunkedProcessor`, 4 s
chunks with 0.5 s overlap, speaker order aligned). Target: streaming peak memory flat
(within 10%) from 10 s to 60 s.

Part 2 (``--part quality``): (a) tiny MossFormer trained for a fixed number of steps on
mixtures of the real clean speakers in ``../shared/data/speech/clean`` (synthetic voices if
absent), evaluated on held-out mixtures against the input mixture (floor) and the oracle ideal
ratio mask (ceiling). Peer separation models (asteroid ConvTasNet / DPRNN) are tried and
reported as unavailable when asteroid does not import with this torch/torchaudio pair.
(b) DeFTAN-II (small) trained for a fixed budget with the PCM loss on simulated noisy
reverberant 4-mic scenes built from the real speakers and noise, against the unprocessed
reference microphone, delay-and-sum and MVDR (oracle noise statistics).

    python benchmarks/speech.py [--part speed|quality|all] [--preset small] [--lengths 1 10 30 60]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import time
import warnings
from pathlib import Path

import numpy as np
import torch

warnings.filterwarnings("ignore", message=".*does not have many workers.*")
REPO = Path(__file__).resolve().parents[1]
CLEAN = REPO.parent / "shared" / "data" / "speech" / "clean"


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


def _oracle_irm(mix: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """Ideal ratio mask in the STFT domain (the ceiling of mask-based separation)."""
    from scipy.signal import istft, stft

    _, _, m = stft(mix, nperseg=256, noverlap=192)
    specs = [stft(r, nperseg=256, noverlap=192)[2] for r in refs]
    total = sum(np.abs(s) for s in specs) + 1e-8
    out = [istft(np.abs(s) / total * m, nperseg=256, noverlap=192)[1][:len(mix)] for s in specs]
    return np.stack(out)


def quality(args) -> dict:
    from sigformer.data.mixtures import load_utterances, make_mixture, synthetic_voices
    from sigformer.models import create_model
    from sigformer.speech.chunked import model_function, process_array
    from sigformer.speech.metrics import evaluate_separation, pit_loss

    rate, length = 8000, int(args.seconds * 8000)
    if CLEAN.is_dir():
        utts = load_utterances(CLEAN, rate)
        names = sorted(utts)
        train_pool = [utts[n][: len(utts[n]) * 7 // 10] for n in names]
        test_pool = [utts[n][len(utts[n]) * 7 // 10:] for n in names]
        source = str(CLEAN)
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
    systems = {"mixture (floor)": lambda m, r: np.stack([m, m]),
               "MossFormer tiny": lambda m, r: process_array(fn, m[None], 4 * rate, rate // 2,
                                                             align=True),
               "oracle IRM (ceiling)": _oracle_irm}
    results = {}
    for name, run in systems.items():
        rows = [evaluate_separation(run(m, r), r, m, rate) for m, r in zip(test_mix, test_refs)]
        results[name] = {k: float(np.mean([row[k] for row in rows])) for k in rows[0]}
    try:
        import asteroid  # noqa: F401

        peer = "asteroid imports; peers not yet wired into this benchmark"
    except Exception as err:  # noqa: BLE001 - any import failure means no peer
        peer = f"asteroid unavailable: {type(err).__name__}: {str(err)[:120]}"
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("speed", "quality", "all"), default="all")
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
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
