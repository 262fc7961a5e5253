"""Fused masked-token selection.

`token_stats` (from logits, `stats_logits`) and `linear_token_stats` (from hidden states and the LM head,
`stats_linear`) give each fillable position its token and score in one pass over the vocabulary, without the
full softmax other codebases build; `select_positions` (here) ranks each row's eligible positions without a
sort: a bisection over the order-preserving integer image of float32 finds each row's n-th largest score,
then ties at that score are taken from the left with a prefix count (the torch reference's stable-sort rule,
exactly).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastmdm.kernels.stats import INTERPRET, SCORE_IDS
from fastmdm.kernels.stats_linear import linear_token_stats
from fastmdm.kernels.stats_logits import token_stats

__all__ = ["token_stats", "linear_token_stats", "select_positions", "INTERPRET", "SCORE_IDS"]


# ----------------------------------------------------------------------------------------------
# position selection
# ----------------------------------------------------------------------------------------------
@triton.jit
def _ordered_key(b_s):
    """int32 with the order of float32 (NaN above +inf, as torch's descending sort puts it first)."""
    b_s = tl.where(b_s == 0, 0.0, b_s)  # -0.0 ties with +0.0, as in torch's sort
    bits = b_s.to(tl.int32, bitcast=True)
    key = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    return tl.where(b_s != b_s, 2147483647, key)


@triton.jit
def _select_kernel(s_ptr, stride_sb, stride_sl, e_ptr, c_ptr, out_ptr, L, threshold,
                   THRESHOLD: tl.constexpr, BLOCK_L: tl.constexpr):
    NEG_INF: tl.constexpr = float("-inf")
    i_b = tl.program_id(0)
    o_l = tl.arange(0, BLOCK_L)
    m_l = o_l < L
    b_e = tl.load(e_ptr + i_b * L + o_l, mask=m_l, other=0) != 0  # [BL]
    b_s = tl.load(s_ptr + i_b.to(tl.int64) * stride_sb + o_l * stride_sl, mask=m_l, other=0).to(tl.float32)
    b_s = tl.where(b_e, b_s, NEG_INF)  # the reference ranks ineligible positions as -inf, then drops them
    b_k = _ordered_key(b_s).to(tl.int64)
    b_k = tl.where(m_l, b_k, -(2**40))  # padding lanes rank below everything
    if THRESHOLD:
        best = tl.max(b_k, 0)
        i_best = tl.min(tl.where(b_k == best, o_l, BLOCK_L), 0)
        has_any = tl.sum(b_e.to(tl.int32), 0) > 0
        sel = ((b_s >= threshold) & b_e) | ((o_l == i_best) & has_any)
    else:
        n = tl.load(c_ptr + i_b).to(tl.int64)
        # largest key v with #{k >= v} >= n, by bisection over the int32 range (32 halvings)
        lo = tl.zeros([], dtype=tl.int64) - 2147483648
        hi = tl.zeros([], dtype=tl.int64) + 2147483647
        for _ in range(33):
            mid = (lo + hi + 1) >> 1
            ok = tl.sum((b_k >= mid).to(tl.int64), 0) >= n
            lo = tl.where(ok, mid, lo)
            hi = tl.where(ok, hi, mid - 1)
        above = b_k > lo
        tie = b_k == lo
        room = n - tl.sum(above.to(tl.int64), 0)
        tie_rank = tl.cumsum(tie.to(tl.int64), 0) - 1  # ties are taken left to right (stable sort)
        sel = (above | (tie & (tie_rank < room))) & b_e & (n > 0)
    tl.store(out_ptr + i_b * L + o_l, sel.to(tl.int8), mask=m_l)


MAX_SELECT_L = 1 << 16


def select_positions(scores: torch.Tensor, eligible: torch.Tensor, *, counts: torch.Tensor | None = None,
                     threshold: float | None = None) -> torch.Tensor:
    """Bool [B, L]: per row the `counts[b]` best eligible positions (ties to the lower position), or every
    eligible position scoring >= `threshold` plus each row's best. Equals the torch references exactly."""
    if (counts is None) == (threshold is None):
        raise ValueError("select_positions needs exactly one of counts= or threshold=")
    if scores.dim() != 2 or tuple(eligible.shape) != tuple(scores.shape):
        raise ValueError(f"scores [B, L] and eligible [B, L] must match; got {tuple(scores.shape)} and "
                         f"{tuple(eligible.shape)}")
    B, L = scores.shape
    if L > MAX_SELECT_L:
        raise ValueError(f"select_positions: rows longer than {MAX_SELECT_L} are not supported by the kernel; "
                         "use backend='torch'")
    out = torch.empty(B, L, dtype=torch.int8, device=scores.device)
    if B == 0 or L == 0:
        return out.bool()
    e = eligible.to(torch.int8).contiguous()
    if counts is None:
        c = e  # unused
    else:
        if tuple(counts.shape) != (B,):
            raise ValueError(f"counts: must be [B] = [{B}], got {tuple(counts.shape)}")
        c = counts.to(device=scores.device, dtype=torch.int64).contiguous()
    s = scores if scores.dtype in (torch.float32, torch.float16, torch.bfloat16) else scores.float()
    block_l = max(16, triton.next_power_of_2(L))
    _select_kernel[(B,)](s, s.stride(0), s.stride(1), e, c, out, L,
                         float(threshold) if threshold is not None else 0.0, THRESHOLD=threshold is not None,
                         BLOCK_L=block_l, num_warps=4 if block_l <= 4096 else 16)
    return out.bool()
