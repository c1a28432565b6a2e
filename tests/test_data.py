import numpy as np
import pytest

from sigformer import SignalError
from sigformer.data import (
    DataError,
    load_eegmmidb,
    load_moabb,
    read_eegmmidb_run,
    read_recording,
    simulate_motor_imagery,
)
from sigformer.data.eegmmidb import EEGMMIDB_RUNS


def test_run_semantics():
    for run in (4, 8, 12):
        assert EEGMMIDB_RUNS[run] == {"kind": "imagined", "T0": "rest", "T1": "left_hand",
                                      "T2": "right_hand"}
    for run in (6, 10, 14):
        assert (EEGMMIDB_RUNS[run]["T1"], EEGMMIDB_RUNS[run]["T2"]) == ("hands", "feet")
    assert EEGMMIDB_RUNS[3]["kind"] == "executed"


def test_eegmmidb_run_reads_real_file(eegmmidb_dir):
    rec = read_eegmmidb_run(eegmmidb_dir, 1, 4)
    assert rec.sfreq == 160 and rec.n_channels == 64 and rec.n_times == 20_000
    assert rec.ch_names[:3] == ["FC5", "FC3", "FC1"] and "Cz" in rec.ch_names
    assert "Fc5." not in rec.ch_names
    descriptions = {a.description for a in rec.annotations}
    assert descriptions == {"rest", "left_hand", "right_hand"}
    assert 1e-6 < np.abs(rec.data).std() < 1e-3  # volts


def test_eegmmidb_epochs_imagined_left_right(eegmmidb_dir):
    ep = load_eegmmidb(eegmmidb_dir, 1, "imagined_left_right", tmin=0, tmax=4)
    assert ep.data.shape == (45, 64, 640)  # 15 cues per run x 3 runs
    assert ep.event_id == {"left_hand": 0, "right_hand": 1}
    assert sorted(np.unique(ep.groups)) == [4, 8, 12]
    counts = np.bincount(ep.labels)
    assert counts.sum() == 45 and counts.min() >= 21
    feet = load_eegmmidb(eegmmidb_dir, 1, [6], tmin=0, tmax=4)
    assert feet.event_id == {"feet": 0, "hands": 1}


def test_eegmmidb_checksum_and_corruption(eegmmidb_dir, tmp_path):
    from sigformer.data.eegmmidb import verify_checksum

    assert verify_checksum(eegmmidb_dir / "S001R04.edf") is True
    damaged = tmp_path / "S001R04.edf"
    damaged.write_bytes((eegmmidb_dir / "S001R04.edf").read_bytes()[:300_000])
    (tmp_path / "SHA256SUMS_S001.txt").write_text(
        (eegmmidb_dir / "SHA256SUMS_S001.txt").read_text())
    with pytest.raises(DataError, match="fails its SHA-256 check"):
        read_eegmmidb_run(tmp_path, 1, 4)
    with pytest.raises(DataError, match="is truncated: its header declares 125 records"):
        read_eegmmidb_run(tmp_path, 1, 4, verify=False)


def test_file_reader_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_recording(tmp_path / "missing.edf")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="unsupported format '.txt'"):
        read_recording(tmp_path / "notes.txt")
    (tmp_path / "garbage.edf").write_bytes(b"0" * 100)
    with pytest.raises(DataError, match="shorter than an EDF header"):
        read_recording(tmp_path / "garbage.edf")
    (tmp_path / "garbage.gdf").write_bytes(b"GDF 2.20" + b"\x00" * 300)
    with pytest.raises(DataError, match="could not be read as GDF"):
        read_recording(tmp_path / "garbage.gdf")
    with pytest.raises(DataError, match="not found"):
        load_eegmmidb(tmp_path, 1, [4])


def test_fif_round_trip(tmp_path):
    rec = simulate_motor_imagery(10, sfreq=100, trial_duration=2, seed=1)
    rec.to_mne().save(tmp_path / "sim_raw.fif", verbose="error")
    back = read_recording(tmp_path / "sim_raw.fif")
    np.testing.assert_allclose(back.data, rec.data, rtol=1e-6)
    assert [a.description for a in back.annotations] == [a.description for a in rec.annotations]


