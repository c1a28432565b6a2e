"""``task: separate`` pipelines: make mixtures, train a separation model with PIT SI-SNR,
evaluate it with chunked inference (SI-SDR/SI-SDRi/SDR/PESQ/STOI) and write the report."""

from __future__ import annotations

import functools
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
    for i, (mix, refs) in enumerate(zip(test_mix, test_refs)):
        est = process_array(fn, mix[None], chunk, overlap, align=True)
        estimates.append(est)
        rows.append(undefined_if_silent(
            functools.partial(evaluate_separation, est, refs, mix, s.sample_rate,
                              perceptual=s.perceptual_metrics, skip_undefined=True),
            f"mixture {i}", log))
    summary = mean_of_rows(rows)
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


def undefined_if_silent(score, where: str, log) -> dict[str, float]:
    """``score()``, or ``{"silent": True}`` with a logged note when an estimate is silent (its
    scores are undefined): one silent output must not end a run after its training, losing
    the model, nor count as 0 dB."""
    from .metrics import SpeechMetricError

    try:
        return score()
    except SpeechMetricError as err:
        log(f"      {where}: {err}; its scores are left out (undefined)")
        return {"silent": True}


def mean_of_rows(rows: list[dict]) -> dict[str, float]:
    """Mean of each score over the rows that have it; ``silent_estimates`` counts the silent
    rows and ``<score>_undefined`` the other rows without that score (e.g. PESQ finding no
    utterance in an estimate that SI-SDR still scores)."""
    scored = [r for r in rows if not r.get("silent")]
    keys = list(dict.fromkeys(k for r in scored for k in r))
    out = {k: float(np.mean([r[k] for r in scored if k in r])) for k in keys}
    for k in keys:
        missing = sum(k not in r for r in scored)
        if missing:
            out[f"{k}_undefined"] = float(missing)
    if len(scored) < len(rows):
        out["silent_estimates"] = float(len(rows) - len(scored))
    return out


def perceptual_scores(estimate: np.ndarray, reference: np.ndarray, sample_rate: int,
                      where: str, log) -> dict[str, float]:
    """PESQ and STOI, each left out (with a logged note) when undefined for this pair, so a
    PESQ failure does not take the row's SI-SDR with it."""
    from .metrics import SpeechMetricError, pesq_score, stoi_score

    row = {}
    for name, score in (("pesq", pesq_score), ("stoi", stoi_score)):
        try:
            row[name] = score(estimate=estimate, reference=reference, sample_rate=sample_rate)
        except SpeechMetricError as err:
            log(f"      {where}: {name} undefined ({err}); left out of its mean")
    return row


def plot_separation(mixture: np.ndarray, references: np.ndarray, estimates: np.ndarray,
                    sample_rate: int, path=None):
    """Spectrograms of the mixture, the references and the (PIT-aligned) estimates."""
    from ..report import pyplot
    from .metrics import best_permutation, reorder

    plt = pyplot()
    est = torch.as_tensor(np.asarray(estimates, np.float64))[None]
    ref = torch.as_tensor(np.asarray(references, np.float64))[None]
    _, perm = best_permutation(est, ref, check_silence=False)  # only for the panel order
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


# --- multichannel enhancement ---------------------------------------------------------------

