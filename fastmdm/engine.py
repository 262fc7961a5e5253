"""The decoding engine: the loop `decode`, the `Plan` and `Scorer` interfaces it drives, and `Chunk`.

`fastmdm.sample`, `fastmdm.generate` and the drop-ins (`fastmdm.compat.*`) are thin layers over `decode`: each
lays out its batch (which positions to fill, in which groups), picks a plan (how many positions each row fills per
step) and a scorer (which token each position gets and how much the strategy wants it), and calls `decode`. A new
schedule is a new `Plan`; a new token rule or ranking is a new `Scorer`; neither needs to touch the loop.

One step of the loop:
1. each row's eligible positions are its still-unfilled fillable positions in its lowest unfinished group;
2. ``plan.prepare(n_eligible, new_group)`` says which rows fill something this step;
3. the model is called once, on those rows only when ``skip_finished_rows`` (a finished row costs no compute);
4. the eligible positions are scored in chunks (`Chunk`): through the LM head alone when the model exposes
   ``forward_hidden`` + ``get_output_embeddings`` (so [B, L, V] logits never exist), else from the logits;
5. ``plan.choose(scores, eligible, backend)`` picks the positions to commit; their tokens are written.

The contract in full, with the guarantees on ties, padding and errors: docs/decoding.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from fastmdm import ops
from fastmdm.cache import KVCache, supports_kv_cache

#: bytes of float32 logits one scoring chunk may hold; bounds decoding memory at large batch and vocabulary
LOGITS_CHUNK_BYTES = 16 << 20
#: on the hidden-state path every chunk reads the whole LM head once, so chunks hold at least this many
#: positions (at LLaDA's vocabulary of 126,464 that is 128 MiB of transient logits, a third of what one
#: [4, 192, V] logits tensor of LLaDA's own loop holds)
MIN_HIDDEN_CHUNK_ROWS = 256


def row_blocks(n_rows: int, vocab: int, max_bytes: int | None = None) -> list[slice]:
    """Slices covering rows 0..n_rows-1, each of at most max(1, max_bytes // (4 * vocab)) rows (max_bytes defaults
    to LOGITS_CHUNK_BYTES). A scorer whose temporaries are [rows, V] float32 tensors (a softmax, a clone, a top-p
    sort) computes them one block at a time and holds about max_bytes of them besides the chunk's own logits,
    however many positions the chunk has; per-row operations give the same values as on the whole chunk."""
    step = max(1, (max_bytes or LOGITS_CHUNK_BYTES) // (4 * max(int(vocab), 1)))
    return [slice(i, min(i + step, n_rows)) for i in range(0, n_rows, step)]


@dataclass
class Trace:
    """What decoding returns with ``return_trace=True``.

    tokens: the decoded batch [B, L]; order[b, i]: the step (model call, from 0) at which position i was
    filled, -1 where it was not a position to fill; nfe: the number of model calls.
    """
    tokens: torch.Tensor
    order: torch.Tensor
    nfe: int


class Chunk:
    """Some eligible positions to score, given either as hidden states + the LM head or as rows of the model's
    flattened logits [B * L, V].

    A scorer reads ``hidden``/``weight``/``bias`` (hidden-state path) or ``source``/``rows`` (logits path), or
    simply calls ``logits()``; ``materialized`` says whether ``logits()`` already holds a buffer of its own. That
    buffer is the scorer's to overwrite during the call; on the hidden-state path the loop reuses its storage
    for the next chunk, so a scorer copies what it keeps beyond the call.
    """

    def __init__(self, *, source=None, rows=None, hidden=None, weight=None, bias=None, buffer=None):
        self.source, self.rows, self.hidden, self.weight, self.bias = source, rows, hidden, weight, bias
        self._buffer = buffer  # flat storage `logits()` may write the LM head's output into (hidden-state path)
        self._logits = None

    @property
    def from_hidden(self) -> bool:
        return self.hidden is not None

    @property
    def vocab_size(self) -> int:
        return int(self.weight.shape[0] if self.hidden is not None else self.source.shape[-1])

    @property
    def materialized(self) -> bool:
        """Whether `logits()` has been computed (it is then a buffer the chunk owns)."""
        return self._logits is not None

    def __len__(self) -> int:
        return int(self.hidden.shape[0] if self.hidden is not None else self.rows.shape[0])

    def logits(self) -> torch.Tensor:
        """The positions' logits [N, V] (gathered or computed on first use, then kept)."""
        if self._logits is None:
            if self.hidden is not None:
                self._logits = lm_head(self.hidden, self.weight, self.bias, self._buffer)
            else:
                self._logits = self.source[self.rows]
        return self._logits


