"""Inference throughput: items/s of the reference path vs the fast paths, batch 1 and 64.

All seven models: DBConformer, TFM tokenizer (``encode``), Du-IN, MossFormer (``small``),
DeFTAN-II (``small``), AdaFortiTran (``small``, also at batch 256) and ClST. Eval mode under
``torch.inference_mode``. Variants: ``reference``, ``fast`` (same function: fused
projections, TFM's ``set_fast``), ``fast-bf16`` (``fast`` under bf16 autocast; the largest
output difference to the reference is recorded) and, with ``--compile``, ``compiled``.

Threads pinned (``--threads``, 2), variants alternated in one process, median of repeats.
Writes ``benchmarks/results/inference.json``.

    python benchmarks/inference.py [--quick] [--models clst,duin] [--compile]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from _table import save_results
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

from sigformer.models import create_model
from sigformer.nn import set_fast_path


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
        for batch in INFERENCE_CASES[name].batch_sizes:
            if args.quick:
                batch = min(batch, 8)
            key = f"{name} b{batch}"
            if key in results:
                continue
            results[key] = bench_case(name, variants, batch, repeats, calls)
            print(f"{key}: " + ", ".join(f"{v} {r:.1f}" for v, r in
                                         results[key]["items_per_s"].items()), flush=True)
    print_rates(results, "items_per_s", "inference throughput (median of repeats)")
    print("\nlargest |output - reference| per variant:")
    for key, row in results.items():
        diffs = ", ".join(f"{v} {d:.1e}" for v, d in row["max_abs_diff_to_reference"].items()
                          if v != "reference")
        print(f"  {key:26s} {diffs} (output scale {row['reference_output_scale']:.2g})")
    save_results(args.out, results, quick=args.quick, threads=args.threads)


if __name__ == "__main__":
    main()
