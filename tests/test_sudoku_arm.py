"""The autoregressive Sudoku baselines: causal attention, sequences and orders, teacher forcing, decoding,
training and evaluation through the same commands as the MDM."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastmdm import ops
from fastmdm.checkpoint import CheckpointError
from fastmdm.sudoku import arm, engine
from fastmdm.sudoku import data as sdata
from fastmdm.sudoku.grids import apply_symmetries, random_symmetries, valid_solutions
from fastmdm.sudoku.model import load, sudoku_model


@pytest.fixture(scope="module")
def engine_puzzles():
    return sdata.generate(12, "standard", seed=5)


def tiny_arm(order="solver", seed=0):
    torch.manual_seed(seed)
    return sudoku_model("tiny", arch=f"arm-{order}").eval()


# ---------------------------------------------------------------- causal attention
@pytest.mark.parametrize("hq,hkv", [(2, 2), (4, 2)])
def test_causal_attention_equals_attention_over_each_prefix(hq, hkv):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, h, 7, 8, generator=g) for h in (hq, hkv, hkv))
    out = ops.attention(q, k, v, causal=True, backend="torch")
    for i in range(7):
        ref = ops.attention(q[:, :, i:i + 1], k[:, :, :i + 1], v[:, :, :i + 1], backend="torch")
        torch.testing.assert_close(out[:, :, i:i + 1], ref)


def test_causal_window_of_last_queries_sees_every_earlier_key():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 9, 8, generator=g) for _ in range(3))
    full = ops.attention(q, k, v, causal=True, backend="torch")
    tail = ops.attention(q[:, :, 6:], k, v, causal=True, backend="torch")
    torch.testing.assert_close(tail, full[:, :, 6:])


def test_causal_attention_refuses_the_triton_kernel_and_more_queries_than_keys():
    q = torch.randn(1, 2, 4, 8)
    with pytest.raises(ValueError, match="non-causal"):
        ops.attention(q, q, q, causal=True, backend="triton")
    with pytest.raises(ValueError, match="at least as many keys"):
        ops.attention(q, q[:, :, :2], q[:, :, :2], causal=True)
    with pytest.raises(TypeError, match="causal"):
        ops.attention(q, q, q, causal=1)


# ---------------------------------------------------------------- orders and sequences
def test_rowmajor_ranks_follow_reading_order_and_skip_clues(engine_puzzles):
    p, s = engine_puzzles["puzzles"], engine_puzzles["solutions"]
    r = arm.fill_orders(p, s, "rowmajor")
    for row_p, row_r in zip(p, r):
        blanks = np.flatnonzero(row_p == 0)
        assert (row_r[row_p != 0] == -1).all()
        assert (row_r[blanks] == np.arange(len(blanks))).all()


def test_solver_ranks_follow_the_graders_placement_order(engine_puzzles):
    p, s = engine_puzzles["puzzles"], engine_puzzles["solutions"]
    r = arm.fill_orders(p, s, "solver")
    step = engine.grade_batch(p, s)["order"]
    for row_p, row_r, row_step in zip(p, r, step):
        blanks = np.flatnonzero(row_p == 0)
        assert sorted(row_r[blanks]) == list(range(len(blanks)))
        by_rank = blanks[np.argsort(row_r[blanks])]
        assert (np.diff(row_step[by_rank].astype(int)) >= 0).all()
    assert not (r == arm.fill_orders(p, s, "rowmajor")).all()


def test_sequence_holds_puzzle_separator_and_the_pairs_in_rank_order(engine_puzzles):
    p, s = (torch.as_tensor(engine_puzzles[k]).long() for k in ("puzzles", "solutions"))
    r = torch.as_tensor(arm.fill_orders(p.numpy(), s.numpy(), "solver")).long()
    seqs = arm.sequences(p, s, r)
    n = int((p == 0).sum(1).max())
    assert seqs.shape == (len(p), 82 + 2 * n)
    for b in range(len(p)):
        assert (seqs[b, :81] == p[b]).all() and seqs[b, 81] == arm.SEP
        blanks = (p[b] == 0).nonzero().flatten()
        order = blanks[torch.argsort(r[b, blanks])]
        pairs = seqs[b, 82:82 + 2 * len(blanks)].view(-1, 2)
        assert (pairs[:, 0] == arm.CELL0 + order).all() and (pairs[:, 1] == s[b, order]).all()
        assert (seqs[b, 82 + 2 * len(blanks):] == arm.SEP).all()


def test_symmetries_move_solver_ranks_with_their_cells(engine_puzzles):
    p, s = (torch.as_tensor(engine_puzzles[k]).long() for k in ("puzzles", "solutions"))
    r = torch.as_tensor(arm.fill_orders(p.numpy(), s.numpy(), "solver")).long()
    cells, digits = random_symmetries(len(p), torch.Generator().manual_seed(3))
    p2, s2, r2 = apply_symmetries(p, cells, digits), apply_symmetries(s, cells, digits), apply_symmetries(r, cells)
    # the moved order is still one the human strategies can follow: each cell placed in turn by a single
    # or after eliminations, i.e. grading the moved puzzle reaches the same difficulty
    assert ((r2 >= 0) == (p2 == 0)).all()
    d1 = engine.grade_batch(p.numpy(), s.numpy())["difficulty"]
    d2 = engine.grade_batch(p2.numpy(), s2.numpy())["difficulty"]
    assert (d1 == d2).all()


# ---------------------------------------------------------------- teacher forcing
@pytest.mark.parametrize("order", arm.ORDERS)
def test_teacher_forcing_loss_equals_the_loss_computed_one_prefix_at_a_time(engine_puzzles, order):
    model = tiny_arm(order, seed=1)
    p, s = (torch.as_tensor(engine_puzzles[k][:3]).long() for k in ("puzzles", "solutions"))
    r = torch.as_tensor(arm.fill_orders(p.numpy(), s.numpy(), order)).long()
    seqs = arm.sequences(p, s, r)
    with torch.no_grad():
        loss = arm.arm_loss(model, seqs)
        weighted = {w: arm.arm_loss(model, seqs, cell_weight=w) for w in (0.0, 0.3)}
        terms, cell = [], []
        for b in range(len(p)):
            for t in range(82, seqs.shape[1]):
                if seqs[b, t] == arm.SEP:
                    continue
                logits = model(seqs[b:b + 1, :t])[0, -1]   # the prefix alone: nothing later can leak in
                terms.append(F.cross_entropy(logits[None], seqs[b, t:t + 1]))
                cell.append(bool(seqs[b, t] >= arm.CELL0))
    terms, cell = torch.stack(terms), torch.tensor(cell)
    assert cell.any() and (~cell).any()
    torch.testing.assert_close(loss, terms.mean(), rtol=1e-5, atol=1e-6)
    for w, got in weighted.items():   # cells weighted w, digits 1
        wt = torch.where(cell, w, 1.0)
        torch.testing.assert_close(got, (terms * wt).sum() / wt.sum(), rtol=1e-5, atol=1e-6)


def test_teacher_forcing_loss_trains_down(engine_puzzles):
    model = tiny_arm("rowmajor", seed=2).train()
    p, s = (torch.as_tensor(engine_puzzles[k]).long() for k in ("puzzles", "solutions"))
    seqs = arm.sequences(p, s, torch.as_tensor(arm.fill_orders(p.numpy(), s.numpy(), "rowmajor")).long())
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        loss = arm.arm_loss(model, seqs)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.8 * first


def test_teacher_forced_cross_entropies_agree_with_the_training_loss(engine_puzzles):
    model = tiny_arm("solver", seed=9)
    model.arm_order = "solver"
    p, s = engine_puzzles["puzzles"][:6], engine_puzzles["solutions"][:6]
    r = arm.teacher_forced(model, p, s, batch_size=4)   # two batches
    seqs = arm.sequences(*(torch.as_tensor(x).long() for x in (p, s, arm.fill_orders(p, s, "solver"))))
    blanks = int((torch.as_tensor(p) == 0).sum())
    with torch.no_grad():
        digits_only = float(arm.arm_loss(model, seqs, cell_weight=0.0))
        both = float(arm.arm_loss(model, seqs, cell_weight=1.0))
    assert r["digit_ce"] == pytest.approx(digits_only, rel=1e-5)
    assert (r["digit_ce"] + r["cell_ce"]) / 2 == pytest.approx(both, rel=1e-5)   # one cell and one digit per blank
    assert 0.0 <= r["digit_acc"] <= 1.0 and 0.0 <= r["cell_acc"] <= 1.0 and blanks > 0


# ---------------------------------------------------------------- decoding
def naive_decode(model, puzzles, order):
    """decode_arm's rule with a full forward per call (no cache)."""
    grid = puzzles.clone()
    seqs = torch.cat([grid, torch.full((len(grid), 1), arm.SEP)], 1)
    for b in range(len(grid)):
        x = seqs[b:b + 1]
        while (grid[b] == 0).any():
            if order == "rowmajor":
                cell = int((grid[b] == 0).nonzero()[0])
            else:
                logits = model(x)[0, -1, arm.CELL0:arm.CELL0 + 81].masked_fill(grid[b] != 0, -torch.inf)
                cell = int(logits.argmax())
            x = torch.cat([x, torch.tensor([[arm.CELL0 + cell]])], 1)
            digit = int(model(x)[0, -1, 1:10].argmax()) + 1
            x = torch.cat([x, torch.tensor([[digit]])], 1)
            grid[b, cell] = digit
    return grid


