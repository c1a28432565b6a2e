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
    report = run_pipeline(cfg, args.out)
    print(json.dumps(report.get("summary", {}), indent=2))
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
    from .validation import SignalError

    _quiet()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (PipelineConfigError, DataError, SignalError, ChannelError, CheckpointError,
            UnknownModelError) as err:
        print(f"sigformer: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
