"""Bad streams: unknown or missing sources, ZeroMQ without a rate, streams with fewer
channels than the bundle, NaN chunks under each policy, chains that cannot stream, and
sinks or settings that do not fit the bundle."""

from __future__ import annotations

import json

import numpy as np
import pytest
from badinput import Catalogue, check

from sigformer.bundle import Bundle
from sigformer.channels import ChannelError
from sigformer.streaming import ArraySource, ListSink
from sigformer.streaming.app import (
    OnlineSettings,
    build_online,
    default_sinks,
    make_source,
    nominal_rate,
    stream_bundle,
)
from sigformer.streaming.runtime import StreamError, StreamWarning
from sigformer.tasks import PipelineConfigError
from sigformer.validation import SignalError

CASES = Catalogue("streams")
case = CASES.case
NAMES = ["Fp1", "C3", "Cz", "C4", "P3", "P4"]


def _eeg(ctx, names=NAMES, seconds=4, nan_at=None, **settings):
    """Stream random EEG through the shared bundle; returns the report."""
    data = ctx.rng.standard_normal((len(names), 100 * seconds)) * 1e-5
    if nan_at is not None:
        data[0, nan_at] = np.nan
    source = ArraySource(data, 100.0, names, chunk_size=25)
    return stream_bundle(ctx.shared.eeg_bundle, source, [ListSink()],
                         settings=OnlineSettings(hop_s=0.25, **settings), log=lambda *a: None)


@case("unknown-source-kind", "--source serial:COM3", PipelineConfigError,
      r"cannot tell what kind of source 'serial:COM3'", r"KIND one of \('lsl', 'file'")
def _(ctx):
    make_source("serial:COM3")


@case("unknown-source-suffix", "--source recording.mat", PipelineConfigError,
      r"cannot tell what kind of source 'recording\.mat'", r"write it as KIND:TARGET")
def _(ctx):
    make_source("recording.mat")


for _kind, _name in [("wav", "a.wav"), ("sigmf", "a.sigmf-meta"), ("file", "a.edf"),
                     ("slots", "a.npz")]:
    case(f"missing-{_kind}-source", f"--source {_kind}:{_name} that does not exist",
         PipelineConfigError, rf"source file .*{_name.replace('.', chr(92) + '.')}",
         r"does not exist")(lambda ctx, k=_kind, n=_name: make_source(f"{k}:{ctx.tmp / n}"))


@case("zmq-without-rate", "--source zmq:... without --source-rate", PipelineConfigError,
      r"a ZeroMQ IQ source needs its sample rate", r"--source-rate HZ")
def _(ctx):
    make_source("zmq:tcp://127.0.0.1:5599")


@case("config-source-without-path", "stream.source kind wav without a path",
      PipelineConfigError, r"stream\.source\.path is required", r"for kind 'wav'")
def _(ctx):
    from sigformer.streaming.app import make_source_from_config
    from sigformer.tasks import load_task_config

    make_source_from_config(load_task_config({"stream": {"source": {"kind": "wav"}}}))


@case("too-few-channels", "a stream with 2 of the bundle's 6 channels", ChannelError,
      r"only 2 of the 6 model channels are in the recording",
      r"at least 50% needed\); missing \['Fp1', 'Cz', 'P3', 'P4'\]")
def _(ctx):
    _eeg(ctx, names=["C3", "C4"])


@case("fewer-channels-reported", "a stream with 4 of the bundle's 6 channels", None,
      r"the stream has 4 of the model's 6 channels: interpolated \[\], zero-filled "
      r"\['P3', 'P4'\]", r"expected every model channel; at least 50% are required",
      warning=StreamWarning, before="silent")
def _(ctx):
    report = _eeg(ctx, names=["Fp1", "C3", "Cz", "C4"])
    assert report["filled_channels"] == {"zero_filled": ["P3", "P4"]}


