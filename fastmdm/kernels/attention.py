"""Non-causal flash attention with key padding and grouped-query heads, forward and backward.

Masked diffusion models attend bidirectionally, so every query block visits every key block; what varies
between sequences of a batch is padding. The forward keeps a block of queries resident, streams key/value
blocks, and keeps the softmax online in base 2 (scores are pre-multiplied by scale * log2(e) so the inner
loop uses exp2). Padded keys get -inf before the running max; a query that sees no valid key at all (a
sequence whose keys are all padding) returns zeros, and its log-sum-exp is stored as +inf so the backward
gives it zero gradients, which is how `fastmdm.ops.attention_reference` defines that row.

The backward follows FlashAttention-2: delta = rowsum(dO * O), one kernel for dK/dV (a key block stays
resident and loops over the query blocks of every query head that shares its key head, so grouped-query
gradients are summed in registers, without atomics) and one for dQ (a query block loops over key blocks).

Layout: SDPA's, q [B, Hq, L, D], k and v [B, Hkv, S, D]; any strides; head dims up to 128 (padded to a
power of two inside the kernel; `fastmdm.ops.attention` sends larger ones to the torch path); fp32 / fp16 /
bf16. fp32 inputs use IEEE products unless torch allows tf32 for matmuls, as torch itself does.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from fastmdm.kernels import common

INTERPRET = bool(triton.knobs.runtime.interpret)
LOG2E = 1.4426950408889634


@triton.jit
def _dot(a, b, IEEE: tl.constexpr):
    if IEEE:
        return tl.dot(a, b, input_precision="ieee")
    else:
        return tl.dot(a, b)


# ----------------------------------------------------------------------------------------------
# forward
# ----------------------------------------------------------------------------------------------
@triton.jit
def _attn_fwd_kernel(q_ptr, k_ptr, v_ptr, kpm_ptr, o_ptr, lse_ptr, qk_scale,
                     s_qb, s_qh, s_ql, s_qd, s_kb, s_kh, s_ks, s_kd, s_vb, s_vh, s_vs, s_vd,
                     s_ob, s_oh, s_ol, s_od, Hq, GROUP, L, S, D,
                     HAS_KPM: tl.constexpr, CAST_F32: tl.constexpr, IEEE: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    NEG_INF: tl.constexpr = float("-inf")
    i_m = tl.program_id(0)
    i_bh = tl.program_id(1)
    i_b = i_bh // Hq
    i_h = i_bh % Hq
    i_hk = i_h // GROUP
    o_m = i_m * BLOCK_M + tl.arange(0, BLOCK_M)  # [BM]
    o_d = tl.arange(0, BLOCK_D)
    m_m = o_m < L
    m_d = o_d < D
    q_base = q_ptr + i_b.to(tl.int64) * s_qb + i_h.to(tl.int64) * s_qh
    k_base = k_ptr + i_b.to(tl.int64) * s_kb + i_hk.to(tl.int64) * s_kh
    v_base = v_ptr + i_b.to(tl.int64) * s_vb + i_hk.to(tl.int64) * s_vh
    b_q = tl.load(q_base + o_m[:, None] * s_ql + o_d[None, :] * s_qd, mask=m_m[:, None] & m_d[None, :], other=0)
    if CAST_F32:
        b_q = b_q.to(tl.float32)
    b_mi = tl.zeros([BLOCK_M], dtype=tl.float32) + NEG_INF
    b_li = tl.zeros([BLOCK_M], dtype=tl.float32)
    b_acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for n0 in range(0, S, BLOCK_N):
        o_n = n0 + tl.arange(0, BLOCK_N)  # [BN]
        m_n = o_n < S
        valid = m_n
        if HAS_KPM:
            valid = valid & (tl.load(kpm_ptr + i_b * S + o_n, mask=m_n, other=0) != 0)
        b_kt = tl.load(k_base + o_n[None, :] * s_ks + o_d[:, None] * s_kd, mask=m_n[None, :] & m_d[:, None],
                       other=0)  # [BD, BN]
        b_v = tl.load(v_base + o_n[:, None] * s_vs + o_d[None, :] * s_vd, mask=m_n[:, None] & m_d[None, :],
                      other=0)  # [BN, BD]
        if CAST_F32:
            b_kt = b_kt.to(tl.float32)
            b_v = b_v.to(tl.float32)
        b_s = _dot(b_q, b_kt, IEEE) * qk_scale  # [BM, BN], base-2 logits
        b_s = tl.where(valid[None, :], b_s, NEG_INF)
        m_new = tl.maximum(b_mi, tl.max(b_s, 1))
        m_ref = tl.where(m_new == NEG_INF, 0.0, m_new)  # no valid key yet: keep sums at 0, not NaN
        b_p = tl.exp2(b_s - m_ref[:, None])
        alpha = tl.exp2(b_mi - m_ref)
        b_li = b_li * alpha + tl.sum(b_p, 1)
        b_acc = b_acc * alpha[:, None] + _dot(b_p.to(b_v.dtype), b_v, IEEE)
        b_mi = m_new
    has_key = b_li > 0
    b_o = b_acc / tl.where(has_key, b_li, 1.0)[:, None]
    b_o = tl.where(has_key[:, None], b_o, 0.0)
    b_lse = tl.where(has_key, b_mi + tl.log2(tl.where(has_key, b_li, 1.0)), float("inf"))
    o_base = o_ptr + i_b.to(tl.int64) * s_ob + i_h.to(tl.int64) * s_oh
    tl.store(o_base + o_m[:, None] * s_ol + o_d[None, :] * s_od, b_o.to(o_ptr.dtype.element_ty),
             mask=m_m[:, None] & m_d[None, :])
    tl.store(lse_ptr + i_bh.to(tl.int64) * L + o_m, b_lse, mask=m_m)


# ----------------------------------------------------------------------------------------------
# backward
# ----------------------------------------------------------------------------------------------
@triton.jit
def _attn_bwd_dkdv_kernel(q_ptr, k_ptr, v_ptr, kpm_ptr, do_ptr, lse_ptr, delta_ptr, dk_ptr, dv_ptr,
                          qk_scale, sm_scale,
                          s_qb, s_qh, s_ql, s_qd, s_kb, s_kh, s_ks, s_kd, s_vb, s_vh, s_vs, s_vd,
                          s_db, s_dh, s_dl, s_dd, Hq, Hkv, GROUP, L, S, D,
                          HAS_KPM: tl.constexpr, CAST_F32: tl.constexpr, IEEE: tl.constexpr,
                          BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    i_n = tl.program_id(0)
    i_bhk = tl.program_id(1)
    i_b = i_bhk // Hkv
    i_hk = i_bhk % Hkv
    o_n = i_n * BLOCK_N + tl.arange(0, BLOCK_N)
    o_d = tl.arange(0, BLOCK_D)
    m_n = o_n < S
    m_d = o_d < D
    valid = m_n
    if HAS_KPM:
        valid = valid & (tl.load(kpm_ptr + i_b * S + o_n, mask=m_n, other=0) != 0)
    k_base = k_ptr + i_b.to(tl.int64) * s_kb + i_hk.to(tl.int64) * s_kh
    v_base = v_ptr + i_b.to(tl.int64) * s_vb + i_hk.to(tl.int64) * s_vh
    b_k = tl.load(k_base + o_n[:, None] * s_ks + o_d[None, :] * s_kd, mask=m_n[:, None] & m_d[None, :], other=0)
    b_v = tl.load(v_base + o_n[:, None] * s_vs + o_d[None, :] * s_vd, mask=m_n[:, None] & m_d[None, :], other=0)
    if CAST_F32:
        b_k = b_k.to(tl.float32)
        b_v = b_v.to(tl.float32)
    b_dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    b_dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    for g in range(0, GROUP):
        i_h = i_hk * GROUP + g
        q_base = q_ptr + i_b.to(tl.int64) * s_qb + i_h.to(tl.int64) * s_qh
        do_base = do_ptr + i_b.to(tl.int64) * s_db + i_h.to(tl.int64) * s_dh
        row_base = (i_b * Hq + i_h).to(tl.int64) * L
        for m0 in range(0, L, BLOCK_M):
            o_m = m0 + tl.arange(0, BLOCK_M)
            m_m = o_m < L
            b_q = tl.load(q_base + o_m[:, None] * s_ql + o_d[None, :] * s_qd, mask=m_m[:, None] & m_d[None, :],
                          other=0)
            b_do = tl.load(do_base + o_m[:, None] * s_dl + o_d[None, :] * s_dd,
                           mask=m_m[:, None] & m_d[None, :], other=0)
            if CAST_F32:
                b_q = b_q.to(tl.float32)
                b_do = b_do.to(tl.float32)
            b_lse = tl.load(lse_ptr + row_base + o_m, mask=m_m, other=float("inf"))
            b_delta = tl.load(delta_ptr + row_base + o_m, mask=m_m, other=0.0)
            b_s = _dot(b_q, tl.trans(b_k), IEEE) * qk_scale  # [BM, BN]
            # p is exactly the forward's probabilities; rows without a valid key have lse = +inf -> p = 0
            b_p = tl.where(valid[None, :], tl.exp2(b_s - b_lse[:, None]), 0.0)
            b_dv += _dot(tl.trans(b_p.to(b_do.dtype)), b_do, IEEE)
            b_dp = _dot(b_do, tl.trans(b_v), IEEE)  # [BM, BN]
            b_ds = b_p * (b_dp - b_delta[:, None])
            b_dk += _dot(tl.trans(b_ds.to(b_q.dtype)), b_q, IEEE)
    b_dk = b_dk * sm_scale
    tl.store(dk_ptr + i_bhk.to(tl.int64) * S * D + o_n[:, None] * D + o_d[None, :],
             b_dk.to(dk_ptr.dtype.element_ty), mask=m_n[:, None] & m_d[None, :])
    tl.store(dv_ptr + i_bhk.to(tl.int64) * S * D + o_n[:, None] * D + o_d[None, :],
             b_dv.to(dv_ptr.dtype.element_ty), mask=m_n[:, None] & m_d[None, :])


@triton.jit
def _attn_bwd_dq_kernel(q_ptr, k_ptr, v_ptr, kpm_ptr, do_ptr, lse_ptr, delta_ptr, dq_ptr, qk_scale, sm_scale,
                        s_qb, s_qh, s_ql, s_qd, s_kb, s_kh, s_ks, s_kd, s_vb, s_vh, s_vs, s_vd,
                        s_db, s_dh, s_dl, s_dd, Hq, GROUP, L, S, D,
                        HAS_KPM: tl.constexpr, CAST_F32: tl.constexpr, IEEE: tl.constexpr,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    i_m = tl.program_id(0)
    i_bh = tl.program_id(1)
    i_b = i_bh // Hq
    i_h = i_bh % Hq
    i_hk = i_h // GROUP
    o_m = i_m * BLOCK_M + tl.arange(0, BLOCK_M)
    o_d = tl.arange(0, BLOCK_D)
    m_m = o_m < L
    m_d = o_d < D
    q_base = q_ptr + i_b.to(tl.int64) * s_qb + i_h.to(tl.int64) * s_qh
    do_base = do_ptr + i_b.to(tl.int64) * s_db + i_h.to(tl.int64) * s_dh
    k_base = k_ptr + i_b.to(tl.int64) * s_kb + i_hk.to(tl.int64) * s_kh
    v_base = v_ptr + i_b.to(tl.int64) * s_vb + i_hk.to(tl.int64) * s_vh
    b_q = tl.load(q_base + o_m[:, None] * s_ql + o_d[None, :] * s_qd, mask=m_m[:, None] & m_d[None, :], other=0)
    b_do = tl.load(do_base + o_m[:, None] * s_dl + o_d[None, :] * s_dd, mask=m_m[:, None] & m_d[None, :], other=0)
    if CAST_F32:
        b_q = b_q.to(tl.float32)
        b_do = b_do.to(tl.float32)
    b_lse = tl.load(lse_ptr + i_bh.to(tl.int64) * L + o_m, mask=m_m, other=float("inf"))
    b_delta = tl.load(delta_ptr + i_bh.to(tl.int64) * L + o_m, mask=m_m, other=0.0)
    b_dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for n0 in range(0, S, BLOCK_N):
        o_n = n0 + tl.arange(0, BLOCK_N)
        m_n = o_n < S
        valid = m_n
        if HAS_KPM:
            valid = valid & (tl.load(kpm_ptr + i_b * S + o_n, mask=m_n, other=0) != 0)
        b_kt = tl.load(k_base + o_n[None, :] * s_ks + o_d[:, None] * s_kd, mask=m_n[None, :] & m_d[:, None],
                       other=0)  # [BD, BN]
        b_vt = tl.load(v_base + o_n[None, :] * s_vs + o_d[:, None] * s_vd, mask=m_n[None, :] & m_d[:, None],
                       other=0)  # [BD, BN]
        if CAST_F32:
            b_kt = b_kt.to(tl.float32)
            b_vt = b_vt.to(tl.float32)
        b_s = _dot(b_q, b_kt, IEEE) * qk_scale
        b_p = tl.where(valid[None, :], tl.exp2(b_s - b_lse[:, None]), 0.0)
        b_dp = _dot(b_do, b_vt, IEEE)
        b_ds = b_p * (b_dp - b_delta[:, None])
        b_dq += _dot(b_ds.to(b_kt.dtype), tl.trans(b_kt), IEEE)
    b_dq = b_dq * sm_scale
    tl.store(dq_ptr + i_bh.to(tl.int64) * L * D + o_m[:, None] * D + o_d[None, :], b_dq.to(dq_ptr.dtype.element_ty),
             mask=m_m[:, None] & m_d[None, :])


# ----------------------------------------------------------------------------------------------
# launch configuration: one config when interpreting, a few autotuned ones on a GPU
# ----------------------------------------------------------------------------------------------
def _fwd_configs():
    if INTERPRET:
        return [triton.Config({"BLOCK_M": 32, "BLOCK_N": 32}, num_warps=4)]
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=st)
            for bm, bn, w, st in ((128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3), (64, 64, 4, 3),
                                  (128, 32, 4, 4))]


def _bwd_configs():
    if INTERPRET:
        return [triton.Config({"BLOCK_M": 32, "BLOCK_N": 32}, num_warps=4)]
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=st)
            for bm, bn, w, st in ((64, 64, 4, 2), (32, 128, 8, 2), (64, 128, 8, 2), (32, 64, 4, 3))]


def fwd_shared_bytes(element_size: int, block_d: int, block_m: int, block_n: int, num_stages: int) -> int:
    """Shared memory of one forward program: `num_stages` K and V tiles in the pipeline plus the resident Q
    tile. Matches what Triton 3.9 allocates for every forward config here on sm_90 (checked by
    tests/test_kernels_compile_sm90.py; benchmarks/results/kernels_sm90_compile.md)."""
    return element_size * block_d * (2 * block_n * num_stages + block_m)


def _fwd_fits(configs, named_args, **kwargs):
    """Drop forward configs whose shared memory cannot fit the GPU (the autotuner would only skip them after
    compiling each); keeps the smallest config when none fits."""
    q = named_args["q_ptr"]
    limit = common.max_shared_per_block(q)

    def need(c):
        return fwd_shared_bytes(q.element_size(), kwargs["BLOCK_D"], c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"],
                                c.num_stages)

    fit = [c for c in configs if need(c) <= limit]
    return fit or [min(configs, key=need)]


_KEY = ["L", "S", "BLOCK_D", "HAS_KPM", "IEEE"]
_fwd = triton.autotune(_fwd_configs(), key=_KEY,
                       prune_configs_by={"early_config_prune": _fwd_fits})(_attn_fwd_kernel)
_bwd_dkdv = triton.autotune(_bwd_configs(), key=_KEY)(_attn_bwd_dkdv_kernel)
_bwd_dq = triton.autotune(_bwd_configs(), key=_KEY)(_attn_bwd_dq_kernel)


def _strides(t):
    return tuple(t.stride())


def attention_forward(q, k, v, key_padding_mask, scale):
    """(out [B, Hq, L, D] in q's dtype, lse float32 [B, Hq, L] in base 2, +inf for rows without a key)."""
    B, Hq, L, D = q.shape
    Hkv, S = k.shape[1], k.shape[2]
    out = torch.empty(B, Hq, L, D, dtype=q.dtype, device=q.device)
    lse = torch.empty(B, Hq, L, dtype=torch.float32, device=q.device)
    kpm = key_padding_mask
    grid = lambda meta: (triton.cdiv(L, meta["BLOCK_M"]), B * Hq)  # noqa: E731
    _fwd[grid](q, k, v, kpm if kpm is not None else q, out, lse, scale * LOG2E,
               *_strides(q), *_strides(k), *_strides(v), *_strides(out), Hq, Hq // Hkv, L, S, D,
               HAS_KPM=kpm is not None, CAST_F32=INTERPRET and q.dtype == torch.bfloat16,
               IEEE=common.fp32_ieee(q), BLOCK_D=max(16, triton.next_power_of_2(D)))
    return out, lse


def attention_backward(do, q, k, v, out, lse, key_padding_mask, scale):
    B, Hq, L, D = q.shape
    Hkv, S = k.shape[1], k.shape[2]
    delta = (out.float() * do.float()).sum(-1).contiguous()  # [B, Hq, L]
    dq = torch.empty(B, Hq, L, D, dtype=q.dtype, device=q.device)
    dk = torch.empty(B, Hkv, S, D, dtype=k.dtype, device=q.device)
    dv = torch.empty(B, Hkv, S, D, dtype=v.dtype, device=q.device)
    kpm = key_padding_mask if key_padding_mask is not None else q
    flags = dict(HAS_KPM=key_padding_mask is not None, CAST_F32=INTERPRET and q.dtype == torch.bfloat16,
                 IEEE=common.fp32_ieee(q), BLOCK_D=max(16, triton.next_power_of_2(D)))
    strides = (*_strides(q), *_strides(k), *_strides(v), *_strides(do))
    grid_kv = lambda meta: (triton.cdiv(S, meta["BLOCK_N"]), B * Hkv)  # noqa: E731
    _bwd_dkdv[grid_kv](q, k, v, kpm, do, lse, delta, dk, dv, scale * LOG2E, scale, *strides,
                       Hq, Hkv, Hq // Hkv, L, S, D, **flags)
    grid_q = lambda meta: (triton.cdiv(L, meta["BLOCK_M"]), B * Hq)  # noqa: E731
    _bwd_dq[grid_q](q, k, v, kpm, do, lse, delta, dq, scale * LOG2E, scale, *strides, Hq, Hq // Hkv, L, S, D,
                    **flags)
    return dq, dk, dv


class _FlashAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, kpm, scale):
        out, lse = attention_forward(q, k, v, kpm, scale)
        ctx.save_for_backward(q, k, v, out, lse, kpm if kpm is not None else torch.empty(0, device=q.device))
        ctx.has_kpm, ctx.scale = kpm is not None, scale
        return out

    @staticmethod
    def backward(ctx, do):
        q, k, v, out, lse, kpm = ctx.saved_tensors
        dq, dk, dv = attention_backward(do, q, k, v, out, lse, kpm if ctx.has_kpm else None, ctx.scale)
        return dq, dk, dv, None, None


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding_mask: torch.Tensor | None = None,
              scale: float | None = None) -> torch.Tensor:
    """softmax(q k^T * scale + padding) v, non-causal, SDPA layout; differentiable in q, k and v."""
    if q.dtype not in (torch.float32, torch.float16, torch.bfloat16) or k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"attention: q, k, v must share one dtype of float32/float16/bfloat16, got "
                        f"{q.dtype}, {k.dtype}, {v.dtype}")
    D = q.shape[-1]
    if D > common.ATTENTION_MAX_HEAD_DIM:
        raise ValueError(f"attention: head dim {D} > {common.ATTENTION_MAX_HEAD_DIM} is not supported by the Triton "
                         "kernel; use backend='torch' (backend='auto' does)")
    scale = float(scale) if scale is not None else 1.0 / math.sqrt(D)
    if q.shape[2] == 0 or q.shape[0] == 0 or q.shape[1] == 0:
        return torch.zeros_like(q)
    kpm = None
    if key_padding_mask is not None:
        kpm = key_padding_mask.to(device=q.device, dtype=torch.int8).contiguous()
    return _FlashAttention.apply(q, k, v, kpm, scale)
