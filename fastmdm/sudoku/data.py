"""Training and test data for the Sudoku MDM: the puzzle engine's splits, cached, plus augmentation.

Encoding: a puzzle is 81 tokens, row-major; tokens 1-9 are digits and token 0 is both "blank" in a puzzle
and the model's mask token. A puzzle array from the engine is therefore the model's input as it is, and
the model's answer is a grid of digits 1-9 (decoding never produces the mask token).

`synthetic_puzzles` is a small stand-in (random symmetries of a pattern grid, clues removed at random, no
uniqueness guarantee) for unit tests only; real training and evaluation use `fastmdm.sudoku.engine`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fastmdm.sudoku import grids

MASK_ID = 0
#: seeds reserved for the project's test sets; training data uses other seeds and is checked disjoint
TEST_SEEDS = {"standard": 1_000_003, "hard": 2_000_003}


def generate(n: int, split: str = "standard", seed: int = 0, progress: bool = False) -> dict:
    """`n` puzzles of `split` from the native engine: {"puzzles", "solutions"} int8 [n, 81]."""
    if split not in ("standard", "hard"):
        raise ValueError(f"split: must be 'standard' or 'hard', got {split!r}")
    from fastmdm.sudoku import engine  # noqa: PLC0415
    out = engine.generate(int(n), split=split, seed=int(seed), progress=progress)
    return {"puzzles": np.asarray(out["puzzles"], dtype=np.int8),
            "solutions": np.asarray(out["solutions"], dtype=np.int8)}


def cached_generate(n: int, split: str, seed: int, cache_dir=None, progress: bool = False) -> dict:
    """`generate`, cached as .npz under `cache_dir` (the engine is deterministic in (n, split, seed))."""
    if cache_dir is None:
        return generate(n, split, seed, progress)
    path = Path(cache_dir) / f"sudoku_{split}_n{n}_seed{seed}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return {"puzzles": z["puzzles"], "solutions": z["solutions"]}
    data = generate(n, split, seed, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **data)
    tmp.replace(path)
    return data


def test_set(split: str, n: int, cache_dir=None) -> dict:
    """The project's held-out test set for `split` (fixed seed); the first n puzzles of a fixed stream."""
    return cached_generate(n, split, TEST_SEEDS[split], cache_dir)


def remove_overlap(train: dict, held_out: list[dict]) -> dict:
    """Drop training puzzles whose solution grid appears in any held-out set (so eval puzzles are unseen
    even up to their clue pattern)."""
    seen = {bytes(r) for d in held_out for r in np.asarray(d["solutions"], dtype=np.int8)}
    keep = np.array([bytes(r) not in seen for r in train["solutions"]], dtype=bool)
    return {k: v[keep] for k, v in train.items()}


# ----------------------------------------------------------------------------------------------
# a stand-in source for unit tests (NOT the real data: no uniqueness, no difficulty control)
# ----------------------------------------------------------------------------------------------
def synthetic_puzzles(n: int, *, clues=(28, 40), seed: int = 0) -> dict:
    """Valid complete grids (random symmetries of one pattern grid) with random cells blanked; for fast
    unit tests of the training and evaluation code, never for real training."""
    g = torch.Generator().manual_seed(seed)
    r, c = torch.meshgrid(torch.arange(9), torch.arange(9), indexing="ij")
    base = ((3 * (r % 3) + r // 3 + c) % 9 + 1).reshape(1, 81).expand(n, 81).contiguous()
    _, sol = grids.augment(base, base, g)
    n_clues = torch.randint(clues[0], clues[1] + 1, (n,), generator=g)
    rank = torch.argsort(torch.rand(n, 81, generator=g), dim=1).argsort(dim=1)
    puz = torch.where(rank < n_clues[:, None], sol, torch.zeros_like(sol))
    return {"puzzles": puz.to(torch.int8).numpy(), "solutions": sol.to(torch.int8).numpy()}
