"""Weighted cross-entropy fused with the LM head: the masked-diffusion training loss without [N, V] logits.

loss = sum_i w_i * CE(h_i @ W^T + b, t_i), where the rows i are the masked positions and w_i = 1 / p_mask
divided by the normalizer (see `fastmdm.loss`). Eager PyTorch holds the [N, V] logits, their float32 copy,
the softmax and its gradient at once; with V = 126,464 that dwarfs the model's activations.

Here the rows are processed in chunks sized so that one chunk of logits is about as large as the hidden
states (Liger-Kernel's rule). For each chunk: one matmul gives the logits (in the input dtype, as the
reference computes them), a Triton kernel computes each row's log-sum-exp and CE and overwrites the
logits in place with d loss / d logits = w_i (softmax - onehot) -- the per-row weight enters before any
reduction -- and two more matmuls fold that into dL/dh (rows of the chunk) and dL/dW, dL/db (dL/dW
accumulated in place in W's dtype, one rounding per chunk, as Liger-Kernel does; dL/db in float32). The
backward only scales the stored gradients by the incoming scalar gradient, so training never holds more than
one chunk of logits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from fastmdm.kernels.stats import round_bf16

INTERPRET = bool(triton.knobs.runtime.interpret)


@triton.jit
def _ce_rows_kernel(z_ptr, stride_z, t_ptr, w_ptr, ce_ptr, V, GRAD: tl.constexpr, CAST_BF16: tl.constexpr,
                    BLOCK_V: tl.constexpr):
    """Row i of a logits chunk: ce_i = lse - z[t_i]; with GRAD, z <- w_i (softmax(z) - onehot(t_i)) in place."""
    NEG_INF: tl.constexpr = float("-inf")
    i_n = tl.program_id(0)
    p_row = z_ptr + i_n.to(tl.int64) * stride_z
    b_t = tl.load(t_ptr + i_n)
    m = tl.zeros([BLOCK_V], dtype=tl.float32) + NEG_INF  # per-lane running max and sum, merged at the end
    s = tl.zeros([BLOCK_V], dtype=tl.float32)
    for v0 in range(0, V, BLOCK_V):
        o_v = v0 + tl.arange(0, BLOCK_V)
        m_v = o_v < V
        b_z = tl.where(m_v, tl.load(p_row + o_v, mask=m_v, other=0).to(tl.float32), NEG_INF)
        m_new = tl.maximum(m, b_z)
        m_ref = tl.where(m_new == NEG_INF, 0.0, m_new)
        s = s * tl.exp(m - m_ref) + tl.exp(b_z - m_ref)
        m = m_new
    M = tl.max(m, 0)
    lse = M + tl.log(tl.sum(s * tl.exp(m - M), 0))
    z_t = tl.load(p_row + b_t).to(tl.float32)
    tl.store(ce_ptr + i_n, lse - z_t)
    if GRAD:
        b_w = tl.load(w_ptr + i_n).to(tl.float32)
        for v0 in range(0, V, BLOCK_V):
            o_v = v0 + tl.arange(0, BLOCK_V)
            m_v = o_v < V
            b_z = tl.load(p_row + o_v, mask=m_v, other=0).to(tl.float32)
            b_g = b_w * (tl.exp(b_z - lse) - (o_v == b_t).to(tl.float32))
            if CAST_BF16:
                b_g = round_bf16(b_g)  # the interpreter's cast to bf16 truncates: round to nearest first
            tl.store(p_row + o_v, b_g.to(z_ptr.dtype.element_ty), mask=m_v)


def _chunk_rows(N: int, V: int, D: int) -> int:
    """Rows per chunk: a chunk of logits about as large as all hidden states (at least 1, a power of two)."""
    grow = max(1, -(-V // max(D, 1)))
    return triton.next_power_of_2(max(1, -(-N // grow)))


class _LinearWeightedCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, row_weights, bias, chunk_rows):
        N, D = hidden.shape
        V = weight.shape[0]
        need_h, need_w, _, need_rw, need_b, _ = ctx.needs_input_grad
        need_b = need_b and bias is not None
        grad = need_h or need_w or need_b
        C = chunk_rows or _chunk_rows(N, V, D)
        t = targets.contiguous()
        w = row_weights.float().contiguous()
        ce = torch.empty(N, dtype=torch.float32, device=hidden.device)
        g_h = torch.empty(N, D, dtype=hidden.dtype, device=hidden.device) if need_h else None
        # dL/dW accumulates in W's dtype with in-place addmm (one rounding per chunk, no [V, d] temporary)
        g_w = torch.zeros(V, D, dtype=weight.dtype, device=hidden.device) if need_w else None
        g_b = torch.zeros(V, dtype=torch.float32, device=hidden.device) if need_b else None
        block_v = min(triton.next_power_of_2(V), 4096 if INTERPRET else 2048)
        for i in range(0, N, C):
            h_c = hidden[i:i + C]
            z = F.linear(h_c, weight, bias).contiguous()  # [C, V], the only logits that ever exist
            _ce_rows_kernel[(h_c.shape[0],)](z, z.stride(0), t[i:i + C], w[i:i + C], ce[i:i + C], V, GRAD=grad,
                                            CAST_BF16=INTERPRET and z.dtype == torch.bfloat16, BLOCK_V=block_v,
                                            num_warps=8)
            if need_h:
                torch.mm(z, weight, out=g_h[i:i + C])
            if need_w:
                g_w.addmm_(z.t(), h_c)
            if need_b:
                g_b += z.float().sum(0)
        ctx.save_for_backward(g_h, g_w, g_b, ce if need_rw else None)
        ctx.dtypes = (weight.dtype, row_weights.dtype, bias.dtype if bias is not None else None)
        return (ce * w).sum()

    @staticmethod
    def backward(ctx, go):
        g_h, g_w, g_b, ce = ctx.saved_tensors
        w_dtype, rw_dtype, b_dtype = ctx.dtypes
        if bool(go == 1):  # the usual case (loss.backward()): hand over the stored gradients without a copy
            return g_h, g_w, None, ce.to(rw_dtype) if ce is not None else None, \
                g_b.to(b_dtype) if g_b is not None else None, None
        d_h = g_h * go.to(g_h.dtype) if g_h is not None else None
        d_w = g_w * go.to(g_w.dtype) if g_w is not None else None
        d_rw = (ce * go).to(rw_dtype) if ce is not None else None
        d_b = (g_b * go).to(b_dtype) if g_b is not None else None
        return d_h, d_w, None, d_rw, d_b, None


def linear_weighted_ce(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, row_weights: torch.Tensor,
                       bias: torch.Tensor | None = None, *, chunk_rows: int | None = None) -> torch.Tensor:
    """sum_i row_weights[i] * CE(hidden[i] @ weight.T + bias, targets[i]) as a float32 scalar; differentiable
    in hidden, weight, row_weights and bias. `chunk_rows` overrides the rows per chunk."""
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"linear_weighted_ce: hidden [N, d] and weight [V, d] must share d; got "
                         f"{tuple(hidden.shape)} and {tuple(weight.shape)}")
    if hidden.dtype != weight.dtype or hidden.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"linear_weighted_ce: hidden and weight must share a float32/float16/bfloat16 dtype, got "
                        f"{hidden.dtype} and {weight.dtype}")
    N = hidden.shape[0]
    if tuple(targets.shape) != (N,) or tuple(row_weights.shape) != (N,):
        raise ValueError(f"linear_weighted_ce: targets and row_weights must be [N] = [{N}], got "
                         f"{tuple(targets.shape)} and {tuple(row_weights.shape)}")
    if N == 0:
        return (hidden.sum() * 0 + weight.sum() * 0).float()
    if not hidden.is_cuda and bool(((targets < 0) | (targets >= weight.shape[0])).any()):
        raise ValueError(f"linear_weighted_ce: targets must lie in [0, {weight.shape[0]})")
    return _LinearWeightedCE.apply(hidden, weight, targets.long(), row_weights, bias, chunk_rows)