@pytest.mark.parametrize("order", arm.ORDERS)
def test_cached_decoding_equals_a_full_forward_per_call(engine_puzzles, order):
    model = tiny_arm(order, seed=3)
    p = torch.as_tensor(engine_puzzles["puzzles"][:4]).long()
    with torch.no_grad():
        got, calls = arm.decode_arm(model, p, order)
        ref = naive_decode(model, p, order)
    assert torch.equal(got, ref)
    assert calls == (1 if order == "rowmajor" else 2) * int((p == 0).sum(1).max())


@pytest.mark.parametrize("order", arm.ORDERS)
def test_decoding_fills_every_blank_once_and_keeps_the_clues(engine_puzzles, order):
    model = tiny_arm(order, seed=4)
    p = torch.as_tensor(engine_puzzles["puzzles"]).long()
    got, _ = arm.decode_arm(model, p, order)
    assert ((got >= 1) & (got <= 9)).all()
    assert (got[p != 0] == p[p != 0]).all()


def test_decoding_refuses_an_mdm_and_a_causal_model_refuses_a_block_cache_window():
    with pytest.raises(ValueError, match="not a Sudoku ARM"):
        arm.decode_arm(sudoku_model("tiny"), torch.zeros(1, 81, dtype=torch.long), "solver")
    model = tiny_arm()
    cache = arm.AppendCache()
    x = torch.full((1, 90), arm.SEP)
    cache.begin(90)
    model.forward_hidden(x, cache=cache)
    cache.start, cache.end, cache.refreshing = 80, 85, False
    with pytest.raises(ValueError, match="ends the sequence"):
        model.forward_hidden(x, cache=cache)
    with pytest.raises(ValueError, match="order"):
        arm.check_order("random")


