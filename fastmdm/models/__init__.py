"""fastmdm's own models: a small bidirectional transformer for masked diffusion, and its position schemes."""
from fastmdm.models.positions import PositionScheme, get_positions, register_positions, registered_positions
from fastmdm.models.transformer import Transformer, TransformerConfig

__all__ = ["Transformer", "TransformerConfig", "PositionScheme", "register_positions", "get_positions",
           "registered_positions"]
