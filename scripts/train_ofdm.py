"""Long training of an OFDM channel estimator for a shipped bundle (AdaFortiTran issue 14).

Defaults: AdaFortiTran at the paper configuration (1,081,826 parameters), the released recipe
(Adam 1e-3, ExponentialLR 0.995 per epoch, batch 64, early stopping with patience 3 on the
validation loss, best epoch restored), 100,000 simulated TDL-A slots whose SNR (0-25 dB),
delay spread (25-300 ns) and Doppler (50-1000 Hz) are drawn per slot from the reference's sets,
and a 10,000-slot validation set of the same mixture (the release's 100,000 / 10,000 split).

Data: ``--data fixed`` simulates the training set once and saves it to ``OUT/data/*.npz``
(atomic; reused when the run resumes) with a record beside each file (``train.json``: seed,
profile, draws); a file simulated with other settings is refused, not silently reused.
``--data stream`` simulates fresh slots every step in ``--workers`` DataLoader workers (the
cached validation set is drawn from a seed no training step uses).

Device: ``--device cuda`` trains on a GPU (the slots are simulated on the CPU and moved a batch
at a time; the bundle is written with CPU tensors, as always). A resume may change the device;
only on the CPU does it continue bit for bit (an accelerator's dropout has its own RNG).

Checkpoints: one is written to ``OUT/epochs/`` after every epoch (safetensors + JSON;
``--resume`` continues from it) and the best epoch's model to ``OUT/best/`` (the bundle).
``--checkpoint-every MIN`` (default 10; 0 = at epoch ends only) also writes one inside an
epoch, at the first step MIN minutes after the last checkpoint, replacing it: a run stopped
mid-epoch (session end, Ctrl-C, a queue's time limit) loses at most MIN minutes of training,
and ``--resume`` skips the batches the epoch already trained and continues exactly as if it had
never stopped. It is not a training setting, so a resume may change it. ``--resume`` refuses
changed training settings (only ``--epochs`` may change: the exponential schedule does not
depend on it), ``--no-attention-dropout`` and ``--fast`` included (another regulariser; fused
projections round differently in training), and ``--epochs`` below an epoch a mid-epoch
checkpoint stopped in. ``--out`` may start with ``~`` (also in ``--out=~/...``, which the
shell leaves alone). Progress lines with samples/s, the epoch's running mean loss and the ETA
go to stdout.

    python scripts/train_ofdm.py --out runs/ofdm_ada_paper --threads 2
    python scripts/train_ofdm.py --out runs/ofdm_ada_paper --threads 2 --resume
    python scripts/train_ofdm.py --model fortitran --out runs/ofdm_forti_paper
    python scripts/train_ofdm.py --model linear --out runs/ofdm_linear
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from sigformer.checkpoint_io import user_path
from sigformer.data.ofdm import REFERENCE_TRAIN, OFDMDataset, OFDMSlotStream, simulate_ofdm
from sigformer.models import create_model
from sigformer.recipes.device import add_device_argument, check_device_argument
from sigformer.recipes.ofdm import OFDMRecipe, fit_channel_estimator, read_training_meta

MODELS = {"adafortitran": "adafortitran", "fortitran": "fortitran", "linear": "ofdm_linear"}
DRAWS = {"snr_db": REFERENCE_TRAIN["snr_db"],
         "delay_spread_ns": REFERENCE_TRAIN["delay_spread_ns"],
         "doppler_hz": REFERENCE_TRAIN["doppler_hz"]}
# seed streams of the cached sets: (seed, 1) training, (seed, 2) validation of a fixed set;
# a slot stream draws batch s of epoch e from (seed, e, s), and SeedSequence ignores trailing
# zeros, so (seed, 2) would be batch 0 of epoch 2: its validation set takes the stream's own
# fixed-set seed instead (OFDMSlotStream.fixed_set)
TRAIN_STREAM, VAL_STREAM, STREAM_VAL_STREAM = 1, 2, 2**31 - 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="adafortitran")
    ap.add_argument("--preset", default="paper", help="model preset (paper, small, tiny)")
    ap.add_argument("--n-train", type=int, default=100_000, help="training slots per epoch")
    ap.add_argument("--n-val", type=int, default=None, help="validation slots (n-train / 10)")
    ap.add_argument("--epochs", type=int, default=10, help="maximum epochs (release: 10)")
    ap.add_argument("--patience", type=int, default=3, help="early-stopping patience; 0 = off")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-decay", type=float, default=0.995, help="ExponentialLR gamma")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (not the release)")
    ap.add_argument("--fast", action="store_true",
                    help="fused q/k/v projections (sigformer.nn.fast_path: the same function; "
                         "eval bitwise, training rounds differently, so a resume keeps it)")
    ap.add_argument("--no-attention-dropout", action="store_true",
                    help="skip dropout on the attention weights in training (fast_path("
                         "attention_dropout=False): ~3x faster on CPU, a different regulariser)")
    ap.add_argument("--data", choices=("fixed", "stream"), default="fixed")
    ap.add_argument("--workers", type=int, default=1, help="simulation workers (--data stream)")
    ap.add_argument("--profile", default="A", help="TDL profile")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    add_device_argument(ap)
    ap.add_argument("--log-every", type=float, default=60.0, help="seconds between lines")
    ap.add_argument("--out", required=True, help="output folder (checkpoints, data, bundle)")
    ap.add_argument("--resume", action="store_true", help="continue from OUT's checkpoint")
    ap.add_argument("--init", default=None,
                    help="start from this bundle's weights (a catalogue name or a bundle / "
                         "checkpoint folder of the same model and preset): fine-tuning, e.g. "
                         "with other switches; recorded in the checkpoints and the card")
    ap.add_argument("--checkpoint-every", type=float, default=10.0, metavar="MIN",
                    help="minutes between checkpoints inside an epoch (0 = epoch ends only)")
    args = ap.parse_args(argv)
    if args.checkpoint_every < 0:
        ap.error(f"--checkpoint-every must be >= 0 minutes, got {args.checkpoint_every}")
    check_device_argument(ap, args.device)
    if args.n_train < args.batch_size:
        ap.error(f"--n-train ({args.n_train}) must be at least --batch-size "
                 f"({args.batch_size})")
    return args


def log(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def record_path(path: Path) -> Path:
    """The data record beside a cached set: ``train.npz`` -> ``train.json``."""
    return path.with_suffix(".json")


def data_record(seed: list[int], simulate_kwargs: dict) -> dict:
    """What a cached set was simulated with (JSON form, so a read-back record compares)."""
    return json.loads(json.dumps({"seed": [int(s) for s in seed], **simulate_kwargs}))


def check_data_record(path: Path, record: dict) -> None:
    """Refuse a cached set simulated with other settings; a set from before records existed
    is accepted (nothing to compare) and its record written."""
    from sigformer.atomic import atomic_write_json

    meta = record_path(path)
    if not meta.is_file():
        log(f"{path} has no data record (written before records existed): assuming it "
            f"matches this run, recording {meta.name}")
        atomic_write_json(meta, {**record, "adopted_without_record": True})
        return
    saved = json.loads(meta.read_text())
    differing = {key: (saved.get(key), value) for key, value in record.items()
                 if saved.get(key) != value}
    if differing:
        listed = "; ".join(f"{key} {before!r} -> {now!r}" for key, (before, now) in
                           differing.items())
        raise SystemExit(f"{path} was simulated with other settings than this run asks for "
                         f"({listed}): train into a new --out, pass the original --seed / "
                         f"--profile, or delete {path.parent} to simulate again")


def cached_dataset(path: Path, n: int, seed: list[int], **simulate_kwargs) -> OFDMDataset:
    """Simulate once and save (atomic ``.npz`` and its record ``.json``); later runs load the
    file after checking that it was simulated with the same seed and settings."""
    from sigformer.atomic import atomic_write_json

    record = data_record(seed, simulate_kwargs)
    if path.is_file():
        data = OFDMDataset.load(path)
        if len(data) == n:
            check_data_record(path, record)
            log(f"loaded {n:,} slots from {path}")
            return data
        log(f"{path} holds {len(data):,} slots, not {n:,}: simulating again")
    t0 = time.perf_counter()
    data = simulate_ofdm(n, seed=np.random.SeedSequence(seed), **simulate_kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    record_path(path).unlink(missing_ok=True)  # never a new file beside an old record
    data.save(path)
    atomic_write_json(record_path(path), record)
    log(f"simulated {n:,} slots in {time.perf_counter() - t0:.1f} s -> {path}")
    return data


def build_data(args: argparse.Namespace, out: Path):
    common = dict(DRAWS, profile=args.profile)
    n_val = args.n_val if args.n_val is not None else max(1, args.n_train // 10)
    if args.data == "stream":
        train = OFDMSlotStream(args.batch_size, args.n_train // args.batch_size,
                               seed=args.seed, **common)
        val = cached_dataset(out / "data" / "val.npz", n_val,
                             [args.seed, STREAM_VAL_STREAM], **common)
        return train, val
    train = cached_dataset(out / "data" / "train.npz", args.n_train,
                           [args.seed, TRAIN_STREAM], **common)
    val = cached_dataset(out / "data" / "val.npz", n_val, [args.seed, VAL_STREAM], **common)
    return train, val


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = user_path(args.out)  # "--out=~/runs/x" reaches us unexpanded
    out.mkdir(parents=True, exist_ok=True)
    preset = None if args.preset == "paper" or args.model == "linear" else args.preset
    torch.manual_seed(args.seed)  # the initial weights follow --seed too
    model = create_model(MODELS[args.model], preset)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"{args.model} ({args.preset}): {n_params:,} parameters, {torch.get_num_threads()} "
        f"threads, training on {args.device}")
    init = None
    if args.init and not args.resume:  # a resume continues its own checkpoint's weights
        init = init_from_bundle(model, args.init)
    train, val = build_data(args, out)
    recipe = OFDMRecipe(lr=args.lr, lr_decay=args.lr_decay, batch_size=args.batch_size,
                        max_epochs=args.epochs, bf16=args.bf16,
                        early_stopping_patience=args.patience or None)
    extra = {"ofdm_config": train.config.to_dict(), "profile": f"TDL-{args.profile}",
             "snr_definition": "pilot", "training_draws": DRAWS, "n_train": args.n_train,
             "n_val": len(val), "data": args.data, "seed": args.seed,
             "attention_dropout": not args.no_attention_dropout, "fast": args.fast,
             "device": args.device}
    if init is not None:
        extra["init"] = init
    elif args.resume:  # keep what the run started from in the checkpoints it writes now
        extra.update(resumed_init(out))
    t0 = time.perf_counter()
    with fast_path_if(args.fast, attention_dropout=not args.no_attention_dropout):
        history = run_training(model, train, val, recipe, args, out, extra)
    summary = {"args": vars(args), "parameters": n_params, "recipe": recipe.__dict__,
               "epochs": history.epochs, "best_epoch": history.best_epoch,
               "best_val_loss": history.best_val_loss, "stopped_early": history.stopped_early,
               "seconds_this_run": round(time.perf_counter() - t0, 1)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    best = None if history.best_epoch is None else history.best_epoch + 1
    log(f"done: best epoch {best} (1-based), val loss {history.best_val_loss:.4g}; the "
        f"bundle is {out / 'best'}")
    return 0


def init_from_bundle(model: torch.nn.Module, source: str) -> dict:
    """Load ``source``'s weights into ``model`` (same class and shapes, strictly) and return
    what the card records of it: the bundle, its training switches and its budget."""
    from sigformer.checkpoint import load_checkpoint
    from sigformer.pretrained import resolve_bundle_path

    try:
        path = resolve_bundle_path(source)
        initial, config = load_checkpoint(path)
    except (FileNotFoundError, ValueError, KeyError) as err:
        raise SystemExit(f"error: --init {source}: {err}") from None
    if type(initial) is not type(model):
        raise SystemExit(f"error: --init {source} is a {type(initial).__name__}; this run "
                         f"trains a {type(model).__name__} (--model)")
    shapes = {k: tuple(v.shape) for k, v in initial.state_dict().items()}
    wanted = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if shapes != wanted:
        raise SystemExit(f"error: --init {source} has other weight shapes than this run's "
                         f"model: another --preset (its constructor arguments: "
                         f"{config.get('kwargs')})")
    model.load_state_dict(initial.state_dict())
    recorded = config.get("extra", {})
    provenance = config.get("provenance") or {}
    data = provenance.get("data") or {}
    log(f"initialised from {source} ({path})")
    return json.loads(json.dumps({
        "source": str(source), "attention_dropout": recorded.get("attention_dropout", True),
        "seed": recorded.get("seed"), "n_train": recorded.get("n_train"),
        "epochs_run": data.get("epochs_run"), "slots_seen": data.get("slots_seen"),
        "budget": provenance.get("budget"), "training_time": provenance.get("training_time"),
        "recipe": provenance.get("recipe")}, default=str))


def resumed_init(out: Path) -> dict:
    """``{"init": ...}`` as the newest checkpoint of ``out`` records it ({} when none)."""
    from sigformer.checkpoint import read_config

    saved = read_training_meta(out)
    if saved is None:
        return {}
    recorded = read_config(saved[0] / "model")["extra"]
    return {"init": recorded["init"]} if "init" in recorded else {}


def fast_path_if(enabled: bool, attention_dropout: bool = True):
    """The fast-path switches asked for (none: the reference path)."""
    if not enabled and attention_dropout:
        return contextlib.nullcontext()
    from sigformer.nn import fast_path

    return fast_path(fused_projections=enabled, attention_dropout=attention_dropout)


def checkpoint_every_s(args: argparse.Namespace) -> float | None:
    """``--checkpoint-every`` in seconds; None (epoch ends only) for 0."""
    return args.checkpoint_every * 60 if args.checkpoint_every > 0 else None


def run_training(model, train, val, recipe: OFDMRecipe, args: argparse.Namespace, out: Path,
                 extra: dict):
    from sigformer.checkpoint import CheckpointError

    try:
        if args.resume:
            refuse_changed_switches(out, extra)
        return fit_channel_estimator(model, train, val=val, recipe=recipe, seed=args.seed,
                                     checkpoint_dir=out, resume=args.resume, log=log,
                                     log_every_s=args.log_every, checkpoint_extra=extra,
                                     num_workers=args.workers if args.data == "stream" else 0,
                                     checkpoint_every_s=checkpoint_every_s(args),
                                     device=args.device)
    except CheckpointError as err:  # a refused resume: the message says what to do
        raise SystemExit(f"error: {err}") from None


# switches outside the recipe that change what is trained, with the flag that sets each:
# attention dropout is a regulariser; the fused q/k/v projections compute the same function
# but not the same floats in training (AdaFortiTran tiny/small/paper, 2 epochs: weights differ
# by up to 1e-3 to 1e-2; only eval is bitwise), so a resume that toggled either would not
# continue the run it resumes
SWITCHES = {"attention_dropout": "--no-attention-dropout", "fast": "--fast"}


def refuse_changed_switches(out: Path, extra: dict) -> None:
    """Refuse a resume whose ``SWITCHES`` differ from the newest checkpoint's (a checkpoint
    written before one was recorded is resumed with a note)."""
    from sigformer.checkpoint import CheckpointError, read_config

    saved = read_training_meta(out)
    if saved is None:
        return
    recorded = read_config(saved[0] / "model")["extra"]
    missing = [key for key in SWITCHES if key not in recorded]
    if missing:
        log(f"note: {saved[0]} records no {', '.join(missing)} (an earlier sigformer): "
            "resumed without checking it")
    changed = [f"{key} {recorded[key]!r} -> {extra[key]!r} ({flag})"
               for key, flag in SWITCHES.items() if key in recorded and recorded[key] != extra[key]]
    if changed:
        raise CheckpointError(f"cannot resume from {saved[0]}: it was trained with other "
                              f"switches: {', '.join(changed)}. Resume with the flags the run "
                              f"started with, or train into a new --out")


if __name__ == "__main__":
    raise SystemExit(main())
