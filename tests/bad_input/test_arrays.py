"""Bad arrays: shapes, dtypes, NaN/Inf, empty and 1-D data, channel and rate mismatches,
(samples, channels) audio and volts-vs-microvolts scale, for recordings, fitted estimators,
bundles and specs; and estimator arguments that cannot work."""

from __future__ import annotations

import numpy as np
import pytest
from badinput import Catalogue, check

from sigformer import SignalError
from sigformer.bundle import Bundle
from sigformer.data.io import DataError
from sigformer.estimators import ScaleWarning, SignalClassifier
from sigformer.models import UnknownModelError
from sigformer.recording import Recording
from sigformer.spec import SignalSpec, SpecError

CASES = Catalogue("arrays")
case = CASES.case


def _rec(data, sfreq=100.0, channels=("C3", "C4"), **kwargs):
    return Recording(data, sfreq, list(channels), **kwargs)


# --- recordings ----------------------------------------------------------------------------

@case("recording-1d", "1-D array as a recording", SignalError, r"got an array of shape \(100,\)",
      r"must be \(n_channels, n_times\)")
def _(ctx):
    _rec(np.zeros(100))


@case("recording-3d", "3-D array as a recording", SignalError,
      r"got an array of shape \(2, 2, 10\)", r"must be \(n_channels, n_times\)")
def _(ctx):
    _rec(np.zeros((2, 2, 10)))


@case("recording-empty", "recording with 0 samples", SignalError, r"is empty \(shape \(2, 0\)\)",
      r"at least one sample is needed")
def _(ctx):
    _rec(np.zeros((2, 0)))


@case("recording-nan", "recording with a NaN sample", SignalError,
      r"1 NaN and 0 Inf values \(first at index \(1, 5\)\)", r"clean or interpolate them")
def _(ctx):
    data = np.zeros((2, 10))
    data[1, 5] = np.nan
    _rec(data)


@case("recording-inf", "recording with an Inf sample", SignalError,
      r"0 NaN and 1 Inf values \(first at index \(0, 2\)\)", r"clean or interpolate them")
def _(ctx):
    data = np.zeros((2, 10))
    data[0, 2] = np.inf
    _rec(data)


@case("recording-strings", "recording of strings", SignalError, r"got dtype <U1",
      r"must be numeric")
def _(ctx):
    _rec(np.full((2, 10), "a"))


@case("recording-channel-mismatch", "3 rows of data, 2 channel names", SignalError,
      r"data has 3 channels but the channel set names 2", r"channel set")
def _(ctx):
    _rec(np.zeros((3, 10)))


for _value, _id in [(0, "zero"), (-250.0, "negative"), (float("nan"), "nan"), ("fast", "text")]:
    case(f"recording-sfreq-{_id}", f"sampling rate {_value!r}", SignalError,
         rf"got {_value!r}".replace("(", r"\(").replace(")", r"\)"),
         r"sfreq must be a positive number in Hz")(
        lambda ctx, v=_value: _rec(np.zeros((2, 10)), sfreq=v))


@case("recording-unit", "recording unit 'furlong'", SignalError, r"got 'furlong'",
      r"unit must be one of \('V', 'mV', 'uV', 'a\.u\.'\)")
def _(ctx):
    _rec(np.zeros((2, 10)), unit="furlong")


# --- a fitted estimator --------------------------------------------------------------------

def _fitted(ctx):
    return ctx.shared.fitted


@case("predict-channels", "trials with fewer channels than in fit", SignalError,
      r"got 3 x 100", r"fitted on trials of 4 channels x 100 samples")
def _(ctx):
    clf, epochs = _fitted(ctx)
    clf.predict(epochs.data[:, :3])


@case("predict-samples", "trials shorter than in fit", SignalError, r"got 4 x 80",
      r"fitted on trials of 4 channels x 100 samples")
def _(ctx):
    clf, epochs = _fitted(ctx)
    clf.predict(epochs.data[:, :, :80])


@case("predict-rate", "epochs at 250 Hz for a model fitted at 100 Hz", SignalError,
      r"sampling rate 250 Hz differs", r"the 100 Hz the model was fitted on; resample first")
def _(ctx):
    clf, epochs = _fitted(ctx)
    other = epochs[np.arange(4)]
    other.sfreq = 250.0
    clf.predict(other)


