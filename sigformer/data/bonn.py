"""Bonn University epilepsy EEG (Andrzejak et al., Phys. Rev. E 64, 061907, 2001).

Five sets of 100 single-channel segments (23.6 s, 4097 samples at 173.61 Hz): Z and O (healthy,
surface, eyes open / closed), N and F (interictal, intracranial, opposite / inside the
epileptogenic zone), S (ictal). The loader reads an ``.npz`` with arrays ``X`` (segments x
samples), ``set_label`` (one letter per segment) and ``fs``, or a folder of the original
``Z001.txt`` ... text files (one integer sample per line, set letter first in the file name),
and can cut each segment into shorter windows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..channels import ChannelSet
from ..recording import Epochs
from ..validation import DataError

BONN_SFREQ = 173.61
SETS = ("Z", "O", "N", "F", "S")
TASKS = {
    "seizure_vs_rest": {"Z": "rest", "O": "rest", "N": "rest", "F": "rest", "S": "seizure"},
    "five_class": {s: s for s in SETS},
    "healthy_interictal_ictal": {"Z": "healthy", "O": "healthy", "N": "interictal",
                                 "F": "interictal", "S": "ictal"},
}


def _read_folder(path: Path) -> tuple[np.ndarray, np.ndarray, float]:
    files = sorted(f for f in path.iterdir() if f.suffix.lower() == ".txt"
                   and f.name[0].upper() in SETS)
    if not files:
        raise DataError(f"no Bonn segment files (Z001.txt ... S100.txt) in {path}")
    segments = []
    for f in files:
        try:
            segments.append(np.loadtxt(f))
        except ValueError as err:
            raise DataError(f"{f} is not a column of numbers: {err}") from None
    lengths = {len(s) for s in segments}
    if len(lengths) != 1:
        raise DataError(f"Bonn segments differ in length {sorted(lengths)}: a file is truncated")
    return np.stack(segments), np.array([f.name[0].upper() for f in files]), BONN_SFREQ


def load_bonn(path, task: str = "seizure_vs_rest", *, window_s: float | None = None,
              sets: tuple[str, ...] = SETS) -> Epochs:
    """Segments (or ``window_s`` windows cut from them) as single-channel :class:`Epochs`.

    ``groups`` holds the segment index, so windows of one segment stay together in
    group-aware splits. Values are the raw 12-bit A/D integers (no physical scale is stored),
    so the epochs' unit is ``"a.u."``, not volts.
    """
    if task not in TASKS:
        raise DataError(f"unknown Bonn task {task!r}; tasks: {sorted(TASKS)}")
    path = Path(path)
    if path.is_dir():
        X, letters, sfreq = _read_folder(path)
    elif path.is_file():
        try:
            with np.load(path, allow_pickle=False) as d:
                X, letters, sfreq = d["X"], d["set_label"].astype(str), float(d["fs"])
        except (KeyError, ValueError, OSError) as err:
            raise DataError(f"{path} is not a Bonn npz with arrays X, set_label and fs: {err}"
                            ) from None
    else:
        raise DataError(f"no such file or folder: {path}")
    keep = np.isin(letters, sets)
    X, letters = X[keep].astype(np.float64), letters[keep]
    mapping = TASKS[task]
    names = sorted({mapping[s] for s in letters})
    event_id = {n: i for i, n in enumerate(names)}
    labels = np.array([event_id[mapping[s]] for s in letters])
    groups = np.arange(len(X))
    if window_s is not None:
        n = int(round(window_s * sfreq))
        if n > X.shape[1]:
            raise DataError(f"window_s={window_s} is longer than a segment "
                            f"({X.shape[1] / sfreq:.1f} s)")
        per = X.shape[1] // n
        X = X[:, :per * n].reshape(len(X) * per, n)
        labels, groups = np.repeat(labels, per), np.repeat(groups, per)
    return Epochs(X[:, None, :], labels, sfreq, ChannelSet(("EEG",)), event_id, groups=groups,
                  unit="a.u.")
