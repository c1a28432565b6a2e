import numpy as np
import pytest
import torch

from sigformer import ChannelError, ChannelSet, Recording, SignalError
from sigformer.channels import (
    TCP_DOUBLE_BANANA,
    ChannelAdapter,
    bipolar_reference,
    channels_to_iq,
    circular_array,
    iq_channel_set,
    iq_to_channels,
    max_delay_samples,
    read_electrodes_tsv,
    shaft_of,
)
from sigformer.channels.embedding import ChannelDropout, ChannelEmbedding
from sigformer.data import simulate_motor_imagery
from sigformer.stages import AdaptChannels, Bipolar


@pytest.fixture(scope="module")
def mi_recording():
    return simulate_motor_imagery(10, seed=0)


def test_adapter_reorders_drops_and_masks(mi_recording):
    target = ChannelSet(("C4", "Cz", "C3"))
    data, mask = ChannelAdapter(target).adapt(mi_recording)
    idx = [mi_recording.channels.index(n) for n in ("C4", "Cz", "C3")]
    np.testing.assert_array_equal(data.data, mi_recording.data[idx])
    assert mask.all() and data.ch_names == ["C4", "Cz", "C3"]


def test_adapter_interpolates_missing_channel_from_neighbours(mi_recording):
    rec = mi_recording
    without_c3 = rec.pick([n for n in rec.ch_names if n != "C3"])
    adapter = ChannelAdapter(rec.channels).fit(without_c3.channels)
    assert adapter.interpolated_ == ["C3"] and not adapter.mask_[rec.channels.index("C3")]
    out, _ = adapter.transform(without_c3.data)
    i = rec.channels.index("C3")
    assert np.corrcoef(out[i], rec.data[i])[0, 1] > 0.6  # splines recover most of C3
    # with zero filling the channel is silent instead
    zeros = ChannelAdapter(rec.channels, fill="zeros").fit(without_c3.channels)
    assert zeros.zero_filled_ == ["C3"]
    np.testing.assert_array_equal(zeros.transform(without_c3.data)[0][i], 0)


def test_adapter_without_positions_zero_fills_and_normalises_names():
    source = ChannelSet(("Fc5.", "C3..", "Cz.."))  # eegmmidb spelling, no positions
    target = ChannelSet(("FC5", "C3", "Cz", "C4"))
    adapter = ChannelAdapter(target).fit(source)
    np.testing.assert_array_equal(adapter.mask_, [True, True, True, False])
    assert adapter.zero_filled_ == ["C4"]
    with pytest.raises(ChannelError, match=r"only 1 of the 4 model channels.*missing"):
        ChannelAdapter(target, min_match=0.5).fit(ChannelSet(("C3", "X1", "X2")))
    with pytest.raises(ChannelError, match="fitted on 3 channels, got data with 2"):
        adapter.transform(np.zeros((2, 10)))
    with pytest.raises(ChannelError, match=r"cannot interpolate \['C4'\]: spherical splines "
                                           "need 3-D positions"):
        ChannelAdapter(target, fill="interpolate").fit(source)
    with pytest.raises(ValueError, match="fill must be one of"):
        ChannelAdapter(target, fill="nearest")


def test_adapt_channels_stage_streams(mi_recording):
    stage = AdaptChannels(["C3", "Cz", "C4", "Oz"])
    whole = stage.transform(mi_recording).data
    stage.configure(mi_recording.sfreq, mi_recording.channels)
    chunks = [stage.process(mi_recording.data[:, i:i + 100])
              for i in range(0, mi_recording.n_times, 100)]
    np.testing.assert_allclose(np.concatenate(chunks, axis=1), whole)
    assert list(stage.mask_) == [True, True, True, False]


def test_bipolar_double_banana():
    names = ["Fp1", "Fp2", "F7", "F3", "F4", "F8", "T3", "C3", "C4", "T4", "T5", "P3", "P4",
             "T6", "O1", "O2"]  # old 10-20 temporal names, as in TUH recordings
    rng = np.random.default_rng(0)
    rec = Recording(rng.standard_normal((16, 50)), 256, [f"EEG {n}-REF" for n in names])
    bip = bipolar_reference(rec)
    assert len(bip.channels) == 16 and bip.ch_names[1] == "F7-T7"
    f7, t3 = names.index("F7"), names.index("T3")
    np.testing.assert_allclose(bip.data[1], rec.data[f7] - rec.data[t3])
    np.testing.assert_allclose(Bipolar().transform(rec).data, bip.data)
    with pytest.raises(ChannelError, match=r"needs channels \['O2'\]"):
        bipolar_reference(rec.pick([f"EEG {n}-REF" for n in names if n != "O2"]))
    assert len(TCP_DOUBLE_BANANA) == 16


