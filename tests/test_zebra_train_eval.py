"""Zebra MDMs: the training batches, the shared loop on this task, the evaluation (checked with an oracle that
knows the solution) and `fastmdm zebra train|eval|solve --checkpoint`."""
import json

import numpy as np
import pytest
import torch
from cli_helpers import failing

from fastmdm.cli import main
from fastmdm.zebra import engine, files
from fastmdm.zebra import evaluate as ev
from fastmdm.zebra.data import TEST_SEED
from fastmdm.zebra.engine import MASK_ID, VOCAB_SIZE, Task
from fastmdm.zebra.model import load
from fastmdm.zebra.train import ZebraTrainConfig, make_batch, train

TASK = Task(houses=3, attributes=3)
SMALL = ["--houses", "3", "--attributes", "3"]


class SolverOracle(torch.nn.Module):
    """Puts all its mass on the native solver's solution of the visible clues (and cells)."""

    def __init__(self, task, wrong=False):
        super().__init__()
        self.task, self.wrong = task, wrong
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        logits = torch.full((*x.shape, VOCAB_SIZE), -30.0)
        sol = torch.from_numpy(engine.solve(x.numpy().astype(np.int8), self.task).solution).long()
        if self.wrong:
            sol = torch.zeros_like(sol)   # value 0 in every cell
        cells = torch.arange(self.task.cell_positions.start, self.task.length)
        logits[:, cells, :] = -30.0
        logits[torch.arange(len(x))[:, None], cells[None], sol] = 10.0
        return logits


def test_a_batch_masks_cells_only_at_stratified_rates():
    inputs, x0, masked, p_mask, fillable = make_batch(TASK, 1, 32, torch.Generator().manual_seed(0))
    assert engine.check(x0.numpy().astype(np.int8), TASK).solved.all()
    assert not masked[:, TASK.clue_positions].any() and fillable[:, TASK.cell_positions].all()
    assert torch.equal(inputs[masked], torch.full_like(inputs[masked], MASK_ID))
    assert torch.equal(inputs[~masked], x0[~masked]) and masked.any()
    t = (p_mask - 1e-3) / (1 - 1e-3)
    assert sorted((t * 32).floor().long().tolist()) == list(range(32))
    again = make_batch(TASK, 1, 32, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(again, (inputs, x0, masked, p_mask, fillable)))



@pytest.mark.parametrize("kw, msg", [({"data_seed": TEST_SEED}, "test set"), ({"preset": "huge"}, "preset"),
                                     ({"houses": 1}, "houses"), ({"max_clues": 0}, "max_clues")])
def test_the_config_refuses(kw, msg):
    with pytest.raises(ValueError, match=msg):
        ZebraTrainConfig(**{"steps": 5, **kw})


def test_the_config_records_the_resolved_clue_slots():
    assert ZebraTrainConfig(steps=1).max_clues == 25
    assert ZebraTrainConfig(steps=1, houses=3, attributes=4).max_clues == 12


@pytest.mark.parametrize("strategy", ["random", "confidence", "margin", "entropy"])
def test_an_oracle_solves_every_puzzle_in_every_order(strategy):
    puzzles = engine.generate(20, TASK, seed=5).tokens
    (r,) = ev.evaluate(SolverOracle(TASK), TASK, puzzles, strategies=[strategy])
    assert r["puzzle_acc"] == 1.0 and r["cell_acc"] == 1.0 and r["calls_per_puzzle"] == TASK.cells
    assert r["puzzle_acc_ci95"][0] > 0.8


def test_a_wrong_model_solves_nothing_and_gets_one_cell_in_three():
    puzzles = engine.generate(30, TASK, seed=6).tokens
    (r,) = ev.evaluate(SolverOracle(TASK, wrong=True), TASK, puzzles, strategies=["margin"], k=3)
    assert r["puzzle_acc"] == 0.0 and r["cell_acc"] == pytest.approx(1 / 3) and r["calls_per_puzzle"] == 3


class FixedAnswers(torch.nn.Module):
    """Puts all its mass on given cell values, row by row (the whole set in one batch)."""

    def __init__(self, task, values):
        super().__init__()
        self.task, self.values = task, torch.as_tensor(values).long()
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        logits = torch.full((*x.shape, VOCAB_SIZE), -30.0)
        cells = torch.arange(self.task.cell_positions.start, self.task.length)
        logits[torch.arange(len(x))[:, None], cells[None], self.values[:len(x)]] = 10.0
        return logits


