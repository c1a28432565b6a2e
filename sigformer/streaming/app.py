"""``sigformer stream``: run any inference bundle online, for every domain.

The online chain is rebuilt from the bundle alone (:mod:`sigformer.bundle`):

* **classify, EEG**: channel adapter onto the bundle's *input* channels -> (resampler when the
  stream's rate differs from the bundle's input rate) -> the bundle's stage chain -> sliding
  windows of the model's length -> model -> smoothing. Because the adapter and the rate check
  look at the signal *before* the chain, chains with resample, bipolar, notch or
  re-reference stages stream exactly as they ran offline;
* **classify, IQ frames**: frames of the model's length -> per-frame scaling -> model ->
  labels (and SigMF annotations written as it goes);
* **separate / enhance**: overlap-add with consistent speaker order, WAV files out;
* **estimate_channel**: slot by slot.

Sources: ``lsl:NAME``, ``file:PATH`` (EDF/BDF/GDF/FIF replay), ``wav:PATH``, ``sigmf:PATH``,
``zmq:tcp://127.0.0.1:5555`` (IQ from SDR software), ``soundcard[:DEVICE]``, ``slots:PATH``
(OFDM slots), or a bare path (kind from its suffix).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from ..bundle import Bundle
from ..checkpoint import CheckpointError
from ..stages import AdaptChannels, Pipeline, Resample
from ..tasks.config import PipelineConfigError
from ..validation import SignalError
from .runtime import BurstDecisions, ModelRunner, OnlinePipeline, Smoother


@dataclass
class OnlineSettings:
    """How a bundle runs online (everything else comes from the bundle)."""

    hop_s: float | None = None  # default: a quarter window (EEG), one frame (IQ)
    hop: int | None = None  # or in samples at the model's input rate (not with hop_s)
    window_s: float | None = None  # must equal the model's window when given
    threads: int = 1
    nan_policy: str = "skip"
    smoothing: Smoother | None = None
    channel: int | None = None  # separation: which input channel
    mics: tuple[int, ...] | None = None  # enhancement: which input channels, in array order
    chunk_s: float | None = None  # audio: overlap-add chunk (default: the bundle's)
    overlap_s: float | None = None
    samples_per_symbol: float | None = None  # IQ family bundles: the stream's symbol length
    # IQ classification: "frame" or "burst" (default: the bundle's extra["decision"], else
    # frame); the burst gate and grouping as classify-iq's, with a bound on held frames
    decision: str | None = None
    min_power_db: float | None = 30.0
    max_gap: int = 1
    max_burst_frames: int = 64


def load_bundle(source) -> Bundle:
    return source if isinstance(source, Bundle) else Bundle.load(source)


def build_online(bundle: Bundle | str | Path, settings: OnlineSettings | None = None,
                 source_rate: float | None = None):
    """The online processor for a bundle (see the module docstring). ``source_rate``: the
    stream's real sampling rate when known before it starts (``stream_bundle`` passes it); a
    rate-agnostic IQ bundle needs it to turn ``hop_s`` into samples."""
    bundle = load_bundle(bundle)
    settings = settings or OnlineSettings()
    if isinstance(settings.threads, bool) or not isinstance(settings.threads, int) \
            or settings.threads < 1:  # torch refuses 0 deep inside the first window
        raise PipelineConfigError(f"threads (--threads) must be a whole number >= 1, got "
                                  f"{settings.threads!r}")
    if settings.decision is not None:
        _check_decision(settings.decision, "decision")
    iq = bundle.input_spec is not None and bundle.input_spec.layout == "iq"
    if settings.decision == "burst" and not (bundle.task == "classify" and iq):
        raise PipelineConfigError(f"decision='burst' is for IQ classification bundles (bursts "
                                  f"of a radio capture); this bundle is {bundle.task!r} with "
                                  f"{bundle.input_spec!r}")
    if settings.mics is not None and bundle.task != "enhance":
        raise PipelineConfigError(f"mics (--mics) picks the microphones of an enhancement "
                                  f"bundle; this bundle is {bundle.task!r}"
                                  + (": choose its one input with --channel"
                                     if bundle.task == "separate" else ""))
    if bundle.task == "classify":
        if iq:
            return _iq_classifier(bundle, settings, source_rate)
        return _eeg_classifier(bundle, settings)
    if bundle.task in ("separate", "enhance"):
        return _audio(bundle, settings)
    if bundle.task == "estimate_channel":
        from .processors import SlotEstimator

        pilot_shape = getattr(bundle.model, "pilot_shape", None)
        if pilot_shape is None:
            raise CheckpointError("this channel-estimation bundle's model does not declare its "
                                  "pilot_shape")
        return SlotEstimator(bundle.model, tuple(pilot_shape), threads=settings.threads,
                             nan_policy=settings.nan_policy)
    raise CheckpointError(f"{bundle.task!r} bundles are not streamed; tokenizers run offline "
                          f"(TokenTransformer(..., weights=...))")


def _window_and_hop(bundle: Bundle, settings: OnlineSettings, default_hop: float,
                    source_rate: float | None = None, symbol_factor: float | None = None
                    ) -> tuple[int, int]:
    spec = bundle.model_spec
    if spec is None or spec.window is None:
        raise CheckpointError("this bundle does not record its model's window length")
    window = spec.window
    if settings.window_s is not None:
        asked = int(round(settings.window_s * spec.sfreq))
        if asked != window:
            raise PipelineConfigError(
                f"stream.window_s={settings.window_s} gives {asked} samples but the model "
                f"takes {window} ({window / spec.sfreq:g} s at {spec.sfreq:g} Hz)")
    if settings.hop is not None:
        if settings.hop_s is not None:
            raise PipelineConfigError(f"give the hop once: hop={settings.hop} samples or "
                                      f"hop_s={settings.hop_s} seconds, not both")
        if settings.hop < 1:
            raise PipelineConfigError(f"hop must be at least 1 sample, got {settings.hop}")
        return window, int(settings.hop)
    if settings.hop_s is not None and not (np.isfinite(settings.hop_s) and settings.hop_s > 0):
        raise PipelineConfigError(f"hop_s must be a number of seconds > 0, got "
                                  f"{settings.hop_s!r}")
    from ..rf.amr import hop_samples  # the rounding classify-iq --hop-s uses

    if settings.hop_s is not None and bundle.extra.get("rate_agnostic", False):
        # its recorded rate is a nominal 1 Hz: seconds count at the stream's own rate, times
        # the resampling to the bundle's symbol length, as classify-iq --hop-s counts them
        if source_rate is None:
            raise PipelineConfigError(
                f"this bundle is rate-agnostic (trained on samples per symbol, not Hz), so a "
                f"hop in seconds (hop_s={settings.hop_s}) counts at the stream's own sampling "
                f"rate, which is not known here (a capture without core:sample_rate, or no "
                f"source yet): give the source's rate (--source-rate HZ) or the hop in "
                f"samples (stream.hop / --hop N; one frame is {window})")
        return window, hop_samples(settings.hop_s, source_rate * (symbol_factor or 1.0))

    hop_s = settings.hop_s if settings.hop_s is not None else default_hop * window / spec.sfreq
    return window, hop_samples(hop_s, spec.sfreq)


def _eeg_classifier(bundle: Bundle, settings: OnlineSettings) -> OnlinePipeline:
    chain = bundle.build_chain()
    if not chain.streamable:
        zero = [c["stage"] for c, s in zip(bundle.chain, chain.stages) if not s.streamable]
        raise PipelineConfigError(
            f"preprocess stage(s) {zero} are zero-phase and cannot stream; train with phase: "
            f"causal to run this model online")
    stages = [AdaptChannels(bundle.input_spec.channels, fill="auto"), *chain.stages]
    window, hop = _window_and_hop(bundle, settings, default_hop=0.25)
    runner = ModelRunner(bundle.model, bundle.labels, threads=settings.threads,
                         alignment=bundle.extra.get("alignment", "none"),
                         alignment_reference=bundle.extra.get("alignment_reference"),
                         scale=bundle.input_scale)
    online = RateAdaptingPipeline(Pipeline(stages), window, hop, runner,
                                  smoothing=settings.smoothing or Smoother(),
                                  nan_policy=settings.nan_policy)
    online.expected_sfreq = bundle.input_spec.sfreq
    return online


def _check_decision(value, where: str) -> None:
    from ..rf.amr import DECISIONS  # classify-iq's (rf.amr loads its trainers lazily)

    if value not in DECISIONS:
        raise PipelineConfigError(f"{where} must be one of {list(DECISIONS)}, got {value!r}")


def _iq_classifier(bundle: Bundle, settings: OnlineSettings,
                   source_rate: float | None = None) -> OnlinePipeline:
    symbol_factor = _symbol_factor(bundle, settings.samples_per_symbol)
    window, hop = _window_and_hop(bundle, settings, default_hop=1.0, source_rate=source_rate,
                                  symbol_factor=symbol_factor)
    runner = ModelRunner(bundle.model, bundle.labels, threads=settings.threads,
                         normalization=bundle.frame_normalization)
    decision = settings.decision
    if decision is None and "decision" in bundle.extra:
        decision = bundle.extra["decision"]
        _check_decision(decision, "the bundle's extra['decision']")
    decision = decision or "frame"
    bursts = None
    if decision == "burst":
        try:
            bursts = BurstDecisions(runner, window, hop, min_power_db=settings.min_power_db,
                                    max_gap=settings.max_gap,
                                    max_burst_frames=settings.max_burst_frames)
        except ValueError as err:  # a bad setting: one line from the CLI, not a traceback
            raise PipelineConfigError(str(err)) from err
        if settings.smoothing is not None and settings.smoothing.mode != "none":
            import warnings

            from .runtime import StreamWarning

            warnings.warn(f"smoothing {settings.smoothing.mode!r} is not applied with burst "
                          f"decisions: the burst's frames share one decision already",
                          StreamWarning, stacklevel=3)
    online = RateAdaptingPipeline(Pipeline([]), window, hop, runner,
                                  smoothing=settings.smoothing or Smoother(),
                                  nan_policy=settings.nan_policy, bursts=bursts)
    online.decision = decision
    online.iq_channels = bundle.input_spec.n_channels  # I and Q rows of one capture channel
    # models trained on generated frames know samples per symbol, not Hz: no resampling
    rate_free = bundle.extra.get("rate_agnostic", False)
    online.expected_sfreq = None if rate_free else bundle.input_spec.sfreq
    online.symbol_factor = symbol_factor
    return online


def _symbol_factor(bundle: Bundle, stream_sps: float | None) -> float | None:
    """Resampling factor that brings a stream to the symbol length a family bundle was
    trained at (``extra["target_sps"]``); a stream cannot estimate it blindly chunk by chunk,
    so the user states it, and a missing value is said, never guessed."""
    target = bundle.extra.get("target_sps")
    if stream_sps is not None and not (np.isfinite(stream_sps) and stream_sps > 0):
        raise PipelineConfigError(f"samples_per_symbol (--sps) must be a number > 0, got "
                                  f"{stream_sps!r}")
    if target is None:
        if stream_sps is not None:
            raise PipelineConfigError(
                "samples_per_symbol (--sps) only applies to bundles trained at a fixed symbol "
                "length (extra['target_sps'], e.g. amr-clst-family); this bundle has none")
        return None
    if stream_sps is None:
        import warnings

        from .runtime import StreamWarning

        warnings.warn(f"this bundle classifies frames at {target:g} samples per symbol and the "
                      f"stream is used as it comes: give the stream's samples per symbol "
                      f"(--sps) to resample it, or use classify-iq, which estimates it",
                      StreamWarning, stacklevel=3)
        return None
    from ..rf.amr import symbol_ratio  # classify-iq's ratio

    return float(symbol_ratio(target, stream_sps))


def _audio(bundle: Bundle, settings: OnlineSettings):
    from .processors import AudioStream

    spec = bundle.input_spec
    multichannel = bundle.task == "enhance"
    chunk_s = settings.chunk_s if settings.chunk_s is not None else \
        bundle.extra.get("chunk_s", 4.0)
    overlap_s = settings.overlap_s if settings.overlap_s is not None else \
        bundle.extra.get("overlap_s", 0.5)
    _check_chunking(chunk_s, overlap_s, spec.sfreq, given=settings)
    return AudioStream(bundle.model, spec.sfreq, multichannel=multichannel,
                       chunk_s=chunk_s, overlap_s=overlap_s,
                       # an unlabelled separation bundle: one name per source (out0, ...)
                       labels=bundle.labels or (["enhanced"] if multichannel else []),
                       channel=settings.channel, mics=settings.mics,
                       n_mics=spec.n_channels if multichannel else None,
                       nan_policy=settings.nan_policy, array=bundle.extra.get("array"))


def _check_chunking(chunk_s: float, overlap_s: float, rate: float,
                    given: OnlineSettings) -> None:
    """Overlap-add needs a chunk of at least one sample at the model's rate and an overlap
    of at most half a chunk (each sample is shared by at most two chunks); the error names
    the settings (and their flags) and says which values came from the bundle."""
    def named(key: str, value: float) -> str:
        origin = "" if getattr(given, key) is not None else " (the bundle's default)"
        return f"{key}={value:g} (--{key.replace('_', '-')}){origin}"

    chunk = int(chunk_s * rate) if np.isfinite(chunk_s) else 0
    if chunk < 1:
        raise PipelineConfigError(f"{named('chunk_s', chunk_s)} must be a positive number of "
                                  f"seconds, at least one sample at the model's "
                                  f"{rate:g} Hz")
    overlap = int(overlap_s * rate) if np.isfinite(overlap_s) and overlap_s >= 0 else -1
    if not 0 <= overlap <= chunk // 2:
        raise PipelineConfigError(f"{named('overlap_s', overlap_s)} must be >= 0 and at most "
                                  f"half of {named('chunk_s', chunk_s)} (each sample is "
                                  f"shared by at most two chunks)")


class RateAdaptingPipeline(OnlinePipeline):
    """An :class:`OnlinePipeline` that resamples a stream whose rate differs from the
    bundle's input rate before the chain (logged, never silent)."""

    expected_sfreq: float | None = None
    symbol_factor: float | None = None  # IQ: target / stream samples per symbol
    decision: str | None = None  # IQ classification: "frame" or "burst"
    iq_channels: int | None = None  # IQ classification: the rows a frame has (I, Q)
    resampled_from: float | None = None
    filled_channels: dict[str, list[str]] | None = None

    def configure(self, sfreq: float, channels) -> None:
        if self.iq_channels is not None:
            _check_iq_channels(channels, self.iq_channels)
        expected = self.expected_sfreq
        if self.symbol_factor is not None and abs(self.symbol_factor - 1.0) > 1e-9:
            expected = float(sfreq) * self.symbol_factor
        stages = [s for s in self.pre.stages if not getattr(s, "_inserted_by_runtime", False)]
        if expected is not None and abs(float(sfreq) - expected) > 1e-6 * expected:
            resample = Resample(expected)
            resample._inserted_by_runtime = True
            at = 1 if stages and isinstance(stages[0], AdaptChannels) else 0
            stages.insert(at, resample)
            self.resampled_from = float(sfreq)
        else:
            resample, self.resampled_from = None, None
        self.pre = Pipeline(stages)
        super().configure(sfreq, channels)
        self.filled_channels = _report_filled_channels(self.pre)
        # (up, down, delay in ticks) to map window positions back, once per configuration
        self._grid = None if resample is None else (*resample._configured_ratio(),
                                                    resample.delay_ticks)

    def process(self, chunk, timestamps=None):
        return self._on_stream_grid(super().process(chunk, timestamps))

    def flush(self):
        return self._on_stream_grid(super().flush())

    def _on_stream_grid(self, predictions: list) -> list:
        """Window positions counted in the stream's samples, not the model's: an annotation
        of a resampled capture must point at the capture's samples (as classify-iq's do).
        Output sample ``k`` of the causal resampler is input sample ``(k down - delay) / up``
        (its delay in ticks of the upsampled grid, ``up`` ticks per input sample)."""
        if getattr(self, "_grid", None) is None or not predictions:
            return predictions
        up, down, delay = self._grid
        for p in predictions:
            if p.start >= 0:
                first = (p.start * down - delay) / up
                last = ((p.start + p.length) * down - delay) / up
                p.start = max(int(round(first)), 0)
                p.length = max(int(round(last)) - p.start, 1)
        return predictions


