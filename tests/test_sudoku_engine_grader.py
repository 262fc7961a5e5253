"""Human-strategy grader: each strategy on a hand-built position that needs exactly it, and on
generated puzzles whose grade is exactly that strategy."""
import numpy as np
import pytest

from fastmdm import _native
from fastmdm.sudoku import engine

FULL = 0x1FF
NS, HS, NP, NT, LC, XY, UR = range(7)


def _mask(*digits):
    return sum(1 << (d - 1) for d in digits)


def _position(cands):
    """All-blank grid; every cell may be any digit except where `cands` ({cell: digits}) says."""
    grid = np.zeros(81, np.int8)
    cand = np.full(81, FULL, np.uint16)
    for c, digits in cands.items():
        cand[c] = _mask(*digits)
    return grid, cand


def _apply(grid, cand, s):
    g, c = grid.copy(), cand.copy()
    r = _native.sudoku_apply_strategy(g, c, s)
    return r, g, c


def _only_this_strategy_progresses(grid, cand, s):
    """The easier strategies do nothing on the position; strategy s does."""
    for easier in range(s):
        r, g, c = _apply(grid, cand, easier)
        assert r == 0, f"{engine.TECHNIQUES[easier]} already progresses"
        assert (g == grid).all() and (c == cand).all()
    r, g, c = _apply(grid, cand, s)
    assert r == 1
    return g, c


