"""Per-cell hardness (`engine.cell_hardness`, `engine.immediate_singles`): hand-built boards for the singles and
one elimination technique, generated cells for every other class checked against the restricted grader, the
class against `grade_batch(max_strategy=s)` on whole batches, contradictory boards, and input errors."""
import numpy as np
import pytest

from fastmdm.sudoku import engine

NS, HS, NP, NT, LC, XY, UR = range(7)
BEYOND = engine.BEYOND_CLASS
FAMOUS_HARD = "8..........36......7..9.2...5...7.......457.....1...3...1....68..85...1..9....4.."
EULER_01 = "003020600900305001001806400008102900700000008006708200002609500800203009005010300"


def _board(clues):
    """An otherwise blank board with {(row, col): digit}."""
    b = np.zeros(81, np.int8)
    for (r, c), d in clues.items():
        b[r * 9 + c] = d
    return b


def _placed(boards, s):
    """The blanks `grade_batch` with strategies <= s places: the independent check of a class."""
    return engine.grade_batch(boards, max_strategy=s)["order"] >= 0


@pytest.fixture(scope="module")
def generated():
    std = engine.generate(300, "standard", seed=11, threads=2)
    hard = engine.generate(100, "hard", seed=11, threads=2)
    return {k: np.concatenate([std[k], hard[k]]) for k in ("puzzles", "solutions")}


@pytest.fixture(scope="module")
def partial(generated):
    """Puzzles with a random half of their blanks filled from the solution: the boards decoding meets."""
    rng = np.random.default_rng(3)
    p, s = generated["puzzles"], generated["solutions"]
    return np.where((p == 0) & (rng.random(p.shape) < 0.5), s, p).astype(np.int8)


def test_a_solved_grid_with_one_blank_is_a_naked_single():
    grid = engine.solve(EULER_01).solution.copy()
    grid[40] = 0
    h, im = engine.cell_hardness(grid), engine.immediate_singles(grid)
    assert h.shape == im.shape == (1, 81) and h.dtype == np.int8
    assert h[0, 40] == NS and im[0, 40] == NS
    assert (np.delete(h[0], 40) == -1).all() and (np.delete(im[0], 40) == -1).all()


def test_a_hidden_single_is_class_one_and_not_a_naked_single():
    # Digit 1 in rows 1 and 2 and in columns 1 and 2 leaves box 0 only r0c0 for a 1; r0c0 itself has
    # nine candidates, and four clues give no naked single anywhere.
    b = _board({(1, 4): 1, (2, 7): 1, (4, 1): 1, (7, 2): 1})
    h, im = engine.cell_hardness(b)[0], engine.immediate_singles(b)[0]
    assert h[0] == HS and im[0] == HS
    assert not _placed(b[None], NS)[0, 0] and _placed(b[None], HS)[0, 0]
    assert (h[b == 0][1:] == BEYOND).all() and (im[b == 0][1:] == 2).all()  # nothing else is reachable


def test_a_locked_candidate_makes_a_hidden_single():
    # Box 0: rows 1-2 are filled or, in column 2, lose the 1 to r8c2, so its 1 lies in row 0 (r0c0, r0c1)
    # and leaves the rest of row 0 (pointing). Box 1 then has one place for a 1, r1c4 (r0c4 lost it;
    # columns 3 and 5 hold a 1, r2c4 is filled). Row 1 and column 4 still have other places for a 1.
    b = _board({(1, 0): 2, (1, 1): 3, (2, 0): 4, (2, 1): 5, (2, 4): 6, (5, 3): 1, (6, 5): 1, (8, 2): 1})
    cell = 1 * 9 + 4
    h, im = engine.cell_hardness(b)[0], engine.immediate_singles(b)[0]
    assert h[cell] == LC and im[cell] == 2
    assert not _placed(b[None], LC - 1)[0, cell] and _placed(b[None], LC)[0, cell]
    g = engine.grade_batch(b[None])
    assert g["order"][0, cell] == 0 and g["strategy"][0, cell] == LC  # the first placement, after the pointing