def _check_iq_channels(channels, expected: int) -> None:
    """An I/Q bundle frames I and Q rows; any other stream (mono audio, 4-channel EEG) would
    fail deep in the model's frame scaling, so it is refused before the first chunk."""
    names = list(getattr(channels, "names", channels))
    if len(names) != expected:
        shown = ", ".join(map(str, names[:6])) + (", ..." if len(names) > 6 else "")
        raise SignalError(f"I/Q bundle needs {expected} channels (I, Q); the stream has "
                          f"{len(names)} ({shown}). Stream complex IQ from a SigMF capture "
                          f"(sigmf:FILE) or SDR software (zmq:ADDRESS): one capture channel "
                          f"arrives as its I and Q rows")


def _report_filled_channels(chain: Pipeline) -> dict[str, list[str]]:
    """Model channels the stream lacks, said once at start (never a silent zero-fill)."""
    adapter = next((s for s in chain.stages if isinstance(s, AdaptChannels)), None)
    fitted = getattr(adapter, "_adapter", None)
    if fitted is None:
        return {}
    filled = {"interpolated": list(fitted.interpolated_), "zero_filled": list(fitted.zero_filled_)}
    if filled["interpolated"] or filled["zero_filled"]:
        import warnings

        from .runtime import StreamWarning

        n_found = int(fitted.mask_.sum())
        warnings.warn(f"the stream has {n_found} of the model's {len(fitted.mask_)} channels: "
                      f"interpolated {filled['interpolated']}, zero-filled "
                      f"{filled['zero_filled']} (expected every model channel; at least "
                      f"{fitted.min_match:.0%} are required)", StreamWarning, stacklevel=2)
    return filled


