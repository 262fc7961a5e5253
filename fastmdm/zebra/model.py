"""The Zebra MDM: `fastmdm.models.Transformer`, bidirectional. Its positions are the task's role scheme
(`fastmdm.zebra.positions`: a clue token's role in its slot; a cell's house and attribute, embedded as the clues'
house and attribute tokens), or, with ``positions="learned"``, one learned embedding per position (the first
Zebra runs'). A checkpoint's config.json records the task in its
training record (`train.houses`, `train.attributes`, `train.max_clues`, `train.logic_only`)."""
from __future__ import annotations

from pathlib import Path

from fastmdm.training import load_task_model, sequence_mdm
from fastmdm.zebra.engine import MASK_ID, VOCAB_SIZE, Task
from fastmdm.zebra.positions import scheme_name

#: position schemes of a Zebra model: "roles" and "clues" (fastmdm.zebra.positions) or "learned" (one vector
#: per position)
POSITIONS = ("roles", "clues", "learned")

#: model sizes; "paper" is about the paper's 19M Zebra MDM (20.6M here)
PRESETS = {
    "paper": dict(d_model=512, n_layers=6, n_heads=8, d_ff=1536),
    "cpu": dict(d_model=128, n_layers=6, n_heads=4, d_ff=384),
    "tiny": dict(d_model=32, n_layers=2, n_heads=2, d_ff=64),
}
TASK_FIELDS = ("houses", "attributes", "max_clues", "logic_only")
#: the default model of `fastmdm zebra eval` (checkpoints/MODEL_CARD.md)
SHIPPED_CHECKPOINT = Path(__file__).parent / "checkpoints" / "zebra-mdm"


def zebra_model(task: Task, preset: str = "cpu", positions: str = "roles"):
    """A fresh MDM of a preset's size for `task`'s sequences, with the position scheme `positions`."""
    if preset not in PRESETS:
        raise ValueError(f"preset: unknown {preset!r}; use one of {sorted(PRESETS)}")
    if positions not in POSITIONS:
        raise ValueError(f"positions: unknown {positions!r}; use one of {', '.join(POSITIONS)}")
    scheme = "learned" if positions == "learned" else scheme_name(task, clues=positions == "clues")
    return sequence_mdm(PRESETS[preset], VOCAB_SIZE, MASK_ID, task.length, positions=scheme)


def load(checkpoint=None, device="cpu"):
    """(model, task, config dict) from a directory that `fastmdm zebra train --out DIR` wrote, or the shipped
    model when None."""
    return load_task_model(checkpoint, Task, TASK_FIELDS, "fastmdm zebra train", "Zebra", VOCAB_SIZE, MASK_ID,
                           device, shipped=SHIPPED_CHECKPOINT)
