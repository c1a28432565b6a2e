import mne
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from sigformer import ChannelError, ChannelSet, Epochs, Recording, SignalError
from sigformer.channels import ChannelAdapter, check_channels_match, normalize_channel_name
from sigformer.recording import Annotation, detect_scale


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


# --- MNE interop, reprs and the unit rule --------------------------------------------------

def test_short_reprs_in_mne_style():
    rec = Recording(np.zeros((64, 20000)), 160.0, [f"e{i}" for i in range(64)])
    assert repr(rec) == "<Recording | 64 ch, 160 Hz, 125.0 s>"
    ep = Epochs(np.zeros((3, 2, 100)), np.array([0, 1, 1]), 100.0, ["C3", "C4"],
                {"left": 0, "right": 1}, tmin=-0.5)
    assert repr(ep) == "<Epochs | 3 events ('left': 1, 'right': 2), 2 ch, 100 Hz, -0.5 – 0.49 s>"
    chs = ChannelSet(("C3", "Cz", "C4", "Pz", "EOG"), ("eeg",) * 4 + ("eog",))
    assert repr(chs) == "<ChannelSet | 5 ch (4 eeg, 1 eog): C3, Cz, C4, Pz, ...>"
    micro = Recording(np.zeros((1, 10)), 10.0, ["a"], unit="uV")
    assert repr(micro).endswith(", unit=uV>")


@pytest.mark.parametrize("name", ["standard_1005", "standard_1020", "colin27_1005", None])
def test_standard_montage_names_work_on_every_mne(name):
    chs = ChannelSet(("C3", "Cz", "Oz")).with_montage(name)
    assert np.isfinite(chs.positions).all()
    with pytest.raises(ChannelError, match="unknown montage 'standard_9999'.*aliases"):
        ChannelSet(("C3",)).with_montage("standard_9999")