@case("predict-channel-set", "epochs with the channels in another order", SignalError,
      r"channels differ from those seen in fit", r"expected \['C3', 'Cz', 'C4', 'P3'\]")
def _(ctx):
    from sigformer import ChannelSet

    clf, epochs = _fitted(ctx)
    other = epochs[np.arange(4)]
    other.channels = ChannelSet(tuple(reversed(epochs.channels.names)))
    clf.predict(other)


@case("predict-nan", "trials with one NaN", SignalError,
      r"1 NaN and 0 Inf values \(first at index \(3, 2, 10\)\)", r"clean or interpolate")
def _(ctx):
    clf, epochs = _fitted(ctx)
    X = epochs.data.copy()
    X[3, 2, 10] = np.nan
    clf.predict(X)


@case("predict-1d", "a single 1-D trial", SignalError, r"X is 1-D \(shape \(100,\)\)",
      r"trials must be \(n_trials, n_channels, n_times\)")
def _(ctx):
    clf, epochs = _fitted(ctx)
    clf.predict(epochs.data[0, 0])


@case("predict-volts", "volts given to a model fitted on microvolts", None,
      r"median absolute amplitude is .*ratio 1\.0e-06", r"convert to the training unit",
      warning=ScaleWarning)
def _(ctx):
    clf, epochs = _fitted(ctx)
    clf.predict(epochs.data * 1e-6)


@case("predict-2d-trial", "one multichannel trial as a 2-D array", SignalError,
      r"2-D input is read as single-channel trials", r"pass one multichannel trial as "
      r"X\[None\] \(shape \(1, 4, 100\)\)", before="unclear")
def _(ctx):
    clf, epochs = _fitted(ctx)
    clf.predict(epochs.data[0])


@case("fit-volts", "EEG trials in volts given to fit", None,
      r"look like volts \(median absolute amplitude", r"Multiply by 1e6", warning=ScaleWarning,
      before="silent")
def _(ctx):
    _, epochs = _fitted(ctx)
    SignalClassifier(max_epochs=1, batch_size=16,
                     model_params=dict(emb_size=8, num_heads=2, depth=1, spa_dim=4,
                                       patch_size=20, kernel_size=15)
                     ).fit(epochs.data * 1e-6, epochs.labels)


@case("bundle-predict-unit", "microvolt windows given to a bundle that expects volts", None,
      r"the windows look like uV .* this bundle expects V", r"convert them",
      warning=ScaleWarning, before="silent")
def _(ctx):
    windows = np.random.default_rng(0).standard_normal((2, 6, 100)) * 20
    Bundle.load(ctx.shared.eeg_bundle).predict_proba(windows)


@case("fit-labels-mismatch", "59 labels for 60 trials", SignalError,
      r"X has 20 trials but y has 19 labels", r"they must match")
def _(ctx):
    _, epochs = _fitted(ctx)
    SignalClassifier(max_epochs=1).fit(epochs.data, epochs.labels[:-1])


@case("fit-empty", "0 trials", SignalError, r"X is empty \(shape \(0, 3, 10\)\)",
      r"at least one sample is needed")
def _(ctx):
    SignalClassifier(max_epochs=1).fit(np.zeros((0, 3, 10)), [])


@case("fit-one-class", "labels of a single class", SignalError, r"y has 1 class",
      r"a classifier needs at least 2")
def _(ctx):
    _, epochs = _fitted(ctx)
    SignalClassifier(max_epochs=1).fit(epochs.data, np.zeros(len(epochs)))


@case("fit-complex", "complex trials", SignalError, r"X is complex",
      r"expects real-valued signals")
def _(ctx):
    SignalClassifier(max_epochs=1).fit(np.ones((4, 2, 50), complex), [0, 1, 0, 1])


@case("fit-max-epochs-zero", "max_epochs=0", ValueError, r"got 0",
      r"max_epochs must be an integer >= 1")
def _(ctx):
    _, epochs = _fitted(ctx)
    SignalClassifier(max_epochs=0).fit(epochs)


@case("fit-max-epochs-negative", "max_epochs=-1", ValueError, r"got -1",
      r"max_epochs must be an integer >= 1")
def _(ctx):
    _, epochs = _fitted(ctx)
    SignalClassifier(max_epochs=-1).fit(epochs)


@case("fit-validation-split", "validation_split=1.5", ValueError, r"got 1\.5",
      r"validation_split must be a fraction in \[0, 1\)")
