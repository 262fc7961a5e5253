"""`fastmdm demo`: the shipped Sudoku MDM solves fresh test puzzles with each decoding strategy, then one
puzzle is filled cell by cell in the order the margin strategy chose."""
from __future__ import annotations

import sys
import time

import numpy as np
import torch

DEMO_STRATEGIES = ("random", "confidence", "margin", "entropy")
#: seed of the demo's puzzles (disjoint from training data, like the test sets)
DEMO_SEED = 3_000_017
#: puzzles per strategy when the count is not given, by precision: sized so the demo stays under two minutes
#: on two CPU cores (bf16 decodes faster where it is chosen, so it gets more puzzles; timings in
#: benchmarks/results/cpu_runtime_notes.md)
DEFAULT_N = {"bf16": 200, "fp32": 128}
#: rows per model call: small batches keep a few cores' caches warm (benchmarks/results/cpu_runtime_notes.md)
DEMO_BATCH = 64


def fill_story(puzzle: np.ndarray, answer: np.ndarray, order: np.ndarray) -> list[tuple[int, int, int]]:
    """[(step, cell, digit)] in the order the cells were filled."""
    cells = np.nonzero(order >= 0)[0]
    cells = cells[np.argsort(order[cells], kind="stable")]
    return [(int(order[c]), int(c), int(answer[c])) for c in cells]


def render(grid: np.ndarray, puzzle: np.ndarray, highlight: int | None = None, color: bool = False) -> str:
    """A boxed 9x9 picture; clues plain, filled cells bold (color) and the newest one highlighted."""
    sep = "+-------+-------+-------+"
    lines = [sep]
    for r in range(9):
        parts = []
        for b in range(3):
            cells = []
            for c in range(3 * b, 3 * b + 3):
                i = 9 * r + c
                ch = "." if grid[i] == 0 else str(int(grid[i]))
                if color and grid[i] and puzzle[i] == 0:
                    ch = f"\x1b[1;30;43m{ch}\x1b[0m" if i == highlight else f"\x1b[1;36m{ch}\x1b[0m"
                cells.append(ch)
            parts.append(" ".join(cells))
        lines.append("| " + " | ".join(parts) + " |")
        if r % 3 == 2:
            lines.append(sep)
    return "\n".join(lines)


def order_grid(order: np.ndarray) -> str:
    """Each blank's fill step (1-based), clues as '..'."""
    rows = []
    for r in range(9):
        rows.append(" ".join(" ." if order[9 * r + c] < 0 else f"{int(order[9 * r + c]) + 1:2d}" for c in range(9)))
    return "\n".join(rows)


def run(n: int | None = None, checkpoint=None, seed: int = 0, animate: bool | None = None, hard: bool = False,
        precision: str = "auto", out=None) -> dict:
    from fastmdm.sudoku import data as sdata  # noqa: PLC0415
    from fastmdm.sudoku import model as smodel  # noqa: PLC0415
    from fastmdm.sudoku.evaluate import decode_puzzles, evaluate, format_table  # noqa: PLC0415
    from fastmdm.sudoku.grids import valid_solutions  # noqa: PLC0415
    from fastmdm.training import total_steps  # noqa: PLC0415

    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n: puzzles per strategy must be an integer >= 1, got {n!r}")
    t0 = time.perf_counter()
    out = sys.stdout if out is None else out
    precision = smodel.resolve_precision(precision, "cpu")
    n = DEFAULT_N[precision] if n is None else n
    model, cfg = smodel.load(checkpoint, precision=precision)
    n_params = sum(p.numel() for p in model.parameters())
    steps = total_steps(cfg.get("trained", {}))
    print(f"fastmdm demo: a {n_params / 1e6:.2f}M-parameter masked diffusion model "
          f"({'?' if steps is None else f'{steps:,}'} training steps) solving Sudoku, "
          f"{'bf16 autocast (this CPU has AMX)' if precision == 'bf16' else 'float32'} on "
          f"{torch.get_num_threads()} CPU thread(s).", file=out)
    splits = ("standard", "hard") if hard else ("standard",)
    print(f"Generating {n} fresh {' and '.join(splits)} puzzles with the native engine (never seen in training) ...",
          file=out)
    sets = {split: sdata.generate(n, split, seed=DEMO_SEED + seed) for split in splits}
    print("Each puzzle is decoded one cell per model call; strategies differ only in which blank they fill next.",
          file=out, flush=True)
    results = {}
    for split, d in sets.items():
        results[split] = evaluate(model, d["puzzles"], d["solutions"], strategies=DEMO_STRATEGIES, k=1,
                                  batch_size=DEMO_BATCH, seed=seed, progress=True)
    print(format_table(results), file=out)
    acc = {r["strategy"]: r["puzzle_acc"] for r in results["standard"]}
    print(f"\nOn standard puzzles, choosing the most certain cell by margin solves {100 * acc['margin']:.1f}%; "
          f"random order solves {100 * acc['random']:.1f}%.", file=out)

    # one puzzle, filled step by step in margin order
    std = sets["standard"]
    tr = decode_puzzles(model, torch.as_tensor(std["puzzles"][:16]).long(), strategy="margin", k=1,
                        return_trace=True)
    ok = valid_solutions(torch.as_tensor(std["puzzles"][:16]).long(), tr.tokens.cpu())
    j = int(torch.nonzero(ok)[0, 0]) if bool(ok.any()) else 0
    puzzle = std["puzzles"][j].astype(np.int64)
    answer = tr.tokens[j].numpy()
    order = tr.order[j].numpy()
    story = fill_story(puzzle, answer, order)
    if animate is None:
        animate = out.isatty() if hasattr(out, "isatty") else False
    print(f"\nA standard test puzzle ({int((puzzle > 0).sum())} clues), filled in the order margin chose:", file=out)
    grid = puzzle.copy()
    if animate:
        print(render(grid, puzzle, color=True), file=out, flush=True)
        for step, cell, digit in story:
            grid[cell] = digit
            time.sleep(0.04)
            out.write("\x1b[13F")  # back to the top of the 13-line picture
            print(render(grid, puzzle, highlight=cell, color=True), file=out, flush=True)
    else:
        print(render(grid, puzzle), file=out)
        print("order: " + ", ".join(f"r{c // 9 + 1}c{c % 9 + 1}={d}" for _, c, d in story), file=out)
        grid = answer
        print(render(grid, puzzle), file=out)
    right = bool(ok[j])
    print("fill step of each blank (1 = first):\n" + order_grid(order), file=out)
    print(f"{'solved' if right else 'not solved'}; demo took {time.perf_counter() - t0:.0f} s", file=out)
    return {"results": results, "example": {"puzzle": puzzle, "answer": answer, "order": order, "valid": right}}
