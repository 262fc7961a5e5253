"""The L&O-NAE-SAT MDM: `fastmdm.models.Transformer`, bidirectional, a learned embedding per position.

Learned absolute positions let observation j find the latents of its clause (a fixed set for the whole
distribution) by position alone. A checkpoint's config.json records the task in its training record
(`train.latents`, `train.observations`, `train.arity`, `train.structure_seed`), so `load` rebuilds both.
"""
from __future__ import annotations

from pathlib import Path

from fastmdm.models import Transformer, TransformerConfig
from fastmdm.nae.engine import MASK_ID, VOCAB_SIZE, Task

#: model sizes; "paper" is about the paper's 19M (20M here), "cpu" what two CPU cores train in an hour or two
PRESETS = {
    "paper": dict(d_model=512, n_layers=6, n_heads=8, d_ff=1536),
    "cpu": dict(d_model=128, n_layers=4, n_heads=4, d_ff=384),
    "tiny": dict(d_model=32, n_layers=2, n_heads=2, d_ff=64),
}
TASK_FIELDS = ("latents", "observations", "arity", "structure_seed")


def nae_model(task: Task, preset: str = "cpu", **overrides) -> Transformer:
    """A fresh MDM of a preset's size for `task`'s sequences (N + P tokens, vocabulary 0, 1, mask)."""
    if preset not in PRESETS:
        raise ValueError(f"preset: unknown {preset!r}; use one of {sorted(PRESETS)}")
    return Transformer(TransformerConfig(**{**PRESETS[preset], **overrides, "vocab_size": VOCAB_SIZE,
                                            "mask_token_id": MASK_ID, "max_len": task.length,
                                            "positions": "learned"}))


def task_of(config: dict, where="the checkpoint") -> Task:
    """The task a checkpoint's config dict was trained on."""
    from fastmdm.checkpoint import CheckpointError  # noqa: PLC0415
    train = config.get("train") or {}
    missing = [k for k in TASK_FIELDS if k not in train]
    if missing:
        raise CheckpointError(f"{where}: config.json does not name its L&O-NAE-SAT task (train.{missing[0]} is "
                              "missing); pass a checkpoint written by `fastmdm nae train`")
    try:
        return Task(**{k: train[k] for k in TASK_FIELDS})
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: config.json names an invalid task ({e})") from None


def load(checkpoint, device="cpu"):
    """(model, task, config dict) from a directory that `fastmdm nae train --out DIR` wrote."""
    from fastmdm.checkpoint import CheckpointError, load_model  # noqa: PLC0415
    path = Path(checkpoint)
    model, cfg = load_model(path, map_location=device)
    task = task_of(cfg, f"checkpoint {path}")
    mc = model.config
    if mc.causal or mc.vocab_size != VOCAB_SIZE or mc.max_len != task.length or mc.mask_token_id != MASK_ID:
        raise CheckpointError(f"checkpoint {path}: not an L&O-NAE-SAT MDM of its task (vocabulary {mc.vocab_size}, "
                              f"length {mc.max_len}, mask {mc.mask_token_id}; want {VOCAB_SIZE}, {task.length}, "
                              f"{MASK_ID})")
    return model, task, cfg
