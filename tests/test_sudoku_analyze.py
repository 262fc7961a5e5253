"""`fastmdm.sudoku.analyze` and `fastmdm sudoku analyze`: the classes recorded for each pick are those of the
boards rebuilt step by step from the trace, the subproblem table counts what `cell_hardness` says, the decoder
hook takes any (answers, order), and the command writes its report or fails on one line."""
import json
import sys

import numpy as np
import pytest
from cli_helpers import failing

from fastmdm.cli import main
from fastmdm.sudoku import analyze as an
from fastmdm.sudoku import data as sdata
from fastmdm.sudoku import engine
from fastmdm.sudoku.model import load

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    return load()[0]


@pytest.fixture(scope="module")
def sets():
    return {s: sdata.test_set(s, 4) for s in ("standard", "hard")}


def _rebuilt_classes(puzzles, answers, order):
    """(class index, wrong) of every pick, by filling each puzzle step by step and grading the board each time."""
    classes = []
    for p, a, o in zip(puzzles, answers, order):
        board = p.copy()
        for t in range(int(o.max()) + 1):
            cells = np.flatnonzero(o == t)
            h = engine.cell_hardness(board)[0]
            classes += [int(h[c]) for c in cells]
            board[cells] = a[cells]
        assert (board == a).all()
    h = np.array(classes)
    return np.where(h == engine.CONTRADICTORY, len(an.CLASS_LABELS) - 1, h)


@pytest.mark.parametrize("strategy", ["margin", "random"])
def test_pick_classes_are_the_hardness_of_the_boards_rebuilt_from_the_trace(model, sets, strategy):
    for d in sets.values():
        answers, order = an.mdm_decoder(model, strategy, seed=1)(d["puzzles"])
        blanks = (d["puzzles"] == 0).sum(1)
        for o, n in zip(order, blanks):  # one cell per step: steps 0..n-1
            assert sorted(o[o >= 0]) == list(range(n))
        table = an.pick_table(d["puzzles"], d["solutions"], answers, order)
        cls = _rebuilt_classes(d["puzzles"], answers, order)
        got = [r["cells"] for r in table["picks"]["all"]["per_class"]]
        assert got == np.bincount(cls, minlength=len(an.CLASS_LABELS)).tolist()
        assert table["picks"]["all"]["total"]["cells"] == blanks.sum()
        assert table["solved"] == int((answers == d["solutions"]).all(1).sum())
        clean = table["picks"]["clean"]["total"]["cells"] + table["picks"]["after_error"]["cells"]
        assert clean == blanks.sum()


def test_subproblems_at_rate_one_are_the_puzzles_own_classes(model, sets):
    d = sets["hard"]
    sub = an.subproblem_errors(model, d["puzzles"], d["solutions"], rates=(1.0,))
    h = engine.cell_hardness(d["puzzles"])
    want = [int((h == i).sum()) for i in range(8)] + [0]
    assert [r["cells"] for r in sub["per_class"]] == want
    assert sub["total"]["cells"] == (d["puzzles"] == 0).sum()
    assert want[engine.BEYOND_CLASS] > 0  # hard puzzles have cells beyond the seven
    for r in sub["per_class"]:
        if r["cells"]:
            assert 0 <= r["error_rate"] <= 1 and r["mean_loss"] >= 0


def test_masks_keep_the_clues_and_grow_with_the_rate(model, sets):
    d = sets["standard"]
    sub = an.subproblem_errors(model, d["puzzles"], d["solutions"], rates=(0.2, 0.6, 1.0), seed=5)
    cells = [pr["total"]["cells"] for pr in sub["per_rate"]]
    assert cells[0] < cells[1] < cells[2] == (d["puzzles"] == 0).sum()
    assert sub["per_rate"][0]["per_class"][0]["cells"] > 0  # light masks leave mostly naked singles


