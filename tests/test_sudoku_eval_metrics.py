import json
import math

import numpy as np
import pytest
import torch

from fastmdm.sudoku.data import synthetic_puzzles
from fastmdm.sudoku.evaluate import calls_per_puzzle, evaluate, format_table, plot, wilson_interval

pytestmark = pytest.mark.usefixtures("one_thread")


class Oracle(torch.nn.Module):
    """Logits that put `sharp` on the true digit of every cell and noise elsewhere. It is given the puzzles and
    their solutions in advance and recognises each input row by its clues (decoding may leave finished rows out
    of a call, so a row's place in the batch says nothing). `wrong` [N, 81] cells get their digit shifted, so
    the puzzles containing them cannot be solved."""

    def __init__(self, puzzles, solutions, sharp=5.0, wrong=None):
        super().__init__()
        self.puzzles = torch.as_tensor(puzzles).long()
        self.solutions = torch.as_tensor(solutions).long()
        if wrong is not None:
            self.solutions = torch.where(wrong, self.solutions % 9 + 1, self.solutions)
        self.sharp = sharp
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        clues = self.puzzles[None] != 0
        match = ((x[:, None] == self.puzzles[None]) | ~clues).all(-1)  # [B, N]
        assert bool((match.sum(-1) == 1).all()), "each row must be one known puzzle"
        target = self.solutions[match.float().argmax(-1)]
        logits = torch.zeros(x.shape[0], 81, 10)
        logits.scatter_(-1, target[..., None], self.sharp)
        return logits


DATA = synthetic_puzzles(40, seed=11)


def test_a_model_that_knows_the_answers_solves_every_puzzle_with_every_strategy():
    rows = evaluate(Oracle(DATA["puzzles"], DATA["solutions"]), DATA["puzzles"], DATA["solutions"], batch_size=64)
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
    rows = evaluate(Oracle(DATA["puzzles"], DATA["solutions"], wrong=wrong), DATA["puzzles"], DATA["solutions"],
                    strategies="margin", batch_size=64)
    (r,) = rows
    assert r["solved"] == 38
    assert r["cell_acc"] == pytest.approx(1 - 2 / (DATA["puzzles"] == 0).sum())


def test_a_fifty_step_schedule_makes_fifty_model_calls():
    (r,) = evaluate(Oracle(DATA["puzzles"], DATA["solutions"]), DATA["puzzles"], DATA["solutions"],
                    strategies=["margin"], steps=50, score_noise=0.5, batch_size=64)
    assert r["nfe"] == 50 and r["puzzle_acc"] == 1.0


def test_unknown_strategy_and_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="strategies"):
        evaluate(Oracle(DATA["puzzles"], DATA["solutions"]), DATA["puzzles"], DATA["solutions"], strategies="best")
    with pytest.raises(ValueError, match=r"\[N, 81\]"):
        evaluate(Oracle(DATA["puzzles"], DATA["solutions"]), DATA["puzzles"][:, :80], DATA["solutions"])


def test_the_table_has_a_row_per_strategy_and_the_plot_is_a_png(tmp_path):
    res = {"standard": evaluate(Oracle(DATA["puzzles"], DATA["solutions"]), DATA["puzzles"], DATA["solutions"],
                                strategies="random,margin", batch_size=64)}
    table = format_table(res)
    assert "| random | 100.00% (40/40)" in table and "| margin |" in table
    json.dumps(res)
    plot(res, tmp_path / "acc.png")
    assert (tmp_path / "acc.png").read_bytes()[:4] == b"\x89PNG"


class Counter:
    """Stands in for a tqdm bar."""

    def __init__(self):
        self.n = 0

    def update(self, n=1):
        self.n += n


@pytest.mark.parametrize("k, steps", [(1, None), (3, None), (None, 7)])
def test_the_progress_ticker_moves_once_per_model_call_and_the_estimate_is_exact(k, steps):
    from fastmdm.sudoku.evaluate import CallTicker, decode_puzzles, model_calls
    from fastmdm.sudoku.model import sudoku_model
    torch.manual_seed(0)
    model = sudoku_model("tiny").eval()
    d = synthetic_puzzles(10, seed=5)
    calls = []
    real = model.forward_hidden
    model.forward_hidden = lambda *a, **kw: calls.append(1) or real(*a, **kw)
    bar = Counter()
    total = 0
    for i in range(0, 10, 4):
        tr = decode_puzzles(CallTicker(model, bar), d["puzzles"][i:i + 4], k=k, steps=steps, return_trace=True)
        total += tr.nfe
        ref = decode_puzzles(model, d["puzzles"][i:i + 4], k=k, steps=steps, return_trace=True)
        assert torch.equal(tr.tokens, ref.tokens)  # the wrapper changes nothing but the bar
    assert bar.n == total == len(calls) // 2 == model_calls(d["puzzles"], k=k, steps=steps, batch_size=4)


