"""Exact solver: brute force agreement, known puzzles, bad input."""
import itertools

import numpy as np
import pytest

from fastmdm.sudoku import engine, grids

# Arto Inkala's 2012 puzzle (published widely as "the world's hardest Sudoku"): unique.
INKALA = "8..........36......7..9.2...5...7.......457.....1...3...1....68..85...1..9....4.."
# A classic 17-clue puzzle (Gordon Royle's list): unique.
SEVENTEEN = "000000010400000000020000000000050407008000300001090000300400200050100000000806000"


def _units_ok(grid):
    g = grid.reshape(9, 9)
    boxes = g.reshape(3, 3, 3, 3).transpose(0, 2, 1, 3).reshape(9, 9)
    return all(sorted(u) == list(range(1, 10)) for units in (g, g.T, boxes) for u in units)


_UNITS = np.array(
    [[r * 9 + c for c in range(9)] for r in range(9)]
    + [[r * 9 + c for r in range(9)] for c in range(9)]
    + [[((b // 3) * 3 + i // 3) * 9 + (b % 3) * 3 + i % 3 for i in range(9)] for b in range(9)]
)


def _brute_force_count(puzzle):
    """Tries every digit in every blank (few blanks only) and counts valid complete grids."""
    blanks = np.flatnonzero(puzzle == 0)
    # Only digits that no given in the same row, column or box already holds (pruning, not solving).
    options = []
    for c in blanks:
        seen = set(puzzle[_UNITS[(_UNITS == c).any(axis=1)]].ravel().tolist())
        options.append([d for d in range(1, 10) if d not in seen])
    combos = np.array(list(itertools.product(*options)), np.int64).reshape(-1, len(blanks))
    g = np.repeat(puzzle[None].astype(np.int64), len(combos), axis=0)
    g[:, blanks] = combos
    units = np.sort(g[:, _UNITS], axis=2)  # [N, 27, 9]
    return int((units == np.arange(1, 10)).all(axis=(1, 2)).sum())


def _random_grid(seed):
    return engine.generate(1, seed=seed, threads=1)["solutions"][0]


def test_solver_counts_match_brute_force_on_partially_filled_grids():
    rng = np.random.default_rng(0)
    checked_multi = checked_none = 0
    for trial in range(40):
        full = _random_grid(trial)
        puzzle = full.copy()
        # Twelve blanks keep brute force small; blanking a rectangle makes several solutions
        # possible, changing a clue makes none likely.
        blanks = rng.choice(81, size=12, replace=False)
        puzzle[blanks] = 0
        rect = _deadly_rectangle(full)
        if trial % 3 == 2 and rect is not None:  # blank a swappable rectangle too: two solutions
            r1, r2, c1, c2 = rect
            puzzle[[r1 * 9 + c1, r1 * 9 + c2, r2 * 9 + c1, r2 * 9 + c2]] = 0
        if trial % 3 == 1:
            keep = np.flatnonzero(puzzle)
            c = rng.choice(keep)
            puzzle[c] = rng.integers(1, 10)
        want = _brute_force_count(puzzle)
        got = engine.count_solutions(puzzle, limit=100)
        assert got == want, (grids.format_grid(puzzle), got, want)
        checked_multi += want > 1
        checked_none += want == 0
    assert checked_none > 0 and checked_multi > 0


def _deadly_rectangle(full):
    """A rectangle on two rows of one band and two columns of different stacks holding {a, b}
    crosswise (blanking it leaves exactly two solutions), or None."""
    g = full.reshape(9, 9)
    for r1, r2 in [(0, 1), (0, 2), (1, 2), (3, 4), (3, 5), (4, 5), (6, 7), (6, 8), (7, 8)]:
        for c1 in range(9):
            for c2 in range(c1 + 1, 9):
                if c1 // 3 != c2 // 3 and g[r1, c1] == g[r2, c2] and g[r1, c2] == g[r2, c1]:
                    return r1, r2, c1, c2
    return None


def test_solver_finds_every_solution_of_a_deadly_rectangle():
    sols = engine.generate(20, seed=11, threads=1)["solutions"]
    full = next(s for s in sols if _deadly_rectangle(s) is not None)
    r1, r2, c1, c2 = _deadly_rectangle(full)
    puzzle = full.copy().reshape(9, 9)
    puzzle[[r1, r1, r2, r2], [c1, c2, c1, c2]] = 0
    assert engine.count_solutions(puzzle.reshape(81), limit=10) == 2 == _brute_force_count(puzzle.reshape(81))


def test_known_unique_puzzles_have_one_solution_that_keeps_the_clues():
    for text in (INKALA, SEVENTEEN):
        p = grids.parse_puzzle(text)
        count, sol = engine.solve(p)
        assert count == 1
        assert _units_ok(sol)
        assert ((p == 0) | (p == sol)).all()


def test_empty_and_underdetermined_grids_have_several_solutions():
    assert engine.count_solutions(np.zeros(81, np.int8), limit=2) == 2
    assert engine.count_solutions(np.zeros(81, np.int8), limit=50) == 50
    p = grids.parse_puzzle(INKALA)
    p[0] = 0  # drop a clue of a minimal puzzle
    assert engine.count_solutions(p, limit=2) == 2


def test_contradictory_givens_have_no_solution():
    p = np.zeros(81, np.int8)
    p[0] = p[1] = 5
    assert engine.solve(p).count == 0
    assert engine.solve(p).solution is None


def test_solve_batch_matches_single_solves_and_keeps_row_order():
    data = engine.generate(16, seed=3, threads=2)
    p = data["puzzles"].copy()
    p[::2, :] = 0  # even rows: empty grids, several solutions
    counts, sols = engine.solve_batch(p, limit=2, threads=2)
    assert counts.tolist() == [2, 1] * 8
    assert (sols[1::2] == data["solutions"][1::2]).all()


def test_solver_rejects_bad_input_with_clear_messages():
    with pytest.raises(ValueError, match="81 cells"):
        engine.solve(np.zeros(80, np.int8))
    with pytest.raises(ValueError, match="0 \\(blank\\) or 1-9"):
        engine.solve(np.full(81, 10))
    with pytest.raises(TypeError, match="integers"):
        engine.solve(np.zeros(81, np.float32))
    with pytest.raises(ValueError, match="limit"):
        engine.solve(np.zeros(81, np.int8), limit=0)
    with pytest.raises(ValueError, match="solve_batch"):
        engine.solve(np.zeros((2, 81), np.int8))


def test_propagating_and_plain_searches_agree_on_counts_and_solutions():
    from fastmdm import _native

    data = engine.generate(60, seed=21, threads=2)
    rng = np.random.default_rng(1)
    p = data["puzzles"].copy()
    for row in p[20:40]:  # drop one or two clues: usually several solutions
        row[rng.choice(np.flatnonzero(row), size=rng.integers(1, 3), replace=False)] = 0
    for row in p[40:]:  # change a clue: usually no solution
        c = rng.choice(np.flatnonzero(row))
        row[c] = row[c] % 9 + 1
    out = {}
    for plain in (False, True):
        counts = np.zeros(len(p), np.int32)
        sols = np.zeros_like(p)
        _native.sudoku_count(p, 5, counts, sols, 2, plain)
        out[plain] = counts, sols
    assert (out[False][0] == out[True][0]).all()
    assert len(set(out[False][0].tolist())) >= 3  # 0, 1 and several all occur
    unique = out[False][0] == 1
    assert (out[False][1][unique] == out[True][1][unique]).all()
