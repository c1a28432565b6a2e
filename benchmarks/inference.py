"""Inference throughput: items/s of the reference path vs the fast paths, batch 1 and 64.

All seven models: DBConformer, TFM tokenizer (``encode``), Du-IN, MossFormer (``small``),
DeFTAN-II (``small``), AdaFortiTran (``small``, also at batch 256) and ClST. Eval mode under
``torch.inference_mode``. Variants: ``reference``, ``fast`` (same function: fused
projections, the models' own ``set_fast`` - TFM, AdaFortiTran's chunked batches), ``fast-bf16`` (``fast`` under bf16 autocast; the largest
output difference to the reference is recorded), with ``--compile``, ``compiled`` and, with
``--onnxruntime``, ``onnxruntime``: the reference model exported once per model by
``sigformer.export.export_model`` (the CLI's wrappers and parity check; export time recorded)
and run by an ONNX Runtime session on the same threads, sequentially, numpy in.

Threads pinned (``--threads``, 2), variants alternated in one process, median of repeats.
AdaFortiTran is reported next to the sample LMMSE estimator (the classical baseline of
``sigformer.rf.channel_estimation``, timed in the same run on the same number of threads) with
issue 13's target: >= 5,000 slots/s at batch 256. Writes ``benchmarks/results/inference.json``.

``--device cuda``: models and inputs on the GPU, each timed repeat closed by
``torch.cuda.synchronize()``, bf16 autocast on CUDA, threads not pinned (the sample LMMSE
stays a numpy baseline on ``--threads`` CPU threads); the ONNX Runtime variant is skipped
(the benchmark opens CPU sessions). The JSON adds the GPU's name and CUDA/cuDNN versions.

    python benchmarks/inference.py [--quick] [--models clst,duin] [--batches 256] [--compile]
                                   [--onnxruntime] [--device cuda] [--out results.json]
"""

from __future__ import annotations

import argparse
import copy
import functools
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _table import print_table, save_results
from threadpoolctl import threadpool_limits
from training import (
    CASES,
    CPU,
    DEVICES,
    RESULTS,
    VARIANTS,
    Variant,
    device_meta,
    device_or_exit,
    pin_threads,
    print_rates,
    set_model_fast,
    synchronize,
    to_device,
)

from sigformer.data.ofdm import simulate_ofdm
from sigformer.export import export_model, onnx_session
from sigformer.models import create_model
from sigformer.nn import set_fast_path
from sigformer.recipes.precision import bf16_autocast
from sigformer.rf.channel_estimation import SampleLMMSE

OFDM_CASE = "adafortitran-small"
OFDM_TARGET = (256, 5000.0)  # issue 13: batch, slots/s


@dataclass
class InferenceCase:
    build: Callable[[], torch.nn.Module]
    inputs: Callable[[int, torch.Generator], tuple]
    unit: str
    batch_sizes: tuple[int, ...] = (1, 64)
    # the module sigformer.export knows (its deployable wrapper), for the ONNX Runtime variant
    deploy: Callable[[torch.nn.Module], torch.nn.Module] = lambda model: model


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
    # (B, 1, N): one channel, what the exported encoder path takes (encode flattens channels)
    "tfm-tokenizer": InferenceCase(lambda: _Encode(create_model("tfm_tokenizer")),
                                   lambda n, g: (torch.randn(n, 1, 1000, generator=g),),
                                   "5 s windows", deploy=lambda model: model.tokenizer),
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


@dataclass
class OnnxModel:
    """An exported model in an ONNX Runtime session; ``output`` is the exported output compared
    with the benchmark's: the first one (the tokenizer's ids; the only one for other models)."""

    session: Any  # onnxruntime.InferenceSession
    input_names: list[str]
    output: str
    export_s: float
    exporter: str  # which ONNX exporter wrote the graph, and its opset

    def feed(self, inputs: tuple) -> dict[str, np.ndarray]:
        """Complex inputs go in as real/imag pairs, the layout of the export wrappers."""
        return {name: (torch.view_as_real(t) if t.is_complex() else t).numpy()
                for name, t in zip(self.input_names, inputs)}

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run([self.output], feed)[0]


