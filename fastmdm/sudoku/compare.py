"""Compare Sudoku models on the same test puzzles: MDMs under each decoding order against autoregressive
baselines (`fastmdm.sudoku.arm`), with 95% confidence intervals and what each model cost to train.

`fastmdm sudoku compare --checkpoints shipped,runs/arm-solver,...` runs it; `compare` is the library call.
"""
from __future__ import annotations

from pathlib import Path

from fastmdm.sudoku.evaluate import DEFAULT_STRATEGIES, evaluate

SHIPPED = "shipped"


def training_record(config: dict) -> dict:
    """Parameters, optimizer steps, samples and recorded wall minutes behind a checkpoint (its own run plus
    the runs it was warm-started from)."""
    trained = config.get("trained") or {}
    runs = [*(trained.get("init_from") or []), trained]
    walls = [r.get("wall_s_this_run", r.get("wall_s")) for r in runs]
    return {"parameters": trained.get("parameters"),
            "steps": sum(int(r.get("steps") or 0) for r in runs),
            "samples": sum(int(r.get("samples") or 0) for r in runs),
            "wall_minutes": sum(walls) / 60 if walls and all(w is not None for w in walls) else None}


def compare(checkpoints, sets: dict, *, strategies=DEFAULT_STRATEGIES, batch_size: int = 256, device="cpu",
            progress: bool = False, log=None, arm_cells_given: bool = False) -> list[dict]:
    """One row per (checkpoint, decoding): {"checkpoint", "arch", "decoding", training record..., "splits":
    {split: evaluate's row + "ci95"}}. `checkpoints`: directories, or "shipped" for the shipped MDM; `sets`:
    {split name: {"puzzles", "solutions"}}. `arm_cells_given`: each ARM also gets a row decoded with the blanks
    written in its training order, the model giving only the digits (`evaluate(arm_cells_given=True)`)."""
    from fastmdm.sudoku import model as smodel  # noqa: PLC0415  (torch models load on use)
    from fastmdm.sudoku.arm import is_arm  # noqa: PLC0415
    rows = []
    for ck in checkpoints:
        model, config = smodel.load(None if ck == SHIPPED else ck, device=device)
        arch = f"arm-{model.arm_order}" if is_arm(model) else "mdm"
        record = training_record(config)
        if log:
            log(f"compare: {ck} ({arch}, {record['parameters'] or '?'} parameters)")
        per_split = {name: evaluate(model, d["puzzles"], d["solutions"], strategies=strategies,
                                    batch_size=batch_size, progress=progress, arm_cells_given=arm_cells_given)
                     for name, d in sets.items()}
        decodings = [r["strategy"] for r in next(iter(per_split.values()))]
        for dec in decodings:
            splits = {}
            for name, res in per_split.items():
                r = dict(next(r for r in res if r["strategy"] == dec))
                r["ci95"] = r["puzzle_acc_ci95"]
                splits[name] = r
            rows.append({"checkpoint": str(ck), "arch": arch, "decoding": dec, **record, "splits": splits})
    return rows


def format_markdown(rows: list[dict]) -> str:
    """The comparison table: one row per model and decoding, solved puzzles with 95% CIs per split."""
    splits = list(rows[0]["splits"]) if rows else []
    head = ("| model | decoding | parameters | training samples | training wall minutes | "
            + " | ".join(f"{s}: solved (95% CI) | {s}: cells right" for s in splits) + " |")
    lines = [head, "|---|---|---|---|---|" + "---|---|" * len(splits)]
    for r in rows:
        cols = []
        for s in splits:
            x = r["splits"][s]
            lo, hi = x["ci95"]
            cols += [f"{100 * x['puzzle_acc']:.1f}% ({100 * lo:.1f}-{100 * hi:.1f})", f"{100 * x['cell_acc']:.1f}%"]
        name = "MDM" if r["arch"] == "mdm" else f"ARM, {r['arch'].removeprefix('arm-')} order"
        params = f"{r['parameters'] / 1e6:.2f}M" if r["parameters"] else "?"
        wall = "?" if r.get("wall_minutes") is None else f"{r['wall_minutes']:.0f}"
        lines.append(f"| {name} (`{Path(r['checkpoint']).name}`) | {r['decoding']} | {params} | "
                     f"{r['samples']:,} | {wall} | " + " | ".join(cols) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path) -> None:
    """Bars of puzzles solved per model and decoding, one group per split, with the 95% intervals."""
    try:
        import matplotlib  # noqa: PLC0415
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as e:
        raise RuntimeError("--plot needs matplotlib: pip install 'fastmdm[plot]'") from e
    splits = list(rows[0]["splits"])
    labels = []
    for r in rows:  # "arm-solver, cells given" -> "ARM solver order, cells given"
        name, comma, rest = r["decoding"].removeprefix("arm-").partition(",")
        labels.append(f"MDM {r['decoding']}" if r["arch"] == "mdm" else f"ARM {name} order{comma}{rest}")
    fig, ax = plt.subplots(figsize=(1.8 + 1.2 * len(rows), 3.8))
    w = 0.8 / len(splits)
    for j, s in enumerate(splits):
        acc = [100 * r["splits"][s]["puzzle_acc"] for r in rows]
        err = [[100 * (r["splits"][s]["puzzle_acc"] - r["splits"][s]["ci95"][0]) for r in rows],
               [100 * (r["splits"][s]["ci95"][1] - r["splits"][s]["puzzle_acc"]) for r in rows]]
        bars = ax.bar([i + j * w for i in range(len(rows))], acc, w, yerr=err, capsize=3, label=s)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    ax.set_xticks([i + w * (len(splits) - 1) / 2 for i in range(len(rows))], labels, rotation=20, ha="right",
                  fontsize=8)
    ax.set_ylabel("puzzles solved (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8)
    ax.set_title("Sudoku: masked diffusion (by decoding order) vs autoregressive baselines", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
