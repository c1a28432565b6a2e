"""GPU check: the reference and fast paths of the seven models, and sigformer's Lightning
training, run on one device and compared - one script, so a short GPU loan is spent measuring.

For each model (the throughput benchmarks' cases: AdaFortiTran ``small``, ClST, MossFormer
``small``, DeFTAN-II ``small``, TFM tokenizer, DBConformer, Du-IN):

* **training**: a few AdamW steps on the reference path and on the fast path from the same
  initial weights and batches, every dropout off (module dropouts ``p = 0``, attention dropout
  off through :class:`~sigformer.nn.FastPath`) and the same seed before each, so both compute
  the same function: loss per step (finite), the largest loss difference relative to the
  losses, the first step's gradients compared tensor by tensor, and the reference run twice
  (the device's own run-to-run spread, e.g. atomics in cuDNN backward kernels);
* **eval**: the inference benchmark's inputs through both paths, largest absolute output
  difference (for the TFM tokenizer's ids: the fraction that differ).

Then one :func:`sigformer.training.train_classifier` fit of a tiny ClST with Lightning's
``accelerator`` set from the device, checking where the batches actually ran.

On CUDA the comparison runs in IEEE fp32 (TF32 off for matmuls and cuDNN convolutions): TF32
rounds inputs to 10 mantissa bits, which would turn the paths' float-rounding differences into
~1e-3 ones and hide a real mismatch in that noise. A failure in one model is recorded and the
next one runs; the JSON (``--out``) is rewritten after every model, so a run cut short still
leaves its results. Exit status 1 if any check failed.

    python benchmarks/gpu_check.py --device cuda [--models clst,duin] [--out gpu_check.json]
    python benchmarks/gpu_check.py --list-buildable   # models whose packages import here
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import platform
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from _table import print_table
from inference import INFERENCE_CASES, InferenceCase, _as_float, _difference, run
from torch import nn
from training import (
    CASES,
    DEVICES,
    RESULTS,
    VARIANTS,
    Case,
    _classes,
    _cross_entropy,
    device_meta,
    device_or_exit,
    set_model_fast,
    synchronize,
    to_device,
)

from sigformer.nn import REFERENCE, FastPath, set_fast_path

# the inference benchmark's seven models; Du-IN is not in the training benchmark: its case is
# the classifier's own task (61 words, cross-entropy), as the other classifiers'
MODELS = ("adafortitran-small", "clst", "mossformer-small", "deftan2-small", "tfm-tokenizer",
          "dbconformer", "duin")
DUIN_TRAINING = Case(INFERENCE_CASES["duin"].build, _classes(10, 3000, 61), _cross_entropy, 8,
                     "3 s trials")
# the two paths with every dropout off: they must then compute the same function
REFERENCE_NO_DROPOUT = FastPath(fused_projections=False, attention_dropout=False)
FAST_NO_DROPOUT = FastPath(fused_projections=True, attention_dropout=False)
LR = 1e-4  # the training benchmark's

# fp32 tolerances (float rounding, reduction order; a wrong kernel is orders above these)
LOSS_RTOL = 1e-4  # max |loss difference| / max |reference loss|, over the steps
GRAD_RTOL = 1e-3  # per tensor: max |grad difference| / max(its max |grad|, GRAD_FLOOR x max)
GRAD_FLOOR = 1e-2  # a tensor whose gradient is ~0 (a bias before a norm) holds rounding noise
EVAL_RTOL = 1e-4  # max |output difference| / max |reference output|
ID_TOLERANCE = 0.01  # token ids: fraction that may flip (nearest-code ties move with rounding)


@dataclass
class CheckCase:
    """One model: its training case (``training.CASES``) and its inference case."""

    training: Case
    inference: InferenceCase


def check_cases() -> dict[str, CheckCase]:
    return {name: CheckCase(CASES.get(name, DUIN_TRAINING), INFERENCE_CASES[name])
            for name in MODELS}


# --- helpers --------------------------------------------------------------------------------
def without_dropout(model: nn.Module) -> nn.Module:
    """Every dropout module at ``p = 0`` (attention dropout is the FastPath switch's)."""
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.p = 0.0
    return model


@contextlib.contextmanager
def ieee_fp32(device: torch.device) -> Iterator[dict]:
    """IEEE fp32 for CUDA matmuls and cuDNN convolutions while the comparison runs (restored
    after); yields the precisions in force. Uses torch's per-backend ``fp32_precision`` API
    only: mixing it with the legacy ``allow_tf32`` flags raises on reading them."""
    backends = {"matmul": torch.backends.cuda.matmul,
                "cudnn_conv": getattr(torch.backends.cudnn, "conv", None)}
    backends = {k: b for k, b in backends.items() if hasattr(b, "fp32_precision")}
    if len(backends) < 2:  # torch before 2.9: the legacy flags are the only ones
        with legacy_ieee_fp32(device) as precision:
            yield precision
        return
    before = {k: b.fp32_precision for k, b in backends.items()}
    if device.type == "cuda":
        for b in backends.values():
            b.fp32_precision = "ieee"
    try:
        yield {k: b.fp32_precision for k, b in backends.items()}
    finally:
        for k, b in backends.items():
            b.fp32_precision = before[k]


@contextlib.contextmanager
def legacy_ieee_fp32(device: torch.device) -> Iterator[dict]:
    """:func:`ieee_fp32` through the ``allow_tf32`` flags (torch < 2.9)."""
    flags = (torch.backends.cuda.matmul, torch.backends.cudnn)
    before = [f.allow_tf32 for f in flags]
    if device.type == "cuda":
        for f in flags:
            f.allow_tf32 = False
    try:
        yield {k: "tf32" if f.allow_tf32 else "ieee" for k, f in zip(("matmul", "cudnn_conv"),
                                                                    flags)}
    finally:
        for f, value in zip(flags, before):
            f.allow_tf32 = value


def finite(values: list[float]) -> bool:
    return all(math.isfinite(v) for v in values)


def relative(difference: float, scale: float) -> float:
    return difference / scale if scale > 0 else (0.0 if difference == 0 else math.inf)


# --- (a) training steps ----------------------------------------------------------------------
def train_steps(case: Case, init: nn.Module, switches: FastPath, model_fast: bool,
                batches: list, device: torch.device, steps: int, seed: int = 0
                ) -> tuple[list[float], dict[str, torch.Tensor]]:
    """Losses of ``steps`` AdamW steps from a copy of ``init`` without dropout, and the first
    step's gradients (CPU copies)."""
    model = without_dropout(copy.deepcopy(init)).to(device).train()
    set_model_fast(model, model_fast)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    torch.manual_seed(seed)  # any other draw (TFM's masks, VQ restarts) alike on both paths
    losses, grads = [], {}
    for i in range(steps):
        inputs, target = batches[i % len(batches)]
        set_fast_path(switches)
        try:
            loss = case.loss(model(*inputs), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        finally:
            set_fast_path(REFERENCE)
        if i == 0:
            grads = {n: p.grad.detach().float().cpu() for n, p in model.named_parameters()
                     if p.grad is not None}
        optimizer.step()
        losses.append(loss.detach())
    synchronize(device)
    return [float(v) for v in losses], grads


def compare_grads(fast: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> dict:
    """Worst per-tensor gradient difference, relative to that tensor's largest gradient (or to
    ``GRAD_FLOOR`` of the overall largest, for tensors whose gradient is ~0 in exact arithmetic
    and holds only rounding noise: a bias followed by a normalisation)."""
    if set(fast) != set(ref):
        missing = sorted(set(ref) ^ set(fast))[:5]
        return {"max_rel_diff": math.inf, "worst": f"gradients on different tensors: {missing}"}
    overall = max((float(g.abs().max()) for g in ref.values() if g.numel()), default=0.0)
    rels = {name: relative(float((fast[name] - g).abs().max()),
                           max(float(g.abs().max()), GRAD_FLOOR * overall))
            for name, g in ref.items() if g.numel()}
    # NaN ranks worst (a comparison with NaN is always False, max() would skip it)
    worst = max(rels, key=lambda k: math.inf if math.isnan(rels[k]) else rels[k], default=None)
    return {"max_rel_diff": rels[worst] if worst else 0.0, "worst": worst,
            "largest_grad": overall}


def check_training(case: Case, device: torch.device, steps: int, batch_size: int) -> dict:
    torch.manual_seed(0)
    init = case.build()
    g = torch.Generator().manual_seed(0)
    n = min(batch_size, case.batch_size)
    batches = [to_device(case.batch(n, g), device) for _ in range(2)]
    ref, ref_grads = train_steps(case, init, REFERENCE_NO_DROPOUT, False, batches, device,
                                 steps)
    again, _ = train_steps(case, init, REFERENCE_NO_DROPOUT, False, batches, device, steps)
    fast, fast_grads = train_steps(case, init, FAST_NO_DROPOUT, True, batches, device, steps)
    scale = max(abs(v) for v in ref)
    diff = max(abs(a - b) for a, b in zip(fast, ref))
    grads = compare_grads(fast_grads, ref_grads)
    failures = []
    if not finite(ref + fast):
        failures.append("non-finite loss")
    if not relative(diff, scale) <= LOSS_RTOL:
        failures.append(f"fast-path losses differ by {diff:.3g} (> {LOSS_RTOL:g} x {scale:.3g})")
    if not grads["max_rel_diff"] <= GRAD_RTOL:
        failures.append(f"fast-path gradient of {grads['worst']} differs by "
                        f"{grads['max_rel_diff']:.3g} of its scale (> {GRAD_RTOL:g})")
    return {
        "batch_size": n, "steps": steps, "lr": LR,
        "parameters": sum(p.numel() for p in init.parameters() if p.requires_grad),
        "loss_reference": ref, "loss_fast": fast, "loss_reference_repeat": again,
        "max_abs_loss_diff": diff, "max_rel_loss_diff": relative(diff, scale),
        "reference_repeat_max_abs_loss_diff": max(abs(a - b) for a, b in zip(again, ref)),
        "grad_max_rel_diff": grads["max_rel_diff"], "grad_worst_tensor": grads["worst"],
        "failures": failures,
    }


# --- (b) eval outputs ------------------------------------------------------------------------
def check_eval(case: InferenceCase, device: torch.device, batch_size: int) -> dict:
    torch.manual_seed(0)
    init = case.build().eval()
    inputs = to_device(case.inputs(batch_size, torch.Generator().manual_seed(0)), device)
    outputs = {}
    for v in ("reference", "fast"):
        model = copy.deepcopy(init).to(device)
        set_model_fast(model, VARIANTS[v].model_fast)
        outputs[v] = _as_float(run(model, VARIANTS[v], inputs))
    synchronize(device)
    ref = outputs["reference"]
    ids = not ref.is_floating_point()
    diff = _difference(outputs["fast"], ref)
    scale = float(ref.float().abs().max())
    failures = []
    if not ids and not all(bool(torch.isfinite(o).all()) for o in outputs.values()):
        failures.append("non-finite output")
    if ids and not diff <= ID_TOLERANCE:
        failures.append(f"fast-path ids differ at a fraction {diff:.3g} (> {ID_TOLERANCE:g})")
    if not ids and not relative(diff, scale) <= EVAL_RTOL:
        failures.append(f"fast-path outputs differ by {diff:.3g} (> {EVAL_RTOL:g} x {scale:.3g})")
    return {"batch_size": batch_size, "output_shape": list(ref.shape),
            "output": "ids (difference: fraction that differ)" if ids else "float",
            "max_abs_diff": diff, "reference_output_scale": scale, "failures": failures}


def check_model(case: CheckCase, device: torch.device, steps: int, batch_size: int) -> dict:
    """Training and eval checks of one model; an exception is recorded, not raised."""
    start = time.perf_counter()
    row: dict = {}
    try:
        with ieee_fp32(device) as precision:
            row["fp32_precision"] = precision
            row["training"] = check_training(case.training, device, steps, batch_size)
            row["eval"] = check_eval(case.inference, device, batch_size)
        failures = row["training"]["failures"] + row["eval"]["failures"]
        row["status"] = "failed" if failures else "ok"
        row["error"] = "; ".join(failures) or None
    except Exception as error:  # the next model still runs
        row["status"] = "failed"
        row["error"] = f"{type(error).__name__}: {error}"[:500]
        row["traceback"] = traceback.format_exc()[-3000:]
        release_device(device)
    row["seconds"] = time.perf_counter() - start
    return row


def release_device(device: torch.device) -> None:
    """After a failure: free what the failed model held (a sticky CUDA error stays sticky)."""
    if device.type == "cuda":
        with contextlib.suppress(Exception):
            torch.cuda.synchronize(device)
        with contextlib.suppress(Exception):
            torch.cuda.empty_cache()


# --- (c) Lightning ---------------------------------------------------------------------------
class DeviceProbe(nn.Module):
    """Wraps a model and records the device type of every batch it sees: where Lightning ran."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.seen: set[str] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.add(x.device.type)
        return self.model(x)


def accelerator_for(device: torch.device) -> str:
    """Lightning's name for the device (``"gpu"`` picks CUDA on NVIDIA machines)."""
    return "gpu" if device.type == "cuda" else "cpu"


def check_lightning(device: torch.device, epochs: int = 2, n: int = 32) -> dict:
    """One :func:`sigformer.training.train_classifier` fit of a tiny ClST on ``device``: with
    its default seed (Lightning then runs deterministic algorithms) and, if that fails, once
    more unseeded, so a deterministic-only failure is told apart from a device failure."""
    from sigformer.models import create_model
    from sigformer.training import train_classifier

    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, 2, 128, generator=g).numpy()
    y = torch.randint(0, 11, (n,), generator=g).numpy()
    result: dict = {"function": "sigformer.training.train_classifier", "model": "clst tiny",
                    "accelerator": accelerator_for(device), "devices": 1, "epochs": epochs}
    for seed in (0, None):
        attempt = f"seed={seed}"
        torch.manual_seed(0)
        probe = DeviceProbe(create_model("clst", preset="tiny"))
        deterministic = torch.are_deterministic_algorithms_enabled()
        start = time.perf_counter()
        try:
            history = train_classifier(probe, X, y, max_epochs=epochs, batch_size=16, seed=seed,
                                       accelerator=accelerator_for(device), devices=1,
                                       progress_bar=False)
            losses = history.series("train_loss")
            result[attempt] = {
                "train_loss": losses, "batch_devices": sorted(probe.seen),
                "parameters_after_fit_on": next(probe.parameters()).device.type,
                "seconds": time.perf_counter() - start}
            failures = []
            if len(losses) != epochs or not finite(losses):
                failures.append(f"train_loss per epoch {losses} (expected {epochs} finite)")
            if probe.seen != {device.type}:
                failures.append(f"batches ran on {sorted(probe.seen)}, not {device.type}")
            result[attempt]["failures"] = failures
            result["status"] = "failed" if failures else "ok"
            result["error"] = "; ".join(failures) or None
            break
        except Exception as error:
            result[attempt] = {"error": f"{type(error).__name__}: {error}"[:800],
                               "traceback": traceback.format_exc()[-3000:],
                               "seconds": time.perf_counter() - start}
            result["status"], result["error"] = "failed", result[attempt]["error"]
            release_device(device)
        finally:  # Lightning's deterministic=True is process-wide: give the setting back
            torch.use_deterministic_algorithms(deterministic)
    return result


# --- the whole check -------------------------------------------------------------------------
def buildable(names: list[str], build: Callable[[str], nn.Module]) -> dict[str, str | None]:
    """For each model, ``None`` if it builds here, else why (e.g. a package not installed)."""
    found = {}
    for name in names:
        try:
            build(name)
            found[name] = None
        except ImportError as error:
            found[name] = f"{type(error).__name__}: {error}"
    return found


def environment(device: torch.device) -> dict:
    return {"device": device.type, "torch": torch.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version(), "machine": platform.machine(),
            **device_meta(device)}


def run_checks(device: torch.device, models: list[str], steps: int = 3, batch_size: int = 4,
               lightning: bool = True, out: Path | None = None,
               cases: dict[str, CheckCase] | None = None) -> dict:
    """Check every model, then Lightning; rewrite ``out`` after each so a cut-short run keeps
    what it did. Models whose packages are missing are ``skipped`` with the reason."""
    cases = check_cases() if cases is None else cases
    report: dict = {**environment(device),
                    "settings": {"steps": steps, "batch_size": batch_size, "lr": LR,
                                 "dropout": "off (modules p=0, attention dropout off)",
                                 "tolerances": {"loss_rtol": LOSS_RTOL, "grad_rtol": GRAD_RTOL,
                                                "grad_floor": GRAD_FLOOR,
                                                "eval_rtol": EVAL_RTOL,
                                                "id_fraction": ID_TOLERANCE}},
                    "models": {}, "lightning": None}
    missing = buildable(models, lambda name: cases[name].inference.build())
    for name in models:
        if missing[name]:
            row = {"status": "skipped", "error": missing[name]}
        else:
            row = check_model(cases[name], device, steps, batch_size)
        report["models"][name] = row
        print(f"{name}: {row['status']}" + (f" ({row['error']})" if row["error"] else ""),
              flush=True)
        save(out, report)
    if lightning:
        report["lightning"] = check_lightning(device)
        print(f"lightning: {report['lightning']['status']}", flush=True)
    report["failed"] = [n for n, r in report["models"].items() if r["status"] == "failed"]
    if report["lightning"] is not None and report["lightning"]["status"] != "ok":
        report["failed"].append("lightning")
    report["skipped"] = [n for n, r in report["models"].items() if r["status"] == "skipped"]
    save(out, report)
    return report


def save(out: Path | None, report: dict) -> None:
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1))


