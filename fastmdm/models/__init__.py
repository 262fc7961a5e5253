"""fastmdm's own models: a small bidirectional transformer for masked diffusion."""
from fastmdm.models.transformer import PRESETS, Transformer, TransformerConfig, preset

__all__ = ["Transformer", "TransformerConfig", "PRESETS", "preset"]
