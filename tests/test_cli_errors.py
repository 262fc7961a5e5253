"""Every CLI command over a table of bad inputs: each ends with one line `fastmdm <command>: error: ...` that
names the argument, exit code 2 for a wrong command line and 1 for a failed run, and no traceback (unless
--debug or FASTMDM_DEBUG asks for one). The CLI runs in-process."""
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from fastmdm.checkpoint import save_model
from fastmdm.cli import HelpFormatter, build_parser, main
from fastmdm.sudoku.data import synthetic_puzzles
from fastmdm.sudoku.model import sudoku_model

pytestmark = pytest.mark.usefixtures("one_thread")

PUZZLE = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79"


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    """Checkpoints good and damaged, puzzle files and an output path whose directory is missing."""
    root = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    good = save_model(root / "good", sudoku_model("tiny"))
    p = {"good": str(good), "root": root}
    (root / "nocfg").mkdir()
    save_file(load_file(str(good / "model.safetensors")), str(root / "nocfg" / "model.safetensors"))
    p["nocfg"] = str(root / "nocfg")
    p["file_itself"] = str(good / "model.safetensors")
    for name in ("truncated", "badjson", "nan", "overflow"):
        save_model(root / name, sudoku_model("tiny"))
        p[name] = str(root / name)
    st = root / "truncated" / "model.safetensors"
    st.write_bytes(st.read_bytes()[:1000])
    cfg = root / "badjson" / "config.json"
    cfg.write_text(cfg.read_text()[:-30])
    for name, key, value in (("nan", "tok_emb.weight", float("nan")), ("overflow", "blocks.0.attn.qkv.weight", 3e38)):
        f = root / name / "model.safetensors"
        state = load_file(str(f))
        state[key][:] = value  # finite 3e38 query/key weights overflow the attention scores: NaN logits
        save_file(state, str(f))
    d = synthetic_puzzles(4, seed=1)
    (root / "set.txt").write_text("".join("".join(map(str, a)) + " " + "".join(map(str, b)) + "\n"
                                          for a, b in zip(d["puzzles"], d["solutions"])))
    p["set"] = str(root / "set.txt")
    (root / "bin.txt").write_bytes(bytes(range(256)))
    p["bin"] = str(root / "bin.txt")
    p["nodir"] = str(root / "missing-dir" / "out.json")
    run = root / "corrupt-run"
    save_model(run, sudoku_model("tiny"))
    (run / "trainer.json").write_text("{not json")
    p["corrupt_run"] = str(run)
    (root / "a-file").write_text("x")
    p["a_file"] = str(root / "a-file")
    return p


def ev(*extra):
    return ["sudoku", "eval", "--strategies", "margin", *extra]


def sv(*extra):
    return ["sudoku", "solve", PUZZLE, *extra]


TRAIN = ["sudoku", "train", "--preset", "tiny", "--steps", "2"]

