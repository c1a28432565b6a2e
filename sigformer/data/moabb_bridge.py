"""Bridge to MOABB: datasets from the local MNE data cache, and sigformer inside MOABB.

sigformer never downloads at run time: while MOABB loads, file retrieval is redirected so a
file missing from the cache raises a :class:`DataError` that names the dataset, the file and
how to fetch it, instead of starting a download. MNE's and MOABB's configuration goes to the
chosen data folder (``data_dir``, else ``$MNE_DATA``), never to the home directory.

In the other direction, :class:`MOABBEpochs` is the first step of an sklearn pipeline given to
a MOABB evaluation: it turns what MOABB hands over (``mne.Epochs`` with ``return_epochs=True``,
or arrays) into sigformer :class:`~sigformer.Epochs` that carry the sampling rate and channels,
so sigformer stages and models (and braindecode models, through
:func:`braindecode_signal_kwargs`) get ``sfreq`` / ``chs_info`` without guessing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from ..channels import ChannelSet
from ..recording import Epochs
from ..validation import DataError, SignalError, check_array, check_sfreq


@contextlib.contextmanager
def _no_downloads(dataset_name: str):
    """Patch the pooch ``retrieve`` that MOABB's fetchers call so only cached files load."""
    import moabb
    import moabb.datasets.download as moabb_download
    import pooch

    patched = [(pooch, "retrieve"), (moabb_download, "retrieve")]
    saved = [(mod, attr, getattr(mod, attr)) for mod, attr in patched]
    original = saved[0][2]  # pooch's fetcher: only ever called for files already cached

    def cached_only(url, known_hash=None, fname=None, path=None, *args, **kwargs):
        fname = fname or pooch.utils.unique_file_name(url)
        target = Path(path or pooch.os_cache("pooch")) / fname
        if not target.exists():
            raise DataError(
                f"MOABB dataset {dataset_name!r} is not in the local MNE data cache: {target} is "
                f"missing. sigformer does not download at run time; fetch it once on a machine "
                f"with internet (moabb's {dataset_name}() dataset has a download method) and set "
                f"MNE_DATA to that folder"
            )
        return original(url, known_hash, fname, path, *args, **kwargs)

    for mod, attr in patched:
        setattr(mod, attr, cached_only)
    # MOABB >= 1.7 first asks the NEMAR mirror over the network; stay on the cached files.
    provider = getattr(moabb, "get_download_provider", lambda: None)()
    if provider is not None:
        moabb.set_download_provider("upstream")
    try:
        yield
    finally:
        for mod, attr, value in saved:
            setattr(mod, attr, value)
        if provider is not None:
            moabb.set_download_provider(provider)


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """The MNE/MOABB data folder: ``data_dir``, else ``$MNE_DATA``, else ``~/mne_data``
    (MNE's default cache, read only: its config is written into the folder itself)."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get("MNE_DATA"):
        return Path(os.environ["MNE_DATA"]).expanduser()
    return Path.home() / "mne_data"


@contextlib.contextmanager
def mne_config_in(folder: Path):
    """MNE_DATA and MNE's config file (``.mne/mne-python.json``, where MOABB records dataset
    paths) inside ``folder`` while MOABB runs; the environment is restored afterwards."""
    keys = ("MNE_DATA", "_MNE_FAKE_HOME_DIR")  # the latter: MNE's documented config-home switch
    saved = {k: os.environ.get(k) for k in keys}
    os.environ["MNE_DATA"] = str(folder)
    os.environ["_MNE_FAKE_HOME_DIR"] = str(folder)
    try:
        yield folder
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def load_moabb(dataset, subjects: Sequence[int] | None = None, *,
               paradigm: str = "MotorImagery", data_dir: str | Path | None = None,
               **paradigm_kwargs) -> Epochs:
    """Epochs (with subject groups) from a MOABB dataset name or instance, in volts.

    ``paradigm`` names a ``moabb.paradigms`` class (``MotorImagery``, ``LeftRightImagery``,
    ...); its keyword arguments pass through (e.g. ``fmin=8, fmax=32`` as MOABB defaults).
    ``data_dir`` is the local MNE data cache (default ``$MNE_DATA``, else ``~/mne_data``).
    """
    try:
        import moabb.datasets
        import moabb.paradigms
    except ImportError:
        raise DataError("load_moabb needs the moabb package: pip install 'sigformer[eeg]'"
                        ) from None
    if isinstance(dataset, str):
        cls = getattr(moabb.datasets, dataset, None)
        if cls is None:
            raise DataError(f"moabb has no dataset {dataset!r} (names are like "
                            f"'BNCI2014_001', 'Cho2017', 'FakeDataset')")
        dataset = cls()
    name = type(dataset).__name__
    paradigm_cls = getattr(moabb.paradigms, paradigm, None)
    if paradigm_cls is None:
        raise DataError(f"moabb has no paradigm {paradigm!r}")
    subjects = list(subjects) if subjects is not None else list(dataset.subject_list)
    unknown = sorted(set(subjects) - set(dataset.subject_list))
    if unknown:
        raise DataError(f"{name} has no subject(s) {unknown}; it has {dataset.subject_list}")
    folder = resolve_data_dir(data_dir)
    if data_dir is None and not os.environ.get("MNE_DATA") and not folder.is_dir():
        raise DataError(f"MOABB dataset {name!r} is not in the local MNE data cache: there is "
                        f"no data folder ({folder} does not exist and MNE_DATA is unset). "
                        "sigformer does not download at run time; pass data_dir= (or set "
                        "MNE_DATA) to the folder where the dataset was fetched")
    folder.mkdir(parents=True, exist_ok=True)  # a folder the user chose
    with mne_config_in(folder), _no_downloads(name):
        try:
            epochs, labels, meta = paradigm_cls(**paradigm_kwargs).get_data(
                dataset, subjects=subjects, return_epochs=True)
        except DataError:
            raise
        except AssertionError as err:  # MOABB asserts dataset/paradigm compatibility
            raise DataError(f"{name} with paradigm {paradigm}: {err}") from None
        except Exception as err:  # MNE/MOABB tracebacks for a missing or partial cache
            raise DataError(
                f"MOABB dataset {name!r} could not be loaded from the local cache {folder} "
                f"({type(err).__name__}: {err}). sigformer does not download at run time; "
                f"fetch it once with moabb on a machine with internet and point data_dir (or "
                f"MNE_DATA) at that folder") from None
    classes = sorted(np.unique(labels).tolist())
    event_id = {c: i for i, c in enumerate(classes)}
    return Epochs(epochs.get_data(copy=True), np.array([event_id[c] for c in labels]),
                  epochs.info["sfreq"], ChannelSet.from_mne_info(epochs.info), event_id,
                  tmin=float(epochs.tmin), groups=meta["subject"].to_numpy(),
                  sessions=meta["session"].to_numpy())


# --- sigformer inside MOABB evaluations ---------------------------------------------------

class MOABBEpochs(TransformerMixin, BaseEstimator):
    """First step of a pipeline for MOABB evaluations: MOABB's input -> sigformer ``Epochs``.

    With ``return_epochs=True`` MOABB hands over ``mne.Epochs``, which carry the rate and the
    channels; plain arrays need ``sfreq`` (and ``channels`` for named models) here. The output
    keeps volts (the unit rule), so later steps see the same data either way.
    """

    def __init__(self, sfreq: float | None = None,
                 channels: ChannelSet | Sequence[str] | None = None):
        self.sfreq = sfreq
        self.channels = channels

    def fit(self, X, y=None) -> MOABBEpochs:
        epochs = self.transform(X)
        self.sfreq_, self.channels_ = epochs.sfreq, epochs.channels
        return self

    def transform(self, X) -> Epochs:
        if isinstance(X, Epochs):
            return X
        if type(X).__module__.startswith("mne") and hasattr(X, "events"):
            return Epochs.from_mne(X)
        data = check_array(X, ndim=3, name="X")
        if self.sfreq is None:
            raise SignalError("MOABBEpochs got a plain array, whose sampling rate is unknown: "
                              "pass sfreq= (the paradigm's resample rate) or run the "
                              "evaluation with return_epochs=True")
        channels = self.channels if self.channels is not None else \
            [f"ch{i}" for i in range(data.shape[1])]
        return Epochs(data, np.zeros(len(data), int), check_sfreq(self.sfreq), channels)


def braindecode_signal_kwargs(epochs) -> dict:
    """``n_chans``, ``n_times``, ``sfreq`` and ``chs_info`` as braindecode models take them,
    from sigformer or MNE epochs (what ``EEGClassifier(module__...)`` needs under MOABB)."""
    if not isinstance(epochs, Epochs):
        epochs = MOABBEpochs().transform(epochs)
    return {"n_chans": epochs.data.shape[1], "n_times": epochs.n_times,
            "sfreq": epochs.sfreq, "chs_info": epochs.channels.to_chs_info()}
