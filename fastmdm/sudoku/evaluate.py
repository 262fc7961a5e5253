"""Evaluate a Sudoku MDM: puzzle accuracy (whole grid valid), cell accuracy and model calls per decoding
strategy; and the model's answers to puzzles.

Decoding follows the paper's Sudoku setup by default: every blank is a mask, one model call per step,
and either one cell per step (`k=1`) or the blanks split over `steps` reverse steps, with Gumbel noise of
scale `score_noise` added to the ranking scores.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
from tqdm import tqdm

import fastmdm
from fastmdm.engine import has_hidden_path
from fastmdm.sudoku.arm import answer_arm, arm_order_of, is_arm
from fastmdm.sudoku.data import MASK_ID
from fastmdm.sudoku.grids import valid_solutions

DEFAULT_STRATEGIES = ("random", "confidence", "margin", "entropy")


def _as_long(a):
    return torch.as_tensor(np.asarray(a)).long() if not isinstance(a, torch.Tensor) else a.long()


class CallTicker:
    """`model` with a progress bar that moves once per model call: `fastmdm.sample` has no progress hook,
    so this stands in for the model, forwarding calls, the hidden-state path and every attribute."""

    def __init__(self, model, bar):
        self._model, self._bar = model, bar
        if has_hidden_path(model):  # offer the hidden-state path only where the model has it
            self.forward_hidden = self._forward_hidden

    def _forward_hidden(self, *args, **kwargs):
        out = self._model.forward_hidden(*args, **kwargs)
        self._bar.update(1)
        return out

    def get_output_embeddings(self):
        return self._model.get_output_embeddings()

    def __call__(self, *args, **kwargs):
        out = self._model(*args, **kwargs)
        self._bar.update(1)
        return out

    def __getattr__(self, name):
        return getattr(self._model, name)


def model_calls(puzzles, *, k=None, steps=None, batch_size=256) -> int:
    """Model calls decoding `puzzles` [N, 81] takes in batches of `batch_size`: per batch, its most blanks
    split by `k` cells per call, or `steps` calls (fewer when every row has fewer blanks)."""
    blanks = (_as_long(puzzles) == MASK_ID).sum(1)
    total = 0
    for i in range(0, blanks.shape[0], batch_size):
        b = int(blanks[i:i + batch_size].max())
        total += min(steps, b) if steps is not None else math.ceil(b / (k or 1))
    return total


@torch.no_grad()
def decode_puzzles(model, puzzles: torch.Tensor, *, strategy="margin", k=None, steps=None, score_noise=0.0,
                   generator=None, return_trace=False):
    """The model's answers to puzzles [B, 81] (blanks 0) in one batch: answers [B, 81] (or a Trace)."""
    x = _as_long(puzzles).to(next(model.parameters()).device)
    if k is None and steps is None:
        k = 1
    return fastmdm.sample(model, x, strategy=strategy, mask_id=MASK_ID, k=k, steps=steps,
                          score_noise=score_noise, generator=generator, return_trace=return_trace)


@torch.no_grad()
def answer_puzzles(model, puzzles, *, strategy="margin", k=None, steps=None, score_noise=0.0, seed=0,
                   batch_size=256, progress=False) -> tuple[np.ndarray, np.ndarray]:
    """(answers int8 [N, 81], valid bool [N]) for puzzles [N, 81], decoded in batches of `batch_size`."""
    puzzles = _as_long(puzzles)
    if is_arm(model):
        answers, valid, _ = answer_arm(model, puzzles, batch_size=batch_size, progress=progress)
        return answers, valid
    g = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    answers, valid = [], []
    with tqdm(total=model_calls(puzzles, k=k, steps=steps, batch_size=batch_size), desc=f"solve {strategy}",
              unit="call", disable=not progress, leave=False) as bar:
        ticking = CallTicker(model, bar)
        for i in range(0, len(puzzles), batch_size):
            p = puzzles[i:i + batch_size]
            a = decode_puzzles(ticking, p, strategy=strategy, k=k, steps=steps, score_noise=score_noise,
                               generator=g).cpu()
            answers.append(a.to(torch.int8).numpy())
            valid.append(valid_solutions(p, a).numpy())
    if not answers:
        return np.zeros((0, 81), np.int8), np.zeros(0, bool)
    return np.concatenate(answers), np.concatenate(valid)


