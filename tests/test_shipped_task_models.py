"""The L&O-NAE-SAT, Zebra and Sudoku ARM checkpoints shipped in the package: safetensors + JSON only, small,
documented by a card that states their training, loadable, and doing what their cards say on held-out data."""
import json
import os
import re

import pytest

from fastmdm.nae import evaluate as nae_eval
from fastmdm.nae import model as nae_model
from fastmdm.sudoku import arm
from fastmdm.sudoku import data as sudoku_data
from fastmdm.sudoku import model as sudoku_model
from fastmdm.zebra import data as zebra_data
from fastmdm.zebra import evaluate as zebra_eval
from fastmdm.zebra import model as zebra_model

pytestmark = pytest.mark.usefixtures("one_thread")

SHIPPED = {"nae": (nae_model.SHIPPED_CHECKPOINT, "MODEL_CARD.md", "fastmdm nae train"),
           "zebra": (zebra_model.SHIPPED_CHECKPOINT, "MODEL_CARD.md", "fastmdm zebra train"),
           **{f"sudoku-arm-{order}": (path, "ARM_CARD.md", f"fastmdm sudoku train --arch arm-{order}")
              for order, path in sudoku_model.SHIPPED_ARM_CHECKPOINTS.items()}}


@pytest.mark.parametrize("name", SHIPPED)
def test_the_checkpoint_is_safetensors_and_json_under_25_mb(name):
    path = SHIPPED[name][0]
    files = sorted(os.listdir(path))
    assert files == ["config.json", "model.safetensors"]
    assert sum(os.path.getsize(path / f) for f in files) <= 25 * 2**20


@pytest.mark.parametrize("name", SHIPPED)
def test_the_card_states_the_steps_parameters_and_training_command(name):
    path, card_name, command = SHIPPED[name]
    cfg = json.loads((path / "config.json").read_text())
    card = (path.parent / card_name).read_text()
    steps, params = cfg["trained"]["steps"], cfg["trained"]["parameters"]
    assert re.search(rf"\b({steps:,}|{steps})\b", card), f"the card does not mention {steps} steps"
    assert re.search(rf"\b({params:,}|{params})\b", card), f"the card does not mention {params} parameters"
    assert command in card


def test_the_nae_model_loads_by_default_and_reads_the_clauses():
    model, task, _ = nae_model.load()
    (row,) = nae_eval.token_accuracy(model, task, n=100, rates=(0.1,))
    # the card: 92.9% of masked observations and 91.3% of masked latents right at masking rate 0.1 (1,000 rows)
    assert row["observation_determined_acc"] > 0.85, row
    assert row["latent_acc"] > 0.8, row


def test_the_zebra_model_loads_by_default_and_reads_the_clues_that_name_a_cell():
    model, task, _ = zebra_model.load()
    rows = {r["cells"]: r for r in zebra_eval.cell_accuracy(model, task, zebra_data.test_set(100, task))}
    # the card: cells an `at` clue names are 100% right, all cells 43-45% (a guess: 25%)
    assert rows["at"]["acc"] > 0.9, rows["at"]
    assert rows["all"]["acc"] > 0.3, rows["all"]


@pytest.mark.parametrize("order", ["solver", "rowmajor"])
def test_each_sudoku_arm_loads_in_its_order_and_knows_its_digits_under_teacher_forcing(order):
    model, _ = sudoku_model.load(sudoku_model.SHIPPED_ARM_CHECKPOINTS[order])
    assert arm.is_arm(model) and arm.arm_order_of(model) == order
    d = sudoku_data.test_set("standard", 32)
    r = arm.teacher_forced(model, d["puzzles"], d["solutions"])
    # the card, on 256 test puzzles: 97.4% (solver order) and 85.0% (reading order) of next digits right (chance: 1/9)
    assert r["digit_acc"] > {"solver": 0.9, "rowmajor": 0.75}[order], r
