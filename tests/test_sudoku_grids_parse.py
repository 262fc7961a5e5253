"""Parsing, reading, printing and validating grids."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastmdm.sudoku import engine, grids

INKALA = "8..........36......7..9.2...5...7.......457.....1...3...1....68..85...1..9....4.."


def test_parse_accepts_dots_and_zeros_as_blanks():
    a = grids.parse_puzzle(INKALA)
    b = grids.parse_puzzle(INKALA.replace(".", "0"))
    assert a.dtype == np.int8 and a.shape == (81,)
    assert (a == b).all()
    assert a[0] == 8 and a[1] == 0 and (a > 0).sum() == 21


def test_parse_names_the_line_for_wrong_length_and_bad_characters():
    with pytest.raises(ValueError, match="line 7: puzzle has 80 characters"):
        grids.parse_puzzle(INKALA[:-1], line=7)
    with pytest.raises(ValueError, match="line 3: .*'x' at position 5"):
        grids.parse_puzzle(INKALA[:5] + "x" + INKALA[6:], line=3)
    with pytest.raises(TypeError, match="str"):
        grids.parse_puzzle(123)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=".0123456789x- é\t", min_size=78, max_size=84))
def test_parser_accepts_exactly_the_valid_grids(text):
    t = text.strip()
    valid = len(t) == 81 and all(ch in ".0123456789" for ch in t)
    if valid:
        got = grids.parse_puzzle(text)
        assert got.tolist() == [0 if ch == "." else int(ch) for ch in t]
        assert grids.format_grid(got) == t.replace("0", ".")
    else:
        with pytest.raises(ValueError, match="line 4"):
            grids.parse_puzzle(text, line=4)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 9), min_size=81, max_size=81))
def test_format_then_parse_round_trips(cells):
    arr = np.array(cells, np.int8)
    assert (grids.parse_puzzle(grids.format_grid(arr)) == arr).all()


def test_read_puzzles_skips_comments_and_blank_lines_and_names_bad_lines(tmp_path):
    sol = engine.solve(INKALA).solution
    path = tmp_path / "p.txt"
    path.write_text(f"# a comment\n\n{INKALA}\n  {INKALA.replace('.', '0')}  \n")
    p = grids.read_puzzles(path)
    assert p.shape == (2, 81) and (p[0] == p[1]).all()
    path.write_text(f"# header\n{INKALA} {grids.format_grid(sol)} beyond_seven\n")
    d = grids.read_dataset(str(path))
    assert (d["solutions"][0] == sol).all()
    path.write_text(f"{INKALA}\n\n{INKALA[:40]}\n")
    with pytest.raises(ValueError, match="line 3: puzzle has 40 characters"):
        grids.read_puzzles(path)
    bad = sol.copy()
    bad[0] = 9 if sol[0] != 9 else 1
    with pytest.raises(ValueError, match="line 1: solution changes the clue at cell 0"):
        grids.read_puzzles([f"{INKALA} {grids.format_grid(bad)}"])


def test_check_givens_names_the_clash_and_the_line():
    p = grids.parse_puzzle(INKALA)
    grids.check_givens(p)
    p[1] = 8  # row 1 already has an 8 at cell 0
    with pytest.raises(ValueError, match="line 12: contradictory givens: digit 8 appears twice in row 1"):
        grids.check_givens(p, line=12)


def test_pretty_draws_a_boxed_grid():
    text = grids.pretty(grids.parse_puzzle(INKALA))
    lines = text.splitlines()
    assert len(lines) == 13
    assert lines[0] == lines[4] == lines[8] == lines[12] == "+-------+-------+-------+"
    assert lines[1] == "| 8 . . | . . . | . . . |"


def test_valid_solutions_flags_each_kind_of_wrong_answer():
    data = engine.generate(6, seed=1, threads=1)
    p = torch.from_numpy(data["puzzles"]).long()
    s = torch.from_numpy(data["solutions"]).long()
    bad = s.clone()
    bad[1, 0], bad[1, 1] = s[1, 1], s[1, 0]  # swap two digits: a row stays fine, columns break
    blank = np.flatnonzero(data["puzzles"][2] == 0)[0]
    bad[2, blank] = 0  # a blank left
    bad[3, blank] = 10  # a value outside 1-9 (a mask id)
    # Keep the grid valid but change a clue: relabel two digits everywhere.
    a, b = int(s[4, 0]), int(s[4, 1])
    bad[4] = torch.where(s[4] == a, b, torch.where(s[4] == b, a, s[4]))
    ok = grids.valid_solutions(p, bad)
    assert ok.dtype == torch.bool and ok.tolist() == [True, False, False, False, False, True]
    assert grids.valid_solutions(p.to(torch.int8), s.to(torch.int8)).all()


def test_valid_solutions_rejects_bad_shapes_and_types():
    with pytest.raises(ValueError, match=r"\[B, 81\]"):
        grids.valid_solutions(torch.zeros(2, 80, dtype=torch.long), torch.zeros(2, 80, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        grids.valid_solutions(torch.zeros(2, 81), torch.zeros(2, 81))
    with pytest.raises(TypeError, match="torch.Tensor"):
        grids.valid_solutions(np.zeros((2, 81)), torch.zeros(2, 81, dtype=torch.long))


def test_check_flags_each_kind_of_bad_puzzle_and_read_names_its_line(tmp_path):
    good = grids.parse_puzzle(INKALA)
    clash = good.copy()
    clash[1] = 8  # row 1 has an 8 already
    several = good.copy()
    several[0] = 0
    none = np.zeros(81, np.int8)
    none[:8] = range(1, 9)
    none[17] = 9  # cell 8 must be 9, but its column has one
    status = engine.check_puzzles(np.stack([good, clash, several, none]))
    assert status.tolist() == [engine.OK, engine.CLASH, engine.SEVERAL, engine.NO_SOLUTION]
    assert grids.givens_clash(np.stack([good, clash, none])).tolist() == [False, True, False]
    lines = [INKALA, "# comment", grids.format_grid(several)]
    grids.read_dataset(lines)  # parsing alone does not solve
    with pytest.raises(ValueError, match="line 3: several solutions"):
        grids.read_dataset(lines, check=True)
    with pytest.raises(ValueError, match="line 2: contradictory givens"):
        grids.read_dataset([INKALA, grids.format_grid(clash)], check=True)
    path = tmp_path / "x.npz"
    grids.save_npz(path, {"puzzles": np.stack([good, none])})
    with pytest.raises(ValueError, match="puzzle 1: no solution"):
        grids.read_dataset(path, check=True)
