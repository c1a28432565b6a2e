"""Command line: ``sigformer run PIPELINE.yaml [--data PATH]``, ``sigformer models``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings

EXIT_BAD_INPUT = 2


def _quiet() -> None:
    # Library chatter that says nothing to a CLI user.
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("LITLOGGER_DISABLE_TIP", "1")


def _cmd_run(args) -> int:
    from .pipeline import data_override, load_config, run_pipeline, run_tokenize_pipeline

    overrides = {}
    if args.data:
        overrides["data"] = data_override(args.data)
    train = {}
    if args.max_epochs is not None:
        train["max_epochs"] = args.max_epochs
    if args.devices is not None:
        train["devices"] = args.devices
    if args.strategy is not None:
        train["strategy"] = args.strategy
    if args.accelerator is not None:
        train["accelerator"] = args.accelerator
    if args.num_nodes is not None:
        train["num_nodes"] = args.num_nodes
    if train:
        overrides["train"] = train
    cfg = load_config(args.pipeline, overrides)
    if cfg.task == "tokenize":
        report = run_tokenize_pipeline(cfg, args.out)
        print(json.dumps({k: report[k] for k in ("codebook_usage", "codebook_perplexity",
                                                 "tokens_per_window")}, indent=2))
        return 0
    if cfg.task == "enhance":
        from .speech.pipeline import run_enhancement_pipeline

        report = run_enhancement_pipeline(cfg, args.out)
        print(json.dumps(report["results"], indent=2))
        return 0
    if cfg.task == "separate":
        from .speech.pipeline import run_separation_pipeline

        report = run_separation_pipeline(cfg, args.out)
        print(json.dumps(report["summary"], indent=2))
        return 0
    if cfg.task == "amr":
        from .rf.amr import run_amr_pipeline

        report = run_amr_pipeline(cfg, args.out)
        print(json.dumps({k: {"accuracy": v["accuracy"], "high_snr_accuracy":
                              v["high_snr_accuracy"]} for k, v in report["models"].items()},
                         indent=2))
        return 0
    if cfg.task == "ofdm":
        from .rf.ofdm import run_ofdm_pipeline

        report = run_ofdm_pipeline(cfg, args.out)
        print(json.dumps(report["worst_gap_to_bound_db"], indent=2))
        return 0
    report = run_pipeline(cfg, args.out)
    print(json.dumps(report.get("summary", {}), indent=2))
    return 0


def _cmd_stream(args) -> int:
    from .pipeline import load_config
    from .streaming.app import run_stream

    cfg = load_config(args.pipeline)
    report = run_stream(cfg, args.model, duration=args.duration,
                        max_predictions=args.max_predictions)
    print(json.dumps({k: v for k, v in report.items() if not isinstance(v, list)}, indent=2))
    return 0


def _cmd_replay(args) -> int:
    import time

    from .streaming.app import replay

    player = replay(args.file, name=args.name, chunk_size=args.chunk_size,
                    n_repeat=args.repeat if args.repeat > 0 else float("inf"))
    try:
        deadline = None if args.duration is None else time.monotonic() + args.duration
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        player.stop()
    return 0


def _cmd_classify_iq(args) -> int:
    from .checkpoint import CheckpointError, load_checkpoint
    from .rf.amr import classify_sigmf

    model, config = load_checkpoint(args.model)
    extra = config.get("extra", {})
    if "classes" not in extra:
        raise CheckpointError(f"{args.model} is not a modulation-recognition checkpoint (its "
                              f"config has no class list); train one with a task: amr pipeline")
    result = classify_sigmf(args.file, model, extra["classes"],
                            normalization=extra.get("normalization", "l1"), hop=args.hop,
                            min_power_db=None if args.all_frames else args.min_power_db,
                            out_meta=args.out)
    print(json.dumps({"meta": result["meta"], "n_frames": result["n_frames"],
                      "annotations": len(result["annotations"]),
                      "frame_labels": result["frame_labels"]}, indent=2))
    return 0


def _speech_input(args, attribute: str, kind: str):
    """Load a speech checkpoint and the input audio at its rate; returns
    ``(model, audio, file_rate, run)``; ``run(fn, audio, align)`` is the chunked inference."""
    from .checkpoint import load_checkpoint
    from .data.io import DataError
    from .speech.audio import read_audio
    from .speech.chunked import process_array

    model, _ = load_checkpoint(args.model)
    if not hasattr(model, attribute):
        raise DataError(f"{args.model} is not a {kind} checkpoint (no {attribute})")
    rate = model.sample_rate
    audio, file_rate = read_audio(args.input, rate if args.resample else None)
    chunk, overlap = int(args.chunk_s * rate), int(args.overlap_s * rate)

    def run(fn, checked, align: bool):
        return process_array(fn, checked, chunk, overlap, align=align)

    return model, audio, file_rate, run


def _cmd_separate(args) -> int:
    from pathlib import Path

    from .data.io import DataError
    from .speech.audio import check_audio, write_audio
    from .speech.chunked import model_function

    model, audio, file_rate, run = _speech_input(args, "n_src", "separation")
    if audio.shape[0] > 1:
        if args.channel is None:
            raise DataError(f"{args.input} has {audio.shape[0]} channels; separation takes mono "
                            f"audio: choose one with --channel N (0-based)")
        if not 0 <= args.channel < audio.shape[0]:
            raise DataError(f"--channel {args.channel}: {args.input} has channels "
                            f"0..{audio.shape[0] - 1}")
        audio = audio[args.channel:args.channel + 1]
    rate = model.sample_rate
    audio = check_audio(audio, file_rate, expected_rate=rate, name=str(args.input))
    sources = run(model_function(model), audio, align=True)
    stem = Path(args.input).stem
    paths = [str(write_audio(Path(args.out) / f"{stem}_s{i + 1}.wav", src, rate))
             for i, src in enumerate(sources)]
    print(json.dumps({"sources": paths, "sample_rate": rate,
                      "seconds": round(audio.shape[1] / rate, 3)}, indent=2))
    return 0


def _cmd_enhance(args) -> int:
    from .speech.audio import check_audio, write_audio
    from .speech.chunked import model_function

    model, audio, file_rate, run = _speech_input(args, "n_mics",
                                                 "multichannel enhancement")
    rate = model.sample_rate
    audio = check_audio(audio, file_rate, expected_rate=rate, n_channels=model.n_mics,
                        name=str(args.input))
    enhanced = run(model_function(model, multichannel=True), audio, align=False)
    path = write_audio(args.out, enhanced[:1], rate)
    print(json.dumps({"output": str(path), "sample_rate": rate, "microphones": model.n_mics,
                      "seconds": round(audio.shape[1] / rate, 3)}, indent=2))
    return 0


def _cmd_models(args) -> int:
    from .models import list_models

    for name in list_models(include_braindecode=args.braindecode):
        print(name)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sigformer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a YAML pipeline (load, preprocess, train, evaluate)")
    run.add_argument("pipeline", help="pipeline YAML file, e.g. pipelines/eeg_mi_dbconformer.yaml")
    run.add_argument("--data", help="recordings to use instead of the pipeline's data section "
                                    "(an eegmmidb folder, a folder of EEG files or one file)")
    run.add_argument("--out", help="output folder (default: the pipeline's output.dir)")
    run.add_argument("--max-epochs", type=int, help="override train.max_epochs")
    run.add_argument("--devices", type=int, help="override train.devices (e.g. 2 with ddp)")
    run.add_argument("--strategy", help="override train.strategy (e.g. ddp)")
    run.add_argument("--accelerator", help="override train.accelerator (cpu, gpu, auto)")
    run.add_argument("--num-nodes", type=int, help="override train.num_nodes (multi-node DDP)")
    run.set_defaults(func=_cmd_run)
    stream = sub.add_parser("stream", help="run a pipeline online on a live stream (LSL)")
    stream.add_argument("pipeline", help="pipeline YAML with a stream section")
    stream.add_argument("--model", required=True, help="checkpoint folder from `sigformer run`")
    stream.add_argument("--duration", type=float, help="stop after this many seconds")
    stream.add_argument("--max-predictions", type=int, help="stop after this many predictions")
    stream.set_defaults(func=_cmd_stream)
    rep = sub.add_parser("replay", help="publish a recording as an LSL stream (mne-lsl)")
    rep.add_argument("file", help="EDF/BDF/GDF/FIF recording")
    rep.add_argument("--name", default="sigformer-replay", help="LSL stream name and source id")
    rep.add_argument("--chunk-size", type=int, default=16)
    rep.add_argument("--repeat", type=int, default=1, help="times to play (0: forever)")
    rep.add_argument("--duration", type=float, help="stop after this many seconds")
    rep.set_defaults(func=_cmd_replay)
    iq = sub.add_parser("classify-iq", help="classify the modulation of a SigMF recording and "
                                          "write the predictions as SigMF annotations")
    iq.add_argument("file", help="recording (.sigmf-meta)")
    iq.add_argument("--model", required=True, help="checkpoint folder from a task: amr pipeline")
    iq.add_argument("--out", help="write the annotated metadata here instead of in place")
    iq.add_argument("--hop", type=int, help="frame hop in samples (default: frame length)")
    iq.add_argument("--min-power-db", type=float, default=30.0,
                    help="skip frames this many dB below the loudest (gaps between bursts)")
    iq.add_argument("--all-frames", action="store_true", help="classify quiet frames too")
    iq.set_defaults(func=_cmd_classify_iq)
    sep = sub.add_parser("separate", help="separate the speakers of a mono recording "
                                           "(chunked, any length)")
    sep.add_argument("input", help="audio file (WAV/FLAC/...)")
    sep.add_argument("--model", required=True, help="separation checkpoint (e.g. MossFormer)")
    sep.add_argument("--out", required=True, help="output folder for <name>_s1.wav, ...")
    sep.add_argument("--chunk-s", type=float, default=4.0, help="chunk length in seconds")
    sep.add_argument("--overlap-s", type=float, default=1.0, help="overlap between chunks")
    sep.add_argument("--channel", type=int, help="channel to separate in multichannel files")
    sep.add_argument("--resample", action="store_true",
                     help="resample to the model's rate instead of refusing other rates")
    sep.set_defaults(func=_cmd_separate)
    enh = sub.add_parser("enhance", help="enhance a multichannel recording (chunked, any "
                                         "length) into one channel")
    enh.add_argument("input", help="multichannel audio file, one channel per microphone")
    enh.add_argument("--model", required=True, help="enhancement checkpoint (e.g. DeFTAN-II)")
    enh.add_argument("--out", required=True, help="output audio file")
    enh.add_argument("--chunk-s", type=float, default=4.0, help="chunk length in seconds")
    enh.add_argument("--overlap-s", type=float, default=0.5, help="overlap between chunks")
    enh.add_argument("--resample", action="store_true",
                     help="resample to the model's rate instead of refusing other rates")
    enh.set_defaults(func=_cmd_enhance)
    models = sub.add_parser("models", help="list registered models")
    models.add_argument("--braindecode", action="store_true", help="include braindecode models")
    models.set_defaults(func=_cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .channels import ChannelError
    from .checkpoint import CheckpointError
    from .data.io import DataError
    from .models.registry import UnknownModelError
    from .pipeline import PipelineConfigError
    from .streaming.runtime import StreamError
    from .validation import SignalError

    _quiet()
    from .streaming.lsl import use_loopback_config

    use_loopback_config()  # before any LSL use: discovery stays on this machine
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (PipelineConfigError, DataError, SignalError, ChannelError, CheckpointError,
            UnknownModelError, StreamError) as err:
        print(f"sigformer: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