def _cells(row=None, col=None, box=None):
    out = []
    for c in range(81):
        r, k = divmod(c, 9)
        if row is not None and r != row or col is not None and k != col:
            continue
        if box is not None and (r // 3) * 3 + k // 3 != box:
            continue
        out.append(c)
    return out


def test_naked_single_places_the_only_candidate_and_clears_it_from_peers():
    grid, cand = _position({40: [5]})
    g, c = _only_this_strategy_progresses(grid, cand, NS)
    assert g[40] == 5 and c[40] == 0
    assert all(c[p] == FULL & ~_mask(5) for p in _cells(row=4) + _cells(col=4) + _cells(box=4) if p != 40)
    assert c[0] == FULL


def test_hidden_single_places_a_digit_with_one_place_in_a_row():
    grid, cand = _position({c: [1, 2, 3, 4, 5, 6, 8, 9] for c in _cells(row=0) if c != 3})
    g, c = _only_this_strategy_progresses(grid, cand, HS)
    assert g[3] == 7 and (g != 0).sum() == 1


def test_naked_pair_removes_its_digits_from_the_rest_of_the_row():
    grid, cand = _position({0: [1, 2], 5: [1, 2]})  # cells 0 and 5 share row 0 only
    g, c = _only_this_strategy_progresses(grid, cand, NP)
    assert (g == 0).all()
    assert all(c[p] == FULL & ~_mask(1, 2) for p in _cells(row=0) if p not in (0, 5))
    assert c[9] == FULL  # other units untouched
    assert c[0] == c[5] == _mask(1, 2)


def test_naked_triple_removes_its_three_digits_from_the_rest_of_the_column():
    grid, cand = _position({4: [1, 2], 40: [2, 3], 76: [1, 3]})  # column 4, three boxes
    g, c = _only_this_strategy_progresses(grid, cand, NT)
    assert all(c[p] == FULL & ~_mask(1, 2, 3) for p in _cells(col=4) if p not in (4, 40, 76))
    assert c[3] == FULL


def test_locked_candidate_pointing_removes_the_digit_from_the_rest_of_the_row():
    # In box 0, digit 4 may only go in row 0 (cells 0 and 1).
    grid, cand = _position({c: [1, 2, 3, 5, 6, 7, 8, 9] for c in _cells(box=0) if c not in (0, 1)})
    g, c = _only_this_strategy_progresses(grid, cand, LC)
    assert all(not c[p] & _mask(4) for p in _cells(row=0) if p > 2)
    assert c[0] & _mask(4) and c[1] & _mask(4)
    assert c[27] == FULL


def test_locked_candidate_claiming_removes_the_digit_from_the_rest_of_the_box():
    # In row 4, digit 6 may only go in box 4 (columns 3-5).
    grid, cand = _position({c: [1, 2, 3, 4, 5, 7, 8, 9] for c in _cells(row=4) if not 3 <= c % 9 <= 5})
    g, c = _only_this_strategy_progresses(grid, cand, LC)
    assert all(not c[p] & _mask(6) for p in _cells(box=4) if p // 9 != 4)
    assert all(c[p] & _mask(6) for p in (39, 40, 41))


def test_xy_wing_removes_z_from_cells_that_see_both_pincers():
    # Pivot r0c0 {1,2}; pincers r0c4 {1,3} and r2c0 {2,3}: 3 leaves cells seeing both pincers.
    grid, cand = _position({0: [1, 2], 4: [1, 3], 18: [2, 3]})
    g, c = _only_this_strategy_progresses(grid, cand, XY)
    both = {1, 2, 21, 22, 23}
    assert all(not c[p] & _mask(3) for p in both)
    assert all(c[p] == FULL for p in range(81) if p not in both | {0, 4, 18})


def test_unique_rectangle_type_one_removes_the_pair_from_the_fourth_corner():
    # Corners r0c0, r1c0, r0c3 hold {1,2}; r1c3 holds {1,2,5}. Rows 0-1, columns 0 and 3, box 0
    # and the rest of box 1 already lost 1 and 2 (as the naked pairs and locked candidates there
    # would have done), so no easier strategy applies.
    corners = {0: [1, 2], 9: [1, 2], 3: [1, 2], 12: [1, 2, 5]}
    others = set(_cells(row=0) + _cells(row=1) + _cells(col=0) + _cells(col=3) + _cells(box=0) + _cells(box=1))
    others -= set(corners)
    cands = {c: [3, 4, 5, 6, 7, 8, 9] for c in others}
    cands.update(corners)
    grid, cand = _position(cands)
    g, c = _only_this_strategy_progresses(grid, cand, UR)
    assert c[12] == _mask(5)


def test_no_unique_rectangle_inside_a_single_box_column_pair():
    # Same pattern on rows 0-1 and columns 0-1: all four corners in one box, no deduction.
    corners = {0: [1, 2], 9: [1, 2], 1: [1, 2], 10: [1, 2, 5]}
    grid, cand = _position(corners)
    r, g, c = _apply(grid, cand, UR)
    assert r == 0 and (c == cand).all()


@pytest.fixture(scope="module")
def standard():
    return engine.generate(400, seed=77, threads=2)


def test_each_generated_puzzle_needs_exactly_its_hardest_strategy(standard):
    seen = set()
    for d in range(1, engine.BEYOND):
        idx = np.flatnonzero(standard["difficulty"] == d)[:10]
        if len(idx) == 0:
            continue
        seen.add(d)
        p = standard["puzzles"][idx]
        with_it = engine.grade_batch(p, max_strategy=d)
        without = engine.grade_batch(p, max_strategy=d - 1)
        assert (with_it["difficulty"] == d).all()
        assert (with_it["order"][p == 0] >= 0).all()  # finished
        left = (without["order"] == -1) & (p == 0)
        assert left.any(axis=1).all()  # stuck without it
    assert seen >= {1, 2, 3, 4, 5, 6}


def test_the_grader_never_places_a_wrong_digit(standard):
    # Grading with the solution flags a disagreement as -3; the strategies are sound on unique puzzles.
    g = engine.grade_batch(standard["puzzles"], standard["solutions"])
    assert (g["difficulty"] >= 0).all()


def test_grade_of_a_famous_hard_puzzle_is_beyond_the_seven():
    g = engine.grade("8..........36......7..9.2...5...7.......457.....1...3...1....68..85...1..9....4..")
    assert g.difficulty == engine.BEYOND and g.name == "beyond_seven" and not g.finished
    assert (g.strategy == engine.GUESS).any()


def test_grade_of_an_easy_puzzle_uses_only_singles():
    # A published easy puzzle (Project Euler 96, grid 01).
    g = engine.grade("003020600900305001001806400008102900700000008006708200002609500800203009005010300")
    assert g.finished and g.difficulty <= 1 and g.name in engine.TECHNIQUES[:2]
    assert (g.solution > 0).all()


def test_grade_rejects_puzzles_without_a_unique_solution():
    with pytest.raises(ValueError, match="line 5: puzzle has several solutions"):
        engine.grade(np.zeros(81, np.int8), line=5)
    p = np.zeros(81, np.int8)
    p[:8] = range(1, 9)
    p[17] = 9  # row 0 needs a 9 at cell 8, but column 8 already has one
    with pytest.raises(ValueError, match="line 2: puzzle has no solution"):
        engine.grade(p, line=2)
    p[17] = 0
    p[9] = 1
    with pytest.raises(ValueError, match="contradictory givens: digit 1 appears twice in column 1"):
        engine.grade(p)
