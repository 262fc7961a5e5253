import json

import numpy as np
import pytest
import torch

from fastmdm.sudoku.data import synthetic_puzzles
from fastmdm.sudoku.evaluate import evaluate, format_table, plot


pytestmark = pytest.mark.usefixtures("one_thread")


class Oracle(torch.nn.Module):
    """Logits that put `sharp` on the true digit of every cell (it is told the solutions in advance) and
    noise elsewhere; `wrong` cells get their digit shifted, so puzzles containing them cannot be solved."""

    def __init__(self, solutions, sharp=5.0, wrong=None):
        super().__init__()
        self.solutions = torch.as_tensor(solutions).long()
        self.sharp, self.wrong = sharp, wrong
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        B = x.shape[0]
        target = self.solutions[:B].clone()
        if self.wrong is not None:
            target[self.wrong] = target[self.wrong] % 9 + 1
        logits = torch.zeros(B, 81, 10)
        logits.scatter_(-1, target[..., None], self.sharp)
        return logits


DATA = synthetic_puzzles(40, seed=11)


def test_a_model_that_knows_the_answers_solves_every_puzzle_with_every_strategy():
    rows = evaluate(Oracle(DATA["solutions"]), DATA["puzzles"], DATA["solutions"], batch_size=64)
    assert [r["strategy"] for r in rows] == ["random", "confidence", "margin", "entropy"]
    for r in rows:
        assert r["puzzle_acc"] == 1.0 and r["cell_acc"] == 1.0 and r["n"] == 40
        blanks = (DATA["puzzles"] == 0).sum(1).max()
        assert r["nfe"] == blanks  # k=1: one model call per blank of the emptiest puzzle


def test_one_wrong_cell_fails_exactly_the_puzzles_that_contain_it():
    wrong = torch.zeros(40, 81, dtype=torch.bool)
    blank0 = np.nonzero(DATA["puzzles"][0] == 0)[0][0]
    wrong[0, blank0] = True
    wrong[1, np.nonzero(DATA["puzzles"][1] == 0)[0][0]] = True
    rows = evaluate(Oracle(DATA["solutions"], wrong=wrong), DATA["puzzles"], DATA["solutions"],
                    strategies="margin", batch_size=64)
    (r,) = rows
    assert r["solved"] == 38
    assert r["cell_acc"] == pytest.approx(1 - 2 / (DATA["puzzles"] == 0).sum())


def test_a_fifty_step_schedule_makes_fifty_model_calls():
    (r,) = evaluate(Oracle(DATA["solutions"]), DATA["puzzles"], DATA["solutions"], strategies=["margin"],
                    steps=50, score_noise=0.5, batch_size=64)
    assert r["nfe"] == 50 and r["puzzle_acc"] == 1.0


def test_unknown_strategy_and_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="strategies"):
        evaluate(Oracle(DATA["solutions"]), DATA["puzzles"], DATA["solutions"], strategies="best")
    with pytest.raises(ValueError, match=r"\[N, 81\]"):
        evaluate(Oracle(DATA["solutions"]), DATA["puzzles"][:, :80], DATA["solutions"])


def test_the_table_has_a_row_per_strategy_and_the_plot_is_a_png(tmp_path):
    res = {"standard": evaluate(Oracle(DATA["solutions"]), DATA["puzzles"], DATA["solutions"],
                                strategies="random,margin", batch_size=64)}
    table = format_table(res)
    assert "| random | 100.00% (40/40)" in table and "| margin |" in table
    json.dumps(res)
    plot(res, tmp_path / "acc.png")
    assert (tmp_path / "acc.png").read_bytes()[:4] == b"\x89PNG"
