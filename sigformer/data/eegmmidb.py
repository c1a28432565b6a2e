"""PhysioNet EEG Motor Movement/Imagery dataset (eegmmidb; Schalk et al. 2004).

109 subjects, 64 channels at 160 Hz, files ``S###R##.edf``. Each run's annotations are ``T0``
(rest) and ``T1``/``T2``, whose meaning depends on the run:

==============  ==========  ==============  ==============
runs            kind        T1              T2
==============  ==========  ==============  ==============
3, 7, 11        executed    left_hand       right_hand
4, 8, 12        imagined    left_hand       right_hand
5, 9, 13        executed    hands           feet
6, 10, 14       imagined    hands           feet
==============  ==========  ==============  ==============

Event names follow MOABB's ``PhysionetMI``. Channel names carry BCI2000 dot padding
(``Fc5.``), which is normalised to 10-05 spelling (``FC5``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..recording import Annotation, Epochs, Recording
from .io import DataError, read_raw

EEGMMIDB_RUNS: dict[int, dict] = {}
for _runs, _kind, _t1, _t2 in [((3, 7, 11), "executed", "left_hand", "right_hand"),
                               ((4, 8, 12), "imagined", "left_hand", "right_hand"),
                               ((5, 9, 13), "executed", "hands", "feet"),
                               ((6, 10, 14), "imagined", "hands", "feet")]:
    for _r in _runs:
        EEGMMIDB_RUNS[_r] = {"kind": _kind, "T0": "rest", "T1": _t1, "T2": _t2}
EEGMMIDB_RUNS[1] = {"kind": "baseline", "T0": "eyes_open"}
EEGMMIDB_RUNS[2] = {"kind": "baseline", "T0": "eyes_closed"}

TASK_RUNS = {
    "imagined_left_right": (4, 8, 12),
    "imagined_hands_feet": (6, 10, 14),
    "executed_left_right": (3, 7, 11),
    "executed_hands_feet": (5, 9, 13),
}


def run_path(root, subject: int, run: int) -> Path:
    """Locate ``S###R##.edf`` directly in ``root`` or in ``root/S###/`` (PhysioNet layout)."""
    name = f"S{subject:03d}R{run:02d}.edf"
    root = Path(root)
    for candidate in (root / name, root / f"S{subject:03d}" / name):
        if candidate.is_file():
            return candidate
    raise DataError(f"eegmmidb file {name} not found in {root} or {root / f'S{subject:03d}'}")


def verify_checksum(path: Path) -> bool | None:
    """Compare with a PhysioNet ``SHA256SUMS*.txt`` beside the file (None if there is none)."""
    sums = sorted(path.parent.glob("SHA256SUMS*.txt")) + sorted(path.parent.parent.glob(
        "SHA256SUMS*.txt"))
    for sums_file in sums:
        for line in sums_file.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and Path(parts[1]).name == path.name:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                if digest != parts[0]:
                    raise DataError(f"{path} fails its SHA-256 check against {sums_file.name}: "
                                    "the file is corrupt or was altered (e.g. by CRLF "
                                    "conversion)")
                return True
    return None


def read_eegmmidb_run(root, subject: int, run: int, *, verify: bool = True) -> Recording:
    """One run as a :class:`Recording` with normalised channel names and task labels."""
    if run not in EEGMMIDB_RUNS:
        raise DataError(f"eegmmidb has runs 1-14, got {run}")
    path = run_path(root, subject, run)
    if verify:
        verify_checksum(path)
    raw = read_raw(path)
    rec = Recording.from_mne(raw)
    rec.channels = rec.channels.normalized()
    mapping = EEGMMIDB_RUNS[run]
    rec.annotations = [Annotation(a.onset, a.duration, mapping.get(a.description, a.description))
                       for a in rec.annotations]
    return rec


def load_eegmmidb(root, subject: int = 1, runs: Iterable[int] | str = "imagined_left_right",
                  *, events: Iterable[str] | None = None, tmin: float = 0.0, tmax: float = 4.0,
                  preprocess=None, verify: bool = True) -> Epochs:
    """Epochs from one subject's runs.

    ``runs`` is a list of run numbers or a task name from ``TASK_RUNS``; ``events`` selects the
    classes (default: the two task classes of those runs, without rest). ``preprocess`` is an
    optional :class:`~sigformer.stages.Stage` applied to each continuous run before epoching.
    Epochs are grouped by run (``Epochs.groups``).
    """
    if isinstance(runs, str):
        if runs not in TASK_RUNS:
            raise DataError(f"unknown eegmmidb task {runs!r}; known: {sorted(TASK_RUNS)}")
        runs = TASK_RUNS[runs]
    runs = list(runs)
    if events is None:
        events = sorted({EEGMMIDB_RUNS[r][k] for r in runs for k in ("T1", "T2")
                         if k in EEGMMIDB_RUNS[r]})
    event_id = {name: i for i, name in enumerate(sorted(events))}
    parts = []
    for run in runs:
        rec = read_eegmmidb_run(root, subject, run, verify=verify)
        if preprocess is not None:
            rec = preprocess.transform(rec)
        present = {a.description for a in rec.annotations}
        if not present & set(event_id):
            continue
        ep = rec.epochs({k: v for k, v in event_id.items() if k in present}, tmin, tmax)
        ep.event_id = dict(event_id)
        ep.groups = np.full(len(ep), run)
        parts.append(ep)
    if not parts:
        raise DataError(f"runs {runs} contain none of the events {sorted(event_id)}")
    return Epochs.concatenate(parts)