@case("nan-raise", "a NaN chunk with nan_policy='raise'", StreamError,
      r"non-finite samples in the stream \(1 values\)", r"set nan_policy to 'skip'")
def _(ctx):
    _eeg(ctx, nan_at=130, nan_policy="raise")


@case("nan-skip", "a NaN chunk with nan_policy='skip'", None,
      r"'nan_chunks': 1", r"'skipped_windows': [1-9]")
def _(ctx):
    report = _eeg(ctx, nan_at=130, nan_policy="skip")
    assert report["skipped_windows"] > 0 and report["predictions"] > 0
    return str({k: report[k] for k in ("nan_chunks", "skipped_windows")})


@case("nan-interpolate", "a NaN chunk with nan_policy='interpolate'", None,
      r"'nan_chunks': 1", r"'skipped_windows': 0")
def _(ctx):
    report = _eeg(ctx, nan_at=130, nan_policy="interpolate")
    assert report["predictions"] == report["windows"] > 0
    return str({k: report[k] for k in ("nan_chunks", "skipped_windows")})


@case("nan-policy-unknown", "nan_policy='drop'", ValueError, r"got 'drop'",
      r"nan_policy must be one of \('raise', 'skip', 'interpolate'\)")
def _(ctx):
    _eeg(ctx, nan_policy="drop")


@case("zero-phase-chain", "a bundle trained with a zero-phase filter", PipelineConfigError,
      r"preprocess stage\(s\) \['bandpass'\] are zero-phase and cannot stream",
      r"train with phase: causal")
def _(ctx):
    bundle = Bundle.load(ctx.shared.eeg_bundle)
    bundle.chain = [{"stage": "bandpass", "l_freq": 4.0, "h_freq": 30.0, "phase": "zero"}]
    build_online(bundle)


@case("window-mismatch", "stream.window_s 2.0 for a 1-s model", PipelineConfigError,
      r"stream\.window_s=2\.0 gives 200 samples", r"the model takes 100 \(1 s at 100 Hz\)")
def _(ctx):
    build_online(ctx.shared.eeg_bundle, OnlineSettings(window_s=2.0))


@case("out-for-eeg", "--out for an EEG classification bundle", PipelineConfigError,
      r"--out is for audio, IQ and channel-estimation bundles",
      r"record EEG predictions with --record PATH")
def _(ctx):
    source = ArraySource(np.zeros((6, 10)), 100.0, NAMES)
    default_sinks(Bundle.load(ctx.shared.eeg_bundle), source, out=str(ctx.tmp / "x"))


@case("separate-without-out", "streaming a separation bundle without --out",
      PipelineConfigError, r"streaming a separate bundle writes audio",
      r"give --out \(a folder for separated speakers")
def _(ctx):
    source = ArraySource(np.zeros((1, 10)), 8000.0, ["mic0"])
    default_sinks(Bundle.load(ctx.shared.sep_bundle), source)


@case("iq-bundle-mono-stream", "an I/Q bundle on a mono WAV stream", SignalError,
      r"I/Q bundle needs 2 channels \(I, Q\); the stream has 1 \(mic0\)",
      r"Stream complex IQ from a SigMF capture \(sigmf:FILE\)", before="crash")
def _(ctx):
    stream_bundle(ctx.shared.iq_bundle, ArraySource(np.zeros((1, 512)), 1e6, ["mic0"]),
                  log=lambda *a: None)


@case("iq-bundle-eeg-stream", "an I/Q bundle on a 4-channel EEG stream", SignalError,
      r"I/Q bundle needs 2 channels \(I, Q\); the stream has 4 \(TP9, AF7, AF8, TP10\)",
      r"one capture channel arrives as its I and Q rows", before="crash")
def _(ctx):
    source = ArraySource(np.zeros((4, 512)), 1e6, ["TP9", "AF7", "AF8", "TP10"])
    stream_bundle(ctx.shared.iq_bundle, source, log=lambda *a: None)


