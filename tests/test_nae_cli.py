"""`fastmdm nae generate` and `fastmdm nae check`."""
import io
import subprocess
import sys

import numpy as np
import pytest
from cli_helpers import failing

from fastmdm.cli import main
from fastmdm.nae import engine, files
from fastmdm.nae.engine import Task

SMALL = ["--latents", "6", "--observations", "10", "--structure-seed", "4"]
TASK = Task(latents=6, observations=10, structure_seed=4)


def test_generate_txt_has_a_header_and_one_sequence_per_line(tmp_path):
    out = tmp_path / "s.txt"
    assert main(["nae", "generate", "--n", "20", "--seed", "3", *SMALL, "--out", str(out), "--quiet"]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == files.header(TASK, 3) and len(lines) == 21
    ref = engine.generate(20, TASK, seed=3)
    for line, row in zip(lines[1:], ref):
        lat, obs = line.split(" ")
        assert lat == "".join(map(str, row[:6])) and obs == "".join(map(str, row[6:]))
    back, task, _ = files.read_text(str(out))
    assert task == TASK and np.array_equal(back, ref)


def test_generate_npz_is_byte_identical_across_thread_counts(tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    for out, threads in ((a, "1"), (b, "2")):
        assert main(["nae", "generate", "--n", "500", "--seed", "1", "--out", str(out), "--threads", threads,
                     "--quiet"]) == 0
    assert a.read_bytes() == b.read_bytes()
    with np.load(a, allow_pickle=False) as z:
        assert z["tokens"].dtype == np.int8 and z["tokens"].shape == (500, 300)
        assert np.array_equal(z["clauses"], Task().clauses) and int(z["seed"]) == 1
        assert (int(z["latents"]), int(z["observations"]), int(z["arity"])) == (25, 275, 3)


def test_check_passes_generated_files_and_prints_a_summary(tmp_path, capsys):
    for name in ("s.txt", "s.npz"):
        out = tmp_path / name
        main(["nae", "generate", "--n", "50", *SMALL, "--out", str(out), "--quiet"])
        capsys.readouterr()
        assert main(["nae", "check", str(out)]) == 0
        text = capsys.readouterr().out
        assert "50 sequences of N=6 latents" in text and "50 consistent (100.00%)" in text
        assert "observation tokens correct: 100.00%" in text


def test_check_names_the_first_inconsistent_sequence(tmp_path, capsys):
    out = tmp_path / "s.txt"
    main(["nae", "generate", "--n", "5", *SMALL, "--out", str(out), "--quiet"])
    lines = out.read_text().splitlines()
    lat, obs = lines[3].split(" ")
    lines[3] = f"{lat} {'1' if obs[0] == '0' else '0'}{obs[1:]}"
    lat, obs = lines[4].split(" ")
    lines[4] = f"{lat} .{obs[1:]}"
    out.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert main(["nae", "check", str(out)]) == 1
    got = capsys.readouterr()
    assert "3 consistent (60.00%), 2 not (1 with masked tokens)" in got.out
    assert len(got.err.strip().splitlines()) == 1
    assert "line 4: observation 0 (position 6" in got.err and "so NAE gives" in got.err and "(and 1 more)" in got.err


def test_check_of_a_text_file_without_header_needs_the_task(tmp_path, capsys):
    out = tmp_path / "s.txt"
    main(["nae", "generate", "--n", "4", *SMALL, "--out", str(out), "--quiet"])
    body = out.read_text().split("\n", 1)[1]
    out.write_text(body)
    assert "--latents" in failing(["nae", "check", str(out)], capsys, 1)
    capsys.readouterr()
    assert main(["nae", "check", str(out), *SMALL]) == 0
    assert "10 observations" in capsys.readouterr().out


def test_check_reads_stdin(capsys, monkeypatch):
    text = files.format_lines(engine.generate(3, TASK, seed=0), TASK)
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    assert main(["nae", "check", "-"]) == 0
    assert "3 consistent" in capsys.readouterr().out


@pytest.mark.parametrize("argv, code, says", [
    (["nae", "generate"], 2, "--n"),
    (["nae", "generate", "--n", "-1"], 2, "--n"),
    (["nae", "generate", "--n", "2", "--latents", "1"], 2, "--latents"),
    (["nae", "generate", "--n", "2", "--latents", "4", "--arity", "5"], 2, "--arity"),
    (["nae", "generate", "--n", "2", "--observations", "0"], 2, "--observations"),
    (["nae", "generate", "--n", "2", "--structure-seed", str(2**64)], 2, "--structure-seed"),
    (["nae", "generate", "--n", "2", "--seed", str(2**64)], 2, "--seed"),
    (["nae", "generate", "--n", "2", "--format", "npz"], 2, "--out"),
    (["nae", "generate", "--n", "2", "--threads", "0"], 2, "--threads"),
    (["nae", "generate", "--n", "2", "--out", "{root}/no/such/dir/x.txt", "--quiet"], 1, "--out"),
    (["nae", "check"], 2, "file"),
    (["nae", "check", "{root}/nope.txt"], 1, "nope.txt: cannot read it"),
    (["nae", "check", "{root}"], 1, "cannot read it"),
    (["nae", "check", "{root}/bin"], 1, "not a text file"),
    (["nae", "check", "{root}/bad.npz"], 1, "bad.npz"),
    (["nae", "check", "{root}/other.npz", "--latents", "30"], 1, "differs"),
    (["nae", "generate", "--n", "2", "--latents", "7"], 2, "at most C(latents, arity) = 35"),
    (["nae"], 2, "SUBCOMMAND"),
])
def test_bad_command_lines_and_files_fail_on_one_line(tmp_path, capsys, argv, code, says):
    (tmp_path / "bin").write_bytes(b"\xff\xfe\x00binary")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated")
    files.save_npz(tmp_path / "other.npz", engine.generate(2, TASK), TASK)
    argv = [a.replace("{root}", str(tmp_path)) for a in argv]
    err = failing(argv, capsys, code)
    assert err.startswith("fastmdm nae") and says.replace("{root}", str(tmp_path)) in err


def test_console_script_shows_a_progress_bar_and_a_summary_on_stderr(tmp_path):
    out = tmp_path / "s.npz"
    r = subprocess.run([sys.executable, "-m", "fastmdm.cli", "nae", "generate", "--n", "10", "--out", str(out)],
                       capture_output=True, text=True, check=True)
    assert r.stdout == ""
    assert "nae: 100%" in r.stderr and "wrote 10 sequences" in r.stderr
