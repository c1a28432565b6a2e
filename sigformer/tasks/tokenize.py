"""``task: tokenize``: load -> preprocess -> windows -> learn the tokenizer -> token statistics,
plots and a tokenizer bundle."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from ..spec import SignalSpec
from .classify import _InputProbe, build_preprocess, chain_configs, override_data
from .config import (
    BaseConfig,
    DataConfig,
    EpochsConfig,
    PipelineConfigError,
    StageConfig,
    TokenizerConfig,
)
from .registry import RunContext, Task, register_task, setter


class TokenizeConfig(BaseConfig):
    task: Literal["tokenize"] = "tokenize"
    data: DataConfig = Field(default_factory=DataConfig)
    preprocess: list[StageConfig] = Field(default_factory=list)
    epochs: EpochsConfig = Field(default_factory=EpochsConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)


def load_windows(cfg: TokenizeConfig, probe: _InputProbe):
    """Windows to tokenize. Bonn segments are windows already: the chain runs per window."""
    from .classify import load_epochs

    if cfg.data.source in ("bonn", "moabb") and cfg.preprocess:
        plain = cfg.model_copy(update={"preprocess": []})
        epochs = load_epochs(plain)
        probe.spec = SignalSpec.eeg(epochs.sfreq, epochs.channels)
        return probe.chain.transform(epochs)
    return load_epochs(cfg, probe)


def run_tokenize(cfg: TokenizeConfig, ctx: RunContext) -> dict[str, Any]:
    from ..bundle import Bundle
    from ..guardrails import check_codebook
    from ..report import plot_codebook_usage, plot_token_grid
    from ..tokenizers import TokenTransformer

    log = ctx.log
    log(f"[1/3] loading data ({cfg.data.source})")
    probe = _InputProbe(build_preprocess(cfg, legacy_defaults=False))
    epochs = load_windows(cfg, probe)
    log(f"      {len(epochs)} windows x {len(epochs.channels)} channels x {epochs.n_times} "
        f"samples at {epochs.sfreq:g} Hz")
    t = cfg.tokenizer
    from ..catalogue import default_pretrained

    weights = t.weights
    if t.max_epochs == 0 and weights is None:
        weights = default_pretrained(t.name)  # no training asked for: the shipped tokenizer
        if weights is None:
            raise PipelineConfigError(f"tokenizer.max_epochs is 0 but no tokenizer.weights are "
                                      f"given and {t.name!r} ships none: train (max_epochs > "
                                      f"0) or name pretrained weights")
    origin = f"from {weights}" if weights else "from scratch"
    log(f"[2/3] tokenizer {t.name!r} {origin}, {t.max_epochs} training epochs")
    tt = TokenTransformer(t.name, t.preset, dict(t.params), sfreq=epochs.sfreq,
                          max_epochs=t.max_epochs, batch_size=t.batch_size, lr=t.lr,
                          random_state=t.seed, weights=weights,
                          fit_params={"progress_bar": t.progress_bar}).fit(epochs.data)
    ids = tt.transform(epochs.data)
    tokenizer = tt.tokenizer_
    n_codes = tokenizer.quantizer.num_codes
    counts = np.bincount(ids.ravel(), minlength=n_codes)
    report: dict[str, Any] = {
        "pipeline": cfg.name, "tokenizer": t.name, "data": cfg.data.source,
        "n_windows": len(epochs), "n_channels": len(epochs.channels),
        "tokens_per_window": int(ids.shape[1]), "codebook_size": int(n_codes),
        "codebook_usage": tt.codebook_usage_, "codebook_perplexity": tt.codebook_perplexity_,
        "n_parameters": int(sum(p.numel() for p in tokenizer.parameters())),
        "final_loss": (tokenizer.history_.series("train_loss")[-1]
                       if getattr(tokenizer, "history_", None) is not None else None),
    }
    warning = check_codebook(tt.codebook_usage_, n_codes, tt.codebook_perplexity_)
    if warning:
        report["warnings"] = [warning]
    log(f"      codebook usage {tt.codebook_usage_:.1%}, perplexity "
        f"{tt.codebook_perplexity_:.1f} of {n_codes} codes")
    if not ctx.main:
        return report
    out = ctx.dir
    log(f"[3/3] writing the report to {ctx.final_dir}")
    np.save(out / "token_ids.npy", ids)
    plot_codebook_usage(counts, out / "codebook_usage.png", title=t.name)
    classes = [k for k, _ in sorted(epochs.event_id.items(), key=lambda kv: kv[1])]
    plot_token_grid(ids, epochs.labels, classes, len(epochs.channels),
                    out / "tokens.png", title=t.name)
    if cfg.output.save_model:
        input_spec = probe.spec or SignalSpec.eeg(epochs.sfreq, epochs.channels)
        model_spec, extra = _tokenizer_model_spec(tokenizer, epochs)
        bundle = Bundle(
            model=tokenizer, task="tokenize", input_spec=input_spec,
            chain=chain_configs(probe.chain), model_spec=model_spec, extra=extra,
            provenance={"summary": f"{t.name} learned on {cfg.data.source}",
                        "data": cfg.data.model_dump(mode="json"),
                        "recipe": t.model_dump(mode="json"),
                        "results": {k: report[k] for k in ("codebook_usage",
                                                           "codebook_perplexity",
                                                           "final_loss")}})
        bundle.save(out / "tokenizer")
    return report


def _tokenizer_model_spec(tokenizer, epochs) -> tuple[SignalSpec, dict[str, Any]]:
    """What the tokenizer itself takes: TFM runs on ``tfm_prepare``'s output (resampled to
    its 200 Hz, percentile-scaled: ``a.u.``), not on the epochs' rate and window, so an
    export of the bundle must take that input (as the shipped tokenizer's spec says)."""
    extra = {"sfreq": tokenizer.sfreq, "input_sfreq": epochs.sfreq}
    rate = getattr(tokenizer, "sfreq", None)
    if type(tokenizer).__name__ != "TFMTokenizer" or not rate:
        return SignalSpec.eeg(epochs.sfreq, epochs.channels, window=epochs.n_times), extra
    window = int(round(epochs.n_times * rate / epochs.sfreq))  # as tfm_prepare resamples
    extra["prepare"] = (f"tfm_prepare (resample to {rate:g} Hz, per-window 95th-percentile "
                        f"scaling)")
    return SignalSpec.eeg(rate, epochs.channels, window=window, unit="a.u."), extra


def _summary(report: dict):
    return {k: report[k] for k in ("codebook_usage", "codebook_perplexity",
                                   "tokens_per_window")}


register_task(Task(
    name="tokenize", config_cls=TokenizeConfig, run=run_tokenize,
    overrides={"max_epochs": setter("tokenizer.max_epochs"),
               "progress": setter("tokenizer.progress_bar"),
               "data": override_data},
    summary=_summary, description="EEG windows -> discrete tokens (codebook statistics)"))
