"""Python API of the native Zebra (Einstein) puzzle engine: tasks, generation, the exact checker and the solver.

A `Task` is m houses x n attributes. A solution gives each attribute a permutation of its m values over the
houses; cell (h, a) holds the value of attribute a in house h. A puzzle is a list of clues about "items"
(a, v), attribute a's value v, true of one solution and enough to make it the only one:

    same      X, Y in the same house          (different attributes)
    notsame   X, Y in different houses        (different attributes)
    immleft   X immediately left of Y         (house(X) + 1 == house(Y); "Y immediately right of X")
    leftof    X somewhere left of Y           (house(X) < house(Y))
    nextto    X and Y in neighbouring houses
    at        X in house h
    notat     X not in house h

Sequences (int8 tokens, one vocabulary for every size): `max_clues` clue slots of 5 tokens, then the m * n
cells in house-major order (cell (h, a) at `task.cell_positions.start + h * n + a`). A slot is
[relation, attribute, value, attribute or house, value or PAD]; unused slots are 5 x PAD. Puzzle i of a run
depends only on (seed, start + i) and the task, never on the thread count. See docs/zebra.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from fastmdm import _native, native_args
from fastmdm.native_args import is_int as _is_int
from fastmdm.native_args import threads as _threads

_C = _native.zebra_constants()
MAX_HOUSES: int = _C["max_houses"]
MAX_ATTRIBUTES: int = _C["max_attributes"]
MAX_CLUES: int = _C["max_clues"]
CLUE_TOKENS: int = _C["clue_tokens"]
VALUE_BASE: int = _C["value_base"]
ATTRIBUTE_BASE: int = _C["attribute_base"]
HOUSE_BASE: int = _C["house_base"]
RELATION_BASE: int = _C["relation_base"]
PAD_ID: int = _C["pad"]
MASK_ID: int = _C["mask"]
VOCAB_SIZE: int = _C["vocab_size"]
#: relation names, in the order of their token ids RELATION_BASE + i
RELATIONS: tuple[str, ...] = ("same", "notsame", "immleft", "leftof", "nextto", "at", "notat")
#: how the ordered solve placed a cell: the relation of the clue that did it (0..6), or one of these
TECHNIQUES: tuple[str, ...] = RELATIONS + ("exclusion", "onlyplace", "guess", "given")
GUESS = TECHNIQUES.index("guess")
GIVEN = TECHNIQUES.index("given")
#: relative frequency of each relation when the generator draws a clue (RELATIONS order)
RELATION_WEIGHTS: tuple[int, ...] = tuple(_C["relation_weights"])
MAX_ATTEMPTS: int = _C["max_attempts"]
#: Shah et al. 2024's puzzles have 3 to 6 houses and 3 to 6 attributes
SHAH_SIZES: tuple[int, ...] = (3, 4, 5, 6)
_CHUNK = 4096

assert len(RELATIONS) == _C["relations"]


@dataclass(frozen=True)
class Task:
    """One Zebra distribution: `houses` m, `attributes` n, `max_clues` clue slots (default m * n: minimal
    puzzles with more clues are redrawn), and `logic_only` (keep only puzzles that propagation solves without
    a guess). Default 5 x 5, the classic Einstein size and the middle of Shah et al.'s 3..6 range."""

    houses: int = 5
    attributes: int = 5
    max_clues: int | None = None
    logic_only: bool = False

    def __post_init__(self):
        m, n = self.houses, self.attributes
        if not _is_int(m) or not 2 <= m <= MAX_HOUSES:
            raise ValueError(f"houses must be an integer in [2, {MAX_HOUSES}], got {m!r}")
        if not _is_int(n) or not 2 <= n <= MAX_ATTRIBUTES:
            raise ValueError(f"attributes must be an integer in [2, {MAX_ATTRIBUTES}], got {n!r}")
        k = m * n if self.max_clues is None else self.max_clues
        if not _is_int(k) or not 1 <= k <= MAX_CLUES:
            raise ValueError(f"max_clues must be an integer in [1, {MAX_CLUES}] or None (houses * attributes), "
                             f"got {self.max_clues!r}")
        if not isinstance(self.logic_only, (bool, np.bool_)):
            raise ValueError(f"logic_only must be True or False, got {self.logic_only!r}")
        object.__setattr__(self, "houses", int(m))
        object.__setattr__(self, "attributes", int(n))
        object.__setattr__(self, "max_clues", int(k))
        object.__setattr__(self, "logic_only", bool(self.logic_only))

    @property
    def cells(self) -> int:
        return self.houses * self.attributes

    @property
    def clue_length(self) -> int:
        return self.max_clues * CLUE_TOKENS

    @property
    def length(self) -> int:
        """Sequence length: max_clues * 5 clue tokens, then houses * attributes cells."""
        return self.clue_length + self.cells

    @property
    def clue_positions(self) -> slice:
        return slice(0, self.clue_length)

    @property
    def cell_positions(self) -> slice:
        return slice(self.clue_length, self.length)

    def cell_position(self, house: int, attribute: int) -> int:
        """The sequence position of cell (house, attribute)."""
        return self.clue_length + house * self.attributes + attribute

    def describe(self) -> str:
        return (f"{self.houses} houses x {self.attributes} attributes, up to {self.max_clues} clues"
                + (", logic-only" if self.logic_only else ""))