@torch.no_grad()
def evaluate(model, puzzles, solutions, *, strategies=DEFAULT_STRATEGIES, k=None, steps=None, score_noise=0.0,
             batch_size=256, seed=0, progress=False, rank=0, world_size=1) -> list[dict]:
    """One result row per strategy: {"strategy", "n", "solved", "puzzle_acc", "cell_acc", "nfe", "seconds"}.

    An autoregressive baseline (`fastmdm.sudoku.arm`) decodes in its own order and gives one row, named
    "arm-<order>", whatever `strategies` says.

    `puzzle_acc`: fraction of puzzles whose answer is a complete valid grid keeping the clues (for the
    engine's unique-solution puzzles that is the reference solution); `cell_acc`: fraction of blank cells
    equal to the reference solution; `nfe`: model calls per batch, averaged. Under torch.distributed each
    rank decodes every `world_size`-th puzzle and the counts are summed.
    """
    puzzles, solutions = _as_long(puzzles), _as_long(solutions)
    if puzzles.dim() != 2 or puzzles.shape[1] != 81 or puzzles.shape != solutions.shape:
        raise ValueError(f"puzzles and solutions: must both be [N, 81], got {tuple(puzzles.shape)} and "
                         f"{tuple(solutions.shape)}")
    if is_arm(model):
        return [evaluate_arm(model, puzzles, solutions, batch_size=batch_size, progress=progress, rank=rank,
                             world_size=world_size)]
    if isinstance(strategies, str):
        strategies = [s.strip() for s in strategies.split(",") if s.strip()]
    for s in strategies:
        if s not in fastmdm.STRATEGIES:
            raise ValueError(f"strategies: unknown {s!r}; use a comma-separated subset of {sorted(fastmdm.STRATEGIES)}")
    puzzles, solutions = puzzles[rank::world_size], solutions[rank::world_size]
    was_training = model.training
    model.eval()
    rows = []
    for si, strategy in enumerate(strategies):
        g = torch.Generator(device=next(model.parameters()).device).manual_seed(seed * 1000 + si * 7919 + rank)
        solved = cells_ok = cells = nfe = batches = 0
        t0 = time.perf_counter()
        with tqdm(total=model_calls(puzzles, k=k, steps=steps, batch_size=batch_size), desc=f"eval {strategy}",
                  unit="call", disable=not progress, leave=False) as bar:
            ticking = CallTicker(model, bar)
            for i in range(0, puzzles.shape[0], batch_size):
                p, s = puzzles[i:i + batch_size], solutions[i:i + batch_size]
                tr = decode_puzzles(ticking, p, strategy=strategy, k=k, steps=steps, score_noise=score_noise,
                                    generator=g, return_trace=True)
                ans = tr.tokens.cpu()
                blank = p == MASK_ID
                solved += int(valid_solutions(p, ans).sum())
                cells_ok += int(((ans == s) & blank).sum())
                cells += int(blank.sum())
                nfe += tr.nfe
                batches += 1
        counts = torch.tensor([solved, cells_ok, cells, nfe, batches, puzzles.shape[0]], dtype=torch.float64)
        if world_size > 1:
            import torch.distributed as dist  # noqa: PLC0415
            dist.all_reduce(counts)
        solved, cells_ok, cells, nfe, batches, n = counts.tolist()
        rows.append({"strategy": strategy, "n": int(n), "solved": int(solved),
                     "puzzle_acc": solved / max(n, 1), "cell_acc": cells_ok / max(cells, 1),
                     "nfe": nfe / max(batches, 1), "seconds": time.perf_counter() - t0})
    model.train(was_training)
    return rows