# ---------------------------------------------------------------- training, checkpoints, evaluation
def test_training_an_arm_saves_a_checkpoint_that_evaluates_as_an_arm_row(tmp_path, engine_puzzles):
    from fastmdm.sudoku.evaluate import answer_puzzles, evaluate
    from fastmdm.sudoku.train import TrainConfig, train
    pool = ({"puzzles": engine_puzzles["puzzles"], "solutions": engine_puzzles["solutions"]},
            {"puzzles": engine_puzzles["puzzles"][:4], "solutions": engine_puzzles["solutions"][:4]})
    cfg = TrainConfig(preset="tiny", arch="arm-solver", steps=5, stop_after=3, batch_size=4, eval_every=0,
                      save_every=3,
                      out=str(tmp_path / "arm"), threads=1)
    res = train(cfg, pool=pool, log=lambda m: None)
    assert res["model"].arm_order == "solver" and res["step"] == 3
    model, config = load(tmp_path / "arm")
    assert model.arm_order == "solver" and config["train"]["arch"] == "arm-solver"
    rows = evaluate(model, engine_puzzles["puzzles"][:4], engine_puzzles["solutions"][:4],
                    strategies=("margin", "random"))
    assert [r["strategy"] for r in rows] == ["arm-solver"] and rows[0]["n"] == 4
    p = torch.as_tensor(engine_puzzles["puzzles"][:4]).long()
    answers, valid = answer_puzzles(model, p)
    assert (valid == valid_solutions(p, torch.as_tensor(answers).long()).numpy()).all()
    # resume continues the same run to the end of its schedule
    cfg2 = TrainConfig(**{**cfg.__dict__, "stop_after": None})
    assert train(cfg2, resume=True, pool=pool, log=lambda m: None)["step"] == 5
    # an ARM checkpoint that does not name its order is refused
    conf = json.loads((tmp_path / "arm" / "config.json").read_text())
    conf["train"].pop("arch")
    (tmp_path / "arm" / "config.json").write_text(json.dumps(conf))
    with pytest.raises(CheckpointError, match="order"):
        load(tmp_path / "arm")


