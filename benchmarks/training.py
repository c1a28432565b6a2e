"""Training throughput: samples/s of the reference path vs the fast paths, at equal configuration.

Models: AdaFortiTran (``small`` and ``paper``), ClST, MossFormer (``small``), DeFTAN-II
(``small``), TFM tokenizer (release size), DBConformer (``bnci2014001``). Each step is a forward,
a loss, a backward and an AdamW update on generated data (the data is made before timing).

Variants (``sigformer.nn.FastPath`` switches, plus the model's own where it has one):

* ``reference``: the published path (what the parity fixtures pin);
* ``fast``: switches that compute the same function (fused q/k/v projections, TFM's
  ``set_fast``); attention dropout kept;
* ``fast-noattn``: ``fast`` plus ``attention_dropout=False`` (a different regulariser: see
  ``docs/performance.md`` for its quality effect);
* ``fast-bf16``: ``fast`` under ``torch.autocast(device, torch.bfloat16)``;
* ``fast-noattn-bf16``: both of the above stacked (the fastest path a recipe can switch on);
* ``compiled`` (``--compile`` only): ``fast`` with ``torch.compile``; compile time reported;
  ``compiled-noattn-bf16`` stacks compile on ``fast-noattn-bf16``.

Threads are pinned (``--threads``, 2 by default, one inter-op thread); variants alternate in
one process, repeat after repeat, and the median of the repeats is reported, so load on the
(shared) machine hits every variant alike. Prints a table of samples/s and ratios to the
reference; writes ``benchmarks/results/training.json``.

``--device cuda``: models and batches on the GPU, timed regions closed by
``torch.cuda.synchronize()`` (kernels run asynchronously), threads left unpinned; the JSON
adds the GPU's name and the CUDA/cuDNN versions (a CPU run's JSON is unchanged).

    python benchmarks/training.py [--quick] [--models clst,dbconformer] [--compile]
                                  [--device cuda]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from _table import print_table, save_results

from sigformer.models import create_model
from sigformer.nn import FAST, REFERENCE, FastPath, set_fast_path
from sigformer.recipes.precision import bf16_autocast

RESULTS = Path(__file__).parent / "results"
NOATTN = FastPath(fused_projections=True, attention_dropout=False)
DEVICES = ("cpu", "cuda")
CPU = torch.device("cpu")


@dataclass
class Case:
    """A model, a batch maker ``(batch_size, generator) -> (inputs, target)`` and a loss."""

    build: Callable[[], torch.nn.Module]
    batch: Callable[[int, torch.Generator], tuple[tuple, torch.Tensor]]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    batch_size: int
    unit: str = "samples"


def _ofdm_batch(pilot_shape: tuple[int, int]):
    def make(n: int, g: torch.Generator):
        pilots = torch.complex(torch.randn(n, *pilot_shape, generator=g),
                               torch.randn(n, *pilot_shape, generator=g))
        stats = torch.rand(n, 3, generator=g) * torch.tensor([25.0, 275.0, 950.0])
        stats = stats + torch.tensor([0.0, 25.0, 50.0])
        target = torch.complex(torch.randn(n, 120, 14, generator=g),
                               torch.randn(n, 120, 14, generator=g))
        return (pilots, stats), target
    return make


def _complex_mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(torch.view_as_real(out).float(), torch.view_as_real(target))


def _classes(n_chans: int, n_times: int, n_classes: int):
    def make(n: int, g: torch.Generator):
        return ((torch.randn(n, n_chans, n_times, generator=g),),
                torch.randint(0, n_classes, (n,), generator=g))
    return make


def _waves(in_shape: tuple[int, ...], out_shape: tuple[int, ...]):
    def make(n: int, g: torch.Generator):
        return (torch.randn(n, *in_shape, generator=g),), torch.randn(n, *out_shape, generator=g)
    return make


def _cross_entropy(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out.float(), target)


def _mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(out.float(), target)


class _TokenizerLoss(torch.nn.Module):
    """TFM tokenizer pretraining step as a module: ``x -> reconstruction_loss(x)["loss"]``."""

    def __init__(self, tokenizer: torch.nn.Module):
        super().__init__()
        self.tokenizer = tokenizer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tokenizer.reconstruction_loss(x)["loss"]


def _tfm_tokenizer() -> torch.nn.Module:
    return _TokenizerLoss(create_model("tfm_tokenizer"))


CASES: dict[str, Case] = {
    "adafortitran-small": Case(lambda: create_model("adafortitran", preset="small"),
                               _ofdm_batch((40, 2)), _complex_mse, 64, "slots"),
    "adafortitran-paper": Case(lambda: create_model("adafortitran", preset="paper"),
                               _ofdm_batch((40, 2)), _complex_mse, 64, "slots"),
    "clst": Case(lambda: create_model("clst", preset="paper"), _classes(2, 128, 11),
                 _cross_entropy, 64, "frames"),
    "mossformer-small": Case(lambda: create_model("mossformer", preset="small"),
                             _waves((8000,), (2, 8000)), _mse, 4, "1 s mixtures"),
    "deftan2-small": Case(lambda: create_model("deftan2", preset="small"),
                          _waves((4, 16000), (1, 16000)), _mse, 4, "1 s clips"),
    "tfm-tokenizer": Case(_tfm_tokenizer, _waves((1000,), ()), lambda out, _: out, 64,
                          "5 s windows"),
    "dbconformer": Case(lambda: create_model("dbconformer", preset="bnci2014001"),
                        _classes(22, 1001, 2), _cross_entropy, 64, "trials"),
}


def set_model_fast(model: torch.nn.Module, fast: bool) -> None:
    """Models with their own fast switch (TFM) get it together with the shared one."""
    for module in model.modules():
        if hasattr(module, "set_fast") and module is not model:
            module.set_fast(fast)
            return
    if hasattr(model, "set_fast"):
        model.set_fast(fast)


@dataclass
class Variant:
    switches: FastPath
    model_fast: bool
    bf16: bool = False
    compile: bool = False


VARIANTS = {
    "reference": Variant(REFERENCE, False),
    "fast": Variant(FAST, True),
    "fast-noattn": Variant(NOATTN, True),
    "fast-bf16": Variant(FAST, True, bf16=True),
    "fast-noattn-bf16": Variant(NOATTN, True, bf16=True),
}


def pin_threads(threads: int) -> None:
    """Intra-op threads = the cores we may use; one inter-op thread, so two pools never
    compete for the same cores on a shared machine."""
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # already set once in this process
        torch.set_num_interop_threads(1)


def resolve_device(name: str) -> torch.device:
    """``"cpu"`` or ``"cuda"`` as a device, refusing CUDA up front when this torch cannot use it
    (rather than a failure deep inside the first ``.to()``); the training scripts' parser."""
    from sigformer.recipes.device import resolve_device as resolve

    if name not in DEVICES:
        raise ValueError(f"device must be one of {list(DEVICES)}, got {name!r}")
    try:
        return resolve(name)
    except ValueError as err:  # the callers report a missing CUDA as a RuntimeError
        raise RuntimeError(str(err)) from None


