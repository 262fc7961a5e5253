"""The L&O-NAE-SAT MDM: `fastmdm.models.Transformer`, bidirectional.

Positions: ``learned``, one learned vector per position, with which observation j must find the latents of its
clause (a fixed set for the whole distribution) by position alone; or ``clauses`` (`fastmdm.nae.positions`), where
observation j's vector is built from its clause's latents' vectors. A checkpoint's config.json records the task in
its training record (`train.latents`, `train.observations`, `train.arity`, `train.structure_seed`), so `load`
rebuilds both.
"""
from __future__ import annotations

from pathlib import Path

from fastmdm.nae.engine import MASK_ID, VOCAB_SIZE, Task
from fastmdm.nae.positions import scheme_name
from fastmdm.training import load_task_model, sequence_mdm

#: model sizes; "paper" is about the paper's 19M (20.6M here), "cpu" what two CPU cores train in an hour or two
PRESETS = {
    "paper": dict(d_model=512, n_layers=6, n_heads=8, d_ff=1536),
    "cpu": dict(d_model=128, n_layers=4, n_heads=4, d_ff=384),
    "tiny": dict(d_model=32, n_layers=2, n_heads=2, d_ff=64),
}
#: position schemes of an L&O-NAE-SAT model
POSITIONS = ("learned", "clauses")
TASK_FIELDS = ("latents", "observations", "arity", "structure_seed")
#: the checkpoint shipped in the package (its card: checkpoints/MODEL_CARD.md)
SHIPPED_CHECKPOINT = Path(__file__).parent / "checkpoints" / "nae-mdm"


def nae_model(task: Task, preset: str = "cpu", positions: str = "learned"):
    """A fresh MDM of a preset's size for `task`'s sequences (N + P tokens, vocabulary 0, 1, mask), with the
    position scheme `positions` (POSITIONS)."""
    if preset not in PRESETS:
        raise ValueError(f"preset: unknown {preset!r}; use one of {sorted(PRESETS)}")
    if positions not in POSITIONS:
        raise ValueError(f"positions: unknown {positions!r}; use one of {', '.join(POSITIONS)}")
    scheme = scheme_name(task) if positions == "clauses" else "learned"
    return sequence_mdm(PRESETS[preset], VOCAB_SIZE, MASK_ID, task.length, positions=scheme)


def load(checkpoint=None, device="cpu"):
    """(model, task, config dict) from a directory that `fastmdm nae train --out DIR` wrote, or the shipped
    model when None."""
    return load_task_model(checkpoint, Task, TASK_FIELDS, "fastmdm nae train", "L&O-NAE-SAT", VOCAB_SIZE,
                           MASK_ID, device, shipped=SHIPPED_CHECKPOINT)
