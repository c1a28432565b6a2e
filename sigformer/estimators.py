"""scikit-learn estimators around any registered model.

``SignalClassifier`` stores its constructor arguments untouched (so ``clone``, ``GridSearchCV``
and ``Pipeline`` work) and keeps learned state in attributes ending in ``_``. Pickling goes
through safetensors bytes + the JSON-able config rather than pickling the torch module, so it
also works for braindecode models whose parametrized weights cannot be pickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from .checkpoint import (
    kwargs_from_json,
    kwargs_to_json,
    load_checkpoint,
    save_checkpoint,
    state_dict_tensors,
)
from .models.registry import create_model, get_model_class
from .recording import Epochs
from .training import predict_logits, seed_everything, train_classifier
from .validation import SignalError, check_array, check_labels


def as_trials(X) -> tuple[np.ndarray, dict[str, Any]]:
    """Trials array ``(n_trials, n_channels, n_times)`` + what is known about it.

    Accepts numpy arrays, :class:`sigformer.Epochs` and ``mne.Epochs`` (converted to
    microvolts, as braindecode does). A 2-D array is read as single-channel trials
    ``(n_trials, n_times)``.
    """
    info: dict[str, Any] = {}
    if sp.issparse(X):
        raise TypeError("sparse input is not supported: signal trials must be a dense array")
    if isinstance(X, Epochs):
        info = {"sfreq": X.sfreq, "ch_names": list(X.channels)}
        X = X.data
    elif type(X).__module__.startswith("mne") and hasattr(X, "get_data"):
        info = {"sfreq": float(X.info["sfreq"]), "ch_names": list(X.ch_names)}
        X = X.get_data(units="uV", copy=True)
    X = np.asarray(X)
    if X.ndim == 2:  # sklearn's view: single-channel trials with n_times features
        info["n_features"] = X.shape[1]
    if X.dtype == object:
        X = X.astype(float)
    if X.ndim == 1:
        raise SignalError(f"X is 1-D (shape {X.shape}). Reshape your data: trials must be "
                          "(n_trials, n_channels, n_times), or (n_trials, n_times) for one channel")
    if X.ndim == 2 and 0 in X.shape:  # sklearn's wording, which its checks look for
        raise SignalError(f"Found array with {X.shape[1]} feature(s) (shape={X.shape}) while a "
                          f"minimum of 1 is required." if X.shape[0] else
                          f"Found array with 0 sample(s) (shape={X.shape}) while a minimum of "
                          "1 is required.")
    X = check_array(X, ndim=(2, 3), name="X")
    if X.ndim == 2:
        X = X[:, None, :]
    return X.astype(np.float32, copy=False), info


def _labels_of(X, y):
    if y is None and isinstance(X, Epochs):
        return X.labels
    if y is None and hasattr(X, "events") and hasattr(X, "get_data"):
        return X.events[:, 2]
    return y


class SignalClassifier(ClassifierMixin, BaseEstimator):
    """Classify multichannel signal trials with any registered model.

    Parameters
    ----------
    model : registry name, e.g. ``"dbconformer"`` or ``"braindecode.EEGNet"``.
    preset : optional model preset; ``model_params`` override it. ``n_chans``, ``n_times``,
        ``n_outputs`` (and ``sfreq`` when known) are inferred from the data in ``fit``.
    max_epochs, batch_size, lr, weight_decay, optimizer : training settings.
    validation_split : fraction held out (stratified) for validation and early stopping.
    early_stopping_patience : epochs without ``val_loss`` improvement before stopping.
    random_state : seed for weight initialisation, shuffling and the validation split.
    accelerator, devices, strategy, num_nodes : passed to the Lightning ``Trainer`` (e.g.
        ``accelerator="gpu", devices=4, strategy="ddp"``; ``num_nodes`` for several machines).
    verbose : show Lightning's progress bar.
    """

    def __init__(self, model: str = "dbconformer", preset: str | None = None,
                 model_params: dict | None = None, max_epochs: int = 100,
                 batch_size: int = 32, lr: float = 1e-3, weight_decay: float = 0.0,
                 optimizer: str = "adam", validation_split: float = 0.0,
                 early_stopping_patience: int | None = None, random_state: int | None = 0,
                 accelerator: str = "cpu", devices: int | str = 1, strategy: str = "auto",
                 num_nodes: int = 1, verbose: bool = False):
        self.model = model
        self.preset = preset
        self.model_params = model_params
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer = optimizer
        self.validation_split = validation_split
        self.early_stopping_patience = early_stopping_patience
        self.random_state = random_state
        self.accelerator = accelerator
        self.devices = devices
        self.strategy = strategy
        self.num_nodes = num_nodes
        self.verbose = verbose

    # --- fitting ------------------------------------------------------------------------
    def _model_kwargs(self, n_chans: int, n_times: int, n_outputs: int, sfreq) -> dict:
        kwargs = dict(self.model_params or {})
        kwargs.update(n_chans=n_chans, n_times=n_times, n_outputs=n_outputs)
        if sfreq is not None:
            kwargs["sfreq"] = sfreq
        return kwargs

    def fit(self, X, y=None):
        get_model_class(self.model)  # unknown names fail before any work
        y = _labels_of(X, y)
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y "
                             "is None (give labels, or Epochs that carry them)")
        X, info = as_trials(X)
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        y = check_labels(y, len(X))
        check_classification_targets(y)
        self.label_encoder_ = LabelEncoder().fit(y)
        self.classes_ = self.label_encoder_.classes_
        if len(self.classes_) < 2:
            raise SignalError(f"y has 1 class ({self.classes_[0]!r}); a classifier needs at "
                              "least 2")
        self.n_features_in_ = info.get("n_features", X.shape[1])
        y_idx = self.label_encoder_.transform(y)
        self.n_chans_, self.n_times_ = X.shape[1], X.shape[2]
        self.sfreq_ = info.get("sfreq")
        self.ch_names_ = info.get("ch_names")
        self.model_kwargs_ = self._model_kwargs(self.n_chans_, self.n_times_,
                                                len(self.classes_), self.sfreq_)
        seed_everything(self.random_state)  # the initial weights depend on the seed too
        self.module_ = create_model(self.model, self.preset, **self.model_kwargs_)
        X_val = y_val = None
        if self.validation_split:
            X, X_val, y_idx, y_val = train_test_split(
                X, y_idx, test_size=self.validation_split, stratify=y_idx,
                random_state=self.random_state)
        if hasattr(self.module_, "fit_unsupervised"):  # e.g. tokenizer pretraining
            self.module_.fit_unsupervised(X)
        self.history_ = train_classifier(
            self.module_, X, y_idx, X_val=X_val, y_val=y_val, max_epochs=self.max_epochs,
            batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
            optimizer=self.optimizer, seed=self.random_state,
            early_stopping_patience=self.early_stopping_patience,
            accelerator=self.accelerator, devices=self.devices, strategy=self.strategy,
            num_nodes=self.num_nodes, progress_bar=self.verbose,
        )
        return self

    # --- prediction ---------------------------------------------------------------------
    def _checked_input(self, X) -> np.ndarray:
        check_is_fitted(self, "module_")
        X, info = as_trials(X)
        n_features = info.get("n_features")
        if n_features is not None and n_features != self.n_features_in_:
            raise ValueError(f"X has {n_features} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input")
        if X.shape[1:] != (self.n_chans_, self.n_times_):
            raise SignalError(
                f"the model was fitted on trials of {self.n_chans_} channels x {self.n_times_} "
                f"samples, got {X.shape[1]} x {X.shape[2]}"
            )
        if self.sfreq_ and info.get("sfreq") and info["sfreq"] != self.sfreq_:
            raise SignalError(f"sampling rate {info['sfreq']:g} Hz differs from the "
                              f"{self.sfreq_:g} Hz the model was fitted on; resample first")
        if self.ch_names_ and info.get("ch_names") and info["ch_names"] != self.ch_names_:
            raise SignalError(f"channels differ from those seen in fit: expected "
                              f"{self.ch_names_}, got {info['ch_names']}")
        return X

    def decision_function(self, X) -> np.ndarray:
        X = self._checked_input(X)
        logits = predict_logits(self.module_, X)
        return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits

    def predict_proba(self, X) -> np.ndarray:
        X = self._checked_input(X)
        logits = torch.from_numpy(predict_logits(self.module_, X))
        return torch.softmax(logits, dim=-1).numpy()

    def predict(self, X) -> np.ndarray:
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]

    # --- persistence --------------------------------------------------------------------
    def _estimator_meta(self) -> dict[str, Any]:
        return {
            "estimator": type(self).__name__, "params": self.get_params(),
            "classes": self.classes_.tolist(), "n_chans": self.n_chans_,
            "n_times": self.n_times_, "sfreq": self.sfreq_, "ch_names": self.ch_names_,
            "n_features_in": self.n_features_in_,
        }

    def save(self, path) -> Path:
        """Checkpoint (safetensors + JSON) that :meth:`load` turns back into this estimator."""
        check_is_fitted(self, "module_")
        return save_checkpoint(path, self.module_, extra={"estimator": self._estimator_meta()})

    @classmethod
    def load(cls, path) -> SignalClassifier:
        module, config = load_checkpoint(path)
        meta = config.get("extra", {}).get("estimator")
        if not meta:
            raise ValueError(f"{path} holds a model but no estimator metadata; load it with "
                             "sigformer.checkpoint.load_checkpoint")
        est = cls(**meta["params"])
        est._restore(module, meta, config["kwargs"])
        return est

    def _restore(self, module, meta: dict, model_kwargs: dict) -> None:
        self.module_ = module
        self.model_kwargs_ = model_kwargs
        self.classes_ = np.asarray(meta["classes"])
        self.label_encoder_ = LabelEncoder().fit(self.classes_)
        self.n_chans_, self.n_times_ = meta["n_chans"], meta["n_times"]
        self.sfreq_, self.ch_names_ = meta["sfreq"], meta["ch_names"]
        self.n_features_in_ = meta.get("n_features_in", self.n_chans_)

    def __getstate__(self):
        state = self.__dict__.copy()
        module = state.pop("module_", None)
        if module is not None:  # weights as safetensors bytes: no torch module in the pickle
            state["_module_weights"] = save_tensors(state_dict_tensors(module))
            state["_module_config"] = json.dumps(kwargs_to_json(module.sigformer_config["kwargs"]))
        return state

    def __setstate__(self, state):
        weights = state.pop("_module_weights", None)
        config = state.pop("_module_config", None)
        self.__dict__.update(state)
        if weights is not None:
            kwargs = kwargs_from_json(json.loads(config))
            self.module_ = create_model(self.model, **kwargs)
            self.module_.load_state_dict(load_tensors(weights))
            self.module_.eval()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        tags.input_tags.two_d_array = True  # read as single-channel trials
        tags.input_tags.three_d_array = True
        return tags