def test_the_decoder_hook_reports_any_order(model, sets):
    d = sets["standard"]

    def easy_first(puzzles):  # fills the solution in the grader's order: every pick right
        g = engine.grade_batch(puzzles, d["solutions"])
        return d["solutions"].copy(), g["order"].astype(np.int64)

    def wrong_first(puzzles):  # one wrong digit at step 0, then the rest at step 1
        answers = d["solutions"].copy()
        order = np.where(puzzles == 0, 1, -1)
        for b, p in enumerate(puzzles):
            c = int(np.flatnonzero(p == 0)[0])
            answers[b, c] = answers[b, c] % 9 + 1
            order[b, c] = 0
        return answers, order

    res = an.analyze(model, d["puzzles"], d["solutions"], orders=(), rates=(1.0,),
                     decoders={"easy": easy_first, "wrong": wrong_first})
    easy, wrong = res["orders"]["easy"], res["orders"]["wrong"]
    assert easy["solved"] == 4 and easy["picks"]["all"]["total"]["errors"] == 0
    assert easy["first_failure"]["failed"] == 0 and easy["picks"]["after_error"]["cells"] == 0
    assert wrong["solved"] == 0 and wrong["first_failure"]["failed"] == 4
    assert wrong["first_failure"]["steps"] == [0, 0, 0, 0] and wrong["first_failure"]["mean_fraction_done"] == 0
    assert wrong["picks"]["clean"]["total"]["cells"] == 4  # the first pick of each, on the puzzle itself


def test_pick_table_refuses_an_order_that_skips_a_blank(sets):
    d = sets["standard"]
    order = np.where(d["puzzles"] == 0, 0, -1)
    order[0, int(np.flatnonzero(d["puzzles"][0] == 0)[0])] = -1
    with pytest.raises(ValueError, match="order: must give a step"):
        an.pick_table(d["puzzles"], d["solutions"], d["solutions"], order)


def test_the_command_writes_json_markdown_and_figure(tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["sudoku", "analyze", "--n", "3", "--rates", "0.5,1", "--strategies", "margin,random",
                 "--threads", "1", "--out", str(out), "--name", "a"]) == 0
    stdout = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "a.md", "a.png"]
    rep = json.loads((out / "a.json").read_text())
    assert set(rep["splits"]) == {"standard", "hard"} and rep["settings"]["n"] == {"standard": 3, "hard": 3}
    assert list(rep["splits"]["hard"]["orders"]) == ["margin", "random"]
    assert rep["environment"]["command"].startswith("fastmdm sudoku analyze --n 3")
    md = (out / "a.md").read_text()
    assert rep["environment"]["command"] in md and "![" in md and "## hard (3 test puzzles)" in md
    assert "**Picks**" in stdout


def test_the_command_without_plot_needs_no_matplotlib(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    args = ["sudoku", "analyze", "--split", "standard", "--n", "2", "--rates", "1", "--strategies", "margin",
            "--threads", "1", "--out", str(tmp_path)]
    err = failing(args, capsys, 1)
    assert "needs matplotlib" in err and "--no-plot" in err
    assert main(args + ["--no-plot"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sudoku_analyze.json", "sudoku_analyze.md"]


@pytest.mark.parametrize("extra, code, text", [
    (["--rates", "0"], 2, "masking rates in (0, 1]"),
    (["--rates", "x,1"], 2, "masking rates in (0, 1]"),
    (["--name", "a/b"], 2, "file name stem"),
    (["--split", "medium"], 2, "expected standard, hard"),
    (["--strategies", "fastest"], 2, "unknown decoding strategy"),
    (["--n", "0"], 2, "expected an integer >= 1"),
    (["--checkpoint", "/nonexistent/ckpt"], 1, "/nonexistent/ckpt"),
])
def test_bad_arguments_fail_on_one_line(tmp_path, capsys, extra, code, text):
    err = failing(["sudoku", "analyze", "--out", str(tmp_path), *extra], capsys, code)
    assert err.startswith("fastmdm sudoku analyze: error:") and text in err, err


def test_an_out_path_that_is_a_file_fails_on_one_line(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    err = failing(["sudoku", "analyze", "--out", str(f)], capsys, 1)
    assert "is not a directory" in err