def print_report(report: dict) -> None:
    rows = []
    for name, row in report["models"].items():
        t, e = row.get("training", {}), row.get("eval", {})
        rows.append([name, row["status"],
                     " ".join(f"{v:.4g}" for v in t.get("loss_fast", [])) or "-",
                     f"{t['max_rel_loss_diff']:.1e}" if t else "-",
                     f"{t['reference_repeat_max_abs_loss_diff']:.1e}" if t else "-",
                     f"{t['grad_max_rel_diff']:.1e}" if t else "-",
                     f"{e['max_abs_diff']:.1e}" if e else "-",
                     f"{row['seconds']:.1f}" if "seconds" in row else "-"])
    print(f"\nGPU check on {report.get('device_name', report['device'])} (torch "
          f"{report['torch']}, CUDA {report['cuda']})")
    print_table(["model", "status", "fast-path losses", "loss rel. diff", "ref repeat diff",
                 "grad rel. diff", "eval max |diff|", "s"], rows)
    for name, row in report["models"].items():
        if row["error"]:
            print(f"  {name}: {row['error']}")
    lightning = report["lightning"]
    if lightning is not None:
        print(f"\nLightning ({lightning['function']}, accelerator={lightning['accelerator']!r}):"
              f" {lightning['status']}" + (f" - {lightning['error']}" if lightning["error"]
                                           else ""))
        for attempt in ("seed=0", "seed=None"):
            if attempt in lightning and "train_loss" in lightning[attempt]:
                a = lightning[attempt]
                print(f"  {attempt}: train_loss {a['train_loss']}, batches on "
                      f"{a['batch_devices']}, {a['seconds']:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=DEVICES, default="cpu")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--steps", type=int, default=3, help="training steps per path")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--no-lightning", action="store_true",
                        help="skip the Lightning fit")
    parser.add_argument("--list-buildable", action="store_true",
                        help="print 'training=...' and 'inference=...': the benchmark models "
                             "whose packages import here (for --models), 'check=...': this "
                             "script's, and exit")
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu_check.json")
    args = parser.parse_args()
    if args.list_buildable:
        print_buildable()
        return
    models = args.models.split(",")
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"unknown --models {unknown}; expected some of {list(MODELS)}")
    if args.steps < 1 or args.batch_size < 1:
        parser.error("--steps and --batch-size must be >= 1")
    device = device_or_exit(parser, args.device)
    report = run_checks(device, models, args.steps, args.batch_size, not args.no_lightning,
                        args.out)
    print_report(report)
    print(f"wrote {args.out}")
    if report["skipped"]:
        print(f"skipped (not checked, packages missing here): {report['skipped']}")
    if report["failed"]:
        print(f"FAILED: {report['failed']}")
        sys.exit(1)


def print_buildable() -> None:
    """One line per benchmark: the models whose build imports here (the rest are reported on
    stderr with the missing package), so a shell can pass them to ``--models``; and
    ``check=``: every model this script checks (it reports an unbuildable one as skipped)."""
    print("check=" + ",".join(MODELS))
    for bench, build in (("training", lambda n: CASES[n].build()),
                         ("inference", lambda n: INFERENCE_CASES[n].build())):
        names = list(CASES if bench == "training" else INFERENCE_CASES)
        found = buildable(names, build)
        for name, why in found.items():
            if why:
                print(f"{bench}: {name} not buildable here: {why}", file=sys.stderr)
        print(f"{bench}=" + ",".join(n for n, why in found.items() if why is None))


if __name__ == "__main__":
    main()
