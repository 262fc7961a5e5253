"""Token statistics from logits [N, V] (any strides, optionally rows of a larger buffer): one pass per row."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastmdm.kernels.stats import (
    INTERPRET,
    NPF,
    NPI,
    check_args,
    choose_split,
    draw_seed,
    fold_tile,
    merge,
    store_partial,
)


# ----------------------------------------------------------------------------------------------
# stage 1a: partial statistics from logits [N, V] (any strides), one row x one column range per program
# ----------------------------------------------------------------------------------------------
@triton.jit
def _logits_partial_kernel(x_ptr, stride_n, stride_v, rows_ptr, pf_ptr, pi_ptr, N, V, V_PER_SPLIT, SPLIT,
                           temperature, seed, mask_id, HAS_ROWS: tl.constexpr, HAS_MASK_ID: tl.constexpr,
                           SAMPLE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr):
    NEG_INF: tl.constexpr = float("-inf")
    i_nb = tl.program_id(0)
    i_s = tl.program_id(1)
    v_lo = i_s * V_PER_SPLIT
    v_hi = tl.minimum(V, v_lo + V_PER_SPLIT)
    o_n = i_nb * BLOCK_N + tl.arange(0, BLOCK_N)  # [BN] rows (1 for large V, several for small V)
    m_n = o_n < N
    zero = tl.zeros([BLOCK_N], dtype=tl.float32)
    m, s, t, m1 = zero + NEG_INF, zero, zero, zero + NEG_INF
    m2, gm, gz, nnan = zero + NEG_INF, zero + NEG_INF, zero, zero
    i1 = tl.zeros([BLOCK_N], dtype=tl.int32) + v_lo
    gi = i1
    if HAS_ROWS:  # gather: output row i reads logits row rows[i], so the caller never copies [N, V]
        i_src = tl.load(rows_ptr + o_n, mask=m_n, other=0).to(tl.int64)
    else:
        i_src = o_n.to(tl.int64)
    p_rows = x_ptr + i_src[:, None] * stride_n  # [BN, 1]
    for v0 in range(v_lo, v_hi, BLOCK_V):
        o_v = v0 + tl.arange(0, BLOCK_V)  # [BV]
        m_nv = m_n[:, None] & (o_v < v_hi)[None, :]
        # convert to fp32 right after the load (bf16 arithmetic is wrong in the interpreter)
        b_x = tl.load(p_rows + o_v.to(tl.int64)[None, :] * stride_v, mask=m_nv, other=0).to(tl.float32)
        b_z = tl.where(m_nv, b_x, NEG_INF)  # [BN, BV]
        if HAS_MASK_ID:
            b_z = tl.where(o_v[None, :] == mask_id, NEG_INF, b_z)
        if SAMPLE:
            b_z = b_z / temperature
        m, s, t, m1, i1, m2, gm, gi, gz, nnan = fold_tile(b_z, o_v, o_n, seed, m, s, t, m1, i1, m2, gm, gi, gz,
                                                           nnan, SAMPLE)
    store_partial(pf_ptr, pi_ptr, o_n, m_n, i_s, SPLIT, m, s, t, m1, i1, m2, gm, gi, gz, nnan)


def token_stats(logits: torch.Tensor, *, score: str = "confidence", temperature: float = 0.0,
                mask_id: int | None = None, generator: torch.Generator | None = None,
                rows: torch.Tensor | None = None, _split: int | None = None, _block_v: int | None = None):
    """(tokens int64 [N], scores float32 [N]) for logits [N, V] (fp32/fp16/bf16, any strides) in one pass.

    With `rows` (int [N]), the statistics of logits[rows] without gathering them first: `logits` may then be
    the model's whole output viewed as [B * L, V] and `rows` the flat indices of the fillable positions.

    Same semantics as `fastmdm.ops.token_stats_reference`: identical tokens at temperature 0 (ties to the
    lowest column, `mask_id` never chosen), scores to float32 rounding, NaN score for a row holding NaN.
    At temperature > 0 the draw uses Philox keyed by one seed taken from `generator`.
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or not logits.is_floating_point():
        raise ValueError("logits: must be a floating tensor [N, V]")
    if logits.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        logits = logits.float()
    N, V = logits.shape
    check_args(score, temperature, mask_id, V)
    dev = logits.device
    if rows is not None:
        if rows.dim() != 1 or rows.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"rows: must be a 1-D int32/int64 tensor of row indices, got {tuple(rows.shape)} "
                             f"{rows.dtype}")
        if rows.numel() and bool(((rows < 0) | (rows >= N)).any()):
            raise ValueError(f"rows: indices must lie in [0, {N})")
        rows = rows.to(dev).contiguous()
        N = rows.shape[0]
    if N == 0:
        return torch.empty(0, dtype=torch.int64, device=dev), torch.empty(0, dtype=torch.float32, device=dev)
    sample = temperature > 0
    seed = draw_seed(temperature, generator)
    split = choose_split(N, V, dev, _split)
    v_per = -(-V // split)
    split = -(-V // v_per)
    pf = torch.empty(N, split, NPF.value, dtype=torch.float32, device=dev)
    pi = torch.empty(N, split, NPI.value, dtype=torch.int32, device=dev)
    if _block_v is not None:
        block_v = _block_v
    elif INTERPRET:
        block_v = min(triton.next_power_of_2(v_per), 4096)
    else:
        block_v = min(triton.next_power_of_2(v_per), 2048 if logits.element_size() == 4 else 4096)
    # rows per program: one row for a large vocabulary, several when the vocabulary is small
    block_n = max(1, min(triton.next_power_of_2(N), (16384 if INTERPRET else 4096) // block_v))
    _logits_partial_kernel[(triton.cdiv(N, block_n), split)](
        logits, logits.stride(0), logits.stride(1), rows if rows is not None else pf, pf, pi, N, V, v_per, split,
        float(temperature) if sample else 1.0, seed, int(mask_id) if mask_id is not None else 0,
        HAS_ROWS=rows is not None, HAS_MASK_ID=mask_id is not None, SAMPLE=sample, BLOCK_N=block_n, BLOCK_V=block_v,
        num_warps=8 if block_n * block_v >= 2048 else 4)
    return merge(pf, pi, N, split, score, sample, dev)