def test_channel_embedding_by_name_and_dropout():
    emb = ChannelEmbedding(["Fp1", "C3", "C4"], dim=8)
    a = emb(["C3", "C4"])
    b = emb(["c4", "C3.."])  # normalised names share vectors
    torch.testing.assert_close(a[0], b[1])
    assert a.shape == (2, 8)
    with pytest.raises(ChannelError, match=r"channel\(s\) \['Oz'\] have no embedding"):
        emb(["Oz"])
    shared = ChannelEmbedding(["C3"], dim=4, unknown="shared")
    torch.testing.assert_close(shared(["Oz"]), shared(["Pz"]))
    drop = ChannelDropout(0.5).train()
    x = torch.ones(64, 10, 20)
    out = drop(x)
    zeroed = (out == 0).all(-1)
    assert 0.3 < zeroed.float().mean() < 0.7  # whole channels dropped
    torch.testing.assert_close(out[~zeroed], torch.full_like(out[~zeroed], 2.0))
    torch.testing.assert_close(drop.eval()(x), x)


def test_electrodes_tsv(tmp_path):
    tsv = tmp_path / "electrodes.tsv"
    tsv.write_text("name\tx\ty\tz\tregion\nA1\t10\t0\t0\thippocampus\nA2\t12\t0\t0\thippocampus\n"
                   "B'1\t-20\t5\t1\tinsula\nB'2\t-22\t5\t1\tn/a\n")
    table = read_electrodes_tsv(tsv)
    np.testing.assert_allclose(table.positions[0], [0.010, 0, 0])  # mm -> m
    assert table.by_shaft() == {"A": ["A1", "A2"], "B'": ["B'1", "B'2"]}
    assert table.select(regions=["hippocampus"]) == ["A1", "A2"]
    assert table.select(shafts=["B'"]) == ["B'1", "B'2"]
    assert table.channel_set(["B'1"]).types == ("seeg",)
    with pytest.raises(ChannelError, match="unknown region"):
        table.select(regions=["amygdala"])
    assert shaft_of("L'12") == "L'" and shaft_of("C7") == "C"
    bad = tmp_path / "bad.tsv"
    bad.write_text("label\tx\nA1\t1\n")
    with pytest.raises(ChannelError, match="lacks the column"):
        read_electrodes_tsv(bad)


def test_real_seeg_contacts(eegmmidb_dir):
    seeg = eegmmidb_dir.parents[1] / "seeg" / "mne_misc_sample_seeg_electrodes.tsv"
    table = read_electrodes_tsv(seeg)
    assert len(table.names) == 88
    assert {k: len(v) for k, v in table.by_shaft().items()} == {
        "L'": 14, "N'": 12, "F'": 14, "O'": 16, "G'": 16, "X'": 16}
    regional = table.with_regions({"frontal": ["F'", "G'"]})
    assert len(regional.select(regions=["frontal"])) == 30
    with pytest.raises(ChannelError, match="no region column"):
        table.by_region()


def test_iq_and_microphone_arrays():
    z = np.exp(2j * np.pi * 0.1 * np.arange(16))[None]
    two = iq_to_channels(z)
    assert two.shape == (1, 2, 16)
    np.testing.assert_allclose(channels_to_iq(two), z)
    with pytest.raises(SignalError, match="must be complex"):
        iq_to_channels(np.ones(4))
    assert iq_channel_set(2).names == ("I0", "Q0", "I1", "Q1")
    array = circular_array(4, 0.1)
    assert array.types == ("mic",) * 4
    np.testing.assert_allclose(np.linalg.norm(array.positions, axis=1), 0.1)
    assert max_delay_samples(array, 16000) == pytest.approx(0.2 / 343 * 16000)
