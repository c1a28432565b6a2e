"""scikit-learn wrapper: any registered tokenizer as a transformer (``fit`` learns it,
``transform`` returns token ids or embeddings)."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ..validation import SignalError, check_array
from .simple import codebook_report


class TokenTransformer(TransformerMixin, BaseEstimator):
    """Learn a tokenizer on ``X (n, C, T)`` and map trials to tokens.

    Parameters
    ----------
    tokenizer : registry name of a tokenizer (``list_tokenizers()``), e.g.
        ``"tfm_tokenizer"`` or a model front-end such as ``"iq_conv"``.
    preset, params : preset name and keyword arguments for the tokenizer.
    sfreq : sampling rate of ``X``; required by tokenizers that expect a fixed rate (TFM:
        200 Hz), never assumed. Those that provide a ``prepare(X, sfreq)`` function (TFM:
        resample to 200 Hz, 95th-percentile scaling) get their input prepared; for the others
        a rate mismatch is an error.
    max_epochs, batch_size, lr, random_state : pretraining settings passed to the
        tokenizer's ``fit``. ``max_epochs=None`` (default) trains 10 epochs from scratch, or
        not at all when ``weights`` are given.
    weights : a pretrained tokenizer to start from: a catalogue name (e.g.
        ``"tfm-tokenizer-eeg-corpus"``, see ``sigformer models --pretrained``), a bundle folder
        or an official checkpoint; with ``max_epochs`` > 0 pretraining continues from it.
        ``max_epochs=0`` without ``weights`` uses the shipped tokenizer (TFM: pretrained on
        29 h of EEG, ``tfm-tokenizer-eeg-corpus``).
    output : ``"ids"`` (discrete tokens, ``(n, C*T)``) or ``"embeddings"``.
    fit_params : extra keyword arguments for the tokenizer's ``fit`` (TFM: ``device``,
        ``precision``, ``checkpoint_dir``, ``lr_schedule``... of
        :func:`sigformer.recipes.tfm.pretrain_tokenizer`).

    After ``fit``, quantising tokenizers also expose codebook health on the training data:
    ``codebook_usage_``, ``codebook_perplexity_`` and ``codebook_report_`` (usage, used and
    dead codes, perplexity; see :func:`sigformer.tokenizers.codebook_report`).
    """

    def __init__(self, tokenizer: str = "tfm_tokenizer", preset: str | None = None,
                 params: dict | None = None, sfreq: float | None = None,
                 max_epochs: int | None = None, batch_size: int = 64, lr: float = 1e-3,
                 random_state: int | None = 0, output: str = "ids",
                 fit_params: dict | None = None, weights: str | None = None):
        self.tokenizer = tokenizer
        self.preset = preset
        self.params = params
        self.sfreq = sfreq
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.random_state = random_state
        self.output = output
        self.fit_params = fit_params
        self.weights = weights

    def _prepare(self, X) -> np.ndarray:
        X = check_array(X, ndim=(2, 3), name="X")
        if X.ndim == 2:
            X = X[:, None]
        model = self.tokenizer_
        expected = getattr(model, "sfreq", None)
        if expected is not None and self.sfreq is None:  # never assume X is at that rate
            raise SignalError(f"{self.tokenizer} expects {expected:g} Hz input and sfreq is not "
                              f"set: pass sfreq= (the sampling rate of X, e.g. "
                              f"TokenTransformer({self.tokenizer!r}, sfreq=256)) so it can be "
                              f"resampled; sfreq={expected:g} if X is at that rate already")
        if expected is not None and self.sfreq != expected:
            prepare = getattr(type(model), "prepare", None)
            if prepare is None:
                raise SignalError(f"{self.tokenizer} expects {expected:g} Hz, got sfreq="
                                  f"{self.sfreq:g}; resample first")
            return prepare(X, self.sfreq)
        prepare = getattr(type(model), "prepare", None)
        return prepare(X, expected) if prepare is not None and expected else X.astype(np.float32)

    def fit(self, X, y=None):
        if self.output not in ("ids", "embeddings"):
            raise ValueError(f"output must be 'ids' or 'embeddings', got {self.output!r}")
        from ..catalogue import default_pretrained
        from .frontends import create_tokenizer, tokenizer_entry

        tokenizer_entry(self.tokenizer)  # an unknown name is the error, not max_epochs

        epochs = self.max_epochs
        if epochs is None:
            epochs = 0 if self.weights is not None else 10
        weights = self.weights
        if epochs == 0 and weights is None:  # no training asked for: the shipped tokenizer
            weights = default_pretrained(self.tokenizer)
        if not isinstance(epochs, int) or epochs < 0 or (epochs == 0 and weights is None):
            raise ValueError(f"max_epochs must be a positive integer (or 0 with pretrained "
                             f"weights), got {self.max_epochs!r}")
        kwargs = dict(self.params or {})
        if self.preset is not None:
            kwargs["preset"] = self.preset
        if weights is not None:
            kwargs["weights"] = weights
        self.tokenizer_ = create_tokenizer(self.tokenizer, **kwargs)
        Xp = self._prepare(X)
        self.n_channels_ = Xp.shape[1]
        if epochs > 0:
            from ..recipes import pretrain

            pretrain(self.tokenizer_, Xp, max_epochs=epochs, batch_size=self.batch_size,
                     lr=self.lr, seed=self.random_state, **(self.fit_params or {}))
        self.tokenizer_.eval()
        quantizer = getattr(self.tokenizer_, "quantizer", None)
        if quantizer is not None:
            quantizer.reset_usage()
            self.tokenizer_.transform(Xp)  # usage over the training data
            self.codebook_usage_ = quantizer.codebook_usage()
            self.codebook_perplexity_ = quantizer.usage_perplexity()
            self.codebook_report_ = codebook_report(quantizer)
        return self

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "tokenizer_")
        Xp = self._prepare(X)
        if Xp.shape[1] != self.n_channels_:
            raise SignalError(f"fitted on {self.n_channels_} channels, got {Xp.shape[1]}")
        model = self.tokenizer_
        if self.output == "ids":
            return model.transform(Xp)
        discrete = model.discrete
        model.discrete = False  # ask for embeddings
        try:
            return model.transform(Xp)
        finally:
            model.discrete = discrete
