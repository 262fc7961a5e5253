"""Shared machinery of the fused token statistics (`stats_logits`, `stats_linear`): the per-row partial record,
the fold of a tile of logits into it, and the merge of a row's column ranges into the token and its score.

One streaming pass per row keeps, in registers,

    m, s, t    running max, sum of exp(z - m) and sum of exp(z - m) * (z - m)   -> log-sum-exp and entropy
    m1, i1, m2 largest value, its lowest column, second largest value            -> argmax and margin
    gm, gi, gz largest Gumbel-perturbed value, its column and its unperturbed z  -> a Gumbel-max draw
    nnan       how many NaNs were seen                                           -> a NaN row gets a NaN score

and the merge folds the partial statistics of several column ranges of a row (split-V, so that few rows still
fill the GPU) into the token and the score. Random numbers: Philox keyed by one int64 seed drawn from the
caller's torch.Generator, counter (column, row), so a draw does not depend on the block size, the split or the
launch order.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

INTERPRET = bool(triton.knobs.runtime.interpret)
SCORE_IDS = {"none": 0, "confidence": 1, "margin": 2, "entropy": 3}
# The partial record: each field's offset is named once here; store_partial writes, merge_kernel reads and the
# wrappers allocate NPF floats and NPI ints per record, both counted from the offsets, so the three cannot drift.
F_M, F_S, F_T, F_M1, F_M2, F_GM, F_GZ, F_NNAN = (tl.constexpr(i) for i in range(8))
I_I1, I_GI = (tl.constexpr(i) for i in range(2))
NPF = tl.constexpr(F_NNAN.value + 1)
NPI = tl.constexpr(I_GI.value + 1)


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
def fold_tile(b_z, o_v, i_rows, seed, m, s, t, m1, i1, m2, gm, gi, gz, nnan, SAMPLE: tl.constexpr):
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
def store_partial(pf_ptr, pi_ptr, o_n, m_n, i_s, SPLIT, m, s, t, m1, i1, m2, gm, gi, gz, nnan):
    p_f = pf_ptr + (o_n * SPLIT + i_s) * NPF
    tl.store(p_f + F_M, m, mask=m_n)
    tl.store(p_f + F_S, s, mask=m_n)
    tl.store(p_f + F_T, t, mask=m_n)
    tl.store(p_f + F_M1, m1, mask=m_n)
    tl.store(p_f + F_M2, m2, mask=m_n)
    tl.store(p_f + F_GM, gm, mask=m_n)
    tl.store(p_f + F_GZ, gz, mask=m_n)
    tl.store(p_f + F_NNAN, nnan, mask=m_n)
    p_i = pi_ptr + (o_n * SPLIT + i_s) * NPI
    tl.store(p_i + I_I1, i1, mask=m_n)
    tl.store(p_i + I_GI, gi, mask=m_n)


# ----------------------------------------------------------------------------------------------
# stage 2: merge the partial statistics of a row's column ranges, emit token and score
# ----------------------------------------------------------------------------------------------
@triton.jit
def merge_kernel(pf_ptr, pi_ptr, tok_ptr, score_ptr, N, SPLIT, SCORE: tl.constexpr, SAMPLE: tl.constexpr,
                  BLOCK_N: tl.constexpr, BLOCK_S: tl.constexpr):
    NEG_INF: tl.constexpr = float("-inf")
    BIG: tl.constexpr = 2147483647
    o_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)  # [BN]
    o_s = tl.arange(0, BLOCK_S)  # [BS]
    m_ns = (o_n < N)[:, None] & (o_s < SPLIT)[None, :]
    o_rec = o_n[:, None].to(tl.int64) * SPLIT + o_s[None, :]  # [BN, BS] partial record ids
    p_f = pf_ptr + o_rec * NPF
    p_i = pi_ptr + o_rec * NPI
    m = tl.load(p_f + F_M, mask=m_ns, other=NEG_INF)
    s = tl.load(p_f + F_S, mask=m_ns, other=0.0)
    t = tl.load(p_f + F_T, mask=m_ns, other=0.0)
    m1 = tl.load(p_f + F_M1, mask=m_ns, other=NEG_INF)
    m2 = tl.load(p_f + F_M2, mask=m_ns, other=NEG_INF)
    gm = tl.load(p_f + F_GM, mask=m_ns, other=NEG_INF)
    gz = tl.load(p_f + F_GZ, mask=m_ns, other=0.0)
    nnan = tl.sum(tl.load(p_f + F_NNAN, mask=m_ns, other=0.0), 1)
    i1 = tl.load(p_i + I_I1, mask=m_ns, other=BIG)
    gi = tl.load(p_i + I_GI, mask=m_ns, other=BIG)
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
def num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 1


def draw_seed(temperature: float, generator: torch.Generator | None) -> int:
    """One int64 Philox key per call, drawn from the caller's generator (or torch's default one)."""
    if temperature <= 0:
        return 0
    dev = generator.device if generator is not None else torch.device("cpu")
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=dev).item())


def check_args(score: str, temperature: float, mask_id, V: int) -> None:
    if score not in SCORE_IDS:
        raise ValueError(f"score={score!r} is not one of {tuple(SCORE_IDS)}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature >= 0:
        raise ValueError(f"temperature: must be a number >= 0, got {temperature!r}")
    if mask_id is not None and not 0 <= int(mask_id) < V:
        raise ValueError(f"mask_id: {mask_id} is outside the vocabulary of {V} columns; pass an id in [0, {V})")


def merge(pf, pi, N, split, score, sample, device):
    tokens = torch.empty(N, dtype=torch.int64, device=device)
    scores = torch.empty(N, dtype=torch.float32, device=device)
    block_s = max(2, triton.next_power_of_2(split))
    block_n = max(1, min(triton.next_power_of_2(N), (4096 if INTERPRET else 256) // block_s))
    merge_kernel[(triton.cdiv(N, block_n),)](pf, pi, tokens, scores, N, split, SCORE=SCORE_IDS[score],
                                              SAMPLE=sample, BLOCK_N=block_n, BLOCK_S=block_s, num_warps=4)
    return tokens, scores


def choose_split(rows_programs: int, V: int, device: torch.device, split: int | None) -> int:
    if split is not None:
        return max(1, min(int(split), V))
    if INTERPRET or device.type != "cuda":
        return 1
    # enough programs for ~4 per SM, but keep every column range >= 4096 wide
    want = max(1, (4 * num_sms(device) + rows_programs - 1) // rows_programs)
    return max(1, min(want, V // 4096, 64))