# (argv with {placeholders} from `paths`, exit code, text the line must hold)
CASES = [
    # eval: the checkpoint
    (ev("--checkpoint", "{nocfg}", "--file", "{set}"), 1, "--checkpoint {nocfg}: no config.json"),
    (ev("--checkpoint", "{file_itself}", "--file", "{set}"), 1, "is a file; pass the directory"),
    (ev("--checkpoint", "{root}/absent", "--file", "{set}"), 1, "--checkpoint {root}/absent: no such directory"),
    (ev("--checkpoint", "{truncated}", "--file", "{set}"), 1,
     "--checkpoint {truncated} looks corrupted: model.safetensors"),
    (ev("--checkpoint", "{badjson}", "--file", "{set}"), 1, "--checkpoint {badjson} looks corrupted: config.json"),
    (ev("--checkpoint", "{nan}", "--file", "{set}"), 1, "looks corrupted: model.safetensors holds NaN"),
    (ev("--checkpoint", "{overflow}", "--file", "{set}"), 1, "the model gave NaN logits"),
    # eval: its own options
    (ev("--n", "-5"), 2, "--n"),
    (ev("--n", "0"), 2, "--n"),
    (ev("--n", "many"), 2, "--n"),
    (["sudoku", "eval", "--strategies", "bogus"], 2, "--strategies"),
    (["sudoku", "eval", "--strategies", ","], 2, "--strategies"),
    (ev("--checkpoint", "{good}", "--file", "{root}/nope.txt"), 1, "--file {root}/nope.txt"),
    (ev("--checkpoint", "{good}", "--file", "{bin}"), 1, "--file {bin}"),
    (ev("--split", "medium"), 2, "--split"),
    (ev("--split", "standard", "--file", "{set}"), 2, "--file"),
    (ev("--sweep-k", "1,2", "--k", "2"), 2, "--k"),
    (ev("--sweep-k", "0,2"), 2, "--sweep-k"),
    # eval: thresholds, on one (0, 1] scale for every strategy (entropy's is exp(-H), not the library's -H)
    (ev("--threshold", "0"), 2, "argument --threshold: expected a number in (0, 1]"),
    (ev("--threshold", "1.5"), 2, "argument --threshold: expected a number in (0, 1]"),
    (ev("--threshold", "nan"), 2, "argument --threshold: expected a number in (0, 1]"),
    (["sudoku", "eval", "--strategies", "entropy", "--threshold", "-0.1"], 2, "entropy exp(-H(p))"),
    (ev("--threshold", "0.9", "--k", "2"), 2, "--k: not allowed with argument --threshold"),
    (ev("--threshold", "0.9", "--sweep-k", "1,2"), 2, "--sweep-k: not allowed with argument --threshold"),
    (ev("--threshold", "0.9", "--steps", "9"), 2, "--steps: not allowed with argument --threshold"),
    (ev("--sweep-threshold", "0.9", "--k", "2"), 2, "--sweep-threshold: not allowed with argument --k"),
    (ev("--sweep-threshold", "0.9", "--threshold", "0.9"), 2,
     "--sweep-threshold: not allowed with argument --threshold"),
    (ev("--sweep-threshold", "0.9,x"), 2, "argument --sweep-threshold: expected a number in (0, 1]"),
    (ev("--sweep-threshold", ","), 2, "argument --sweep-threshold: expected comma-separated thresholds"),
    (["sudoku", "eval", "--strategies", "random,margin", "--sweep-threshold", "0.9,1"], 2,
     "--sweep-threshold 1: random scores are uniform in (0, 1) and never reach 1"),
    (ev("--checkpoint", "{good}", "--file", "{set}", "--json", "{nodir}"), 1, "--json"),
    (ev("--checkpoint", "{good}", "--file", "{set}", "--plot", "{nodir}"), 1, "--plot"),
    # the decoding options (eval and solve share them)
    (sv("--k", "0"), 2, "--k"),
    (sv("--steps", "0"), 2, "--steps"),
    (sv("--k", "3", "--steps", "10"), 2, "--steps: not allowed with argument --k"),
    (sv("--score-noise", "-1"), 2, "--score-noise"),
    (sv("--score-noise", "nan"), 2, "--score-noise"),
    (sv("--batch-size", "0"), 2, "--batch-size"),
    (sv("--threads", "-2"), 2, "--threads"),
    (sv("--seed", "-1"), 2, "--seed"),
    (sv("--device", "bogus"), 2, "--device"),
    (sv("--device", "cuda:x"), 2, "--device"),
    (sv("--precision", "fp16"), 2, "--precision"),
    (sv("--strategy", "bogus"), 2, "--strategy"),
    (sv("--threshold", "2"), 2, "argument --threshold: expected a number in (0, 1]"),
    (sv("--threshold", "0.9", "--k", "2"), 2, "--k: not allowed with argument --threshold"),
    (sv("--strategy", "random", "--threshold", "1"), 2, "--threshold 1: random scores are uniform in (0, 1)"),
    (ev("--batch-size", "0"), 2, "--batch-size"),
    (ev("--device", "bogus"), 2, "--device"),
    # solve: puzzles
    (["sudoku", "solve"], 2, "no puzzles"),
    (["sudoku", "solve", "12x"], 1, "puzzle argument 1: puzzle has 3 characters"),
    (["sudoku", "solve", "--file", "{root}/nope.txt"], 1, "--file {root}/nope.txt"),
    (["sudoku", "solve", "--checkpoint", "{truncated}", PUZZLE], 1, "looks corrupted"),
    # demo
    (["demo", "--n", "0"], 2, "--n"),
    (["demo", "--threads", "0"], 2, "--threads"),
    (["demo", "--checkpoint", "{badjson}"], 1, "--checkpoint {badjson} looks corrupted: config.json"),
    (["demo", "--precision", "fp16"], 2, "--precision"),
    # train
    (["sudoku", "train", "--preset", "tiny"], 2, "--steps, --minutes"),
    (TRAIN[:-1] + ["0"], 2, "--steps"),
    (TRAIN + ["--lr", "-1"], 2, "--lr"),
    (TRAIN + ["--batch-size", "0"], 2, "--batch-size"),
    (TRAIN + ["--minutes", "0"], 2, "--minutes"),
    (["sudoku", "train", "--preset", "huge", "--steps", "2"], 2, "--preset"),
    (TRAIN + ["--eval-strategies", "bogus"], 2, "--eval-strategies"),
    (TRAIN + ["--out", "{a_file}"], 2, "--out"),
    (TRAIN + ["--out", "{root}/t1", "--init-from", "{root}/absent"], 1, "--init-from"),
    (TRAIN + ["--out", "{corrupt_run}", "--resume"], 1, "looks corrupted: trainer.json"),
    (["sudoku", "train", "--recipe", "bogus"], 2, "--recipe"),
    (["sudoku", "train", "--recipe", "shipped", "--resume"], 2, "--resume"),
    (["sudoku", "train", "--dry-run", "--steps", "2"], 2, "--dry-run"),
    # generate and grade
    (["sudoku", "generate", "--n", "-1"], 2, "--n"),
    (["sudoku", "generate"], 2, "--n"),
    (["sudoku", "generate", "--n", "2", "--split", "medium"], 2, "--split"),
    (["sudoku", "generate", "--n", "2", "--format", "npz"], 2, "--out"),
    (["sudoku", "generate", "--n", "2", "--out", "{nodir}", "--quiet"], 1, "--out"),
    (["sudoku", "generate", "--n", "2", "--min-clues", "5"], 2, "--min-clues"),
    (["sudoku", "generate", "--n", "2", "--max-clues", "18", "--quiet"], 2, "--max-clues"),
    (["sudoku", "generate", "--n", "2", "--threads", "0"], 2, "--threads"),
    (["sudoku", "grade", "{root}/nope.txt"], 1, "{root}/nope.txt"),
    (["sudoku", "grade", "{root}"], 1, "{root}"),
    (["sudoku", "grade", "{bin}"], 1, "{bin}"),
    # the command itself
    (["bogus"], 2, "invalid choice: 'bogus'"),
    ([], 2, "COMMAND"),
    (["sudoku"], 2, "SUBCOMMAND"),
    (["sudoku", "eval", "--bogus"], 2, "--bogus"),
    (["example", "--bogus"], 2, "--bogus"),
]


