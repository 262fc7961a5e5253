"""Python API of the native Sudoku engine: generation, exact solving and human-strategy grading.

Grids are int8 arrays of 81 cells in row-major order, 0 for a blank and 1-9 for a digit.

The grader uses the seven solving techniques of Shah et al. (2024), easiest first (`TECHNIQUES`; the
data keep the older word "strategy" for a cell's technique). It keeps
candidates per blank; each round it applies the easiest strategy that makes progress and starts over.
The two singles place a digit (one step of the solver order); the other five only remove candidates.
A cell's strategy is the single that placed it, or the hardest elimination strategy used since the
previous placement when that is harder. When the seven are stuck the grader fills the most
constrained blank from the solution (strategy `GUESS`) and goes on, so every puzzle gets a complete
fill order; such puzzles have difficulty `BEYOND` ("beyond the seven", the hard split).

Per-cell hardness of any board (a puzzle with some blanks filled, as decoding meets it): `cell_hardness`
gives each blank the easiest technique the grader needs to place it (`HARDNESS_CLASSES`), and
`immediate_singles` says whether it is a naked or hidden single on the board as it stands.

Generation: a random complete grid, then clue removal in random order while the solution stays
unique, which gives minimal puzzles (every clue needed; about 24 clues on average); then the grader
keeps or rejects the puzzle for the split. Grids come from a randomized search started from three
random diagonal boxes, followed by a random symmetry (relabeling, row/column/band/stack shuffles,
transpose): near-uniform, not exactly uniform over all 6.67e21 grids (no exact sampler is cheap).
Each puzzle depends only on (seed, split, index), so the output is the same for any thread count and
the first k puzzles of a run are the puzzles of a run of k.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fastmdm import _native

TECHNIQUES: tuple[str, ...] = (
    "naked_single",
    "hidden_single",
    "naked_pair",
    "naked_triple",
    "locked_candidate",
    "xy_wing",
    "unique_rectangle",
)
GUESS = len(TECHNIQUES)  # per-cell strategy of a cell filled from the solution (grader stuck)
BEYOND = len(TECHNIQUES)  # difficulty of a puzzle the seven techniques cannot finish
DIFFICULTY_NAMES: tuple[str, ...] = TECHNIQUES + ("beyond_seven",)
SPLITS: tuple[str, ...] = ("standard", "hard")

# Minimal puzzles from this generator have 24 +- 1 clues; a lower ceiling would make
# generation loop for a long time, so `max_clues` must leave room for them.
_MIN_MAX_CLUES = 22
_CHUNK = 4096


def _threads(threads: int | None) -> int:
    if threads is None:
        return 0  # all hardware threads
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer or None (all cores), got {threads!r}")
    return int(threads)


def generate(
    n: int,
    split: str = "standard",
    seed: int = 0,
    threads: int | None = None,
    progress: bool = False,
    *,
    min_clues: int | None = None,
    max_clues: int | None = None,
    start: int = 0,
) -> dict[str, np.ndarray]:
    """Generate `n` unique-solution puzzles of a split.

    split: "standard" (the seven strategies finish the puzzle) or "hard" (they cannot).
    seed: any non-negative integer; puzzle i depends only on (seed, split, start + i).
    threads: worker threads (None = all cores); the output does not depend on it.
    progress: show a tqdm progress bar on stderr.
    min_clues: stop removing clues once this many remain (default: remove while unique, i.e.
        minimal puzzles). max_clues: reject puzzles with more clues (default: no limit).
    start: index of the first puzzle, to generate a large set in pieces.

    Returns int8 arrays: "puzzles" [n, 81], "solutions" [n, 81], "order" [n, 81] (step at which the
    grader filled each cell, -1 for clues), "strategy" [n, 81] (index into TECHNIQUES, GUESS for a
    guessed cell, -1 for clues), "difficulty" [n] (hardest strategy used; BEYOND for the hard split).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or not 0 <= start < 2**63:
        raise ValueError(f"start must be a non-negative integer, got {start!r}")
    lo = 17 if min_clues is None else min_clues
    hi = 81 if max_clues is None else max_clues
    if not isinstance(lo, (int, np.integer)) or not 17 <= lo <= 80:
        raise ValueError(f"min_clues must be an integer in [17, 80] (no unique puzzle has fewer than 17 clues), "
                         f"got {min_clues!r}")
    if not isinstance(hi, (int, np.integer)) or not _MIN_MAX_CLUES <= hi <= 81 or hi < lo:
        raise ValueError(
            f"max_clues must be an integer in [max({_MIN_MAX_CLUES}, min_clues), 81], got {max_clues!r}"
            f" (minimal puzzles have about 24 clues; a lower ceiling would reject almost all of them)"
        )
    nthreads = _threads(threads)
    n = int(n)
    out = {
        "puzzles": np.zeros((n, 81), np.int8),
        "solutions": np.zeros((n, 81), np.int8),
        "order": np.zeros((n, 81), np.int8),
        "strategy": np.zeros((n, 81), np.int8),
        "difficulty": np.zeros(n, np.int8),
    }
    attempts = np.zeros(n, np.int32)
    bar = None
    if progress:
        from tqdm import tqdm  # noqa: PLC0415

        bar = tqdm(total=n, desc=f"sudoku {split}", unit="puzzle", smoothing=0.1)
    try:
        for a in range(0, n, _CHUNK):
            b = min(n, a + _CHUNK)
            _native.sudoku_generate(
                out["puzzles"][a:b], out["solutions"][a:b], out["order"][a:b], out["strategy"][a:b],
                out["difficulty"][a:b], attempts[a:b], int(start) + a, int(seed), SPLITS.index(split),
                int(lo), int(hi), nthreads,
            )
            if (attempts[a:b] < 0).any():
                raise ValueError(
                    f"no {split} puzzle with clues in [{lo}, {hi}] after {_native.sudoku_max_attempts()} tries "
                    f"(puzzle {int(start) + a + int(np.argmax(attempts[a:b] < 0))}); widen min_clues/max_clues "
                    "(minimal puzzles have about 24 clues; many clues make puzzles easy)"
                )
            if bar is not None:
                bar.update(b - a)
    finally:
        if bar is not None:
            bar.close()
    return out


