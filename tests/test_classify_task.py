"""The classification task's data loading: recordings without the requested events."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sigformer.tasks import load_task_config
from sigformer.tasks.classify import load_epochs
from sigformer.validation import SignalError


def _csv(path: Path, markers: dict[int, str], n: int = 2560) -> Path:
    """A 4-channel 256 Hz table in microvolts with the given marker cells."""
    data = np.random.default_rng(0).standard_normal((4, n)) * 20
    rows = [f"{i / 256:.6f}," + ",".join(f"{v:.3f}" for v in data[:, i]) + f",{markers.get(i, 0)}"
            for i in range(n)]
    path.write_text("\n".join(["timestamps,TP9,AF7,AF8,TP10,Marker0", *rows]) + "\n")
    return path


def _config(path: Path, events):
    return load_task_config({"data": {"source": "files", "files": [str(path)]},
                             "epochs": {"events": events, "tmin": 0.0, "tmax": 1.0}})


def test_missing_events_are_named_with_those_the_file_has(tmp_path):
    path = _csv(tmp_path / "rec.csv", {300: "1", 900: "2", 1500: "1"})
    with pytest.raises(SignalError, match=r"rec\.csv: none of the requested events "
                                          r"\['left_hand', 'right_hand'\] \(epochs\.events\) "
                                          r"occur in it; its events are \['1', '2'\]"):
        load_epochs(_config(path, ["left_hand", "right_hand"]))
    epochs = load_epochs(_config(path, ["1", "2"]))  # names it has
    assert len(epochs) == 3 and epochs.event_id == {"1": 0, "2": 1}


def test_eegmmidb_event_names_get_the_folder_hint(tmp_path):
    path = _csv(tmp_path / "S001R04.csv", {300: "T0", 900: "T1", 1500: "T2"})
    with pytest.raises(SignalError, match=r"its events are \['T0', 'T1', 'T2'\].*pass the "
                                          r"folder holding it as --data"):
        load_epochs(_config(path, ["left_hand", "right_hand"]))


def test_a_recording_without_events_says_so(tmp_path):
    path = _csv(tmp_path / "rest.csv", {})
    with pytest.raises(SignalError, match=r"rest\.csv has no event annotations: epoching needs "
                                          r"events \(\['left_hand'\] requested"):
        load_epochs(_config(path, ["left_hand"]))
    with pytest.raises(SignalError, match=r"rest\.csv has no event annotations"):
        load_epochs(_config(path, None))
