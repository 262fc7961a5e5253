"""The Sudoku MDM: a `fastmdm.models.Transformer` over 81 cell tokens (0 = blank/mask, 1-9 digits) with
row + column + box position embeddings, and the shipped checkpoint."""
from __future__ import annotations

from pathlib import Path

from fastmdm.models import Transformer, preset
from fastmdm.sudoku.data import MASK_ID

#: the checkpoint shipped in the package (trained by `fastmdm sudoku train`; see its MODEL_CARD.md)
SHIPPED_CHECKPOINT = Path(__file__).parent / "checkpoints" / "sudoku-mdm"


def sudoku_model(preset_name: str = "cpu", **overrides) -> Transformer:
    cfg = preset(preset_name, vocab_size=10, mask_token_id=MASK_ID, max_len=81, positions="sudoku", **overrides)
    return Transformer(cfg)


def default_checkpoint() -> Path:
    return SHIPPED_CHECKPOINT


def load(checkpoint=None, device="cpu"):
    """(model, config dict) from `checkpoint` (a directory), or the shipped model when None."""
    from fastmdm.checkpoint import load_model  # noqa: PLC0415
    path = Path(checkpoint) if checkpoint is not None else SHIPPED_CHECKPOINT
    if checkpoint is None and not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"the shipped Sudoku checkpoint is missing from {path}; pass --checkpoint DIR "
                                "(a directory written by `fastmdm sudoku train --out DIR`)")
    return load_model(path, map_location=device)
