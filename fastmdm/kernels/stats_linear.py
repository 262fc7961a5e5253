"""Token statistics straight from hidden states [N, d] and the LM head W [V, d] (+ bias): each program multiplies
a tile of rows by tiles of W and folds every logits tile into the statistics at once, so no [N, V] buffer is
ever written."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastmdm.kernels import common
from fastmdm.kernels.stats import (
    INTERPRET,
    NPF,
    NPI,
    check_args,
    draw_seed,
    fold_tile,
    merge,
    round_bf16,
    store_partial,
)


# ----------------------------------------------------------------------------------------------
# stage 1b: partial statistics from hidden [N, d] and the LM head W [V, d] (+ bias): logits live in registers
# ----------------------------------------------------------------------------------------------
@triton.jit
def _linear_partial_kernel(h_ptr, stride_hn, stride_hd, w_ptr, stride_wv, stride_wd, b_ptr, pf_ptr, pi_ptr,
                           N, V, D, V_PER_SPLIT, SPLIT, temperature, seed, mask_id, N_BUCKET,
                           HAS_BIAS: tl.constexpr, HAS_MASK_ID: tl.constexpr, SAMPLE: tl.constexpr,
                           ROUND_TO_INPUT: tl.constexpr, FP32_IEEE: tl.constexpr, CAST_F32: tl.constexpr,
                           BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_D: tl.constexpr):
    NEG_INF: tl.constexpr = float("-inf")
    i_nb = tl.program_id(0)
    i_s = tl.program_id(1)
    v_lo = i_s * V_PER_SPLIT
    v_hi = tl.minimum(V, v_lo + V_PER_SPLIT)
    o_n = i_nb * BLOCK_N + tl.arange(0, BLOCK_N)  # [BN]
    m_n = o_n < N
    zero = tl.zeros([BLOCK_N], dtype=tl.float32)
    m, s, t, m1 = zero + NEG_INF, zero, zero, zero + NEG_INF
    m2, gm, gz, nnan = zero + NEG_INF, zero + NEG_INF, zero, zero
    i1 = tl.zeros([BLOCK_N], dtype=tl.int32) + v_lo
    gi = i1
    o_d = tl.arange(0, BLOCK_D)
    for v0 in range(v_lo, v_hi, BLOCK_V):
        o_v = v0 + tl.arange(0, BLOCK_V)  # [BV]
        m_v = o_v < v_hi
        acc = tl.zeros([BLOCK_N, BLOCK_V], dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            m_d = (d0 + o_d) < D
            p_h = h_ptr + o_n[:, None].to(tl.int64) * stride_hn + (d0 + o_d)[None, :] * stride_hd
            p_w = w_ptr + o_v[None, :].to(tl.int64) * stride_wv + (d0 + o_d)[:, None] * stride_wd
            b_h = tl.load(p_h, mask=m_n[:, None] & m_d[None, :], other=0)  # [BN, BD]
            b_w = tl.load(p_w, mask=m_v[None, :] & m_d[:, None], other=0)  # [BD, BV]
            if CAST_F32:
                b_h = b_h.to(tl.float32)
                b_w = b_w.to(tl.float32)
            if FP32_IEEE:
                acc = tl.dot(b_h, b_w, acc, input_precision="ieee")
            else:
                acc = tl.dot(b_h, b_w, acc)
        if HAS_BIAS:
            acc += tl.load(b_ptr + o_v, mask=m_v, other=0).to(tl.float32)[None, :]
        if ROUND_TO_INPUT:
            # the torch path writes logits in the input dtype and then reads them as float32: round the same way
            if CAST_F32:
                acc = round_bf16(acc)  # the interpreter's fp32 -> bf16 cast truncates; round to nearest even
            else:
                acc = acc.to(h_ptr.dtype.element_ty).to(tl.float32)
        b_z = tl.where(m_v[None, :], acc, NEG_INF)
        if HAS_MASK_ID:
            b_z = tl.where(o_v[None, :] == mask_id, NEG_INF, b_z)
        if SAMPLE:
            b_z = b_z / temperature
        m, s, t, m1, i1, m2, gm, gi, gz, nnan = fold_tile(b_z, o_v, o_n, seed, m, s, t, m1, i1, m2, gm, gi, gz,
                                                           nnan, SAMPLE)
    store_partial(pf_ptr, pi_ptr, o_n, m_n, i_s, SPLIT, m, s, t, m1, i1, m2, gm, gi, gz, nnan)


def _linear_configs():
    if INTERPRET:
        return [triton.Config({"BLOCK_N": 16, "BLOCK_V": 64, "BLOCK_D": 64}, num_warps=4)]
    return [triton.Config({"BLOCK_N": bn, "BLOCK_V": bv, "BLOCK_D": bd}, num_warps=w, num_stages=st)
            for bn, bv, bd, w, st in ((64, 128, 64, 4, 3), (128, 128, 64, 8, 3), (128, 256, 64, 8, 3),
                                      (64, 256, 64, 8, 4), (16, 256, 128, 4, 3), (32, 128, 128, 4, 3))]


def _n_bucket(N):
    """Autotuning key for the number of rows, which changes every sampling step: powers of two up to 4096."""
    return min(triton.next_power_of_2(N), 4096)


_linear_partial_tuned = triton.autotune(_linear_configs(), key=["N_BUCKET", "V", "D", "SPLIT", "HAS_BIAS", "SAMPLE",
                                                                   "FP32_IEEE"])(_linear_partial_kernel)




def linear_token_stats(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                       score: str = "confidence", temperature: float = 0.0, mask_id: int | None = None,
                       generator: torch.Generator | None = None, _split: int | None = None):
    """token_stats(hidden @ weight.T + bias) without writing the logits: hidden [N, d], weight [V, d]."""
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden [N, d] and weight [V, d] must share d; got {tuple(hidden.shape)} and "
                         f"{tuple(weight.shape)}")
    if hidden.dtype != weight.dtype or hidden.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"hidden ({hidden.dtype}) and weight ({weight.dtype}) must share one dtype of "
                        "float32/float16/bfloat16")
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != weight.shape[0]):
        raise ValueError(f"bias: must be [V] = [{weight.shape[0]}], got {tuple(bias.shape)}")
    N, D = hidden.shape
    V = weight.shape[0]
    check_args(score, temperature, mask_id, V)
    dev = hidden.device
    if N == 0:
        return torch.empty(0, dtype=torch.int64, device=dev), torch.empty(0, dtype=torch.float32, device=dev)
    sample = temperature > 0
    seed = draw_seed(temperature, generator)
    fp32 = hidden.dtype == torch.float32
    ieee = common.fp32_ieee(hidden)
    if INTERPRET or _split is not None:
        block_n, block_v = 16, min(max(16, triton.next_power_of_2(V)), 256)
        split = 1 if _split is None else max(1, min(int(_split), V))
    else:
        block_n, block_v = None, None
        # column ranges of ~2048: programs next to each other in launch order share a range of W, so a tile of
        # W is read from HBM about once and then from L2 by every row block
        split = max(1, min(triton.cdiv(V, 2048), 256))
    v_per = -(-V // split)
    v_per = -(-v_per // 256) * 256 if not INTERPRET else v_per
    split = -(-V // v_per)
    pf = torch.empty(N, split, NPF.value, dtype=torch.float32, device=dev)
    pi = torch.empty(N, split, NPI.value, dtype=torch.int32, device=dev)
    args = (hidden, hidden.stride(0), hidden.stride(1), weight, weight.stride(0), weight.stride(1),
            bias if bias is not None else hidden, pf, pi, N, V, D, v_per, split,
            float(temperature) if sample else 1.0, seed, int(mask_id) if mask_id is not None else 0,
            _n_bucket(N))
    flags = dict(HAS_BIAS=bias is not None, HAS_MASK_ID=mask_id is not None, SAMPLE=sample, ROUND_TO_INPUT=not fp32,
                 FP32_IEEE=ieee, CAST_F32=INTERPRET and hidden.dtype == torch.bfloat16)
    if block_n is not None:
        _linear_partial_kernel[(triton.cdiv(N, block_n), split)](
            *args, **flags, BLOCK_N=block_n, BLOCK_V=block_v, BLOCK_D=min(max(16, triton.next_power_of_2(D)), 128),
            num_warps=4)
    else:
        grid = lambda meta: (triton.cdiv(N, meta["BLOCK_N"]), split)  # noqa: E731
        _linear_partial_tuned[grid](*args, **flags)
    return merge(pf, pi, N, split, score, sample, dev)