def test_the_ticker_offers_the_hidden_path_only_when_the_model_has_it():
    from fastmdm.engine import has_hidden_path
    from fastmdm.sudoku.evaluate import CallTicker
    from fastmdm.sudoku.model import sudoku_model
    m = sudoku_model("tiny")

    class LogitsOnly(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = m

        def forward(self, x, attention_mask=None):
            return self.inner(x)
    assert has_hidden_path(CallTicker(m, Counter()))
    assert not has_hidden_path(CallTicker(LogitsOnly(), Counter()))
    bar = Counter()
    t = CallTicker(LogitsOnly(), bar)
    t(torch.zeros(2, 81, dtype=torch.long))
    assert bar.n == 1 and t.inner is m  # attributes pass through


# Oracle logits (sharp 5 on the true digit, 0 on the 8 others; the mask token is never a candidate):
# p(true digit) = e^5 / (e^5 + 8) = 0.949 on every blank, margin 0.942, and exp(-H(p)) = 0.735. A threshold
# just below fills every blank in the first call; just above, none passes and each call fills the best only.
P_TOP = math.exp(5) / (math.exp(5) + 8)
P_OTHER = (1 - P_TOP) / 8
EXP_NEG_H = math.exp(P_TOP * math.log(P_TOP) + 8 * P_OTHER * math.log(P_OTHER))


@pytest.mark.parametrize("strategy, threshold, one_call", [
    ("confidence", 0.945, True), ("confidence", 0.95, False),
    ("margin", 0.94, True), ("margin", 0.945, False),
    ("entropy", 0.73, True), ("entropy", 0.74, False),  # entropy's threshold is on exp(-H(p))
])
def test_calls_per_puzzle_counts_the_calls_each_puzzle_is_still_in(strategy, threshold, one_call):
    assert 0.945 < P_TOP < 0.95 and 0.94 < P_TOP - P_OTHER < 0.945 and 0.73 < EXP_NEG_H < 0.74
    blanks = torch.as_tensor((DATA["puzzles"] == 0).sum(1)).double()
    (r,) = evaluate(Oracle(DATA["puzzles"], DATA["solutions"]), DATA["puzzles"], DATA["solutions"],
                    strategies=[strategy], threshold=threshold, batch_size=64)
    assert r["puzzle_acc"] == 1.0
    if one_call:
        assert r["nfe"] == 1 and r["calls_per_puzzle"] == 1
    else:  # one blank per call: a puzzle takes as many calls as it has blanks and is then left out
        assert r["nfe"] == blanks.max() and r["calls_per_puzzle"] == pytest.approx(float(blanks.mean()))
        assert r["calls_per_puzzle"] < r["nfe"]


@pytest.mark.parametrize("k", [1, 3, 8])
def test_with_k_cells_per_call_a_puzzle_takes_ceil_blanks_over_k_calls(k):
    blanks = torch.as_tensor((DATA["puzzles"] == 0).sum(1))
    for batch_size in (64, 7):  # the count is per puzzle, whatever batch it was decoded in
        (r,) = evaluate(Oracle(DATA["puzzles"], DATA["solutions"]), DATA["puzzles"], DATA["solutions"],
                        strategies="margin", k=k, batch_size=batch_size)
        assert r["calls_per_puzzle"] == pytest.approx(float((-(-blanks // k)).double().mean()))


def test_calls_per_puzzle_reads_the_trace_order():
    order = torch.tensor([[-1, 0, 2, 1], [-1, -1, -1, -1], [0, 0, -1, 0]])
    assert calls_per_puzzle(order).tolist() == [3, 0, 1]


def test_the_wilson_interval_matches_known_values():
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(0, 1000)[0] == 0.0 and wilson_interval(1000, 1000)[1] == 1.0
    lo, hi = wilson_interval(0, 10)
    assert lo == 0 and hi == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)
    (r,) = evaluate(Oracle(DATA["puzzles"], DATA["solutions"]), DATA["puzzles"], DATA["solutions"],
                    strategies="margin", batch_size=64)
    assert r["puzzle_acc_ci95"] == list(wilson_interval(40, 40))


def test_a_threshold_decodes_as_fastmdm_sample_does_with_the_shipped_model():
    import fastmdm
    from fastmdm.sudoku import data as sdata
    from fastmdm.sudoku import model as smodel
    from fastmdm.sudoku.evaluate import decode_puzzles
    model, _ = smodel.load()
    p = torch.as_tensor(sdata.generate(6, "standard", seed=5)["puzzles"]).long()
    blanks = int((p == 0).sum(1).max())
    for strategy, t, library in (("confidence", 0.99, 0.99), ("margin", 0.9, 0.9),
                                 ("entropy", 0.9, math.log(0.9))):
        tr = decode_puzzles(model, p, strategy=strategy, threshold=t, return_trace=True)
        ref = fastmdm.sample(model, p, strategy=strategy, mask_id=0, threshold=library, return_trace=True)
        assert torch.equal(tr.tokens, ref.tokens) and torch.equal(tr.order, ref.order) and tr.nfe == ref.nfe
        assert ref.nfe < blanks  # several cells per call


def test_a_threshold_no_strategy_can_reach_is_refused():
    with pytest.raises(ValueError, match=r"threshold: expected a number in \(0, 1\]"):
        evaluate(Oracle(DATA["puzzles"], DATA["solutions"]), DATA["puzzles"], DATA["solutions"],
                 strategies="entropy", threshold=-0.1)
    with pytest.raises(ValueError, match="random scores"):
        evaluate(Oracle(DATA["puzzles"], DATA["solutions"]), DATA["puzzles"], DATA["solutions"],
                 strategies="random", threshold=1.0)