def lm_head(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
            buffer: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear(hidden, weight, bias) [N, V], written into the first N * V elements of `buffer` when it is given
    and holds them in the product's dtype (the same matrix product: addmm with a bias, mm without, as F.linear
    runs on 2-D inputs); a new tensor otherwise, and under autocast."""
    N, V = hidden.shape[0], weight.shape[0]
    if buffer is None or buffer.numel() < N * V or not (hidden.dtype == weight.dtype == buffer.dtype) or \
            (bias is not None and bias.dtype != weight.dtype) or torch.is_autocast_enabled(hidden.device.type):
        return torch.nn.functional.linear(hidden, weight, bias)
    z = buffer[:N * V].view(N, V)
    if bias is None:
        return torch.mm(hidden, weight.t(), out=z)
    return torch.addmm(bias, hidden, weight.t(), out=z)


@runtime_checkable
class Scorer(Protocol):
    """Chunk -> (tokens int64 [N], scores float32 [N]): the token each position would get and how strongly the
    strategy wants to fill it (higher first). A NaN score stops decoding with an error naming the position.

    Optional attribute ``bounds_memory = True``: the scorer bounds its own memory on hidden-state chunks (the
    loop then hands it all positions at once instead of chunks of at most LOGITS_CHUNK_BYTES of logits).
    """

    def __call__(self, chunk: Chunk) -> tuple[torch.Tensor, torch.Tensor]: ...


@runtime_checkable
class Plan(Protocol):
    """How many positions each row fills per step.

    ``prepare(n_eligible [B], new_group [B] bool) -> active [B] bool`` is called once per step before the
    model call (``new_group``: the row moved to a new group since the last step); rows not active are not
    scored this step, and a step with no active row costs no model call. ``choose(scores [B, L] float32,
    -inf where not eligible, eligible [B, L], backend) -> chosen [B, L] bool`` picks the positions to fill;
    only eligible positions of active rows are committed.
    """

    def prepare(self, n_eligible: torch.Tensor, new_group: torch.Tensor) -> torch.Tensor: ...

    def choose(self, scores: torch.Tensor, eligible: torch.Tensor, backend: str) -> torch.Tensor: ...


# ----------------------------------------------------------------------------------------------
# calling the model
# ----------------------------------------------------------------------------------------------
def has_hidden_path(model) -> bool:
    """Whether the model exposes ``forward_hidden`` and ``get_output_embeddings`` (the LM-head-only path)."""
    return callable(getattr(model, "forward_hidden", None)) and callable(getattr(model, "get_output_embeddings", None))


def logits_of(out) -> torch.Tensor:
    """The logits in a model's output: a tensor, an object with ``.logits``, or a tuple starting with them."""
    logits = out if isinstance(out, torch.Tensor) else getattr(out, "logits", None)
    if logits is None and isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        logits = out[0]
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"model: must return logits [B, L, V] or an object with .logits, got {type(out).__name__}")
    return logits


def call_model(model, x, attention_mask=None, use_hidden=False, **kwargs) -> torch.Tensor:
    """Hidden states [B, L, d] (``use_hidden``) or logits [B, L, V]; attention_mask and other keywords are
    passed only when given, so a model whose forward takes none still works."""
    fn = model.forward_hidden if use_hidden else model
    if attention_mask is not None:
        kwargs["attention_mask"] = attention_mask
    out = fn(x, **kwargs) if kwargs else fn(x)
    return out if use_hidden else logits_of(out)


