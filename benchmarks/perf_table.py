"""The per-model performance table of the README, from the two throughput benchmarks' JSON.

    python benchmarks/perf_table.py [--training benchmarks/results/training.json]
                                    [--inference benchmarks/results/inference.json]

One row per model: parameters, training samples/s (reference and the best variant that
computes the same function, and with attention dropout off), inference items/s at each batch
size, and the fast/reference ratios; a markdown table to paste into the README (and printed).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SAME_FUNCTION = ("fast",)  # variants equal to the reference (bitwise / float rounding)


def _rate(row: dict, variant: str, key: str) -> float | None:
    value = row.get(key, {}).get(variant)
    return float(value) if value is not None else None


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}x"


def rows(training: dict, inference: dict) -> list[dict]:
    """Join training and inference results by model name (inference keys end in ``bN``)."""
    by_model: dict[str, dict] = {}
    for name, row in training.get("models", {}).items():
        entry = by_model.setdefault(name, {"model": name, "inference": {}})
        entry.update(unit=row["unit"], parameters=row.get("parameters"),
                     train_ref=_rate(row, "reference", "samples_per_s"),
                     train_fast=_rate(row, "fast", "samples_per_s"),
                     train_noattn=_rate(row, "fast-noattn", "samples_per_s"),
                     train_batch=row.get("batch_size"))
    for key, row in inference.get("models", {}).items():
        match = re.fullmatch(r"(.+) b(\d+)", key)
        name, batch = (match.group(1), int(match.group(2))) if match else (key, 0)
        entry = by_model.setdefault(name, {"model": name, "inference": {}})
        entry.setdefault("unit", row["unit"])
        entry["inference"][batch] = (_rate(row, "reference", "items_per_s"),
                                     _rate(row, "fast", "items_per_s"),
                                     _rate(row, "fast-bf16", "items_per_s"))
    return list(by_model.values())


def markdown(table: list[dict]) -> str:
    batches = sorted({b for r in table for b in r["inference"]})
    head = ["model", "unit", "params", "train ref/s", "train fast/s", "fast/ref",
            "no-attn-dropout/ref"]
    for b in batches:
        head += [f"infer b{b} ref/s", f"b{b} fast/ref", f"b{b} bf16/ref"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table:
        cells = [r["model"], r.get("unit", ""),
                 f"{r['parameters']:,}" if r.get("parameters") else "-",
                 _fmt(r.get("train_ref")), _fmt(r.get("train_fast")),
                 _ratio(r.get("train_fast"), r.get("train_ref")),
                 _ratio(r.get("train_noattn"), r.get("train_ref"))]
        for b in batches:
            ref, fast, bf16 = r["inference"].get(b, (None, None, None))
            cells += [_fmt(ref), _ratio(fast, ref), _ratio(bf16, ref)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--training", type=Path, default=RESULTS / "training.json")
    ap.add_argument("--inference", type=Path, default=RESULTS / "inference.json")
    args = ap.parse_args(argv)
    training = json.loads(args.training.read_text()) if args.training.is_file() else {}
    inference = json.loads(args.inference.read_text()) if args.inference.is_file() else {}
    if not training and not inference:
        raise SystemExit(f"neither {args.training} nor {args.inference} exists: run "
                         f"benchmarks/training.py and benchmarks/inference.py first")
    text = markdown(rows(training, inference))
    quick = training.get("quick") or inference.get("quick")
    if quick:
        text += "\n\n(quick runs: a smoke test, not a measurement)"
    print(text)
    return text


if __name__ == "__main__":
    main()