def _task(task) -> Task:
    if not isinstance(task, Task):
        raise TypeError(f"task must be a fastmdm.zebra.Task, got {type(task).__name__}")
    return task


def as_sequences(x, task: Task, name: str = "sequences") -> tuple[np.ndarray, bool]:
    """Sequences as a C-contiguous int8 [n, L] array of token ids in [0, VOCAB_SIZE); the flag says whether
    one sequence [L] was given. Accepts numpy arrays, nested sequences and torch tensors of integers."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be integer token ids, got dtype {arr.dtype}")
    single = arr.ndim == 1
    if single:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != task.length:
        raise ValueError(f"{name} must have shape [n, {task.length}] or [{task.length}] ({task.max_clues} clue slots "
                         f"of 5 tokens, then {task.cells} cells), got {tuple(np.shape(x))}")
    bad = (arr < 0) | (arr >= VOCAB_SIZE)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"{name}: row {r}, position {c} holds {arr[r, c]}; token ids are 0..{VOCAB_SIZE - 1}")
    return np.ascontiguousarray(arr, dtype=np.int8), single


class Puzzles(NamedTuple):
    """Result of `generate`. `tokens` int8 [n, L] (clues, then the solution); the solver's ordered solve per
    cell, int8 [n, m*n]: `order` (the step at which the cell was placed, 0-based), `technique` (an index into
    TECHNIQUES) and `clue` (the clue slot that placed it, -1 for all-different steps and guesses); per
    puzzle int32 [n]: `attempts` (solutions drawn), `clues`, `guesses` (0: propagation alone solves it) and
    `rounds` (propagation rounds that changed a domain)."""

    tokens: np.ndarray
    order: np.ndarray
    technique: np.ndarray
    clue: np.ndarray
    attempts: np.ndarray
    clues: np.ndarray
    guesses: np.ndarray
    rounds: np.ndarray


def generate(n: int, task: Task | None = None, seed: int = 0, threads: int | None = None, progress: bool = False,
             *, start: int = 0) -> Puzzles:
    """`n` minimal unique puzzles of `task` (default `Task()`), with their solutions and ordered solves.

    seed: any integer in [0, 2**64); puzzle i depends only on (seed, start + i) and the task.
    threads: worker threads (None = all cores); the output does not depend on it.
    progress: a tqdm progress bar on stderr. start: index of the first puzzle (a large set in pieces).
    """
    task = Task() if task is None else _task(task)
    n, seed, start = native_args.generation(n, seed, start, task.length)
    nthreads = _threads(threads)
    tokens = np.zeros((n, task.length), np.int8)
    order = np.zeros((n, task.cells), np.int8)
    technique = np.zeros_like(order)
    clue = np.zeros_like(order)
    stats = np.zeros((n, 4), np.int32)
    with native_args.chunks(n, _CHUNK, progress, "zebra", "puzzle") as pieces:
        for a, b in pieces:
            _native.zebra_generate(tokens[a:b], order[a:b], technique[a:b], clue[a:b], stats[a:b], task.houses,
                                   task.attributes, task.max_clues, task.logic_only, int(start) + a, seed, nthreads)
    failed = np.flatnonzero(stats[:, 0] < 0)
    if len(failed):
        raise ValueError(f"puzzle {int(start) + int(failed[0])} of seed {seed}: none of {MAX_ATTEMPTS} drawn puzzles "
                         f"had at most {task.max_clues} clues{' and needed no guess' if task.logic_only else ''}; "
                         "raise max_clues")
    return Puzzles(tokens, order, technique, clue, *(stats[:, i].copy() for i in range(4)))


class Check(NamedTuple):
    """Result of `check`. `solved` bool [n]: every cell holds the puzzle's unique solution. `consistent`
    bool [n]: every cell is a value, each attribute a permutation, and every clue holds (for a unique
    puzzle the same as solved). `cell_correct` bool [n, m*n]: the cell equals the solution's (a masked cell
    never does). `clue_ok` bool [n, max_clues]: the clue slot holds for the grid (padding slots hold).
    `solutions` int32 [n]: the clues' solution count, 0, 1, or 2 meaning two or more (1 for every
    generated puzzle; cell correctness is against the first solution found when it is not 1)."""

    solved: np.ndarray
    consistent: np.ndarray
    cell_correct: np.ndarray
    clue_ok: np.ndarray
    solutions: np.ndarray

    @property
    def cell_accuracy(self) -> np.ndarray:
        """float64 [n]: the fraction of correct cells per puzzle."""
        return self.cell_correct.mean(axis=1) if len(self.cell_correct) else np.zeros(0)


def _slot_error(task: Task, arr: np.ndarray, row: int, code: int) -> ValueError:
    s = -1 - code
    toks = arr[row, s * CLUE_TOKENS:(s + 1) * CLUE_TOKENS].tolist()
    return ValueError(f"row {row}: clue slot {s} (positions {s * CLUE_TOKENS}..{s * CLUE_TOKENS + 4}) holds {toks}, "
                      f"not a clue of {task.houses} houses x {task.attributes} attributes nor 5 x PAD ({PAD_ID})")


def check(sequences, task: Task, threads: int | None = None) -> Check:
    """Check completed puzzles exactly: the grid against every clue and all-different, and every cell against
    the puzzle's solution (found by the native solver). `sequences`: [n, L] or one [L]. A clue section that
    is not well formed raises ValueError naming the row and the slot."""
    task = _task(task)
    arr, _ = as_sequences(sequences, task)
    n = len(arr)
    cell_ok = np.zeros((n, task.cells), np.uint8)
    clue_ok = np.zeros((n, task.max_clues), np.uint8)
    consistent = np.zeros(n, np.uint8)
    solutions = np.zeros(n, np.int32)
    _native.zebra_check(arr, task.houses, task.attributes, task.max_clues, cell_ok, clue_ok, consistent, solutions,
                        _threads(threads))
    if n and solutions.min() < 0:
        r = int(np.argmin(solutions))
        raise _slot_error(task, arr, r, int(solutions[r]))
    cell_ok = cell_ok.view(bool)
    return Check(cell_ok.all(axis=1) & (solutions == 1), consistent.view(bool), cell_ok, clue_ok.view(bool),
                 solutions)


class Solved(NamedTuple):
    """Result of `solve`. `solution` int8 [n, m*n] value ids (the first solution found; -1 where there is
    none), `count` int32 [n] (0, 1, or 2 meaning two or more), and the ordered solve towards that solution:
    `order`, `technique`, `clue` int8 [n, m*n] (as in `Puzzles`; visible cells have order -1 and technique
    GIVEN), `guesses` int32 [n] (-1 when there is no solution) and `rounds` int32 [n]."""

    solution: np.ndarray
    count: np.ndarray
    order: np.ndarray
    technique: np.ndarray
    clue: np.ndarray
    guesses: np.ndarray
    rounds: np.ndarray


def solve(sequences, task: Task, threads: int | None = None) -> Solved:
    """Solve puzzles with the native solver. The clue section is the puzzle; visible cells (value tokens)
    are givens and MASK_ID cells are unknown, so a partly decoded grid can be completed or refuted."""
    task = _task(task)
    arr, _ = as_sequences(sequences, task)
    n = len(arr)
    solution = np.zeros((n, task.cells), np.int8)
    counts = np.zeros(n, np.int32)
    order = np.zeros((n, task.cells), np.int8)
    technique = np.zeros_like(order)
    clue = np.zeros_like(order)
    stats = np.zeros((n, 2), np.int32)
    _native.zebra_solve(arr, task.houses, task.attributes, task.max_clues, solution, counts, order, technique, clue,
                        stats, _threads(threads))
    if n and counts.min() < 0:
        r = int(np.argmin(counts))
        if counts[r] == -1:
            cells = arr[r, task.cell_positions]
            c = int(np.flatnonzero((cells >= task.houses) & (cells != MASK_ID))[0])
            raise ValueError(f"row {r}: cell {c} (house {c // task.attributes}, attribute {c % task.attributes}, "
                             f"position {task.clue_length + c}) holds {int(cells[c])}; a cell is a value "
                             f"0..{task.houses - 1} or MASK ({MASK_ID})")
        raise _slot_error(task, arr, r, int(counts[r]) + 1)
    return Solved(solution, counts, order, technique, clue, stats[:, 0].copy(), stats[:, 1].copy())