def _as_grids(puzzles, name: str = "puzzles") -> tuple[np.ndarray, bool]:
    """Puzzles as a C-contiguous int8 [n, 81] array; the flag says whether one grid was given."""
    from fastmdm.sudoku.grids import as_grid_array  # noqa: PLC0415

    return as_grid_array(puzzles, name)


class Solution(NamedTuple):
    """Result of `solve`: `count` solutions found (stopped at the limit), the first one found
    (int8 [81]) or None when there is none."""

    count: int
    solution: np.ndarray | None


def solve_batch(puzzles, limit: int = 2, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Count solutions (up to `limit`) of a batch: returns (counts int32 [n], solutions int8 [n, 81]),
    each solution the first one found (zeros when there is none). Clashing givens count 0."""
    arr, _ = _as_grids(puzzles)
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    counts = np.zeros(len(arr), np.int32)
    sols = np.zeros_like(arr)
    _native.sudoku_count(arr, int(limit), counts, sols, _threads(threads))
    return counts, sols


def solve(puzzle, limit: int = 2) -> Solution:
    """Solve one puzzle exactly, counting solutions up to `limit` (2 tells unique from not).

    `puzzle`: 81 cells (str with '.'/'0' blanks, sequence, numpy array or torch tensor).
    """
    arr, single = _as_grids(puzzle, "puzzle")
    if not single:
        raise ValueError(f"puzzle must be one grid of 81 cells, got shape {arr.shape}; use solve_batch for many")
    counts, sols = solve_batch(arr, limit, threads=1)
    count = int(counts[0])
    return Solution(count, sols[0] if count else None)


def count_solutions(puzzle, limit: int = 2) -> int:
    """Number of solutions of one puzzle, counted up to `limit`."""
    return solve(puzzle, limit).count


class Grade(NamedTuple):
    """Result of `grade`: difficulty (index of the hardest strategy used, BEYOND if the seven
    strategies could not finish), its name, whether the seven finished, the solution, and the
    solver's per-cell order and strategy (int8 [81], -1 for clues)."""

    difficulty: int
    name: str
    finished: bool
    solution: np.ndarray
    order: np.ndarray
    strategy: np.ndarray


def grade_batch(puzzles, solutions=None, threads: int | None = None, *,
                max_strategy: int = len(TECHNIQUES) - 1) -> dict[str, np.ndarray]:
    """Grade a batch with the seven strategies. With `solutions`, a stuck grader guesses from them
    (so order and strategy are complete); without, it stops where it is stuck and the rest stay -1.
    `max_strategy` < 6 allows only TECHNIQUES[:max_strategy + 1] (to show a puzzle needs a strategy).

    Returns int8 arrays "order", "strategy" [n, 81] and "difficulty" [n]: the hardest strategy used,
    BEYOND when a guess was needed, -1 for a full grid, -2 for contradictory candidates (no
    solution), -3 when a placement disagreed with the given solution (several solutions).
    The puzzles are assumed unique (unique rectangles rely on it); `grade` checks that for you.
    """
    arr, _ = _as_grids(puzzles)
    sol = None
    if solutions is not None:
        sol, _ = _as_grids(solutions, "solutions")
        if sol.shape != arr.shape:
            raise ValueError(f"solutions must have the shape of puzzles {arr.shape}, got {sol.shape}")
    is_int = isinstance(max_strategy, (int, np.integer)) and not isinstance(max_strategy, bool)
    if not is_int or not 0 <= max_strategy < len(TECHNIQUES):
        raise ValueError(f"max_strategy must be an index into TECHNIQUES (0-{len(TECHNIQUES) - 1}), "
                         f"got {max_strategy!r}")
    n = len(arr)
    order = np.zeros((n, 81), np.int8)
    strategy = np.zeros((n, 81), np.int8)
    difficulty = np.zeros(n, np.int8)
    _native.sudoku_grade(arr, sol, order, strategy, difficulty, int(max_strategy), _threads(threads))
    return {"order": order, "strategy": strategy, "difficulty": difficulty}


def unique_solution(puzzle, line: int | None = None) -> np.ndarray:
    """The solution (int8 [81]) of one puzzle. Raises ValueError (naming `line` when given) if the givens
    clash (saying which digit repeats where), or the puzzle has no solution or several."""
    from fastmdm.sudoku.grids import check_givens  # noqa: PLC0415

    arr, single = _as_grids(puzzle, "puzzle")
    if not single:
        raise ValueError(f"puzzle must be one grid of 81 cells, got shape {arr.shape}; use check_puzzles for many")
    check_givens(arr[0], line=line)
    where = f"line {line}: " if line is not None else ""
    sol = solve(arr[0])
    if sol.count == 0:
        raise ValueError(f"{where}puzzle has no solution")
    if sol.count > 1:
        raise ValueError(f"{where}puzzle has several solutions; a Sudoku needs a unique one")
    return sol.solution


def grade(puzzle, line: int | None = None) -> Grade:
    """Grade one puzzle. Raises ValueError (naming `line` when given) if the givens clash, or the
    puzzle has no solution or several (`unique_solution`)."""
    arr, single = _as_grids(puzzle, "puzzle")
    if not single:
        raise ValueError(f"puzzle must be one grid of 81 cells, got shape {arr.shape}; use grade_batch for many")
    solution = unique_solution(arr[0], line)
    where = f"line {line}: " if line is not None else ""
    g = grade_batch(arr, solution[None], threads=1)
    d = int(g["difficulty"][0])
    if d < -1:  # cannot happen for a unique puzzle: the strategies are sound
        raise RuntimeError(f"{where}grader failed with code {d} on a unique puzzle; please report it")
    return Grade(d, DIFFICULTY_NAMES[d] if d >= 0 else "none", d != BEYOND, solution,
                 g["order"][0], g["strategy"][0])


#: names of the per-cell hardness classes of `cell_hardness`: the seven techniques, then BEYOND_CLASS
HARDNESS_CLASSES: tuple[str, ...] = TECHNIQUES + ("beyond",)
BEYOND_CLASS = len(TECHNIQUES)  # a blank the seven techniques do not place
CONTRADICTORY = -2  # every blank of a board whose candidates become contradictory
#: names of the classes of `immediate_singles`
IMMEDIATE_CLASSES: tuple[str, ...] = ("naked_single", "hidden_single", "neither")


def _board_call(boards, threads, want_hardness: bool, want_immediate: bool):
    arr, _ = _as_grids(boards, "boards")
    nthreads = _threads(threads)
    hardness = np.zeros_like(arr) if want_hardness else None
    immediate = np.zeros_like(arr) if want_immediate else None
    _native.sudoku_hardness(arr, hardness, immediate, nthreads)
    return hardness, immediate


def cell_hardness(boards, threads: int | None = None) -> np.ndarray:
    """Per-cell hardness class of boards (0 = blank): int8 [n, 81] (a single board gives [1, 81]).

    The class of a blank is the smallest s such that the grader with the techniques TECHNIQUES[:s + 1]
    only, propagating from the board as given (other placements may come first) and never guessing
    (`grade_batch(boards, max_strategy=s)`), places that cell; BEYOND_CLASS (7, "beyond") when the seven
    techniques do not place it. Filled cells (clues, or cells a model filled) get -1. A board whose
    candidates become contradictory while grading (possible only when a filled digit is wrong) gets
    CONTRADICTORY (-2) on all its blanks. Names: HARDNESS_CLASSES.

    One full grade per board: the grader restricted to s takes the same steps as the full grader until the
    full one first needs a technique harder than s, so a cell's class is the hardest technique used up to
    the step that placed it. Consequently the cells of class <= s are exactly those `grade_batch` with
    `max_strategy=s` places. Boards are assumed to have at most one solution, as a puzzle with some blanks
    filled has (unique rectangles rely on it). Filling right digits can, rarely, make a cell harder: a unique
    rectangle needs four blank corners, so once one is filled the grader may get stuck where it did not (in one
    check, 5 of 2,000 standard puzzles with 5% of their blanks filled right). 10^5 boards take well under a
    second on two threads.
    """
    return _board_call(boards, threads, True, False)[0]


def immediate_singles(boards, threads: int | None = None) -> np.ndarray:
    """Which blanks are singles on the board as given, with no other placement: int8 [n, 81], 0 = naked
    single (one candidate), 1 = hidden single (not naked; a digit with this one place in a row, column or
    box), 2 = neither (names: IMMEDIATE_CLASSES), -1 for filled cells, CONTRADICTORY (-2) on every blank
    when the board itself is contradictory (a digit twice in a unit, a blank with no candidate, or a digit
    with no place left in a unit). On a board that is not contradictory, class 0 here implies
    `cell_hardness` 0 and class 1 implies `cell_hardness` at most 1."""
    return _board_call(boards, threads, False, True)[1]


# Status codes of `check_puzzles`.
OK, CLASH, NO_SOLUTION, SEVERAL = 0, 1, 2, 3
STATUS_NAMES: tuple[str, ...] = ("ok", "contradictory givens", "no solution", "several solutions")


def check_puzzles(puzzles, threads: int | None = None) -> np.ndarray:
    """Validate puzzles as a dataset author needs: int8 [n] status per puzzle, OK (exactly one
    solution), CLASH (two givens repeat a digit in a unit), NO_SOLUTION or SEVERAL (names in
    STATUS_NAMES)."""
    from fastmdm.sudoku.grids import givens_clash  # noqa: PLC0415

    arr, _ = _as_grids(puzzles)
    counts, _ = solve_batch(arr, 2, threads)
    status = np.where(counts == 1, OK, np.where(counts == 0, NO_SOLUTION, SEVERAL)).astype(np.int8)
    status[givens_clash(arr)] = CLASH
    return status
