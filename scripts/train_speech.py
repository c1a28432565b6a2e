"""Long training of the shipped speech bundles on data that changes every step.

* ``--task separate``: MossFormer (default preset ``small``, CPU real-time when streaming)
  on two-speaker dynamic mixtures of every speaker in the training split of ``--data``
  (speed perturbation, levels, gain, optional noise and reverberation), 8 kHz by default.
* ``--task enhance``: DeFTAN-II for an ``--n-mics`` circular array (4-8) on rooms simulated
  on the fly (RT60, radius, positions, SNR), direct-path target, 16 kHz.

Speakers are split train / val / test with :func:`sigformer.data.mixtures.speaker_splits`
(speaker-disjoint; see datasets/speech.md). Recipes are the published ones
(:mod:`sigformer.recipes.speech`; change with ``--loss``, ``--lr``, ``--clip``,
``--loss-threshold``; ``--bf16`` trains under bf16 autocast). A checkpoint folder is written
to ``--out`` every ``--checkpoint-every`` steps and at the end; ``--resume`` continues from it
with the recipe it recorded (another ``--loss``, ``--lr``, ``--clip`` or ``--loss-threshold``
is refused; ``--steps`` may grow: the plateau schedule does not depend on it; ``--bf16`` may
be switched: precision is not part of the model). ``--init`` (fine-tuning, from a run's
checkpoint folder or a packaged bundle) keeps the split of the run it starts from: its
``<run>-split.json``, or the bundle's recorded split, becomes the default ``--split-from`` (a
new split could hold out speakers and noises the initial weights heard;
``--allow-new-split`` accepts that). An enhancement ``--init`` for fewer microphones widens
to ``--n-mics`` when its uniform circular array is a sub-array of this one (4 -> 8: its
microphones at positions 0, 2, 4, 6, the new ones' weights starting at zero).
Examples (smoke test, then a long background run)::

    python scripts/train_speech.py --task separate --steps 4 --batch-size 2 --seconds 1 \\
        --val-every 2 --n-val 2 --out runs/sep_smoke
    nohup python scripts/train_speech.py --task separate --steps 200000 --workers 2 \\
        --out runs/mossformer_small > runs/mossformer_small.log &
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from sigformer.recipes.device import add_device_argument, check_device_argument

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "speech"


def parse_args(argv=None) -> argparse.Namespace:
    from sigformer.recipes.speech import LOSSES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=("separate", "enhance"), required=True)
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="folder of speech and noise")
    ap.add_argument("--out", required=True, help="checkpoint folder")
    ap.add_argument("--preset", default=None, help="model preset (small for both by default)")
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=None, help="segment length (4 s / 2 s)")
    ap.add_argument("--sample-rate", type=int, default=None, help="8000 or 16000")
    ap.add_argument("--n-mics", type=int, default=4, help="enhance: microphones (4-8)")
    ap.add_argument("--noise-snr", type=float, nargs=2, default=None,
                    help="separate: add noise at an SNR drawn from this range (dB)")
    ap.add_argument("--noise-test-share", type=float, default=None,
                    help="share of the noise files held out for test (never trained on); "
                         "default 0.25 for enhance, 0 for separate")
    ap.add_argument("--reverb", type=float, default=0.0,
                    help="separate: share of mixtures rendered in a random room")
    ap.add_argument("--speed", type=float, nargs=2, default=None,
                    help="separate: speed perturbation range per source (default 0.95 1.05; "
                         "a wider range also shifts pitch and formants: new voices)")
    ap.add_argument("--split-from", default=None,
                    help="use the splits recorded by an earlier run (its -split.json, or a "
                         "packaged bundle folder)")
    ap.add_argument("--init", default=None,
                    help="start from the weights of this checkpoint or bundle folder "
                         "(fine-tuning; enhancement: a sub-array's weights widen to --n-mics); "
                         "its run's split record is the default --split-from")
    ap.add_argument("--allow-new-split", action="store_true",
                    help="with --init and no split record of the init run: make a new split "
                         "(its held-out speakers and noises may have been heard by the initial "
                         "weights)")
    ap.add_argument("--loss", choices=LOSSES, default=None,
                    help="training loss (default: the recipe's: PIT SI-SNR for separation, "
                         "PCM for enhancement)")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--clip", type=float, default=None, help="gradient max-norm (0: off)")
    ap.add_argument("--loss-threshold", type=float, default=None)
    ap.add_argument("--bf16", action="store_true",
                    help="forward passes under bf16 autocast (loss, backward, optimiser and "
                         "validation stay float32): changes speed and rounding, not the "
                         "weights' format (checkpoints stay float32), so a --resume may "
                         "switch it either way; not the published recipe")
    ap.add_argument("--workers", type=int, default=1, help="DataLoader worker processes")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the model")
    add_device_argument(ap)
    ap.add_argument("--checkpoint-every", type=int, default=1000)
    ap.add_argument("--val-every", type=int, default=500)
    ap.add_argument("--n-val", type=int, default=16, help="fixed validation items")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)
    check_device_argument(ap, args.device)
    args.split_from = split_source(args)
    return args


def init_split_record(init: str) -> Path:
    """The split record of the run ``--init`` starts from: ``<run>-split.json``, shared by
    its ``<run>-best`` folder (as ``scripts/package_speech.py`` finds it); for a packaged
    bundle without one beside it, the bundle folder itself (its config records the split)."""
    from sigformer.recipes.speech import BEST_SUFFIX

    run = Path(init)
    record = split_path(str(run.with_name(run.name.removesuffix(BEST_SUFFIX))))
    if not record.is_file() and bundle_training(run).get("files"):
        return run  # a packaged bundle records its split in its config
    return record


def bundle_training(folder: Path) -> dict:
    """A checkpoint or bundle folder's recorded training (``extra.training`` of its
    config.json), or {} when it has none."""
    config = Path(folder) / "config.json"
    if not config.is_file():
        return {}
    return json.loads(config.read_text()).get("extra", {}).get("training") or {}


def read_split_record(path: str | Path) -> dict:
    """A split record: a run's ``<run>-split.json``, or a bundle folder (its config's
    ``extra.training`` records the same ``files`` and ``noise_files``)."""
    path = Path(path)
    if path.is_dir():
        record = bundle_training(path)
        if not record.get("files"):
            raise SystemExit(f"{path} is a folder without a recorded split (config.json "
                             f"extra.training.files): give a run's -split.json or a bundle "
                             f"packaged from one")
        return record
    return json.loads(path.read_text())


def split_source(args) -> str | None:
    """The record that decides the split: ``--split-from``; with ``--init`` and none given,
    the init run's record (its weights heard that run's training speakers and noises, so a
    new split could hold them out as unheard; refused unless ``--allow-new-split``). A
    resumed run that already has its own record keeps it."""
    if args.split_from or not args.init or (args.resume and split_path(args.out).is_file()):
        return args.split_from
    record = init_split_record(args.init)
    if record.exists():  # a run's -split.json, or the bundle folder that records it
        print(f"--init {args.init}: keeping its run's split ({record}) as --split-from, so "
              f"held-out speakers and noises stay unheard by the initial weights", flush=True)
        return str(record)
    if not args.allow_new_split:
        raise SystemExit(f"--init {args.init}: its run's split record {record} is missing, so "
                         f"a new split could hold out speakers and noises the initial weights "
                         f"heard; pass --split-from with the record of the run it comes from, "
                         f"or --allow-new-split to make a new split anyway")
    print(f"--init {args.init}: no split record at {record}; making a new split "
          f"(--allow-new-split: its held-out speakers and noises may have been heard by the "
          f"initial weights)", flush=True)
    return None


def resumed_step(out: str) -> int:
    """The step of the checkpoint in ``out`` (0 when there is none)."""
    config = Path(out) / "config.json"
    if not config.is_file():
        return 0
    return int(json.loads(config.read_text()).get("extra", {}).get("step", 0))


def split_path(out: str) -> Path:
    """``<out>-split.json``: a sibling, because each checkpoint replaces ``out`` whole."""
    out = Path(out)
    return out.with_name(out.name + "-split.json")


def enhance_scene_config(args):
    """The room family ``--task enhance`` trains on (recorded with the split: the array)."""
    from sigformer.data.room import ENHANCE_TRAINING_RADIUS, SceneConfig

    return SceneConfig(sample_rate=args.sample_rate or 16000, n_mics=args.n_mics,
                       radius=ENHANCE_TRAINING_RADIUS)


def write_split_record(args, splits, noise_split=None) -> Path:
    """The files of each split and the run's arguments, so packaging and benchmarks know
    exactly which speakers the model heard (speaker rules may change later)."""
    from sigformer.atomic import atomic_write_json

    root = Path(args.data).resolve()

    def rel(path: Path) -> str:
        path = Path(path).resolve()
        return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)

    record = {"data": str(root), "split_seed": args.seed,
              "args": {k: v for k, v in vars(args).items() if k not in ("out", "data")},
              "files": {k: [rel(u.path) for u in v] for k, v in splits.items()},
              "speakers": {k: sorted({u.speaker for u in v}) for k, v in splits.items()}}
    if noise_split is not None:
        record["noise_files"] = {k: [rel(f) for f in v] for k, v in noise_split.items()}
    if args.task == "enhance":
        record["array"] = enhance_scene_config(args).array()
    path = split_path(args.out)
    if args.resume and path.is_file():  # build() trained on this record's split
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, record)
    return path


def recorded_splits(speech, record_path: str, data: str) -> dict:
    """The splits of an earlier run's ``-split.json`` (the same files, whatever today's
    speaker rules say), so a continued or fine-tuned run never trains on its test files."""
    record = read_split_record(record_path)
    root = Path(data).resolve()
    by_file = {str(Path(u.path).resolve().relative_to(root)): u for u in speech}
    missing = [f for files in record["files"].values() for f in files if f not in by_file]
    if missing:
        raise SystemExit(f"{record_path} names files not found under {data}: {missing[:3]}")
    return {k: [by_file[f] for f in files] for k, files in record["files"].items()}


def recorded_noise_split(record_path: str, data: str) -> dict | None:
    """The noise split of an earlier run's record (None for records made before noises were
    split: those runs trained on every noise file)."""
    record = read_split_record(record_path)
    if record.get("noise_files") is None:  # absent, or null in a bundle packaged from one
        return None
    root = Path(data).resolve()
    split = {k: [root / f for f in files] for k, files in record["noise_files"].items()}
    missing = [str(f) for files in split.values() for f in files if not f.is_file()]
    if missing:
        raise SystemExit(f"{record_path} names noise files not found under {data}: "
                         f"{missing[:3]}")
    return split


def choose_noise_split(args, noises: list, record) -> dict:
    """Training / test noise files: the recorded split of a resumed or continued run (an
    explicit ``--noise-test-share`` must agree with it), otherwise a new one with
    ``--noise-test-share`` held out."""
    from sigformer.data.mixtures import noise_splits

    recorded = recorded_noise_split(record, args.data) if record else None
    share = args.noise_test_share
    if recorded is not None:
        every = recorded["train"] + recorded["test"]
        if share is not None and len(noise_splits(every, share)["test"]) != len(recorded["test"]):
            raise SystemExit(f"--noise-test-share {share:g} disagrees with {record}, which holds "
                             f"out {len(recorded['test'])} of {len(every)} noise files: the "
                             f"recorded split decides (a run may not train on noises its record "
                             f"holds out for test); drop --noise-test-share, or start a new run "
                             f"without --resume / --split-from")
        return recorded
    if record:  # an older record: its run trained on every noise file
        if share:
            raise SystemExit(f"--noise-test-share {share:g}: {record} predates the noise split "
                             f"(no noise_files), so the run it records trained on every noise "
                             f"file; holding some out now would not make them unheard. Drop "
                             f"--noise-test-share, or start a new run without --resume / "
                             f"--split-from")
        print(f"note: {record} predates the noise split (no noise_files): its run trained on "
              f"every noise file, so this one does too and no noise is held out for test "
              f"(the enhancement benchmark then needs --allow-heard-noise)", flush=True)
        return {"train": list(noises), "test": []}
    if share is None:
        share = 0.25 if args.task == "enhance" else 0.0
    return noise_splits(noises, share, seed=args.seed)


def build(args):
    """Model, recipe, training loader and fixed validation items for ``args``."""
    from torch.utils.data import DataLoader

    from sigformer.data.mixtures import (
        DynamicMixConfig,
        DynamicMixtures,
        list_speech,
        speaker_splits,
    )
    from sigformer.data.room import EnhancementScenes
    from sigformer.models import create_model
    from sigformer.recipes.speech import RECIPES

    speech, noises = list_speech(args.data)
    # a resumed run keeps the split it started with (today's speaker rules or files may give
    # another one, which could put validation or test speakers into training)
    started = split_path(args.out) if args.resume and not args.split_from else None
    record = args.split_from or (started if started is not None and started.is_file() else None)
    splits = recorded_splits(speech, record, args.data) if record else \
        speaker_splits(speech, seed=args.seed)
    noise_split = choose_noise_split(args, noises, record)
    noises = noise_split["train"]
    # a resumed run draws new mixtures, not the ones its first steps already saw. Training
    # draws from (data_seed + 7919 epoch, worker), validation from (seed + 1): never the same
    # stream (and the speakers differ anyway)
    data_seed = args.seed + 1000 * resumed_step(args.out) if args.resume else args.seed
    preset = args.preset or "small"
    if args.task == "separate":
        rate, seconds = args.sample_rate or 8000, args.seconds or 4.0
        model = create_model("mossformer", preset, sample_rate=rate)
        recipe = RECIPES["mossformer"]
        config = DynamicMixConfig(sample_rate=rate, seconds=seconds,
                                  speed=tuple(args.speed) if args.speed else (0.95, 1.05),
                                  noise_snr_db=tuple(args.noise_snr) if args.noise_snr else None,
                                  reverb_probability=args.reverb)
        train = DynamicMixtures(splits["train"], noises, config, seed=data_seed)
        val = DynamicMixtures(splits["val"], noises, config, n_items=args.n_val,
                              seed=args.seed + 1, fixed=True)
    else:
        if not 2 <= args.n_mics <= 16:
            raise SystemExit(f"--n-mics must be within 2..16, got {args.n_mics}")
        rate, seconds = args.sample_rate or 16000, args.seconds or 2.0
        model = create_model("deftan2", preset, n_mics=args.n_mics, sample_rate=rate)
        recipe = RECIPES["deftan2"]
        config = enhance_scene_config(args)
        train = EnhancementScenes(splits["train"], noises, config, seconds, seed=data_seed)
        val = EnhancementScenes(splits["val"], noises, config, seconds, n_items=args.n_val,
                                seed=args.seed + 1, fixed=True)
    changes = {k: v for k, v in (("lr", args.lr), ("loss_threshold", args.loss_threshold),
                                 ("loss", args.loss)) if v is not None}
    if args.clip is not None:
        changes["clip_grad_norm"] = args.clip or None
    if args.bf16:
        changes["bf16"] = True
    recipe = recipe.with_options(**changes)
    loader = DataLoader(train, batch_size=args.batch_size, num_workers=args.workers,
                        persistent_workers=args.workers > 0,
                        prefetch_factor=4 if args.workers > 0 else None)
    return model, recipe, loader, list(val), splits, noise_split


def init_model(model, initial, name: str) -> None:
    """Start ``model`` from ``initial``'s weights. An enhancement model for a larger uniform
    circular array starts from one trained on a sub-array of it (4 -> 8 microphones: the
    trained ones at every second position), the new microphones' weights at zero."""
    from sigformer.models.speech.deftan2 import circular_subarray, load_subarray_weights

    trained, wanted = getattr(initial, "n_mics", None), getattr(model, "n_mics", None)
    if type(initial) is not type(model):
        raise SystemExit(f"--init {name} is a {type(initial).__name__}; this run trains a "
                         f"{type(model).__name__}")
    if trained == wanted:
        model.load_state_dict(initial.state_dict())
        print(f"initialised from {name}", flush=True)
        return
    try:
        positions = circular_subarray(trained, wanted)
    except ValueError as err:
        raise SystemExit(f"--init {name} was trained for {trained} microphones, this run "
                         f"has --n-mics {wanted}: {err}") from None
    load_subarray_weights(model, initial.state_dict(), positions)
    print(f"initialised from {name}: its {trained} microphones at positions {positions} of "
          f"the {wanted}-microphone circular array, the others' weights zero", flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from sigformer.recipes.speech import fit

    model, recipe, loader, val_items, splits, noise_split = build(args)
    write_split_record(args, splits, noise_split)
    if args.init and not (args.resume and (Path(args.out) / "train_state.pt").is_file()):
        from sigformer.checkpoint import load_checkpoint

        init_model(model, load_checkpoint(args.init)[0], args.init)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{args.task}: {type(model).__name__} ({n_params:,} parameters), recipe {recipe}",
          flush=True)
    for name, items in splits.items():
        print(f"  {name}: {len({u.speaker for u in items})} speakers, {len(items)} files",
              flush=True)
    print(f"  noise: {len(noise_split['train'])} training files, "
          f"{len(noise_split['test'])} held out for test", flush=True)
    from sigformer.checkpoint import CheckpointError

    try:
        report = fit(model, loader, val_items, recipe, task=args.task, steps=args.steps,
                     out_dir=args.out, checkpoint_every=args.checkpoint_every,
                     val_every=args.val_every, log_every=args.log_every, resume=args.resume,
                     log=lambda m: print(m, flush=True), device=args.device)
    except CheckpointError as err:  # a refused resume: the message says what to do
        raise SystemExit(f"error: {err}") from None
    report["speakers"] = {k: sorted({u.speaker for u in v}) for k, v in splits.items()}
    Path(args.out, "train_report.json").write_text(json.dumps(report, indent=1))
    print(f"done: {report['steps']} steps in {report['seconds']:.0f} s, data wait "
          f"{report['data_wait_share']:.1%} of step time; checkpoint in {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
