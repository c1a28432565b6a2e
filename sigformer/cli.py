"""Command line: ``sigformer run PIPELINE.yaml``, ``sigformer stream BUNDLE --source ...``,
``sigformer models --pretrained`` and the file conveniences (``separate``, ``enhance``,
``classify-iq``, ``replay``, ``export``).

Heavy libraries (torch, MNE, braindecode) are imported by the command that needs them, so
``sigformer --help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def _quiet() -> None:
    # Library chatter that says nothing to a CLI user.
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("LITLOGGER_DISABLE_TIP", "1")


def _print_json(obj) -> None:
    from .tasks.registry import json_default

    print(json.dumps(obj, indent=2, default=json_default))


# --- run ----------------------------------------------------------------------------------

def _cmd_run(args) -> int:
    from .tasks import get_task, load_task_config, run_task

    overrides = {k: getattr(args, k) for k in ("data", "max_epochs", "accelerator", "devices",
                                               "strategy", "num_nodes")
                 if getattr(args, k) is not None}
    if args.progress:
        overrides["progress"] = True
    if args.pretrained:
        overrides["pretrained"] = True
    cfg = load_task_config(args.pipeline, overrides)
    report = run_task(cfg, args.out)
    _print_json(get_task(cfg.task).summary(report))
    return 0


def _cmd_tasks(args) -> int:
    from .tasks import get_task, list_tasks

    for name in list_tasks():
        print(f"{name:18s} {get_task(name).description}")
    return 0


# --- stream -------------------------------------------------------------------------------

def _cmd_stream(args) -> int:
    from .streaming.lsl import use_loopback_config

    use_loopback_config()  # before any LSL use: discovery stays on this machine
    from .streaming.app import (
        OnlineSettings,
        default_sinks,
        load_bundle,
        make_source,
        nominal_rate,
        run_stream,
        stream_bundle,
    )

    target = args.target
    if target.endswith((".yaml", ".yml")):  # the YAML form: stream section + --model bundle
        if not args.model:
            raise _config_error(f"{target} is a pipeline file: give the trained bundle with "
                                f"--model (or stream the bundle directly: sigformer stream "
                                f"BUNDLE --source ...)")
        from .streaming.app import override_stream
        from .tasks import load_task_config

        # flags given on the command line win over the YAML's stream section, as with run
        cfg = override_stream(load_task_config(target), _stream_overrides(args))
        bundle = load_bundle(args.model)
        _refuse_classification_flags(args, bundle)
        report = run_stream(cfg, bundle, source=args.source, out=args.out,
                            plot=args.plot or False, samples_per_symbol=args.sps,
                            channel=args.channel, mics=args.mics, duration=args.duration,
                            max_predictions=args.max_predictions)
        _print_json({k: v for k, v in report.items() if not isinstance(v, list)})
        return EXIT_INTERRUPTED if report.get("interrupted") else 0
    if not args.source:
        raise _config_error("give the stream to read with --source (lsl:NAME, wav:FILE, "
                            "sigmf:FILE, file:EDF, zmq:ADDRESS, soundcard, slots:NPZ)")
    bundle = load_bundle(target)
    _refuse_classification_flags(args, bundle)  # before the source is opened (LSL waits)
    source = make_source(args.source, realtime=bool(args.realtime), chunk_size=args.chunk_size,
                         sample_rate=args.source_rate, channels=_or(args.source_channels, 1),
                         timeout=_or(args.timeout, 10.0),
                         nominal_rate=nominal_rate(bundle, bool(args.realtime)))

    def sinks():  # opened only once the bundle has accepted the stream (no empty recording)
        return default_sinks(bundle, source, out=args.out, lsl_name=args.lsl_out,
                             record=args.record, plot=args.plot or False)

    # flags not given keep OnlineSettings' defaults (the defaults the help text states)
    given = {k: v for k, v in _stream_overrides(args).items() if k in _SETTINGS_KEYS}
    settings = OnlineSettings(channel=args.channel, samples_per_symbol=args.sps,
                              mics=args.mics, **given)
    report = stream_bundle(bundle, source, sinks, settings=settings, duration=args.duration,
                           max_outputs=args.max_predictions)
    report.pop("_outputs", None)
    _print_json({k: v for k, v in report.items() if not isinstance(v, list) or k == "written"})
    return EXIT_INTERRUPTED if report.get("interrupted") else 0


# `sigformer stream` flags with a key in a pipeline's stream section (dotted: a subsection);
# argparse leaves them None when not given, so the YAML form can tell "given" from "default"
_STREAM_KEYS = {"hop_s": "hop_s", "hop": "hop", "threads": "threads",
                "nan_policy": "nan_policy", "decision": "decision", "min_power_db": "min_power_db",
                "max_burst_frames": "max_burst_frames", "realtime": "source.realtime",
                "chunk_size": "source.chunk_size", "source_rate": "source.sfreq",
                "source_channels": "source.channels", "timeout": "source.timeout",
                "lsl_out": "output.lsl_name", "record": "output.record"}
# the keys that are OnlineSettings fields too (the bundle form)
_SETTINGS_KEYS = ("hop_s", "hop", "threads", "nan_policy", "decision", "min_power_db",
                  "max_burst_frames")


def _stream_overrides(args) -> dict:
    """The stream-section keys of the flags given on the command line (``--all-frames``:
    ``min_power_db`` None, no gate)."""
    given = {key: getattr(args, flag) for flag, key in _STREAM_KEYS.items()
             if getattr(args, flag) is not None}
    if args.all_frames:
        given["min_power_db"] = None
    return given


def _or(value, default):
    return default if value is None else value


# `sigformer stream` flags for a classification bundle's windows and class probabilities
# (IQ ones included): separation, enhancement and channel estimation would ignore them
_CLASSIFY_FLAGS = (("hop", "--hop"), ("hop_s", "--hop-s"), ("lsl_out", "--lsl-out"),
                   ("record", "--record"), ("plot", "--plot"), ("sps", "--sps"),
                   ("decision", "--decision"), ("min_power_db", "--min-power-db"),
                   ("all_frames", "--all-frames"), ("max_burst_frames", "--max-burst-frames"))


# of those, the ones for IQ frames and bursts: an EEG or audio classifier would ignore them
_IQ_FLAGS = (("sps", "--sps"), ("decision", "--decision"), ("min_power_db", "--min-power-db"),
             ("all_frames", "--all-frames"), ("max_burst_frames", "--max-burst-frames"))


def _refuse_classification_flags(args, bundle) -> None:
    """A flag the bundle would silently ignore is refused, naming it (as ``--mics`` is
    refused for a bundle that is not an enhancement one)."""
    from .streaming.app import refuse_classification_flags

    given = [flag for dest, flag in _CLASSIFY_FLAGS if getattr(args, dest) not in (None, False)]
    refuse_classification_flags(bundle, given)
    iq = bundle.input_spec is not None and bundle.input_spec.layout == "iq"
    iq_given = [flag for dest, flag in _IQ_FLAGS if getattr(args, dest) not in (None, False)]
    if bundle.task == "classify" and not iq and iq_given:
        layout = bundle.input_spec.layout if bundle.input_spec is not None else "unknown"
        raise _config_error(f"{iq_given[0]} applies to IQ classification bundles (symbols, "
                            f"frames, bursts); this bundle's input is {layout!r}, not IQ "
                            "(--hop / --hop-s set its window hop)")


def _cmd_replay(args) -> int:
    import time

    from .streaming.app import replay

    player = replay(args.file, name=args.name, chunk_size=args.chunk_size,
                    n_repeat=args.repeat if args.repeat > 0 else float("inf"))
    try:
        deadline = None if args.duration is None else time.monotonic() + args.duration
        # the player stops by itself after its last repeat: so does the command
        while player.running and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        if player.running:  # stopping a finished player raises
            player.stop()
    return 0


# --- file conveniences --------------------------------------------------------------------

def _cmd_classify_iq(args) -> int:
    from .bundle import Bundle
    from .checkpoint import CheckpointError
    from .rf.amr import classify_sigmf

    bundle = Bundle.load(args.model)
    if bundle.task != "classify" or bundle.input_spec is None or \
            bundle.input_spec.layout != "iq":
        raise CheckpointError(f"{args.model} is not a modulation-recognition bundle (task "
                              f"{bundle.task!r}, input {bundle.input_spec!r}); train one with "
                              f"an IQ classification pipeline (pipelines/amr_clst.yaml)")
    target_sps = args.target_sps if args.target_sps is not None else \
        bundle.extra.get("target_sps")
    if args.sps is not None and target_sps is None:
        raise _config_error(f"--sps {args.sps:g} gives the capture's samples per symbol, but "
                            f"there is nothing to resample it to: give --target-sps too, or a "
                            f"bundle that records its training symbol length "
                            f"(extra['target_sps'], e.g. amr-clst-family); {args.model} "
                            f"records none")
    result = classify_sigmf(args.file, bundle, hop=args.hop,  # its labels and scaling
                            hop_s=args.hop_s,
                            min_power_db=None if args.all_frames else args.min_power_db,
                            out_meta=args.out, in_place=args.in_place,
                            copy_data=args.copy_data, nan_policy=args.nan_policy,
                            target_sps=target_sps, sps=args.sps,
                            decision=args.decision or bundle.extra.get("decision", "frame"),
                            verify_checksum=args.verify_checksum)
    summary = {"meta": result["meta"], "n_frames": result["n_frames"],
               "annotations": len(result["annotations"]),
               "frame_labels": result["frame_labels"], "decision": result.get("decision")}
    if args.sps is not None:  # stated, not estimated: reported as given
        summary["samples_per_symbol"] = args.sps
        summary["resample_factor"] = result["resample_factor"]
    elif result.get("samples_per_symbol") is not None:
        # the estimate a live stream of the same transmitter needs (sigformer stream --sps)
        summary["samples_per_symbol"] = round(float(result["samples_per_symbol"]), 3)
        summary["resample_factor"] = result["resample_factor"]
    if args.out is None and not args.in_place:
        # nothing written: the label runs themselves are the answer
        summary["runs"] = [{"sample_start": ann.start, "sample_count": ann.count,
                            "label": ann.label} for ann in result["annotations"]]
    _print_json(summary)
    return 0


def _natural_key(path: str) -> list:
    """``mic2.wav`` before ``mic10.wav``: digit runs compare as numbers."""
    import re

    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


def _microphone_paths(inputs: list[str]) -> list[str]:
    """The input files in microphone order: as given, a glob's matches in natural order."""
    import glob

    from .data.io import DataError

    paths: list[str] = []
    for item in inputs:
        matched = sorted(glob.glob(item), key=_natural_key) if any(c in item for c in "*?[") \
            else [item]
        if not matched:
            raise DataError(f"{item!r} matches no file")
        paths.extend(matched)
    return paths


