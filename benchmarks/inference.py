"""Inference throughput: items/s of the reference path vs the fast paths, batch 1 and 64.

All seven models: DBConformer, TFM tokenizer (``encode``), Du-IN, MossFormer (``small``),
DeFTAN-II (``small``), AdaFortiTran (``small``, also at batch 256) and ClST. Eval mode under
``torch.inference_mode``. Variants: ``reference``, ``fast`` (same function: fused
projections, the models' own ``set_fast`` - TFM, AdaFortiTran's chunked batches), ``fast-bf16`` (``fast`` under bf16 autocast; the largest
output difference to the reference is recorded) and, with ``--compile``, ``compiled``.

Threads pinned (``--threads``, 2), variants alternated in one process, median of repeats.
AdaFortiTran is reported next to the sample LMMSE estimator (the classical baseline of
``sigformer.rf.channel_estimation``, timed in the same run on the same number of threads) with
issue 13's target: >= 5,000 slots/s at batch 256. Writes ``benchmarks/results/inference.json``.

    python benchmarks/inference.py [--quick] [--models clst,duin] [--batches 256] [--compile]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from _table import print_table, save_results
from threadpoolctl import threadpool_limits
from training import (
    CASES,
    RESULTS,
    VARIANTS,
    Variant,
    autocast,
    pin_threads,
    print_rates,
    set_model_fast,
)

from sigformer.data.ofdm import simulate_ofdm
from sigformer.models import create_model
from sigformer.nn import set_fast_path
from sigformer.rf.channel_estimation import SampleLMMSE

OFDM_CASE = "adafortitran-small"
OFDM_TARGET = (256, 5000.0)  # issue 13: batch, slots/s


@dataclass
class InferenceCase:
    build: Callable[[], torch.nn.Module]
    inputs: Callable[[int, torch.Generator], tuple]
    unit: str
    batch_sizes: tuple[int, ...] = (1, 64)


class _Encode(torch.nn.Module):
    """The tokenizer's inference entry point, ``encode``, as a forward returning the ids."""

    def __init__(self, tokenizer: torch.nn.Module):
        super().__init__()
        self.tokenizer = tokenizer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tokenizer.encode(x).ids


def _from_training(name: str, **kwargs) -> InferenceCase:
    case = CASES[name]
    return InferenceCase(case.build, lambda n, g: case.batch(n, g)[0], case.unit, **kwargs)


INFERENCE_CASES: dict[str, InferenceCase] = {
    "dbconformer": _from_training("dbconformer"),
    "tfm-tokenizer": InferenceCase(lambda: _Encode(create_model("tfm_tokenizer")),
                                   lambda n, g: (torch.randn(n, 1000, generator=g),),
                                   "5 s windows"),
    "duin": InferenceCase(lambda: create_model("duin", preset="he2023"),
                          lambda n, g: (torch.randn(n, 10, 3000, generator=g),), "3 s trials"),
    "mossformer-small": _from_training("mossformer-small"),
    "deftan2-small": _from_training("deftan2-small"),
    "adafortitran-small": _from_training("adafortitran-small", batch_sizes=(1, 64, 256)),
    "clst": _from_training("clst"),
}


def _as_float(out) -> torch.Tensor:
    out = out[-1] if isinstance(out, tuple) else out
    out = torch.view_as_real(out) if out.is_complex() else out
    return out if not out.is_floating_point() else out.float()