# --- sources and sinks from short strings -------------------------------------------------

SOURCE_KINDS = ("lsl", "file", "wav", "sigmf", "zmq", "soundcard", "slots")
_SUFFIX_KINDS = {".wav": "wav", ".flac": "wav", ".ogg": "wav", ".sigmf-meta": "sigmf",
                 ".sigmf-data": "sigmf", ".edf": "file", ".bdf": "file", ".gdf": "file",
                 ".fif": "file", ".npz": "slots"}


def parse_source(text: str) -> tuple[str, str]:
    """``"kind:target"`` -> ``(kind, target)``; a bare path gets its kind from the suffix."""
    kind, sep, target = text.partition(":")
    if sep and kind in SOURCE_KINDS:
        return kind, target
    if kind == "soundcard" and not sep:
        return "soundcard", ""
    path = Path(text)
    suffix = "".join(path.suffixes[-1:]).lower()
    if text.endswith((".sigmf-meta", ".sigmf-data")):
        suffix = ".sigmf-meta"
    if suffix in _SUFFIX_KINDS:
        return _SUFFIX_KINDS[suffix], text
    raise PipelineConfigError(f"cannot tell what kind of source {text!r} is; write it as "
                              f"KIND:TARGET with KIND one of {SOURCE_KINDS} (e.g. "
                              f"lsl:MyStream, wav:talk.wav, zmq:tcp://127.0.0.1:5555)")


