"""``task: separate`` pipelines: make mixtures, train a separation model with PIT SI-SNR,
evaluate it with chunked inference (SI-SDR/SI-SDRi/SDR/PESQ/STOI) and write the report."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..training import train_objective
from .metrics import evaluate_separation, pit_loss


def _mixtures(s, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` fixed-length mixtures ``(n, L)`` with references ``(n, n_src, L)``."""
    from ..data.mixtures import load_utterances, make_mixture, synthetic_voices

    rng = np.random.default_rng(seed)
    length = int(s.seconds * s.sample_rate)
    if s.clean_dir:
        pool = list(load_utterances(s.clean_dir, s.sample_rate).values())
    else:
        pool = synthetic_voices(max(8, 2 * s.n_src), 2 * s.seconds, s.sample_rate, seed)
    noise = None
    if s.noise_dir:
        noise = np.concatenate(list(load_utterances(s.noise_dir, s.sample_rate).values()))
    mixes, refs = [], []
    for _ in range(n):
        picked = rng.choice(len(pool), s.n_src, replace=False)
        srcs = []
        for i in picked:
            x = pool[i]
            start = int(rng.integers(0, max(1, len(x) - length)))
            srcs.append(np.resize(x[start:start + length], length))
        levels = [0.0] + [float(rng.uniform(-s.level_db, s.level_db))
                          for _ in range(s.n_src - 1)]
        mix, ref, _ = make_mixture(srcs, overlap=1.0, level_db=levels, noise=noise,
                                   snr_db=float(rng.uniform(*s.snr_db)) if noise is not None
                                   else None, rng=rng)
        mixes.append(mix[:length])
        refs.append(ref[:, :length])
    return np.stack(mixes), np.stack(refs)


def _loss_step(model, batch):
    mix, refs = batch
    loss = pit_loss(model(mix), refs)
    return {"loss": loss, "si_snr": -loss.detach()}


def run_separation_pipeline(cfg, out_dir: str | Path | None = None, log=print
                            ) -> dict[str, Any]:
    from ..checkpoint import save_checkpoint
    from ..models import create_model
    from .audio import write_audio
    from .chunked import model_function, process_array

    s = cfg.speech
    out = Path(out_dir or cfg.output.dir.format(name=cfg.name))
    t0 = time.perf_counter()
    source = s.clean_dir or "synthetic voices"
    log(f"[1/4] making {s.n_train} training and {s.n_test} test mixtures of {s.n_src} "
        f"speakers ({s.seconds:g} s at {s.sample_rate} Hz) from {source}")
    train_mix, train_refs = _mixtures(s, s.n_train, s.seed)
    test_mix, test_refs = _mixtures(s, s.n_test, s.seed + 1)
    model = create_model(s.model, s.preset, n_src=s.n_src, sample_rate=s.sample_rate,
                         **s.params)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"[2/4] training {s.model} ({n_params:,} parameters) for {s.max_epochs} epochs with "
        f"PIT SI-SNR")
    hist = train_objective(model, _loss_step, [train_mix, train_refs], max_epochs=s.max_epochs,
                           batch_size=s.batch_size, lr=s.lr, seed=s.seed,
                           progress_bar=cfg.train.progress_bar)
    log(f"[3/4] evaluating with chunked inference ({s.chunk_s:g} s chunks, "
        f"{s.overlap_s:g} s overlap)")
    fn = model_function(model)
    chunk, overlap = int(s.chunk_s * s.sample_rate), int(s.overlap_s * s.sample_rate)
    rows, estimates = [], []
    for mix, refs in zip(test_mix, test_refs):
        est = process_array(fn, mix[None], chunk, overlap, align=True)
        estimates.append(est)
        rows.append(evaluate_separation(est, refs, mix, s.sample_rate,
                                        perceptual=s.perceptual_metrics))
    summary = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    for k, v in summary.items():
        log(f"      {k:8s} {v:.3f}")
    report = {"pipeline": cfg.name, "model": s.model, "preset": s.preset,
              "n_parameters": n_params, "data": source, "n_train": s.n_train,
              "n_test": s.n_test, "sample_rate": s.sample_rate, "summary": summary,
              "per_mixture": rows, "train_si_snr": hist.series("train_si_snr"),
              "seconds": round(time.perf_counter() - t0, 2)}
    log(f"[4/4] writing the report to {out}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline.json").write_text(cfg.model_dump_json(indent=2))
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    write_audio(out / "example_mixture.wav", test_mix[0], s.sample_rate)
    for i, src in enumerate(estimates[0]):
        write_audio(out / f"example_s{i + 1}.wav", src, s.sample_rate)
    plot_separation(test_mix[0], test_refs[0], estimates[0], s.sample_rate,
                    out / "example_spectrograms.png")
    if cfg.output.save_model:
        save_checkpoint(out / "model", model, extra={"sample_rate": s.sample_rate})
    return report


def plot_separation(mixture: np.ndarray, references: np.ndarray, estimates: np.ndarray,
                    sample_rate: int, path=None):
    """Spectrograms of the mixture, the references and the (PIT-aligned) estimates."""
    from ..report import _pyplot
    from .metrics import best_permutation, reorder

    plt = _pyplot()
    est = torch.as_tensor(np.asarray(estimates, np.float64))[None]
    ref = torch.as_tensor(np.asarray(references, np.float64))[None]
    _, perm = best_permutation(est, ref)
    aligned = reorder(est, perm)[0].numpy()
    panels = [("mixture", mixture)] + [(f"reference {i + 1}", r) for i, r in
                                       enumerate(references)] + [
        (f"estimate {i + 1}", e) for i, e in enumerate(aligned)]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 1.7 * len(panels)), sharex=True)
    for ax, (title, x) in zip(axes, panels):
        with np.errstate(divide="ignore"):  # silent stretches: log of zero power
            ax.specgram(x, NFFT=256, Fs=sample_rate, noverlap=192, cmap="magma")
        ax.set_ylabel("Hz")
        ax.set_title(title, fontsize=9, loc="left")
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig
