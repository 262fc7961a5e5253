"""`fastmdm zebra generate`, `check` and `solve`."""
import io
import subprocess
import sys

import numpy as np
import pytest
from cli_helpers import failing

from fastmdm.cli import main
from fastmdm.zebra import engine, files
from fastmdm.zebra.engine import Task

SMALL = ["--houses", "3", "--attributes", "4"]
TASK = Task(3, 4)


def test_generate_txt_has_a_header_and_one_puzzle_per_line(tmp_path):
    out = tmp_path / "z.txt"
    assert main(["zebra", "generate", "--n", "20", "--seed", "3", *SMALL, "--out", str(out), "--quiet"]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == files.header(TASK, 3) and len(lines) == 21 and all(" | " in line for line in lines[1:])
    back, task, _ = files.read_text(str(out))
    assert task == TASK and np.array_equal(back, engine.generate(20, TASK, seed=3).tokens)


def test_generate_npz_is_byte_identical_across_thread_counts(tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    for out, threads in ((a, "1"), (b, "2")):
        assert main(["zebra", "generate", "--n", "300", "--seed", "1", "--out", str(out), "--threads", threads,
                     "--quiet"]) == 0
    assert a.read_bytes() == b.read_bytes()
    with np.load(a, allow_pickle=False) as z:
        assert z["tokens"].shape == (300, 150) and z["order"].shape == (300, 25) and int(z["seed"]) == 1
        assert (int(z["houses"]), int(z["attributes"]), int(z["max_clues"]), int(z["logic_only"])) == (5, 5, 25, 0)


def test_check_passes_generated_files_with_a_line_per_puzzle(tmp_path, capsys):
    for name in ("z.txt", "z.npz"):
        out = tmp_path / name
        main(["zebra", "generate", "--n", "4", *SMALL, "--logic-only", "--out", str(out), "--quiet"])
        capsys.readouterr()
        assert main(["zebra", "check", str(out)]) == 0
        text = capsys.readouterr().out.splitlines()
        assert len(text) == 5 and all(line.endswith(": ok") for line in text[:4])
        assert "4 puzzles of 3 houses x 4 attributes, up to 12 clues, logic-only: 4 solved (100.00%)" in text[4]


def test_check_names_what_is_wrong(tmp_path, capsys):
    out = tmp_path / "z.txt"
    main(["zebra", "generate", "--n", "4", *SMALL, "--out", str(out), "--quiet"])
    lines = out.read_text().splitlines()
    clues, grid = lines[2].split(" | ")
    houses = grid.split()
    houses[0], houses[1] = houses[1], houses[0]  # two houses swapped: permutations hold, clues do not
    lines[2] = f"{clues} | {' '.join(houses)}"
    clues, grid = lines[4].split(" | ")
    lines[4] = f"{clues} | .{grid[1:]}"
    out.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert main(["zebra", "check", str(out)]) == 1
    got = capsys.readouterr()
    assert "line 3: not solved: clue" in got.out and "does not hold" in got.out
    assert "line 5: not solved: 1 cell is masked" in got.out and "2 solved (50.00%), 2 not" in got.out
    assert len(got.err.strip().splitlines()) == 1 and "line 3: clue" in got.err and "(and 1 more)" in got.err
    assert main(["zebra", "check", str(out), "--summary"]) == 1
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_solve_prints_the_grid_and_every_step(tmp_path, capsys):
    out = tmp_path / "z.txt"
    main(["zebra", "generate", "--n", "2", *SMALL, "--seed", "5", "--out", str(out), "--quiet"])
    capsys.readouterr()
    assert main(["zebra", "solve", str(out)]) == 0
    text = capsys.readouterr().out.splitlines()
    p = engine.generate(2, TASK, seed=5)
    assert text[0].startswith("line 2: unique solution") and text[1].endswith(files.format_grid(
        p.tokens[0, TASK.cell_positions].reshape(3, 4)))
    assert sum(line.startswith("  step ") for line in text) == 2 * TASK.cells
    assert main(["zebra", "solve", str(out), "--no-steps"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
    assert main(["zebra", "solve", str(out), "--keep-cells"]) == 0  # every cell given: no steps to take
    assert "0 guesses, 0 propagation rounds" in capsys.readouterr().out


def test_solve_of_contradictory_givens_fails_on_one_line(tmp_path, capsys):
    out = tmp_path / "z.txt"
    main(["zebra", "generate", "--n", "1", *SMALL, "--out", str(out), "--quiet"])
    lines = out.read_text().splitlines()
    clues, grid = lines[1].split(" | ")
    first = str((int(grid[0]) + 1) % 3)
    lines[1] = f"{clues} | {first}{'.' * 3} {'.' * 4} {'.' * 4}"
    out.write_text("\n".join(lines) + "\n")
    err = failing(["zebra", "solve", str(out), "--keep-cells"], capsys, 1)
    assert "line 2: the clues and given cells have no solution" in err


def test_check_of_a_text_file_without_header_needs_the_task(tmp_path, capsys):
    out = tmp_path / "z.txt"
    main(["zebra", "generate", "--n", "3", *SMALL, "--out", str(out), "--quiet"])
    out.write_text(out.read_text().split("\n", 1)[1])
    assert "--houses" in failing(["zebra", "check", str(out)], capsys, 1)
    capsys.readouterr()
    assert main(["zebra", "check", str(out), *SMALL]) == 0


def test_check_reads_stdin(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(files.format_lines(engine.generate(3, TASK).tokens, TASK)))
    assert main(["zebra", "check", "-", "--summary"]) == 0
    assert "3 solved" in capsys.readouterr().out


@pytest.mark.parametrize("argv, code, says", [
    (["zebra", "generate"], 2, "--n"),
    (["zebra", "generate", "--n", "-1"], 2, "--n"),
    (["zebra", "generate", "--n", "2", "--houses", "1"], 2, "--houses"),
    (["zebra", "generate", "--n", "2", "--houses", "9"], 2, "--houses"),
    (["zebra", "generate", "--n", "2", "--attributes", "9"], 2, "--attributes"),
    (["zebra", "generate", "--n", "2", "--max-clues", "0"], 2, "--max-clues"),
    (["zebra", "generate", "--n", "2", "--max-clues", "200"], 2, "--max-clues"),
    (["zebra", "generate", "--n", "2", "--seed", str(2**64)], 2, "--seed"),
    (["zebra", "generate", "--n", "2", "--format", "npz"], 2, "--out"),
    (["zebra", "generate", "--n", "2", "--threads", "0"], 2, "--threads"),
    (["zebra", "generate", "--n", "2", "--out", "{root}/no/such/dir/x.txt", "--quiet"], 1, "--out"),
    (["zebra", "generate", "--n", "1", "--houses", "3", "--attributes", "3", "--max-clues", "1", "--quiet"], 1,
     "raise max_clues"),
    (["zebra", "check"], 2, "file"),
    (["zebra", "check", "{root}/nope.txt"], 1, "nope.txt: cannot read it"),
    (["zebra", "check", "{root}"], 1, "cannot read it"),
    (["zebra", "check", "{root}/bin"], 1, "not a text file"),
    (["zebra", "check", "{root}/bad.npz"], 1, "bad.npz"),
    (["zebra", "check", "{root}/other.npz", "--houses", "4"], 1, "differs"),
    (["zebra", "check", "{root}/badline.txt"], 1, "line 2: clue 0"),
    (["zebra", "solve", "{root}/nope.txt"], 1, "cannot read it"),
    (["zebra", "solve", "{root}/badline.txt"], 1, "RELATION"),
    (["zebra"], 2, "SUBCOMMAND"),
])
def test_bad_command_lines_and_files_fail_on_one_line(tmp_path, capsys, argv, code, says):
    (tmp_path / "bin").write_bytes(b"\xff\xfe\x00binary")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated")
    files.save_npz(tmp_path / "other.npz", engine.generate(2, TASK).tokens, TASK)
    (tmp_path / "badline.txt").write_text(files.header(TASK) + "\n0.0 beside 1.1 | 0123 1230 2301\n")
    argv = [a.replace("{root}", str(tmp_path)) for a in argv]
    err = failing(argv, capsys, code)
    assert err.startswith("fastmdm zebra") and says in err


def test_console_script_shows_a_progress_bar_and_a_summary_on_stderr(tmp_path):
    out = tmp_path / "z.npz"
    r = subprocess.run([sys.executable, "-m", "fastmdm.cli", "zebra", "generate", "--n", "10", "--out", str(out)],
                       capture_output=True, text=True, check=True)
    assert r.stdout == ""
    assert "zebra: 100%" in r.stderr and "wrote 10 puzzles" in r.stderr
