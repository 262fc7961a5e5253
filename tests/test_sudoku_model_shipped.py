"""The checkpoint shipped in the package: present, small, safetensors + JSON only, documented, and it solves
fresh standard puzzles with margin order."""
import json
import os
import re

import pytest

from fastmdm.sudoku import data as sdata
from fastmdm.sudoku import engine
from fastmdm.sudoku.evaluate import evaluate
from fastmdm.sudoku.model import SHIPPED_CHECKPOINT, load

CARD = SHIPPED_CHECKPOINT.parent / "MODEL_CARD.md"


pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_shipped_checkpoint_is_safetensors_and_json_under_25_mb():
    files = sorted(os.listdir(SHIPPED_CHECKPOINT))
    assert files == ["config.json", "model.safetensors"]
    total = sum(os.path.getsize(SHIPPED_CHECKPOINT / f) for f in files)
    assert total <= 25 * 2**20


def test_the_model_card_states_the_steps_the_checkpoint_was_trained_for():
    cfg = json.loads((SHIPPED_CHECKPOINT / "config.json").read_text())
    card = CARD.read_text()
    steps = cfg["trained"]["steps"]
    assert re.search(rf"\b{steps:,}\b|\b{steps}\b", card), f"MODEL_CARD.md does not mention {steps} steps"
    assert "fastmdm sudoku train" in card


def test_the_shipped_model_loads_by_default_and_solves_fresh_standard_puzzles_with_margin():
    model, cfg = load()
    assert cfg["model"]["positions"] == "sudoku" and cfg["model"]["mask_token_id"] == sdata.MASK_ID
    d = engine.generate(24, "standard", seed=4_000_037)  # fresh puzzles, not a test or training seed
    (r,) = evaluate(model, d["puzzles"], d["solutions"], strategies="margin", k=1, batch_size=24)
    # the card reports margin accuracy measured on 1000s of puzzles; 24 puzzles must clear a low bar
    assert r["solved"] >= 6, r
    assert r["cell_acc"] > 0.8, r
