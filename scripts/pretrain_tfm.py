"""Pretrain the shipped TFM tokenizer on all the EEG the project can read (issue 15).

Corpus (single-channel windows, resampled to 200 Hz, TFM's per-window 95th-percentile
scaling): every eegmmidb run and channel, Bonn 001-080, the Muse recordings, the sleep /
resting snippets, the MNE sample sEEG and ECoG. A held-out 5% of windows (grouped by
recording) measures the codebook. Runs for hours: start it in the background,

    nohup python scripts/pretrain_tfm.py --out runs/pretrain_tfm > runs/pretrain_tfm.log 2>&1 &

and rerun the same command to resume after an interruption (every epoch is checkpointed in
``--out/checkpoints``). When it ends (or with ``--package-only`` at any time) the latest epoch
is written as a bundle into ``--bundle`` with its model card.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
TARGET_SFREQ = 200.0


def _windows(data: np.ndarray, sfreq: float, window_s: float) -> np.ndarray:
    """(n_channels, n) at ``sfreq`` -> (n_windows, N) single-channel windows at 200 Hz."""
    from sigformer.models.eeg.tfm_tokenizer import tfm_prepare
    from sigformer.windowing import frame_array

    size = int(round(window_s * sfreq))
    frames = frame_array(np.asarray(data, np.float64), size, size)  # (w, C, size)
    if not len(frames):
        return np.zeros((0, int(window_s * TARGET_SFREQ)), np.float32)
    flat = frames.transpose(1, 0, 2).reshape(-1, size)
    keep = np.ptp(flat, axis=1) > 0  # flat-line channels (e.g. disconnected) carry nothing
    return tfm_prepare(flat[keep], sfreq).astype(np.float32)


def build_corpus(shared: Path, window_s: float) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Windows, their recording ids (for a grouped split) and a per-source summary."""
    from sigformer.data import read_recording

    parts, groups = [], []
    counts: dict[str, int] = {}

    def add(name: str, data, sfreq: float, group: str) -> None:
        w = _windows(data, sfreq, window_s)
        if len(w):
            parts.append(w)
            groups.extend([group] * len(w))
        source = name.split("/")[0]
        counts[source] = counts.get(source, 0) + len(w)

    for edf in sorted((shared / "eeg_mi" / "eegmmidb").glob("S*R*.edf")):
        rec = read_recording(edf, normalize_names=True)
        add(f"eegmmidb/{edf.name}", rec.data, rec.sfreq, edf.stem)
    bonn = shared / "eeg_bonn" / "bonn_ZONFS_001-080.npz"
    if bonn.is_file():
        from sigformer.data import load_bonn

        ep = load_bonn(bonn, "five_class", window_s=None)  # whole 23.6 s segments
        for i, seg in enumerate(ep.data):
            add("bonn", seg, ep.sfreq, f"bonn{i}")
    for csv in sorted((shared / "eeg_muse").rglob("*.csv")):
        rec = read_recording(csv)
        eeg = [i for i, t in enumerate(rec.channels.types) if t == "eeg"]
        add(f"muse/{csv.name}", rec.data[eeg], rec.sfreq, csv.stem)
    sleep = shared / "eeg_sleep"
    if sleep.is_dir():
        rec = read_recording(sleep / "data_resting_EO_200Hz_raw.fif")
        add("sleep/resting", rec.data, rec.sfreq, "resting")
        add("sleep/N2", np.loadtxt(sleep / "data_N2_spindles_15sec_200Hz.txt")[None], 200.0,
            "n2")
        add("sleep/N3", np.loadtxt(sleep / "data_N3_no-spindles_30sec_100Hz.txt")[None], 100.0,
            "n3")
    for edf in sorted((shared / "seeg").glob("*.edf")):
        rec = read_recording(edf)
        add(f"ieeg/{edf.name}", rec.data, rec.sfreq, edf.stem)
    if not parts:
        raise SystemExit(f"no EEG found under {shared}")
    summary = [{"source": k, "windows": v, "hours": round(v * window_s / 3600, 2)}
               for k, v in counts.items()]
    return np.concatenate(parts), np.asarray(groups), summary