@case("sigmf-stream-without-rate", "a SigMF capture without core:sample_rate for a bundle "
      "trained at a rate", SignalError, r"has no core:sample_rate",
      r"give the capture's rate with --source-rate HZ")
def _(ctx):
    path = ctx.sigmf()
    meta = json.loads(path.read_text())
    del meta["global"]["core:sample_rate"]
    path.write_text(json.dumps(meta))
    bundle = Bundle.load(ctx.shared.iq_bundle)  # 1 MHz, not rate-agnostic: no nominal rate
    make_source(f"sigmf:{path}", nominal_rate=nominal_rate(bundle, realtime=False))


@case("audio-chunk-zero", "--chunk-s 0 (stream chunk_s=0) for a separation bundle",
      PipelineConfigError, r"chunk_s=0 \(--chunk-s\) must be a positive number of seconds",
      r"at least one sample at the model's 8000 Hz", before="silent")
def _(ctx):
    build_online(ctx.shared.sep_bundle, OnlineSettings(chunk_s=0.0))


@case("audio-overlap-over-half", "the bundle's 0.1 s overlap with --chunk-s 0.15",
      PipelineConfigError, r"overlap_s=0\.1 \(--overlap-s\) \(the bundle's default\)",
      r"at most half of chunk_s=0\.15 \(--chunk-s\)", before="crash")
def _(ctx):
    build_online(ctx.shared.sep_bundle, OnlineSettings(chunk_s=0.15))


@case("separate-out-is-a-file", "separation --out naming an existing file",
      PipelineConfigError, r"--out .*out\.wav is an existing file",
      r"one WAV file per output .* give a folder", before="crash")
def _(ctx):
    (ctx.tmp / "out.wav").write_bytes(b"")
    source = ArraySource(np.zeros((1, 10)), 8000.0, ["mic0"])
    default_sinks(Bundle.load(ctx.shared.sep_bundle), source, out=str(ctx.tmp / "out.wav"))


@case("chunk-1d", "a 1-D chunk pushed into an online pipeline", SignalError,
      r"got \(50,\)", r"chunks must be \(n_channels, n_samples\)")
def _(ctx):
    online = build_online(ctx.shared.eeg_bundle)
    online.configure(100.0, NAMES)
    online.process(np.zeros(50))


@case("not-configured", "process() before configure()", RuntimeError,
      r"OnlinePipeline\.configure\(sfreq, channels\)", r"must run first")
def _(ctx):
    build_online(ctx.shared.eeg_bundle).process(np.zeros((6, 50)))


@case("array-source-rows", "array source with 5 rows and 6 names", SignalError,
      r"5 rows but 6 channel names", r"channel names")
def _(ctx):
    ArraySource(np.zeros((5, 10)), 100.0, NAMES)


@case("stream-yaml-without-model", "sigformer stream PIPELINE.yaml without --model",
      PipelineConfigError, r"pipeline\.yaml is a pipeline file",
      r"give the trained bundle with --model")
def _(ctx):
    from sigformer.cli import main

    (ctx.tmp / "pipeline.yaml").write_text("name: x\n")
    argv = ["stream", str(ctx.tmp / "pipeline.yaml")]
    _raise_cli_error(main, argv)


@case("stream-without-source", "sigformer stream BUNDLE without --source",
      PipelineConfigError, r"give the stream to read with --source",
      r"lsl:NAME, wav:FILE, sigmf:FILE")
def _(ctx):
    from sigformer.cli import main

    _raise_cli_error(main, ["stream", str(ctx.shared.eeg_bundle)])


def _raise_cli_error(main, argv):
    """Run the CLI command itself: ``main`` would turn the error into exit 2 + one line
    (checked in tests/test_cli.py); here its type and text are checked."""
    from sigformer.cli import build_parser

    assert main is not None
    args = build_parser().parse_args(argv)
    args.func(args)


@pytest.mark.parametrize("case", CASES.params())
def test_bad_stream(case, ctx):
    check(case, ctx)