@pytest.mark.parametrize("s", [NP, NT, LC, XY, UR, BEYOND])
def test_generated_cells_of_each_class_need_exactly_that_technique(generated, partial, s):
    boards = np.concatenate([generated["puzzles"], partial])
    h = engine.cell_hardness(boards, threads=2)
    rows, cells = np.nonzero(h == s)
    assert len(rows), f"no cell of class {engine.HARDNESS_CLASSES[s]} in the generated boards"
    pick = np.random.default_rng(s).choice(len(rows), size=min(20, len(rows)), replace=False)
    rows, cells = rows[pick], cells[pick]
    without = _placed(boards[rows], s - 1)[np.arange(len(rows)), cells]
    assert not without.any()
    if s < BEYOND:
        assert _placed(boards[rows], s)[np.arange(len(rows)), cells].all()


def test_a_famous_hard_puzzle_has_cells_beyond_the_seven():
    h = engine.cell_hardness(FAMOUS_HARD)[0]
    assert (h == BEYOND).sum() > 40
    assert engine.HARDNESS_CLASSES[BEYOND] == "beyond" and engine.HARDNESS_CLASSES[:7] == engine.TECHNIQUES


def test_cells_of_class_at_most_s_are_exactly_those_the_grader_with_s_places(generated, partial):
    for boards in (generated["puzzles"], partial):
        h = engine.cell_hardness(boards, threads=2)
        blank = boards == 0
        assert ((h >= 0) == blank).all() and (h[~blank] == -1).all()
        for s in range(7):
            assert (((h <= s) & blank) == _placed(boards, s)).all(), engine.TECHNIQUES[s]


def test_immediate_singles_are_placed_at_or_below_their_class(partial):
    h, im = engine.cell_hardness(partial), engine.immediate_singles(partial)
    assert (h[im == NS] == NS).all()
    assert (h[im == HS] <= HS).all() and (im == HS).any()
    assert ((im == -1) == (partial != 0)).all()


def test_the_result_does_not_depend_on_threads(partial):
    assert (engine.cell_hardness(partial, threads=1) == engine.cell_hardness(partial, threads=2)).all()
    assert (engine.immediate_singles(partial, threads=1) == engine.immediate_singles(partial, threads=2)).all()


def test_a_board_with_a_repeated_digit_is_contradictory_on_every_blank():
    b = _board({(0, 0): 5, (0, 8): 5, (4, 4): 1})
    for h in (engine.cell_hardness(b)[0], engine.immediate_singles(b)[0]):
        assert (h[b == 0] == engine.CONTRADICTORY).all() and (h[b != 0] == -1).all()


def test_a_wrong_digit_that_clashes_with_nothing_can_still_be_contradictory(generated):
    # A wrong digit in a blank where it repeats nothing: the board looks fine now, but propagation
    # runs into a contradiction on some of these boards.
    p, s = generated["puzzles"][:100], generated["solutions"][:100]
    boards = []
    for puz, sol in zip(p, s):
        c = int(np.flatnonzero(puz == 0)[0])
        for d in range(1, 10):
            b = puz.copy()
            b[c] = d
            if d != sol[c] and not (engine.immediate_singles(b) == engine.CONTRADICTORY).any():
                boards.append(b)
                break
    boards = np.stack(boards)
    h, im = engine.cell_hardness(boards), engine.immediate_singles(boards)
    bad = (h == engine.CONTRADICTORY).any(1)
    assert bad.any() and not (im[bad] == engine.CONTRADICTORY).any()
    for b, hb in zip(boards[bad], h[bad]):
        assert (hb[b == 0] == engine.CONTRADICTORY).all()
    assert (engine.grade_batch(boards[bad])["difficulty"] == -2).all()


@pytest.mark.parametrize("bad, err, match", [
    (np.zeros((2, 80), np.int8), ValueError, "boards must have 81 cells"),
    (np.full(81, 10), ValueError, r"boards must hold 0 \(blank\) or 1-9"),
    (np.zeros(81, np.float32), TypeError, "boards must hold integers 0-9"),
])
def test_bad_boards_are_refused_with_a_clear_error(bad, err, match):
    for fn in (engine.cell_hardness, engine.immediate_singles):
        with pytest.raises(err, match=match):
            fn(bad)


def test_bad_threads_are_refused():
    with pytest.raises(ValueError, match="threads must be a positive integer or None"):
        engine.cell_hardness(np.zeros(81, np.int8), threads=0)


def test_an_empty_batch_gives_an_empty_result():
    assert engine.cell_hardness(np.zeros((0, 81), np.int8)).shape == (0, 81)
