"""The L&O-NAE-SAT engine: tasks and clauses, generation, the exact checker, exact counts, encoding and files."""
import itertools

import numpy as np
import pytest

from fastmdm.nae import data, engine, files
from fastmdm.nae.engine import MASK_ID, Task

SMALL = Task(latents=8, observations=12, arity=3, structure_seed=5)


def brute_force(partial: np.ndarray, task: Task) -> tuple[int, np.ndarray]:
    """(completions, per-position count of 1s) of one partial sequence, by trying every latent assignment."""
    n = task.latents
    all_latents = np.array(list(itertools.product((0, 1), repeat=n)), np.int8)
    full = data.encode(all_latents, task)
    visible = partial != MASK_ID
    match = (full[:, visible] == partial[visible]).all(axis=1)
    return int(match.sum()), full[match].sum(axis=0)


# ---------------------------------------------------------------------------------------------- tasks, clauses
def test_default_task_is_the_papers_first_table_row_and_has_length_300():
    t = Task()
    assert (t.latents, t.observations, t.arity, t.length) == (25, 275, 3, 300)
    assert all(n + p == 300 for n, p in engine.PAPER_SIZES)
    assert t.latent_positions == slice(0, 25) and t.observation_positions == slice(25, 300)


def test_clauses_are_distinct_sorted_latent_indices_and_read_only():
    c = Task(latents=30, observations=2000, arity=4, structure_seed=9).clauses
    assert c.dtype == np.int32 and c.shape == (2000, 4)
    assert (c >= 0).all() and (c < 30).all()
    assert (np.diff(c, axis=1) > 0).all()  # ascending, hence distinct
    with pytest.raises(ValueError):
        c[0, 0] = 1


def test_structure_seed_fixes_the_clauses_and_more_observations_extend_them():
    a = Task(latents=25, observations=275, structure_seed=3).clauses
    assert np.array_equal(a, Task(latents=25, observations=275, structure_seed=3).clauses)
    assert not np.array_equal(a, Task(latents=25, observations=275, structure_seed=4).clauses)
    assert np.array_equal(Task(latents=25, observations=100, structure_seed=3).clauses, a[:100])
    assert not np.array_equal(Task(latents=26, observations=275, structure_seed=3).clauses, a)


def test_no_two_clauses_are_the_same_set_and_a_full_task_takes_every_set_once():
    c = Task(latents=20, observations=280, structure_seed=0).clauses  # the paper's section 3.3 size
    assert len({tuple(r) for r in c.tolist()}) == 280
    full = Task(latents=6, observations=20, arity=3, structure_seed=1).clauses
    assert sorted(map(tuple, full.tolist())) == list(itertools.combinations(range(6), 3))
    with pytest.raises(ValueError, match=r"at most C\(latents, arity\) = 20"):
        Task(latents=6, observations=21, arity=3)


def test_the_first_clause_is_uniform_over_the_k_subsets():
    counts = {s: 0 for s in itertools.combinations(range(6), 3)}
    seeds = 20_000
    for seed in range(seeds):
        counts[tuple(Task(latents=6, observations=1, structure_seed=seed).clauses[0].tolist())] += 1
    freq = np.array(list(counts.values())) / seeds
    assert np.abs(freq - 1 / 20).max() < 0.008  # ~5 standard deviations


@pytest.mark.parametrize("kwargs, message", [
    ({"latents": 1}, "latents"),
    ({"latents": True}, "latents"),
    ({"latents": 2.0}, "latents"),
    ({"observations": 0}, "observations"),
    ({"arity": 1}, "arity"),
    ({"latents": 4, "arity": 5}, "arity"),
    ({"arity": 33, "latents": 40}, "arity"),
    ({"structure_seed": -1}, "structure_seed"),
    ({"structure_seed": 2**64}, "structure_seed"),
])
def test_bad_tasks_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Task(**kwargs)


# ---------------------------------------------------------------------------------------------- generation
def test_generation_is_deterministic_by_seed_and_the_same_for_any_thread_count():
    t = Task(latents=100, observations=200, structure_seed=2)
    a = engine.generate(3000, t, seed=11, threads=1)
    assert a.dtype == np.int8 and a.shape == (3000, 300)
    assert np.array_equal(a, engine.generate(3000, t, seed=11, threads=2))
    assert np.array_equal(a, engine.generate(3000, t, seed=11))
    assert not np.array_equal(a, engine.generate(3000, t, seed=12, threads=2))


def test_start_continues_the_stream_across_chunks():
    t = Task(latents=20, observations=30)
    whole = engine.generate(engine._CHUNK + 50, t, seed=4, threads=2)
    tail = engine.generate(100, t, seed=4, start=engine._CHUNK - 50, threads=1)
    assert np.array_equal(tail, whole[engine._CHUNK - 50:])
    assert len(engine.generate(0, t)) == 0


def test_latents_depend_on_the_data_seed_only_and_observations_on_the_clauses():
    a = engine.generate(200, Task(structure_seed=1), seed=7)
    b = engine.generate(200, Task(structure_seed=2), seed=7)
    assert np.array_equal(a[:, :25], b[:, :25]) and not np.array_equal(a[:, 25:], b[:, 25:])


