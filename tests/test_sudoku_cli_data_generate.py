"""`fastmdm sudoku generate` and `fastmdm sudoku grade`."""
import subprocess
import sys

import numpy as np
from cli_helpers import failing

from fastmdm.cli import main
from fastmdm.sudoku import engine, grids


def test_generate_txt_writes_puzzle_solution_and_strategy_per_line(tmp_path):
    out = tmp_path / "p.txt"
    assert main(["sudoku", "generate", "--n", "20", "--seed", "3", "--out", str(out), "--quiet"]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 20
    ref = engine.generate(20, seed=3)
    for line, p, s, d in zip(lines, ref["puzzles"], ref["solutions"], ref["difficulty"]):
        a, b, name = line.split(" ")
        assert a == grids.format_grid(p) and b == grids.format_grid(s) and name == engine.DIFFICULTY_NAMES[d]
        assert "0" not in a and len(a) == len(b) == 81
    back = grids.read_dataset(str(out))
    assert (back["puzzles"] == ref["puzzles"]).all() and (back["solutions"] == ref["solutions"]).all()


def test_generate_npz_is_byte_identical_across_thread_counts(tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    for out, threads in ((a, "1"), (b, "2")):
        main(["sudoku", "generate", "--n", "30", "--split", "hard", "--seed", "1", "--out", str(out),
              "--threads", threads, "--quiet"])
    assert a.read_bytes() == b.read_bytes()
    with np.load(a, allow_pickle=False) as z:
        assert {"puzzles", "solutions", "order", "strategy", "difficulty"} <= set(z.files)
        assert z["puzzles"].dtype == np.int8 and z["puzzles"].shape == (30, 81)
        assert (z["difficulty"] == engine.BEYOND).all()
        assert str(z["split"]) == "hard" and list(z["strategy_names"]) == list(engine.DIFFICULTY_NAMES)


def test_generate_to_stdout_and_bad_arguments(capsys):
    main(["sudoku", "generate", "--n", "2", "--quiet"])
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert "--split" in failing(["sudoku", "generate", "--n", "2", "--split", "medium"], capsys, 2)
    assert "needs --out" in failing(["sudoku", "generate", "--n", "2", "--format", "npz", "--quiet"], capsys, 2)
    assert "--threads" in failing(["sudoku", "generate", "--n", "2", "--threads", "0"], capsys, 2)
    assert "max_clues" in failing(["sudoku", "generate", "--n", "2", "--max-clues", "18", "--quiet"], capsys, 2)


def test_grade_command_names_the_bad_line(tmp_path, capsys):
    f = tmp_path / "in.txt"
    easy = "003020600900305001001806400008102900700000008006708200002609500800203009005010300"
    f.write_text(f"# two puzzles\n{easy}\n\n{'.' * 81}\n")
    assert "line 4: puzzle has several solutions" in failing(["sudoku", "grade", str(f)], capsys, 1)
    f.write_text(f"{easy}\n{easy[:-1]}\n")
    assert "line 2: puzzle has 80 characters" in failing(["sudoku", "grade", str(f)], capsys, 1)
    f.write_text(f"{easy}\n")
    capsys.readouterr()
    main(["sudoku", "grade", str(f)])
    p, s, name = capsys.readouterr().out.split()
    assert p == easy.replace("0", ".") and name in engine.TECHNIQUES


def test_console_script_shows_a_progress_bar_on_stderr(tmp_path):
    out = tmp_path / "p.txt"
    r = subprocess.run([sys.executable, "-m", "fastmdm.cli", "sudoku", "generate", "--n", "10", "--out", str(out)],
                       capture_output=True, text=True, check=True)
    assert r.stdout == ""
    assert "sudoku standard: 100%" in r.stderr  # tqdm
    assert "wrote 10 standard puzzles" in r.stderr
