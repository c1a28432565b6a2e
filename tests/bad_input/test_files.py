"""Bad files: EDF/BDF/FIF/CSV/XDF/WAV/FLAC/SigMF/npz/HDF5 that are missing, empty, truncated,
renamed, mislabelled or damaged, and samples that are NaN, clipped or unscalable."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from badinput import Catalogue, check

from sigformer.data import read_recording
from sigformer.data.io import DataWarning, load_npz, read_raw
from sigformer.validation import DataError

CASES = Catalogue("files")
case = CASES.case


# --- EDF / BDF / GDF / FIF -----------------------------------------------------------------

@case("edf-missing", "EDF path that does not exist", DataError, r"no such file",
      r"missing\.edf")
def _(ctx):
    read_recording(ctx.tmp / "missing.edf")


@case("edf-empty", "EDF file of 0 bytes", DataError, r"empty\.edf is empty \(0 bytes\)",
      r"expected a EDF recording")
def _(ctx):
    (ctx.tmp / "empty.edf").write_bytes(b"")
    read_recording(ctx.tmp / "empty.edf")


@case("edf-truncated-header", "EDF cut inside its signal headers", DataError,
      r"truncated inside its header", r"3 signals declared")
def _(ctx):
    path = ctx.edf()
    path.write_bytes(path.read_bytes()[:400])
    read_recording(path)


@case("edf-truncated-data", "EDF whose last records are missing", DataError,
      r"is truncated: its header declares 10 records", r"\d+ bytes\) but the file has")
def _(ctx):
    path = ctx.edf()
    path.write_bytes(path.read_bytes()[:-1000])
    read_recording(path)


@case("edf-renamed-bdf", "EDF content named .bdf", DataError,
      r"named \.bdf but its content is EDF", r"rename it to rec\.edf")
def _(ctx):
    edf = ctx.edf()
    (ctx.tmp / "rec.bdf").write_bytes(edf.read_bytes())
    read_recording(ctx.tmp / "rec.bdf")


@case("edf-text-renamed", "text file renamed .edf", DataError, r"is not an EDF file",
      r"starts with b'this is .* not b'0       '")
def _(ctx):
    (ctx.tmp / "notes.edf").write_text("this is a text file renamed to .edf\n" * 20)
    read_recording(ctx.tmp / "notes.edf")


@case("edf-wrong-extension", "EEG file with an unknown extension (.txt)", DataError,
      r"unsupported format '\.txt'", r"sigformer reads \[.*'\.edf'")
def _(ctx):
    path = ctx.edf()
    path.rename(ctx.tmp / "rec.txt")
    read_recording(ctx.tmp / "rec.txt")


@case("edf-corrupt-size-fields", "EDF header with non-numeric record count", DataError,
      r"corrupt EDF header", r"non-numeric size fields")
def _(ctx):
    read_recording(ctx.edf(header={"records": "ten"}))


@case("edf-zero-channels", "EDF header declaring 0 signals", DataError,
      r"corrupt EDF header: it declares 0 signals", r"needs at least one", before="unclear")
def _(ctx):
    read_recording(ctx.edf(header={"n_signals": 0}))


@case("edf-digital-min-eq-max", "EDF channel with digital min = max", DataError,
      r"channel 'Cz' has digital minimum = maximum \(100\)", r"cannot be scaled")
def _(ctx):
    read_recording(ctx.edf(overrides={("Cz", "dmin"): 100, ("Cz", "dmax"): 100}))


@case("edf-physical-min-eq-max", "EDF channel with physical min = max", None,
      r"channel 'C4' has physical minimum = maximum", r"reads as a constant",
      warning=DataWarning)
def _(ctx):
    read_recording(ctx.edf(overrides={("C4", "pmin"): 0, ("C4", "pmax"): 0}))


@case("edf-non-numeric-range", "EDF channel with a non-numeric physical maximum", DataError,
      r"channel 'C3' has a non-numeric", r"physical/digital range")
def _(ctx):
    read_recording(ctx.edf(overrides={("C3", "pmax"): "abc"}))


def _clipped_edf(ctx):
    digital = (ctx.rng.standard_normal((3, 1000)) * 800).astype(np.int16)
    digital[1, ::10] = 32767
    return ctx.edf(digital=digital)


@case("edf-clipping-warns", "EDF channel stuck at its digital limit (10% of samples)", None,
      r"'Cz' \(10\.0% of samples\) stuck at the digital limits", r"saturation or clipping",
      warning=DataWarning)
def _(ctx):
    read_recording(_clipped_edf(ctx))


@case("edf-clipping-raise", "clipped EDF channel with clipping='raise'", DataError,
      r"'Cz' \(10\.0% of samples\) stuck", r"saturation or clipping")
def _(ctx):
    read_recording(_clipped_edf(ctx), clipping="raise")


@case("edf-clipping-policy", "unknown clipping policy", ValueError,
      r"got 'sometimes'", r"'warn', 'raise' or 'ignore'")
def _(ctx):
    read_raw(ctx.edf(), clipping="sometimes")


@case("bdf-truncated", "BDF whose data stop early", DataError,
      r"is truncated: its header declares", r"bytes\) but the file has")
def _(ctx):
    path = ctx.edf()
    raw = bytearray(path.read_bytes())
    raw[:8] = b"\xffBIOSEMI"
    (ctx.tmp / "rec.bdf").write_bytes(bytes(raw))  # 2-byte samples read as 3-byte ones
    read_recording(ctx.tmp / "rec.bdf")


@case("gdf-garbage", "GDF magic followed by zeros", DataError, r"could not be read as GDF",
      r"truncated or corrupt\?")
def _(ctx):
    (ctx.tmp / "bad.gdf").write_bytes(b"GDF 2.20" + b"\x00" * 300)
    read_recording(ctx.tmp / "bad.gdf")


@case("fif-garbage", "random bytes named .fif", DataError, r"could not be read as FIF",
      r"truncated or corrupt\?")
def _(ctx):
    (ctx.tmp / "bad_raw.fif").write_bytes(ctx.rng.bytes(2048))
    read_recording(ctx.tmp / "bad_raw.fif")


@case("fif-empty", "FIF file of 0 bytes", DataError, r"bad_raw\.fif is empty \(0 bytes\)",
      r"expected a FIF recording", before="unclear")
def _(ctx):
    (ctx.tmp / "bad_raw.fif").write_bytes(b"")
    read_recording(ctx.tmp / "bad_raw.fif")


@case("edf-directory", "a folder given as an EDF file", DataError,
      r"data\.edf is a folder, not a recording file", r"expected one of \[", before="unclear")
def _(ctx):
    (ctx.tmp / "data.edf").mkdir()
    read_recording(ctx.tmp / "data.edf")


# --- CSV / XDF -----------------------------------------------------------------------------

def _csv(ctx, text: str, **options):
    path = ctx.tmp / "rec.csv"
    path.write_text(text)
    return read_recording(path, **options)


@case("csv-missing", "CSV path that does not exist", DataError, r"no such file",
      r"missing\.csv")
def _(ctx):
    read_recording(ctx.tmp / "missing.csv")


@case("csv-empty", "CSV file of 0 bytes", DataError, r"rec\.csv has no data rows",
      r"a header and at least one sample needed")
def _(ctx):
    _csv(ctx, "")


@case("csv-header-only", "CSV with a header but no rows", DataError, r"no data rows",
      r"rec\.csv")
def _(ctx):
    _csv(ctx, "timestamps,a\n")


@case("csv-no-timestamps", "CSV without a timestamp column or sfreq", DataError,
      r"no timestamp column", r"no sfreq given")
def _(ctx):
    _csv(ctx, "x,a\n1,2\n2,3\n")


@case("csv-empty-cell", "CSV with an empty sample cell", DataError,
      r"channel 'a' has 1 empty, missing", r"first at data row 2\); every cell must be a "
      r"finite number")
def _(ctx):
    _csv(ctx, "timestamps,a\n0,1\n0.1,\n0.2,3\n")


@case("csv-nan-sample", "CSV with a 'nan' sample", DataError,
      r"channel 'a' has 1 empty, missing, NaN or Inf", r"every cell must be a finite number",
      before="unclear")
def _(ctx):
    _csv(ctx, "timestamps,a\n0,1\n0.1,nan\n0.2,3\n")


@case("csv-inf-sample", "CSV with an 'inf' sample", DataError,
      r"channel 'a' has 1 empty, missing, NaN or Inf cells", r"first at data row 3",
      before="unclear")
def _(ctx):
    _csv(ctx, "timestamps,a\n0,1\n0.1,2\n0.2,inf\n")


@case("csv-text-column", "CSV channel column holding text", DataError,
      r"channel column 'a' holds text|no numeric channel columns", r"rec\.csv")
def _(ctx):
    _csv(ctx, "timestamps,a\n0,x\n0.1,y\n", channels=["a"])


@case("csv-unknown-unit", "CSV read with unit='furlong'", DataError, r"got 'furlong'",
      r"unit must be one of")
def _(ctx):
    _csv(ctx, "timestamps,a\n0,1\n0.1,2\n", sfreq=10, unit="furlong")


@case("xdf-not-xdf", "random bytes named .xdf", DataError, r"is not an XDF file",
      r"start with 'XDF:'")
def _(ctx):
    pytest.importorskip("pyxdf")
    (ctx.tmp / "s.xdf").write_bytes(b"NOTXDF" * 10)
    read_recording(ctx.tmp / "s.xdf")


@case("xdf-empty", "XDF file of 0 bytes", DataError, r"is not an XDF file",
      r"start with 'XDF:'")
def _(ctx):
    pytest.importorskip("pyxdf")
    (ctx.tmp / "s.xdf").write_bytes(b"")
    read_recording(ctx.tmp / "s.xdf")


@case("xdf-truncated", "XDF cut after its magic bytes", DataError,
      r"could not be read as XDF|no (signal )?stream", r"truncated or corrupt\?|streams?")
def _(ctx):
    pytest.importorskip("pyxdf")
    (ctx.tmp / "s.xdf").write_bytes(b"XDF:\x01\x02\x01")
    read_recording(ctx.tmp / "s.xdf")


def _xdf(ctx):
    pytest.importorskip("pyxdf")
    from sigformer.data.xdf import XDFStream, write_xdf

    n, rate = 500, 250.0
    stamps = 100.0 + np.arange(n) / rate
    return write_xdf(ctx.tmp / "s.xdf", [XDFStream("eeg", "EEG", ctx.rng.standard_normal(
        (n, 3)) * 15, stamps, rate, ["C3", "CZ", "C4"], "microvolts")])


@case("xdf-unknown-stream", "XDF read with a stream name it does not hold", DataError,
      r"no stream named 'nope'", r"eeg")
def _(ctx):
    read_recording(_xdf(ctx), stream="nope")


# --- WAV / FLAC ----------------------------------------------------------------------------

def _audio(path, **kwargs):
    from sigformer.speech.audio import read_audio

    return read_audio(path, **kwargs)


@case("wav-missing", "WAV path that does not exist", DataError, r"audio file .*missing\.wav",
      r"does not exist")
def _(ctx):
    _audio(ctx.tmp / "missing.wav")


@case("wav-empty", "WAV file of 0 bytes", DataError, r"is not readable audio",
      r"empty\.wav")
def _(ctx):
    (ctx.tmp / "empty.wav").write_bytes(b"")
    _audio(ctx.tmp / "empty.wav")


@case("wav-text-renamed", "text file renamed .wav", DataError, r"is not readable audio",
      r"notes\.wav")
def _(ctx):
    (ctx.tmp / "notes.wav").write_text("not audio\n" * 100)
    _audio(ctx.tmp / "notes.wav")


@case("wav-no-samples", "WAV with a header and no samples", DataError, r"holds no samples",
      r"silent\.wav")
def _(ctx):
    import soundfile as sf

    sf.write(str(ctx.tmp / "silent.wav"), np.zeros((0, 1)), 8000)
    _audio(ctx.tmp / "silent.wav")


@case("wav-truncated", "WAV whose data chunk is cut short", DataError, r"a\.wav is truncated",
      r"header declares 4000 samples per channel but the file holds 3500", before="silent")
def _(ctx):
    path = ctx.wav()
    path.write_bytes(path.read_bytes()[:-2000])
    _audio(path)


@case("wav-nan-samples", "float WAV holding NaN samples", DataError,
      r"1 NaN/Inf sample value\(s\), the first at channel 0, sample 123",
      r"expected finite audio \(pass nan_policy='interpolate'", before="silent")
def _(ctx):
    import soundfile as sf

    audio = 0.1 * ctx.rng.standard_normal(4000)
    audio[123] = np.nan
    sf.write(str(ctx.tmp / "nan.wav"), audio, 8000, subtype="FLOAT")
    _audio(ctx.tmp / "nan.wav")


@case("wav-nan-policy", "unknown audio nan_policy", ValueError, r"got 'skip'",
      r"nan_policy must be one of \('raise', 'interpolate'\)")
def _(ctx):
    _audio(ctx.wav(), nan_policy="skip")


@case("wav-bad-channel", "WAV channel index beyond its channels", DataError,
      r"has 1 channels; channels \[3\] do not exist", r"a\.wav")
def _(ctx):
    _audio(ctx.wav(), channels=[3])


@case("flac-corrupt", "FLAC with damaged bytes after its header", DataError,
      r"is not readable audio|truncated|corrupt", r"a\.flac")
def _(ctx):
    path = ctx.wav("a.flac", subtype="PCM_16")
    raw = bytearray(path.read_bytes())
    raw[200:] = ctx.rng.bytes(len(raw) - 200)
    path.write_bytes(bytes(raw))
    _audio(path)


# --- SigMF ---------------------------------------------------------------------------------

def _read_sigmf(path, **kwargs):
    from sigformer.data.sigmf_io import read_sigmf

    return read_sigmf(path, **kwargs)


def _edit_meta(meta_path, edit):
    meta = json.loads(meta_path.read_text())
    edit(meta)
    meta_path.write_text(json.dumps(meta))
    return meta_path


@case("sigmf-missing", "SigMF metadata that does not exist", DataError,
      r"SigMF metadata .*nothing\.sigmf-meta", r"does not exist")
def _(ctx):
    _read_sigmf(ctx.tmp / "nothing.sigmf-meta")


@case("sigmf-meta-not-json", "SigMF metadata that is not JSON", DataError,
      r"is not valid JSON", r"cap\.sigmf-meta")
def _(ctx):
    meta = ctx.sigmf()
    meta.write_text("{global: oops")
    _read_sigmf(meta)


@case("sigmf-no-global", "SigMF metadata without 'global'", DataError,
      r"lacks the SigMF 'global' object", r"cap\.sigmf-meta")
def _(ctx):
    meta = ctx.sigmf()
    meta.write_text(json.dumps({"captures": [], "annotations": []}))
    _read_sigmf(meta)


@case("sigmf-no-datatype", "SigMF metadata without core:datatype", DataError,
      r"core:datatype is missing", r"expected e\.g\. 'cf32_le'")
def _(ctx):
    _read_sigmf(_edit_meta(ctx.sigmf(), lambda m: m["global"].pop("core:datatype")))


@case("sigmf-bad-datatype", "SigMF datatype 'complex64'", DataError,
      r"core:datatype 'complex64' is not a SigMF datatype", r"e\.g\. 'cf32_le'")
def _(ctx):
    _read_sigmf(_edit_meta(ctx.sigmf(),
                           lambda m: m["global"].__setitem__("core:datatype", "complex64")))


@case("sigmf-zero-channels", "SigMF core:num_channels = 0", DataError,
      r"core:num_channels = 0", r"expected a value >= 1")
def _(ctx):
    _read_sigmf(_edit_meta(ctx.sigmf(),
                           lambda m: m["global"].__setitem__("core:num_channels", 0)))


@case("sigmf-fractional-channels", "SigMF core:num_channels = 2.5", DataError,
      r"core:num_channels = 2\.5", r"expected a value of type 'integer'")
def _(ctx):
    _read_sigmf(_edit_meta(ctx.sigmf(),
                           lambda m: m["global"].__setitem__("core:num_channels", 2.5)))


@case("sigmf-negative-rate", "SigMF negative core:sample_rate", DataError,
      r"core:sample_rate = -1", r"expected a value >= 0|expected a value > 0")
def _(ctx):
    _read_sigmf(_edit_meta(ctx.sigmf(),
                           lambda m: m["global"].__setitem__("core:sample_rate", -1.0)))


@case("sigmf-captures-wrong-type", "SigMF 'captures' that is an object, not a list",
      DataError, r"captures = \{", r"expected a value of type 'array'")
def _(ctx):
    _read_sigmf(_edit_meta(ctx.sigmf(), lambda m: m.__setitem__("captures", {"a": 1})))


@case("sigmf-data-missing", "SigMF metadata whose data file is gone", DataError,
      r"SigMF data file .*cap\.sigmf-data", r"does not exist")
def _(ctx):
    meta = ctx.sigmf()
    meta.with_suffix(".sigmf-data").unlink()
    _read_sigmf(meta)


@case("sigmf-partial-sample", "SigMF data with a partial trailing sample", DataError,
      r"not a whole number of cf32_le samples", r"8 bytes each")
def _(ctx):
    meta = ctx.sigmf()
    data = meta.with_suffix(".sigmf-data")
    data.write_bytes(data.read_bytes()[:-3])
    _read_sigmf(meta)


@case("sigmf-truncated", "SigMF data shorter than its annotations", DataError,
      r"holds 512 samples but a annotation", r"reaches sample 1024.*truncated")
def _(ctx):
    from sigformer.data.sigmf_io import SigMFAnnotation

    meta = ctx.sigmf(annotations=[SigMFAnnotation(0, 1024, "PSK")])
    data = meta.with_suffix(".sigmf-data")
    data.write_bytes(data.read_bytes()[:512 * 8])
    _read_sigmf(meta, verify_checksum=False)


@case("sigmf-checksum", "SigMF data changed after its SHA-512 was recorded", DataError,
      r"SHA-512 of the data does not match", r"verify_checksum=False")
def _(ctx):
    meta = ctx.sigmf()
    data = meta.with_suffix(".sigmf-data")
    raw = bytearray(data.read_bytes())
    raw[100] ^= 0xFF
    data.write_bytes(bytes(raw))
    _read_sigmf(meta)


def _nan_capture(ctx):
    meta = ctx.sigmf()
    data = meta.with_suffix(".sigmf-data")
    samples = np.fromfile(data, np.complex64)
    samples[300] = np.nan
    samples.tofile(data)
    return _edit_meta(meta, lambda m: m["global"].pop("core:sha512", None))


@case("sigmf-nan-samples", "SigMF capture holding a NaN sample (default policy)", DataError,
      r"1 NaN/Inf sample value\(s\), the first at", r"nan_policy")
def _(ctx):
    _read_sigmf(_nan_capture(ctx))


@case("sigmf-nan-policy", "unknown SigMF nan_policy", ValueError, r"got 'drop'",
      r"nan_policy must be one of \('raise', 'skip', 'interpolate'\)")
def _(ctx):
    _read_sigmf(ctx.sigmf(), nan_policy="drop")


@case("sigmf-dataset-path", "SigMF core:dataset naming a path outside the folder", DataError,
      r"core:dataset '\.\./x\.bin' must be a file name", r"same folder")
def _(ctx):
    _read_sigmf(_edit_meta(ctx.sigmf(),
                           lambda m: m["global"].__setitem__("core:dataset", "../x.bin")))


@case("sigmf-real-for-iq", "real-valued SigMF capture framed as IQ", DataError,
      r"expected one channel of complex IQ samples", r"got float32")
def _(ctx):
    from sigformer.data.sigmf_io import frame_signal

    frame_signal(ctx.rng.standard_normal(1024).astype(np.float32), 128)


# --- npz / HDF5 / pickle ---------------------------------------------------------------------

@case("npz-missing", "npz dataset that does not exist", DataError,
      r"slots .*missing\.npz", r"does not exist")
def _(ctx):
    load_npz(ctx.tmp / "missing.npz", {"x"}, "slots")


@case("npz-not-zip", "text renamed .npz", DataError, r"bad\.npz is not a readable slots",
      r"not a zip archive", before="unclear")
def _(ctx):
    (ctx.tmp / "bad.npz").write_text("hello")
    load_npz(ctx.tmp / "bad.npz", {"x"}, "slots")


@case("npz-truncated", "npz cut in half", DataError, r"cut\.npz is not a readable slots",
      r"not a zip archive \(truncated")
def _(ctx):
    np.savez(ctx.tmp / "cut.npz", x=np.zeros(4096), meta=np.asarray("{}"))
    raw = (ctx.tmp / "cut.npz").read_bytes()
    (ctx.tmp / "cut.npz").write_bytes(raw[:len(raw) // 2])
    load_npz(ctx.tmp / "cut.npz", {"x"}, "slots")


@case("npz-missing-array", "npz lacking a required array", DataError,
      r"lacks the arrays \['h'\]", r"of a slots")
def _(ctx):
    np.savez(ctx.tmp / "part.npz", x=np.zeros(4), meta=np.asarray("{}"))
    load_npz(ctx.tmp / "part.npz", {"x", "h"}, "slots")


@case("npz-object-array", "npz with a pickled object array", DataError,
      r"is not a readable .npz file", r"object arrays are refused: no pickle")
def _(ctx):
    from sigformer.data.radioml import load_named_arrays

    np.savez(ctx.tmp / "obj.npz", X=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
    load_named_arrays(ctx.tmp / "obj.npz", x_key="X", y_key="y")


@case("npz-wrong-key", "modulation npz without the named frame array", DataError,
      r"d\.npz has no arrays \['frames'\]", r"it holds \['X', 'y'\]$", before="unclear")
def _(ctx):
    from sigformer.data.radioml import load_named_arrays

    np.savez(ctx.tmp / "d.npz", X=np.zeros((4, 2, 16)), y=np.zeros(4))
    load_named_arrays(ctx.tmp / "d.npz", x_key="frames", y_key="y")


@case("npz-frames-shape", "modulation frames of shape (n, 3, length)", DataError,
      r"'X' has shape \(4, 3, 16\)", r"expected \(n, 2, length\)")
def _(ctx):
    from sigformer.data.radioml import load_named_arrays

    np.savez(ctx.tmp / "d.npz", X=np.zeros((4, 3, 16)), y=np.zeros(4))
    load_named_arrays(ctx.tmp / "d.npz", x_key="X", y_key="y")


@case("npz-labels-mismatch", "modulation npz with fewer labels than frames", DataError,
      r"4 frames under 'X' but 3 labels", r"under 'y'")
def _(ctx):
    from sigformer.data.radioml import load_named_arrays

    np.savez(ctx.tmp / "d.npz", X=np.zeros((4, 2, 16)), y=np.zeros(3))
    load_named_arrays(ctx.tmp / "d.npz", x_key="X", y_key="y")


@case("hdf5-missing", "RML2018 HDF5 that does not exist", DataError,
      r"RML2018 file .*missing\.h5", r"does not exist")
def _(ctx):
    from sigformer.data.radioml import load_rml2018

    load_rml2018(ctx.tmp / "missing.h5")


@case("hdf5-not-hdf5", "text renamed .h5", DataError, r"is not a readable HDF5 file",
      r"bad\.h5")
def _(ctx):
    pytest.importorskip("h5py")
    from sigformer.data.radioml import load_rml2018

    (ctx.tmp / "bad.h5").write_text("not hdf5")
    load_rml2018(ctx.tmp / "bad.h5")


@case("hdf5-missing-datasets", "HDF5 without the RML2018 datasets", DataError,
      r"lacks the datasets \['Y', 'Z'\]", r"of RML2018\.01A")
def _(ctx):
    h5py = pytest.importorskip("h5py")
    from sigformer.data.radioml import load_rml2018

    with h5py.File(ctx.tmp / "part.h5", "w") as f:
        f["X"] = np.zeros((2, 16, 2), np.float32)
    load_rml2018(ctx.tmp / "part.h5")


@case("pickle-without-opt-in", "RML2016 pickle without allow_pickle", DataError,
      r"is a Python pickle", r"allow_pickle=True .*amr\.allow_pickle: true")
def _(ctx):
    from sigformer.data.radioml import load_rml2016

    (ctx.tmp / "RML2016.10a_dict.pkl").write_bytes(b"\x80\x04N.")
    load_rml2016(ctx.tmp / "RML2016.10a_dict.pkl")


@case("bonn-missing", "Bonn dataset path that does not exist", DataError,
      r"missing", r"does not exist|not found|no such")
def _(ctx):
    from sigformer.data import load_bonn

    load_bonn(ctx.tmp / "missing")


@pytest.mark.parametrize("case", CASES.params())
def test_bad_file(case, ctx):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # MNE's own header chatter
        check(case, ctx)