def nominal_rate(bundle: Bundle, realtime: bool) -> float | None:
    """The rate a SigMF capture without ``core:sample_rate`` streams at, or None when the
    capture's own rate is needed. A rate-agnostic IQ bundle (``extra["rate_agnostic"]``:
    trained on generated frames, it knows samples per symbol, never Hz; its spec's rate is a
    placeholder) read unpaced uses no rate at all, so its spec's rate stands in; pacing in
    real time (``realtime``) and bundles trained at a rate need the real one."""
    if realtime or not bundle.extra.get("rate_agnostic", False) or bundle.input_spec is None:
        return None
    return float(bundle.input_spec.sfreq)


def make_source(text: str, *, realtime: bool = False, chunk_size: int | None = None,
                sample_rate: float | None = None, channels: int = 1, timeout: float = 10.0,
                nominal_rate: float | None = None):
    """A stream source from ``"kind:target"`` (see :data:`SOURCE_KINDS`). ``nominal_rate``:
    the rate of a SigMF capture that states none (see :func:`nominal_rate`); without one such
    a capture is refused (give ``sample_rate``)."""
    from . import sources

    kind, target = parse_source(text)
    if kind == "lsl":
        return sources.LSLSource(target or None, timeout=timeout)
    if kind == "zmq":
        if sample_rate is None:
            raise PipelineConfigError("a ZeroMQ IQ source needs its sample rate "
                                      "(--source-rate HZ)")
        return sources.ZMQSource(target, sample_rate, timeout=timeout)
    if kind == "soundcard":
        return sources.SoundCardSource(sample_rate or 16000, channels,
                                       device=target or None, chunk_size=_or(chunk_size, 512))
    if not Path(target).exists():
        raise PipelineConfigError(f"source file {target} does not exist")
    if kind == "file":
        return sources.FileReplaySource(target, _or(chunk_size, 32), realtime)
    if kind == "wav":
        return sources.WAVSource(target, _or(chunk_size, 4096), realtime)
    if kind == "sigmf":
        source = sources.SigMFSource(target, _or(chunk_size, 4096), realtime,
                                     sample_rate=sample_rate, nominal_rate=nominal_rate)
        if source.nominal_is_placeholder:  # no rate and none to stand in: the bundle needs it
            raise sources.missing_rate_error(target)
        return source
    return sources.SlotSource(target, _or(chunk_size, 8), realtime)


