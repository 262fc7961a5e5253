"""One function per hot operation, each with a readable torch reference that defines its semantics.

`backend="auto"` runs the Triton kernel (``fastmdm.kernels``) on CUDA tensors and the torch reference
elsewhere; `"triton"` on CPU works only under ``TRITON_INTERPRET=1`` (set before importing fastmdm);
`"torch"` always runs the reference. Every backend gives the same tokens at temperature 0.
"""
from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F

from fastmdm.kernels.common import ATTENTION_MAX_HEAD_DIM

BACKENDS = ("auto", "torch", "triton")
SCORES = ("confidence", "margin", "entropy", "none")


# ----------------------------------------------------------------------------------------------
# dispatch
# ----------------------------------------------------------------------------------------------
def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {BACKENDS}; pass 'auto', 'torch' or 'triton'")


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def triton_available() -> bool:
    try:
        import triton  # noqa: F401, PLC0415
    except Exception:  # noqa: BLE001 - importing triton can fail in more ways than ImportError
        return False
    return True


def resolve_backend(backend: str, *tensors: torch.Tensor) -> str:
    """'torch' or 'triton' for these tensors; raises a clear error when 'triton' cannot run."""
    check_backend(backend)
    on_cuda = all(t.is_cuda for t in tensors if t is not None)
    if backend == "auto":
        return "triton" if (on_cuda and triton_available()) else "torch"
    if backend == "triton":
        if not triton_available():
            raise ValueError("backend='triton' needs the triton package: pip install triton (or use backend='torch')")
        if not on_cuda and not interpreting():
            raise ValueError(
                "backend='triton' on CPU tensors needs TRITON_INTERPRET=1 set before fastmdm is imported; "
                "use backend='torch' or move the tensors to CUDA")
    return backend


