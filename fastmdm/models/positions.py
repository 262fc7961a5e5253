"""Position schemes of `fastmdm.models.Transformer`, looked up by the name in `TransformerConfig.positions`.

A scheme decides how the model knows where a token is. The library has two:
- ``"learned"``: one learned vector per absolute position, added to the token embedding;
- ``"rotary"``: rotary embeddings on queries and keys (no additive vector).

An application with its own geometry (a grid, a tree) subclasses `PositionScheme` and calls
`register_positions` when its module is imported; a checkpoint whose config names that scheme loads once the
module has been imported. A scheme registers its parameters on the model under its own attribute names, so
its checkpoints keep plain keys (``pos_emb.weight``, not ``positions.pos_emb.weight``).
"""
from __future__ import annotations

import torch
from torch import nn


class PositionScheme:
    """Base class: no additive vector, no rotation, any length up to `max_len`."""

    name: str = ""

    def check_config(self, config) -> None:
        """Raise ValueError (naming the TransformerConfig field) when `config` cannot use this scheme."""

    def add_to(self, model: nn.Module, config) -> None:
        """Register this scheme's parameters and buffers on `model` (called once, in its __init__)."""

    def check_length(self, length: int, config) -> str | None:
        """Why a batch of `length` tokens does not fit, or None when it does."""
        if length > config.max_len:
            return f"max_len={config.max_len}"
        return None

    def embed(self, model: nn.Module, start: int, end: int, device) -> torch.Tensor | None:
        """Vectors [end - start, d] added to the token embeddings of positions start..end-1, or None.
        (A block key/value cache computes a window of positions; without one the window is the whole row.)"""
        return None

    def embed_named(self, model: nn.Module, input_ids: torch.Tensor, start: int, end: int) -> torch.Tensor | None:
        """Vectors [B, end - start, d] for positions that the tokens themselves name, or None (the default).
        A scheme whose sequences write into a structure (a token that names the grid cell written next, as the
        Sudoku ARM's do) gives those tokens that place's vector. `input_ids` is the whole sequence [B, L]."""
        return None

    def rotary(self, model: nn.Module, start: int, end: int, device):
        """(cos, sin) tables [end - start, head_dim / 2] that rotate the queries and keys of positions
        start..end-1, or None."""
        return None


class LearnedPositions(PositionScheme):
    name = "learned"

    def add_to(self, model, config):
        model.pos_emb = nn.Embedding(config.max_len, config.d_model)

    def embed(self, model, start, end, device):
        return model.pos_emb(torch.arange(start, end, device=device))


def rotary_tables(length: int, head_dim: int, theta: float, device=None):
    """(cos, sin), each [length, head_dim / 2]."""
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    ang = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv[None, :]
    return ang.cos(), ang.sin()


class RotaryPositions(PositionScheme):
    name = "rotary"

    def check_config(self, config):
        if (config.d_model // config.n_heads) % 2:
            raise ValueError("TransformerConfig.positions: rotary positions need an even head dimension "
                             f"(d_model / n_heads = {config.d_model // config.n_heads}); change d_model or n_heads")

    def rotary(self, model, start, end, device):
        c = model.config
        cos, sin = rotary_tables(end, c.d_model // c.n_heads, c.rope_theta, device)
        return cos[start:end], sin[start:end]


_REGISTRY: dict[str, PositionScheme] = {}


def register_positions(scheme: PositionScheme) -> PositionScheme:
    """Make `scheme` available as `TransformerConfig(positions=scheme.name)`. Registering another scheme
    under a taken name is refused (checkpoints name schemes, so a name must keep its meaning)."""
    if not isinstance(scheme, PositionScheme):
        raise TypeError(f"scheme: expected a PositionScheme instance, got {type(scheme).__name__}")
    if not isinstance(scheme.name, str) or not scheme.name:
        raise ValueError("scheme.name: a position scheme needs a non-empty name")
    old = _REGISTRY.get(scheme.name)
    if old is not None and type(old) is not type(scheme):
        raise ValueError(f"scheme.name: {scheme.name!r} is already registered by {type(old).__name__}; "
                         "pick another name")
    _REGISTRY[scheme.name] = scheme
    return scheme


_FAMILIES: dict[str, object] = {}


def register_position_family(prefix: str, make) -> None:
    """Schemes named by their parameters: `make(name)` builds the scheme for a name that starts with `prefix`
    (None when the rest does not parse), registered the first time a config names it. A task whose positions
    depend on its shape (Zebra's ``zebra-5x5-25``) registers one family instead of one scheme per shape."""
    if not isinstance(prefix, str) or not prefix:
        raise ValueError("prefix: a position family needs a non-empty name prefix")
    if not callable(make):
        raise TypeError(f"make: expected a callable, got {type(make).__name__}")
    _FAMILIES[prefix] = make


def get_positions(name: str) -> PositionScheme:
    """The registered scheme called `name` (built by its family on first use); a ValueError naming the
    registered ones otherwise."""
    if name not in _REGISTRY:
        for prefix, make in _FAMILIES.items():
            scheme = make(name) if isinstance(name, str) and name.startswith(prefix) else None
            if scheme is not None:
                return register_positions(scheme)
    if name not in _REGISTRY:
        raise ValueError(f"TransformerConfig.positions: {name!r} is not a registered position scheme (registered: "
                         f"{', '.join(sorted(_REGISTRY))}); import the module that registers it first "
                         "(fastmdm.models.register_positions)")
    return _REGISTRY[name]


def registered_positions() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


register_positions(LearnedPositions())
register_positions(RotaryPositions())