def test_generated_sequences_pass_the_checker_and_match_the_numpy_reference():
    for t in (Task(), Task(latents=100, observations=200, structure_seed=8), Task(latents=70, observations=30,
                                                                                  arity=5, structure_seed=3)):
        seqs = engine.generate(2000, t, seed=1)
        r = engine.check(seqs, t)
        assert r.ok.all() and r.ok_tokens.all() and (r.bad == 0).all() and (r.observation_accuracy == 1).all()
        assert np.array_equal(data.encode(seqs[:, :t.latents], t), seqs)


def test_latents_are_fair_independent_bits_and_three_quarters_of_observations_are_1():
    t = Task(latents=130, observations=170)  # latents straddle two 64-bit draws
    seqs = engine.generate(20_000, t, seed=3).astype(np.float64)
    lat = seqs[:, :130]
    assert np.abs(lat.mean(axis=0) - 0.5).max() < 0.02  # ~5.7 standard deviations
    corr = np.corrcoef(lat[:, 60:70].T)
    assert np.abs(corr - np.eye(10)).max() < 0.04
    # NAE of 3 fair bits is 1 with probability 3/4: the paper's "naive guessing leads to 75% accuracy"
    assert abs(seqs[:, 130:].mean() - 0.75) < 0.005


# ---------------------------------------------------------------------------------------------- the checker
def test_checker_on_hand_made_sequences():
    t = Task(latents=5, observations=6, arity=3, structure_seed=0)
    c = t.clauses
    assert np.array_equal(Task(latents=5, observations=6, arity=3, structure_seed=0).clauses, c)
    lat = np.array([1, 0, 0, 1, 1], np.int8)
    want = np.array([0 if len({int(lat[i]) for i in row}) == 1 else 1 for row in c], np.int8)
    good = np.concatenate([lat, want])
    zeros = np.zeros(t.length, np.int8)  # all latents equal: every observation 0
    ones = np.concatenate([np.ones(5, np.int8), np.zeros(6, np.int8)])
    r = engine.check(np.stack([good, zeros, ones]), t)
    assert r.ok.all() and r.ok_tokens.all()

    flipped = good.copy()
    flipped[5 + 2] ^= 1
    r = engine.check(flipped, t)
    assert not r.ok[0] and r.bad[0] == 1 and np.flatnonzero(~r.ok_tokens[0]).tolist() == [5 + 2]
    assert r.observation_accuracy[0] == pytest.approx(5 / 6)

    masked = good.copy()
    masked[c[0, 0]] = MASK_ID
    r = engine.check(masked, t)
    uses = [5 + j for j in range(6) if c[0, 0] in c[j]]
    assert sorted(np.flatnonzero(~r.ok_tokens[0]).tolist()) == sorted([int(c[0, 0]), *uses])
    assert r.bad[0] == 1 + len(uses)


def test_checker_refuses_bad_inputs_clearly():
    t = Task(latents=5, observations=6)
    with pytest.raises(ValueError, match=r"shape \[n, 11\]"):
        engine.check(np.zeros((2, 10), np.int8), t)
    with pytest.raises(ValueError, match="row 1, position 3 holds 3"):
        engine.check(np.array([[0] * 11, [0, 0, 0, 3] + [0] * 7]), t)
    with pytest.raises(ValueError, match="holds -1"):
        engine.check(np.full(11, -1), t)
    with pytest.raises(ValueError, match="integer tokens"):
        engine.check(np.zeros(11, np.float32), t)
    with pytest.raises(TypeError, match="Task"):
        engine.check(np.zeros(11, np.int8), (5, 6))
    big = np.zeros(11, np.int64)
    big[0] = 257  # would wrap to 1 in int8
    with pytest.raises(ValueError, match="holds 257"):
        engine.check(big, t)


def test_checker_takes_torch_tensors_and_read_only_arrays():
    torch = pytest.importorskip("torch")
    seqs = engine.generate(10, SMALL, seed=2)
    seqs.setflags(write=False)
    assert engine.check(seqs, SMALL).ok.all()
    assert engine.check(torch.from_numpy(seqs.copy()).long(), SMALL).ok.all()


# ---------------------------------------------------------------------------------------------- exact counts
def test_counts_of_full_empty_and_contradictory_sequences():
    seq = engine.generate(1, SMALL, seed=5)[0]
    assert engine.count_completions(seq, SMALL).tolist() == [1]
    wrong = seq.copy()
    wrong[SMALL.latents] ^= 1
    assert engine.count_completions(wrong, SMALL).tolist() == [0]
    assert not engine.completable(wrong, SMALL)[0]
    blank = np.full(SMALL.length, MASK_ID, np.int8)
    assert engine.count_completions(blank, SMALL).tolist() == [2**SMALL.latents]
    assert engine.count_completions(blank, SMALL, limit=5).tolist() == [5]