def test_adapter_fits_on_mne_info_and_objects():
    import mne

    info = mne.create_info(["Cz", "C4", "C3", "EOG1"], 100.0, ["eeg", "eeg", "eeg", "eog"])
    raw = mne.io.RawArray(np.zeros((4, 50)), info, verbose="error")
    for source in (info, raw, Recording.from_mne(raw)):
        adapter = ChannelAdapter(["C3", "Cz", "C4"]).fit(source)
        np.testing.assert_array_equal(adapter.matrix_[:, :3],
                                      [[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    with pytest.raises(ChannelError, match="got the string 'C3'"):
        ChannelAdapter(["C3"]).fit("C3")


def test_mne_round_trips_keep_volts(rng):
    import mne

    data = rng.standard_normal((2, 3, 50)) * 1e-5
    info = mne.create_info(["C3", "Cz", "C4"], 100.0, "eeg")
    events = np.array([[0, 0, 1], [60, 0, 2]])
    mne_epochs = mne.EpochsArray(data, info, events, event_id={"a": 1, "b": 2}, verbose="error")
    ep = Epochs.from_mne(mne_epochs)
    assert ep.unit == "V"
    np.testing.assert_array_equal(ep.data, data)  # never converted to microvolts
    np.testing.assert_array_equal(ep.to_mne().get_data(), data)
    raw = mne.io.RawArray(data[0], info, verbose="error")
    rec = Recording.from_mne(raw)
    assert rec.unit == "V" and np.array_equal(rec.data, data[0])
    with pytest.raises(SignalError, match="MNE objects hold volts"):
        Epochs(data * 1e6, [0, 1], 100.0, ["C3", "Cz", "C4"], unit="uV").to_mne()
    with pytest.raises(SignalError, match="unit must be one of"):
        Recording(data[0], 100.0, ["C3", "Cz", "C4"], unit="kV")


def test_concatenate_reports_a_rate_mismatch_as_such(rng):
    a = Epochs(rng.standard_normal((2, 1, 100)), [0, 1], 100.0, ["C3"])
    b = Epochs(rng.standard_normal((2, 1, 128)), [0, 1], 128.0, ["C3"])
    with pytest.raises(SignalError, match=r"sampling-rate mismatch: part 1 is at 128 Hz"):
        Epochs.concatenate([a, b])


@settings(max_examples=40, deadline=None)
@given(sd_uv=hst.floats(2.0, 500.0), n_ch=hst.integers(1, 8), seed=hst.integers(0, 2**16),
       offset_uv=hst.floats(-200, 200))
def test_detect_scale_tells_volts_from_microvolts(sd_uv, n_ch, seed, offset_uv):
    x = np.random.default_rng(seed).standard_normal((n_ch, 512)) * sd_uv + offset_uv
    assert detect_scale(x) == "uV"
    assert detect_scale(x * 1e-6) == "V"
    assert detect_scale(x[None] * 1e-6) == "V"  # trials (n_trials, n_channels, n_times)


def test_detect_scale_is_unknown_for_unitless_data(rng):
    assert detect_scale(rng.standard_normal((4, 500))) == "unknown"  # z-scored
    assert detect_scale(np.zeros((2, 100))) == "unknown"
    assert detect_scale(rng.standard_normal((2, 100)) * 1e5) == "unknown"


@pytest.mark.parametrize("meas_date", [None, "2020-01-01"])
def test_from_mne_onsets_count_from_the_first_kept_sample(meas_date):
    """A Raw that starts after sample 0 (cropped, or first_samp > 0): MNE stores onsets from
    the acquisition's sample 0 with or without a measurement date; the recording's count
    from its own first sample, where mne.events_from_annotations puts them."""
    import datetime

    import mne

    info = mne.create_info(["C3", "C4"], 100.0, "eeg")
    raw = mne.io.RawArray(np.zeros((2, 3000)), info, first_samp=500, verbose="error")
    if meas_date:
        raw.set_meas_date(datetime.datetime.fromisoformat(meas_date).replace(
            tzinfo=datetime.timezone.utc))
    raw.set_annotations(mne.Annotations([5.0, 12.0], [0.0, 0.0], ["a", "b"],
                                        orig_time=raw.info["meas_date"]))
    raw.crop(2.0)
    events, _ = mne.events_from_annotations(raw, verbose="error")
    rec = Recording.from_mne(raw)
    np.testing.assert_allclose([a.onset * 100 for a in rec.annotations],
                               events[:, 0] - raw.first_samp)


def test_concatenate_keeps_event_names_when_recordings_number_them_differently():
    data = np.zeros((2, 1, 10))
    a = Epochs(data, np.array([0, 1]), 100.0, ChannelSet(("C3",)), {"left": 0, "right": 1})
    b = Epochs(np.zeros((3, 1, 10)), np.array([0, 1, 2]), 100.0, ChannelSet(("C3",)),
               {"left": 0, "rest": 1, "right": 2})
    both = Epochs.concatenate([a, b])
    names = {code: name for name, code in both.event_id.items()}
    assert [names[c] for c in both.labels] == ["left", "right", "left", "rest", "right"]
    assert len(set(both.event_id.values())) == 3


def test_a_requested_event_that_never_occurs_warns_or_raises():
    from sigformer.validation import DataWarning

    rec = Recording(np.zeros((1, 1000)), 100.0, ChannelSet(("C3",)),
                    [Annotation(1.0, 0.0, "T1"), Annotation(5.0, 0.0, "T2")])
    with pytest.warns(DataWarning, match=r"event\(s\) \['T3'\] of event_id do not occur"):
        ep = rec.epochs({"T1": 0, "T3": 1}, 0.0, 1.0)
    assert list(ep.labels) == [0]
    with pytest.raises(SignalError, match=r"\['T3'\]"):
        rec.epochs({"T1": 0, "T3": 1}, 0.0, 1.0, on_missing="raise")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rec.epochs({"T1": 0, "T3": 1}, 0.0, 1.0, on_missing="ignore")


# --- channel layer review (fourteenth session) -------------------------------------------

TARGET8 = ["Fp1", "F7", "T7", "C3", "Cz", "P7", "O1", "Fz"]


def test_old_1020_temporal_names_match_their_modern_positions():
    target = ChannelSet.from_names(TARGET8).with_montage()
    source = ChannelSet.from_names(["Fp1", "F7", "EEG T3-REF", "C3", "Cz", "T5", "O1", "Fz"])
    adapter = ChannelAdapter(target).fit(source)
    assert adapter.mask_.all() and adapter.interpolated_ == [] == adapter.zero_filled_
    x = np.arange(8.0)[:, None] * np.ones((1, 5))
    np.testing.assert_array_equal(adapter.transform(x)[0], x)  # T3 -> T7, T5 -> P7 rows


def _raw_with_extras(names, montage=True):
    info = mne.create_info([*names, "EOG1", "STI"], 100.0, ["eeg"] * len(names) + ["eog", "stim"])
    raw = mne.io.RawArray(np.random.default_rng(0).normal(0, 1e-5, (len(names) + 2, 300)), info,
                          verbose="error")
    if montage:
        raw.set_montage("standard_1020", on_missing="ignore", verbose="error")
    return raw


def test_a_channel_without_a_position_does_not_turn_off_interpolation():
    raw = _raw_with_extras([n for n in TARGET8 if n != "Cz"])
    channels = ChannelSet.from_mne_info(raw.info)
    assert channels.positions is not None and np.isnan(channels.positions[-2:]).all()
    adapter = ChannelAdapter(ChannelSet.from_names(TARGET8).with_montage()).fit(raw)
    assert adapter.interpolated_ == ["Cz"] and adapter.zero_filled_ == []


def test_template_positions_are_in_the_head_frame_of_a_recording():
    """A model's channels from with_montage() and a Raw's channels after set_montage are
    interpolated in one frame: the weights equal MNE's own interpolate_bads."""
    raw = _raw_with_extras(TARGET8)
    raw.pick("eeg")
    raw.info["bads"] = ["Cz"]
    expected = raw.copy().interpolate_bads(reset_bads=False, verbose="error").get_data()[4]
    source = raw.copy().drop_channels(["Cz"])
    adapter = ChannelAdapter(ChannelSet.from_names(TARGET8).with_montage()).fit(source)
    got = adapter.transform(source.get_data())[0][4]
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-12)


def test_nan_in_a_dropped_channel_stays_out_of_the_adapted_data():
    raw = _raw_with_extras(TARGET8)
    data = raw.get_data()
    data[-1] = np.nan  # the stim channel, dropped by the adapter
    adapted, _ = ChannelAdapter(ChannelSet.from_names(TARGET8)).fit(raw).transform(data)
    assert np.isfinite(adapted).all()


def test_montage_positions_are_found_for_unnormalised_names():
    names = ["Fc5.", "EEG O1-REF", "T3", "Cz.."]
    positions = ChannelSet.from_names(names).with_montage().positions
    assert np.isfinite(positions).all()
    np.testing.assert_array_equal(positions[2], ChannelSet.from_names(["T7"]).with_montage()
                                  .positions[0])


def test_two_recording_channels_for_one_electrode_are_refused_when_the_model_uses_it():
    with pytest.raises(ChannelError, match=r"\['EEG Fp1-REF', 'EEG Fp1-LE'\] are the same "
                                           r"electrode as model channel 'Fp1'"):
        ChannelAdapter(ChannelSet.from_names(TARGET8)).fit(
            ["EEG Fp1-REF", "EEG Fp1-LE", "Cz", "C3", "F7", "O1", "Fz", "T7"])
    unused = ChannelAdapter(ChannelSet.from_names(["Cz", "C3"])).fit(
        ["EEG Fp1-REF", "EEG Fp1-LE", "Cz", "C3"])
    assert unused.mask_.all()


def test_sets_holding_both_old_and_new_temporal_names_map_each_to_itself():
    adapter = ChannelAdapter(ChannelSet(("T3", "T7", "Cz"))).fit(["T3", "T7", "Cz"])
    np.testing.assert_array_equal(adapter.matrix_, np.eye(3))
    # montages that list only the old names still give them positions
    positions = ChannelSet(("T3", "T5", "Cz")).with_montage("standard_postfixed").positions
    assert np.isfinite(positions).all()
