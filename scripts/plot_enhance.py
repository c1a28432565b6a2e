"""Figure of an enhancement benchmark report (``benchmarks/speech_enhance_pretrained.py``):
SI-SDR gain over microphone 0 per system, overall and by RT60 bin, with the issue-16 target
line (+5 dB) and the oracle MVDR ceiling.

    python scripts/plot_enhance.py benchmarks/results/speech_enhance_pretrained.json \\
        --out docs/figures/speech_enhance_pretrained.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

TARGET_DB = 5.0  # issue 16: >= +5 dB SI-SDR over the reference microphone


def bars(report: dict) -> tuple[list[str], list[str], np.ndarray]:
    """Systems, groups ("all", then each RT60 bin) and the SI-SDRi matrix (NaN where a bin
    has no scene)."""
    systems = list(report["results"])
    groups = ["all", *report["rt60_bins"]]
    values = np.full((len(systems), len(groups)), np.nan)
    for i, name in enumerate(systems):
        row = report["results"][name]
        values[i, 0] = row["mean"]["si_sdri"]
        for j, rt60 in enumerate(report["rt60_bins"], start=1):
            cell = row["by_rt60"].get(rt60, {})
            if cell.get("si_sdri") is not None:
                values[i, j] = cell["si_sdri"]
    return systems, groups, values


def plot(report: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems, groups, values = bars(report)
    fig, ax = plt.subplots(figsize=(10, 4.8))
    width = 0.8 / len(groups)
    x = np.arange(len(systems))
    for j, group in enumerate(groups):
        n = "" if j == 0 else f" ({report['results'][systems[0]]['by_rt60'][group]['n']} scenes)"
        ax.bar(x + (j - (len(groups) - 1) / 2) * width, values[:, j], width,
               label=("all scenes" if j == 0 else f"RT60 {group}") + n)
    ax.axhline(TARGET_DB, color="k", linestyle="--", linewidth=1, label="issue-16 target +5 dB")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xticks(x, systems, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("SI-SDR gain over mic 0 (dB)")
    conditions = report.get("conditions", {})
    ax.set_title(f"{report.get('model', 'model')}: {conditions.get('n_scenes', '?')} scenes, "
                 f"unheard speakers, held-out noises")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    report = json.loads(args.report.read_text())
    if "results" not in report or "rt60_bins" not in report:
        raise SystemExit(f"{args.report} is not an enhancement benchmark report (no results / "
                         f"rt60_bins); make one with benchmarks/speech_enhance_pretrained.py")
    print(f"wrote {plot(report, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