def _read_array_input(paths: list[str]):
    """One multichannel file, or several mono files (one per microphone, in this order)."""
    import numpy as np

    from .data.io import DataError
    from .speech.audio import read_audio

    if len(paths) == 1:
        return read_audio(paths[0])
    parts, rates = [], set()
    for path in paths:
        audio, rate = read_audio(path)
        if audio.shape[0] != 1:
            raise DataError(f"{path} has {audio.shape[0]} channels; give one mono file per "
                            f"microphone, or one multichannel file")
        parts.append(audio[0])
        rates.add(rate)
    if len(rates) != 1:
        raise DataError(f"the microphone files have different sample rates {sorted(rates)}")
    n = min(len(p) for p in parts)
    if any(len(p) != n for p in parts):
        raise DataError(f"the microphone files have different lengths "
                        f"{sorted({len(p) for p in parts})} samples")
    return np.stack(parts), rates.pop()


def _run_audio_bundle(args, task: str, out: str) -> dict:
    from .bundle import Bundle
    from .checkpoint import CheckpointError
    from .streaming.app import OnlineSettings, default_sinks, stream_bundle
    from .streaming.sources import ArraySource

    bundle = Bundle.load(args.model)
    if bundle.task != task:
        kind = {"separate": "separation", "enhance": "multichannel enhancement"}[task]
        raise CheckpointError(f"{args.model} is not a {kind} bundle (its task is "
                              f"{bundle.task!r})")
    paths = _microphone_paths(args.input)
    audio, rate = _read_array_input(paths)
    names = tuple(f"mic{i}" for i in range(audio.shape[0]))
    source = ArraySource(audio, rate, names, chunk_size=int(rate))
    mics = getattr(args, "mics", None)
    settings = OnlineSettings(channel=getattr(args, "channel", None), mics=mics,
                              chunk_s=args.chunk_s,
                              overlap_s=args.overlap_s)
    from pathlib import Path

    def sinks():  # after the chunking and channels are accepted: a refusal writes nothing
        return default_sinks(bundle, source, out=out, stem=Path(paths[0]).stem,
                             whole_input=True)

    report = stream_bundle(bundle, source, sinks, settings=settings, log=lambda *a: None)
    summary = {"outputs": report.get("written", []), "sample_rate": rate,
               "model_rate": bundle.input_spec.sfreq,
               "seconds": round(audio.shape[1] / rate, 3),
               "real_time_factor": report.get("real_time_factor")}
    if len(paths) > 1:  # the order the files became mic0, mic1, ... (a glob: natural order)
        summary["microphones"] = paths
    if mics:
        summary["microphones_used"] = mics
    if report.get("interrupted"):
        summary.update(outputs=[], interrupted=True,
                       note="interrupted: nothing was written (a cut-short file would look "
                            "complete); earlier files at the output names are unchanged")
    return summary


