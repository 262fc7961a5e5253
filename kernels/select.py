"""Fused masked-token selection: the chosen token and its score in one pass over the vocabulary.

A sampler step of a masked diffusion model needs, for each fillable position, the token to commit and a
score that ranks the positions (confidence, margin, entropy). Other codebases build the full softmax
([N, V] in fp32 or fp64), sort the vocabulary for the margin and take a second pass for the entropy. Here
one streaming pass per row keeps, in registers,

    m, s, t    running max, sum of exp(z - m) and sum of exp(z - m) * (z - m)   -> log-sum-exp and entropy
    m1, i1, m2 largest value, its lowest column, second largest value            -> argmax and margin
    gm, gi, gz largest Gumbel-perturbed value, its column and its unperturbed z  -> a Gumbel-max draw
    nnan       how many NaNs were seen                                           -> a NaN row gets a NaN score

and a merge stage folds the partial statistics of several column ranges of a row (split-V, so that few
rows still fill the GPU) into the token and the score. `linear_token_stats` computes the same statistics
straight from hidden states and the LM head: each program multiplies a tile of rows by tiles of W and
folds every logits tile into the statistics at once, so no [N, V] buffer is ever written.

`select_positions` ranks each row's eligible positions without a sort: a bisection over the order-
preserving integer image of float32 finds each row's n-th largest score, then ties at that score are
taken from the left with a prefix count (the torch reference's stable-sort rule, exactly).

Random numbers: Philox keyed by one int64 seed drawn from the caller's torch.Generator, counter (column,
row), so a draw does not depend on the block size, the split or the launch order.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastmdm.kernels import common

INTERPRET = bool(triton.knobs.runtime.interpret)
SCORE_IDS = {"none": 0, "confidence": 1, "margin": 2, "entropy": 3}
_NPF = 8  # float fields of a partial record: m, s, t, m1, m2, gm, gz, nnan
_NPI = 2  # int fields: i1, gi


@triton.jit
def round_bf16(x):
    """float32 -> nearest bfloat16 (ties to even), returned as float32; bit arithmetic, exact anywhere."""
    bits = x.to(tl.int32, bitcast=True)
    bits = bits + 0x7FFF + ((bits >> 16) & 1)
    return (bits & -65536).to(tl.float32, bitcast=True)


# ----------------------------------------------------------------------------------------------
# statistics of one tile of logits, folded into the running state of its rows
# ----------------------------------------------------------------------------------------------
@triton.jit
def _fold_tile(b_z, o_v, i_rows, seed, m, s, t, m1, i1, m2, gm, gi, gz, nnan, SAMPLE: tl.constexpr):
    """b_z [R, BV] float32 logits / T (-inf outside the row's range and at the mask column); o_v [BV] int32
    columns; i_rows [R] int32 row ids (the RNG counter); state vectors [R]. Returns the new state."""
    NEG_INF: tl.constexpr = float("-inf")
    BIG: tl.constexpr = 2147483647
    o_c = o_v[None, :] + 0 * i_rows[:, None]  # [R, BV]
    nnan += tl.sum((b_z != b_z).to(tl.float32), 1)
    # log-sum-exp and sum p log p, online (the max shifts both sums)
    b_max = tl.max(b_z, 1)  # [R]
    m_new = tl.maximum(m, b_max)
    m_ref = tl.where(m_new == NEG_INF, 0.0, m_new)  # a row seen only -inf so far: shift by 0, sums stay 0
    alpha = tl.exp(m - m_ref)
    shift = tl.where(m == NEG_INF, 0.0, m - m_ref)
    b_d = b_z - m_ref[:, None]
    b_e = tl.exp(b_d)
    b_ed = b_e * tl.where(b_z == NEG_INF, 0.0, b_d)  # 0 * -inf would be NaN: -inf logits add nothing
    t = alpha * (t + shift * s) + tl.sum(b_ed, 1)
    s = alpha * s + tl.sum(b_e, 1)
    m = m_new
    # top-1 (lowest column among ties, torch.argmax's rule) and top-2 values
    b_i1 = tl.min(tl.where(b_z == b_max[:, None], o_c, BIG), 1)
    b_m2 = tl.max(tl.where(o_c == b_i1[:, None], NEG_INF, b_z), 1)
    up = b_max > m1  # strictly: an equal value in a later tile keeps the earlier (lower) column
    m2 = tl.where(up, tl.maximum(m1, b_m2), tl.maximum(m2, b_max))
    i1 = tl.where(up, b_i1, i1)
    m1 = tl.where(up, b_max, m1)
    if SAMPLE:
        # Gumbel-max: argmax(z + g), g = -log(-log u), u ~ U[0, 1) from Philox(seed; column, row)
        c_row = (i_rows[:, None] + 0 * o_v[None, :]).to(tl.uint32)
        r0, _, _, _ = tl.philox(seed, o_c.to(tl.uint32), c_row, 0 * c_row, 0 * c_row)
        u = tl.uint_to_uniform_float(r0)
        b_g = tl.where(b_z == NEG_INF, NEG_INF, b_z - tl.log(-tl.log(u)))
        b_gm = tl.max(b_g, 1)
        b_gi = tl.min(tl.where(b_g == b_gm[:, None], o_c, BIG), 1)
        b_gz = tl.sum(tl.where(o_c == b_gi[:, None], b_z, 0.0), 1)
        gup = b_gm > gm
        gi = tl.where(gup, b_gi, gi)
        gz = tl.where(gup, b_gz, gz)
        gm = tl.where(gup, b_gm, gm)
    return m, s, t, m1, i1, m2, gm, gi, gz, nnan


@triton.jit
def _store_partial(pf_ptr, pi_ptr, o_n, m_n, i_s, SPLIT, m, s, t, m1, i1, m2, gm, gi, gz, nnan):
    p_f = pf_ptr + (o_n * SPLIT + i_s) * 8
    tl.store(p_f + 0, m, mask=m_n)
    tl.store(p_f + 1, s, mask=m_n)
    tl.store(p_f + 2, t, mask=m_n)
    tl.store(p_f + 3, m1, mask=m_n)
    tl.store(p_f + 4, m2, mask=m_n)
    tl.store(p_f + 5, gm, mask=m_n)
    tl.store(p_f + 6, gz, mask=m_n)
    tl.store(p_f + 7, nnan, mask=m_n)
    p_i = pi_ptr + (o_n * SPLIT + i_s) * 2
    tl.store(p_i + 0, i1, mask=m_n)
    tl.store(p_i + 1, gi, mask=m_n)


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
        m, s, t, m1, i1, m2, gm, gi, gz, nnan = _fold_tile(b_z, o_v, o_n, seed, m, s, t, m1, i1, m2, gm, gi, gz,
                                                           nnan, SAMPLE)
    _store_partial(pf_ptr, pi_ptr, o_n, m_n, i_s, SPLIT, m, s, t, m1, i1, m2, gm, gi, gz, nnan)


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
        m, s, t, m1, i1, m2, gm, gi, gz, nnan = _fold_tile(b_z, o_v, o_n, seed, m, s, t, m1, i1, m2, gm, gi, gz,
                                                           nnan, SAMPLE)
    _store_partial(pf_ptr, pi_ptr, o_n, m_n, i_s, SPLIT, m, s, t, m1, i1, m2, gm, gi, gz, nnan)


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


# ----------------------------------------------------------------------------------------------
# stage 2: merge the partial statistics of a row's column ranges, emit token and score
# ----------------------------------------------------------------------------------------------
@triton.jit
def _merge_kernel(pf_ptr, pi_ptr, tok_ptr, score_ptr, N, SPLIT, SCORE: tl.constexpr, SAMPLE: tl.constexpr,
                  BLOCK_N: tl.constexpr, BLOCK_S: tl.constexpr):
    NEG_INF: tl.constexpr = float("-inf")
    BIG: tl.constexpr = 2147483647
    o_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)  # [BN]
    o_s = tl.arange(0, BLOCK_S)  # [BS]
    m_ns = (o_n < N)[:, None] & (o_s < SPLIT)[None, :]
    o_rec = o_n[:, None].to(tl.int64) * SPLIT + o_s[None, :]  # [BN, BS] partial record ids
    p_f = pf_ptr + o_rec * 8
    p_i = pi_ptr + o_rec * 2
    m = tl.load(p_f + 0, mask=m_ns, other=NEG_INF)
    s = tl.load(p_f + 1, mask=m_ns, other=0.0)
    t = tl.load(p_f + 2, mask=m_ns, other=0.0)
    m1 = tl.load(p_f + 3, mask=m_ns, other=NEG_INF)
    m2 = tl.load(p_f + 4, mask=m_ns, other=NEG_INF)
    gm = tl.load(p_f + 5, mask=m_ns, other=NEG_INF)
    gz = tl.load(p_f + 6, mask=m_ns, other=0.0)
    nnan = tl.sum(tl.load(p_f + 7, mask=m_ns, other=0.0), 1)
    i1 = tl.load(p_i + 0, mask=m_ns, other=BIG)
    gi = tl.load(p_i + 1, mask=m_ns, other=BIG)
    # log-sum-exp pieces: S = sum exp(z - M), T = sum exp(z - M) (z - M)
    M = tl.max(m, 1)  # [BN]
    M_ref = tl.where(M == NEG_INF, 0.0, M)
    alpha = tl.exp(m - M_ref[:, None])
    shift = tl.where(m == NEG_INF, 0.0, m - M_ref[:, None])
    S = tl.sum(alpha * s, 1)
    T = tl.sum(alpha * (t + shift * s), 1)
    # top-1 over splits: ranges are in column order, so the lowest column among equal maxima wins
    top = tl.max(m1, 1)
    tok1 = tl.min(tl.where(m1 == top[:, None], i1, BIG), 1)
    second = tl.maximum(tl.max(m2, 1), tl.max(tl.where(i1 == tok1[:, None], NEG_INF, m1), 1))
    if SAMPLE:
        gtop = tl.max(gm, 1)
        tok = tl.min(tl.where(gm == gtop[:, None], gi, BIG), 1)
        z_tok = tl.sum(tl.where(gi == tok[:, None], gz, 0.0), 1)
    else:
        tok = tok1
        z_tok = top
    if SCORE == 1:
        score = tl.exp(z_tok - M_ref) / S
    elif SCORE == 2:
        score = (tl.exp(top - M_ref) - tl.exp(second - M_ref)) / S
    elif SCORE == 3:
        score = T / S - tl.log(S)
    else:
        score = 0.0 * S
    score = tl.where(nnan > 0, float("nan"), score)
    m_n = o_n < N
    tl.store(tok_ptr + o_n, tok.to(tl.int64), mask=m_n)
    tl.store(score_ptr + o_n, score, mask=m_n)


# ----------------------------------------------------------------------------------------------
# wrappers
# ----------------------------------------------------------------------------------------------
def _num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 1


def _draw_seed(temperature: float, generator: torch.Generator | None) -> int:
    """One int64 Philox key per call, drawn from the caller's generator (or torch's default one)."""
    if temperature <= 0:
        return 0
    dev = generator.device if generator is not None else torch.device("cpu")
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=dev).item())


def _check_common(score: str, temperature: float, mask_id, V: int) -> None:
    if score not in SCORE_IDS:
        raise ValueError(f"score={score!r} is not one of {tuple(SCORE_IDS)}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature >= 0:
        raise ValueError(f"temperature: must be a number >= 0, got {temperature!r}")
    if mask_id is not None and not 0 <= int(mask_id) < V:
        raise ValueError(f"mask_id: {mask_id} is outside the vocabulary of {V} columns; pass an id in [0, {V})")


def _merge(pf, pi, N, split, score, sample, device):
    tokens = torch.empty(N, dtype=torch.int64, device=device)
    scores = torch.empty(N, dtype=torch.float32, device=device)
    block_s = max(2, triton.next_power_of_2(split))
    block_n = max(1, min(triton.next_power_of_2(N), (4096 if INTERPRET else 256) // block_s))
    _merge_kernel[(triton.cdiv(N, block_n),)](pf, pi, tokens, scores, N, split, SCORE=SCORE_IDS[score],
                                              SAMPLE=sample, BLOCK_N=block_n, BLOCK_S=block_s, num_warps=4)
    return tokens, scores


def _choose_split(rows_programs: int, V: int, device: torch.device, split: int | None) -> int:
    if split is not None:
        return max(1, min(int(split), V))
    if INTERPRET or device.type != "cuda":
        return 1
    # enough programs for ~4 per SM, but keep every column range >= 4096 wide
    want = max(1, (4 * _num_sms(device) + rows_programs - 1) // rows_programs)
    return max(1, min(want, V // 4096, 64))


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
    _check_common(score, temperature, mask_id, V)
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
    seed = _draw_seed(temperature, generator)
    split = _choose_split(N, V, dev, _split)
    v_per = -(-V // split)
    split = -(-V // v_per)
    pf = torch.empty(N, split, _NPF, dtype=torch.float32, device=dev)
    pi = torch.empty(N, split, _NPI, dtype=torch.int32, device=dev)
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
    return _merge(pf, pi, N, split, score, sample, dev)


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
    _check_common(score, temperature, mask_id, V)
    dev = hidden.device
    if N == 0:
        return torch.empty(0, dtype=torch.int64, device=dev), torch.empty(0, dtype=torch.float32, device=dev)
    sample = temperature > 0
    seed = _draw_seed(temperature, generator)
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
    pf = torch.empty(N, split, _NPF, dtype=torch.float32, device=dev)
    pi = torch.empty(N, split, _NPI, dtype=torch.int32, device=dev)
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
    return _merge(pf, pi, N, split, score, sample, dev)


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