def _or(value, default):
    """``value`` unless it is None (0 is a value: a zero chunk size is refused, never
    silently the default)."""
    return default if value is None else value


def default_sinks(bundle: Bundle, source, *, out: str | None = None,
                  lsl_name: str | None = None, record: str | None = None,
                  stem: str | None = None, plot: bool | str = False,
                  whole_input: bool = False) -> list:
    """Sinks for a bundle: audio -> WAV files, IQ labels -> SigMF annotations, channel
    estimates -> npz, class probabilities -> LSL outlet and/or recorder.

    Every check that needs no file comes first (the ``--out`` target, the ``--record``
    suffix, outputs the bundle does not make), and a sink that writes when it is made (the
    SigMF metadata) is made last: a refusal leaves no file behind, and a sink that cannot
    be made discards those made before it."""
    _check_prediction_outputs(bundle, lsl_name=lsl_name, record=record, plot=plot)
    builders = _out_builders(bundle, source, out, stem, whole_input)
    if lsl_name:
        from .sinks import LSLSink

        builders.append((lambda: LSLSink(bundle.labels, name=lsl_name, source_id=lsl_name),
                         False))
    if record:
        recorder = record_format(record)
        builders.append((lambda: recorder(record, bundle.labels), False))
    if plot:
        from .sinks import LivePlotSink

        save = plot if isinstance(plot, str) else None
        builders.append((lambda: LivePlotSink(bundle.labels, save=save), False))
    return _make_sinks(builders)


# (make the sink, whether it writes files when made): see _make_sinks
SinkBuilder = tuple[Any, bool]


def _make_sinks(builders: list[SinkBuilder]) -> list:
    """The sinks, in the order given; those that write when made are made last, and a
    failure discards the ones already made (their new files removed)."""
    from .sinks import discard_sinks

    order = sorted(range(len(builders)), key=lambda i: builders[i][1])  # stable
    made: dict[int, Any] = {}
    try:
        for i in order:
            made[i] = builders[i][0]()
    except BaseException:
        discard_sinks(made.values())
        raise
    return [made[i] for i in range(len(builders))]


def _check_prediction_outputs(bundle: Bundle, *, lsl_name, record, plot) -> None:
    """``--lsl-out``, ``--record`` and ``--plot`` carry class probabilities: refused for a
    bundle that makes none."""
    refuse_classification_flags(bundle, [flag for flag, value in (
        ("--lsl-out", lsl_name), ("--record", record), ("--plot", plot)) if value])


def refuse_classification_flags(bundle: Bundle, given: list[str]) -> None:
    """Flags for a classification bundle's windows or class probabilities (``--hop``,
    ``--record``, ``--decision``, ...) given for a bundle that has neither: refused, naming
    the first, as ``--mics`` is refused where it does not apply (ignoring them would leave
    the user expecting an output or a setting that never comes)."""
    if bundle.task == "classify" or not given:
        return
    writes = _OUT_SAYS.get(bundle.task)
    raise PipelineConfigError(f"{given[0]} applies to classification bundles (their windows "
                              f"and class probabilities); this bundle is {bundle.task!r}, "
                              f"which has neither" + (f": {writes}" if writes else ""))


# what --out writes for each task that makes no class probabilities
_OUT_SAYS = {"separate": "it writes audio with --out (a folder)",
             "enhance": "it writes audio with --out (a .wav file or a folder)",
             "estimate_channel": "it writes channel estimates with --out (an .npz file)"}