def _run_audio_command(args, task: str) -> int:
    summary = _run_audio_bundle(args, task, args.out)
    _print_json(summary)
    return EXIT_INTERRUPTED if summary.get("interrupted") else 0


def _cmd_separate(args) -> int:
    return _run_audio_command(args, "separate")


def _cmd_enhance(args) -> int:
    return _run_audio_command(args, "enhance")


# --- models and export --------------------------------------------------------------------

def _cmd_models(args) -> int:
    if args.pretrained:
        from .pretrained import list_pretrained

        entries = list_pretrained()
        if not entries:
            print("no pretrained bundles are installed")
        for e in entries:
            print(f"{e['name']:36s} {e['model']:14s} {e['task'] or '-':16s} "
                  f"{e['bytes'] / 1e6:5.2f} MB  {e['summary']}")
        return 0
    from .models import list_models

    if args.domain is not None:
        from .models.registry import list_domains

        known = list_domains()  # the same list list_models checks against
        if args.domain not in known:
            raise _config_error(f"unknown domain {args.domain!r} for --domain; known domains: "
                                f"{', '.join(known)}")
    for name in list_models(args.domain, include_braindecode=args.braindecode):
        print(name)
    return 0


def _cmd_export(args) -> int:
    from .export import export_bundle

    bundle = args.bundle if args.bundle is not None else args.model  # one of them: main()
    _print_json(export_bundle(bundle, args.out, fmt=args.format, opset=args.opset))
    return 0


