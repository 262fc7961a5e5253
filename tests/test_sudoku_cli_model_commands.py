import json

import pytest
import torch
from cli_helpers import failing

from fastmdm.checkpoint import save_model
from fastmdm.cli import main
from fastmdm.sudoku.data import synthetic_puzzles
from fastmdm.sudoku.model import sudoku_model

pytestmark = pytest.mark.usefixtures("one_thread")


PUZZLE = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79"


def eval_set(tmp_path, n, seed):
    """n synthetic puzzles and the '<puzzle> <solution>' file `sudoku eval --file` reads."""
    d = synthetic_puzzles(n, seed=seed)
    f = tmp_path / "set.txt"
    f.write_text("\n".join("".join(map(str, p)) + " " + "".join(map(str, s))
                           for p, s in zip(d["puzzles"], d["solutions"])) + "\n")
    return d, f


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    save_model(d, sudoku_model("tiny"), extra={"trained": {"steps": 3, "init_from": [{"steps": 1000}]}})
    return str(d)


def test_solve_prints_one_81_digit_answer_per_puzzle_in_input_order(ckpt, tmp_path, capsys):
    f = tmp_path / "p.txt"
    other = PUZZLE.replace(".", "0")[::-1]
    f.write_text(f"# a comment\n\n{PUZZLE}\n{other}\n")
    code = main(["sudoku", "solve", "--checkpoint", ckpt, "--file", str(f)])
    out, err = capsys.readouterr()
    lines = out.split()
    # an untrained model's answers break rules: printed all the same, flagged on stderr by line, exit code 1
    assert code == 1 and f"{f} line 3: the model's answer breaks a rule" in err
    assert len(lines) == 2
    for line, p in zip(lines, (PUZZLE, other)):
        assert len(line) == 81 and set(line) <= set("123456789")
        assert all(c in ".0" or c == a for c, a in zip(p, line))  # clues kept


def test_solve_json_reports_validity_of_each_answer(ckpt, capsys):
    code = main(["sudoku", "solve", PUZZLE, "--checkpoint", ckpt, "--json", "--strategy", "random"])
    rec = json.loads(capsys.readouterr().out)
    assert rec["puzzle"] == PUZZLE and len(rec["answer"]) == 81 and isinstance(rec["valid"], bool)
    assert code == (0 if rec["valid"] else 1)