def _out_builders(bundle: Bundle, source, out: str | None, stem: str | None,
                  whole_input: bool) -> list[SinkBuilder]:
    """The sink ``--out`` asks for (none without it), checked now."""
    if bundle.task in ("separate", "enhance"):
        return [_wav_builder(bundle, source, out, stem, whole_input)]
    if bundle.task == "estimate_channel":
        from .sinks import NpzSink

        return [] if out is None else [(lambda: NpzSink(out), False)]
    if bundle.input_spec is not None and bundle.input_spec.layout == "iq":
        return [] if out is None else [_sigmf_builder(bundle, source, out)]
    if out is not None:
        raise PipelineConfigError("--out is for audio, IQ and channel-estimation bundles; "
                                  "record EEG predictions with --record PATH")
    return []


def _wav_builder(bundle: Bundle, source, out: str | None, stem: str | None,
                 whole_input: bool) -> SinkBuilder:
    from .sinks import WAVSink, wav_target_problem

    if out is None:
        raise PipelineConfigError(f"streaming a {bundle.task} bundle writes audio: give "
                                  f"--out (a folder for separated speakers, a .wav file "
                                  f"for enhancement)")
    single = bundle.task == "enhance" and _enhanced_file(out)
    # files are named after the input, as `sigformer separate` names them; a sound card
    # has no name
    default_stem = _input_stem(source) or \
        ("enhanced" if bundle.task == "enhance" else "source")
    problem = wav_target_problem(Path(out), single)
    if problem:  # said now, not after the whole recording is processed
        raise PipelineConfigError(f"--out {problem}")
    return (lambda: WAVSink(out, source.sfreq, single_file=single, stem=stem or default_stem,
                            whole_input=whole_input), False)


# suffixes of audio files: an enhancement --out with one of them names a file, not a folder
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au",
                  ".caf", ".w64", ".rf64")


def _enhanced_file(out: str) -> bool:
    """Whether an enhancement ``--out`` names the one WAV file (``OUT.wav``, any case) rather
    than a folder; another audio suffix is refused (the sink writes WAV, and a folder named
    ``out.flac`` is not what was asked for)."""
    suffix = Path(str(out)).suffix.lower()
    if suffix == ".wav":
        return True
    if suffix in AUDIO_SUFFIXES:
        raise PipelineConfigError(f"--out {out}: enhancement writes a WAV file, not "
                                  f"{suffix}; expected a path ending in .wav (or a folder "
                                  f"for <input stem>_enhanced.wav); convert the WAV "
                                  f"afterwards if another format is needed")
    return False


def _sigmf_builder(bundle: Bundle, source, out: str) -> SinkBuilder:
    from .sinks import SigMFAnnotationSink
    from .sources import SigMFSource

    # a SigMF capture: a complete recording as classify-iq --out writes it (its global
    # fields kept, the data named or copied); any other source: metadata only
    recording = source.path if isinstance(source, SigMFSource) else None
    # a nominal rate is not the capture's: nothing written may claim it
    rate = None if getattr(source, "rate_is_nominal", False) else source.sfreq
    # writes the metadata (and copies the data) when made: made after the other sinks
    return (lambda: SigMFAnnotationSink(out, sample_rate=rate, labels=bundle.labels,
                                        recording=recording,
                                        center_freq=getattr(source, "center_freq", None)),
            True)


def _input_stem(source) -> str | None:
    """The stem of the file a source reads (``meeting`` for ``wav:meeting.wav``), if any."""
    path = getattr(source, "path", None)
    return Path(path).stem if path else None


def record_sink(path, labels):
    """The recorder for ``--record PATH`` (``stream.output.record``), chosen by suffix; any
    other suffix is refused (never a binary file under a name that promises text)."""
    return record_format(path)(path, labels)


def record_format(path):
    """The recorder class for ``--record PATH`` by its suffix, checked before any sink is
    made; any other suffix is refused."""
    from .sinks import RECORD_FORMATS

    suffix = Path(str(path)).suffix.lower()
    if suffix not in RECORD_FORMATS:
        accepted = ", ".join(f"{k} ({cls.FORMAT})" for k, cls in RECORD_FORMATS.items())
        raise PipelineConfigError(f"--record {path} (stream.output.record): cannot tell the "
                                  f"format from {suffix or 'a name without a suffix'!r}; "
                                  f"expected a path ending in {accepted}")
    return RECORD_FORMATS[suffix]


def _settle_nominal_rate(bundle: Bundle, source) -> None:
    """A source at a nominal rate (a SigMF capture that states none) streams only into a
    rate-agnostic bundle read unpaced, at the bundle's nominal rate as ``sigformer stream``
    does (:func:`nominal_rate`); any other bundle needs the capture's real rate."""
    if not getattr(source, "rate_is_nominal", False):
        return
    from .sources import missing_rate_error

    rate = nominal_rate(bundle, bool(getattr(source, "realtime", False)))
    if rate is None:
        raise missing_rate_error(getattr(source, "path", "the source"))
    if getattr(source, "nominal_is_placeholder", False):
        source.use_nominal_rate(rate)


