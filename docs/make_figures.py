"""Regenerate the README's example figures (run by hand: ``python docs/make_figures.py``).

They are the figures of the README's two commands::

    bptt analyze --T 200 --radius 0.9 --plot grad.png
    bptt sweep --config configs/radius-vs-T.toml --plot phase.png

drawn from the same records at 80 dpi and saved as 256-colour PNGs (Pillow comes with
matplotlib), so that each stays under 100 kB in the repository. ``--plot`` itself writes
150 dpi true-colour images.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from matplotlib.figure import Figure
from PIL import Image

from bptt_cli.report import figures
from bptt_cli.report.plotting import load_results

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def save_small(fig: Figure, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    image = Image.open(buf).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    image.save(path, optimize=True)
    print(f"{path.relative_to(ROOT)}: {path.stat().st_size / 1024:.0f} kB")


def main() -> None:
    bptt = [sys.executable, "-m", "bptt_cli"]
    analyze = subprocess.run(
        [*bptt, "analyze", "--T", "200", "--radius", "0.9", "--format", "json"],
        capture_output=True, text=True, check=True,
    )
    save_small(figures.analysis_figure(json.loads(analyze.stdout)), HERE / "grad.png")
    records = HERE / "radius-vs-T.jsonl"
    try:
        subprocess.run(
            [*bptt, "sweep", "--config", str(ROOT / "configs" / "radius-vs-T.toml"),
             "--output", str(records)],
            capture_output=True, check=True,
        )
        _, data = load_results(records)
        save_small(figures.sweep_figure(data), HERE / "phase.png")
    finally:
        records.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