def test_unknown_arch_is_refused():
    from fastmdm.sudoku.train import TrainConfig
    with pytest.raises(ValueError, match="arch"):
        TrainConfig(steps=1, arch="arm-random")
    with pytest.raises(ValueError, match="arch"):
        sudoku_model("tiny", arch="gpt")


# ---------------------------------------------------------------- fastmdm sudoku compare
@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (917, 1000)])
def test_wilson_interval_matches_scipy(k, n):
    from scipy.stats import binomtest

    from fastmdm.sudoku.evaluate import wilson_interval
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-6)


def test_compare_puts_mdm_orders_and_arm_rows_in_one_table(tmp_path, capsys):
    from cli_helpers import failing

    from fastmdm.checkpoint import save_model
    from fastmdm.cli import main
    torch.manual_seed(0)
    mdm, armd = tmp_path / "mdm", tmp_path / "arm"
    save_model(mdm, sudoku_model("tiny"), extra={"trained": {"steps": 3, "samples": 12, "parameters": 1}})
    save_model(armd, tiny_arm("rowmajor"), extra={"train": {"arch": "arm-rowmajor"},
                                                  "trained": {"steps": 2, "samples": 8, "parameters": 2,
                                                              "init_from": [{"steps": 1, "samples": 4}]}})
    out = tmp_path / "c.json"
    assert main(["sudoku", "compare", "--checkpoints", f"{mdm},{armd}", "--split", "standard", "--n", "3",
                 "--strategies", "margin,random", "--threads", "1", "--json", str(out), "--md",
                 str(tmp_path / "c.md"), "--plot", str(tmp_path / "c.png"), "--arm-cells-given"]) == 0
    table = capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    assert [(r["arch"], r["decoding"]) for r in rows] == [("mdm", "margin"), ("mdm", "random"),
                                                          ("arm-rowmajor", "arm-rowmajor"),
                                                          ("arm-rowmajor", "arm-rowmajor, cells given")]
    assert rows[2]["samples"] == 12 and rows[2]["steps"] == 3
    # a row-major ARM's own cells are its training order: giving them changes nothing
    for key in ("solved", "cell_acc", "calls_per_puzzle"):
        assert rows[3]["splits"]["standard"][key] == rows[2]["splits"]["standard"][key]
    assert all(r["splits"]["standard"]["n"] == 3 for r in rows)
    assert "ARM, rowmajor order" in table and (tmp_path / "c.png").stat().st_size > 0
    err = failing(["sudoku", "compare", "--checkpoints", str(tmp_path / "nope"), "--n", "2"], capsys, 1)
    assert "no such checkpoint" in err


