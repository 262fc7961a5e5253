"""The Sudoku MDM: a `fastmdm.models.Transformer` over 81 cell tokens (0 = blank/mask, 1-9 digits) with
row + column + box position embeddings (`fastmdm.sudoku.positions`), its sizes, and the shipped checkpoint."""
from __future__ import annotations

from pathlib import Path

from fastmdm.models import Transformer, TransformerConfig
from fastmdm.sudoku import arm
from fastmdm.sudoku import positions as _positions  # noqa: F401  (registers the "sudoku" scheme)
from fastmdm.sudoku.data import MASK_ID

#: named model sizes. `paper`: the seed paper's ~6M-parameter Sudoku MDM (3 layers, d=384, 12 heads);
#: `cpu`: sized to train on a few CPU cores (the shipped model); `tiny`: for tests.
PRESETS = {
    "paper": dict(d_model=384, n_layers=3, n_heads=12, d_ff=1280),
    "cpu": dict(d_model=128, n_layers=6, n_heads=4, d_ff=384),
    "tiny": dict(d_model=32, n_layers=2, n_heads=2, d_ff=64),
}
#: what every Sudoku model shares: 10 tokens (0 = blank = mask, 1-9), 81 cells, Sudoku positions
SUDOKU_DATA = dict(vocab_size=10, mask_token_id=MASK_ID, max_len=81, positions="sudoku")

#: --precision choices: float32, the body under bf16 autocast, or bf16 where it is the faster (AMX, CUDA)
PRECISIONS = ("fp32", "bf16", "auto")

#: the checkpoint shipped in the package (trained by `fastmdm sudoku train`; see its MODEL_CARD.md)
SHIPPED_CHECKPOINT = Path(__file__).parent / "checkpoints" / "sudoku-mdm"
#: the autoregressive baselines by order (`--arch arm-solver`, `--arch arm-rowmajor`; see checkpoints/ARM_CARD.md)
SHIPPED_ARM_CHECKPOINTS = {order: SHIPPED_CHECKPOINT.parent / f"arm-{order}" for order in ("solver", "rowmajor")}


def preset(name: str, **overrides) -> TransformerConfig:
    """The TransformerConfig of a named Sudoku model size; `overrides` replace any field."""
    if name not in PRESETS:
        raise ValueError(f"preset: unknown {name!r}; use one of {sorted(PRESETS)}")
    return TransformerConfig(**{**SUDOKU_DATA, **PRESETS[name], **overrides})


def sudoku_model(preset_name: str = "cpu", arch: str = "mdm", **overrides) -> Transformer:
    """A fresh model of a preset's size: the MDM (`arch="mdm"`) or an autoregressive baseline of the same body
    (`"arm-rowmajor"`, `"arm-solver"`; `fastmdm.sudoku.arm`), which knows its order as `model.arm_order`."""
    if arch not in arm.ARCHS:
        raise ValueError(f"arch: unknown {arch!r}; use one of {', '.join(arm.ARCHS)}")
    if arch == "mdm":
        return Transformer(preset(preset_name, **overrides))
    if preset_name not in PRESETS:
        raise ValueError(f"preset: unknown {preset_name!r}; use one of {sorted(PRESETS)}")
    model = Transformer(arm.arm_config(**{**PRESETS[preset_name], **overrides}))
    model.arm_order = arch.removeprefix("arm-")
    return model


def resolve_precision(precision: str, device) -> str:
    """'fp32' or 'bf16' ('auto': bf16 where `fastmdm.adapters.bf16_is_fast`)."""
    from fastmdm.adapters import bf16_is_fast  # noqa: PLC0415
    if precision not in PRECISIONS:
        raise ValueError(f"precision: {precision!r} is not one of {PRECISIONS}")
    if precision == "auto":
        return "bf16" if bf16_is_fast(device) else "fp32"
    return precision


def load(checkpoint=None, device="cpu", precision="fp32"):
    """(model, config dict) from `checkpoint` (a directory), or the shipped model when None. With precision
    'bf16' the model runs under bf16 autocast (`fastmdm.adapters.autocast`; the LM head and the scores stay
    float32); the weights stay float32 either way."""
    from fastmdm.checkpoint import load_model  # noqa: PLC0415
    path = Path(checkpoint) if checkpoint is not None else SHIPPED_CHECKPOINT
    if checkpoint is None and not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"the shipped Sudoku checkpoint is missing from {path}; pass --checkpoint DIR "
                                "(a directory written by `fastmdm sudoku train --out DIR`)")
    model, cfg = load_model(path, map_location=device)
    if arm.is_arm(model):  # an autoregressive baseline: its order is in the training record
        arch = (cfg.get("train") or {}).get("arch")
        if arch not in arm.ARCHS[1:]:
            from fastmdm.checkpoint import CheckpointError  # noqa: PLC0415
            raise CheckpointError(f"checkpoint {path}: a Sudoku ARM whose config.json does not name its order "
                                  f"(train.arch is {arch!r}, expected one of {', '.join(arm.ARCHS[1:])})")
        model.arm_order = arch.removeprefix("arm-")
    if resolve_precision(precision, device) == "bf16":
        from fastmdm.adapters import autocast  # noqa: PLC0415
        model = autocast(model)
    return model, cfg