def test_solve_with_the_shipped_model_prints_a_valid_answer_and_exits_0(capsys):
    from fastmdm.sudoku import engine
    assert main(["sudoku", "solve", PUZZLE, "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["valid"] and rec["answer"] == "".join(map(str, engine.solve(PUZZLE).solution))


@pytest.mark.parametrize("bad, reason", [
    ("55" + PUZZLE[2:], "contradictory givens: digit 5 appears twice in row 1"),
    ("." * 81, "several solutions"),
    # givens that clash with no unit repeated: r1c3 can hold no digit (row 1 and column 3 use all nine)
    ("12.456789" + "..3" + "." * 69, "no solution"),
])
def test_solve_refuses_a_puzzle_that_is_not_a_sudoku_before_decoding(ckpt, tmp_path, capsys, bad, reason):
    f = tmp_path / "p.txt"
    f.write_text(f"{PUZZLE}\n# note\n{bad}\n")
    err = failing(["sudoku", "solve", "--checkpoint", ckpt, "--file", str(f)], capsys, 1)
    assert f"{f} line 3: {reason}" in err, err
    assert capsys.readouterr().out == ""  # nothing decoded, nothing printed


def test_solve_names_the_bad_line(ckpt, tmp_path, capsys):
    f = tmp_path / "bad.txt"
    f.write_text(PUZZLE + "\n" + "12x" + "." * 78 + "\n")
    assert "line 2" in failing(["sudoku", "solve", "--checkpoint", ckpt, "--file", str(f)], capsys, 1)


def test_eval_on_a_file_prints_a_table_and_writes_json(ckpt, tmp_path, capsys):
    d, f = eval_set(tmp_path, 6, seed=2)
    out = tmp_path / "r.json"
    assert main(["sudoku", "eval", "--checkpoint", ckpt, "--file", str(f), "--strategies", "random,margin",
                 "--json", str(out), "--steps", "10"]) == 0
    text = capsys.readouterr().out
    assert "| margin |" in text and "| random |" in text
    res = json.loads(out.read_text())
    rows = res["results"][str(f)]
    assert [r["strategy"] for r in rows] == ["random", "margin"] and rows[0]["n"] == 6 and rows[0]["nfe"] == 10


def test_eval_sweeps_k_into_one_table_per_value_json_and_a_line_chart(ckpt, tmp_path, capsys):
    d, f = eval_set(tmp_path, 4, seed=3)
    out, png = tmp_path / "r.json", tmp_path / "sweep.png"
    assert main(["sudoku", "eval", "--checkpoint", ckpt, "--file", str(f), "--strategies", "margin",
                 "--sweep-k", "1,4,16", "--json", str(out), "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert text.count("| margin | ") == 3 and "k=16" in text  # a table per k (the summary heads a column)
    sweep = json.loads(out.read_text())["sweep"]
    assert [s["k"] for s in sweep] == [1, 4, 16]
    blanks = int((torch.as_tensor(d["puzzles"]) == 0).sum(1).max())
    assert [s["results"][str(f)][0]["nfe"] for s in sweep][0] == blanks  # one cell per call
    assert sweep[2]["results"][str(f)][0]["nfe"] == -(-blanks // 16)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "--sweep-k" in failing(["sudoku", "eval", "--checkpoint", ckpt, "--file", str(f), "--sweep-k", "0,2"],
                                  capsys, 2)


def engine_set(tmp_path, n, seed):
    """n engine puzzles (unique solutions, so `solve` takes them) and their '<puzzle> <solution>' file."""
    from fastmdm.sudoku import data as sdata
    d = sdata.generate(n, "standard", seed=seed)
    f = tmp_path / "engine.txt"
    f.write_text("\n".join("".join(map(str, p)) + " " + "".join(map(str, s))
                           for p, s in zip(d["puzzles"], d["solutions"])) + "\n")
    return d, f


@pytest.mark.parametrize("strategy, threshold", [("confidence", 0.99), ("margin", 0.9), ("entropy", 0.95)])
def test_threshold_answers_and_calls_are_those_of_fastmdm_sample(tmp_path, capsys, strategy, threshold):
    import math

    import fastmdm
    from fastmdm.sudoku import model as smodel
    from fastmdm.sudoku.grids import valid_solutions
    d, f = engine_set(tmp_path, 5, seed=7)
    model, _ = smodel.load()
    puzzles = torch.as_tensor(d["puzzles"]).long()
    library = math.log(threshold) if strategy == "entropy" else threshold  # entropy: exp(-H) >= T
    ref = fastmdm.sample(model, puzzles, strategy=strategy, mask_id=0, threshold=library, return_trace=True)
    # solve prints the library's answers
    main(["sudoku", "solve", "--file", str(f), "--strategy", strategy, "--threshold", str(threshold)])
    lines = capsys.readouterr().out.split()
    assert lines == ["".join(str(int(v)) for v in row) for row in ref.tokens]
    # eval counts its solved puzzles and the calls each puzzle was still in
    out = tmp_path / "r.json"
    assert main(["sudoku", "eval", "--file", str(f), "--strategies", strategy, "--threshold", str(threshold),
                 "--json", str(out)]) == 0
    body = json.loads(out.read_text())
    (row,) = body["results"][str(f)]
    assert body["settings"]["threshold"] == threshold
    assert row["solved"] == int(valid_solutions(puzzles, ref.tokens).sum()) and row["nfe"] == ref.nfe
    assert row["calls_per_puzzle"] == pytest.approx(float((ref.order.max(-1).values + 1).double().mean()))
    assert row["calls_per_puzzle"] < (puzzles == 0).sum(1).double().mean()  # fewer than one cell per call


def test_eval_sweeps_k_and_thresholds_into_json_rows_and_a_calls_chart(ckpt, tmp_path, capsys):
    d, f = eval_set(tmp_path, 5, seed=4)
    out, png = tmp_path / "r.json", tmp_path / "calls.png"
    assert main(["sudoku", "eval", "--checkpoint", ckpt, "--file", str(f), "--strategies", "margin,entropy",
                 "--sweep-k", "1,4", "--sweep-threshold", "0.5,0.9", "--json", str(out), "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "threshold=0.9" in text and "| k=4 |" in text and "fewest calls within its 95% interval" in text
    body = json.loads(out.read_text())
    assert [s["k"] for s in body["sweep"]] == [1, 4]
    assert [s["threshold"] for s in body["sweep_threshold"]] == [0.5, 0.9]
    blanks = torch.as_tensor(d["puzzles"] == 0).sum(1)
    for s in body["sweep"]:
        for row in s["results"][str(f)]:  # calls per puzzle on the same axis: ceil(blanks / k), averaged
            assert row["calls_per_puzzle"] == pytest.approx(float((-(-blanks // s["k"])).double().mean()))
    for s in body["sweep_threshold"]:
        rows = s["results"][str(f)]
        assert [r["strategy"] for r in rows] == ["margin", "entropy"]
        for r in rows:
            lo, hi = r["puzzle_acc_ci95"]
            assert 1 <= r["calls_per_puzzle"] <= blanks.double().mean() and lo <= r["puzzle_acc"] <= hi
    best = body["fewest_calls"][str(f)]
    assert best["reference"]["schedule"] == "k=1" and best["within_ci"]["calls_per_puzzle"] <= \
        best["as_many"]["calls_per_puzzle"] <= best["reference"]["calls_per_puzzle"]
    settings = body["settings"]
    assert settings["sweep_threshold"] == [0.5, 0.9] and settings["command"].startswith("fastmdm sudoku eval ")
    assert settings["torch"] == torch.__version__ and settings["cpu"] and settings["date"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_prints_the_table_and_the_margin_fill_order(ckpt, capsys):
    assert main(["demo", "--checkpoint", ckpt, "--n", "8", "--no-animation", "--hard"]) == 0
    out = capsys.readouterr().out
    for s in ("random", "confidence", "margin", "entropy"):
        assert f"| {s} |" in out
    assert "fill step of each blank" in out and "order: r" in out
    assert "hard: puzzles solved" in out
    assert "(1,003 training steps)" in out  # a warm-restarted model counts the runs it started from


def test_eval_and_solve_take_a_precision_and_record_it(ckpt, tmp_path, capsys):
    d, f = eval_set(tmp_path, 3, seed=4)
    out = tmp_path / "r.json"
    assert main(["sudoku", "eval", "--checkpoint", ckpt, "--file", str(f), "--strategies", "margin",
                 "--precision", "bf16", "--json", str(out)]) == 0
    assert "precision=bf16" in capsys.readouterr().out
    assert json.loads(out.read_text())["settings"]["precision"] == "bf16"
    assert main(["sudoku", "solve", "--checkpoint", ckpt, "--precision", "bf16", PUZZLE]) in (0, 1)
    assert len(capsys.readouterr().out.split()[0]) == 81
    assert "--precision" in failing(["sudoku", "solve", "--checkpoint", ckpt, "--precision", "fp16", PUZZLE],
                                    capsys, 2)


def test_demo_sizes_its_default_run_by_precision(ckpt, capsys, monkeypatch):
    from fastmdm import adapters
    from fastmdm.sudoku import demo
    monkeypatch.setattr(demo, "DEFAULT_N", {"bf16": 6, "fp32": 5})
    monkeypatch.setattr(adapters, "cpu_flags", lambda: {"avx2"})
    assert main(["demo", "--checkpoint", ckpt, "--no-animation"]) == 0
    out = capsys.readouterr().out
    assert "float32 on" in out and "/5)" in out
    monkeypatch.setattr(adapters, "cpu_flags", lambda: {"amx_bf16"})
    assert main(["demo", "--checkpoint", ckpt, "--no-animation"]) == 0
    out = capsys.readouterr().out
    assert "bf16 autocast (this CPU has AMX)" in out and "/6)" in out
    assert "--n" in failing(["demo", "--checkpoint", ckpt, "--n", "0"], capsys, 2)


def test_train_command_runs_and_resumes(tmp_path, capsys):
    args = ["sudoku", "train", "--preset", "tiny", "--steps", "4", "--batch-size", "8", "--n-train", "64",
            "--eval-every", "2", "--eval-n", "4", "--save-every", "2", "--out", str(tmp_path / "run"),
            "--cache-dir", str(tmp_path / "data"), "--threads", "1"]
    assert main(args + ["--stop-after", "2"]) == 0
    assert json.loads((tmp_path / "run" / "trainer.json").read_text())["step"] == 2
    assert main(args + ["--resume"]) == 0
    assert json.loads((tmp_path / "run" / "trainer.json").read_text())["step"] == 4