def test_cells_given_evaluation_scores_the_digits_written_in_the_solvers_order(engine_puzzles):
    from fastmdm.sudoku.evaluate import evaluate_arm
    model = tiny_arm("solver", seed=8)
    model.arm_order = "solver"
    p, s = (torch.as_tensor(engine_puzzles[k][:5]).long() for k in ("puzzles", "solutions"))
    r = evaluate_arm(model, p, s, cells_given=True, batch_size=2)
    ranks = torch.as_tensor(arm.fill_orders(p.numpy(), s.numpy(), "solver")).long()
    with torch.no_grad():
        a, _ = arm.decode_arm(model, p, "solver", ranks=ranks)
    blank = p == 0
    assert r["strategy"] == "arm-solver, cells given" and r["n"] == 5
    assert r["cell_acc"] == pytest.approx(float(((a == s) & blank).sum()) / float(blank.sum()))
    assert r["calls_per_puzzle"] == pytest.approx(float(blank.sum()) / 5)   # one call per blank: the digit


def test_cell_and_digit_tokens_get_the_unit_vector_of_the_cell_they_write(engine_puzzles):
    model = tiny_arm("solver", seed=5)
    p, s = (torch.as_tensor(engine_puzzles[k][:2]).long() for k in ("puzzles", "solutions"))
    seqs = arm.sequences(p, s, torch.as_tensor(arm.fill_orders(p.numpy(), s.numpy(), "solver")).long())
    scheme = model.position_scheme
    from fastmdm.sudoku.positions import unit_vectors
    units = unit_vectors(model)
    named = scheme.embed_named(model, seqs, 0, seqs.shape[1])
    assert torch.equal(named[:, :82], torch.zeros_like(named[:, :82]))  # the puzzle and SEP name nothing
    for b in range(2):
        for t in range(82, seqs.shape[1], 2):
            if seqs[b, t] == arm.SEP:
                assert not named[b, t:].any()
                break
            c = int(seqs[b, t]) - arm.CELL0
            assert torch.equal(named[b, t], units[c]) and torch.equal(named[b, t + 1], units[c])
    # a window sees the same vectors as the whole sequence
    torch.testing.assert_close(scheme.embed_named(model, seqs, 91, 120), named[:, 91:120])


def test_decode_order_is_the_step_each_blank_was_written(engine_puzzles):
    model = tiny_arm("solver", seed=6)
    p = torch.as_tensor(engine_puzzles["puzzles"][:3]).long()
    a, _, w = arm.decode_arm(model, p, "solver", return_order=True)
    assert ((w == -1) == (p != 0)).all()
    for b in range(3):
        n = int((p[b] == 0).sum())
        assert sorted(w[b][p[b] == 0].tolist()) == list(range(n))


def test_decoding_in_given_ranks_writes_the_blanks_in_that_order_with_the_models_digits(engine_puzzles):
    model = tiny_arm("solver", seed=7)
    p = torch.as_tensor(engine_puzzles["puzzles"][:3]).long()
    ranks = torch.as_tensor(arm.fill_orders(engine_puzzles["puzzles"][:3], engine_puzzles["solutions"][:3],
                                            "solver")).long()
    with torch.no_grad():
        a, calls, w = arm.decode_arm(model, p, "solver", return_order=True, ranks=ranks)
        assert torch.equal(w, ranks) and torch.equal(a[p != 0], p[p != 0]) and calls == int((p == 0).sum(1).max())
        for b in range(3):  # the digits: a full forward per call on the forced cells
            x = torch.cat([p[b], torch.tensor([arm.SEP])])[None]
            for c in ranks[b].argsort()[int((ranks[b] < 0).sum()):].tolist():
                x = torch.cat([x, torch.tensor([[arm.CELL0 + c]])], 1)
                digit = int(model(x)[0, -1, 1:10].argmax()) + 1
                assert int(a[b, c]) == digit
                x = torch.cat([x, torch.tensor([[digit]])], 1)
    bad = ranks.clone()
    bad[0, bad[0].argmax()] = 0            # two blanks at rank 0
    with pytest.raises(ValueError, match="ranks"):
        arm.decode_arm(model, p, "solver", ranks=bad)