def _scene_list(e, n: int, seed: int) -> list:
    """``n`` simulated array scenes (:class:`~sigformer.data.room.Scene`)."""
    from ..data.mixtures import load_utterances, synthetic_voices
    from ..data.room import SceneConfig, simulate_scene

    rng = np.random.default_rng(seed)
    length = int(e.seconds * e.sample_rate)
    if e.clean_dir:
        speech = list(load_utterances(e.clean_dir, e.sample_rate).values())
    else:
        speech = synthetic_voices(8, 2 * e.seconds, e.sample_rate, seed)
    if e.noise_dir:
        noise_pool = np.concatenate(list(load_utterances(e.noise_dir, e.sample_rate).values()))
    else:
        noise_pool = rng.standard_normal(20 * length).astype(np.float32)
    config = SceneConfig(sample_rate=e.sample_rate, n_mics=e.n_mics, radius=e.radius,
                         snr_db=tuple(e.snr_db), max_order=e.max_order)
    scenes = []
    for i in range(n):
        x = speech[int(rng.integers(len(speech)))]
        start = int(rng.integers(0, max(1, len(x) - length)))
        s = np.resize(x[start:start + length], length)
        s = s / (np.sqrt(np.mean(s ** 2)) + 1e-9) * 0.05
        k = int(rng.integers(0, len(noise_pool) - length))
        scenes.append(simulate_scene(s, noise_pool[k:k + length], config,
                                     seed=seed * 100003 + i))
    return scenes


def _scenes(e, n: int, seed: int):
    """``n`` simulated array scenes: (mixtures (n, M, L), targets (n, 1, L), noise (n, M, L))."""
    scenes = _scene_list(e, n, seed)
    return (np.stack([s.mixture for s in scenes]), np.stack([s.target for s in scenes]),
            np.stack([s.noise for s in scenes]))


def beamformer_systems(sample_rate: int) -> dict:
    """Every classical beamformer of the enhancement table, as ``scene -> (samples,)``:
    delay-and-sum (GCC-PHAT, true DOA, SRP-PHAT DOA), Souden and RTF MVDR with oracle
    statistics (direct path vs everything else) and with energy-VAD statistics, MVDR steered
    at the true DOA (oracle noise) and the former GEV-steered MVDR (oracle noise)."""
    from . import beamforming as bf

    def geometry(sc):
        return np.asarray(sc.info["mic_positions"]), sc.info["source_azimuth"], \
            sc.info["source_colatitude"]

    def ds_true(sc):
        pos, az, col = geometry(sc)
        return bf.delay_and_sum(sc.mixture, sample_rate, mic_positions=pos, azimuth=az,
                                colatitude=col)

    def doa_true(sc):
        pos, az, col = geometry(sc)
        return bf.doa_mvdr(sc.mixture, sample_rate, pos, azimuth=az, colatitude=col,
                           noise=sc.noise)

    return {
        "DS (GCC-PHAT)": lambda sc: bf.delay_and_sum(sc.mixture, sample_rate),
        "DS (true DOA)": ds_true,
        "DS (SRP-PHAT DOA)": lambda sc: bf.delay_and_sum(
            sc.mixture, sample_rate, mic_positions=geometry(sc)[0]),
        "MVDR Souden (oracle)": lambda sc: bf.souden_mvdr(
            sc.mixture, speech=sc.direct, noise=sc.mixture - sc.direct),
        "MVDR Souden (VAD)": lambda sc: bf.souden_mvdr(sc.mixture),
        "RTF-MVDR (oracle)": lambda sc: bf.rtf_mvdr(
            sc.mixture, speech=sc.direct, noise=sc.mixture - sc.direct),
        "RTF-MVDR (VAD)": lambda sc: bf.rtf_mvdr(sc.mixture),
        "MVDR (true DOA, oracle noise)": doa_true,
        "MVDR GEV (former, oracle noise)": lambda sc: bf.mvdr(sc.mixture, sample_rate,
                                                              noise=sc.noise),
    }


def _pcm_step(model, batch):
    from .metrics import pcm_loss

    mix, target = batch
    est = model(mix)
    return {"loss": pcm_loss(mix[:, :1], est, target)}


def _plot_enhancement_example(noisy: np.ndarray, enhanced: np.ndarray, target: np.ndarray,
                              sample_rate: int, path: Path, model_name: str) -> None:
    """``enhancement.png``: reference mic before, the model's output after, the clean target."""
    from ..report import plot_enhancement, pyplot

    fig = plot_enhancement(noisy, enhanced, sample_rate, reference=target, path=path,
                           title=f"{model_name}: test scene 0 (reference mic)")
    pyplot().close(fig)