def _prog(argv):
    words = [a for a in argv if not a.startswith("-")][:2]
    if not words or words[0] not in ("sudoku", "demo", "example"):
        return "fastmdm"
    if words[0] == "sudoku" and len(words) > 1 and words[1] in ("eval", "solve", "train", "generate", "grade"):
        return "fastmdm sudoku " + words[1]
    return "fastmdm " + words[0]


@pytest.mark.parametrize("argv, code, text", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_input_ends_in_one_line_naming_the_argument(paths, capsys, monkeypatch, argv, code, text):
    monkeypatch.delenv("FASTMDM_DEBUG", raising=False)
    argv = [a.format(**paths) for a in argv]
    capsys.readouterr()
    assert main(argv) == code
    out, err = capsys.readouterr()
    last = err.strip().splitlines()[-1].split("\r")[-1]  # a run's progress lines may come first
    assert "Traceback" not in err and err.count(": error: ") == 1, err
    assert last.startswith(f"{_prog(argv)}: error: "), err
    assert text.format(**paths) in last, last


def test_python_dash_m_gives_the_same_one_line_errors():
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "fastmdm.cli", "sudoku", "solve", "55" + PUZZLE[2:]],
                       capture_output=True, text=True)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip() == ("fastmdm sudoku solve: error: puzzle argument 1: contradictory givens: digit 5 "
                                "appears twice in row 1; fix or remove it (`fastmdm sudoku grade FILE` checks a "
                                "whole file)")