def stream_bundle(bundle, source, sinks=(), *, settings: OnlineSettings | None = None,
                  duration: float | None = None, max_outputs: int | None = None,
                  queue_size: int = 256, report_every: float = 2.0, log=print,
                  keep_outputs: bool | None = None) -> dict[str, Any]:
    """Run ``bundle`` on ``source`` into ``sinks``; returns the run's report.

    The online chain is built and configured for the source first, so a stream the bundle
    cannot take is refused before anything is written: ``sinks`` may be a callable that
    makes them (:func:`default_sinks`), called only then (a recorder opened earlier would
    leave an empty recording behind)."""
    from .engine import StreamRunner

    try:  # the source is closed whatever happens (a refused setting, a failed sink)
        bundle = load_bundle(bundle)
        _settle_nominal_rate(bundle, source)
        real_rate = None if getattr(source, "rate_is_nominal", False) else source.sfreq
        online = build_online(bundle, settings, source_rate=real_rate)
        online.configure(source.sfreq, source.channels)  # refusals (channels, rates) come here
        sinks = list(sinks() if callable(sinks) else sinks)
        clock = None
        if type(source).__name__ == "LSLSource":
            from .lsl import lsl

            clock = lsl().local_clock
        keep = bundle.task == "classify" if keep_outputs is None else keep_outputs
        runner = StreamRunner(source, online, sinks, queue_size=queue_size, status=log,
                              report_every=report_every, clock=clock, keep_outputs=keep)
        nominal = getattr(source, "rate_is_nominal", False)
        if nominal:
            log(f"note: the capture states no sample rate and this bundle is rate-agnostic (it "
                f"counts samples per symbol, not Hz), so the capture streams unpaced at a nominal "
                f"{source.sfreq:g} Hz: seconds and rates in the report count samples (give "
                f"--source-rate HZ for real ones)")
        log(f"streaming {len(source.channels)} channels at {source.sfreq:g} Hz"
            f"{' (nominal)' if nominal else ''} through {bundle!r}")
        t0 = time.perf_counter()
        outputs = runner.run(duration=duration, max_predictions=max_outputs, configure=False)
    finally:
        source.close()
    elapsed = time.perf_counter() - t0
    report = {"task": bundle.task, "outputs": runner.n_outputs, "seconds": round(elapsed, 2),
              "interrupted": runner.interrupted, **online.stats.as_dict(),
              "quality_events": online.monitor.events if online.monitor else [],
              "idle_events": runner.idle_events}
    if bundle.task == "classify":
        report["predictions"] = runner.n_outputs
        labels = [p.label for p in outputs]
        if labels:
            values, counts = np.unique(labels, return_counts=True)
            report["label_counts"] = {str(v): int(c) for v, c in zip(values, counts)}
    if getattr(online, "decision", None) is not None:
        report["decision"] = online.decision
    bursts = getattr(online, "bursts", None)
    if bursts is not None:  # a burst cut at max_burst_frames is one burst, several decisions
        groups = bursts.groups
        # quiet: below the gate when they came; dropped: held, then below a louder frame's
        report.update(bursts=groups.n_bursts, burst_decisions=groups.n_groups,
                      quiet_frames=groups.n_quiet, dropped_held_frames=groups.n_dropped)
    for attr, key in (("overflows", "source_overflows"), ("dropped_frames",
                                                          "source_dropped_samples"),
                      ("bad_messages", "source_bad_messages")):
        if getattr(source, attr, 0):  # a live source's losses, reported, not just counted
            report[key] = int(getattr(source, attr))
    filled = {k: v for k, v in (getattr(online, "filled_channels", None) or {}).items() if v}
    if filled:
        report["filled_channels"] = filled
    resampled = getattr(online, "resampled_from", None)
    if resampled is not None:
        report["resampled_from_hz"] = resampled
    if runner.processing_latencies:
        lat = 1e3 * np.asarray(runner.processing_latencies)
        report.update(processing_latency_ms_p50=float(np.median(lat)),
                      processing_latency_ms_p95=float(np.quantile(lat, 0.95)),
                      processing_latency_ms_p99=float(np.quantile(lat, 0.99)))
    samples = online.stats.samples
    if nominal:
        report["nominal_sample_rate_hz"] = source.sfreq
    if elapsed > 0 and samples and not nominal:  # real-time factors need the real rate
        # wall time per second of signal (>= 1 with a paced source that keeps up) and model
        # compute per second of signal (< 1: faster than real time)
        report["real_time_factor"] = float(elapsed / (samples / source.sfreq))
        compute = float(sum(online.stats.compute_s))
        report["compute_real_time_factor"] = compute / (samples / source.sfreq)
    for sink in sinks:
        for attr in ("paths", "path"):
            value = getattr(sink, attr, None)
            if value:
                report.setdefault("written", []).extend(
                    [str(v) for v in (value if isinstance(value, list) else [value])])
    log(runner.summary(elapsed))
    report["_outputs"] = outputs
    return report


# --- the YAML form: `sigformer stream PIPELINE.yaml --model BUNDLE` -----------------------

