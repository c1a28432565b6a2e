"""`sigformer stream` from a new user's review: a file streamed unpaced loses no sample,
`--record` writes the format its suffix names (or refuses), and `stream --out` names the
separated files as `sigformer separate` does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from repo_scripts import cli_json

from sigformer.cli import build_parser, main
from tests.test_bundle import NAMES, _eeg_bundle

RATE = 160


@pytest.fixture(scope="module")
def eeg_bundle(tmp_path_factory) -> Path:
    return _eeg_bundle([]).save(tmp_path_factory.mktemp("eeg") / "b")


def _recording(tmp_path: Path, seconds: int) -> Path:
    import mne

    data = np.random.default_rng(5).standard_normal((len(NAMES), RATE * seconds)) * 1e-5
    raw = mne.io.RawArray(data, mne.create_info(NAMES, RATE, "eeg"), verbose="error")
    raw.save(tmp_path / "long_raw.fif", verbose="error")
    return tmp_path / "long_raw.fif"


def test_an_unpaced_file_longer_than_the_queue_is_processed_whole(tmp_path, capsys,
                                                                  eeg_bundle):
    # 12,000 samples in chunks of 32: 375 chunks, the queue holds 256
    path = _recording(tmp_path, seconds=75)
    report = cli_json(capsys, ["stream", str(eeg_bundle), "--source", f"file:{path}"])
    assert report["samples"] == RATE * 75
    assert report["queue_drops"] == 0 and report["gaps"] == 0
    assert report["dropped_samples"] == 0
    hop = RATE // 4  # a quarter of the 1 s window
    assert report["predictions"] == (RATE * 75 - RATE) // hop + 1


def test_record_csv_writes_csv_rows(tmp_path, capsys, eeg_bundle):
    path = _recording(tmp_path, seconds=3)
    report = cli_json(capsys, ["stream", str(eeg_bundle), "--source", f"file:{path}",
                               "--hop-s", "0.5", "--record", str(tmp_path / "preds.csv")])
    lines = (tmp_path / "preds.csv").read_text().splitlines()
    assert lines[0] == "timestamp,left,right"
    rows = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    assert len(rows) == report["predictions"] == 5  # (3 s - 1 s) / 0.5 s + 1
    np.testing.assert_allclose(rows[:, 1:].sum(1), 1, atol=1e-5)
    assert np.all(np.diff(rows[:, 0]) > 0)
    assert report["written"] == [str(tmp_path / "preds.csv")]


@pytest.mark.parametrize("name", ["preds.txt", "preds"])
def test_record_with_an_unknown_suffix_is_refused_and_writes_nothing(tmp_path, capsys,
                                                                     eeg_bundle, name):
    path = _recording(tmp_path, seconds=2)
    assert main(["stream", str(eeg_bundle), "--source", f"file:{path}", "--record",
                 str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert "cannot tell the format" in err
    assert ".sgrec" in err and ".csv" in err and ".xdf" in err
    assert not list(tmp_path.glob("preds*"))


def test_stream_names_separated_files_as_separate_does(tmp_path, capsys, separation_bundle):
    from sigformer.speech.audio import write_audio

    mix = tmp_path / "meeting.wav"
    write_audio(mix, 0.1 * np.random.default_rng(0).standard_normal((1, 8000)), 8000)
    streamed = cli_json(capsys, ["stream", str(separation_bundle), "--source", f"wav:{mix}",
                                 "--out", str(tmp_path / "streamed")])
    separated = cli_json(capsys, ["separate", str(mix), "--model", str(separation_bundle),
                                  "--out", str(tmp_path / "separated")])
    assert [Path(p).name for p in streamed["written"]] == ["meeting_s1.wav", "meeting_s2.wav"]
    assert [Path(p).name for p in separated["outputs"]] == ["meeting_s1.wav", "meeting_s2.wav"]


def test_help_says_what_separate_writes():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    out = next(a for a in sub.choices["separate"]._actions if a.dest == "out")
    assert "<input stem>_<label>.wav" in out.help and "source_s1" not in out.help
