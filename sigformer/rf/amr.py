"""Automatic modulation recognition: training, signal knowledge distillation (SKD),
per-SNR evaluation, complexity measures and SigMF classification.

SKD (ClST paper; its loss is not published in code): the student minimises the hybrid loss
``alpha * CE(y, s) + (1 - alpha) * T^2 * KL(softmax(t / T) || softmax(s / T))`` - hard labels
plus the teacher's temperature-softened outputs (Hinton et al. 2015). Defaults ``T = 4``,
``alpha = 0.5``. Students trained without distillation use the same trainer with
``alpha = 1`` (plain cross-entropy), so the comparison isolates the soft targets.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.radioml import AMRDataset
from ..training import History, predict_logits, train_objective

HIGH_SNR_DB = 10.0


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None,
                      targets: torch.Tensor, temperature: float = 4.0, alpha: float = 0.5
                      ) -> torch.Tensor:
    """SKD hybrid loss; ``teacher_logits=None`` or ``alpha=1`` is plain cross-entropy."""
    hard = F.cross_entropy(student_logits, targets)
    if teacher_logits is None or alpha >= 1:
        return hard
    soft = F.kl_div(F.log_softmax(student_logits / temperature, dim=1),
                    F.softmax(teacher_logits / temperature, dim=1), reduction="batchmean")
    return alpha * hard + (1 - alpha) * temperature ** 2 * soft


def train_amr(model: nn.Module, X: np.ndarray, y: np.ndarray, *,
              teacher_logits: np.ndarray | None = None, temperature: float = 4.0,
              alpha: float = 0.5, max_epochs: int = 20, batch_size: int = 128,
              lr: float = 1e-3, weight_decay: float = 1e-4, warmup_epochs: int = 1,
              seed: int | None = 0, progress_bar: bool = False) -> History:
    """Train a modulation classifier (AdamW, warm-up + cosine); with ``teacher_logits`` the
    SKD hybrid loss, otherwise cross-entropy."""
    if teacher_logits is not None and len(teacher_logits) != len(X):
        raise ValueError(f"{len(teacher_logits)} teacher outputs for {len(X)} frames")

    def step(m, batch):
        xb, yb = batch[0], batch[1]
        logits = m(xb)
        teacher = batch[2] if len(batch) > 2 else None
        loss = distillation_loss(logits, teacher, yb, temperature, alpha)
        return {"loss": loss, "acc": (logits.argmax(1) == yb).float().mean()}

    tensors = [np.asarray(X, np.float32), np.asarray(y, np.int64)]
    if teacher_logits is not None:
        tensors.append(np.asarray(teacher_logits, np.float32))
    return train_objective(model, step, tensors, max_epochs=max_epochs, batch_size=batch_size,
                           lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs,
                           final_lr=lr * 0.01, seed=seed, progress_bar=progress_bar)


def accuracy_by_snr(y_true: np.ndarray, y_pred: np.ndarray, snr: np.ndarray
                    ) -> dict[float, float]:
    return {float(s): float(np.mean(y_pred[snr == s] == y_true[snr == s]))
            for s in np.unique(snr)}


def evaluate_amr(model: nn.Module, data: AMRDataset, high_snr_db: float = HIGH_SNR_DB
                 ) -> dict[str, Any]:
    """Overall and high-SNR accuracy, accuracy per SNR and confusion matrices."""
    from sklearn.metrics import confusion_matrix

    pred = predict_logits(model, data.X).argmax(1)
    high = data.snr >= high_snr_db
    labels = np.arange(len(data.classes))
    return {
        "accuracy": float(np.mean(pred == data.y)),
        "high_snr_accuracy": float(np.mean(pred[high] == data.y[high])) if high.any() else None,
        "accuracy_by_snr": accuracy_by_snr(data.y, pred, data.snr),
        "confusion": confusion_matrix(data.y, pred, labels=labels),
        "confusion_high_snr": confusion_matrix(data.y[high], pred[high], labels=labels),
    }


def count_flops(model: nn.Module, frame_shape: tuple[int, int]) -> int:
    """Floating-point operations of one forward pass on one frame: torch's FLOP counter
    (matrix multiplications and convolutions, 2 per multiply-accumulate) plus the gate
    matrix products of recurrent layers, which that counter does not see."""
    from torch.utils.flop_counter import FlopCounterMode

    recurrent = 0

    def lstm_hook(module: nn.LSTM, inputs, _output):
        nonlocal recurrent
        x = inputs[0]
        steps = x.shape[1] if module.batch_first else x.shape[0]
        gates = 4 * module.hidden_size
        for layer in range(module.num_layers):
            width = module.input_size if layer == 0 else module.hidden_size
            recurrent += 2 * steps * gates * (width + module.hidden_size)

    hooks = [m.register_forward_hook(lstm_hook) for m in model.modules()
             if isinstance(m, nn.LSTM)]
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *frame_shape))
    finally:
        for h in hooks:
            h.remove()
    return int(counter.get_total_flops()) + recurrent


def inference_ms_per_frame(model: nn.Module, X: np.ndarray, batch_size: int = 256,
                           repeats: int = 3) -> float:
    """Best-of-``repeats`` CPU wall time per frame (ms) for batched inference."""
    predict_logits(model, X[:batch_size], batch_size)  # warm-up
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        predict_logits(model, X, batch_size)
        best = min(best, time.perf_counter() - t0)
    return 1e3 * best / len(X)


def plot_accuracy_by_snr(results: dict[str, dict[float, float]], path=None, title: str = ""):
    """Accuracy against SNR, one line per model."""
    from ..report import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, by_snr in results.items():
        snrs = sorted(by_snr)
        ax.plot(snrs, [by_snr[s] for s in snrs], marker="o", ms=3, label=name)
    ax.set(xlabel="SNR (dB)", ylabel="accuracy", ylim=(0, 1), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


# --- SigMF -----------------------------------------------------------------------------------

def classify_sigmf(path: str | Path, model: nn.Module, classes: list[str], *,
                   normalization: str = "l1", hop: int | None = None,
                   min_power_db: float | None = 30.0, out_meta: str | Path | None = None,
                   batch_size: int = 256) -> dict[str, Any]:
    """Frame a SigMF recording, classify every frame and write the predictions back as SigMF
    annotations (merged runs of equal labels, with the best frame confidence).

    Frames quieter than ``min_power_db`` below the loudest frame (gaps between bursts) are
    skipped. Returns the annotations and a label histogram."""
    from ..data.io import DataError
    from ..data.sigmf_io import frame_signal, prediction_annotations, read_sigmf, write_annotations

    frame_length = int(getattr(model, "n_times", 0)) or None
    if frame_length is None:
        raise ValueError("the model does not declare its frame length (n_times)")
    recording = read_sigmf(path)
    if not recording.is_complex:
        raise DataError(f"{path}: {recording.datatype} holds real samples; modulation "
                         f"recognition needs complex IQ")
    iq = recording.samples if recording.samples.ndim == 1 else recording.samples[:, 0]
    if len(iq) < frame_length:
        raise DataError(f"{path} has {len(iq)} samples, fewer than one {frame_length}-sample "
                         f"frame")
    frames, starts = frame_signal(iq, frame_length, hop, normalization=normalization,
                                  min_power_db=min_power_db)
    logits = predict_logits(model, frames, batch_size)
    proba = torch.softmax(torch.as_tensor(logits), 1).numpy()
    labels = [classes[i] for i in proba.argmax(1)]
    annotations = prediction_annotations(starts, frame_length, labels, proba.max(1))
    meta = write_annotations(path, annotations, out_meta)
    values, counts = np.unique(labels, return_counts=True)
    return {"meta": str(meta), "n_frames": len(frames), "annotations": annotations,
            "frame_labels": dict(zip(values.tolist(), counts.tolist()))}


# --- pipeline -----------------------------------------------------------------------------

def load_amr_data(a) -> AMRDataset:
    """The frames an ``amr`` pipeline section asks for, renormalised per frame."""
    from ..data.radioml import AMRDataset, generate_radioml, load_rml2016, load_rml2018
    from ..data.sigmf_io import normalize_frames

    if a.source == "generator":
        return generate_radioml(a.n_per_condition, snrs=a.snrs, frame_length=a.frame_length,
                                seed=a.seed, normalization=a.normalization)
    if a.path is None:
        from ..pipeline import PipelineConfigError

        raise PipelineConfigError(f"amr.source {a.source!r} needs amr.path")
    if a.source == "rml2016":
        data = load_rml2016(a.path, allow_pickle=a.allow_pickle)
    elif a.source == "rml2018":
        data = load_rml2018(a.path, max_frames=a.max_frames, seed=a.seed)
    else:
        data = AMRDataset.load(a.path)
    if a.max_frames is not None and len(data) > a.max_frames:
        keep = np.random.default_rng(a.seed).choice(len(data), a.max_frames, replace=False)
        data = data.subset(np.sort(keep))
    data.X = normalize_frames(data.X, a.normalization)
    return data


def _model_row(model: nn.Module, test: AMRDataset, hist: History, seconds: float
               ) -> dict[str, Any]:
    row = evaluate_amr(model, test)
    row.update(parameters=int(sum(p.numel() for p in model.parameters())),
               flops=count_flops(model, test.X.shape[1:]),
               ms_per_frame=inference_ms_per_frame(model, test.X[:512]),
               train_seconds=round(seconds, 1),
               final_train_loss=hist.series("train_loss")[-1])
    return row


def run_amr_pipeline(cfg, out_dir: str | Path | None = None, log=print) -> dict[str, Any]:
    """``task: amr``: load/generate frames, train the models, distil students from the
    teacher (and train them alone), evaluate per SNR, write metrics, plots and checkpoints."""
    import json

    from ..checkpoint import save_checkpoint
    from ..models import create_model
    from ..report import plot_confusion_matrix

    a = cfg.amr
    out = Path(out_dir or cfg.output.dir.format(name=cfg.name))
    t0 = time.perf_counter()
    log(f"[1/4] loading frames ({a.source})")
    data = load_amr_data(a)
    train, test = data.split(a.test_size, a.seed)
    log(f"      {len(train)} training / {len(test)} test frames of {data.frame_length} samples, "
        f"{len(data.classes)} classes, SNR {data.snr.min():g}..{data.snr.max():g} dB")
    shape = dict(n_chans=data.X.shape[1], n_outputs=len(data.classes),
                 n_times=data.frame_length)
    models: dict[str, nn.Module] = {}
    rows: dict[str, dict[str, Any]] = {}

    def fit(label, m, teacher_logits=None, alpha=1.0):
        model = create_model(m.name, m.preset, **shape, **m.params)
        t = time.perf_counter()
        hist = train_amr(model, train.X, train.y, teacher_logits=teacher_logits,
                         temperature=a.distill.temperature, alpha=alpha,
                         max_epochs=m.max_epochs, batch_size=m.batch_size, lr=m.lr,
                         weight_decay=m.weight_decay, seed=a.seed,
                         progress_bar=cfg.train.progress_bar)
        rows[label] = _model_row(model, test, hist, time.perf_counter() - t)
        models[label] = model
        log(f"      {label:24s} acc {rows[label]['accuracy']:.3f}, >= {HIGH_SNR_DB:g} dB "
            f"{rows[label]['high_snr_accuracy']:.3f}, {rows[label]['parameters']:,} params")

    log(f"[2/4] training {len(a.models)} model(s)")
    labels = {}
    for m in a.models:
        label = m.name if m.preset is None else f"{m.name}:{m.preset}"
        labels[m.name] = labels[label] = label
        fit(label, m)
    d = a.distill
    if d.students:
        if d.teacher not in labels:
            from ..pipeline import PipelineConfigError

            raise PipelineConfigError(f"amr.distill.teacher {d.teacher!r} is not one of the trained "
                             f"models {sorted(set(labels.values()))}")
        teacher = models[labels[d.teacher]]
        log(f"[3/4] distilling {len(d.students)} student(s) from {labels[d.teacher]} "
            f"(T={d.temperature:g}, alpha={d.alpha:g})")
        teacher_logits = predict_logits(teacher, train.X)
        for m in d.students:
            fit(f"{m.name}+SKD", m, teacher_logits, d.alpha)
            if d.compare_without:
                fit(m.name, m)
    report: dict[str, Any] = {
        "pipeline": cfg.name, "source": a.source, "classes": list(data.classes),
        "n_train": len(train), "n_test": len(test), "high_snr_db": HIGH_SNR_DB,
        "models": {k: {kk: vv for kk, vv in v.items() if not kk.startswith("confusion")}
                   for k, v in rows.items()},
        "seconds": round(time.perf_counter() - t0, 2),
    }
    log(f"[4/4] writing the report to {out}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline.json").write_text(cfg.model_dump_json(indent=2))
    (out / "metrics.json").write_text(json.dumps(report, indent=2, default=str))
    plot_accuracy_by_snr({k: v["accuracy_by_snr"] for k, v in rows.items()},
                         out / "accuracy_vs_snr.png", title=cfg.name)
    for label, row in rows.items():
        safe = label.replace(":", "_").replace("+", "_")
        plot_confusion_matrix(row["confusion_high_snr"], data.classes,
                              out / f"confusion_{safe}.png",
                              title=f"{label}, SNR >= {HIGH_SNR_DB:g} dB")
        if cfg.output.save_model:
            save_checkpoint(out / "models" / safe, models[label],
                            extra={"classes": list(data.classes),
                                   "normalization": a.normalization,
                                   "frame_length": data.frame_length})
    return report