def settings_from_config(cfg) -> OnlineSettings:
    s = cfg.stream
    return OnlineSettings(hop_s=s.hop_s, hop=s.hop, window_s=s.window_s, threads=s.threads,
                          nan_policy=s.nan_policy,
                          smoothing=Smoother(s.smoothing.mode, s.smoothing.alpha,
                                             s.smoothing.n),
                          decision=s.decision, min_power_db=s.min_power_db,
                          max_burst_frames=s.max_burst_frames)


def build_online_pipeline(cfg, checkpoint_dir) -> OnlinePipeline:
    """The online pipeline for a bundle, with the stream settings of a pipeline's YAML."""
    return build_online(Bundle.load(checkpoint_dir), settings_from_config(cfg))


def make_source_from_config(cfg, nominal: float | None = None):
    """The source of a pipeline's ``stream.source`` section (``nominal``: as
    :func:`make_source`'s ``nominal_rate``)."""
    src = cfg.stream.source
    if src.kind == "lsl":
        from . import sources

        return sources.LSLSource(src.name, src.stype, src.source_id, timeout=src.timeout)
    target = src.address if src.kind == "zmq" else (src.path or "")
    if src.kind not in ("soundcard",) and not target:
        raise PipelineConfigError(f"stream.source.path is required for kind {src.kind!r}")
    return make_source(f"{src.kind}:{target}", realtime=src.realtime,
                       chunk_size=src.chunk_size, sample_rate=src.sfreq,
                       channels=src.channels, timeout=src.timeout, nominal_rate=nominal)


def override_stream(cfg, overrides: dict[str, Any]):
    """``cfg`` with values of its ``stream`` section replaced (keys ``"decision"`` or dotted
    ``"source.chunk_size"``, ``"output.record"``): the command line's flags over the YAML's.
    The section is validated again, so an override obeys the YAML's rules; errors name
    ``stream.KEY``."""
    if not overrides:
        return cfg
    section = cfg.stream.model_dump(exclude_unset=True)  # what the YAML set stays "set"
    for given, other in (("hop", "hop_s"), ("hop_s", "hop")):
        if given in overrides:  # a hop from the command line replaces the YAML's, either unit
            section.pop(other, None)
    for key, value in overrides.items():
        *parents, last = key.split(".")
        node = section
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    try:
        stream = type(cfg.stream).model_validate(section)
    except ValidationError as err:
        lines = [f"  stream.{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (got "
                 f"{e.get('input')!r})" for e in err.errors()]
        raise PipelineConfigError("invalid stream settings (the command line's flags over "
                                  "the pipeline's stream section):\n" + "\n".join(lines)
                                  ) from None
    return cfg.model_copy(update={"stream": stream})


def run_stream(cfg, checkpoint_dir, *, source: str | None = None, out: str | None = None,
               plot: bool | str = False, samples_per_symbol: float | None = None,
               channel: int | None = None, mics: tuple[int, ...] | None = None,
               duration: float | None = None, max_predictions: int | None = None,
               log=print) -> dict:
    """Stream with the settings of a pipeline's ``stream`` section. ``source``: a source
    string (as ``--source``) read instead of the section's ``source`` (its realtime,
    chunk_size, sfreq, channels and timeout still apply); ``out``, ``plot``,
    ``samples_per_symbol``, ``channel`` and ``mics`` have no YAML key and are given here."""
    bundle = load_bundle(checkpoint_dir)  # a path, or a bundle the caller loaded
    src = cfg.stream.source
    nominal = nominal_rate(bundle, src.realtime)
    if source is None:
        source = make_source_from_config(cfg, nominal)
    else:
        source = make_source(source, realtime=src.realtime, chunk_size=src.chunk_size,
                             sample_rate=src.sfreq, channels=src.channels, timeout=src.timeout,
                             nominal_rate=nominal)
    output = cfg.stream.output

    def sinks():  # opened once the online chain has accepted the stream
        return default_sinks(bundle, source, out=out, lsl_name=output.lsl_name,
                             record=output.record, plot=plot)

    settings = settings_from_config(cfg)
    settings.samples_per_symbol, settings.channel = samples_per_symbol, channel
    settings.mics = tuple(mics) if mics else None
    report = stream_bundle(bundle, source, sinks, settings=settings,
                           duration=duration, max_outputs=max_predictions,
                           queue_size=cfg.stream.queue_size,
                           report_every=cfg.stream.report_every_s, log=log)
    report.pop("_outputs", None)
    return report


def replay(path, *, name: str = "sigformer-replay", source_id: str | None = None,
           chunk_size: int = 16, n_repeat: float = float("inf"), duration: float | None = None,
           log=print):
    """Publish a recording as an LSL stream with mne-lsl's ``PlayerLSL`` (loopback config)."""
    from ..data.io import read_raw
    from .lsl import use_loopback_config

    use_loopback_config()
    from mne_lsl.player import PlayerLSL

    raw = read_raw(path)
    repeat = {} if n_repeat == float("inf") else {"n_repeat": int(n_repeat)}
    player = PlayerLSL(raw, chunk_size=chunk_size, name=name, source_id=source_id or name,
                       **repeat)
    player.start()
    log(f"replaying {Path(path).name} as LSL stream {name!r} ({len(raw.ch_names)} channels at "
        f"{raw.info['sfreq']:g} Hz); Ctrl-C stops")
    return player
