"""Review 16 of the EEG data path: stim channels, CSV time units, XDF units, TFM seeding,
OpenBCI .txt files, truncated CSV rows, frequency_shift without a rate."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch

from sigformer.channels import ChannelSet
from sigformer.data import read_recording
from sigformer.data.csv_recording import estimate_sfreq, read_csv_recording
from sigformer.estimators import SignalClassifier, as_trials
from sigformer.recording import Epochs, Recording
from sigformer.validation import DataError, DataWarning, SignalError

SFREQ = 250.0


# --- 1. stim channels -------------------------------------------------------------------

def _raw_with_stim(rng, onsets=(250, 750, 1250), codes=(1, 2, 1)):
    """An MNE Raw of 2 EEG channels + 'STI 014' holding each code for 5 samples."""
    mne = pytest.importorskip("mne")
    n = 2000
    stim = np.zeros(n)
    for onset, code in zip(onsets, codes):
        stim[onset:onset + 5] = code
    data = np.vstack([rng.standard_normal((2, n)) * 1e-5, stim])
    info = mne.create_info(["C3", "C4", "STI 014"], SFREQ, ["eeg", "eeg", "stim"])
    return mne.io.RawArray(data, info, verbose="error")


def test_fif_stim_events_become_annotations(tmp_path, rng):
    raw = _raw_with_stim(rng)
    path = tmp_path / "stim_raw.fif"
    raw.save(path, verbose="error")
    rec = read_recording(path)
    assert [(round(a.onset * SFREQ), a.description) for a in rec.annotations] == [
        (250, "1"), (750, "2"), (1250, "1")]
    assert rec.stim_channels == ["STI 014"]
    epochs = rec.epochs({"1": 1, "2": 2}, tmin=0.0, tmax=1.0)
    assert len(epochs) == 3 and epochs.labels.tolist() == [1, 2, 1]


def test_stim_channel_does_not_reach_the_model(rng):
    raw = _raw_with_stim(rng)
    assert Recording.from_mne(raw).annotations == []  # a stage's round trip adds none
    rec = Recording.from_mne(raw, stim_events=True)
    epochs = rec.epochs({"1": 1, "2": 2}, tmin=0.0, tmax=1.0)
    X, info = as_trials(epochs)
    assert X.shape[1] == 2 and info["ch_names"] == ["C3", "C4"]
    assert list(info["channels"]) == ["C3", "C4"]
    # the same trials as the mne.Epochs path (picks="data")
    X_mne, info_mne = as_trials(epochs.to_mne())
    assert info_mne["ch_names"] == info["ch_names"]
    np.testing.assert_allclose(X, X_mne, rtol=1e-5)


def test_only_data_channel_types_are_model_input(rng):
    channels = ChannelSet(("Fz", "EOG", "AUX", "STI"), ("eeg", "eog", "misc", "stim"))
    epochs = Epochs(rng.standard_normal((4, 4, 50)) * 1e-5, [0, 1, 0, 1], SFREQ, channels)
    X, info = as_trials(epochs)
    # as MNE's picks="data": misc stays (a channel asked for with include_misc=True, or MEG
    # that sigformer types as misc), stim / EOG do not
    assert info["ch_names"] == ["Fz", "AUX"] and X.shape == (4, 2, 50)
    np.testing.assert_allclose(X[:, 1], epochs.data[:, 2] * 1e6, rtol=1e-5)
    misc = Epochs(epochs.data[:, :3], epochs.labels, SFREQ,
                  ChannelSet(("MEG1", "MEG2", "STI"), ("misc", "misc", "stim")))
    assert as_trials(misc)[1]["ch_names"] == ["MEG1", "MEG2"]
    only_stim = Epochs(epochs.data[:, :1], epochs.labels, SFREQ, ChannelSet(("STI",), ("stim",)))
    with pytest.raises(SignalError, match="no data channels"):
        as_trials(only_stim)


def test_several_stim_channels_give_the_combined_channels_events_once(rng):
    # Neuromag: per-line STI 001/STI 002 beside the combined STI 014 (as mne.find_events)
    lines = np.zeros((2, 1000))
    lines[0, 100:103] = 5  # STI 001 scaled as MNE stores it
    lines[1, 400:403] = 5
    combined = np.zeros(1000)
    combined[100:103], combined[400:403] = 1, 2
    rec = Recording(np.vstack([rng.standard_normal(1000) * 1e-5, lines, combined]), SFREQ,
                    ChannelSet(("Cz", "STI 001", "STI 002", "STI 014"),
                               ("eeg", "stim", "stim", "stim")))
    assert rec.trigger_channel == "STI 014"
    assert [(round(a.onset * SFREQ), a.description) for a in rec.stim_annotations()] == [
        (100, "1"), (400, "2")]
    # and the epochs leave every trigger channel out (their value at the onset is the label)
    epochs = rec.annotations_from_stim().epochs({"1": 0, "2": 1}, tmax=0.5)
    assert list(epochs.channels.names) == ["Cz"]


def test_no_annotations_error_names_the_stim_channel(rng):
    stim = np.zeros(1000)
    stim[100:103] = 4
    rec = Recording(np.vstack([rng.standard_normal(1000) * 1e-5, stim]), SFREQ,
                    ChannelSet(("Cz", "STI 014"), ("eeg", "stim")))
    with pytest.raises(SignalError, match=r"'STI 014'.*annotations_from_stim\(\)"):
        rec.epochs(tmax=0.5)
    annotated = rec.annotations_from_stim()
    assert [(round(a.onset * SFREQ), a.description) for a in annotated.annotations] == [
        (100, "4")]


# --- 2. CSV timestamps in milliseconds at kHz rates -------------------------------------

@pytest.mark.parametrize("rate", [2000.0, 2048.0, 4000.0, 4096.0, 8000.0])
def test_millisecond_timestamps_at_khz_rates(rate):
    stamps_ms = np.round(1.7e12 + np.arange(20000) / rate * 1e3, 3)
    with pytest.warns(DataWarning, match=f"read as milliseconds \\({rate:g} Hz\\)"):
        assert estimate_sfreq(stamps_ms) == rate


def test_millisecond_khz_csv_file(tmp_path, rng):
    n, rate = 8000, 2000.0
    lines = ["timestamps,C3,C4"] + [f"{1.7e12 + i / rate * 1e3:.3f},{a:.3f},{b:.3f}"
                                    for i, (a, b) in enumerate(rng.standard_normal((n, 2)) * 20)]
    path = tmp_path / "fast.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.warns(DataWarning, match="milliseconds"):
        assert read_recording(path).sfreq == rate


def test_ambiguous_time_unit_is_refused():
    stamps = np.arange(5000) / 3.0  # 3 Hz in seconds, or 3 kHz in milliseconds: not nominal
    with pytest.raises(DataError, match=r"3 Hz if they are seconds, 3000 Hz if milliseconds"
                                        r".*give sfreq="):
        estimate_sfreq(stamps)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        assert estimate_sfreq(np.arange(5000) / 256.0) == 256.0  # seconds, no warning


# --- 3. XDF declared unit contradicted by the amplitude ----------------------------------

def test_xdf_declared_microvolts_with_volt_values_warns(tmp_path, rng):
    pytest.importorskip("pyxdf", reason="XDF reading needs the optional pyxdf package")
    from sigformer.data.xdf import XDFStream, write_xdf

    n = 1250
    volts = rng.standard_normal((n, 3)) * 1e-5
    stamps = 100.0 + np.arange(n) / SFREQ
    path = write_xdf(tmp_path / "volts.xdf", [
        XDFStream("eeg", "EEG", volts, stamps, SFREQ, ["C3", "Cz", "C4"], "microvolts")])
    with pytest.warns(DataWarning, match=r"read as unit='uV' \(the stream's channel units say "
                                         r"microvolts\), but the amplitude looks like 'V'"):
        read_recording(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        np.testing.assert_allclose(read_recording(path, unit="V").data, volts.T)


# --- 4. TFM pretraining follows the seed -------------------------------------------------

def _tfm_windows(n=8, seed=0):
    from sigformer.models.eeg.tfm_tokenizer import tfm_prepare

    rng = np.random.default_rng(seed)
    t = np.arange(400) / 200
    X = np.sin(2 * np.pi * rng.choice([4.0, 20.0], n)[:, None, None] * t) \
        + 0.2 * rng.standard_normal((n, 2, 400))
    return tfm_prepare(X, 200).astype(np.float32)


def _tfm_classifier():
    from sigformer.models import create_model

    torch.manual_seed(0)
    return create_model("tfm_classifier", preset="tiny", n_chans=2, n_times=400, n_outputs=2)


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_tfm_stages_train_the_tokenizer_and_follow_the_seed():
    from sigformer.recipes.tfm import pretrain_classifier_stages

    X = _tfm_windows()
    base = _tfm_classifier()
    start = _state(base.tokenizer)
    runs = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        model = copy.deepcopy(base)
        pretrain_classifier_stages(model, X, tokenizer_epochs=1, mtp_epochs=1, batch_size=4,
                                   seed=seed)
        runs[name] = _state(model)
    # the tokenizer stage trains (it was a no-op: Tokenizer.fit of fixed tokenizers)
    assert any(not torch.equal(start[k], runs["a"][f"tokenizer.{k}"]) for k in start)
    assert all(torch.equal(runs["a"][k], runs["b"][k]) for k in runs["a"])
    assert any(not torch.equal(runs["a"][k], runs["c"][k]) for k in runs["a"])


def test_estimator_random_state_seeds_the_pretraining(monkeypatch):
    from sigformer.recipes import tfm

    seen = []
    monkeypatch.setattr(tfm, "pretrain_mtp", lambda *args, **kwargs: seen.append(kwargs["seed"]))
    X = _tfm_windows(8)
    y = np.array([0, 1] * 4)
    for random_state in (1, 1, 2):
        SignalClassifier(model="tfm_classifier", preset="tiny", max_epochs=1, batch_size=8,
                         random_state=random_state,
                         model_params=dict(tokenizer_epochs=0, mtp_epochs=1,
                                           pretrain_batch_size=8)).fit(X, y)
    assert seen[0] == seen[1] != seen[2]


# --- 5. OpenBCI GUI .txt files -----------------------------------------------------------

def _openbci_lines(rng, n=750, header=True) -> list[str]:
    data = rng.standard_normal((2, n)) * 20
    lines = ["%OpenBCI Raw EEG Data", "%Number of channels = 2", "%Sample Rate = 250 Hz"]
    if header:
        lines.append("Sample Index, EXG Channel 0, EXG Channel 1, Timestamp, Marker Channel")
    for i in range(n):
        lines.append(f"{i % 256}, {data[0, i]:.4f}, {data[1, i]:.4f}, {1.7e9 + i / 250:.4f}, "
                     f"{3 if i == 400 else 0}")
    return lines


def test_openbci_txt_is_read_by_read_recording(tmp_path, rng):
    path = tmp_path / "OpenBCI-RAW-2024-01-01_00-00-00.txt"
    path.write_text("\n".join(_openbci_lines(rng)) + "\n")
    rec = read_recording(path)
    assert rec.sfreq == 250.0 and rec.ch_names == ["EXG Channel 0", "EXG Channel 1"]
    assert [(round(a.onset * 250), a.description) for a in rec.annotations] == [(400, "3")]
    other = tmp_path / "notes.txt"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"unsupported format '\.txt'.*%OpenBCI"):
        read_recording(other)


def test_headerless_openbci_file_says_the_header_is_missing(tmp_path, rng):
    lines = _openbci_lines(rng, header=False)
    lines[3] = lines[3].replace(", 0", ", 12:00:00.000", 1)  # a time string among the numbers
    path = tmp_path / "OpenBCI-RAW-v4.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"no header row.*first line is data.*channels=.*sfreq="):
        read_csv_recording(path)


# --- 6. a truncated last CSV row ---------------------------------------------------------

def _csv_lines(rng, n=1000) -> list[str]:
    return ["timestamps,C3,C4"] + [f"{i / 250:.4f},{a:.3f},{b:.3f}"
                                   for i, (a, b) in enumerate(rng.standard_normal((n, 2)) * 20)]


def test_truncated_last_row_is_dropped_with_a_warning(tmp_path, rng):
    lines = _csv_lines(rng)
    lines[-1] = lines[-1].rsplit(",", 1)[0]  # the recording stopped mid-row
    path = tmp_path / "cut.csv"
    path.write_text("\n".join(lines))
    with pytest.warns(DataWarning, match="last row has 2 cells.*left out"):
        rec = read_csv_recording(path)
    assert rec.n_times == 999


def test_short_row_inside_the_file_stays_an_error(tmp_path, rng):
    lines = _csv_lines(rng)
    lines[500] = lines[500].rsplit(",", 1)[0]
    path = tmp_path / "gap.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="'C4' has 1 empty"):
        read_csv_recording(path)


# --- 7. frequency_shift on plain arrays --------------------------------------------------

def test_frequency_shift_without_a_rate_is_refused_before_the_model_is_built(monkeypatch,
                                                                            rng):
    def never(self, kwargs):
        raise AssertionError("the model was built before the augmentation was checked")

    monkeypatch.setattr(SignalClassifier, "_build_model", never)
    X, y = rng.standard_normal((8, 2, 100)), np.array([0, 1] * 4)
    clf = SignalClassifier(augmentation=["frequency_shift"], max_epochs=1)
    with pytest.raises(ValueError, match=r"\{'name': 'frequency_shift', 'sfreq': <Hz>\}.*Epochs"):
        clf.fit(X, y)
    # a rate in the spec, or Epochs carrying theirs, pass the check (and reach the model)
    for spec, data in ((["frequency_shift"], Epochs(X * 1e-5, y, SFREQ, ["C3", "C4"])),
                       ([{"name": "frequency_shift", "sfreq": SFREQ}], X)):
        with pytest.raises(AssertionError, match="model was built"):
            SignalClassifier(augmentation=spec, max_epochs=1).fit(data, y)


@pytest.mark.parametrize("rate", [8.0, 10.0, 250.0])
def test_unix_time_stamps_say_their_unit_by_their_size(rate):
    # ~1.7e9 is seconds and ~1.7e12 milliseconds whatever the step: slow feature CSVs too
    from sigformer.data.csv_recording import estimate_sfreq

    seconds = np.round(1.7e9 + np.arange(2000) / rate, 3)
    millis = np.round(1.7e12 + np.arange(2000) / rate * 1e3)
    assert estimate_sfreq(seconds) == rate and estimate_sfreq(millis) == rate