def test_counts_and_posteriors_match_brute_force_on_random_masks():
    rng = np.random.default_rng(0)
    seqs = engine.generate(60, SMALL, seed=9)
    partial = np.where(rng.random(seqs.shape) < rng.random((60, 1)), MASK_ID, seqs).astype(np.int8)
    clause = SMALL.clauses[0]
    partial[:5, clause] = seqs[:5, clause]  # contradictory rows: observation 0 and its latents visible, 0 wrong
    partial[:5, SMALL.latents] = 1 - seqs[:5, SMALL.latents]
    counts = engine.count_completions(partial, SMALL, threads=2)
    post = engine.posterior(partial, SMALL, threads=2)
    assert np.array_equal(post.count, counts)
    for row, n, p in zip(partial, counts, post.p_one):
        want, ones = brute_force(row, SMALL)
        assert n == want
        if want:
            assert np.allclose(p, ones / want)
        else:
            assert np.isnan(p).all()
    assert (counts[:5] == 0).all() and (counts[5:] >= 1).all()  # a masked real sequence completes to itself
    assert (counts > 1).any()


def test_counting_refuses_too_many_masked_latents():
    t = Task(latents=50, observations=10)
    blank = np.full(t.length, MASK_ID, np.int8)
    with pytest.raises(ValueError, match="50 masked latents"):
        engine.count_completions(blank, t)
    with pytest.raises(ValueError, match="limit"):
        engine.count_completions(np.zeros(t.length, np.int8), t, limit=0)


# ---------------------------------------------------------------------------------------------- encoding, files
def test_encoding_constants_and_decode_encode_round_trip():
    assert (data.MASK_ID, data.VALUES, data.VOCAB_SIZE) == (2, (0, 1), 3)
    seqs = engine.generate(50, SMALL, seed=1)
    lat, obs = data.decode(seqs, SMALL)
    assert lat.shape == (50, 8) and obs.shape == (50, 12)
    assert np.array_equal(data.encode(lat, SMALL), seqs)
    one = data.decode(seqs[0], SMALL)
    assert np.array_equal(data.encode(one.latents, SMALL), seqs[0])
    assert np.array_equal(data.observe(one.latents, SMALL), one.observations)
    with pytest.raises(ValueError, match="0 or 1"):
        data.observe(np.full(8, 2), SMALL)


def test_text_format_round_trip_with_masks_and_header():
    seqs = engine.generate(5, SMALL, seed=1)
    seqs[1, 3] = MASK_ID
    text = files.format_lines(seqs, SMALL, seed=1)
    first, second = text.splitlines()[:2]
    assert first == files.header(SMALL, 1) and second.split(" ")[0] == "".join(map(str, seqs[0, :8]))
    back, task, lines = files.read_text(text.splitlines())
    assert task == SMALL and lines == [2, 3, 4, 5, 6] and np.array_equal(back, seqs)
    assert files.parse_header(first) == (SMALL, 1)
    assert np.array_equal(files.parse_line("".join("01."[v] for v in seqs[1]), SMALL), seqs[1])
    with pytest.raises(ValueError, match="line 2: the latent block has 7"):
        files.read_text([first, "0101010 101010101010"])
    with pytest.raises(ValueError, match="character 'x' at position 3"):
        files.parse_line("010x0101 101010101010", SMALL)
    with pytest.raises(ValueError, match="before any"):
        files.read_text(["01010101 101010101010"])
    with pytest.raises(ValueError, match="differs"):
        files.read_text(text.splitlines(), Task(latents=8, observations=12, structure_seed=6))


def test_npz_round_trip_is_byte_stable_and_refuses_foreign_clauses(tmp_path):
    seqs = engine.generate(20, SMALL, seed=2)
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    files.save_npz(a, seqs, SMALL, seed=2)
    files.save_npz(b, seqs, SMALL, seed=2)
    assert a.read_bytes() == b.read_bytes() and files.is_npz(a)
    back, task = files.load_npz(a)
    assert task == SMALL and np.array_equal(back, seqs)
    with np.load(a) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["clauses"] = arrays["clauses"][::-1].copy()
    np.savez(b, **arrays)
    with pytest.raises(ValueError, match="not those of structure seed 5"):
        files.load_npz(b)


def test_test_set_has_a_fixed_seed_and_cached_generate_caches(tmp_path):
    t = Task(latents=20, observations=280)
    ts = data.test_set(30, t, cache_dir=tmp_path)
    assert np.array_equal(ts, engine.generate(30, t, seed=data.TEST_SEED))
    (path,) = tmp_path.glob("*.npz")
    assert "N20_P280_k3_s0_n30" in path.name
    assert np.array_equal(data.cached_generate(30, t, data.TEST_SEED, tmp_path), ts)


@pytest.mark.parametrize("kwargs, message", [
    ({"n": -1}, "n must"),
    ({"n": 2.5}, "n must"),
    ({"n": 2, "seed": -1}, "seed"),
    ({"n": 2, "seed": 2**64}, "seed"),
    ({"n": 2, "threads": 0}, "threads"),
    ({"n": 2, "start": -1}, "start"),
])
def test_generate_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        engine.generate(**kwargs)
    with pytest.raises(TypeError, match="Task"):
        engine.generate(2, task="25,275")
