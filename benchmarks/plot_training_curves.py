"""Training curves of several runs side by side: the loss (its moving average, as the progress bar shows it) against
the optimizer step, from each run's `history.jsonl` (what `fastmdm.training.run` logs every `log_every` steps).

    python benchmarks/plot_training_curves.py runs/nae-learned=learned runs/nae-clauses=clauses \
        --every 100 --out benchmarks/results/nae_positions_cpu --title "L&O-NAE-SAT (25, 275), preset cpu"

writes OUT.md (a table: the loss of each run at every `--every` steps), OUT.json (every logged point) and OUT.png.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fastmdm.checkpoint import atomic_write_json, atomic_write_text


def read_history(run: Path) -> list[dict]:
    path = run / "history.jsonl"
    if not path.is_file():
        raise SystemExit(f"plot_training_curves: error: {path} is missing (pass a directory `... train --out` wrote)")
    points = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            if "loss_ema" in row:   # evaluations are logged on lines of their own
                points[int(row["step"])] = row    # a resumed run logs again from its checkpoint: keep the latest
    return [points[s] for s in sorted(points)]


def loss_at(history: list[dict], step: int) -> float | None:
    """The moving-average loss logged at the last point at or before `step` (None past the run's end)."""
    if not history or step > history[-1]["step"]:
        return None
    before = [h for h in history if h["step"] <= step]
    return before[-1]["loss_ema"] if before else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", metavar="DIR=LABEL", help="a run directory and its label")
    ap.add_argument("--every", type=int, default=100, help="table rows every this many steps")
    ap.add_argument("--out", required=True, help="path without extension for .md, .json and .png")
    ap.add_argument("--title", default="training loss")
    args = ap.parse_args(argv)
    runs = []
    for item in args.runs:
        d, _, label = item.partition("=")
        runs.append((label or Path(d).name, d, read_history(Path(d))))
    last = max(h[-1]["step"] for _, _, h in runs)
    steps = list(range(args.every, last + 1, args.every))
    lines = [f"# {args.title}: loss by step", "",
             "The moving average of the training loss (the progress bar's), from each run's `history.jsonl`.",
             f"Command: `python benchmarks/plot_training_curves.py {' '.join(args.runs)} --every {args.every} "
             f"--out {args.out}`.", "",
             "| step | " + " | ".join(label for label, _, _ in runs) + " |",
             "|---|" + "---|" * len(runs)]
    for s in steps:
        cells = [loss_at(h, s) for _, _, h in runs]
        lines.append(f"| {s:,} | " + " | ".join("-" if c is None else f"{c:.4f}" for c in cells) + " |")
    out = Path(args.out)
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    atomic_write_json(out.with_suffix(".json"), {"title": args.title, "runs": [
        {"label": label, "dir": d, "points": [{k: h[k] for k in ("step", "loss", "loss_ema", "lr")} for h in hist]}
        for label, d, hist in runs]})
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, _, hist in runs:
        ax.plot([h["step"] for h in hist], [h["loss_ema"] for h in hist], label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (moving average)")
    ax.set_title(args.title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