def _(ctx):
    _, epochs = _fitted(ctx)
    SignalClassifier(validation_split=1.5).fit(epochs)


@case("fit-validation-too-small", "validation_split that leaves a class out", ValueError,
      r"validation_split=0\.01 cannot work with 20 trials", r"each need >= 1 trial per class")
def _(ctx):
    _, epochs = _fitted(ctx)
    SignalClassifier(max_epochs=1, validation_split=0.01,
                     model_params=ctx.shared.fitted[0].model_params).fit(epochs)


@case("fit-patience-without-validation", "early stopping without validation data",
      ValueError, r"early_stopping_patience needs validation data", r"validation_split")
def _(ctx):
    _, epochs = _fitted(ctx)
    SignalClassifier(max_epochs=1, early_stopping_patience=2).fit(epochs)


@case("fit-unknown-model", "model='eegnet'", UnknownModelError, r"unknown model 'eegnet'",
      r"did you mean")
def _(ctx):
    _, epochs = _fitted(ctx)
    SignalClassifier(model="eegnet").fit(epochs)


@case("fit-too-short", "trials shorter than one DBConformer patch", ValueError,
      r"n_times=100 is shorter than one patch", r"patch_size=125")
def _(ctx):
    _, epochs = _fitted(ctx)
    SignalClassifier(max_epochs=1).fit(epochs.data, epochs.labels)


# --- bundles and specs ---------------------------------------------------------------------

@case("spec-channels", "windows with 5 channels for a 6-channel spec", SpecError,
      r"data has 5 channels", r"the spec expects 6 \(Fp1, C3")
def _(ctx):
    SignalSpec.eeg(100, ["Fp1", "C3", "Cz", "C4", "P3", "P4"], window=100).check(
        np.zeros((2, 5, 100)))


@case("spec-window", "windows of 90 samples for a 100-sample spec", SpecError,
      r"data has 90 samples per example", r"the spec expects 100 \(1 s at 100 Hz\)")
def _(ctx):
    SignalSpec.eeg(100, ["Fp1", "C3", "Cz", "C4", "P3", "P4"], window=100).check(
        np.zeros((2, 6, 90)))


@case("bundle-predict-nan", "a NaN window given to a bundle", SignalError,
      r"windows contains 1 NaN and 0 Inf values \(first at index \(1, 3, 7\)\)",
      r"clean or interpolate them", before="unclear")
def _(ctx):
    bundle = Bundle.load(ctx.shared.eeg_bundle)
    windows = np.zeros((2, 6, 100))
    windows[1, 3, 7] = np.nan
    bundle.predict(windows)


@case("bundle-predict-shape", "bundle windows with the wrong channel count", SpecError,
      r"windows has 4 channels", r"the spec expects 6 \(Fp1, C3")
def _(ctx):
    Bundle.load(ctx.shared.eeg_bundle).predict(np.zeros((2, 4, 100)))


@case("bundle-preprocess-rows", "raw data rows != the bundle's channels", SignalError,
      r"got \(5, 300\)", r"expects chunks of shape \(6, n_samples\)")
def _(ctx):
    Bundle.load(ctx.shared.eeg_bundle).preprocess(np.zeros((5, 300)))


# --- audio arrays --------------------------------------------------------------------------

def _check_audio(audio, rate=8000, **kwargs):
    from sigformer.speech.audio import check_audio

    return check_audio(audio, rate, **kwargs)


@case("audio-samples-channels", "(samples, channels) audio", None,
      r"has shape \(8000, 2\), which looks like \(samples, channels\)",
      r"pass \(channels, samples\)", warning=pytest.importorskip("sigformer.speech.audio")
      .AudioWarning)
def _(ctx):
    _check_audio(0.1 * ctx.rng.standard_normal((8000, 2)))


# --- stages --------------------------------------------------------------------------------

@case("zero-phase-short-epoch", "20-sample epochs through a zero-phase band-pass", SignalError,
      r"BandPass\(phase='zero'\) needs more than 27 samples.*got 20",
      r"use longer epochs, a lower order, or phase='causal'", before="unclear")
def _(ctx):
    from sigformer.stages import BandPass

    BandPass(8, 30, phase="zero").fit(np.zeros((3, 2, 20)), sfreq=250).transform(
        np.zeros((3, 2, 20)))


