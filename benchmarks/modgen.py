"""Throughput of the realistic modulation generator, and training frames/s of an AMR model.

Generation: frames of 128 IQ samples per second with every impairment family on (the eleven
RML2016 classes, SNR uniform -20..30 dB), in one process and in ``--processes`` worker
processes (one per core: numpy's work here is single-threaded), plus one process per
impairment family switched off. Training (``--train-model``): frames/s of the on-the-fly
trainer (generation + forward + backward + AdamW) at ``--threads`` torch threads, so long
trainings can be budgeted.

    python benchmarks/modgen.py [--frames 40000] [--processes 2]
                                [--train-model clst --train-steps 6 --threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _generate(args: tuple[int, int, tuple[str, ...] | None]) -> int:
    from sigformer.data.modgen import ModGenConfig, generate_frames

    n, seed, impairments = args
    cfg = ModGenConfig() if impairments is None else ModGenConfig(impairments=impairments)
    return len(generate_frames(n, config=cfg, seed=seed).y)


def generation_rate(frames: int, processes: int, impairments=None, chunk: int = 5000) -> float:
    jobs = [(min(chunk, frames - i), i, impairments) for i in range(0, frames, chunk)]
    _generate((200, 0, impairments))  # warm-up (imports, caches)
    t0 = time.perf_counter()
    if processes == 1:
        done = sum(_generate(j) for j in jobs)
    else:
        with ProcessPoolExecutor(processes) as pool:
            done = sum(pool.map(_generate, jobs))
    return done / (time.perf_counter() - t0)


def training_rate(model_name: str, steps: int, batch_size: int, threads: int) -> float:
    import torch

    from sigformer.data.modgen import RML2016_CLASSES
    from sigformer.models import create_model
    from sigformer.recipes.amr import GeneratedFrames, StreamRecipe, fit_stream

    torch.set_num_threads(threads)
    model = create_model(model_name)
    recipe = StreamRecipe(epochs=1, frames_per_epoch=steps * batch_size, batch_size=batch_size)
    stream = GeneratedFrames(RML2016_CLASSES, batch_size=batch_size)
    history = fit_stream(model, stream, recipe, log=lambda _line: None, log_every=0)
    return history.epochs[-1]["frames_per_s"]


def main() -> None:
    from sigformer.data.modgen import IMPAIRMENTS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40_000)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--per-family", action="store_true", help="also time each family off")
    ap.add_argument("--train-model", default=None, help="e.g. clst, kd_cnn (default: skip)")
    ap.add_argument("--train-steps", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "modgen.json"))
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    result = {"machine": platform.machine(), "cpus": os.cpu_count(),
              "load_average": os.getloadavg(), "frames": args.frames}
    cpu0 = time.process_time()
    result["frames_per_s_1_process"] = generation_rate(args.frames, 1)
    # frames per CPU-second: what one free core delivers, even on a busy machine
    result["frames_per_cpu_s"] = args.frames / (time.process_time() - cpu0)
    print(f"all impairments, 1 process: {result['frames_per_s_1_process']:,.0f} frames/s "
          f"wall, {result['frames_per_cpu_s']:,.0f} frames per CPU-second")
    if args.processes > 1:
        key = f"frames_per_s_{args.processes}_processes"
        result[key] = generation_rate(args.frames, args.processes)
        print(f"all impairments, {args.processes} processes: {result[key]:,.0f} frames/s")
    if args.per_family:
        for family in IMPAIRMENTS:
            rate = generation_rate(args.frames // 2, 1,
                                   tuple(f for f in IMPAIRMENTS if f != family))
            result[f"without_{family}"] = rate
            print(f"  without {family:13s} {rate:,.0f} frames/s")
    if args.train_model:
        rate = training_rate(args.train_model, args.train_steps, args.batch_size, args.threads)
        result[f"train_{args.train_model}_frames_per_s_{args.threads}_threads"] = rate
        print(f"training {args.train_model} on the fly, {args.threads} threads: {rate:,.1f} "
              f"frames/s")
    print(f"load average during the run: {os.getloadavg()}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
