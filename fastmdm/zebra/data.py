"""Zebra data for an MDM: the token encoding of puzzles, decoding back, and cached datasets.

Encoding (one vocabulary of VOCAB_SIZE = 33 ids for every size):

    0..7    values (a cell's value, or the value of an item in a clue)
    8..15   attributes          16..23  houses          24..30  relations (RELATIONS order)
    31      PAD (an unused clue slot; the fifth token of at/notat)          32  MASK_ID

A sequence is `task.max_clues` clue slots of 5 tokens, [relation, attribute, value, attribute or house,
value or PAD], the puzzle's clues first and then padding, followed by the m * n cells in house-major
order. A generated sequence holds its solution in the cells; a model's input masks (some of) them.
`Task.clue_positions` and `Task.cell_positions` say which positions are which.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from fastmdm.zebra.engine import (
    ATTRIBUTE_BASE,
    CLUE_TOKENS,
    HOUSE_BASE,
    MASK_ID,
    PAD_ID,
    RELATION_BASE,
    RELATIONS,
    VALUE_BASE,
    VOCAB_SIZE,
    Puzzles,
    Task,
    as_sequences,
    generate,
)

__all__ = ["MASK_ID", "PAD_ID", "VOCAB_SIZE", "TEST_SEED", "Clue", "Puzzle", "encode", "decode",
           "cached_generate", "cached_puzzles", "test_set"]

#: the seed reserved for the project's Zebra test sets; training data uses other seeds
TEST_SEED = 4_000_037

_AT = (RELATIONS.index("at"), RELATIONS.index("notat"))


class Clue(NamedTuple):
    """One clue: `relation` (an index into RELATIONS), item X = (`a1`, `v1`), and item Y = (`a2`, `v2`), or for
    at/notat the house `a2` and `v2` = -1."""

    relation: int
    a1: int
    v1: int
    a2: int
    v2: int = -1

    def holds(self, grid: np.ndarray) -> bool:
        """Whether the clue holds for a grid [houses, attributes] of value ids (a plain Python reference)."""
        def house(a, v):
            where = np.flatnonzero(np.asarray(grid)[:, a] == v)
            return int(where[0]) if len(where) else None

        x = house(self.a1, self.v1)
        name = RELATIONS[self.relation]
        if x is None:
            return False
        if name in ("at", "notat"):
            return (x == self.a2) == (name == "at")
        y = house(self.a2, self.v2)
        if y is None:
            return False
        return {"same": x == y, "notsame": x != y, "immleft": x + 1 == y, "leftof": x < y,
                "nextto": abs(x - y) == 1}[name]

    def text(self) -> str:
        """'1.3 same 2.0', '0.4 at h2': attribute.value, the relation, then the other item or hHOUSE."""
        other = f"h{self.a2}" if self.relation in _AT else f"{self.a2}.{self.v2}"
        return f"{self.a1}.{self.v1} {RELATIONS[self.relation]} {other}"


class Puzzle(NamedTuple):
    """A decoded sequence: its `clues` (a list of Clue, in slot order) and `grid` int8 [houses, attributes]
    (value ids, MASK_ID where masked)."""

    clues: list
    grid: np.ndarray


def _check_clue(c: Clue, task: Task, i: int) -> None:
    m, n = task.houses, task.attributes
    ok = 0 <= c.relation < len(RELATIONS) and 0 <= c.a1 < n and 0 <= c.v1 < m
    if c.relation in _AT:
        ok = ok and 0 <= c.a2 < m and c.v2 == -1
    else:
        ok = ok and 0 <= c.a2 < n and 0 <= c.v2 < m and (c.a1, c.v1) != (c.a2, c.v2)
        ok = ok and not (RELATIONS[c.relation] in ("same", "notsame") and c.a1 == c.a2)
    if not ok:
        raise ValueError(f"clue {i} {tuple(c)} is not a clue of {m} houses x {n} attributes")


def encode(puzzles, task: Task) -> np.ndarray:
    """Sequences int8 [len(puzzles), L] from Puzzle values (or (clues, grid) pairs); a grid may hold MASK_ID."""
    out = np.full((len(puzzles), task.length), PAD_ID, np.int8)
    for r, (clues, grid) in enumerate(puzzles):
        if len(clues) > task.max_clues:
            raise ValueError(f"puzzle {r} has {len(clues)} clues; the task has {task.max_clues} slots")
        for i, c in enumerate(clues):
            c = Clue(*c)
            _check_clue(c, task, i)
            other = (HOUSE_BASE + c.a2, PAD_ID) if c.relation in _AT else (ATTRIBUTE_BASE + c.a2, VALUE_BASE + c.v2)
            out[r, i * CLUE_TOKENS:(i + 1) * CLUE_TOKENS] = (RELATION_BASE + c.relation, ATTRIBUTE_BASE + c.a1,
                                                             VALUE_BASE + c.v1, *other)
        g = np.asarray(grid)
        if g.shape != (task.houses, task.attributes):
            raise ValueError(f"puzzle {r}: grid must have shape [{task.houses}, {task.attributes}], got {g.shape}")
        if not (((g >= 0) & (g < task.houses)) | (g == MASK_ID)).all():
            raise ValueError(f"puzzle {r}: grid values must be 0..{task.houses - 1} or MASK_ID ({MASK_ID})")
        flat = g.reshape(-1)
        out[r, task.cell_positions] = np.where(flat == MASK_ID, MASK_ID, flat + VALUE_BASE)
    return out


def decode(sequences, task: Task) -> list:
    """Puzzle values from sequences [n, L] (or one [L]: a one-element list). Padding slots are skipped; a
    malformed slot raises ValueError."""
    arr, _ = as_sequences(sequences, task)
    out = []
    for r, row in enumerate(arr):
        clues = []
        for s in range(task.max_clues):
            t = row[s * CLUE_TOKENS:(s + 1) * CLUE_TOKENS].astype(int)
            if (t == PAD_ID).all():
                continue
            rel = int(t[0]) - RELATION_BASE
            if 0 <= rel < len(RELATIONS) and rel in _AT and t[4] == PAD_ID:
                c = Clue(rel, int(t[1]) - ATTRIBUTE_BASE, int(t[2]) - VALUE_BASE, int(t[3]) - HOUSE_BASE, -1)
            else:
                c = Clue(rel, int(t[1]) - ATTRIBUTE_BASE, int(t[2]) - VALUE_BASE, int(t[3]) - ATTRIBUTE_BASE,
                         int(t[4]) - VALUE_BASE)
            try:
                _check_clue(c, task, s)
            except ValueError:
                raise ValueError(f"row {r}: clue slot {s} holds {t.tolist()}, not a clue of "
                                 f"{task.describe()}") from None
            clues.append(c)
        grid = row[task.cell_positions].reshape(task.houses, task.attributes).copy()
        out.append(Puzzle(clues, grid))
    return out


def _cache_name(n: int, task: Task, seed: int) -> str:
    return (f"zebra_m{task.houses}_n{task.attributes}_k{task.max_clues}{'_logic' if task.logic_only else ''}"
            f"_n{n}_seed{seed}.npz")


def cached_puzzles(n: int, task: Task, seed: int, cache_dir=None, progress: bool = False) -> Puzzles:
    """`engine.generate(n, task, seed)`, cached as .npz under `cache_dir` (the engine is deterministic in
    (n, task, seed)): the tokens and the solver's ordered solve (for the ARM baseline)."""
    if cache_dir is None:
        return generate(n, task, seed, progress=progress)
    path = Path(cache_dir).expanduser() / _cache_name(int(n), task, int(seed))
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return Puzzles(*(z[k] for k in Puzzles._fields))
    p = generate(n, task, seed, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **p._asdict())
    tmp.replace(path)
    return p


def cached_generate(n: int, task: Task, seed: int, cache_dir=None, progress: bool = False) -> np.ndarray:
    """The tokens int8 [n, L] of `cached_puzzles`."""
    return cached_puzzles(n, task, seed, cache_dir, progress).tokens


def test_set(n: int, task: Task | None = None, cache_dir=None) -> Puzzles:
    """The project's held-out test set for `task` (default `Task()`): the first n puzzles of the TEST_SEED
    stream."""
    return cached_puzzles(n, Task() if task is None else task, TEST_SEED, cache_dir)