def test_cuda_without_a_gpu_is_refused_with_what_to_do(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(sv("--device", "cuda")) == 2
    err = capsys.readouterr().err
    assert "argument --device: cuda: this machine has no CUDA device" in err and "pass --device cpu" in err


def test_debug_shows_the_traceback(paths, monkeypatch):
    argv = ev("--checkpoint", paths["truncated"], "--file", paths["set"])
    with pytest.raises(Exception, match="looks corrupted"):
        main(argv + ["--debug"])
    monkeypatch.setenv("FASTMDM_DEBUG", "1")
    with pytest.raises(Exception, match="looks corrupted"):
        main(argv)


def test_version_prints_a_version_or_says_unknown(capsys):
    assert main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("fastmdm ") and len(out.split()) >= 2


def _leaf_parsers(parser, found=None):
    found = [] if found is None else found
    subs = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    if not subs:
        found.append(parser)
    for s in subs:
        for p in s.choices.values():
            _leaf_parsers(p, found)
    return found


def test_every_option_has_help_and_each_default_is_shown_once():
    leaves = _leaf_parsers(build_parser())
    assert {p.prog for p in leaves} >= {"fastmdm sudoku eval", "fastmdm sudoku solve", "fastmdm sudoku train",
                                        "fastmdm demo", "fastmdm sudoku generate", "fastmdm sudoku grade"}
    for p in leaves:
        assert p.formatter_class is HelpFormatter, p.prog
        fmt = p._get_formatter()
        for a in p._actions:
            assert a.help, f"{p.prog} {a.option_strings or a.dest} has no help"
            text = fmt._expand_help(a) if a.help else ""
            assert text.count("default") <= 1, f"{p.prog} {a.option_strings}: {text}"


def test_eval_of_bare_puzzles_gets_their_solutions_from_the_engine(paths, tmp_path, capsys):
    d = synthetic_puzzles(3, seed=2)
    from fastmdm.sudoku import engine
    unique = engine.generate(3, seed=5)["puzzles"]
    f = tmp_path / "bare.txt"
    f.write_text("".join("".join(map(str, p)) + "\n" for p in unique))
    out = tmp_path / "r.json"
    assert main(ev("--checkpoint", paths["good"], "--file", str(f), "--json", str(out))) == 0
    assert json.loads(out.read_text())["results"][str(f)][0]["n"] == 3
    # synthetic puzzles are not unique: refused with the line
    f.write_text("".join("".join(map(str, p)) + "\n" for p in d["puzzles"][:1]) + "." * 81 + "\n")
    capsys.readouterr()
    assert main(ev("--checkpoint", paths["good"], "--file", str(f))) == 1
    assert f"{f} line 2: several solutions" in capsys.readouterr().err