def test_simulator_lateralised_erd():
    from scipy.signal import welch

    rec = simulate_motor_imagery(40, snr_db=0, erd=0.6, seed=0)
    ep = rec.epochs({"left_hand": 0, "right_hand": 1}, 0.5, 3.5)
    f, p = welch(ep.data, ep.sfreq, nperseg=250)
    mu = p[..., (f >= 9) & (f <= 13)].mean(-1)
    c3, c4 = ep.channels.index("C3"), ep.channels.index("C4")
    left, right = ep.labels == 0, ep.labels == 1
    # left-hand imagery desynchronises the right hemisphere (C4), and vice versa
    assert mu[left, c4].mean() < 0.6 * mu[right, c4].mean()
    assert mu[right, c3].mean() < 0.6 * mu[left, c3].mean()
    again = simulate_motor_imagery(40, snr_db=0, erd=0.6, seed=0)
    np.testing.assert_array_equal(again.data, rec.data)
    assert not np.array_equal(simulate_motor_imagery(40, seed=1).data, rec.data)


def test_simulator_configurable_and_validated():
    rec = simulate_motor_imagery(10, channels=["C3", "Cz", "C4", "Pz"], sfreq=128, seed=0)
    assert rec.ch_names == ["C3", "Cz", "C4", "Pz"] and rec.sfreq == 128
    assert len(rec.annotations) == 10
    with pytest.raises(SignalError, match="needs channel C4"):
        simulate_motor_imagery(10, channels=["C3", "Cz"])
    with pytest.raises(SignalError, match=r"erd is a fractional amplitude drop"):
        simulate_motor_imagery(10, erd=2)


def test_moabb_fake_dataset(isolated_mne_home):
    from moabb.datasets import FakeDataset

    fake = FakeDataset(event_list=["left_hand", "right_hand"], n_subjects=2, n_sessions=2)
    ep = load_moabb(fake, subjects=[1, 2], paradigm="LeftRightImagery")
    assert ep.data.ndim == 3 and len(ep) == len(ep.labels) == len(ep.groups)
    assert set(ep.event_id) == {"left_hand", "right_hand"}
    assert set(ep.groups) == {1, 2} and len(set(ep.sessions)) == 2
    with pytest.raises(DataError, match="not valid for paradigm"):
        load_moabb("FakeDataset", subjects=[1], paradigm="LeftRightImagery")


def test_moabb_missing_cache_is_a_clear_error_not_a_download(isolated_mne_home):
    with pytest.raises(DataError, match="not in the local MNE data cache"):
        load_moabb("BNCI2014_001", subjects=[1])
    with pytest.raises(DataError, match="has no dataset 'NoSuchSet'"):
        load_moabb("NoSuchSet")
    with pytest.raises(DataError, match=r"has no subject\(s\) \[99\]"):
        load_moabb("FakeDataset", subjects=[99])


def test_bonn_from_text_folder_and_errors(tmp_path):
    from sigformer.data import load_bonn

    rng = np.random.default_rng(0)
    for name in ("Z001.txt", "O001.txt", "N001.TXT", "F001.txt", "S001.txt", "S002.txt"):
        np.savetxt(tmp_path / name, rng.integers(-100, 100, 4097), fmt="%d")
    ep = load_bonn(tmp_path, "seizure_vs_rest", window_s=5.0)
    assert ep.unit == "a.u."  # raw A/D integers: no physical scale is claimed
    assert ep.data.shape == (6 * 4, 1, 868) and ep.event_id == {"rest": 0, "seizure": 1}
    assert np.bincount(ep.labels).tolist() == [16, 8]
    assert sorted(set(ep.groups)) == list(range(6))
    five = load_bonn(tmp_path, "five_class")
    assert five.event_id == {"F": 0, "N": 1, "O": 2, "S": 3, "Z": 4} and five.sfreq == 173.61
    np.savetxt(tmp_path / "Z002.txt", rng.integers(-100, 100, 4000), fmt="%d")
    with pytest.raises(DataError, match="differ in length"):
        load_bonn(tmp_path)
    with pytest.raises(DataError, match="unknown Bonn task"):
        load_bonn(tmp_path, "three_class")
    np.savez(tmp_path / "wrong.npz", data=np.zeros(3))
    with pytest.raises(DataError, match="not a Bonn npz"):
        load_bonn(tmp_path / "wrong.npz")


def test_bonn_real(eegmmidb_dir):
    from sigformer.data import load_bonn

    ep = load_bonn(eegmmidb_dir.parents[1] / "eeg_bonn" / "bonn_ZONFS_001-080.npz",
                   "five_class")
    assert ep.data.shape == (400, 1, 4097) and np.bincount(ep.labels).tolist() == [80] * 5


def test_eegmmidb_follows_the_unit_rule(eegmmidb_dir):
    from sigformer.validation import detect_scale

    rec = read_eegmmidb_run(eegmmidb_dir, 1, 4)
    assert rec.unit == "V" and detect_scale(rec.data) == "V"  # stored in µV, read as volts
    assert repr(rec) == "<Recording | 64 ch, 160 Hz, 125.0 s>"
