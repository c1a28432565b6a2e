import mne
import numpy as np
import pytest

from sigformer import ChannelError, ChannelSet, Epochs, Recording, SignalError
from sigformer.channels import check_channels_match, normalize_channel_name
from sigformer.recording import Annotation


@pytest.mark.parametrize("raw,expected", [
    ("Fc5.", "FC5"), ("C3..", "C3"), ("Cz..", "Cz"), ("Iz..", "Iz"), ("Fcz.", "FCz"),
    ("EEG Fp1-REF", "Fp1"), ("eeg c4", "C4"), ("T10", "T10"), ("Status", "Status"),
])
def test_normalize_channel_name(raw, expected):
    assert normalize_channel_name(raw) == expected


def test_channel_set_validation():
    with pytest.raises(ChannelError, match="duplicate channel names"):
        ChannelSet(("C3", "C3"))
    with pytest.raises(ChannelError, match="unknown channel type"):
        ChannelSet(("C3",), ("brainwave",))
    with pytest.raises(ChannelError, match=r"positions must have shape \(2, 3\)"):
        ChannelSet(("C3", "C4"), positions=np.zeros((3, 3)))
    chs = ChannelSet.from_names(["C3", "C4", "XYZ"]).with_montage()
    assert np.isfinite(chs.positions[:2]).all() and np.isnan(chs.positions[2]).all()
    assert chs.pick(["C4"]).names == ("C4",)
    with pytest.raises(ChannelError, match=r"channels \['Pz'\] are not in"):
        chs.pick(["Pz"])


def test_check_channels_match_names_the_difference():
    check_channels_match(["C3", "C4"], ["C3", "C4"])
    with pytest.raises(ChannelError, match=r"missing \['Cz'\], unexpected \['Pz'\]"):
        check_channels_match(["C3", "Cz"], ["C3", "Pz"])
    with pytest.raises(ChannelError, match="different order"):
        check_channels_match(["C3", "C4"], ["C4", "C3"])


def _recording(rng, n_ch=3, n=1000, sfreq=100.0):
    ann = [Annotation(1.0, 2.0, "left"), Annotation(4.0, 2.0, "right"),
           Annotation(8.5, 2.0, "left")]  # the last runs past the end and is dropped
    return Recording(rng.standard_normal((n_ch, n)) * 1e-5, sfreq,
                     ChannelSet(("C3", "Cz", "C4")[:n_ch]), ann)


def test_recording_mne_round_trip(rng):
    rec = _recording(rng)
    raw = rec.to_mne()
    assert isinstance(raw, mne.io.BaseRaw) and raw.ch_names == ["C3", "Cz", "C4"]
    back = Recording.from_mne(raw)
    np.testing.assert_allclose(back.data, rec.data)
    assert back.sfreq == rec.sfreq and list(back.channels) == list(rec.channels)
    assert [(a.onset, a.description) for a in back.annotations] == \
        [(a.onset, a.description) for a in rec.annotations]


def test_epoching_from_annotations(rng):
    rec = _recording(rng)
    ep = rec.epochs({"left": 0, "right": 1}, tmin=0.0, tmax=2.0)
    assert ep.data.shape == (2, 3, 200)
    np.testing.assert_array_equal(ep.labels, [0, 1])
    np.testing.assert_allclose(ep.data[1], rec.data[:, 400:600])
    with pytest.raises(SignalError, match="none of the requested events"):
        rec.epochs({"feet": 0})


def test_epochs_mne_round_trip_and_indexing(rng):
    ep = _recording(rng).epochs({"left": 0, "right": 1}, 0.0, 2.0)
    mne_ep = ep.to_mne()
    assert isinstance(mne_ep, mne.BaseEpochs) and len(mne_ep) == 2
    back = Epochs.from_mne(mne_ep)
    np.testing.assert_allclose(back.data, ep.data)
    np.testing.assert_array_equal(back.labels, ep.labels)
    assert back.event_id == {"left": 0, "right": 1}
    assert len(ep[[1]]) == 1 and ep[[1]].labels[0] == 1
    both = Epochs.concatenate([ep, ep])
    assert len(both) == 4


def test_recording_rejects_bad_input(rng):
    with pytest.raises(SignalError, match="NaN"):
        Recording(np.full((2, 10), np.nan), 100, ["a", "b"])
    with pytest.raises(SignalError, match="data has 2 channels but the channel set names 3"):
        Recording(np.zeros((2, 10)), 100, ["a", "b", "c"])
    with pytest.raises(SignalError, match="sfreq must be a positive number"):
        Recording(np.zeros((2, 10)), -5, ["a", "b"])
    with pytest.raises(SignalError, match="empty"):
        Recording(np.zeros((2, 0)), 100, ["a", "b"])
    with pytest.raises(SignalError, match=r"must be \(n_channels, n_times\)"):
        Recording(np.zeros(10), 100, ["a"])
