"""scikit-learn wrapper: any registered tokenizer as a transformer (``fit`` learns it,
``transform`` returns token ids or embeddings)."""

from __future__ import annotations

import inspect

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ..validation import SignalError, check_array
from .base import ChannelIndependent, Tokenizer
from .simple import codebook_report


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _missing_arguments(factory, kwargs: dict) -> list[str]:
    """The required keyword-able parameters of ``factory`` (a tokenizer class or factory)
    that ``kwargs`` does not give; [] when its signature cannot be read."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [name for name, p in signature.parameters.items()
            if p.kind in kinds and p.default is inspect.Parameter.empty and name not in kwargs]


def _training_route(tokenizer: Tokenizer) -> str | None:
    """How a tokenizer learns: ``"recipe"`` (sigformer.recipes.pretrain), ``"fit"`` (its own
    ``fit``, e.g. VQ's codebook) or None (its ``fit`` learns nothing)."""
    from ..recipes import has_pretraining_recipe

    if has_pretraining_recipe(tokenizer):
        return "recipe"
    if isinstance(tokenizer, ChannelIndependent):  # its fit runs the inner tokenizer's
        return "fit" if _training_route(tokenizer.tokenizer) == "fit" else None
    return "fit" if type(tokenizer).fit is not Tokenizer.fit else None


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
    max_epochs, batch_size, lr, random_state : training settings (see :meth:`fit` for what
        each kind of tokenizer learns). ``max_epochs=None`` (default) trains 10 epochs from
        scratch, or not at all when ``weights`` are given or the tokenizer cannot be
        trained; 0 means no training.
    weights : a pretrained tokenizer to start from: a catalogue name (e.g.
        ``"tfm-tokenizer-eeg-corpus"``, see ``sigformer models --pretrained``), a bundle folder
        or an official checkpoint; with ``max_epochs`` > 0 pretraining continues from it.
        ``max_epochs=0`` without ``weights`` uses the shipped tokenizer (TFM: pretrained on
        29 h of EEG, ``tfm-tokenizer-eeg-corpus``).
    output : ``"auto"`` (default: ids from a discrete tokenizer, embeddings from a continuous
        one such as ``stft`` or ``patch``), ``"ids"`` (discrete tokens, ``(n, C*T)``; only for
        discrete tokenizers such as ``tfm_tokenizer`` or ``vq``) or ``"embeddings"``.
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
                 random_state: int | None = 0, output: str = "auto",
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

    def _prepare(self, X, model: Tokenizer | None = None) -> np.ndarray:
        X = check_array(X, ndim=(2, 3), name="X")
        if X.ndim == 2:
            X = X[:, None]
        model = self.tokenizer_ if model is None else model
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

    def _check_epochs(self) -> None:
        """``max_epochs`` None (the default) or an integer >= 0 (0: no training), and the
        other settings, as :func:`sigformer.training.check_training_args` checks them."""
        from ..training import check_training_args

        epochs = self.max_epochs
        zero = _is_int(epochs) and epochs == 0
        try:
            check_training_args(max_epochs=1 if epochs is None or zero else epochs,
                                batch_size=self.batch_size, lr=self.lr)
        except ValueError as err:
            if "max_epochs" in str(err):
                raise ValueError(f"max_epochs must be None (the default), an integer >= 1, "
                                 f"or 0 with pretrained weights or for a tokenizer that "
                                 f"learns nothing, got {epochs!r}") from None
            raise

    def fit(self, X, y=None):
        """Build the tokenizer and learn it on ``X``.

        How it learns depends on the tokenizer: one with a training recipe (TFM: masked
        pretraining) or its own ``fit`` (VQ: k-means + EMA codebook; ``channel_independent``
        over such a tokenizer) trains for ``max_epochs`` (default 10; none when ``weights``
        are given). One without learnable weights (``stft``) has nothing to learn: ``fit``
        records what ``transform`` checks (the channel count). One with weights but no
        training procedure in sigformer (``patch``, a model front-end such as ``iq_conv``)
        is refused unless ``weights`` are given or ``max_epochs=0`` (keep the initial,
        ``random_state``-seeded weights as a fixed random projection).

        All or nothing: the fitted attributes are set only when fitting succeeded, so a
        failed ``fit`` leaves the transformer as it was.
        """
        if self.output not in ("auto", "ids", "embeddings"):
            raise ValueError(f"output must be 'auto', 'ids' or 'embeddings', got "
                             f"{self.output!r}")
        from ..catalogue import default_pretrained
        from .frontends import create_tokenizer, tokenizer_entry

        entry = tokenizer_entry(self.tokenizer)  # an unknown name is the error, not max_epochs
        self._check_epochs()
        weights = self.weights
        if self.max_epochs == 0 and weights is None:  # no training asked for: shipped weights
            weights = default_pretrained(self.tokenizer)
        kwargs = dict(self.params or {})
        if self.preset is not None:
            kwargs["preset"] = self.preset
        if weights is not None:
            kwargs["weights"] = weights
        if self.random_state is not None:  # initial weights (patch projection, codebook)
            torch.manual_seed(self.random_state)
        self._check_required_params(entry.factory, kwargs)
        tokenizer = create_tokenizer(self.tokenizer, **kwargs)
        if self.output == "ids" and not tokenizer.discrete:
            raise ValueError(f"{self.tokenizer!r} makes continuous tokens (no ids): use "
                             f"output='embeddings', or tokenizer='vq' with params="
                             f"{{'base': {self.tokenizer!r}, ...}} for discrete ids")
        Xp = self._prepare(X, tokenizer)
        # a model instance in params lends its (trained) weights, as weights= does
        pretrained = weights is not None or isinstance(kwargs.get("model"), torch.nn.Module)
        self._learn(tokenizer, Xp, pretrained=pretrained)
        tokenizer.eval()
        fitted: dict[str, object] = {"tokenizer_": tokenizer, "n_channels_": Xp.shape[1]}
        quantizer = getattr(tokenizer, "quantizer", None)
        if quantizer is not None:
            quantizer.reset_usage()
            tokenizer.transform(Xp)  # usage over the training data
            fitted.update(codebook_usage_=quantizer.codebook_usage(),
                          codebook_perplexity_=quantizer.usage_perplexity(),
                          codebook_report_=codebook_report(quantizer))
        for attr in ("codebook_usage_", "codebook_perplexity_", "codebook_report_"):
            self.__dict__.pop(attr, None)  # from an earlier fit
        self.__dict__.update(fitted)
        return self

    def _check_required_params(self, factory, kwargs: dict) -> None:
        """Name the tokenizer's arguments that have no default and were not given, and how to
        give them, instead of letting its constructor's TypeError through."""
        missing = _missing_arguments(factory, kwargs)
        if missing:
            example = ", ".join(f"{name!r}: ..." for name in missing)
            raise ValueError(f"tokenizer {self.tokenizer!r} needs {', '.join(missing)} (no "
                             f"default); pass them as TokenTransformer({self.tokenizer!r}, "
                             f"params={{{example}}})")

    def _learn(self, tokenizer: Tokenizer, Xp: np.ndarray, pretrained: bool) -> None:
        """Train ``tokenizer`` on prepared trials as its kind allows (see :meth:`fit`)."""
        route = _training_route(tokenizer)
        epochs = self.max_epochs
        if epochs is None:
            epochs = 0 if pretrained else 10
        if epochs == 0:
            if route is not None and not pretrained:  # would transform with random weights
                raise ValueError(
                    f"max_epochs=0 with no weights: {self.tokenizer!r} is learned and has no "
                    f"pretrained default here; pass weights= or max_epochs >= 1")
            return
        fit_params = dict(self.fit_params or {})
        if route == "recipe":
            from ..recipes import pretrain

            pretrain(tokenizer, Xp, max_epochs=int(epochs), batch_size=self.batch_size,
                     lr=self.lr, seed=self.random_state, **fit_params)
        elif route == "fit":
            seed = 0 if self.random_state is None else self.random_state
            tokenizer.fit(Xp, epochs=int(epochs), batch_size=self.batch_size, seed=seed,
                          **fit_params)
        elif not any(p.requires_grad for p in tokenizer.parameters()):
            return  # nothing to learn (stft): transform needs only n_channels_
        else:
            raise ValueError(
                f"{self.tokenizer!r} has learnable weights but no training procedure in "
                f"sigformer (its fit learns nothing): pass weights= (e.g. a trained model's "
                f"front-end, or model= in params), or max_epochs=0 to keep its initial "
                f"weights (seeded by random_state) as a fixed random projection")

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "tokenizer_")
        Xp = self._prepare(X)
        if Xp.shape[1] != self.n_channels_:
            raise SignalError(f"fitted on {self.n_channels_} channels, got {Xp.shape[1]}")
        model = self.tokenizer_
        if self.output == "ids" or (self.output == "auto" and model.discrete):
            return model.transform(Xp)
        discrete = model.discrete
        model.discrete = False  # ask for embeddings
        try:
            return model.transform(Xp)
        finally:
            model.discrete = discrete
