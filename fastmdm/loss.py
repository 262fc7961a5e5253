"""The masked-diffusion training loss (the ELBO of LLaDA / SMDM / MDLM with a linear schedule).

For each sequence b a masking rate t_b ~ U(0, 1) gives p_mask_b = (1 - eps) t_b + eps; each fillable token
is masked with probability p_mask_b; the loss is the cross-entropy at masked positions, each weighted by
1 / p_mask, summed and divided by the number of positions (B * L, or the number of fillable positions when
`fillable` is given). Its expectation over t bounds the negative log-likelihood per token.
"""
from __future__ import annotations

import torch

from fastmdm import ops


def sample_mask(tokens: torch.Tensor, *, fillable: torch.Tensor | None = None, eps: float = 1e-3,
                generator: torch.Generator | None = None, t: torch.Tensor | None = None):
    """(masked [B, L] bool, p_mask [B] float32): a masking rate per row, then each fillable position masked
    independently with that probability."""
    B, L = tokens.shape
    if t is None:
        t = torch.rand(B, generator=generator, device=tokens.device)
    p_mask = (1 - eps) * t.float() + eps
    u = torch.rand(B, L, generator=generator, device=tokens.device)
    masked = u < p_mask[:, None]
    if fillable is not None:
        masked &= fillable.bool()
    return masked, p_mask


def _weights(masked, p_mask, fillable):
    p = p_mask[:, None].expand_as(masked) if p_mask.dim() == 1 else p_mask
    denom = masked.numel() if fillable is None else fillable.sum().clamp_min(1)
    return (masked.float() / p.float()) / denom


def mdm_loss(logits: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor, p_mask: torch.Tensor, *,
             fillable: torch.Tensor | None = None) -> torch.Tensor:
    """Masked-diffusion loss from logits [B, L, V]; `p_mask` is [B] or [B, L]; float32 scalar."""
    if logits.dim() != 3 or logits.shape[:2] != targets.shape:
        raise ValueError(f"mdm_loss: logits must be [B, L, V] matching targets [B, L]; got {tuple(logits.shape)} "
                         f"and {tuple(targets.shape)}")
    w = _weights(masked, p_mask, fillable)
    sel = masked.reshape(-1)
    lg = logits.reshape(-1, logits.shape[-1])[sel].float()
    ce = torch.nn.functional.cross_entropy(lg, targets.reshape(-1)[sel], reduction="none")
    return (ce * w.reshape(-1)[sel]).sum()


def mdm_loss_from_hidden(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor,
                         p_mask: torch.Tensor, *, bias: torch.Tensor | None = None,
                         fillable: torch.Tensor | None = None, backend: str = "auto") -> torch.Tensor:
    """The same loss from hidden states [B, L, d] and an LM head `weight` [V, d]: only masked rows go through
    the head, and the fused kernel (CUDA) never holds their full logits."""
    w = _weights(masked, p_mask, fillable)
    sel = masked.reshape(-1)
    h = hidden.reshape(-1, hidden.shape[-1])[sel]
    return ops.linear_weighted_ce(h, weight, targets.reshape(-1)[sel], w.reshape(-1)[sel], bias=bias,
                                  backend=backend)