# ----------------------------------------------------------------------------------------------
# noise
# ----------------------------------------------------------------------------------------------
def gumbel(shape, *, generator: torch.Generator | None = None, device=None,
           dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Standard Gumbel(0, 1) noise, -log(-log u) with u ~ U[0, 1) drawn from `generator`; always finite.

    Token draws use float64 (the default): argmax(z + Gumbel) is then a draw from softmax(z) even far into
    the tail, as in LLaDA's and Dream's samplers. Ranking noise on float32 scores (`score_noise`) uses
    float32, which is as fine as the scores it perturbs and half the random stream.
    """
    u = torch.rand(shape, generator=generator, device=device, dtype=dtype)
    return -torch.log(-torch.log(u.clamp_min(torch.finfo(dtype).tiny)))


# ----------------------------------------------------------------------------------------------
# token selection: chosen token and its score per row of logits
# ----------------------------------------------------------------------------------------------
def token_stats_reference(logits: torch.Tensor, *, score: str = "confidence", temperature: float = 0.0,
                          mask_id: int | None = None, generator: torch.Generator | None = None):
    """Torch reference. `logits` [N, V] any float dtype -> (tokens int64 [N], scores float32 [N]).

    Tokens: argmax at temperature 0, else a draw from softmax(logits / T) (Gumbel-max with `generator`).
    The column `mask_id` is never chosen. Scores come from the distribution the token is drawn from,
    p = softmax(logits / T) (softmax(logits) at T = 0):
      confidence = p[token]; margin = p[top1] - p[top2]; entropy = -H(p) = sum p log p; none = zeros.
    Ties break towards the lowest token id (torch.argmax's rule). A row holding NaN gets a NaN score.
    """
    z = logits.float()
    if mask_id is not None:
        z = z.clone()
        z[:, mask_id] = -math.inf
    if temperature > 0:
        z = z / temperature
    logp = torch.log_softmax(z, dim=-1)  # [N, V]
    if temperature > 0:
        tokens = torch.argmax(z.double() + gumbel(z.shape, generator=generator, device=z.device), dim=-1)
    else:
        tokens = torch.argmax(z, dim=-1)
    if score == "none":
        scores = torch.zeros(z.shape[0], dtype=torch.float32, device=z.device)
    elif score == "confidence":
        scores = logp.gather(-1, tokens[:, None]).squeeze(-1).exp()
    elif score == "margin":
        top2 = torch.topk(logp, 2, dim=-1).values.exp() if z.shape[-1] > 1 else \
            torch.cat([logp.exp(), torch.zeros_like(logp)], dim=-1)
        scores = top2[:, 0] - top2[:, 1]
    elif score == "entropy":
        p = logp.exp()
        scores = torch.where(p > 0, p * logp, torch.zeros_like(p)).sum(-1)
    else:
        raise ValueError(f"score={score!r} is not one of {SCORES}")
    # a row holding NaN gets a NaN score whatever the score, so callers can report it
    scores = torch.where(torch.isnan(z).any(-1), torch.full_like(scores, math.nan), scores.float())
    return tokens, scores


def token_stats_eager(logits: torch.Tensor, *, score: str = "confidence", temperature: float = 0.0,
                      mask_id: int | None = None, generator: torch.Generator | None = None,
                      overwrite: bool = False):
    """The torch backend: `token_stats_reference`'s results with fewer passes over [N, V] and fewer buffers.

    With `overwrite=True` the caller lets it write into `logits` (a float32 buffer it owns), saving a copy.
    Probabilities are never materialized: p[token] = exp(z[token] - lse), entropy from (z - lse) in place.
    NaN needs no extra pass: max and log-sum-exp carry it into the score.
    """
    if score not in SCORES:
        raise ValueError(f"score={score!r} is not one of {SCORES}")
    z = logits if (overwrite and logits.dtype == torch.float32) else logits.float()
    if z is logits and not overwrite:
        z = z.clone()
    if mask_id is not None:
        z[:, mask_id] = -math.inf
    if temperature > 0:
        z.div_(temperature)
        tokens = torch.argmax(z.double() + gumbel(z.shape, generator=generator, device=z.device), dim=-1)
    else:
        tokens = torch.argmax(z, dim=-1)
    if score == "none":
        nan_rows = torch.isnan(z.amax(-1))
        return tokens, torch.where(nan_rows, math.nan, torch.zeros(z.shape[0], device=z.device))
    lse = torch.logsumexp(z, dim=-1)  # [N]; NaN in a row makes it NaN
    if score == "confidence":
        scores = (z.gather(-1, tokens[:, None]).squeeze(-1) - lse).exp()
    elif score == "margin":
        if z.shape[-1] > 1:
            top2 = torch.topk(z, 2, dim=-1).values
            scores = (top2[:, 0] - lse).exp() - (top2[:, 1] - lse).exp()
        else:
            scores = (z[:, 0] - lse).exp()
    else:  # entropy: sum p log p with log p = z - lse
        z.sub_(lse[:, None]).clamp_(min=-1e30)  # -inf (p = 0) -> a finite log so 0 * log stays 0
        scores = (z.exp() * z).sum(-1)
    return tokens, torch.where(torch.isnan(lse), math.nan, scores.float())


def token_stats(logits: torch.Tensor, *, score: str = "confidence", temperature: float = 0.0,
                mask_id: int | None = None, generator: torch.Generator | None = None, backend: str = "auto",
                overwrite: bool = False, rows: torch.Tensor | None = None):
    """(tokens, scores) for each row of `logits` [N, V] (of `logits[rows]` when `rows` is given: the Triton
    kernel then reads those rows in place); see `token_stats_reference`. `overwrite=True` lets the torch
    backend reuse a float32 `logits` buffer the caller owns."""
    if resolve_backend(backend, logits) == "triton":
        from fastmdm.kernels import select as _k  # noqa: PLC0415
        return _k.token_stats(logits, score=score, temperature=temperature, mask_id=mask_id, generator=generator,
                              rows=rows)
    if rows is not None:
        logits, overwrite = logits[rows], True  # the gathered copy is ours
    return token_stats_eager(logits, score=score, temperature=temperature, mask_id=mask_id, generator=generator,
                             overwrite=overwrite)


def linear_token_stats_reference(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                                 **kwargs):
    """Torch reference of the fused LM head + selection: token_stats(hidden @ weight.T + bias)."""
    logits = F.linear(hidden, weight, bias)
    return token_stats_reference(logits, **kwargs)


def linear_token_stats_tiled(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                             score: str = "confidence", mask_id: int | None = None, max_bytes: int = 16 << 20):
    """Temperature-0 token stats from hidden states, the vocabulary in tiles: W is read once and only an
    [N, tile] block of logits exists at a time (the torch twin of the fused kernel).

    Per row it keeps the running max m (and its first index), the second max m2, s = sum exp(z - m) and
    u = sum exp(z - m) (z - m), rescaled when m grows. Then p(top1) = 1 / s, margin = (1 - exp(m2 - m)) / s,
    and sum p log p = u / s - log s (log p = z - m - log s), with no cancellation between large numbers.
    """
    if score not in SCORES:
        raise ValueError(f"score={score!r} is not one of {SCORES}")
    N, V = hidden.shape[0], weight.shape[0]
    dev = hidden.device
    tile = max(256, max_bytes // (4 * max(N, 1)))
    m = torch.full((N,), -math.inf, device=dev)
    m2 = torch.full((N,), -math.inf, device=dev)
    s = torch.zeros(N, device=dev)
    u = torch.zeros(N, device=dev)
    idx = torch.zeros(N, dtype=torch.long, device=dev)
    nan = torch.zeros(N, dtype=torch.bool, device=dev)
    # two [N, tile] float32 buffers reused by every tile: the memory stays put whatever the allocator does
    zbuf = torch.empty(N * min(tile, V), device=dev)
    ebuf = torch.empty_like(zbuf)
    for v0 in range(0, V, tile):
        T = min(tile, V - v0)
        z, e = zbuf[: N * T].view(N, T), ebuf[: N * T].view(N, T)
        w_t, b_t = weight[v0:v0 + T], None if bias is None else bias[v0:v0 + T]
        if hidden.dtype == weight.dtype == torch.float32:
            if b_t is None:
                torch.mm(hidden, w_t.t(), out=z)
            else:
                torch.addmm(b_t, hidden, w_t.t(), out=z)  # what F.linear computes
        else:
            z.copy_(F.linear(hidden, w_t, b_t))  # rounded to the logits' dtype first, as the model's logits are
        if mask_id is not None and v0 <= mask_id < v0 + T:
            z[:, mask_id - v0] = -math.inf
        i1 = z.argmax(-1)  # the first maximal index, as torch.argmax over the whole row (NaN counts as maximal)
        t1 = z.gather(-1, i1[:, None]).squeeze(-1)
        nan |= torch.isnan(t1)
        if score == "margin" and T > 1:
            t2 = torch.topk(z, 2, dim=-1).values[:, 1]
        else:
            t2 = torch.full_like(t1, -math.inf)
        new_m = torch.maximum(m, t1)
        finite = torch.isfinite(new_m)
        shift = torch.where(finite, new_m, torch.zeros_like(new_m))
        scale = torch.where(finite & torch.isfinite(m), torch.exp(m - shift), torch.zeros_like(m))  # old sums
        delta = torch.where(finite & torch.isfinite(m), m - shift, torch.zeros_like(m))
        z.sub_(shift[:, None])  # z - m
        torch.exp(z, out=e)
        s_tile = e.sum(-1)
        if score == "entropy":
            z.clamp_(min=-1e30)  # -inf (p = 0) -> finite, so 0 * log p stays 0
            u = scale * (u + delta * s) + e.mul_(z).sum(-1)
        s = scale * s + s_tile
        m2 = torch.maximum(torch.minimum(m, t1), torch.maximum(m2, t2))
        idx = torch.where(t1 > m, i1 + v0, idx)
        m = new_m
    if score == "none":
        scores = torch.zeros(N, device=dev)
    elif score == "confidence":
        scores = 1.0 / s
    elif score == "margin":
        scores = (1.0 - torch.exp(m2 - m)) / s
    else:
        scores = u / s - torch.log(s)
    return idx, torch.where(nan, math.nan, scores)


def linear_token_stats(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                       score: str = "confidence", temperature: float = 0.0, mask_id: int | None = None,
                       generator: torch.Generator | None = None, backend: str = "auto", max_bytes: int = 16 << 20):
    """(tokens, scores) from hidden states [N, d] and an LM head `weight` [V, d] (+ `bias` [V]), never holding
    more than about `max_bytes` of logits: the Triton backend writes none; the torch backend tiles the
    vocabulary at temperature 0 (`linear_token_stats_tiled`) and chunks rows otherwise."""
    if resolve_backend(backend, hidden, weight) == "triton":
        from fastmdm.kernels import select as _k  # noqa: PLC0415
        return _k.linear_token_stats(hidden, weight, bias, score=score, temperature=temperature,
                                     mask_id=mask_id, generator=generator)
    if temperature == 0:
        return linear_token_stats_tiled(hidden, weight, bias, score=score, mask_id=mask_id, max_bytes=max_bytes)
    rows = max(1, max_bytes // (4 * weight.shape[0]))
    parts = [token_stats_eager(F.linear(hidden[i:i + rows], weight, bias), score=score, temperature=temperature,
                               mask_id=mask_id, generator=generator, overwrite=True)
             for i in range(0, hidden.shape[0], rows)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


# ----------------------------------------------------------------------------------------------
# position selection: which eligible positions each row fills this step
# ----------------------------------------------------------------------------------------------
def select_topn_reference(scores: torch.Tensor, eligible: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Bool [B, L]: in each row b, the `counts[b]` eligible positions with the highest scores.

    One stable sort per batch, no loop over rows: rank each position within its row, keep rank < count.
    Ties break towards the lower position. `counts` is clipped to the number of eligible positions.
    """
    s = scores.float().masked_fill(~eligible, -math.inf)
    order = torch.sort(s, dim=-1, descending=True, stable=True).indices  # [B, L]
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(s.shape[-1], device=s.device).expand_as(order))
    return (ranks < counts[:, None]) & eligible


def select_threshold_reference(scores: torch.Tensor, eligible: torch.Tensor, threshold: float) -> torch.Tensor:
    """Bool [B, L]: every eligible position scoring >= threshold, and at least each row's best one."""
    s = scores.float().masked_fill(~eligible, -math.inf)
    best = torch.zeros_like(eligible)
    has_any = eligible.any(-1)
    best[torch.arange(s.shape[0], device=s.device), s.argmax(-1)] = True
    return ((s >= threshold) & eligible) | (best & has_any[:, None])


def select_positions(scores: torch.Tensor, eligible: torch.Tensor, *, counts: torch.Tensor | None = None,
                     threshold: float | None = None, backend: str = "auto") -> torch.Tensor:
    """Top-n per row (per-row `counts` [B]) or the threshold rule; see the references above."""
    if (counts is None) == (threshold is None):
        raise ValueError("select_positions needs exactly one of counts= or threshold=")
    if resolve_backend(backend, scores) == "triton":
        from fastmdm.kernels import select as _k  # noqa: PLC0415
        return _k.select_positions(scores, eligible, counts=counts, threshold=threshold)
    if counts is not None:
        return select_topn_reference(scores, eligible, counts)
    return select_threshold_reference(scores, eligible, threshold)


# ----------------------------------------------------------------------------------------------
# attention (non-causal; causal in torch only)
# ----------------------------------------------------------------------------------------------
def attention_reference(q, k, v, key_padding_mask=None, scale=None, causal=False):
    """SDPA semantics: q [B, Hq, L, D], k/v [B, Hkv, S, D], key_padding_mask [B, S] (True = attend).

    Grouped-query heads: Hq must be a multiple of Hkv. A query whose keys are all padded returns zeros.
    `causal`: query i attends to keys j <= i + (S - L) (the queries are the last L of the S positions, so a
    window of new queries over cached keys sees every earlier key).
    """
    B, Hq, L, D = q.shape
    S, Hkv = k.shape[2], k.shape[1]
    if Hq != Hkv:
        k = k.repeat_interleave(Hq // Hkv, dim=1)
        v = v.repeat_interleave(Hq // Hkv, dim=1)
    if causal and key_padding_mask is None and L == S:  # SDPA's own causal path (faster than a mask)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    mask = None
    if key_padding_mask is not None:
        mask = key_padding_mask[:, None, None, :].to(torch.bool)
    if causal:
        allowed = torch.ones(L, S, dtype=torch.bool, device=q.device).tril(S - L)
        mask = allowed if mask is None else mask & allowed
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    if mask is not None:
        # rows with no key to attend would be NaN in SDPA's math backend: define them as 0
        out = torch.nan_to_num(out, nan=0.0)
    return out


def _check_attention(q, k, v, key_padding_mask):
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError("attention expects q [B, Hq, L, D] and k, v [B, Hkv, S, D] (4-D tensors)")
    if k.shape != v.shape:
        raise ValueError(f"attention: k {tuple(k.shape)} and v {tuple(v.shape)} must have the same shape")
    if q.shape[0] != k.shape[0] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"attention: q {tuple(q.shape)} and k {tuple(k.shape)} differ in batch or head dim")
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"attention: query heads ({q.shape[1]}) must be a multiple of key heads ({k.shape[1]})")
    if key_padding_mask is not None and tuple(key_padding_mask.shape) != (k.shape[0], k.shape[2]):
        raise ValueError(f"attention: key_padding_mask must be [B, S] = {(k.shape[0], k.shape[2])}, "
                         f"got {tuple(key_padding_mask.shape)}")


def attention(q, k, v, key_padding_mask=None, scale=None, backend: str = "auto", causal: bool = False):
    """Attention with SDPA's layout and result; differentiable. Non-causal (bidirectional) unless `causal`
    (see `attention_reference`); the Triton kernel is non-causal, so causal attention runs in torch."""
    _check_attention(q, k, v, key_padding_mask)
    if not isinstance(causal, bool):
        raise TypeError(f"attention: causal must be True or False, got {causal!r}")
    if causal and q.shape[2] > k.shape[2]:
        raise ValueError(f"attention: causal attention needs at least as many keys ({k.shape[2]}) as queries "
                         f"({q.shape[2]})")
    if causal:
        if backend == "triton":
            raise ValueError("attention: the Triton kernel is non-causal (bidirectional) only; use backend='torch' "
                             "or 'auto' for causal attention")
        return attention_reference(q, k, v, key_padding_mask=key_padding_mask, scale=scale, causal=True)
    if backend == "auto" and q.shape[-1] > ATTENTION_MAX_HEAD_DIM:
        backend = "torch"  # the kernel takes head dims up to 128
    if resolve_backend(backend, q, k, v) == "triton":
        from fastmdm.kernels import attention as _k  # noqa: PLC0415
        return _k.attention(q, k, v, key_padding_mask=key_padding_mask, scale=scale)
    return attention_reference(q, k, v, key_padding_mask=key_padding_mask, scale=scale)


# ----------------------------------------------------------------------------------------------
# weighted cross-entropy through the LM head (the masked-diffusion loss's core)
# ----------------------------------------------------------------------------------------------
def linear_weighted_ce_reference(hidden, weight, targets, row_weights, bias=None):
    """sum_i row_weights[i] * CE(hidden[i] @ weight.T + bias, targets[i]), float32; hidden [N, d]."""
    logits = F.linear(hidden, weight, bias).float()
    ce = F.cross_entropy(logits, targets, reduction="none")
    return (ce * row_weights.float()).sum()


def linear_weighted_ce(hidden, weight, targets, row_weights, bias=None, backend: str = "auto"):
    """Differentiable; the Triton backend chunks rows and never holds full [N, V] logits."""
    if resolve_backend(backend, hidden, weight) == "triton":
        from fastmdm.kernels import loss as _k  # noqa: PLC0415
        return _k.linear_weighted_ce(hidden, weight, targets, row_weights, bias=bias)
    return linear_weighted_ce_reference(hidden, weight, targets, row_weights, bias=bias)