# --- parser -------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sigformer", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a YAML pipeline (load, preprocess, train, evaluate, "
                                     "write the bundle)")
    run.add_argument("pipeline", help="pipeline YAML file, e.g. pipelines/eeg_mi_dbconformer.yaml")
    run.add_argument("--data", help="data to use instead of the pipeline's (an eegmmidb folder, "
                                    "EEG files, a Bonn .npz, RadioML files, an OFDM .npz, a "
                                    "folder of clean speech)")
    run.add_argument("--out", help="output folder (default: the pipeline's output.dir)")
    run.add_argument("--max-epochs", type=int, help="override the training epochs")
    run.add_argument("--devices", type=int, help="override train.devices (e.g. 2 with ddp)")
    run.add_argument("--strategy", help="override train.strategy (e.g. ddp)")
    run.add_argument("--accelerator", help="override train.accelerator (cpu, gpu, auto)")
    run.add_argument("--num-nodes", type=int, help="override train.num_nodes (multi-node DDP)")
    run.add_argument("--pretrained", action="store_true",
                     help="evaluate the shipped bundles of the pipeline's models instead of "
                          "training them (channel estimation)")
    run.add_argument("--progress", action="store_true",
                     help="show per-epoch progress of the training (every task)")
    run.set_defaults(func=_cmd_run)
    tasks = sub.add_parser("tasks", help="list the pipeline tasks")
    tasks.set_defaults(func=_cmd_tasks)

    stream = sub.add_parser("stream", help="run a trained bundle on a live or replayed stream "
                                           "(EEG over LSL, audio, IQ, OFDM slots)")
    stream.add_argument("target", help="bundle folder or pretrained name (or, with --model, a "
                                       "pipeline YAML whose stream section to use; flags "
                                       "given on the command line override its values)")
    stream.add_argument("--model", help="with a pipeline YAML: the bundle from `sigformer run`")
    stream.add_argument("--source", help="lsl:NAME, wav:FILE, sigmf:FILE, file:EDF, "
                                         "zmq:tcp://127.0.0.1:PORT, soundcard[:DEVICE], "
                                         "slots:NPZ, or a file path (with a pipeline YAML: "
                                         "read instead of its stream.source)")
    stream.add_argument("--source-rate", type=float, help="sample rate of a zmq / soundcard "
                                                          "source (Hz)")
    stream.add_argument("--source-channels", type=int,
                        help="input channels of a soundcard source (default 1)")
    stream.add_argument("--realtime", action=argparse.BooleanOptionalAction,
                        help="pace file sources at their sample rate (default: not paced)")
    stream.add_argument("--chunk-size", type=_positive_int,
                        help="samples per chunk read from the source (>= 1)")
    stream.add_argument("--timeout", type=_positive_seconds,
                        help="seconds to find the stream (> 0, default 10)")
    stream.add_argument("--out", help="what to write: separation/enhancement a folder "
                                      "(<input stem>_<label>.wav, e.g. meeting_s1.wav, as "
                                      "`separate` names them; source_<label>.wav from a sound "
                                      "card) or an enhanced .wav; IQ labels a .sigmf-meta; "
                                      "channel estimates an .npz")
    stream.add_argument("--lsl-out", help="publish class probabilities as this LSL stream")
    stream.add_argument("--record", help="record predictions, format by suffix: .sgrec "
                                         "(crash-safe binary), .csv (crash-safe text rows) or "
                                         ".xdf (written when the stream ends)")
    stream.add_argument("--plot", nargs="?", const=True, metavar="PNG",
                        help="live plot of the class probabilities (optionally saved as PNG "
                             "when the stream ends)")
    _add_hop_flags(stream,
                   samples="samples between windows at the model's input rate "
                           "(classification; as classify-iq --hop)",
                   seconds="seconds between windows (classification; for a rate-agnostic "
                           "IQ bundle counted at the source's rate x the --sps resampling, as "
                           "classify-iq counts them)")
    stream.add_argument("--sps", type=_positive_sps,
                        help="IQ family bundles: samples per symbol of the stream (resampled "
                             "to the bundle's training symbol length)")
    stream.add_argument("--decision", choices=("frame", "burst"),
                        help="IQ classification: a label per frame, or the burst's most likely "
                             "label for all its frames, emitted when the burst ends (as "
                             "classify-iq); default: the bundle's own (family bundles: burst)")
    stream.add_argument("--max-burst-frames", type=int,
                        help="--decision burst: decide a longer burst every N frames (bounds "
                             "the latency on a continuous signal; default 64)")
    stream.add_argument("--min-power-db", type=_db_below_loudest,
                        help="--decision burst: frames this many dB below the loudest so far "
                             "are quiet (no prediction; >= 0, default 30); the gate never "
                             "decays, so one spike can silence the stream (a warning says so)")
    stream.add_argument("--all-frames", action="store_true",
                        help="--decision burst: no power gate, every frame is kept")
    stream.add_argument("--channel", type=int, help="input channel to separate")
    stream.add_argument("--mics", type=_microphone_list,
                        help="enhancement: the stream's microphones to use, in the bundle's "
                             "array order (e.g. 0,2,4,6)")
    stream.add_argument("--threads", type=_at_least_one("threads"),
                        help="model threads (>= 1, default 1)")
    stream.add_argument("--nan-policy", choices=("raise", "skip", "interpolate"),
                        help="NaN/Inf samples (default: skip their windows: a live stream "
                             "cannot stop and wait for clean samples, so a dropout costs "
                             "only the windows it reaches; classify-iq refuses by default "
                             "instead, as a file can be cleaned and run again)")
    stream.add_argument("--duration", type=float, help="stop after this many seconds")
    stream.add_argument("--max-predictions", type=_at_least_one("predictions"),
                        help="stop after this many outputs (exactly: a chunk or an IQ burst "
                             "that completes more is cut at the limit)")
    stream.set_defaults(func=_cmd_stream)

    rep = sub.add_parser("replay", help="publish a recording as an LSL stream (mne-lsl)")
    rep.add_argument("file", help="EDF/BDF/GDF/FIF recording")
    rep.add_argument("--name", default="sigformer-replay", help="LSL stream name and source id")
    rep.add_argument("--chunk-size", type=_positive_int, default=16,
                     help="samples per LSL chunk (>= 1, default 16)")
    rep.add_argument("--repeat", type=int, default=1, help="times to play (0: forever)")
    rep.add_argument("--duration", type=float, help="stop after this many seconds")
    rep.set_defaults(func=_cmd_replay)

    iq = sub.add_parser("classify-iq", help="classify the modulation of a SigMF recording: "
                                          "print the label runs, or write them as SigMF "
                                          "annotations (--out / --in-place)")
    iq.add_argument("file", help="recording (.sigmf-meta)")
    iq.add_argument("--model", required=True, help="modulation bundle or pretrained name")
    written = iq.add_mutually_exclusive_group()  # a new file or the recording's own
    written.add_argument("--out", help="write the annotated metadata to this new .sigmf-meta")
    written.add_argument("--in-place", action="store_true",
                         help="add the annotations to the recording's own metadata file")
    _add_hop_flags(iq,
                   samples="frame hop in samples of the framed capture (after any "
                           "resampling; default: frame length)",
                   seconds="frame hop in seconds at the capture's core:sample_rate "
                           "x the resampling factor (requires core:sample_rate)")
    iq.add_argument("--min-power-db", type=_db_below_loudest, default=30.0,
                    help="skip frames this many dB below the loudest (gaps between bursts; "
                         ">= 0, default 30)")
    iq.add_argument("--all-frames", action="store_true", help="classify quiet frames too")
    iq.add_argument("--copy-data", action="store_true", default=None,
                    help="with --out in the recording's own folder: copy the data beside the "
                         "new metadata instead of naming the original with core:dataset "
                         "(--out in another folder: the data is always copied)")
    iq.add_argument("--nan-policy", default="raise", choices=("raise", "skip", "interpolate"),
                    help="NaN/Inf samples: refuse (default: a file can be cleaned and run "
                         "again, so no frame is dropped or invented unasked; stream skips "
                         "by default instead, as a live stream cannot stop), skip their "
                         "frames (with resampling: the frames the NaN samples reach through "
                         "the resampler), interpolate")
    iq.add_argument("--no-verify-checksum", dest="verify_checksum", action="store_false",
                    help="read a capture whose data no longer matches its core:sha512")
    iq.add_argument("--target-sps", type=_positive_sps,
                    help="resample to this many samples per symbol before framing (the "
                         "capture's estimated blindly unless --sps); family bundles record "
                         "their own")
    iq.add_argument("--sps", type=_positive_sps,
                    help="the capture's known samples per symbol: resampled to --target-sps "
                         "(or the bundle's) without the blind estimate (as stream --sps)")
    iq.add_argument("--decision", choices=("frame", "burst"),
                    help="label each frame on its own, or give all frames of a burst "
                         "(consecutive loud frames) the burst's most likely label; default: "
                         "the bundle's own (family bundles: burst), else frame")
    iq.set_defaults(func=_cmd_classify_iq)

    sep = sub.add_parser("separate", help="separate the speakers of a recording (any length, "
                                           "output at the input's rate)")
    sep.add_argument("input", nargs=1, help="audio file (WAV/FLAC/...)")
    sep.add_argument("--model", required=True, help="separation bundle or pretrained name")
    sep.add_argument("--out", required=True,
                     help="output folder: one <input stem>_<label>.wav per speaker (e.g. "
                          "meeting_s1.wav, meeting_s2.wav for meeting.wav)")
    sep.add_argument("--chunk-s", type=_positive_seconds,
                     help="chunk length in seconds (default: the bundle's)")
    sep.add_argument("--overlap-s", type=_non_negative_seconds,
                     help="overlap between chunks in seconds, at most half a chunk "
                          "(default: the bundle's)")
    sep.add_argument("--channel", type=int, help="channel to separate in multichannel files")
    sep.add_argument("--resample", action="store_true", help=argparse.SUPPRESS)  # now default
    sep.set_defaults(func=_cmd_separate)

    enh = sub.add_parser("enhance", help="enhance a microphone-array recording into one "
                                         "channel (any length)")
    enh.add_argument("input", nargs="+", help="one multichannel file, one mono file per "
                                              "microphone, or a glob ('mic*.wav')")
    enh.add_argument("--model", required=True, help="enhancement bundle or pretrained name")
    enh.add_argument("--out", required=True, help="output .wav file")
    enh.add_argument("--chunk-s", type=_positive_seconds,
                     help="chunk length in seconds (default: the bundle's)")
    enh.add_argument("--overlap-s", type=_non_negative_seconds,
                     help="overlap between chunks in seconds, at most half a chunk "
                          "(default: the bundle's)")
    enh.add_argument("--mics", type=_microphone_list,
                     help="the input's microphones to use, in the bundle's array order (e.g. "
                          "0,2,4,6: a 4-mic circular bundle on every second microphone of an "
                          "8-mic circular array)")
    enh.add_argument("--resample", action="store_true", help=argparse.SUPPRESS)  # now default
    enh.set_defaults(func=_cmd_enhance)

    models = sub.add_parser("models", help="list registered models or pretrained bundles")
    models.add_argument("--pretrained", action="store_true", help="list the shipped bundles")
    models.add_argument("--braindecode", action="store_true", help="include braindecode models")
    models.add_argument("--domain", help="only this domain (eeg, seeg, speech, rf)")
    models.set_defaults(func=_cmd_models)

    export = sub.add_parser("export", help="export a bundle for deployment (ONNX, TorchScript, "
                                           "torch.export)")
    export.add_argument("bundle", nargs="?",
                        help="bundle folder or pretrained name (or give it with --model)")
    export.add_argument("--model", help="the bundle, as classify-iq, separate and enhance "
                                        "name it (instead of BUNDLE)")
    export.add_argument("--out", required=True, help="output folder")
    export.add_argument("--format", default="onnx", choices=("onnx", "torchscript",
                                                             "torch.export"),
                        help="onnx (model.onnx, for onnxruntime; default), torchscript "
                             "(model.pt, torch.jit.load) or torch.export (model.pt2, "
                             "torch.export.load); the report's 'exporter' names the tool "
                             "that wrote the file")
    export.add_argument("--opset", type=int, default=17,
                        help="ONNX opset (default 17; a model only the dynamo exporter "
                             "converts gets 18, and the notes say so)")
    export.set_defaults(func=_cmd_export)
    for command in sub.choices.values():  # cross-flag problems print the command's own usage
        command.set_defaults(command_parser=command)
    return parser


