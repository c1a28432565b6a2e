"""File readers: CSV (Muse / OpenBCI) and XDF recordings, EDF header robustness, MOABB."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from sigformer.data import read_recording
from sigformer.data.csv_recording import estimate_sfreq, read_csv_recording
from sigformer.data.io import DataWarning, read_raw
from sigformer.validation import DataError, SignalError
from tests.edf_files import write_edf

SHARED_DATA = Path(os.environ.get("SIGFORMER_SHARED_DATA",
                                  Path(__file__).resolve().parents[2] / "shared" / "data"))
MUSE = SHARED_DATA / "eeg_muse"


# --- CSV ---------------------------------------------------------------------------------

def _write_muse_csv(path: Path, data_uv: np.ndarray, sfreq: float, markers: dict[int, int],
                    t0: float = 1000.0, round_to: float = 1e-3) -> Path:
    n = data_uv.shape[1]
    stamps = np.round((t0 + np.arange(n) / sfreq) / round_to) * round_to
    marker = np.zeros(n)
    for sample, value in markers.items():
        marker[sample] = value
    lines = ["timestamps,TP9,AF7,AF8,TP10,Right AUX,Marker0"]
    for i in range(n):
        values = ",".join(f"{v:.3f}" for v in data_uv[:, i])
        lines.append(f"{stamps[i]:.3f},{values},{marker[i]:g}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_generated_muse_csv_reads_in_volts_with_markers(tmp_path, rng):
    data = rng.standard_normal((5, 3000)) * 20  # 4 EEG + AUX, microvolts
    path = _write_muse_csv(tmp_path / "rec.csv", data, 256.0, {300: 1, 1000: 2, 2999: 1})
    rec = read_recording(path, event_names={1: "non-target", 2: "target"})
    assert rec.sfreq == 256.0 and rec.unit == "V"
    assert rec.ch_names == ["TP9", "AF7", "AF8", "TP10"]  # the auxiliary input is dropped
    np.testing.assert_allclose(rec.data, np.round(data[:4], 3) * 1e-6, atol=1e-12)
    assert [(a.onset, a.description) for a in rec.annotations] == [
        (300 / 256, "non-target"), (1000 / 256, "target"), (2999 / 256, "non-target")]
    with_aux = read_csv_recording(path, include_misc=True)
    assert with_aux.ch_names[-1] == "Right AUX" and with_aux.channels.types[-1] == "misc"


@settings(max_examples=30, deadline=None)
@given(rate=hst.sampled_from([128.0, 250.0, 256.0, 500.0, 512.0]),
       seconds=hst.integers(20, 200), t0=hst.floats(0, 2e9),
       n_backward=hst.integers(0, 50), seed=hst.integers(0, 2**16))
def test_rate_from_rounded_jittered_timestamps(rate, seconds, t0, n_backward, seed):
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    stamps = t0 + np.arange(n) / rate + rng.normal(0, 0.002, n)  # 2 ms clock jitter
    stamps = np.round(stamps, 3)  # rounded to milliseconds
    swaps = rng.integers(1, n - 1, n_backward)
    stamps[swaps], stamps[swaps - 1] = stamps[swaps - 1], stamps[swaps]  # steps backwards
    assert estimate_sfreq(stamps) == rate
    assert estimate_sfreq(stamps * 1000) == rate  # milliseconds are recognised


@pytest.mark.parametrize("factor, unit", [(1e3, "milliseconds"), (1e6, "microseconds"),
                                          (1e9, "nanoseconds")])
def test_timestamps_in_smaller_units_are_read_with_a_warning(factor, unit):
    stamps = 1.7e9 + np.arange(5000) / 256.0
    with pytest.warns(DataWarning, match=f"read as {unit} \\(256 Hz\\)"):
        assert estimate_sfreq(stamps * factor) == 256.0


def test_timestamps_too_slow_for_eeg_in_any_unit_are_refused():
    with pytest.raises(DataError, match="too slow for EEG even in nanoseconds"):
        estimate_sfreq(np.arange(100) * 1e12)


def test_a_held_trigger_is_one_event(tmp_path):
    trigger = np.zeros(2000, int)
    trigger[500:505] = 1  # held for 5 samples
    trigger[1500:1505] = 2
    trigger[1505:1507] = 1  # a different code right after: its own event
    lines = ["timestamps,C3,C4,trigger"] + [f"{i / 250:.4f},1.0,2.0,{v}"
                                            for i, v in enumerate(trigger)]
    path = tmp_path / "held.csv"
    path.write_text("\n".join(lines) + "\n")
    rec = read_csv_recording(path)
    assert [(round(a.onset * 250), a.description) for a in rec.annotations] == [
        (500, "1"), (1500, "2"), (1505, "1")]


def test_openbci_gui_v5_header_with_repeated_placeholders_and_a_marker_channel(tmp_path, rng):
    header = ("Sample Index, EXG Channel 0, EXG Channel 1, Accel Channel 0, Not Used, "
              "Digital Channel 0 (D11), Not Used, Timestamp, Marker Channel, "
              "Timestamp (Formatted)")
    data = rng.standard_normal((2, 750)) * 20
    lines = ["%OpenBCI Raw EXG Data", "%Sample Rate = 250 Hz", header]
    for i in range(750):
        marker = 3 if i == 400 else 0
        lines.append(f"{i % 256}, {data[0, i]:.4f}, {data[1, i]:.4f}, 0.1, 0, 1, 0, "
                     f"{1.7e9 + i / 250:.4f}, {marker}, 2024-01-01 00:00:00.000")
    path = tmp_path / "OpenBCI-RAW-v5.txt"
    path.write_text("\n".join(lines) + "\n")
    rec = read_csv_recording(path)
    assert rec.ch_names == ["EXG Channel 0", "EXG Channel 1"]
    assert [(round(a.onset * 250), a.description) for a in rec.annotations] == [(400, "3")]
    misc = read_csv_recording(path, include_misc=True)
    assert "Not Used" not in misc.ch_names and "Marker Channel" not in misc.ch_names


def test_rate_estimate_is_not_snapped_when_far_from_nominal():
    stamps = np.arange(5000) / 300.0
    assert estimate_sfreq(stamps) == pytest.approx(300.0)
    with pytest.raises(DataError, match="do not increase"):
        estimate_sfreq(np.zeros(100))


def test_openbci_style_csv_with_comment_header(tmp_path, rng):
    data = rng.standard_normal((3, 500)) * 30
    lines = ["%OpenBCI Raw EEG Data", "%Number of channels = 3", "%Sample Rate = 250 Hz",
             "Sample Index, EXG Channel 0, EXG Channel 1, EXG Channel 2, Accel Channel 0, "
             "Timestamp, Timestamp (Formatted)"]
    for i in range(500):
        lines.append(f"{i % 256}, {data[0, i]:.4f}, {data[1, i]:.4f}, {data[2, i]:.4f}, 0.0, "
                     f"{1.7e9 + i * 0.004:.3f}, 2024-01-01 00:00:00.000")
    path = tmp_path / "OpenBCI-RAW.csv"
    path.write_text("\n".join(lines) + "\n")
    rec = read_recording(path)
    assert rec.sfreq == 250.0
    assert rec.ch_names == ["EXG Channel 0", "EXG Channel 1", "EXG Channel 2"]
    np.testing.assert_allclose(rec.data, np.round(data, 4) * 1e-6, atol=1e-12)


@pytest.mark.parametrize("content,options,match", [
    ("timestamps,a\n", {}, "no data rows"),
    ("1,2\n3,4\n", {}, "no header row"),
    ("x,a\n1,2\n2,3\n", {}, "no timestamp column"),
    ("timestamps,a\n0,1\n0.1,\n0.2,3\n", {}, r"channel 'a' has 1 empty"),
    ("timestamps,a\n0,1\n0.1,2\n", {"channels": ["b"]}, r"no channel column\(s\) \['b'\]"),
    ("timestamps,a\n0,1\n0.1,2\n", {"marker_columns": ["m"]}, r"no marker column\(s\)"),
    ("timestamps,a\n0,1\n0.1,2\n", {"sfreq": 10, "unit": "furlong"}, "unit must be one of"),
])
def test_bad_csv_names_the_problem(tmp_path, content, options, match):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=match):
        read_recording(path, **options)


def test_given_sfreq_that_contradicts_the_timestamps_warns(tmp_path, rng):
    path = _write_muse_csv(tmp_path / "rec.csv", rng.standard_normal((5, 3000)) * 20, 256.0, {})
    with pytest.warns(DataWarning, match=r"sfreq=250 Hz was given, but its timestamps say "
                                         r"256 Hz \(2\.3% apart\)"):
        rec = read_recording(path, sfreq=250)
    assert rec.sfreq == 250  # the given rate is still used
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        assert read_recording(path, sfreq=256).sfreq == 256
        assert read_recording(path, sfreq=255).sfreq == 255  # within 1 %: rounding, no warning


def test_unit_that_contradicts_the_amplitude_warns(tmp_path, rng):
    data_uv = rng.standard_normal((5, 3000)) * 20
    path = _write_muse_csv(tmp_path / "rec.csv", data_uv, 256.0, {})
    with pytest.warns(DataWarning, match=r"read as unit='V', but the amplitude looks like "
                                         r"'uV'.*pass unit='uV'"):
        read_recording(path, unit="V")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        read_recording(path, unit="uV")  # what it is
        read_recording(path, unit="auto")
    volts = tmp_path / "volts.csv"  # the same signal written in volts
    rows = [f"{i / 256:.6f}," + ",".join(f"{v:.6e}" for v in data_uv[:4, i] * 1e-6)
            for i in range(data_uv.shape[1])]
    volts.write_text("\n".join(["timestamps,TP9,AF7,AF8,TP10", *rows]) + "\n")
    with pytest.warns(DataWarning, match=r"read as unit='uV', but the amplitude looks like 'V'"):
        read_recording(volts)  # the default unit, microvolts, on a file in volts
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        np.testing.assert_allclose(read_recording(volts, unit="V").data, data_uv[:4] * 1e-6,
                                   rtol=1e-5)


def test_real_muse_recordings():
    files = sorted(MUSE.glob("**/*.csv*")) if MUSE.is_dir() else []
    if not files:
        pytest.skip(f"Muse recordings not found in {MUSE} (../shared/data is only present on "
                    "the project's CI and dev machines)")
    for path in files:
        rec = read_csv_recording(path, event_names={1: "a", 2: "b"})
        assert rec.sfreq == 256.0, path  # despite ms-rounded, sometimes backward timestamps
        assert rec.ch_names == ["TP9", "AF7", "AF8", "TP10"]
        assert 30 < len(rec.annotations) < 400
        assert {a.description for a in rec.annotations} == {"a", "b"}
        from sigformer.validation import detect_scale

        assert detect_scale(rec.data) == "V"  # converted from the file's microvolts


# --- XDF ---------------------------------------------------------------------------------

def test_generated_xdf_round_trip(tmp_path, rng):
    pytest.importorskip("pyxdf", reason="XDF reading needs the optional pyxdf package")
    from sigformer.data.xdf import XDFStream, write_xdf

    n, rate, t0 = 1250, 250.0, 5000.0
    data = rng.standard_normal((n, 3)) * 15
    stamps = t0 + np.arange(n) / rate
    path = write_xdf(tmp_path / "session.xdf", [
        XDFStream("markers", "Markers", ["left", "right"], np.array([t0 + 1.0, t0 + 3.5])),
        XDFStream("aux", "ACC", rng.standard_normal((n, 8)), stamps, rate),
        XDFStream("eeg", "EEG", data, stamps, rate, ["C3", "CZ", "C4"], "microvolts"),
    ])
    rec = read_recording(path)
    assert rec.sfreq == rate and rec.ch_names == ["C3", "Cz", "C4"]  # EEG stream chosen
    np.testing.assert_allclose(rec.data, data.T * 1e-6, rtol=1e-12)
    assert [(round(a.onset, 6), a.description) for a in rec.annotations] == [
        (1.0, "left"), (3.5, "right")]
    aux = read_recording(path, stream="aux", unit="V")
    assert aux.n_channels == 8 and aux.channels.types[0] == "misc"
    with pytest.raises(DataError, match="no stream named 'nope'"):
        read_recording(path, stream="nope")
    with pytest.raises(DataError, match="'markers' is a marker stream.*'eeg'"):
        read_recording(path, stream="markers")
    (tmp_path / "fake.xdf").write_bytes(b"NOTXDF" * 10)
    with pytest.raises(DataError, match="not an XDF file"):
        read_recording(tmp_path / "fake.xdf")


def test_xdf_markers_stay_on_their_samples_when_the_real_rate_is_not_nominal(tmp_path, rng):
    """An amplifier at 255.5 Hz declared as 256: markers placed by their LSL time would drift
    from the samples by 0.4 s over 10 minutes; placed between the samples' timestamps they
    land on the sample they were sent with."""
    pytest.importorskip("pyxdf", reason="XDF reading needs the optional pyxdf package")
    from sigformer.data.xdf import XDFStream, write_xdf

    true_rate, nominal, n, t0 = 255.5, 256.0, 160_000, 100.0
    stamps = t0 + np.arange(n) / true_rate
    marked = np.array([50_000, 150_000])
    path = write_xdf(tmp_path / "drift.xdf", [
        XDFStream("markers", "Markers", ["a", "b"], stamps[marked]),
        XDFStream("eeg", "EEG", rng.standard_normal((n, 2)), stamps, nominal, ["C3", "C4"],
                  "microvolts")])
    rec = read_recording(path)
    assert rec.sfreq == nominal
    onsets = np.array([a.onset for a in rec.annotations]) * rec.sfreq
    np.testing.assert_allclose(onsets, marked, atol=0.5)


# --- EDF robustness ----------------------------------------------------------------------

def _digital(rng, n_ch=3, n=1000):
    return (rng.standard_normal((n_ch, n)) * 800).astype(np.int16)


def test_valid_generated_edf_reads_without_warnings(tmp_path, rng):
    digital = _digital(rng)
    path = write_edf(tmp_path / "ok.edf", digital, ["C3", "Cz", "C4"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        rec = read_recording(path)
    step = 1000.0 / 65535 * 1e-6
    np.testing.assert_allclose(rec.data, (digital + 0.5) * step, atol=step)


def test_edf_digital_range_zero_is_an_error_naming_the_channel(tmp_path, rng):
    path = write_edf(tmp_path / "bad.edf", _digital(rng), ["C3", "Cz", "C4"],
                     overrides={("Cz", "dmin"): 100, ("Cz", "dmax"): 100})
    with pytest.raises(DataError, match=r"channel 'Cz' has digital minimum = maximum \(100\)"):
        read_recording(path)


def test_edf_physical_range_zero_warns_naming_the_channel(tmp_path, rng):
    path = write_edf(tmp_path / "flat.edf", _digital(rng), ["C3", "Cz", "C4"],
                     overrides={("C4", "pmin"): 0, ("C4", "pmax"): 0})
    with pytest.warns(DataWarning, match=r"channel 'C4' has physical minimum = maximum"):
        read_recording(path)


def test_edf_non_numeric_range_is_an_error_naming_the_channel(tmp_path, rng):
    path = write_edf(tmp_path / "text.edf", _digital(rng), ["C3", "Cz", "C4"],
                     overrides={("C3", "pmax"): "abc"})
    with pytest.raises(DataError, match="channel 'C3' has a non-numeric"):
        read_recording(path)


def test_edf_clipping_is_reported_per_channel(tmp_path, rng):
    digital = _digital(rng)
    digital[1, ::10] = 32767  # 10% of Cz at the positive limit
    digital[2, :1] = -32768  # one sample of C4 in 1000: not above the 0.1% threshold
    path = write_edf(tmp_path / "clip.edf", digital, ["C3", "Cz", "C4"])
    with pytest.warns(DataWarning, match=r"'Cz' \(10\.0% of samples\) stuck") as caught:
        read_recording(path)
    assert not any("'C4'" in str(w.message) or "'C3'" in str(w.message) for w in caught)
    with pytest.raises(DataError, match="'Cz'"):
        read_recording(path, clipping="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        read_recording(path, clipping="ignore")


def test_renamed_files_are_not_called_truncated(tmp_path, rng):
    digital = _digital(rng)
    edf = write_edf(tmp_path / "rec.edf", digital, ["C3", "Cz", "C4"])
    as_bdf = tmp_path / "rec.bdf"  # an EDF renamed .bdf: 2-byte samples, not 3
    as_bdf.write_bytes(edf.read_bytes())
    with pytest.raises(DataError, match=r"named .bdf but its content is EDF.*rename it to "
                       r"rec\.edf") as err:
        read_recording(as_bdf)
    assert "truncated" not in str(err.value)
    text = tmp_path / "notes.edf"
    text.write_text("this is a text file renamed to .edf\n" * 20)
    with pytest.raises(DataError, match="is not an EDF file: it starts with") as err:
        read_raw(text)
    assert "truncated" not in str(err.value)


def test_real_edf_headers_pass_the_checks(eegmmidb_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        rec = read_recording(eegmmidb_dir / "S001R04.edf")
    assert rec.n_channels == 64 and rec.unit == "V"


# --- MOABB -------------------------------------------------------------------------------

def test_moabb_keeps_config_out_of_home(tmp_path, monkeypatch):
    pytest.importorskip("moabb")
    from moabb.datasets import FakeDataset

    from sigformer.data import load_moabb

    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("MNE_DATA", raising=False)
    monkeypatch.delenv("_MNE_FAKE_HOME_DIR", raising=False)
    fake = FakeDataset(event_list=["left_hand", "right_hand"], n_subjects=1, n_sessions=1,
                       duration=30, n_events=10)
    ep = load_moabb(fake, subjects=[1], paradigm="LeftRightImagery", data_dir=data)
    assert len(ep) > 0 and ep.unit == "V"
    assert list(home.rglob("*")) == []  # nothing written to the home directory
    with pytest.raises(DataError, match="not in the local MNE data cache"):
        load_moabb("BNCI2014_001", subjects=[1], data_dir=data)
    assert list(home.rglob("*")) == []
    assert "MNE_DATA" not in os.environ  # the environment is restored


def test_sigformer_pipeline_inside_a_moabb_evaluation(tmp_path, monkeypatch):
    pytest.importorskip("moabb")
    from moabb.datasets import FakeDataset
    from moabb.evaluations import WithinSessionEvaluation
    from moabb.paradigms import LeftRightImagery
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FunctionTransformer, make_pipeline

    from sigformer.data.moabb_bridge import (
        MOABBEpochs,
        braindecode_signal_kwargs,
        mne_config_in,
    )
    from sigformer.stages import BandPass

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    seen = {}

    def log_power(epochs):
        seen["sfreq"], seen["channels"] = epochs.sfreq, list(epochs.channels)
        seen["kwargs"] = braindecode_signal_kwargs(epochs)
        return np.log(epochs.data.var(axis=-1))

    pipe = make_pipeline(MOABBEpochs(), BandPass(8, 30), FunctionTransformer(log_power),
                         LogisticRegression())
    fake = FakeDataset(event_list=["left_hand", "right_hand"], n_subjects=1, n_sessions=1,
                       duration=60, n_events=30, seed=0)
    with mne_config_in(tmp_path / "data"):
        evaluation = WithinSessionEvaluation(paradigm=LeftRightImagery(), datasets=[fake],
                                             overwrite=True, hdf5_path=str(tmp_path / "res"),
                                             return_epochs=True)
        results = evaluation.process({"sigformer": pipe})
    assert len(results) == 1 and 0 <= results["score"].iloc[0] <= 1
    assert seen["channels"] == ["C3", "Cz", "C4"] and seen["sfreq"] == 128
    kwargs = seen["kwargs"]
    assert kwargs["n_chans"] == 3 and kwargs["sfreq"] == 128
    assert [ch["ch_name"] for ch in kwargs["chs_info"]] == ["C3", "Cz", "C4"]
    with pytest.raises(SignalError, match="sampling rate is unknown"):
        MOABBEpochs().fit(np.zeros((4, 3, 100)))
    arrays = MOABBEpochs(sfreq=128, channels=["C3", "Cz", "C4"]).fit_transform(
        np.zeros((4, 3, 100)) + 1e-6)
    assert arrays.sfreq == 128 and list(arrays.channels) == ["C3", "Cz", "C4"]