def format_table(results: dict[str, list[dict]]) -> str:
    """Markdown table: one row per strategy, a column pair per split."""
    splits = list(results)
    strategies = []
    for rows in results.values():
        for r in rows:
            if r["strategy"] not in strategies:
                strategies.append(r["strategy"])
    head = "| strategy | " + " | ".join(f"{s}: puzzles solved | {s}: cells right | {s}: model calls"
                                         for s in splits) + " |"
    sep = "|---|" + "---|---|---|" * len(splits)
    lines = [head, sep]
    for st in strategies:
        cols = []
        for sp in splits:
            r = next((r for r in results[sp] if r["strategy"] == st), None)
            cols += (["-"] * 3 if r is None else
                     [f"{100 * r['puzzle_acc']:.2f}% ({r['solved']}/{r['n']})", f"{100 * r['cell_acc']:.2f}%",
                      f"{r['nfe']:.1f}"])
        lines.append(f"| {st} | " + " | ".join(cols) + " |")
    return "\n".join(lines)


def plot(results: dict[str, list[dict]], path) -> None:
    """A bar chart of puzzle accuracy per strategy and split (needs matplotlib)."""
    try:
        import matplotlib  # noqa: PLC0415
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as e:
        raise RuntimeError("--plot needs matplotlib: pip install 'fastmdm[plot]'") from e
    splits = list(results)
    strategies = [r["strategy"] for r in results[splits[0]]]
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(strategies), 3.6))
    w = 0.8 / len(splits)
    for j, sp in enumerate(splits):
        acc = [100 * next(r for r in results[sp] if r["strategy"] == st)["puzzle_acc"] for st in strategies]
        bars = ax.bar([i + j * w for i in range(len(strategies))], acc, w, label=sp)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks([i + w * (len(splits) - 1) / 2 for i in range(len(strategies))], strategies)
    ax.set_ylabel("puzzles solved (%)")
    ax.set_ylim(0, 100)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_sweep(sweep: list[tuple[int, dict[str, list[dict]]]], path, xlabel: str = "cells filled per model call (k)"):
    """A line chart of puzzle accuracy against the swept setting, one line per strategy and split."""
    try:
        import matplotlib  # noqa: PLC0415
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as e:
        raise RuntimeError("--plot needs matplotlib: pip install 'fastmdm[plot]'") from e
    xs = [x for x, _ in sweep]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for sp, style in zip(sweep[0][1], ("-", "--", ":", "-.")):
        for st in [r["strategy"] for r in sweep[0][1][sp]]:
            acc = [100 * next(r for r in res[sp] if r["strategy"] == st)["puzzle_acc"] for _, res in sweep]
            ax.plot(xs, acc, style, marker="o", label=f"{st} ({sp})")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("puzzles solved (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def evaluate_arm(model, puzzles, solutions, *, batch_size=256, progress=False, rank=0, world_size=1) -> dict:
    """`evaluate`'s row for an autoregressive baseline (`fastmdm.sudoku.arm`)."""
    puzzles, solutions = puzzles[rank::world_size], solutions[rank::world_size]
    t0 = time.perf_counter()
    ans, valid, nfe = answer_arm(model, puzzles, batch_size=batch_size, progress=progress, desc="eval")
    ans = torch.as_tensor(ans).long()
    blank = puzzles == MASK_ID
    counts = torch.tensor([float(valid.sum()), float(((ans == solutions) & blank).sum()), float(blank.sum()),
                           nfe * math.ceil(len(puzzles) / batch_size), math.ceil(len(puzzles) / batch_size),
                           puzzles.shape[0]], dtype=torch.float64)
    if world_size > 1:
        import torch.distributed as dist  # noqa: PLC0415
        dist.all_reduce(counts)
    solved, cells_ok, cells, nfe, batches, n = counts.tolist()
    return {"strategy": f"arm-{arm_order_of(model)}", "n": int(n), "solved": int(solved),
            "puzzle_acc": solved / max(n, 1), "cell_acc": cells_ok / max(cells, 1),
            "nfe": nfe / max(batches, 1), "seconds": time.perf_counter() - t0}