def _db_below_loudest(text: str) -> float:
    """``--min-power-db`` (classify-iq and stream alike): a level in dB *below* the loudest
    frame, so >= 0; argparse names the option in the error."""
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected how many dB below the loudest frame a "
                                         f"frame counts as quiet, a number >= 0 (e.g. 30; "
                                         f"--all-frames keeps every frame), got {text!r}")
    return value


def _add_hop_flags(parser: argparse.ArgumentParser, *, samples: str, seconds: str) -> None:
    """``--hop N`` (samples) or ``--hop-s S`` (seconds), never both: the same two spellings
    in ``stream`` and ``classify-iq``; what they count in is the command's ``samples`` /
    ``seconds`` help."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--hop", type=_positive_int, help=samples)
    group.add_argument("--hop-s", type=_positive_seconds, help=seconds)


def _at_least_one(what: str):
    """An argparse type: a whole number of ``what`` >= 1 (argparse names the flag in the
    error; 0 or a negative count used to hang, crash or silently become the default)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"expected a whole number of {what} >= 1, got "
                                             f"{text!r}")
        return value

    return parse


def _positive_int(text: str) -> int:
    return _at_least_one("samples")(text)


def _positive_sps(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected samples per symbol, a number > 0, got "
                                         f"{text!r}")
    return value