class OnnxRuntime:
    """The ``onnxruntime`` variant: each model's reference path exported once into ``folder``
    (at batch 2; the batch axis is dynamic and checked by the export) and opened with
    ``threads`` intra-op threads and one inter-op thread, like the torch variants. A failed
    export is kept and reported for every batch of that model, not retried."""

    def __init__(self, folder: Path, threads: int):
        self.folder, self.threads = folder, threads
        self._models: dict[str, OnnxModel | Exception] = {}

    def load(self, name: str, init: torch.nn.Module) -> OnnxModel:
        if name not in self._models:
            try:
                self._models[name] = self._export(name, init)
            except Exception as error:  # reported as the variant's error
                self._models[name] = error
        found = self._models[name]
        if isinstance(found, Exception):
            raise found
        return found

    def _export(self, name: str, init: torch.nn.Module) -> OnnxModel:
        case = INFERENCE_CASES[name]
        model = copy.deepcopy(init)
        set_model_fast(model, False)
        set_fast_path(VARIANTS["reference"].switches)
        example = case.inputs(2, torch.Generator().manual_seed(1))
        start = time.perf_counter()
        # fixed time axis: the benchmark feeds one length (and the export skips a second check)
        result = export_model(case.deploy(model), example, self.folder / name, "onnx",
                              dynamic_time=False)
        export_s = time.perf_counter() - start
        session = onnx_session(result["files"][0], self.threads)
        return OnnxModel(session, [i["name"] for i in result["inputs"]],
                         result["outputs"][0]["name"], export_s,
                         f"{result['exporter']}, opset {result['opset']}")


