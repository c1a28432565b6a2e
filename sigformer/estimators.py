"""scikit-learn estimators around any registered model.

``SignalClassifier`` stores its constructor arguments untouched (so ``clone``, ``GridSearchCV``
and ``Pipeline`` work) and keeps learned state in attributes ending in ``_``. Pickling goes
through safetensors bytes + the JSON-able config rather than pickling the torch module, so it
also works for braindecode models whose parametrized weights cannot be pickled.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
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

from .augment import build_augmentations, to_specs
from .checkpoint import (
    kwargs_from_json,
    kwargs_to_json,
    load_checkpoint,
    save_checkpoint,
    state_dict_tensors,
)
from .models.registry import (
    BRAINDECODE_PREFIX,
    UnknownModelError,
    constructor_parameters,
    create_model,
    get_model_class,
)
from .recording import Epochs
from .training import (
    alignment_references,
    check_training_args,
    euclidean_align,
    predict_logits,
    reinit_head,
    seed_everything,
    train_classifier,
)
from .validation import ScaleWarning, SignalError, check_array, check_labels  # noqa: F401 - ScaleWarning: public here too

# Training and prediction data whose median absolute amplitudes differ by this factor or more
# are almost surely in different units (volts vs microvolts differ by 1e6).
SCALE_MISMATCH_FACTOR = 1e3


class AlignmentWarning(UserWarning):
    """Euclidean alignment runs on too few trials to estimate a reference reliably."""


# the causes already warned about in the current alignment_warnings_once() block (None: none)
_ALIGNMENT_WARNED: ContextVar[set[str] | None] = ContextVar("sigformer_alignment_warned",
                                                             default=None)


@contextmanager
def alignment_warnings_once() -> Iterator[None]:
    """Within this block an :class:`AlignmentWarning` is shown once per cause (too few trials
    to fit with, too few to predict with), however many estimators fit and predict in it:
    cross-validation fits a fresh clone per fold, and each would warn again (``sigformer
    run`` wraps a classification run in it). Outside it, each fit warns once per cause."""
    token = _ALIGNMENT_WARNED.set(set())
    try:
        yield
    finally:
        _ALIGNMENT_WARNED.reset(token)


def _small_groups_text(small: dict[Any, int], n_chans: int) -> str:
    """``subject 0 (36 trials, 64 channels)``, several subjects, or the call's trials when
    no subjects were given (they form one group)."""
    def trials(n: int) -> str:
        return f"{n} trial{'' if n == 1 else 's'}"

    if None in small:
        return (f"the {trials(small[None])} of this call ({n_chans} channels; without "
                f"subjects= they form one group)")
    groups = [f"{g!s} ({trials(n)}" for g, n in small.items()]
    if len(groups) == 1:
        return f"subject {groups[0]}, {n_chans} channels)"
    more = f" and {len(groups) - 5} more" if len(groups) > 5 else ""
    return f"subjects {'), '.join(groups[:5])}){more} ({n_chans} channels)"


def median_abs_amplitude(X: np.ndarray) -> float:
    """Typical amplitude of a batch of trials: EEG in volts is ~1e-5, in microvolts ~10."""
    return float(np.median(np.abs(np.asarray(X, dtype=np.float64))))


# Training data below this median absolute amplitude are almost surely EEG in volts: the
# models' normalisation layers (BatchNorm eps 1e-5 vs a variance of ~1e-10) drown them.
VOLTS_LIKE_AMPLITUDE = 1e-3


def warn_if_volts(scale: float, what: str = "the training trials", stacklevel: int = 3
                  ) -> None:
    """A :class:`ScaleWarning` when the median absolute amplitude ``scale`` of trials says
    EEG in volts (the models expect microvolts)."""
    if not 0 < scale < VOLTS_LIKE_AMPLITUDE:
        return
    warnings.warn(
        f"{what} look like volts (median absolute amplitude {scale:.3g}); the models expect "
        f"microvolts (~10), and at this scale their normalisation layers swamp the signal so "
        f"training ends with constant predictions. Multiply by 1e6, or pass sigformer/mne "
        f"Epochs (converted from their unit); ignore this if the data are not EEG",
        ScaleWarning, stacklevel=stacklevel)


def _resolve_model_class(name: str):
    """The registered class, or an error that suggests the ``braindecode.`` prefix when the
    name is a braindecode model (``"EEGNet"`` -> ``"braindecode.EEGNet"``)."""
    try:
        return get_model_class(name)
    except UnknownModelError as err:
        from .models.registry import braindecode_model_names

        if not name.startswith(BRAINDECODE_PREFIX):
            matches = [m for m in braindecode_model_names() if m.lower() == name.lower()]
            if matches:
                raise UnknownModelError(f"unknown model {name!r}; did you mean "
                                        f"'{BRAINDECODE_PREFIX}{matches[0]}'? (braindecode "
                                        "models are named 'braindecode.<ClassName>')") from None
        raise err from None


# Physical units -> the factor that gives microvolts, the unit models are trained in (as
# braindecode reads mne.Epochs); "a.u." data pass unchanged.
TO_MICROVOLTS = {"V": 1e6, "mV": 1e3, "uV": 1.0}


def as_trials(X) -> tuple[np.ndarray, dict[str, Any]]:
    """Trials array ``(n_trials, n_channels, n_times)`` + what is known about it.

    Accepts numpy arrays (used as given), :class:`sigformer.Epochs` and ``mne.Epochs``; both
    kinds of epochs are converted to microvolts from their unit (volts by default), as
    braindecode does, and give their data channels only (no stim, EOG, ECG or EMG channels,
    as MNE's ``picks="data"``). A 2-D array is read as single-channel trials ``(n_trials, n_times)``.
    Epochs also give ``info["channels"]`` (their ChannelSet, sigformer) or ``info["chs_info"]``
    (MNE's channel dicts); :func:`chs_info_of` turns either into braindecode's ``chs_info``.
    """
    info: dict[str, Any] = {}
    if isinstance(X, (list, tuple)) and X and all(isinstance(e, Epochs) for e in X):
        X = Epochs.concatenate(list(X))  # what sklearn's CV makes of an Epochs it splits
    elif isinstance(X, (list, tuple)) and X and all(_is_mne_epochs(e) for e in X):
        parts = [_mne_trials(e) for e in X]
        return np.concatenate([p[0] for p in parts]).astype(np.float32, copy=False), parts[0][1]
    if sp.issparse(X):
        raise TypeError("sparse input is not supported: signal trials must be a dense array")
    if isinstance(X, Epochs):
        X, info = _sigformer_trials(X)
    elif _is_mne_epochs(X):
        X, info = _mne_trials(X)
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


# channel types that are never model input, as MNE's picks="data" leaves them out: a
# trigger's value at the onset is the label; EOG/ECG/EMG are references for artefact
# removal. Everything else stays, misc included (a channel read with include_misc=True, or
# MEG / fNIRS that sigformer types as misc)
NON_DATA_CHANNEL_TYPES = ("stim", "eog", "ecg", "emg")


def _data_channels(epochs: Epochs) -> list[str]:
    """The channels of sigformer Epochs that reach the model (all but NON_DATA_CHANNEL_TYPES)."""
    channels = epochs.channels
    names = [n for n, t in zip(channels.names, channels.types)
             if t not in NON_DATA_CHANNEL_TYPES]
    if not names:
        raise SignalError(f"the Epochs have no data channels (EEG, sEEG, ECoG, ...): channel "
                          f"types {sorted(set(channels.types))}; give the signal channels a "
                          f"data type (ChannelSet(names, types)) or pass epochs.data")
    return names


def _sigformer_trials(epochs: Epochs) -> tuple[np.ndarray, dict[str, Any]]:
    """Trials in microvolts and channel info from sigformer Epochs: their data channels only,
    as for mne.Epochs (a trigger channel's value at the onset is the label itself)."""
    names = _data_channels(epochs)
    channels = epochs.channels.pick(names)
    data = epochs.data if len(names) == len(epochs.channels) else \
        epochs.data[:, epochs.channels.indices(names)]
    # the ChannelSet, not its chs_info: building MNE dicts is only worth it in fit
    info = {"sfreq": epochs.sfreq, "ch_names": list(channels), "channels": channels}
    # sigformer Epochs hold volts like MNE's: the same trials must reach the model in the
    # same unit whichever container carries them
    return data * TO_MICROVOLTS.get(epochs.unit, 1.0), info


def _is_mne_epochs(X) -> bool:
    return type(X).__module__.startswith("mne") and hasattr(X, "get_data")


# MNE channel types measured in volts: given to the models in microvolts
VOLTAGE_TYPES = ("eeg", "seeg", "ecog", "dbs")


def _mne_trials(epochs) -> tuple[np.ndarray, dict[str, Any]]:
    """Trials in microvolts and channel info from ``mne.Epochs``: its data channels only
    (``picks="data"``: EEG, sEEG, ECoG, ...; stim, EOG, ECG, EMG and misc channels are not
    model input, as in ``mne.decoding``)."""
    import mne

    picks = mne.pick_types(epochs.info, meg=True, eeg=True, seeg=True, ecog=True, dbs=True,
                           fnirs=True, exclude=[])
    if len(picks) == 0:
        raise SignalError(f"the mne.Epochs have no data channels (EEG, sEEG, ECoG, MEG, ...): "
                          f"channel types {sorted(set(epochs.get_channel_types()))}; set "
                          f"their types (epochs.set_channel_types) or pass epochs.get_data()")
    types = set(epochs.get_channel_types(picks=picks))
    units = {t: "uV" for t in VOLTAGE_TYPES if t in types}
    data = epochs.get_data(picks=picks, units=units or None, copy=True)
    info = {"sfreq": float(epochs.info["sfreq"]),
            "ch_names": [epochs.ch_names[i] for i in picks],
            "chs_info": [epochs.info["chs"][i] for i in picks]}
    return data, info


def seed_of(random_state) -> int | None:
    """An ``int`` seed from scikit-learn's ``random_state`` forms: None, an integer (numpy's
    too), or a ``RandomState`` / ``Generator`` to draw one from (a new one each fit)."""
    if random_state is None:
        return None
    if isinstance(random_state, (bool, np.bool_)):
        raise ValueError(f"random_state must be None, an int or a numpy RandomState, got "
                         f"{random_state!r}")
    if isinstance(random_state, (int, np.integer)):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(np.iinfo(np.int32).max))
    raise ValueError(f"random_state must be None, an int or a numpy RandomState, got "
                     f"{random_state!r}")


def chs_info_of(info: dict[str, Any]) -> list[dict] | None:
    """braindecode's ``chs_info`` (MNE channel dicts) for trials read by :func:`as_trials`,
    or None when the data carry no channel information (a plain array)."""
    if info.get("chs_info") is not None:
        return info["chs_info"]
    channels = info.get("channels")
    return None if channels is None else channels.to_chs_info()


def _accepts_chs_info(model: str) -> bool:
    """Whether the model's constructor takes ``chs_info`` (braindecode's EEGModuleMixin
    models all do, also those whose signature is ``**kwargs``)."""
    params = constructor_parameters(model)
    if params is None:
        return model.startswith(BRAINDECODE_PREFIX)
    return "chs_info" in params


def _has_positions(chs_info: Sequence[dict]) -> bool:
    locs = np.array([np.asarray(ch.get("loc", np.zeros(12)), float)[:3] for ch in chs_info])
    return bool(np.all(np.isfinite(locs)) and np.any(locs != 0))


def labels_of(X, y):
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
    validation_split : fraction held out (stratified) for validation, early stopping and
        best-epoch restore; 0 trains on everything for ``max_epochs`` (the papers' protocol).
    early_stopping_patience : epochs without ``val_loss`` improvement before stopping (needs
        ``validation_split``).
    restore_best_weights : with a validation split, end with the weights of the epoch with
        the lowest ``val_loss`` (``history_.best_epoch``).
    lr_schedule : ``None`` (constant), ``"cosine"`` (per epoch to 0 at ``max_epochs``) or
        ``"plateau"`` (halve once 6 epochs in a row bring no improvement: PyTorch's
        ``patience=5``).
    label_smoothing : cross-entropy label smoothing in [0, 1).
    class_weight : ``None``, ``"balanced"`` (loss weights inversely proportional to the
        class frequencies, sklearn's formula; e.g. for P300 targets vs non-targets) or a dict
        ``{label: weight}`` (labels not in it weigh 1).
    augmentation : training-batch augmentation(s) from :mod:`sigformer.augment`, as objects,
        names (``"segment_recombination"``) or dicts (``{"name": ..., **params}``).
    euclidean_alignment : align each subject's trials with their own mean covariance (pass
        ``subjects=`` to ``fit``/``predict``; without it a call's trials form one group).
        At predict time that is transductive (the test trials' unlabelled statistics set
        their own whitening) and needs enough trials per group: with fewer than
        ``n_channels + 1`` an :class:`AlignmentWarning` says so (one trial alone comes out
        with an identity covariance, all its spatial power gone). ``reference="training"``
        uses what ``fit`` stored instead (a training subject's own reference, else the
        pooled ``ea_reference_``), and an array ``reference`` (e.g. the mean covariance of a
        calibration recording) whitens every trial with it.
    random_state : seed for weight initialisation, shuffling, augmentation and the split.
    accelerator, devices, strategy, num_nodes : passed to the Lightning ``Trainer`` (e.g.
        ``accelerator="gpu", devices=4, strategy="ddp"``; ``num_nodes`` for several machines).
    verbose : show Lightning's progress bar.
    """

    def __init__(self, model: str = "dbconformer", preset: str | None = None,
                 model_params: dict | None = None, max_epochs: int = 100,
                 batch_size: int = 32, lr: float = 1e-3, weight_decay: float = 0.0,
                 optimizer: str = "adam", validation_split: float = 0.0,
                 early_stopping_patience: int | None = None,
                 restore_best_weights: bool = True, lr_schedule: str | None = None,
                 label_smoothing: float = 0.0, class_weight: str | None = None,
                 augmentation=None,
                 euclidean_alignment: bool = False, random_state: int | None = 0,
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
        self.restore_best_weights = restore_best_weights
        self.lr_schedule = lr_schedule
        self.label_smoothing = label_smoothing
        self.class_weight = class_weight
        self.augmentation = augmentation
        self.euclidean_alignment = euclidean_alignment
        self.random_state = random_state
        self.accelerator = accelerator
        self.devices = devices
        self.strategy = strategy
        self.num_nodes = num_nodes
        self.verbose = verbose

    # --- fitting ------------------------------------------------------------------------
    def _model_kwargs(self, n_chans: int, n_times: int, n_outputs: int, sfreq,
                      chs_info: list[dict] | None = None) -> dict:
        """Constructor arguments from the data; ``chs_info`` (channel names and positions,
        as braindecode's EEGClassifier passes them) only to models that accept it, and
        ``model_params={"chs_info": ...}`` wins over the data's."""
        kwargs = dict(self.model_params or {})
        kwargs.update(n_chans=n_chans, n_times=n_times, n_outputs=n_outputs)
        if sfreq is not None:
            kwargs["sfreq"] = sfreq
        if chs_info is not None and "chs_info" not in kwargs and _accepts_chs_info(self.model):
            kwargs["chs_info"] = chs_info
        return kwargs

    def _build_model(self, kwargs: dict):
        """``create_model`` with a clear error when the model needs channel positions
        (``chs_info``) and the training data do not carry them."""
        try:
            return create_model(self.model, self.preset, **kwargs)
        except (ValueError, TypeError) as err:
            if "chs_info" not in str(err):
                raise
            chs_info = kwargs.get("chs_info")
            if chs_info is None:
                why = "the training data carry no channel information (a plain array)"
            elif not _has_positions(chs_info):
                why = "the training data's channels have no positions (no montage)"
            else:
                raise
            raise SignalError(
                f"{self.model!r} needs channel names and positions (chs_info), but {why}: fit "
                f"on sigformer Epochs with a montage (ChannelSet.with_montage()) or on "
                f"mne.Epochs with one (set_montage), or pass model_params={{'chs_info': ...}}"
                f" ({err})") from err

    def _check_params(self) -> None:
        """Refuse settings that cannot work before any data is read."""
        _resolve_model_class(self.model)  # unknown names fail before any work
        split = self.validation_split
        if isinstance(split, bool) or not isinstance(split, (int, float, np.number)) \
                or not 0 <= split < 1:
            raise ValueError(f"validation_split must be a fraction in [0, 1), got {split!r}")
        check_training_args(
            max_epochs=self.max_epochs, batch_size=self.batch_size, lr=self.lr,
            weight_decay=self.weight_decay, optimizer=self.optimizer,
            early_stopping_patience=self.early_stopping_patience,
            label_smoothing=self.label_smoothing, lr_schedule=self.lr_schedule,
            has_validation=split > 0)
        if not (self.class_weight is None or self.class_weight == "balanced"
                or isinstance(self.class_weight, dict)):
            raise ValueError(f"class_weight must be None, 'balanced' or a dict {{label: "
                             f"weight}}, got {self.class_weight!r}")
        build_augmentations(self.augmentation, sfreq=1.0)  # names and parameters

    def _check_augmentation_rate(self, sfreq: float | None) -> None:
        """Refuse, before any model is built, a frequency shift that has no sampling rate:
        plain arrays carry none, and the estimator takes no ``sfreq``."""
        if sfreq:
            return
        for spec in to_specs(self.augmentation) or []:
            if spec.get("name") == "frequency_shift" and not spec.get("sfreq"):
                raise ValueError(
                    "augmentation 'frequency_shift' needs the sampling rate, and these trials "
                    "carry none (a plain array): give it in the augmentation, "
                    "{'name': 'frequency_shift', 'sfreq': <Hz>}, or fit on sigformer or mne "
                    "Epochs, which carry their rate")

    def _check_split(self, y_idx: np.ndarray, n_classes: int) -> int:
        """Size of the stratified validation split, refused when a class would be missing
        (checked before any model is built)."""
        n_val = int(np.ceil(self.validation_split * len(y_idx)))
        smallest = int(np.bincount(y_idx, minlength=n_classes).min())
        if n_val < n_classes or len(y_idx) - n_val < n_classes or smallest < 2:
            raise ValueError(
                f"validation_split={self.validation_split} cannot work with {len(y_idx)} trials "
                f"of {n_classes} classes (smallest class: {smallest} trials): train and "
                f"validation each need >= 1 trial per class; use a larger split, more data "
                f"or validation_split=0")
        return n_val

    def _split_validation(self, X, y_idx, n_classes: int):
        """Stratified inner validation split, refused when a class would be missing."""
        n_val = self._check_split(y_idx, n_classes)
        return train_test_split(X, y_idx, test_size=n_val, stratify=y_idx,
                                random_state=self._seed)

    def _align(self, X: np.ndarray, subjects, reference=None, fitting: bool = False
               ) -> np.ndarray:
        """Euclidean alignment per subject (a no-op without ``euclidean_alignment``): with
        each group's own mean, the references ``fit`` stored (``"training"``) or one given
        covariance."""
        if not self.euclidean_alignment:
            if reference is not None:
                raise ValueError("reference= is a Euclidean-alignment reference, but this "
                                 "classifier has euclidean_alignment=False")
            return X
        if isinstance(reference, str):
            return euclidean_align(X, subjects, self._training_references(reference, subjects))
        if reference is not None:
            ref = np.asarray(reference, dtype=float)
            if ref.shape != (X.shape[1], X.shape[1]):
                raise SignalError(f"reference must be a ({X.shape[1]}, {X.shape[1]}) covariance "
                                  f"for trials of {X.shape[1]} channels, got shape {ref.shape}")
            return euclidean_align(X, None, {None: ref})
        self._warn_small_groups(X, subjects, fitting)
        return euclidean_align(X, subjects)

    def _training_references(self, reference: str, subjects) -> dict:
        if reference != "training":
            raise ValueError(f"reference must be None, 'training' or a covariance array, got "
                             f"{reference!r}")
        pooled = getattr(self, "ea_reference_", None)
        if pooled is None:
            raise ValueError("reference='training' needs the references fit stores; this "
                             "model was saved before they were (fit it again, or pass a "
                             "covariance array)")
        if subjects is None:
            return {None: pooled}
        own = getattr(self, "ea_subject_references_", {})
        return {s: own.get(s, pooled) for s in np.unique(subjects)}

    def _warn_small_groups(self, X: np.ndarray, subjects, fitting: bool) -> None:
        sizes = ({None: len(X)} if subjects is None else
                 dict(zip(*np.unique(np.asarray(subjects), return_counts=True))))
        n_chans = X.shape[1]
        small = {g: int(n) for g, n in sizes.items() if n < n_chans + 1}
        if not small or not self._first_alignment_warning("fit" if fitting else "predict"):
            return
        advice = ("give each subject more training trials, or fewer channels" if fitting else
                  "pass more trials of the subject together, or reference='training' (the "
                  "references fit stored) or a covariance array from the subject's "
                  "calibration data")
        warnings.warn(
            f"Euclidean alignment of {_small_groups_text(small, n_chans)}: fewer trials than "
            f"channels + 1 ({n_chans + 1}) to estimate its mean covariance, so the reference "
            f"is biased towards those trials (one trial alone comes out with an identity "
            f"covariance, its spatial power gone); {advice}. Shown once per fit",
            AlignmentWarning, stacklevel=4)

    def _first_alignment_warning(self, cause: str) -> bool:
        """True the first time ``cause`` comes up since the last ``fit`` (and in the current
        :func:`alignment_warnings_once` block): a warning repeated for every call or fold
        drowns the log and says nothing new."""
        seen = self.__dict__.setdefault("_alignment_warned", set())
        run = _ALIGNMENT_WARNED.get()
        first = cause not in seen and (run is None or cause not in run)
        seen.add(cause)
        if run is not None:
            run.add(cause)
        return first

    def fit(self, X, y=None, subjects=None):
        """Train on trials ``X`` and labels ``y``; ``subjects`` groups trials for per-subject
        Euclidean alignment.

        All or nothing: the fitted attributes (``module_``, ``classes_``, ...) are set only
        once training has succeeded, so a failed ``fit`` leaves the estimator as it was
        (unfitted, or with its previous fit intact and consistent)."""
        self._check_params()
        y = labels_of(X, y)
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y "
                             "is None (give labels, or Epochs that carry them)")
        X, info = as_trials(X)
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        y = check_labels(y, len(X))
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        classes = encoder.classes_
        if len(classes) < 2:
            raise SignalError(f"y has 1 class ({classes[0]!r}); a classifier needs at least 2")
        y_idx = encoder.transform(y)
        self._check_augmentation_rate(info.get("sfreq"))
        if self.validation_split:  # before any model is built or trained
            self._check_split(y_idx, len(classes))
        # built here, assigned to self only at the end (see the docstring)
        fitted: dict[str, Any] = {
            "label_encoder_": encoder, "classes_": classes,
            "n_features_in_": info.get("n_features", X.shape[1]),
            "n_chans_": X.shape[1], "n_times_": X.shape[2], "sfreq_": info.get("sfreq"),
            "ch_names_": info.get("ch_names"), "input_scale_": median_abs_amplitude(X)}
        warn_if_volts(fitted["input_scale_"])
        model_kwargs = self._model_kwargs(X.shape[1], X.shape[2], len(classes),
                                          fitted["sfreq_"], chs_info_of(info))
        self._seed = seed_of(self.random_state)  # one draw per fit from a RandomState
        seed_everything(self._seed)  # the initial weights depend on the seed too
        module = self._build_model(model_kwargs)
        if self.euclidean_alignment:  # inductive references, for reference="training"
            fitted["ea_reference_"] = alignment_references(X)[None]
            fitted["ea_subject_references_"] = (
                {} if subjects is None else alignment_references(X, subjects))
        self._alignment_warned = set()  # a new fit warns afresh (_first_alignment_warning)
        X = self._align(X, subjects, fitting=True)
        from .recipes import unsupervised_stage

        stage = unsupervised_stage(module)  # e.g. TFM tokenizer + MTP pretraining
        if stage is not None:
            stage(X, seed=self._seed)  # the pretraining follows random_state too
        history = self._train(module, X, y_idx, self.max_epochs, self.lr, classes=classes,
                              sfreq=fitted["sfreq_"], warm_start=True)
        for attr in ("ea_reference_", "ea_subject_references_"):  # from an earlier fit
            self.__dict__.pop(attr, None)
        self.__dict__.update(fitted, model_kwargs_=model_kwargs, module_=module,
                             history_=history)
        return self

    def _train(self, module, X: np.ndarray, y_idx: np.ndarray, max_epochs: int, lr: float,
               *, classes: np.ndarray, sfreq, validate: bool = True,
               warm_start: bool = False):
        X_val = y_val = None
        validate = validate and bool(self.validation_split)
        if validate:
            X, X_val, y_idx, y_val = self._split_validation(X, y_idx, len(classes))
        augmentations = build_augmentations(self.augmentation, sfreq=sfreq)
        weights = self._class_weights(y_idx, classes)
        if warm_start:  # e.g. a linear probe; on the training split only (never validation)
            from .recipes import supervised_warm_start

            step = supervised_warm_start(module)
            if step is not None:
                step(X, y_idx, weights)
        return train_classifier(
            module, X, y_idx, X_val=X_val, y_val=y_val, max_epochs=max_epochs,
            batch_size=self.batch_size, lr=lr, weight_decay=self.weight_decay,
            optimizer=self.optimizer, seed=self._seed, class_weights=weights,
            early_stopping_patience=self.early_stopping_patience if validate else None,
            restore_best_weights=self.restore_best_weights, label_smoothing=self.label_smoothing,
            lr_schedule=self.lr_schedule, augmentations=augmentations,
            accelerator=self.accelerator, devices=self.devices, strategy=self.strategy,
            num_nodes=self.num_nodes, progress_bar=self.verbose,
        )

    def _class_weights(self, y_idx: np.ndarray, classes: np.ndarray) -> np.ndarray | None:
        if self.class_weight is None:
            return None
        if isinstance(self.class_weight, dict):
            unknown = sorted(set(self.class_weight) - set(classes.tolist()), key=str)
            if unknown:
                raise ValueError(f"class_weight names label(s) {unknown} not in y; classes: "
                                 f"{classes.tolist()}")
            return np.array([float(self.class_weight.get(c, 1.0)) for c in classes])
        counts = np.bincount(y_idx, minlength=len(classes))
        return len(y_idx) / (len(classes) * np.maximum(counts, 1))

    def fine_tune(self, X, y, subjects=None, *, max_epochs: int | None = None,
                  lr: float | None = None, new_head: bool = False, reference=None):
        """Continue training the fitted model on a few trials of a new subject or session
        (same classes) for ``max_epochs`` epochs, without a validation split (a few trials
        cannot spare one). The estimator is updated in place (like ``partial_fit``); keep
        the pretrained one with ``copy.deepcopy(est)`` first (``sklearn.base.clone`` drops
        fitted state). ``new_head`` re-initialises the classification head first
        (:func:`sigformer.training.reinit_head`: ``final_layer``, ``head`` or
        ``classifier``) and keeps the rest of the network.
        ``reference``: the alignment reference (as in :meth:`predict`); a few calibration
        trials aligned with their own mean are whitened by themselves, so give the mean
        covariance of the subject's calibration recording and predict with the same."""
        check_is_fitted(self, "module_")
        max_epochs = self.max_epochs if max_epochs is None else max_epochs
        lr = self.lr if lr is None else lr
        check_training_args(max_epochs=max_epochs, lr=lr)
        X = self._checked_input(X)
        y = check_labels(np.asarray(y), len(X))
        unknown = sorted(set(np.unique(y).tolist()) - set(self.classes_.tolist()))
        if unknown:
            raise SignalError(f"fine_tune got label(s) {unknown} the model was not fitted on; "
                              f"classes: {self.classes_.tolist()}")
        X = self._align(X, subjects, reference)
        self._seed = seed_of(self.random_state)
        if new_head:
            # the new head's weights follow the seed too, not whatever the global generator
            # was left at (a few-shot curve's k = 4 head depended on whether k = 2 ran first)
            seed_everything(self._seed)
            try:
                reinit_head(self.module_)
            except ValueError as err:
                raise ValueError(f"{self.model!r}: {err}; or use new_head=False") from err
        self.history_ = self._train(self.module_, X, self.label_encoder_.transform(y),
                                    max_epochs, lr, classes=self.classes_, sfreq=self.sfreq_,
                                    validate=False)
        return self

    # --- prediction ---------------------------------------------------------------------
    def _checked_input(self, X) -> np.ndarray:
        check_is_fitted(self, "module_")
        X, info = as_trials(X)
        n_features = info.get("n_features")
        if n_features is not None and self.n_chans_ > 1:
            raise SignalError(self._two_d_message(X[:, 0]))
        single_channel = self.n_chans_ == 1 and n_features == self.n_times_  # fitted 3-D
        if n_features is not None and n_features != self.n_features_in_ and not single_channel:
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
        self._check_scale(X)
        return X

    def _two_d_message(self, X: np.ndarray) -> str:
        """Why a 2-D array fails a multichannel model (sklearn reads 2-D as samples x
        features, so a 2-D array here is single-channel trials, never one trial)."""
        hint = (f"pass one multichannel trial as X[None] (shape (1, {self.n_chans_}, "
                f"{self.n_times_}))" if X.shape == (self.n_chans_, self.n_times_) else
                "pass trials as (n_trials, n_channels, n_times); one trial as X[None]")
        return (f"X is 2-D (shape {X.shape}): 2-D input is read as single-channel trials "
                f"(n_trials, n_times), but the model was fitted on trials of {self.n_chans_} "
                f"channels x {self.n_times_} samples; {hint}")

    def _check_scale(self, X: np.ndarray) -> None:
        trained = getattr(self, "input_scale_", None)
        scale = median_abs_amplitude(X)
        if not trained or not scale:
            return
        ratio = scale / trained
        if ratio >= SCALE_MISMATCH_FACTOR or ratio <= 1 / SCALE_MISMATCH_FACTOR:
            warnings.warn(
                f"the input's median absolute amplitude is {scale:.3g}, the training data's was "
                f"{trained:.3g} (ratio {ratio:.1e}): the units probably differ (volts vs "
                f"microvolts differ by 1e6); convert to the training unit, or predictions will "
                f"be meaningless", ScaleWarning, stacklevel=3)

    def _logits(self, X, subjects, reference=None) -> np.ndarray:
        X = self._align(self._checked_input(X), subjects, reference)
        logits = predict_logits(self.module_, X)
        bad = ~np.isfinite(logits).all(axis=1)
        if bad.any():
            raise SignalError(
                f"the model produced non-finite outputs (NaN/Inf) for {int(bad.sum())} of "
                f"{len(bad)} trials (first: trial {int(np.flatnonzero(bad)[0])}); no labels "
                "are returned. The weights may be corrupted or the input overflowed the model")
        return logits

    def decision_function(self, X, subjects=None, reference=None) -> np.ndarray:
        logits = self._logits(X, subjects, reference)
        return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits

    def score(self, X, y=None, sample_weight=None) -> float:
        """Mean accuracy on ``X`` (Epochs carry their labels: ``y`` may be left out)."""
        return super().score(X, labels_of(X, y), sample_weight=sample_weight)

    def predict_proba(self, X, subjects=None, reference=None) -> np.ndarray:
        """Class probabilities. With ``euclidean_alignment``: ``subjects`` groups the
        trials, each aligned with its own mean (transductive; warns below
        ``n_channels + 1`` trials a group); ``reference="training"`` or a covariance array
        aligns them without their own statistics (see the class docstring)."""
        logits = torch.from_numpy(self._logits(X, subjects, reference))
        return torch.softmax(logits, dim=-1).numpy()

    def predict(self, X, subjects=None, reference=None) -> np.ndarray:
        proba = self.predict_proba(X, subjects, reference)
        return self.classes_[proba.argmax(axis=1)]

    # --- persistence --------------------------------------------------------------------
    def _estimator_meta(self) -> dict[str, Any]:
        return {
            "estimator": type(self).__name__,
            "params": {**self.get_params(), "augmentation": to_specs(self.augmentation)},
            "classes": self.classes_.tolist(), "n_chans": self.n_chans_,
            "n_times": self.n_times_, "sfreq": self.sfreq_, "ch_names": self.ch_names_,
            "n_features_in": self.n_features_in_,
            "input_scale": getattr(self, "input_scale_", None),
            # the pooled training reference (per-subject ones stay in memory and pickles)
            "ea_reference": (None if getattr(self, "ea_reference_", None) is None
                             else np.asarray(self.ea_reference_).tolist()),
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
        if meta.get("input_scale") is not None:
            self.input_scale_ = float(meta["input_scale"])
        if meta.get("ea_reference") is not None:
            self.ea_reference_ = np.asarray(meta["ea_reference"], dtype=float)

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