def _live_rows(x, attention_mask, live, rows):
    """Only the rows that fill something (a row is independent of the others in a bidirectional model, so
    finished rows need no forward). Returns (x, attention_mask, batch index of each row, each eligible
    position's row index into the reduced input)."""
    keep = live.nonzero(as_tuple=True)[0]
    if keep.numel() == x.shape[0]:
        return x, attention_mask, keep, rows
    return x[keep], None if attention_mask is None else attention_mask[keep], keep, (live.cumsum(0) - 1)[rows]


def _window(groups, fillable, current, live, mode, L):
    """The cache window [start, end) of this call: from the first position of the live rows' current groups to
    the last one (dual) or to the end (prefix)."""
    pos = torch.arange(L, device=groups.device)
    in_group = fillable & (groups == current[:, None]) & live[:, None]
    start = int(torch.where(in_group, pos, L).min())
    end = L if mode == "prefix" else int(torch.where(in_group, pos + 1, 0).max())
    return start, end


def _bad_score_error(chunk_logits: torch.Tensor, step: int, row: int, col: int, mask_id: int) -> ValueError:
    where = f"at step {step}, batch row {row}, position {col}"
    z = chunk_logits.float()
    if bool(torch.isnan(z).any()):
        return ValueError(f"model: NaN logits {where}; decoding stopped (check the model's inputs, dtype and "
                          "attention mask)")
    finite = torch.isfinite(z)
    if 0 <= mask_id < z.shape[0]:
        finite[mask_id] = False
    if not bool(finite.any()) and not bool((z == math.inf).any()):
        return ValueError(f"model: every logit but the mask token's is -inf {where}, so no token can be chosen; "
                          "check the model's output (e.g. a logits processor that bans every token)")
    return ValueError(f"strategy: the scorer returned a NaN score {where} while the model's logits there are "
                      "finite; a callable strategy must return finite scores")


