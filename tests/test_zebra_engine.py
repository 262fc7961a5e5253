"""The Zebra engine: tasks, generation (uniqueness and minimality by brute force), the solver, the checker,
determinism, the encoding and the files. The brute force here enumerates every grid of a small size in numpy
and evaluates the clues itself, independently of the native engine."""
import functools
import itertools

import numpy as np
import pytest

from fastmdm.zebra import data, engine, files
from fastmdm.zebra.data import Clue
from fastmdm.zebra.engine import GIVEN, GUESS, MASK_ID, PAD_ID, RELATIONS, Task

REL = {name: i for i, name in enumerate(RELATIONS)}


# ---------------------------------------------------------------------------------------------- brute force
@functools.lru_cache(maxsize=None)
def all_grids(m: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(grids int8 [G, m, n], house int8 [G, n, m]): every grid of m houses x n attributes (each attribute a
    permutation of 0..m-1 over the houses), and the house of value v of attribute a in each."""
    perms = np.array(list(itertools.permutations(range(m))), np.int8)  # perms[p, h] = value in house h
    inverse = np.argsort(perms, axis=1).astype(np.int8)                # inverse[p, v] = house of value v
    idx = np.stack(np.meshgrid(*[np.arange(len(perms))] * n, indexing="ij"), axis=-1).reshape(-1, n)
    grids = perms[idx].transpose(0, 2, 1)  # [G, m, n]
    house = inverse[idx]                   # [G, n, m]
    return np.ascontiguousarray(grids), np.ascontiguousarray(house)


def satisfied(clues, m: int, n: int) -> np.ndarray:
    """bool [len(clues), G]: whether each clue holds in each grid of all_grids(m, n)."""
    _, house = all_grids(m, n)
    rows = []
    for c in clues:
        x = house[:, c.a1, c.v1].astype(int)
        name = RELATIONS[c.relation]
        if name == "at":
            rows.append(x == c.a2)
            continue
        if name == "notat":
            rows.append(x != c.a2)
            continue
        y = house[:, c.a2, c.v2].astype(int)
        rows.append({"same": x == y, "notsame": x != y, "immleft": x + 1 == y, "leftof": x < y,
                     "nextto": np.abs(x - y) == 1}[name])
    return np.array(rows, bool).reshape(len(clues), len(house))


def random_clue(rng, m: int, n: int) -> Clue:
    """A random well-formed clue (not necessarily true of anything)."""
    while True:
        rel = int(rng.integers(len(RELATIONS)))
        a1, v1 = int(rng.integers(n)), int(rng.integers(m))
        if RELATIONS[rel] in ("at", "notat"):
            return Clue(rel, a1, v1, int(rng.integers(m)), -1)
        a2, v2 = int(rng.integers(n)), int(rng.integers(m))
        if (a1, v1) == (a2, v2) or (RELATIONS[rel] in ("same", "notsame") and a1 == a2):
            continue
        return Clue(rel, a1, v1, a2, v2)


SMALL = [(3, 3), (3, 4), (4, 3), (4, 4)]


# ---------------------------------------------------------------------------------------------- tasks
def test_default_task_is_five_by_five_with_one_slot_per_cell():
    t = Task()
    assert (t.houses, t.attributes, t.max_clues, t.logic_only) == (5, 5, 25, False)
    assert t.length == 25 * 5 + 25 and t.clue_positions == slice(0, 125) and t.cell_positions == slice(125, 150)
    assert t.cell_position(2, 3) == 125 + 2 * 5 + 3
    assert engine.VOCAB_SIZE == 33 and MASK_ID == 32 and PAD_ID == 31


@pytest.mark.parametrize("kwargs, message", [
    ({"houses": 1}, "houses"), ({"houses": 9}, "houses"), ({"houses": True}, "houses"), ({"houses": 3.0}, "houses"),
    ({"attributes": 1}, "attributes"), ({"attributes": 9}, "attributes"),
    ({"max_clues": 0}, "max_clues"), ({"max_clues": 121}, "max_clues"), ({"logic_only": 1}, "logic_only"),
])
def test_bad_tasks_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Task(**kwargs)


# ---------------------------------------------------------------------------------------------- generation
@pytest.mark.parametrize("m, n", SMALL)
def test_generated_puzzles_are_unique_and_minimal_by_brute_force(m, n):
    task = Task(m, n)
    count = 12 if m * n < 16 else 6
    p = engine.generate(count, task, seed=11)
    grids, _ = all_grids(m, n)
    for row, puzzle in zip(p.tokens, data.decode(p.tokens, task)):
        s = satisfied(puzzle.clues, m, n)
        ok = s.all(axis=0)
        assert ok.sum() == 1, "not unique"
        assert np.array_equal(grids[np.argmax(ok)], puzzle.grid), "the unique solution is not the stored one"
        fails = (~s).sum(axis=0)
        for k in range(len(puzzle.clues)):  # dropping clue k lets in a grid that only clue k excluded
            assert ((fails == 1) & ~s[k]).any(), f"clue {k} ({puzzle.clues[k].text()}) is redundant"


def test_generated_clues_hold_for_the_solution_and_use_every_relation():
    task = Task()
    p = engine.generate(300, task, seed=3)
    seen = set()
    for puzzle, n_clues in zip(data.decode(p.tokens, task), p.clues):
        assert len(puzzle.clues) == n_clues <= task.max_clues
        assert all(c.holds(puzzle.grid) for c in puzzle.clues)
        assert len(set(puzzle.clues)) == len(puzzle.clues)
        seen.update(c.relation for c in puzzle.clues)
    assert seen == set(range(len(RELATIONS)))
    assert (p.attempts >= 1).all() and (p.rounds > 0).all()


def test_ordered_solve_places_every_cell_once_and_names_a_clue_that_mentions_it():
    task = Task()
    p = engine.generate(200, task, seed=8)
    assert (np.sort(p.order, axis=1) == np.arange(task.cells)).all()
    assert ((p.technique >= 0) & (p.technique < GIVEN)).all()
    assert np.array_equal(p.guesses, (p.technique == GUESS).sum(axis=1))
    for puzzle, tech, clue, row in zip(data.decode(p.tokens, task), p.technique, p.clue, p.tokens):
        grid = puzzle.grid.reshape(-1)
        for c in range(task.cells):
            if tech[c] < len(RELATIONS):
                k = Clue(*[int(x) for x in data.decode(row, task)[0].clues[clue[c]]])
                assert k.relation == tech[c]
                item = (c % task.attributes, int(grid[c]))
                assert item in ((k.a1, k.v1), (k.a2, k.v2))
            else:
                assert clue[c] == -1


def test_logic_only_puzzles_need_no_guess_and_some_default_ones_do():
    p = engine.generate(100, Task(logic_only=True), seed=4)
    assert (p.guesses == 0).all() and (p.technique != GUESS).all()
    assert (engine.generate(100, Task(), seed=4).guesses > 0).any()


def test_same_seed_same_puzzles_for_any_thread_count_and_start_offsets():
    task = Task(4, 5)
    a = engine.generate(300, task, seed=21, threads=1)
    b = engine.generate(300, task, seed=21, threads=2)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    part = engine.generate(100, task, seed=21, start=150, threads=2)
    for x, y in zip(a, part):
        assert np.array_equal(x[150:250], y)
    other = engine.generate(300, task, seed=22, threads=2)
    assert not np.array_equal(a.tokens, other.tokens)
    assert len({r.tobytes() for r in a.tokens}) == 300


def test_a_clue_budget_no_minimal_puzzle_fits_is_an_error():
    with pytest.raises(ValueError, match="raise max_clues"):
        engine.generate(1, Task(3, 3, max_clues=1), seed=0)


@pytest.mark.parametrize("kwargs, message", [
    ({"n": -1}, "n must"), ({"n": 2, "seed": -1}, "seed"), ({"n": 2, "seed": 2**64}, "seed"),
    ({"n": 2, "threads": 0}, "threads"), ({"n": 2, "start": -1}, "start"),
])
def test_bad_generate_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        engine.generate(task=Task(3, 3), **kwargs)


# ---------------------------------------------------------------------------------------------- solver
@pytest.mark.parametrize("m, n", SMALL)
def test_solver_counts_match_brute_force_on_random_clue_sets(m, n):
    rng = np.random.default_rng(m * 10 + n)
    task = Task(m, n, max_clues=max(13, m * n + 1))
    grids, _ = all_grids(m, n)
    generated = data.decode(engine.generate(20, Task(m, n), seed=m + n).tokens, Task(m, n))
    puzzles = []
    for i in range(60):
        clues = [random_clue(rng, m, n) for _ in range(int(rng.integers(0, 13)))]
        if i % 3 == 0:  # a generated puzzle (unique), or one without a clue (not, if minimal), plus noise
            clues = list(generated[i // 3].clues)
            if i % 2:
                clues.pop(int(rng.integers(len(clues))))
            if i % 5 == 0:
                clues.append(random_clue(rng, m, n))
        grid = np.full((m, n), MASK_ID, np.int8)
        if rng.random() < 0.4:  # a few given cells
            g = grids[rng.integers(len(grids))]
            keep = rng.random((m, n)) < 0.3
            grid[keep] = g[keep]
        puzzles.append((clues, grid))
    tokens = data.encode(puzzles, task)
    s = engine.solve(tokens, task)
    counts_seen = set()
    for i, (clues, grid) in enumerate(puzzles):
        ok = satisfied(clues, m, n).all(axis=0)
        given = grid != MASK_ID
        ok &= (grids[:, given] == grid[given]).all(axis=1)
        want = min(int(ok.sum()), 2)
        counts_seen.add(want)
        assert s.count[i] == want, (i, [c.text() for c in clues])
        if want:
            sol = s.solution[i].reshape(m, n)
            assert ok[np.flatnonzero((grids == sol).all(axis=(1, 2)))].all()
            assert (s.order[i][given.reshape(-1)] == -1).all()
            assert (s.technique[i][given.reshape(-1)] == GIVEN).all()
            assert sorted(s.order[i][~given.reshape(-1)].tolist()) == list(range(int((~given).sum())))
        else:
            assert (s.solution[i] == -1).all() and s.guesses[i] == -1
    assert counts_seen == {0, 1, 2}


def test_solve_completes_a_partial_grid_and_refutes_a_wrong_given():
    task = Task()
    p = engine.generate(20, task, seed=5)
    x = p.tokens.copy()
    cells = x[:, task.cell_positions]
    rng = np.random.default_rng(0)
    cells[rng.random(cells.shape) < 0.7] = MASK_ID
    x[:, task.cell_positions] = cells
    s = engine.solve(x, task)
    assert (s.count == 1).all() and np.array_equal(s.solution, p.tokens[:, task.cell_positions])
    bad = p.tokens.copy()
    pos = task.cell_position(0, 0)
    bad[:, pos] = (bad[:, pos] + 1) % task.houses
    s = engine.solve(bad, task)
    assert (s.count == 0).all() and (s.guesses == -1).all()


def test_solve_and_check_name_a_malformed_clue_slot_or_cell():
    task = Task(3, 3)
    p = engine.generate(3, task, seed=1)
    for pos, value in ((0, 3), (5 + 1, engine.ATTRIBUTE_BASE + 3), (2, PAD_ID)):
        bad = p.tokens.copy()
        bad[2, pos] = value
        with pytest.raises(ValueError, match=rf"row 2: clue slot {pos // 5} "):
            engine.check(bad, task)
        with pytest.raises(ValueError, match=rf"row 2: clue slot {pos // 5} "):
            engine.solve(bad, task)
    same = data.encode([([Clue(REL["same"], 0, 0, 1, 1)], np.zeros((3, 3), np.int8))], task)
    same[0, 3] = engine.ATTRIBUTE_BASE + 0  # same with both items of attribute 0
    with pytest.raises(ValueError, match="clue slot 0"):
        engine.check(same, task)
    cell = p.tokens.copy()
    cell[1, task.cell_position(1, 2)] = 3  # value 3 of 3 houses
    with pytest.raises(ValueError, match=r"row 1: cell 5 \(house 1, attribute 2"):
        engine.solve(cell, task)


# ---------------------------------------------------------------------------------------------- checker
HAND = Task(2, 2, max_clues=3)
# house 0: attribute 0 = 0, attribute 1 = 1; house 1: attribute 0 = 1, attribute 1 = 0
HAND_CLUES = [Clue(REL["at"], 0, 0, 0), Clue(REL["same"], 0, 0, 1, 1)]
HAND_GRID = np.array([[0, 1], [1, 0]], np.int8)


def hand(grid, clues=HAND_CLUES):
    return data.encode([(clues, np.array(grid, np.int8))], HAND)


def test_checker_on_hand_made_grids():
    r = engine.check(hand(HAND_GRID), HAND)
    assert r.solved[0] and r.consistent[0] and r.cell_correct.all() and r.clue_ok.all() and r.solutions[0] == 1

    r = engine.check(hand([[0, 0], [1, 1]]), HAND)  # attribute 1 swapped: the 'same' clue fails
    assert not r.solved[0] and not r.consistent[0]
    assert r.clue_ok[0].tolist() == [True, False, True] and r.cell_correct[0].tolist() == [True, False, True, False]

    r = engine.check(hand([[1, 1], [0, 0]]), HAND)  # attribute 0 swapped too: both clues fail
    assert r.clue_ok[0].tolist() == [False, False, True] and not r.cell_correct[0, [0, 2]].any()

    r = engine.check(hand([[0, 1], [0, 0]]), HAND)  # value 0 twice in attribute 0: not a permutation
    assert not r.consistent[0] and not r.solved[0] and r.cell_correct[0].tolist() == [True, True, False, True]

    r = engine.check(hand([[0, 1], [MASK_ID, 0]]), HAND)  # a masked cell
    assert not r.consistent[0] and not r.solved[0] and r.cell_correct[0].tolist() == [True, True, False, True]
    assert not r.clue_ok[0, :2].any()  # clues cannot be checked on an incomplete grid

    loose = [HAND_CLUES[1]]  # without 'at': two solutions; the grid satisfies the clues but is not "the" one
    r = engine.check(hand(HAND_GRID, loose), HAND)
    assert r.consistent[0] and not r.solved[0] and r.solutions[0] == 2


def test_checker_accepts_generated_puzzles_and_flags_a_swap():
    task = Task()
    p = engine.generate(200, task, seed=9)
    r = engine.check(p.tokens, task, threads=2)
    assert r.solved.all() and r.consistent.all() and (r.solutions == 1).all() and (r.cell_accuracy == 1).all()
    bad = p.tokens.copy()
    a, b = task.cell_position(0, 2), task.cell_position(3, 2)
    bad[:, [a, b]] = bad[:, [b, a]]  # swap two houses' values of attribute 2: still a permutation
    r = engine.check(bad, task)
    assert not r.solved.any() and not r.consistent.any() and (~r.clue_ok).any(axis=1).all()
    assert (r.cell_correct.sum(axis=1) == task.cells - 2).all()


@pytest.mark.parametrize("value, message", [
    (np.zeros((2, 7), np.int8), r"shape \[n, 19\]"), (np.full((1, 19), 33), "token ids are 0..32"),
    (np.zeros((1, 19), np.float32), "dtype"),
])
def test_bad_sequences_are_refused(value, message):
    with pytest.raises(ValueError, match=message):
        engine.check(value, HAND)


# ---------------------------------------------------------------------------------------------- encoding, files
def test_encode_decode_round_trip():
    task = Task(4, 4)
    p = engine.generate(50, task, seed=2)
    decoded = data.decode(p.tokens, task)
    assert np.array_equal(data.encode(decoded, task), p.tokens)
    again = data.decode(data.encode(decoded, task), task)
    assert all(x.clues == y.clues and np.array_equal(x.grid, y.grid) for x, y in zip(decoded, again))
    assert all((row[len(pz.clues) * 5:task.clue_length] == PAD_ID).all() for row, pz in zip(p.tokens, decoded))
    masked = p.tokens.copy()
    masked[:, task.cell_positions] = MASK_ID
    assert (data.decode(masked, task)[0].grid == MASK_ID).all()
    with pytest.raises(ValueError, match="not a clue"):
        data.encode([([Clue(REL["same"], 0, 0, 0, 1)], np.zeros((4, 4), np.int8))], task)
    with pytest.raises(ValueError, match="slots"):
        data.encode([([Clue(REL["at"], 0, 0, 0)] * 17, np.zeros((4, 4), np.int8))], task)


def test_text_and_npz_round_trips(tmp_path):
    task = Task(3, 4)
    p = engine.generate(30, task, seed=6)
    text = files.format_lines(p.tokens, task, seed=6)
    assert text.splitlines()[0] == "# fastmdm zebra houses=3 attributes=4 max_clues=12 logic_only=0 seed=6"
    back, found, numbers = files.read_text(text.splitlines())
    assert found == task and np.array_equal(back, p.tokens) and numbers == list(range(2, 32))
    files.save_npz(tmp_path / "z.npz", p.tokens, task, seed=6, order=p.order)
    got, found = files.load_npz(tmp_path / "z.npz")
    assert found == task and np.array_equal(got, p.tokens)
    with pytest.raises(ValueError, match="differs"):
        files.load_npz(tmp_path / "z.npz", Task(3, 3))


@pytest.mark.parametrize("line, message", [
    ("0.0 at h0", "no '|'"),
    ("0.0 beside 1.1 | 012 120 201", "RELATION"),
    ("0.0 same 0 | 012 120 201", "attribute.value"),
    ("0.0 at 2 | 012 120 201", "hN"),
    ("0.0 same 1.1 | 012 120", "3 groups of 3"),
    ("0.0 same 1.1 | 012 120 2x1", "grid character 'x'"),
    ("0.0 same 0.1 | 012 120 201", "not a clue"),
    ("0.0 same 1.1, , 0.1 at h1 | 012 120 201", "empty"),
])
def test_bad_text_lines_are_refused(line, message):
    with pytest.raises(ValueError, match=message):
        files.parse_line(line, Task(3, 3))


def test_cached_generate_writes_once_and_reads_back(tmp_path):
    task = Task(3, 3)
    a = data.cached_generate(40, task, seed=7, cache_dir=tmp_path)
    (f,) = tmp_path.iterdir()
    assert f.name == "zebra_m3_n3_k9_n40_seed7.npz"
    assert np.array_equal(a, data.cached_generate(40, task, seed=7, cache_dir=tmp_path))
    assert np.array_equal(a, engine.generate(40, task, seed=7).tokens)
    test = data.test_set(5, task, cache_dir=tmp_path)
    assert np.array_equal(test.tokens, engine.generate(5, task, seed=data.TEST_SEED).tokens)
    assert np.array_equal(test.order, engine.generate(5, task, seed=data.TEST_SEED).order)
