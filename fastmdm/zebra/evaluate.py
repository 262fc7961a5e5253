"""Evaluate a Zebra MDM: every cell of test puzzles masked, the clues given, decoded in each order and
checked exactly (`fastmdm.zebra.engine.check`: every cell equal to the puzzle's unique solution).

The paper's metric is the share of puzzles solved completely; the rows also give the cell accuracy, 95%
Wilson intervals and model calls per puzzle. Tokens are the model's most likely ones by default (temperature
0); the strategy only decides the order in which cells are written ("random" is the vanilla MDM).
"""
from __future__ import annotations

import numpy as np
import torch

from fastmdm.evaluation import plot_orders, sample_batches
from fastmdm.stats import wilson_interval
from fastmdm.zebra import engine

DEFAULT_STRATEGIES = ("random", "confidence", "margin", "entropy")


def mask_cells(tokens, task: engine.Task) -> torch.Tensor:
    """Puzzles as model inputs: the clue section kept, every cell masked; LongTensor [n, L]."""
    x = torch.as_tensor(np.asarray(tokens)).long().clone()
    x[:, task.cell_positions] = engine.MASK_ID
    return x


def evaluate(model, task: engine.Task, puzzles, *, strategies=DEFAULT_STRATEGIES, k=None, threshold=None,
             temperature=0.0, seed=0, batch_size=256, progress=False) -> list[dict]:
    """One row per strategy on `puzzles` (generated tokens [n, L]: clues and solutions)."""
    inputs = mask_cells(puzzles, task)
    n = len(inputs)
    rows = []
    for s in strategies:
        tr = sample_batches(model, inputs, mask_id=engine.MASK_ID, strategy=s, k=k, threshold=threshold,
                            temperature=temperature, seed=seed, batch_size=batch_size, progress=progress,
                            desc=f"zebra {s}")
        r = engine.check(tr.tokens.numpy(), task)
        solved = int(r.solved.sum())
        order = tr.order.numpy()[:, task.cell_positions]
        rows.append({"strategy": s, "n": n, "puzzle_acc": solved / max(n, 1),
                     "puzzle_acc_ci95": list(wilson_interval(solved, n)),
                     "cell_acc": float(r.cell_accuracy.mean()) if n else 0.0,
                     "calls_per_puzzle": float((order.max(axis=1) + 1).mean()) if n else 0.0,
                     "k": k or 1, "threshold": threshold, "temperature": temperature})
    return rows


def format_table(rows: list[dict], task: engine.Task) -> str:
    lines = ["| order | puzzles solved (95% CI) | cells right | calls per puzzle |", "|---|---|---|---|"]
    for r in rows:
        lo, hi = r["puzzle_acc_ci95"]
        lines.append(f"| {r['strategy']} | {100 * r['puzzle_acc']:.1f}% ({100 * lo:.1f}-{100 * hi:.1f}) | "
                     f"{100 * r['cell_acc']:.1f}% | {r['calls_per_puzzle']:.1f} |")
    return "\n".join(lines)


def plot(rows: list[dict], path, title: str = "") -> None:
    """Bar chart of the puzzles solved per order, with 95% intervals."""
    plot_orders(rows, "puzzle_acc", path, ylabel="puzzles solved (%)",
                title=title or "Zebra: puzzles solved by decoding order")


@torch.no_grad()
def cell_accuracy(model, task: engine.Task, puzzles: engine.Puzzles, batch_size=256) -> list[dict]:
    """One model call on every test puzzle with all cells masked: the share of cells whose most likely value is
    right, grouped by the technique the native solver's ordered solve placed the cell with (a clue relation
    such as ``at``, ``exclusion``/``onlyplace`` for all-different, ``guess``), and the same for the cells the
    solver placed first (step 0 to 2) and last. A clue that names a cell outright (``at``) is a lookup; the
    others need the cell's clue combined with what is already known, so they show which deductions the model
    makes in one call."""
    device = next(model.parameters()).device
    inputs = mask_cells(puzzles.tokens, task)
    right = []
    for a in range(0, len(inputs), batch_size):
        x = inputs[a:a + batch_size].to(device)
        pred = model(x)[:, task.cell_positions].argmax(-1).cpu()
        right.append(pred == torch.as_tensor(puzzles.tokens[a:a + batch_size, task.cell_positions]).long())
    right = torch.cat(right).numpy() if right else np.zeros((0, task.cells), bool)
    technique, order = np.asarray(puzzles.technique), np.asarray(puzzles.order)
    rows = [{"cells": "all", "n": int(right.size), "acc": float(right.mean()) if right.size else None}]
    for t, name in enumerate(engine.TECHNIQUES):
        sel = technique == t
        if sel.any():
            rows.append({"cells": name, "n": int(sel.sum()), "acc": float(right[sel].mean())})
    last = order.max(axis=1, keepdims=True) if len(order) else order
    for name, sel in (("solver steps 0-2", order <= 2), ("solver's last step", order == last)):
        if sel.any():
            rows.append({"cells": name, "n": int(sel.sum()), "acc": float(right[sel].mean())})
    return rows


def format_cell_accuracy(rows: list[dict]) -> str:
    lines = ["| cells placed by | cells | right after one call, all cells masked |", "|---|---|---|"]
    for r in rows:
        acc = "-" if r["acc"] is None else f"{100 * r['acc']:.1f}%"
        lines.append(f"| {r['cells']} | {r['n']:,} | {acc} |")
    return "\n".join(lines)