@case("resample-ratio-too-fine", "resampling 4099 Hz to 250 Hz (ratio 250/4099)", SignalError,
      r"needs a ratio 250/4099, whose terms exceed 4096", r"choose rates with a simpler ratio")
def _(ctx):
    from sigformer.stages import Resample

    Resample(250).configure(4099.0, ["C3"])


@case("audio-rate", "16 kHz audio for an 8 kHz model", DataError,
      r"sampled at 16000 Hz", r"the model expects 8000 Hz; resample it first")
def _(ctx):
    _check_audio(0.1 * ctx.rng.standard_normal((1, 16000)), 16000, expected_rate=8000)


@case("audio-channels", "mono audio for a 4-microphone model", DataError, r"audio is mono",
      r"the model expects 4 microphone channel")
def _(ctx):
    _check_audio(0.1 * ctx.rng.standard_normal((1, 8000)), n_channels=4)


@case("audio-nan", "audio with a NaN sample", DataError, r"contains NaN or Inf",
      r"first at channel 0, sample 9")
def _(ctx):
    audio = 0.1 * ctx.rng.standard_normal((1, 800))
    audio[0, 9] = np.nan
    _check_audio(audio)


@case("audio-3d", "3-D audio array", DataError, r"got shape \(2, 2, 100\)",
      r"must be \(channels, samples\)")
def _(ctx):
    _check_audio(np.zeros((2, 2, 100)))


# --- beamformers ---------------------------------------------------------------------------

def _array_audio(ctx, n_mics: int = 4, n: int = 4000) -> np.ndarray:
    return 0.1 * ctx.rng.standard_normal((n_mics, n))


@case("beamform-mask-nan", "a NaN in a beamformer's time-frequency mask", ValueError,
      r"mask holds 1 NaN/Inf value", r"expected values in \[0, 1\]")
def _(ctx):
    from sigformer.speech.beamforming import N_FFT, souden_mvdr, stft

    x = _array_audio(ctx)
    mask = np.full((N_FFT // 2 + 1, stft(x).shape[-1]), 0.5)
    mask[3, 2] = np.nan
    souden_mvdr(x, mask=mask)


@case("beamform-mask-mics", "3 per-microphone masks for a 4-microphone array", ValueError,
      r"3 per-microphone masks for 4 microphones", r"one \(freq, frames\) mask or one per "
      r"microphone")
def _(ctx):
    from sigformer.speech.beamforming import N_FFT, souden_mvdr, stft

    x = _array_audio(ctx)
    souden_mvdr(x, mask=np.full((3, N_FFT // 2 + 1, stft(x).shape[-1]), 0.5))


@case("beamform-noise-mics", "noise of 3 microphones for a 4-microphone MVDR", ValueError,
      r"noise has 3 microphones, x 4", r"must come from the same array")
def _(ctx):
    from sigformer.speech.beamforming import doa_mvdr

    x = _array_audio(ctx)
    positions = 0.05 * np.array([[1, 0], [0, 1], [-1, 0], [0, -1]])
    doa_mvdr(x, 16000, positions, azimuth=0.0, noise=x[:3])


@case("beamform-reference", "reference microphone 4 of a 4-microphone array", ValueError,
      r"reference microphone 4 does not exist", r"microphones 0\.\.3")
def _(ctx):
    from sigformer.speech.beamforming import rtf_mvdr

    rtf_mvdr(_array_audio(ctx), reference=4)


@case("beamform-short", "200 samples for a 512-point STFT beamformer", ValueError,
      r"the signal has 200 samples", r"a 512-point STFT needs more than 256")
def _(ctx):
    from sigformer.speech.beamforming import souden_mvdr

    souden_mvdr(_array_audio(ctx, n=200))


@case("doa-vad-length", "a DOA VAD of the wrong length", ValueError, r"vad has shape \(3,\)",
      r"frames of the n_fft / 2 = 256-sample hop STFT")
def _(ctx):
    from sigformer.speech.beamforming import estimate_doa

    positions = 0.05 * np.array([[1, 0], [0, 1], [-1, 0], [0, -1]])
    estimate_doa(_array_audio(ctx), 16000, positions, vad=np.ones(3, bool))


@pytest.mark.parametrize("case", CASES.params())
def test_bad_array(case, ctx):
    check(case, ctx)