def split_by_group(groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of held-out windows: whole recordings, about ``fraction`` of windows."""
    rng = np.random.default_rng(seed)
    unique = rng.permutation(np.unique(groups))
    held, count = set(), 0
    for g in unique:
        if count >= fraction * len(groups):
            break
        held.add(g)
        count += int((groups == g).sum())
    return np.isin(groups, list(held))


def codebook_stats(tokenizer, X: np.ndarray) -> dict:
    """Codebook usage, perplexity and dead codes over the windows ``X``."""
    import torch

    from sigformer.tokenizers.simple import codebook_report

    tokenizer.eval()
    tokenizer.quantizer.reset_usage()
    with torch.inference_mode():
        for i in range(0, len(X), 512):
            tokenizer.encode(torch.as_tensor(X[i:i + 512]))
    return {k: float(v) for k, v in codebook_report(tokenizer.quantizer).items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/pretrain_tfm")
    parser.add_argument("--bundle", default="sigformer/catalogue/tfm-tokenizer-eeg-corpus")
    parser.add_argument("--shared", default=str(SHARED))
    parser.add_argument("--preset", default=None, help="tokenizer preset (default: release)")
    parser.add_argument("--n-codes", type=int, default=None)
    parser.add_argument("--window-s", type=float, default=5.0)
    parser.add_argument("--dead-code-threshold", type=float, default=0.1,
                        help="re-seed codes whose EMA count falls below this (keeps usage up)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--package-only", action="store_true")
    parser.add_argument("--max-windows", type=int, help="subsample the corpus (smoke tests)")
    args = parser.parse_args(argv)

    import torch

    from sigformer.bundle import Bundle
    from sigformer.models import create_model
    from sigformer.recipes import tfm as recipe
    from sigformer.spec import SignalSpec

    torch.set_num_threads(args.threads)
    out = Path(args.out).expanduser()  # "--out=~/x" reaches us unexpanded
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    X, groups, summary = build_corpus(Path(args.shared).expanduser(), args.window_s)
    if args.max_windows and len(X) > args.max_windows:
        pick = np.random.default_rng(args.seed).choice(len(X), args.max_windows, replace=False)
        X, groups = X[np.sort(pick)], groups[np.sort(pick)]
    held = split_by_group(groups, 0.05, args.seed)
    X_train, X_test = X[~held], X[held]
    print(f"corpus: {len(X)} windows of {args.window_s:g} s ({len(X) * args.window_s / 3600:.1f}"
          f" h), {len(np.unique(groups))} recordings; held out {len(X_test)} windows; built in "
          f"{time.time() - t0:.0f} s", flush=True)
    kwargs = {} if args.n_codes is None else {"n_codes": args.n_codes}
    tokenizer = create_model("tfm_tokenizer", args.preset, codebook_init="kmeans",
                             dead_code_threshold=args.dead_code_threshold, **kwargs)
    ckpt = out / "checkpoints"
    if not args.package_only:
        recipe.pretrain_tokenizer(tokenizer, X_train, max_epochs=args.epochs,
                                  batch_size=args.batch_size, lr=args.lr,
                                  warmup_epochs=max(1, args.epochs // 10), seed=args.seed,
                                  checkpoint_dir=ckpt, resume=True, progress_bar=True)
    latest = recipe.latest_checkpoint(ckpt)
    if latest is None:
        raise SystemExit(f"no checkpoint in {ckpt} yet")
    from sigformer.checkpoint import load_checkpoint

    tokenizer, _ = load_checkpoint(latest)
    state = json.loads((latest / recipe.STATE_FILE).read_text()) \
        if (latest / recipe.STATE_FILE).is_file() else {}
    history = state.get("history", [])
    stats = {"train": codebook_stats(tokenizer, X_train[:20000]),
             "held_out": codebook_stats(tokenizer, X_test)}
    hours = round(len(X_train) * args.window_s / 3600, 2)
    n_params = sum(p.numel() for p in tokenizer.parameters())
    bundle = Bundle(
        model=tokenizer, task="tokenize",
        input_spec=SignalSpec.eeg(TARGET_SFREQ, ["EEG"], window=int(args.window_s * 200),
                                  unit="a.u."),
        extra={"sfreq": TARGET_SFREQ, "prepare": "tfm_prepare (resample to 200 Hz, per-window "
                                                  "95th-percentile scaling)"},
        provenance={
            "title": "TFM-Tokenizer pretrained on sigformer's EEG corpus",
            "summary": f"TFM tokenizer ({n_params:,} params) on {hours} h of single-channel EEG",
            "data": {"sources": summary, "windows_train": int(len(X_train)),
                     "windows_held_out": int(len(X_test)), "hours_train": hours},
            "data_licence": "eegmmidb ODC-By 1.0; Bonn not stated; Muse BSD-3 (repo); YASA "
                            "snippets not stated; MNE sample data BSD-3. Weights are derived "
                            "from these recordings: check the licences before redistribution.",
            "recipe": {"epochs_done": state.get("epochs_done"),
                       "epochs_planned": args.epochs, "batch_size": args.batch_size,
                       "lr": args.lr, "optimizer": "AdamW (0.9, 0.99), wd 1e-5",
                       "schedule": "warm-up + cosine", "codebook_init": "kmeans",
                       "dead_code_threshold": args.dead_code_threshold,
                       "window_s": args.window_s},
            "budget": f"{args.threads} CPU threads (2-core VM)",
            "training_time": f"{sum(r.get('seconds', 0) for r in history):.0f} s of training "
                             f"over {len(history)} epochs",
            "results": {"codebook_train": stats["train"],
                        "codebook_held_out": stats["held_out"],
                        "final_train_loss": history[-1].get("train_loss") if history else None,
                        "loss_per_epoch": [round(r.get("train_loss", 0), 5) for r in history]},
            "limitations": "CPU budget: far fewer epochs and hours than the paper (TUH, 100 "
                           "epochs); evaluate before relying on it."})
    path = bundle.save(args.bundle)
    print(json.dumps({"bundle": str(path), **stats}, indent=2, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