def test_analyze_reports_an_arms_picks_beside_the_mdms(tmp_path, capsys):
    from cli_helpers import failing

    from fastmdm.checkpoint import save_model
    from fastmdm.cli import main
    armd = tmp_path / "arm"
    save_model(armd, tiny_arm("solver"), extra={"train": {"arch": "arm-solver"}})
    out = tmp_path / "res"
    assert main(["sudoku", "analyze", "--n", "2", "--rates", "1", "--strategies", "margin", "--split", "standard",
                 "--arm", str(armd), "--threads", "1", "--out", str(out), "--name", "a", "--no-plot"]) == 0
    rep = json.loads((out / "a.json").read_text())
    assert set(rep["splits"]["standard"]["orders"]) == {"margin", "arm-solver"}
    assert rep["splits"]["standard"]["orders"]["arm-solver"]["puzzles"] == 2
    sub = rep["splits"]["standard"]["arm_subproblems"]["arm-solver"]
    assert sub["order"] == "solver" and sub["total"]["cells"] == sum(r["cells"] for r in sub["per_class"]) > 0
    md = (out / "a.md").read_text()
    assert "| arm-solver, its order |" in md and "its most likely open blank is the grader's next cell" in md
    mdm = tmp_path / "mdm"
    save_model(mdm, sudoku_model("tiny"))
    err = failing(["sudoku", "analyze", "--n", "2", "--arm", str(mdm), "--no-plot", "--out", str(out)], capsys, 1)
    assert "not an autoregressive baseline" in err


@pytest.mark.parametrize("order", arm.ORDERS)
def test_arm_subproblems_equal_a_step_by_step_reference(engine_puzzles, order):
    from fastmdm.sudoku import analyze as an
    model = tiny_arm(order, seed=6)
    puzzles, solutions = engine_puzzles["puzzles"][:3], engine_puzzles["solutions"][:3]
    got = an.arm_subproblem_errors(model, puzzles, solutions, rates=(1.0, 0.5), batch_size=2, threads=1)
    ranks = arm.fill_orders(puzzles, solutions, order)
    n_cls = len(an.CLASS_LABELS)
    cells, errors, loss = np.zeros(n_cls, int), np.zeros(n_cls, int), np.zeros(n_cls)
    cell_errors, late = 0, 0
    with torch.no_grad():
        for i in range(len(puzzles)):
            board = puzzles[i].copy()
            x = torch.cat([torch.as_tensor(puzzles[i]).long(), torch.tensor([arm.SEP])])[None]
            blanks = int((puzzles[i] == 0).sum())
            for t in range(blanks):
                cell = int(np.flatnonzero(ranks[i] == t)[0])
                cls = int(an._class_index(engine.cell_hardness(board[None], 1)[0, cell]))
                cell_logits = model(x)[0, -1, arm.CELL0:arm.CELL0 + 81].masked_fill(torch.as_tensor(board != 0),
                                                                                     -torch.inf)
                cell_errors += int(cell_logits.argmax()) != cell
                x = torch.cat([x, torch.tensor([[arm.CELL0 + cell]])], 1)
                z = model(x)[0, -1]
                digit = int(solutions[i, cell])
                cells[cls] += 1
                errors[cls] += int(z[1:10].argmax()) + 1 != digit
                loss[cls] += float(F.cross_entropy(z[None], torch.tensor([digit])))
                late += (blanks - t) / blanks <= 0.5
                x = torch.cat([x, torch.tensor([[digit]])], 1)
                board[cell] = digit
    assert [r["cells"] for r in got["per_class"]] == cells.tolist()
    assert [r["errors"] for r in got["per_class"]] == errors.tolist()
    for r, c, s in zip(got["per_class"], cells, loss):
        if c:
            assert r["mean_loss"] == pytest.approx(s / c, rel=1e-4)
    assert got["total"]["cells"] == int((puzzles == 0).sum())
    assert [r["total"]["cells"] for r in got["per_rate"]] == [late, got["total"]["cells"] - late]
    assert got["order"] == order
    if order == "solver":
        assert got["cells"]["total"]["errors"] == cell_errors
    else:
        assert "cells" not in got
