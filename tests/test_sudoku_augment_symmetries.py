"""Augmentation: validity, uniqueness and grade are kept; the transforms are varied and seeded."""
import numpy as np
import pytest
import torch

from fastmdm.sudoku import engine, grids


@pytest.fixture(scope="module")
def data():
    return engine.generate(64, seed=5, threads=2)


def test_augmented_puzzles_stay_valid_unique_and_of_the_same_grade(data):
    p = torch.from_numpy(data["puzzles"])
    s = torch.from_numpy(data["solutions"])
    ap, as_ = grids.augment(p, s, generator=torch.Generator().manual_seed(0))
    assert ap.dtype == p.dtype and ap.shape == p.shape
    assert grids.valid_solutions(ap, as_).all()
    assert ((ap == 0).sum(1) == (p == 0).sum(1)).all()
    counts, sols = engine.solve_batch(ap.numpy())
    assert (counts == 1).all() and (sols == as_.numpy()).all()
    g = engine.grade_batch(ap.numpy(), as_.numpy())
    assert (g["difficulty"] == data["difficulty"]).all()
    assert not (ap == p).all(dim=1).any()  # every puzzle moved


def test_augment_is_seeded_and_each_row_gets_its_own_symmetry(data):
    p = torch.from_numpy(data["puzzles"]).long()
    s = torch.from_numpy(data["solutions"]).long()
    a1 = grids.augment(p, s, torch.Generator().manual_seed(3))
    a2 = grids.augment(p, s, torch.Generator().manual_seed(3))
    a3 = grids.augment(p, s, torch.Generator().manual_seed(4))
    assert torch.equal(a1[0], a2[0]) and torch.equal(a1[1], a2[1])
    assert not torch.equal(a1[0], a3[0])
    # The same grid repeated gets different symmetries per row.
    rep = s[:1].repeat(16, 1)
    _, out = grids.augment(rep, rep, torch.Generator().manual_seed(0))
    assert len({tuple(r.tolist()) for r in out}) == 16


def test_symmetries_cover_every_kind_of_transform():
    B = 2000
    cells, digits = grids.random_symmetries(B, torch.Generator().manual_seed(1))
    r, c = cells // 9, cells % 9
    # Transposed iff cell 1 (row 0, col 1) comes from column 0 of some row.
    transposed = (c[:, 1] == c[:, 0])
    assert 0.4 < transposed.float().mean() < 0.6
    assert (digits[:, 0] == 0).all() and (digits[:, 1:].sort(dim=1).values == torch.arange(1, 10)).all()
    # The first row of the new grid comes from each of the nine rows (or columns) about equally.
    src = torch.where(transposed, c[:, 0], r[:, 0])
    freq = torch.bincount(src, minlength=9).float() / B
    assert (freq > 0.07).all() and (freq < 0.16).all()
    # Every transform is a bijection on cells.
    assert (cells.sort(dim=1).values == torch.arange(81)).all()


def test_apply_symmetries_moves_per_cell_data_without_relabeling(data):
    p = torch.from_numpy(data["puzzles"]).long()
    order = torch.from_numpy(data["order"]).long()
    cells, digits = grids.random_symmetries(len(p), torch.Generator().manual_seed(2))
    ap = grids.apply_symmetries(p, cells, digits)
    ao = grids.apply_symmetries(order, cells)
    assert torch.equal(ao == -1, ap != 0)  # clues and order stay aligned


def test_augment_rejects_bad_input():
    z = torch.zeros(2, 81, dtype=torch.long)
    with pytest.raises(ValueError, match="same shape"):
        grids.augment(z, torch.zeros(3, 81, dtype=torch.long))
    with pytest.raises(ValueError, match="0 \\(blank\\) or 1-9"):
        grids.augment(z + 11, z)
    with pytest.raises(TypeError, match="torch.Tensor"):
        grids.augment(np.zeros((2, 81)), z)