def _difference(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Largest absolute difference; for integer outputs (token ids) the fraction that differ."""
    if not ref.is_floating_point():
        return float((out != ref).float().mean())
    return float((out - ref).abs().max())


def bench_case(name: str, variants: dict[str, Variant], batch: int, repeats: int,
               calls: int) -> dict:
    case = INFERENCE_CASES[name]
    torch.manual_seed(0)
    init = case.build().eval()
    inputs = case.inputs(batch, torch.Generator().manual_seed(0))
    models, outputs, compile_s, errors = {}, {}, {}, {}
    for v, variant in variants.items():
        model = copy.deepcopy(init)
        set_model_fast(model, variant.model_fast)
        model = torch.compile(model) if variant.compile else model
        start = time.perf_counter()
        try:
            outputs[v] = _as_float(run(model, variant, inputs))  # warm-up, compile
        except Exception as error:  # a variant that fails is reported, not fatal
            errors[v] = f"{type(error).__name__}: {error}"[:300]
            continue
        models[v] = model
        if variant.compile:
            compile_s[v] = time.perf_counter() - start
    variants = {v: variants[v] for v in models}
    rates: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(repeats):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for v in order:
            start = time.perf_counter()
            for _ in range(calls):
                run(models[v], variants[v], inputs)
            rates[v].append(calls * batch / (time.perf_counter() - start))
    medians = {v: statistics.median(rs) for v, rs in rates.items()}
    ref = outputs["reference"]
    return {
        "unit": f"{case.unit}/s", "batch_size": batch, "repeats": repeats,
        "calls_per_repeat": calls, "items_per_s": medians, "all_repeats": rates,
        "ratio_to_reference": {v: m / medians["reference"] for v, m in medians.items()},
        "max_abs_diff_to_reference": {v: _difference(o, ref) for v, o in outputs.items()},
        "reference_output_scale": float(ref.float().abs().max()),
        "compile_s": compile_s,
        "errors": errors,
    }


def bench_sample_lmmse(batch: int, repeats: int, calls: int, threads: int) -> list[float]:
    """Slots/s of :class:`SampleLMMSE` prediction on ``batch`` simulated slots (numpy BLAS held
    to ``threads``, like torch). Fitted on 1,024 slots: the filter's quality does not change
    its cost, one ``(P) x (P, K*L)`` product per slot."""
    with threadpool_limits(threads):
        estimator = SampleLMMSE().fit(simulate_ofdm(1024, seed=0))
        data = simulate_ofdm(batch, seed=1)
        estimator.predict(data)  # warm-up
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(calls):
                estimator.predict(data)
            rates.append(calls * batch / (time.perf_counter() - start))
    return rates


def print_ofdm_comparison(results: dict) -> None:
    """AdaFortiTran slots/s per variant next to the sample LMMSE, and the issue's target."""
    rows = {k: r for k, r in results.items() if "sample_lmmse_slots_per_s" in r}
    if not rows:
        return
    batch, target = OFDM_TARGET
    print(f"\n{OFDM_CASE} vs the sample LMMSE (slots/s, same run, same threads)")
    variants = list(next(iter(rows.values()))["items_per_s"])
    print_table(["batch", *variants, "sample LMMSE", *(f"{v}/LMMSE" for v in variants)],
                [[r["batch_size"], *(f"{r['items_per_s'][v]:,.0f}" for v in variants),
                  f"{r['sample_lmmse_slots_per_s']:,.0f}",
                  *(f"{r['items_per_s'][v] / r['sample_lmmse_slots_per_s']:.4f}"
                    for v in variants)] for r in rows.values()])
    row = next((r for r in rows.values() if r["batch_size"] == batch), None)
    if row is None:
        print(f"target >= {target:,.0f} slots/s at batch {batch}: not measured (run with "
              f"batch {batch}, e.g. --models {OFDM_CASE} --batches {batch})")
        return
    for v, rate in row["items_per_s"].items():
        status = "met" if rate >= target else "NOT met"
        print(f"target >= {target:,.0f} slots/s at batch {batch}, {v}: {status} "
              f"({rate:,.0f} slots/s)")


def run(model: torch.nn.Module, variant: Variant, inputs: tuple):
    set_fast_path(variant.switches)
    try:
        with torch.inference_mode(), autocast(variant.bf16):
            return model(*inputs)
    finally:
        set_fast_path(VARIANTS["reference"].switches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny run (2 repeats of 1 call, batch 1 and 8): checks it works")
    parser.add_argument("--models", default=",".join(INFERENCE_CASES))
    parser.add_argument("--batches", default=None,
                        help="comma-separated batch sizes for every model (default: each "
                             "model's own, e.g. 1,64,256 for AdaFortiTran)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="add a torch.compile variant")
    parser.add_argument("--out", type=Path, default=RESULTS / "inference.json")
    args = parser.parse_args()
    pin_threads(args.threads)
    variants = {v: VARIANTS[v] for v in ("reference", "fast", "fast-bf16")}
    if args.compile:
        variants["compiled"] = Variant(VARIANTS["fast"].switches, True, compile=True)
    repeats, calls = (2, 1) if args.quick else (args.repeats, args.calls)
    results = {}
    for name in args.models.split(","):
        batches = (INFERENCE_CASES[name].batch_sizes if args.batches is None else
                   tuple(int(b) for b in args.batches.split(",")))
        for batch in batches:
            if args.quick and args.batches is None:
                batch = min(batch, 8)
            key = f"{name} b{batch}"
            if key in results:
                continue
            results[key] = bench_case(name, variants, batch, repeats, calls)
            if name == OFDM_CASE:
                lmmse = bench_sample_lmmse(batch, repeats, calls, args.threads)
                results[key]["sample_lmmse_slots_per_s"] = float(np.median(lmmse))
                results[key]["sample_lmmse_all_repeats"] = lmmse
            print(f"{key}: " + ", ".join(f"{v} {r:.1f}" for v, r in
                                         results[key]["items_per_s"].items()), flush=True)
    print_rates(results, "items_per_s", "inference throughput (median of repeats)")
    print("\nlargest |output - reference| per variant:")
    for key, row in results.items():
        diffs = ", ".join(f"{v} {d:.1e}" for v, d in row["max_abs_diff_to_reference"].items()
                          if v != "reference")
        print(f"  {key:26s} {diffs} (output scale {row['reference_output_scale']:.2g})")
    print_ofdm_comparison(results)
    save_results(args.out, results, quick=args.quick, threads=args.threads)


if __name__ == "__main__":
    main()
