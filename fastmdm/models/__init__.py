"""Models: fastmdm's own bidirectional transformer (and its position schemes), and native LLaDA and Dream."""
from fastmdm.models.llama_style import Dream, LLaDA, LlamaStyleConfig, native_for
from fastmdm.models.positions import (
    PositionScheme,
    get_positions,
    register_position_family,
    register_positions,
    registered_positions,
)
from fastmdm.models.transformer import Transformer, TransformerConfig

__all__ = ["Transformer", "TransformerConfig", "PositionScheme", "register_positions", "register_position_family",
           "get_positions", "registered_positions", "LLaDA", "Dream", "LlamaStyleConfig", "native_for"]