def bench_case(name: str, variants: dict[str, Variant], batch: int, repeats: int,
               calls: int, onnxruntime: OnnxRuntime | None = None,
               device: torch.device = CPU) -> dict:
    case = INFERENCE_CASES[name]
    torch.manual_seed(0)
    init = case.build().eval()
    # made on the CPU from the seeded generator (same data on every device), then moved
    inputs = to_device(case.inputs(batch, torch.Generator().manual_seed(0)), device)
    runners: dict[str, Callable[[], Any]] = {}
    outputs, compile_s, export_s, errors, exporter = {}, {}, {}, {}, None
    for v, variant in variants.items():
        model = copy.deepcopy(init).to(device)
        set_model_fast(model, variant.model_fast)
        model = torch.compile(model) if variant.compile else model
        runner = functools.partial(run, model, variant, inputs)
        start = time.perf_counter()
        try:
            outputs[v] = _as_float(runner())  # warm-up, compile
            synchronize(device)  # a kernel's failure surfaces here, and compile_s is the work
        except Exception as error:  # a variant that fails is reported, not fatal
            errors[v] = f"{type(error).__name__}: {error}"[:300]
            continue
        runners[v] = runner
        if variant.compile:
            compile_s[v] = time.perf_counter() - start
    if onnxruntime is not None and device.type != "cpu":
        raise ValueError("the onnxruntime variant runs CPU sessions: pass onnxruntime=None "
                         f"on {device.type}")
    if onnxruntime is not None:
        try:
            onnx = onnxruntime.load(name, init)
            runner = functools.partial(onnx.run, onnx.feed(inputs))
            out = _as_float(torch.from_numpy(runner()))  # warm-up
            ref = outputs.get("reference", out)
            if out.shape != ref.shape:  # a wrong output mapping, not a rounding difference
                raise ValueError(f"exported output {onnx.output!r} has shape "
                                 f"{tuple(out.shape)}, the reference {tuple(ref.shape)}")
            outputs["onnxruntime"] = out
            runners["onnxruntime"], export_s["onnxruntime"] = runner, onnx.export_s
            exporter = onnx.exporter
        except Exception as error:  # a failed export is reported, not fatal
            errors["onnxruntime"] = f"{type(error).__name__}: {error}"[:300]
    rates: dict[str, list[float]] = {v: [] for v in runners}
    for r in range(repeats):
        order = list(runners) if r % 2 == 0 else list(reversed(runners))
        for v in order:
            synchronize(device)
            start = time.perf_counter()
            for _ in range(calls):
                runners[v]()
            synchronize(device)
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
        "export_s": export_s,
        "onnx_exporter": exporter,
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
    device_type = inputs[0].device.type  # autocast for where the inputs (and model) live
    try:
        with torch.inference_mode(), bf16_autocast(variant.bf16, device_type):
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
    parser.add_argument("--onnxruntime", action="store_true",
                        help="add an ONNX Runtime variant (the reference model exported once "
                             "per model to a temporary folder)")
    parser.add_argument("--device", choices=DEVICES, default="cpu",
                        help="where models and inputs live (cuda: timed with synchronize, "
                             "threads not pinned, no onnxruntime variant, GPU name in the JSON)")
    parser.add_argument("--out", type=Path, default=RESULTS / "inference.json")
    args = parser.parse_args()
    device = device_or_exit(parser, args.device)
    if device.type == "cpu":  # on a GPU the CPU only launches kernels: leave its threads be
        pin_threads(args.threads)
    if args.onnxruntime and device.type != "cpu":
        print(f"--onnxruntime skipped on --device {device.type}: the variant runs ONNX Runtime's "
              "CPU sessions, which would not compare like with like", flush=True)
        args.onnxruntime = False
    variants = {v: VARIANTS[v] for v in ("reference", "fast", "fast-bf16")}
    if args.compile:
        variants["compiled"] = Variant(VARIANTS["fast"].switches, True, compile=True)
    repeats, calls = (2, 1) if args.quick else (args.repeats, args.calls)
    with tempfile.TemporaryDirectory(prefix="sigformer-ort-") as folder:
        onnxruntime = OnnxRuntime(Path(folder), args.threads) if args.onnxruntime else None
        results = bench_all(args, variants, repeats, calls, onnxruntime, device)
    report(results)
    save_results(args.out, results, quick=args.quick, threads=args.threads, **device_meta(device))


def bench_all(args: argparse.Namespace, variants: dict[str, Variant], repeats: int,
              calls: int, onnxruntime: OnnxRuntime | None, device: torch.device = CPU) -> dict:
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
            results[key] = bench_case(name, variants, batch, repeats, calls, onnxruntime,
                                      device)
            if name == OFDM_CASE:
                lmmse = bench_sample_lmmse(batch, repeats, calls, args.threads)
                results[key]["sample_lmmse_slots_per_s"] = float(np.median(lmmse))
                results[key]["sample_lmmse_all_repeats"] = lmmse
            print(f"{key}: " + ", ".join(f"{v} {r:.1f}" for v, r in
                                         results[key]["items_per_s"].items()), flush=True)
    return results


def report(results: dict) -> None:
    print_rates(results, "items_per_s", "inference throughput (median of repeats)")
    print("\nlargest |output - reference| per variant:")
    for key, row in results.items():
        diffs = ", ".join(f"{v} {d:.1e}" for v, d in row["max_abs_diff_to_reference"].items()
                          if v != "reference")
        print(f"  {key:26s} {diffs} (output scale {row['reference_output_scale']:.2g})")
        for v, seconds in row["export_s"].items():
            print(f"  {'':26s} {v} export (with its parity check) {seconds:.1f} s, "
                  f"ONNX exporter: {row['onnx_exporter']}")
        for v, error in row["errors"].items():
            print(f"  {'':26s} {v} FAILED: {error}")
    print_ofdm_comparison(results)


if __name__ == "__main__":
    main()
