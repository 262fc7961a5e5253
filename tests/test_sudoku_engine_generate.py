"""Generation: uniqueness, consistency, split properties, determinism."""
import numpy as np
import pytest

from fastmdm.sudoku import engine, grids


@pytest.fixture(scope="module")
def standard():
    return engine.generate(300, "standard", seed=123, threads=2)


@pytest.fixture(scope="module")
def hard():
    return engine.generate(40, "hard", seed=123, threads=2)


def _check_consistent(data):
    p, s = data["puzzles"], data["solutions"]
    assert p.dtype == s.dtype == data["order"].dtype == data["strategy"].dtype == data["difficulty"].dtype == np.int8
    assert ((p == 0) | (p == s)).all()
    counts, sols = engine.solve_batch(p, limit=2)
    assert (counts == 1).all()
    assert (sols == s).all()
    import torch

    assert grids.valid_solutions(torch.from_numpy(p), torch.from_numpy(s)).all()


def test_every_generated_standard_puzzle_is_unique_and_matches_its_solution(standard):
    _check_consistent(standard)


def test_every_generated_hard_puzzle_is_unique_and_matches_its_solution(hard):
    _check_consistent(hard)


def test_standard_puzzles_are_finished_by_the_seven_strategies_with_a_realistic_mix(standard):
    d = standard["difficulty"]
    assert ((d >= 0) & (d < engine.BEYOND)).all()
    clues = (standard["puzzles"] > 0).sum(1)
    assert clues.mean() <= 30
    assert np.mean(d >= 2) >= 0.25  # at least a quarter need more than singles
    assert len(np.unique(d)) >= 5  # most strategies show up as the hardest one somewhere
    assert (standard["strategy"] < engine.GUESS).all()


def test_hard_puzzles_are_beyond_the_seven_strategies(hard):
    assert (hard["difficulty"] == engine.BEYOND).all()
    assert (hard["strategy"] == engine.GUESS).any(axis=1).all()
    # Without guessing the grader gets stuck with blanks left.
    g = engine.grade_batch(hard["puzzles"])
    blanks = hard["puzzles"] == 0
    assert ((g["order"] == -1) & blanks).any(axis=1).all()


def test_order_and_strategy_cover_exactly_the_blanks_once(standard, hard):
    for data in (standard, hard):
        blanks = data["puzzles"] == 0
        assert ((data["order"] == -1) == ~blanks).all()
        assert ((data["strategy"] == -1) == ~blanks).all()
        for o, b in zip(data["order"][:50], blanks[:50]):
            assert sorted(o[b].tolist()) == list(range(b.sum()))
        assert (data["strategy"].max(axis=1) == data["difficulty"]).all()


def test_recorded_grade_matches_a_fresh_grade(standard, hard):
    for data in (standard, hard):
        g = engine.grade_batch(data["puzzles"], data["solutions"])
        assert (g["difficulty"] == data["difficulty"]).all()
        assert (g["order"] == data["order"]).all()
        assert (g["strategy"] == data["strategy"]).all()


def test_same_seed_gives_same_bytes_for_any_thread_count():
    for split, n in (("standard", 40), ("hard", 10)):
        a = engine.generate(n, split, seed=9, threads=1)
        b = engine.generate(n, split, seed=9, threads=2)
        c = engine.generate(n, split, seed=9, threads=5)
        for k in a:
            assert a[k].tobytes() == b[k].tobytes() == c[k].tobytes()
        d = engine.generate(n, split, seed=10, threads=2)
        assert not (a["puzzles"] == d["puzzles"]).all()


def test_start_generates_a_later_slice_of_the_same_sequence():
    whole = engine.generate(12, seed=4, threads=2)
    tail = engine.generate(5, seed=4, threads=1, start=7)
    for k in whole:
        assert (whole[k][7:] == tail[k]).all()


def test_clue_range_is_respected():
    data = engine.generate(30, seed=2, min_clues=28, max_clues=30, threads=2)
    clues = (data["puzzles"] > 0).sum(1)
    assert ((clues >= 28) & (clues <= 30)).all()
    assert (engine.solve_batch(data["puzzles"])[0] == 1).all()


def test_generate_rejects_bad_arguments():
    with pytest.raises(ValueError, match="split must be one of"):
        engine.generate(1, "easy")
    with pytest.raises(ValueError, match="n must be"):
        engine.generate(-1)
    with pytest.raises(ValueError, match="threads"):
        engine.generate(1, threads=0)
    with pytest.raises(ValueError, match="seed"):
        engine.generate(1, seed=-3)
    with pytest.raises(ValueError, match="max_clues"):
        engine.generate(1, max_clues=18)
    with pytest.raises(ValueError, match="min_clues"):
        engine.generate(1, min_clues=10)


def test_zero_puzzles_give_empty_arrays():
    data = engine.generate(0)
    assert data["puzzles"].shape == (0, 81) and data["difficulty"].shape == (0,)


def test_generated_puzzles_are_minimal_every_clue_is_needed():
    data = engine.generate(12, seed=8, threads=2)
    rows = []
    for p in data["puzzles"]:
        for c in np.flatnonzero(p):
            q = p.copy()
            q[c] = 0
            rows.append(q)
    counts, _ = engine.solve_batch(np.stack(rows), limit=2)
    assert (counts == 2).all()


def test_the_first_puzzles_of_a_longer_run_are_the_shorter_run():
    a = engine.generate(9, "hard", seed=6, threads=2)
    b = engine.generate(4, "hard", seed=6, threads=1)
    assert all((a[k][:4] == b[k]).all() for k in a)
