"""The `shipped` recipe restates the model card's training commands, and `--recipe` runs stages in order."""
import re
import shlex

import pytest

from fastmdm.cli import build_parser, main
from fastmdm.sudoku import recipes
from fastmdm.sudoku.cli_train import config_from_args
from fastmdm.sudoku.model import SHIPPED_CHECKPOINT

CARD = (SHIPPED_CHECKPOINT.parent / "MODEL_CARD.md").read_text()
GPU_SCRIPT = (SHIPPED_CHECKPOINT.parent.parent / "gpu_recipe.sh").read_text()


def card_train_commands(text):
    """The `fastmdm sudoku train ...` commands of a text, continuation lines joined, in order."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [shlex.split(line.strip()) for line in joined.splitlines()
            if line.strip().startswith("fastmdm sudoku train")]


def test_the_shipped_recipe_gives_the_train_configs_of_the_model_cards_commands():
    commands = card_train_commands(CARD)
    stages = recipes.get_recipe("shipped")
    assert len(commands) == len(stages) == 4
    for argv, stage in zip(commands, stages):
        args = build_parser().parse_args(argv[1:])
        card = config_from_args(args)
        ours = stage.train_config("runs")
        # what the card's commands cannot say: run 1 was cut short at step 2,250 (the card says so in words)
        if stage.name == "run1a":
            assert "stopped at step 2,250" in CARD
            card.stop_after = 2250
        # run 3 started from the checkpoint then shipped, which was run 2's weights (the card says so)
        if stage.name == "run3":
            assert card.init_from == "fastmdm/sudoku/checkpoints/sudoku-mdm"
            assert re.search(r"run 3.*from run 2's \(then shipped\) weights", CARD)
            card.init_from = "runs/sudoku-cpu2"
        assert ours == card, stage.name
        assert stage.resume == args.resume


def test_gpu_recipe_sh_trains_the_paper_gpu_recipe_with_the_settings_its_header_states():
    (argv,) = card_train_commands(GPU_SCRIPT.split("2>&1")[0].replace('"$OUT"', "runs/p").replace('"$MINUTES"', "7"))
    assert argv[3:5] == ["--recipe", "paper-gpu"]
    (stage,) = recipes.get_recipe("paper-gpu")
    cfg = stage.train_config("runs/p", minutes=7.0)
    assert (cfg.preset, cfg.batch_size, cfg.lr, cfg.n_train, cfg.minutes, cfg.out) == \
        ("paper", 1024, 2e-3, 500_000, 7.0, "runs/p")
    assert "batch 1024, lr 2e-3" in GPU_SCRIPT and "500k standard training puzzles" in GPU_SCRIPT


def test_recipe_runs_stages_in_order_resuming_and_skipping_finished_ones(tmp_path, monkeypatch):
    calls = []

    def fake_train(cfg, resume):
        calls.append((cfg.out, cfg.init_from, resume, cfg.threads))
        if len(calls) == 3 and not hasattr(fake_train, "failed"):
            fake_train.failed = True
            (tmp_path / "sudoku-cpu2").mkdir()
            (tmp_path / "sudoku-cpu2" / "trainer.json").write_text("{}")  # a checkpoint of the cut-short run
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        recipes.run_recipe("shipped", tmp_path, overrides={"threads": 1}, train_fn=fake_train, log=lambda m: None)
    base = str(tmp_path)
    assert calls == [(f"{base}/sudoku-cpu", None, False, 1), (f"{base}/sudoku-cpu", None, True, 1),
                     (f"{base}/sudoku-cpu2", f"{base}/sudoku-cpu", False, 1)]
    calls.clear()
    ran = recipes.run_recipe("shipped", tmp_path, overrides={"threads": 1}, train_fn=fake_train, log=lambda m: None)
    assert ran == ["run2", "run3"]
    assert calls == [(f"{base}/sudoku-cpu2", f"{base}/sudoku-cpu", True, 1),
                     (f"{base}/sudoku-cpu3", f"{base}/sudoku-cpu2", False, 1)]
    assert recipes.run_recipe("shipped", tmp_path, train_fn=fake_train, log=lambda m: None) == []
    with pytest.raises(ValueError, match="belongs to recipe 'shipped'"):
        recipes.run_recipe("paper-gpu", tmp_path, train_fn=fake_train)


def test_train_recipe_dry_run_lists_the_stages(tmp_path, capsys):
    assert main(["sudoku", "train", "--recipe", "shipped", "--out", str(tmp_path), "--dry-run"]) == 0
    err = capsys.readouterr().err
    for i, name in enumerate(("run1a", "run1b", "run2", "run3"), start=1):
        assert f"{i}. {name}:" in err
    assert f"from {tmp_path}/sudoku-cpu2" in err and "resumes" in err
