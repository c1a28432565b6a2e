"""Bridge to MOABB datasets that are already in the local MNE data cache.

sigformer never downloads at run time: while MOABB loads, file retrieval is redirected so a
file missing from the cache raises a :class:`DataError` that names the dataset, the file and
how to fetch it, instead of starting a download.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..channels import ChannelSet
from ..recording import Epochs
from .io import DataError


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


def load_moabb(dataset, subjects: Sequence[int] | None = None, *,
               paradigm: str = "MotorImagery", **paradigm_kwargs) -> Epochs:
    """Epochs (with subject groups) from a MOABB dataset name or instance.

    ``paradigm`` names a ``moabb.paradigms`` class (``MotorImagery``, ``LeftRightImagery``,
    ...); its keyword arguments pass through (e.g. ``fmin=8, fmax=32`` as MOABB defaults).
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
    os.environ.setdefault("MNE_DATA", str(Path.home() / "mne_data"))
    with _no_downloads(name):
        try:
            epochs, labels, meta = paradigm_cls(**paradigm_kwargs).get_data(
                dataset, subjects=subjects, return_epochs=True)
        except AssertionError as err:  # MOABB asserts dataset/paradigm compatibility
            raise DataError(f"{name} with paradigm {paradigm}: {err}") from None
    classes = sorted(np.unique(labels).tolist())
    event_id = {c: i for i, c in enumerate(classes)}
    return Epochs(epochs.get_data(copy=True), np.array([event_id[c] for c in labels]),
                  epochs.info["sfreq"], ChannelSet.from_mne_info(epochs.info), event_id,
                  tmin=float(epochs.tmin), groups=meta["subject"].to_numpy(),
                  sessions=meta["session"].to_numpy())
