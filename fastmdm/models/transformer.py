"""A small bidirectional transformer for masked diffusion: RMSNorm, SwiGLU, attention through `fastmdm.ops`.

Positions come from a scheme named by `TransformerConfig.positions` (`fastmdm.models.positions`): the
library has ``"learned"`` (absolute learned vectors, the default) and ``"rotary"``; an application registers
its own (`fastmdm.models.register_positions`).

The model exposes `forward_hidden(input_ids, attention_mask=None)` -> [B, L, d] and
`get_output_embeddings()` (the LM head) so `fastmdm.sample` and `fastmdm.mdm_loss_from_hidden` apply the
head only where it is needed; calling the model returns full logits [B, L, V].
"""
from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from fastmdm import ops
from fastmdm.models.positions import get_positions, rotary_tables  # noqa: F401  (rotary_tables: public here too)


@dataclass
class TransformerConfig:
    """The architecture. `vocab_size`, `mask_token_id` and `max_len` belong to the data and have no default."""
    vocab_size: int
    mask_token_id: int
    max_len: int
    d_model: int = 192
    n_layers: int = 6
    n_heads: int = 6
    d_ff: int = 512
    positions: str = "learned"
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    init_std: float = 0.02
    attention_backend: str = "auto"   # fastmdm.ops.attention backend: auto (Triton on CUDA), torch, triton
    causal: bool = False              # True: each position attends to itself and earlier ones (an ARM body)

    def __post_init__(self):
        for name in ("vocab_size", "max_len", "d_model", "n_layers", "n_heads", "d_ff"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"TransformerConfig.{name}: must be a positive int, got {v!r}")
        if not 0 <= self.mask_token_id < self.vocab_size:
            raise ValueError(f"TransformerConfig.mask_token_id: {self.mask_token_id} must lie in "
                             f"[0, vocab_size={self.vocab_size})")
        if self.d_model % self.n_heads:
            raise ValueError(f"TransformerConfig.n_heads: d_model={self.d_model} must be a multiple of "
                             f"n_heads={self.n_heads}")
        if isinstance(self.mask_token_id, bool) or not isinstance(self.mask_token_id, int):
            raise ValueError(f"TransformerConfig.mask_token_id: must be an int token id, got {self.mask_token_id!r}")
        if self.attention_backend not in ("auto", "torch", "triton"):
            raise ValueError(f"TransformerConfig.attention_backend: {self.attention_backend!r} is not one of "
                             "'auto', 'torch', 'triton'")
        if not isinstance(self.causal, bool):
            raise ValueError(f"TransformerConfig.causal: must be true or false, got {self.causal!r}")
        if self.causal and self.attention_backend == "triton":
            raise ValueError("TransformerConfig.attention_backend: the Triton attention kernel is bidirectional "
                             "only; a causal model needs 'auto' or 'torch'")
        get_positions(self.positions).check_config(self)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TransformerConfig":
        if not isinstance(d, dict):
            raise ValueError(f"TransformerConfig: expected a dict of fields, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"TransformerConfig: unknown keys {unknown}; known keys are {sorted(known)}")
        missing = sorted(f.name for f in fields(cls) if f.name not in d and f.default is MISSING)
        if missing:
            raise ValueError(f"TransformerConfig: missing keys {missing}")
        return cls(**d)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def apply_rotary(x, cos, sin):
    """x [B, H, L, D]: rotate the pairs (x[..., :D/2], x[..., D/2:]) by the position's angle."""
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).type_as(x)


class Attention(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.backend = cfg.attention_backend
        self.causal = cfg.causal
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x, key_padding_mask=None, rope=None, cache=None, layer=0):
        B, L, d = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        if cache is not None:  # keys and values of every position: this call's window, the rest cached
            k, v = cache.update(layer, k, v)
        y = ops.attention(q, k, v, key_padding_mask=key_padding_mask, backend=self.backend,
                          causal=self.causal)  # [B, H, L, D]
        return self.proj(y.transpose(1, 2).reshape(B, L, d))


class SwiGLU(nn.Module):
    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.gate_up = nn.Linear(d_model, 2 * d_ff, bias=False)
        self.down = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x):
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.norm1 = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.norm2 = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = SwiGLU(cfg.d_model, cfg.d_ff)

    def forward(self, x, key_padding_mask=None, rope=None, cache=None, layer=0):
        x = x + self.attn(self.norm1(x), key_padding_mask, rope, cache, layer)
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """Pre-norm transformer, bidirectional (or causal with `TransformerConfig.causal`); `model(x)` -> logits
    [B, L, V]."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"config: expected a TransformerConfig, got {type(config).__name__}")
        self.config = config
        c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.position_scheme = get_positions(c.positions)
        self.position_scheme.add_to(self, c)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layers))
        self.norm = RMSNorm(c.d_model, c.norm_eps)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.reset_parameters()

    def reset_parameters(self):
        std = self.config.init_std
        for name, p in self.named_parameters():
            if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "norm.weight":
                nn.init.ones_(p)
            elif name.endswith("proj.weight") or name.endswith("down.weight"):
                # residual branches scaled down with depth (GPT-2)
                nn.init.normal_(p, std=std / math.sqrt(2 * self.config.n_layers))
            else:
                nn.init.normal_(p, std=std)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def _check_input(self, input_ids, attention_mask):
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            raise ValueError(f"input_ids: expected a LongTensor [B, L], got "
                             f"{tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids)}")
        if input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
            raise TypeError(f"input_ids: must be integer token ids, got {input_ids.dtype}")
        L = input_ids.shape[1]
        why = self.position_scheme.check_length(L, self.config)
        if why is not None:
            raise ValueError(f"input_ids: length {L} does not fit this model ({why}, "
                             f"positions={self.config.positions!r})")
        if attention_mask is not None and tuple(attention_mask.shape) != tuple(input_ids.shape):
            raise ValueError(f"attention_mask: must have input_ids' shape {tuple(input_ids.shape)}, "
                             f"got {tuple(attention_mask.shape)}")

    #: implements the block key/value cache of `fastmdm.cache`
    supports_kv_cache = True

    def forward_hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                       cache=None) -> torch.Tensor:
        """Final hidden states [B, L, d] (after the last norm). With a `fastmdm.cache.KVCache` that is not
        refreshing, only the window `cache.start:cache.end` is computed (and returned), attending to the
        cached keys and values of the other positions."""
        self._check_input(input_ids, attention_mask)
        L = input_ids.shape[1]
        if cache is not None and self.config.causal and not cache.refreshing and cache.end != L:
            # causal attention over cached keys takes the window's queries as the last positions
            raise ValueError(f"cache: a causal model computes only a window that ends the sequence (window "
                             f"{cache.start}:{cache.end} of {L} positions); block caches serve bidirectional models")
        s, e = (0, L) if cache is None or cache.refreshing else (cache.start, cache.end)
        x = self.tok_emb(input_ids[:, s:e].long())
        pos = self.position_scheme.embed(self, s, e, input_ids.device)  # the vectors of positions s..e-1
        if pos is not None:
            x = x + pos
        named = self.position_scheme.embed_named(self, input_ids, s, e)  # positions the tokens name, if any
        if named is not None:
            x = x + named
        rope = self.position_scheme.rotary(self, s, e, input_ids.device)
        kpm = None if attention_mask is None else attention_mask.bool()
        for i, block in enumerate(self.blocks):
            x = block(x, kpm, rope, cache, i)
        x = self.norm(x)
        return x[:, cache.start:cache.end] if cache is not None and cache.refreshing else x

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.lm_head(self.forward_hidden(input_ids, attention_mask))