def test_cell_accuracy_groups_cells_by_the_technique_that_placed_them():
    """A model right exactly on the cells an 'at' clue names: 100% there, 0% in every other group."""
    task = Task(houses=4, attributes=4)
    p = engine.generate(60, task, seed=9)
    sol = p.tokens[:, task.cell_positions].astype(np.int64)
    at = p.technique == engine.TECHNIQUES.index("at")
    model = FixedAnswers(task, np.where(at, sol, (sol + 1) % task.houses))
    rows = {r["cells"]: r for r in ev.cell_accuracy(model, task, p, batch_size=100)}
    assert rows["all"]["n"] == at.size and rows["all"]["acc"] == pytest.approx(at.mean())
    assert rows["at"]["acc"] == 1.0 and rows["at"]["n"] == at.sum()
    others = [r for name, r in rows.items() if name in engine.TECHNIQUES and name != "at"]
    assert others and all(r["acc"] == 0.0 for r in others)
    assert sum(rows[t]["n"] for t in engine.TECHNIQUES if t in rows) == at.size
    early = p.order <= 2
    assert rows["solver steps 0-2"]["acc"] == pytest.approx(at[early].mean())
    assert "| at | " in ev.format_cell_accuracy(list(rows.values()))


def test_training_lowers_the_loss(tmp_path):
    r = train(ZebraTrainConfig(preset="tiny", houses=3, attributes=3, steps=60, batch_size=32, lr=3e-3,
                               warmup_steps=5, eval_every=0, save_every=0, log_every=1, threads=1,
                               out=str(tmp_path / "z")), log=lambda m: None)
    losses = [h["loss"] for h in r["history"]]
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("zebra") / "ckpt"
    assert main(["zebra", "train", "--preset", "tiny", *SMALL, "--steps", "3", "--batch-size", "8", "--eval-every",
                 "3", "--eval-n", "4", "--save-every", "3", "--threads", "1", "--out", str(out)]) == 0
    return out


def test_eval_writes_the_table_json_and_plot(tiny_checkpoint, tmp_path, capsys):
    j, md, png = tmp_path / "r.json", tmp_path / "r.md", tmp_path / "r.png"
    assert main(["zebra", "eval", "--checkpoint", str(tiny_checkpoint), "--n", "5", "--strategies", "random,margin",
                 "--json", str(j), "--markdown", str(md), "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| margin |" in capsys.readouterr().out
    data = json.loads(j.read_text())
    assert [r["strategy"] for r in data["rows"]] == ["random", "margin"] and data["task"]["houses"] == 3
    assert data["trained"]["steps"] == 3 and md.read_text().startswith("Zebra")
    model, task, cfg = load(tiny_checkpoint)
    assert task == TASK and any("eval" in json.loads(line) for line in
                                (tiny_checkpoint / "history.jsonl").read_text().splitlines())


def test_solve_with_a_checkpoint_fills_every_cell(tiny_checkpoint, tmp_path, capsys):
    src = tmp_path / "p.txt"
    src.write_text(files.format_lines(engine.generate(3, TASK, seed=1).tokens, TASK))
    code = main(["zebra", "solve", str(src), "--checkpoint", str(tiny_checkpoint)])
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and all("solved" in line for line in out) and code in (0, 1)


def test_the_model_commands_refuse_bad_input(tiny_checkpoint, tmp_path, capsys):
    other = tmp_path / "o.txt"
    other.write_text(files.format_lines(engine.generate(2, Task(3, 4), seed=1).tokens, Task(3, 4)))
    ck = ["--checkpoint", str(tiny_checkpoint)]
    assert "not the checkpoint's" in failing(["zebra", "solve", str(other), *ck], capsys, 1)
    assert "--data-seed" in failing(["zebra", "train", "--steps", "1", "--data-seed", str(TEST_SEED)], capsys, 2)
    assert "--checkpoint" in failing(["zebra", "eval", "--checkpoint", str(tmp_path / "none")], capsys, 1)
    if not torch.cuda.is_available():
        assert "--device" in failing(["zebra", "eval", *ck, "--device", "cuda"], capsys, 2)
    assert "--device" in failing(["zebra", "solve", str(other), *ck, "--device", "tpu"], capsys, 2)
    from fastmdm.checkpoint import save_model
    from fastmdm.nae.engine import Task as NAETask
    from fastmdm.nae.model import nae_model
    save_model(tmp_path / "nae", nae_model(NAETask(), "tiny"))
    assert "Zebra task" in failing(["zebra", "eval", "--checkpoint", str(tmp_path / "nae")], capsys, 1)


def test_without_a_shipped_model_eval_says_what_to_pass(monkeypatch, tmp_path, capsys):
    import fastmdm.zebra.model as zmodel
    monkeypatch.setattr(zmodel, "SHIPPED_CHECKPOINT", tmp_path / "zebra-mdm")
    err = failing(["zebra", "eval", "--n", "2"], capsys, 1)
    assert "shipped Zebra checkpoint is missing" in err and "--checkpoint DIR" in err


def test_eval_defaults_to_the_shipped_model(monkeypatch, tiny_checkpoint, capsys):
    import fastmdm.zebra.model as zmodel
    monkeypatch.setattr(zmodel, "SHIPPED_CHECKPOINT", tiny_checkpoint)
    assert main(["zebra", "eval", "--n", "2", "--strategies", "margin"]) == 0
    assert "| margin |" in capsys.readouterr().out