# ----------------------------------------------------------------------------------------------
# the loop
# ----------------------------------------------------------------------------------------------
def decode(model, x, attention_mask, fillable, groups, *, plan: Plan, scorer: Scorer, mask_id: int,
           score_noise: float = 0.0, generator=None, backend: str = "auto", use_hidden: bool | None = None,
           chunk_bytes: int | None = None, skip_finished_rows: bool = False, cache: str | None = None) -> Trace:
    """Fill the positions `fillable` [B, L] of `x` [B, L] step by step; returns a `Trace`.

    groups [B, L]: group id per fillable position (a row finishes its lowest group first); plan, scorer: see
    `Plan` and `Scorer`; score_noise: adds score_noise * Gumbel noise to the scores before `plan.choose`;
    use_hidden: force (or forbid) the hidden-state path, default: when the model has it;
    skip_finished_rows: call the model on the rows that fill something this step only (for a model that maps
    rows independently; not for wrappers that hold per-row state of the full batch);
    cache: "prefix" or "dual" for a block key/value cache (`fastmdm.cache`; the model must implement it).
    """
    x = x.clone()
    B, L = x.shape
    order = torch.full((B, L), -1, dtype=torch.long, device=x.device)
    if use_hidden is None:
        use_hidden = has_hidden_path(model)
    kv = None
    if cache is not None:
        if not (use_hidden and supports_kv_cache(model)):
            raise ValueError(f"cache: {cache!r} needs a model that implements fastmdm's block cache "
                             "(fastmdm.models.LLaDA, Dream or Transformer, or see fastmdm.cache); pass cache=None")
        kv = KVCache(cache, B)
    if use_hidden:
        head = model.get_output_embeddings()
        weight, bias = head.weight, getattr(head, "bias", None)
        V = weight.shape[0]
    whole = bool(getattr(scorer, "bounds_memory", False))
    still = fillable.clone()
    buffer = None  # the LM head's output on the hidden-state path, reused by every chunk of every step
    big = torch.iinfo(torch.long).max
    current = torch.full((B,), -1, dtype=torch.long, device=x.device)
    nfe = 0
    while bool(still.any()):
        group_now = torch.where(still, groups, big).min(-1).values  # [B]
        new_group = group_now != current
        current = group_now
        eligible = still & (groups == group_now[:, None])
        active = plan.prepare(eligible.sum(-1), new_group)
        if not bool(active.any()):
            continue
        eligible &= active[:, None]
        live = eligible.any(-1)
        rows, cols = eligible.nonzero(as_tuple=True)  # [N]
        if skip_finished_rows:
            x_in, mask_in, batch_rows, r_in = _live_rows(x, attention_mask, live, rows)
        else:
            x_in, mask_in, batch_rows, r_in = x, attention_mask, torch.arange(B, device=x.device), rows
        extra, start = {}, 0
        if kv is not None:
            start, end = _window(groups, fillable, current, live, cache, L)
            kv.begin(batch_rows, start, end, refresh=nfe == 0 or bool((new_group & live).any()))
            extra["cache"] = kv
        with torch.no_grad():
            out = call_model(model, x_in, mask_in, use_hidden, **extra)
        if not use_hidden:
            if out.dim() != 3 or tuple(out.shape[:2]) != tuple(x_in.shape):
                raise ValueError(f"model: logits must be [B, L, V] = [{x_in.shape[0]}, {L}, V], "
                                 f"got {tuple(out.shape)}")
            V = out.shape[-1]
        if nfe == 0 and mask_id >= V:
            raise ValueError(f"mask_id: {mask_id} is outside the model's vocabulary of {V} tokens; "
                             "pass the id the model was trained with as its mask")
        per_chunk = max(1, (chunk_bytes or LOGITS_CHUNK_BYTES) // (4 * V))
        if use_hidden:
            per_chunk = rows.shape[0] if whole else max(per_chunk, MIN_HIDDEN_CHUNK_ROWS)
        if use_hidden and not whole and (buffer is None or buffer.numel() < min(per_chunk, rows.shape[0]) * V):
            # one buffer for the LM head's output, kept from step to step (grown when a chunk needs more): a
            # fresh [N, V] tensor at every step, N changing from step to step, leaves the heap fragmented (or
            # costs page faults when large blocks go back to the OS); the buffer is at most per_chunk x V
            buffer = None
            buffer = torch.empty(min(per_chunk, rows.shape[0]) * V, dtype=weight.dtype, device=weight.device)
        tokens = torch.empty(rows.shape[0], dtype=torch.long, device=x.device)
        scores = torch.empty(rows.shape[0], dtype=torch.float32, device=x.device)
        flat, chunk = (None if use_hidden else out.reshape(-1, V)), None
        c_in = cols - start
        with torch.no_grad():
            for i in range(0, rows.shape[0], per_chunk):
                r, c = r_in[i:i + per_chunk], c_in[i:i + per_chunk]
                chunk = Chunk(hidden=out[r, c], weight=weight, bias=bias, buffer=buffer) if use_hidden else \
                    Chunk(source=flat, rows=r * out.shape[1] + c)
                tokens[i:i + per_chunk], scores[i:i + per_chunk] = scorer(chunk)
            bad = torch.isnan(scores)
            if bool(bad.any()):
                j = int(bad.nonzero()[0, 0])
                h = out[r_in[j], c_in[j]]
                z = torch.nn.functional.linear(h, weight, bias) if use_hidden else h
                raise _bad_score_error(z, nfe, int(rows[j]), int(cols[j]), mask_id)
        del out, flat, chunk  # the step's hidden states / logits are not kept through the next model call
        if score_noise > 0:
            scores = scores + score_noise * ops.gumbel(scores.shape, generator=generator, device=scores.device,
                                                       dtype=torch.float32)
        full = torch.full((B, L), -math.inf, dtype=torch.float32, device=x.device)
        full[rows, cols] = scores
        chosen = plan.choose(full, eligible, backend) & eligible
        proposal = x.clone()
        proposal[rows, cols] = tokens
        x = torch.where(chosen, proposal, x)
        order[chosen] = nfe
        still &= ~chosen
        nfe += 1
    return Trace(x, order, nfe)