def run_enhancement_pipeline(cfg, out_dir: str | Path | None = None, log=print
                             ) -> dict[str, Any]:
    """``task: enhance``: simulated array scenes -> PCM-loss training -> SI-SDR/PESQ/STOI of
    the model against the unprocessed reference mic, delay-and-sum and MVDR."""
    from ..checkpoint import save_checkpoint
    from ..models import create_model
    from .audio import write_audio
    from .chunked import model_function, process_array
    from .metrics import si_sdr

    e = cfg.enhance
    out = Path(out_dir or cfg.output.dir.format(name=cfg.name))
    t0 = time.perf_counter()
    log(f"[1/4] simulating {e.n_train} training and {e.n_test} test scenes ({e.n_mics}-mic "
        f"circular array, radius {e.radius} m) from {e.clean_dir or 'synthetic voices'}")
    train_mix, train_target, _ = _scenes(e, e.n_train, e.seed)
    test_scenes = _scene_list(e, e.n_test, e.seed + 1)
    model = create_model(e.model, e.preset, n_mics=e.n_mics, sample_rate=e.sample_rate,
                         **e.params)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"[2/4] training {e.model} ({n_params:,} parameters) for {e.max_epochs} epochs with "
        f"the PCM loss")
    hist = train_objective(model, _pcm_step, [train_mix, train_target],
                           max_epochs=e.max_epochs, batch_size=e.batch_size, lr=e.lr,
                           seed=e.seed, progress_bar=cfg.train.progress_bar)
    log("[3/4] evaluating against the reference microphone and the beamformers")
    fn = model_function(model, multichannel=True)
    chunk, overlap = int(e.chunk_s * e.sample_rate), int(e.overlap_s * e.sample_rate)
    systems = {"unprocessed": lambda sc: sc.mixture[0],
               **beamformer_systems(e.sample_rate),
               e.model: lambda sc: process_array(fn, sc.mixture, chunk, overlap)[0]}
    test_mix = np.stack([sc.mixture for sc in test_scenes])
    test_target = np.stack([sc.target for sc in test_scenes])
    results, example = {}, {}
    for name, run in systems.items():
        rows = []
        for i, sc in enumerate(test_scenes):
            est, t = run(sc), sc.target[0]
            if i == 0:
                example[name] = est
            def scores(est=est, t=t, where=f"{name}, scene {i}"):
                row = {"si_sdr": float(si_sdr(est, t))}  # a silent estimate: undefined row
                if e.perceptual_metrics:
                    row.update(perceptual_scores(est, t, e.sample_rate, where, log))
                return row

            rows.append(undefined_if_silent(scores, f"{name}, scene {i}", log))
        results[name] = mean_of_rows(rows)
        log(f"      {name:31s} " + ", ".join(f"{k} {v:.3f}" for k, v in results[name].items()))
    report = {"pipeline": cfg.name, "model": e.model, "preset": e.preset,
              "n_parameters": n_params, "n_train": e.n_train, "n_test": e.n_test,
              "results": results, "train_loss": hist.series("train_loss"),
              "seconds": round(time.perf_counter() - t0, 2)}
    log(f"[4/4] writing the report to {out}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline.json").write_text(cfg.model_dump_json(indent=2))
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    write_audio(out / "example_noisy.wav", test_mix[0], e.sample_rate)
    write_audio(out / "example_target.wav", test_target[0], e.sample_rate)
    for name, est in example.items():
        safe = "".join(c if c.isalnum() else "_" for c in name)
        write_audio(out / f"example_{safe}.wav", est, e.sample_rate)
    _plot_enhancement_example(test_mix[0][0], example[e.model], test_target[0][0],
                              e.sample_rate, out / "enhancement.png", e.model)
    if cfg.output.save_model:
        save_checkpoint(out / "model", model, extra={"sample_rate": e.sample_rate})
    return report