def device_meta(device: torch.device) -> dict:
    """Fields a GPU run adds to the results JSON (none on CPU: its JSON stays as it was)."""
    if device.type == "cpu":
        return {}
    return {"device": device.type, "device_name": torch.cuda.get_device_name(device),
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "threads_pinned": False, "fp32_precision": fp32_precision()}


def fp32_precision() -> dict[str, str | None]:
    """The float32 precision of CUDA matmuls and cuDNN convolutions (``"tf32"``: convolutions
    use TF32 by default on Ampere and later; ``"none"``: the global default, IEEE fp32).
    Read with torch's newer per-backend API only: reading the legacy ``allow_tf32`` flags
    after the new API set them raises."""
    backends = {"matmul": torch.backends.cuda.matmul,
                "cudnn_conv": getattr(torch.backends.cudnn, "conv", None)}
    return {k: getattr(b, "fp32_precision", None) for k, b in backends.items()}


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued kernels (CUDA runs asynchronously: a timer stopped without
    this measures the launches, not the work)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def to_device(tensors: tuple, device: torch.device) -> tuple:
    """A (nested) tuple of tensors moved to ``device``; on CPU the very same tensors."""
    return tuple(to_device(t, device) if isinstance(t, tuple) else t.to(device)
                 for t in tensors)


class Trainer:
    """One model copy per variant, trained step by step on the same pre-made batches."""

    def __init__(self, case: Case, variant: Variant, init: torch.nn.Module, batch_size: int,
                 device: torch.device = CPU):
        self.case, self.variant, self.batch_size, self.device = case, variant, batch_size, device
        self.model = copy.deepcopy(init).to(device).train()
        set_model_fast(self.model, variant.model_fast)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.forward = self.model
        self.compile_s = None
        if variant.compile:
            self.forward = torch.compile(self.model)
        g = torch.Generator().manual_seed(0)
        # made on the CPU from the seeded generator (same data on every device), then moved
        self.batches = [to_device(case.batch(batch_size, g), device) for _ in range(2)]
        self.losses: list[torch.Tensor] = []  # detached; read once at the end (no GPU sync)

    def step(self, i: int) -> None:
        inputs, target = self.batches[i % len(self.batches)]
        set_fast_path(self.variant.switches)
        try:
            with bf16_autocast(self.variant.bf16, self.device.type):
                loss = self.case.loss(self.forward(*inputs), target)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        finally:
            set_fast_path(REFERENCE)
        self.losses.append(loss.detach())

    def timed(self, steps: int) -> float:
        synchronize(self.device)
        start = time.perf_counter()
        for i in range(steps):
            self.step(i)
        synchronize(self.device)
        return steps * self.batch_size / (time.perf_counter() - start)


def bench_case(name: str, variants: dict[str, Variant], repeats: int, steps: int,
               batch_size: int | None, quick: bool = False, device: torch.device = CPU) -> dict:
    case = CASES[name]
    torch.manual_seed(0)
    init = case.build()
    n = batch_size or case.batch_size
    if quick:
        n = min(n, 8)
    trainers, errors = {}, {}
    for v, variant in variants.items():  # warm-up (and compilation) outside the timing
        trainer = Trainer(case, variant, init, n, device)
        start = time.perf_counter()
        try:
            trainer.step(0)
            synchronize(device)  # a kernel's failure surfaces here, and compile_s is the work
        except Exception as error:  # a variant that fails is reported, not fatal
            errors[v] = f"{type(error).__name__}: {error}"[:300]
            continue
        if variant.compile:
            trainer.compile_s = time.perf_counter() - start
        trainers[v] = trainer
    variants = {v: variants[v] for v in trainers}
    rates: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(repeats):
        order = list(trainers) if r % 2 == 0 else list(reversed(trainers))  # A/B alternation
        for v in order:
            rates[v].append(trainers[v].timed(steps))
    medians = {v: statistics.median(rs) for v, rs in rates.items()}
    ref = medians.get("reference")
    return {
        "unit": f"{case.unit}/s", "batch_size": n, "steps_per_repeat": steps,
        "repeats": repeats,
        "parameters": sum(p.numel() for p in init.parameters() if p.requires_grad),
        "samples_per_s": medians, "all_repeats": rates,
        "ratio_to_reference": {v: m / ref for v, m in medians.items()} if ref else {},
        "compile_s": {v: t.compile_s for v, t in trainers.items() if t.compile_s is not None},
        "last_loss": {v: float(t.losses[-1]) for v, t in trainers.items()},
        "errors": errors,
    }


def print_rates(results: dict[str, dict], rate_key: str, title: str) -> None:
    """Rate per variant and the ratio to the reference, one line per model."""
    variants = list(next(iter(results.values()))[rate_key])
    header = ["model", "unit", *variants, *(f"{v}/ref" for v in variants if v != "reference")]
    rows = [[name, row["unit"], *(f"{row[rate_key].get(v, float('nan')):.1f}" for v in variants),
             *(f"{row['ratio_to_reference'].get(v, float('nan')):.2f}" for v in variants
               if v != "reference")] for name, row in results.items()]
    print(f"\n{title}")
    print_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny run (batch <= 8, 2 repeats of 1 step): checks that it works")
    parser.add_argument("--models", default=",".join(CASES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--compile", action="store_true", help="add a torch.compile variant")
    parser.add_argument("--device", choices=DEVICES, default="cpu",
                        help="where models and batches live (cuda: timed with synchronize, "
                             "threads not pinned, GPU name in the JSON)")
    parser.add_argument("--out", type=Path, default=RESULTS / "training.json")
    args = parser.parse_args()
    device = device_or_exit(parser, args.device)
    if device.type == "cpu":  # on a GPU the CPU only launches kernels: leave its threads be
        pin_threads(args.threads)
    repeats, steps, batch = args.repeats, args.steps, args.batch_size
    if args.quick:
        repeats, steps = 2, 1
    variants = dict(VARIANTS)
    if args.compile:
        variants["compiled"] = Variant(FAST, True, compile=True)
        variants["compiled-noattn-bf16"] = Variant(NOATTN, True, bf16=True, compile=True)
    results = {}
    for name in args.models.split(","):
        results[name] = bench_case(name, variants, repeats, steps, batch, args.quick, device)
        print(f"{name}: " + ", ".join(f"{v} {r:.1f}" for v, r in
                                      results[name]["samples_per_s"].items()), flush=True)
    print_rates(results, "samples_per_s", "training throughput (median of repeats)")
    save_results(args.out, results, quick=args.quick, threads=args.threads, **device_meta(device))


def device_or_exit(parser: argparse.ArgumentParser, name: str) -> torch.device:
    """The ``--device`` as a device; a usage error naming the problem (exit 2), not a traceback,
    when CUDA is not usable here."""
    try:
        return resolve_device(name)
    except RuntimeError as error:
        parser.error(str(error))


if __name__ == "__main__":
    main()