def _seconds(text: str, *, allow_zero: bool) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and (value >= 0 if allow_zero else value > 0)):
        bound = ">= 0" if allow_zero else "> 0"
        raise argparse.ArgumentTypeError(f"expected seconds, a number {bound}, got {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    return _seconds(text, allow_zero=False)


def _non_negative_seconds(text: str) -> float:
    return _seconds(text, allow_zero=True)


def _microphone_list(text: str) -> tuple[int, ...]:
    """``--mics 0,2,4,6``: distinct, non-negative microphone indices, in the order to use."""
    try:
        mics = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated microphone indices such as 0,2,4,6, got {text!r}"
        ) from None
    if any(m < 0 for m in mics) or len(set(mics)) != len(mics):
        raise argparse.ArgumentTypeError(
            f"microphone indices must be distinct and >= 0, got {text!r}")
    return mics


def _argument_problem(args) -> str | None:
    """What argparse cannot check one flag at a time (both given: the bundle's defaults are
    checked when it is loaded)."""
    chunk, overlap = getattr(args, "chunk_s", None), getattr(args, "overlap_s", None)
    if chunk is not None and overlap is not None and overlap > chunk / 2:
        return (f"argument --overlap-s: {overlap:g} s is more than half of --chunk-s {chunk:g} "
                f"s (each sample is shared by at most two chunks)")
    if args.command == "export":
        return _export_bundle_problem(args.bundle, args.model)
    return None


