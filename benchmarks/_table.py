"""Results-table printing shared by the benchmarks (mean ± std metrics plus extra columns)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

METRIC_COLUMNS = (("accuracy", "accuracy"), ("bal. acc.", "balanced_accuracy"),
                  ("kappa", "kappa"))


def mean_std(row: dict, key: str) -> str:
    return f"{row[key]['mean']:.3f} ± {row[key]['std']:.3f}"


def print_metric_table(rows: dict[str, dict], name_width: int,
                       extra: Sequence[tuple[str, int, Callable[[dict], str]]] = (),
                       after_row: Callable[[str, dict], None] | None = None) -> None:
    """One line per model: the metric columns (mean ± std) then ``extra`` columns given as
    ``(title, width, format_row)``; ``after_row`` may print a detail line under a model."""
    header = f"{'model':{name_width}s}" + "".join(f" {t:>15s}" for t, _ in METRIC_COLUMNS)
    header += "".join(f" {title:>{width}s}" for title, width, _ in extra)
    print("\n" + header + "\n" + "-" * len(header))
    for name, row in rows.items():
        line = f"{name:{name_width}s}" + "".join(f" {mean_std(row, k):>15s}"
                                                  for _, k in METRIC_COLUMNS)
        line += "".join(f" {fn(row):>{width}s}" for _, width, fn in extra)
        print(line)
        if after_row is not None:
            after_row(name, row)


def print_table(header: Sequence[str], rows: Sequence[Sequence]) -> None:
    """A plain aligned table: first column left-aligned, the rest right-aligned."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def save_results(path, results: dict, **meta) -> None:
    """Write a benchmark's results JSON with the machine, torch version and settings."""
    import json
    import platform
    from pathlib import Path

    import torch

    payload = {**meta, "torch": torch.__version__,
               "machine": platform.processor() or platform.machine(), "models": results}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1))
    print(f"wrote {path}")