def _export_bundle_problem(bundle: str | None, model: str | None) -> str | None:
    """``export`` takes the bundle as BUNDLE or ``--model``: exactly one of them."""
    if bundle is None and model is None:
        return ("the bundle to export is missing: give it as BUNDLE (sigformer export BUNDLE "
                "--out DIR) or with --model NAME")
    if bundle is not None and model is not None:
        return (f"give the bundle to export once, as BUNDLE or with --model, not both (got "
                f"{bundle!r} and --model {model!r})")
    return None


def _config_error(message: str) -> Exception:
    from .tasks.config import PipelineConfigError

    return PipelineConfigError(message)


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Errors that mean bad input (exit 2 with one line), imported only when one occurs."""
    from .atomic import OutputFolderError, OutputLockedError
    from .channels import ChannelError
    from .checkpoint import CheckpointError
    from .data.io import DataError
    from .models.registry import UnknownModelError
    from .streaming.runtime import StreamError
    from .streaming.sinks import OutputNotWritableError
    from .tasks.config import PipelineConfigError
    from .validation import SignalError

    types: list[type[BaseException]] = [PipelineConfigError, DataError, SignalError,
                                        ChannelError, CheckpointError, UnknownModelError,
                                        StreamError, OutputLockedError, OutputFolderError,
                                        NotADirectoryError, OutputNotWritableError]
    from .export import ExportError
    from .models.convert import ConversionError

    types += [ConversionError, ExportError]
    return tuple(types)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    problem = _argument_problem(args)
    if problem:  # exit 2 with the command's usage, as argparse's own checks
        getattr(args, "command_parser", parser).error(problem)
    _quiet()
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("sigformer: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - user errors become one line, the rest re-raise
        if isinstance(err, _user_error_types()):
            print(f"sigformer: error: {err}", file=sys.stderr)
            return EXIT_BAD_INPUT
        raise


if __name__ == "__main__":
    sys.exit(main())
