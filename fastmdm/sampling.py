"""Batched adaptive decoding: `fastmdm.sample` and `fastmdm.generate`.

The loop, per step: find each row's eligible positions (its still-masked fillable positions in its lowest
unfinished group), ask the plan how many each row fills, call the model once for the rows that fill something
(finished rows are left out), score only the eligible positions (through the LM head alone when the model
exposes hidden states), rank them per row with one sort, and commit the chosen tokens. No Python loop runs
over rows or positions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from fastmdm import ops

STRATEGIES = {
    "random": "random", "vanilla": "random",
    "confidence": "confidence", "top_prob": "confidence",
    "margin": "margin", "top_margin": "margin",
    "entropy": "entropy",
}

#: bytes of float32 logits one scoring chunk may hold; bounds decoding memory at large batch and vocabulary
LOGITS_CHUNK_BYTES = 16 << 20


@dataclass
class Trace:
    """What `sample(..., return_trace=True)` returns.

    tokens: the decoded batch [B, L]; order[b, i]: the step (model call, from 0) at which position i was
    filled, -1 where it was not a mask to fill; nfe: the number of model calls.
    """
    tokens: torch.Tensor
    order: torch.Tensor
    nfe: int


# ----------------------------------------------------------------------------------------------
# input checking
# ----------------------------------------------------------------------------------------------
def _unpack_batch(batch):
    attention_mask = None
    if isinstance(batch, Mapping):
        if "input_ids" not in batch:
            raise ValueError("batch: a mapping must hold 'input_ids' (and optionally 'attention_mask')")
        x, attention_mask = batch["input_ids"], batch.get("attention_mask")
    else:
        x = batch
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"batch: expected a LongTensor [B, L] or a mapping with 'input_ids', got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"batch: input_ids must be 2-D [B, L], got shape {tuple(x.shape)}; "
                         "add a batch dimension with x[None] for one sequence")
    if x.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise TypeError(f"batch: input_ids must be an integer tensor (torch.long), got {x.dtype}")
    if attention_mask is not None:
        if not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != tuple(x.shape):
            shape = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask)
            raise ValueError(f"attention_mask: must be a tensor of the batch's shape {tuple(x.shape)} "
                             f"(1 = real token, 0 = padding), got {shape}")
        if attention_mask.is_floating_point() and not torch.all((attention_mask == 0) | (attention_mask == 1)):
            raise ValueError("attention_mask: must hold only 0 (padding) and 1 (real token)")
    return x.long(), attention_mask


def _resolve_mask_id(model, mask_id):
    if mask_id is None:
        mask_id = getattr(getattr(model, "config", None), "mask_token_id", None)
        if mask_id is None:
            raise ValueError("mask_id: not given and the model has no config.mask_token_id; "
                             "pass mask_id=<the id of the mask token>")
    if isinstance(mask_id, bool) or not isinstance(mask_id, int):
        if isinstance(mask_id, torch.Tensor) and mask_id.numel() == 1:
            mask_id = int(mask_id)
        else:
            raise TypeError(f"mask_id: must be an int token id, got {type(mask_id).__name__}")
    if mask_id < 0:
        raise ValueError(f"mask_id: must be a token id >= 0, got {mask_id}")
    return mask_id


def _check_int(name, value, minimum=1):
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value}")


def _resolve_strategy(strategy):
    if callable(strategy):
        return strategy
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise ValueError(f"strategy: unknown {strategy!r}; use one of {sorted(STRATEGIES)} or a callable "
                         "that maps logits [N, V] at the fillable positions to scores [N]")
    return STRATEGIES[strategy]


def _check_threshold(strategy, threshold, score_noise):
    if threshold is None:
        return
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or math.isnan(threshold):
        raise TypeError(f"threshold: must be a number, got {threshold!r}")
    if callable(strategy) or score_noise > 0:
        return  # the scores' range is the caller's
    ranges = {"confidence": (0.0, 1.0, "(0, 1]"), "margin": (0.0, 1.0, "(0, 1]"), "random": (0.0, 1.0, "(0, 1)"),
              "entropy": (-math.inf, 0.0, "(-inf, 0] (scores are -H(p))")}
    lo, hi, text = ranges[strategy]
    ok = lo < threshold <= hi and not (strategy == "random" and threshold >= 1.0)
    if not ok:
        raise ValueError(f"threshold: {threshold} can never be met by {strategy!r} scores, which lie in {text}; "
                         "pick a threshold in that range")


def _check_sampling_args(temperature, score_noise, backend, generator, return_trace):
    for name, v in (("temperature", temperature), ("score_noise", score_noise)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
            raise TypeError(f"{name}: must be a number >= 0, got {v!r}")
        if v < 0:
            raise ValueError(f"{name}: must be >= 0, got {v}")
    ops._check_backend(backend)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: must be a torch.Generator, got {type(generator).__name__}")
    if not isinstance(return_trace, bool):
        raise TypeError(f"return_trace: must be True or False, got {return_trace!r}")


# ----------------------------------------------------------------------------------------------
# groups (semi-autoregressive blocks) and plans (how many positions each row fills per step)
# ----------------------------------------------------------------------------------------------
def groups_by_rank(fillable: torch.Tensor, block_size: int | None) -> torch.Tensor:
    """Group id per position: each row's fillable positions, left to right, in groups of `block_size`."""
    if block_size is None:
        return torch.zeros_like(fillable, dtype=torch.long)
    rank = torch.cumsum(fillable.long(), dim=-1) - 1
    return torch.where(fillable, rank // block_size, torch.zeros_like(rank))


class KPlan:
    """Fill `k` positions per row per step (fewer when fewer are left in the group)."""

    def __init__(self, k: int):
        self.k = k

    def prepare(self, n_eligible, new_group):
        self.counts = n_eligible.clamp(max=self.k)
        return self.counts > 0

    def choose(self, scores, eligible, backend):
        return ops.select_positions(scores, eligible, counts=self.counts, backend=backend)


class StepsPlan:
    """LLaDA's split: each row's group gets `steps // groups_in_row` steps; a group of n masks fills
    n // S per step, the first n % S steps one more. Steps where no row fills anything cost no model call."""

    def __init__(self, steps: int, groups_per_row: torch.Tensor):
        self.per_group = steps // groups_per_row.clamp(min=1)
        if bool((self.per_group == 0).any()):
            worst = int(groups_per_row.max())
            raise ValueError(f"steps: {steps} is fewer than the {worst} blocks of a row; pass steps >= {worst} "
                             "or a larger block size")
        self.step_in_group = torch.zeros_like(self.per_group)
        self.group_size = torch.zeros_like(self.per_group)

    def prepare(self, n_eligible, new_group):
        self.step_in_group = torch.where(new_group, torch.zeros_like(self.step_in_group), self.step_in_group)
        self.group_size = torch.where(new_group, n_eligible, self.group_size)
        S, s = self.per_group, self.step_in_group
        counts = self.group_size // S + (s < self.group_size % S).long()
        counts = torch.where(s >= S - 1, n_eligible, counts)  # the last step of a group finishes it
        self.counts = torch.minimum(counts, n_eligible)
        self.step_in_group = s + (n_eligible > 0).long()
        return self.counts > 0

    def choose(self, scores, eligible, backend):
        return ops.select_positions(scores, eligible, counts=self.counts, backend=backend)


class ThresholdPlan:
    """Fill every eligible position scoring >= tau, and at least each row's best (Fast-dLLM)."""

    def __init__(self, threshold: float):
        self.threshold = float(threshold)

    def prepare(self, n_eligible, new_group):
        return n_eligible > 0

    def choose(self, scores, eligible, backend):
        return ops.select_positions(scores, eligible, threshold=self.threshold, backend=backend)


def make_plan(k, steps, threshold, groups):
    given = [name for name, v in (("k", k), ("steps", steps), ("threshold", threshold)) if v is not None]
    if len(given) > 1:
        raise ValueError(f"pass only one schedule: got {' and '.join(given)}; use k= (positions per step), "
                         "steps= (LLaDA's split) or threshold= (Fast-dLLM)")
    _check_int("k", k)
    _check_int("steps", steps)
    if steps is not None:
        return StepsPlan(steps, groups)
    if threshold is not None:
        return ThresholdPlan(threshold)
    return KPlan(1 if k is None else k)


# ----------------------------------------------------------------------------------------------
# scoring chunks
# ----------------------------------------------------------------------------------------------
class Chunk:
    """Some rows to score: hidden states + LM head, or rows `rows` of the model's logits `source` [B * L, V]."""

    def __init__(self, *, source=None, rows=None, hidden=None, weight=None, bias=None):
        self.source, self.rows, self.hidden, self.weight, self.bias = source, rows, hidden, weight, bias
        self._logits = None

    def logits(self) -> torch.Tensor:
        """The rows' logits [N, V] (gathered or computed on first use, then kept)."""
        if self._logits is None:
            if self.hidden is not None:
                self._logits = torch.nn.functional.linear(self.hidden, self.weight, self.bias)
            else:
                self._logits = self.source[self.rows]
        return self._logits


class StrategyScorer:
    """The built-in strategies (and callables) as a chunk -> (tokens, scores) function."""

    def __init__(self, strategy, temperature, mask_id, generator, backend):
        self.strategy, self.temperature, self.mask_id = strategy, temperature, mask_id
        self.generator, self.backend = generator, backend

    def __call__(self, chunk: Chunk):
        named = isinstance(self.strategy, str)
        user = None
        if not named:  # before the logits buffer is reused below
            user = self.strategy(chunk.logits())
            if not isinstance(user, torch.Tensor) or tuple(user.shape) != (chunk.logits().shape[0],):
                raise ValueError(f"strategy: the callable must return scores of shape [{chunk.logits().shape[0]}] "
                                 f"(one per row of logits), got {getattr(user, 'shape', type(user).__name__)}")
        score = self.strategy if named and self.strategy != "random" else "none"
        kw = dict(score=score, temperature=self.temperature, mask_id=self.mask_id, generator=self.generator,
                  backend=self.backend)
        if chunk.hidden is not None and named:
            tokens, scores = ops.linear_token_stats(chunk.hidden, chunk.weight, chunk.bias,
                                                    max_bytes=LOGITS_CHUNK_BYTES, **kw)
        elif chunk._logits is None and chunk.hidden is None:  # the kernel reads the rows in place
            tokens, scores = ops.token_stats(chunk.source, rows=chunk.rows, **kw)
        else:
            tokens, scores = ops.token_stats(chunk.logits(), overwrite=True, **kw)  # the chunk owns its logits
        if self.strategy == "random":
            scores = torch.where(torch.isnan(scores), scores,
                                 torch.rand(scores.shape, generator=self.generator, device=scores.device))
        elif user is not None:
            scores = torch.where(torch.isnan(scores), scores, user.float())
        return tokens, scores


# ----------------------------------------------------------------------------------------------
# the loop
# ----------------------------------------------------------------------------------------------
def _call_model(model, x, attention_mask, use_hidden):
    if use_hidden:
        return model.forward_hidden(x, attention_mask=attention_mask)
    out = model(x) if attention_mask is None else model(x, attention_mask=attention_mask)
    logits = out if isinstance(out, torch.Tensor) else getattr(out, "logits", None)
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"model: must return logits [B, L, V] or an object with .logits, got {type(out).__name__}")
    return logits


def gumbel(shape, generator, device) -> torch.Tensor:
    """Standard Gumbel(0, 1) noise, float32, finite."""
    u = torch.rand(shape, generator=generator, device=device).clamp(1e-20, 1 - 1e-7)
    return -torch.log(-torch.log(u))


def has_hidden_path(model) -> bool:
    return callable(getattr(model, "forward_hidden", None)) and callable(getattr(model, "get_output_embeddings", None))


def _live_rows(x, attention_mask, live, rows):
    """The model's input for one step: only the rows that fill something (a row is independent of the others
    in a bidirectional model without a cache, so finished rows need no forward). Returns (x, attention_mask,
    each eligible position's row index into that input)."""
    if bool(live.all()):
        return x, attention_mask, rows
    keep = live.nonzero(as_tuple=True)[0]
    return x[keep], None if attention_mask is None else attention_mask[keep], (live.cumsum(0) - 1)[rows]


def decode(model, x, attention_mask, fillable, groups, *, plan, scorer, mask_id, score_noise=0.0,
           generator=None, backend="auto", use_hidden=None, chunk_bytes=None, skip_finished_rows=False):
    """The engine behind `sample`/`generate` and the drop-ins. Returns (tokens, order, nfe).

    fillable [B, L]: positions to fill; groups [B, L]: group id per fillable position (lowest first);
    plan: prepare(n_eligible, new_group) -> rows active this step, choose(scores, eligible, backend) -> bool;
    scorer: Chunk -> (tokens [N], scores [N]);
    skip_finished_rows: call the model on the rows that fill something this step only. For a model that maps
    (x, attention_mask) to logits row by row; not for wrappers that hold per-row state of the full batch.
    """
    x = x.clone()
    B, L = x.shape
    order = torch.full((B, L), -1, dtype=torch.long, device=x.device)
    if use_hidden is None:
        use_hidden = has_hidden_path(model)
    if use_hidden:
        head = model.get_output_embeddings()
        weight, bias = head.weight, getattr(head, "bias", None)
        V = weight.shape[0]
    still = fillable.clone()
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
        rows, cols = eligible.nonzero(as_tuple=True)  # [N]
        x_in, mask_in, r_in = (_live_rows(x, attention_mask, eligible.any(-1), rows) if skip_finished_rows
                               else (x, attention_mask, rows))
        with torch.no_grad():
            out = _call_model(model, x_in, mask_in, use_hidden)
        if not use_hidden:
            if out.dim() != 3 or tuple(out.shape[:2]) != tuple(x_in.shape):
                raise ValueError(f"model: logits must be [B, L, V] = [{x_in.shape[0]}, {L}, V], "
                                 f"got {tuple(out.shape)}")
            V = out.shape[-1]
        if nfe == 0 and mask_id >= V:
            raise ValueError(f"mask_id: {mask_id} is outside the model's vocabulary of {V} tokens; "
                             "pass the id the model was trained with as its mask")
        if use_hidden and isinstance(scorer, StrategyScorer) and isinstance(scorer.strategy, str):
            per_chunk = rows.shape[0]  # linear_token_stats bounds its own memory (vocabulary tiles)
        else:
            per_chunk = max(1, (chunk_bytes or LOGITS_CHUNK_BYTES) // (4 * V))
        tokens = torch.empty(rows.shape[0], dtype=torch.long, device=x.device)
        scores = torch.empty(rows.shape[0], dtype=torch.float32, device=x.device)
        flat = None if use_hidden else out.reshape(-1, V)
        with torch.no_grad():
            for i in range(0, rows.shape[0], per_chunk):
                r, c = r_in[i:i + per_chunk], cols[i:i + per_chunk]
                chunk = Chunk(hidden=out[r, c], weight=weight, bias=bias) if use_hidden else \
                    Chunk(source=flat, rows=r * L + c)
                tokens[i:i + per_chunk], scores[i:i + per_chunk] = scorer(chunk)
        bad = torch.isnan(scores)
        if bool(bad.any()):
            j = int(bad.nonzero()[0, 0])
            raise ValueError(f"model: NaN logits at step {nfe}, batch row {int(rows[j])}, position {int(cols[j])}; "
                             "decoding stopped (check the model's inputs, dtype and attention mask)")
        if score_noise > 0:
            scores = scores + score_noise * gumbel(scores.shape, generator, scores.device)
        full = torch.full((B, L), -math.inf, dtype=torch.float32, device=x.device)
        full[rows, cols] = scores
        chosen = plan.choose(full, eligible, backend) & eligible
        proposal = x.clone()
        proposal[rows, cols] = tokens
        x = torch.where(chosen, proposal, x)
        order[chosen] = nfe
        still &= ~chosen
        nfe += 1
    return x, order, nfe


# ----------------------------------------------------------------------------------------------
# public entry points
# ----------------------------------------------------------------------------------------------
def sample(model, batch, *, strategy="margin", mask_id=None, k=None, steps=None, block_size=None, threshold=None,
           temperature=0.0, score_noise=0.0, backend="auto", generator=None, return_trace=False,
           skip_finished_rows=True):
    """Fill every mask token of `batch` (not padding) in the order `strategy` prefers; see DESIGN.md section 2.

    Each step calls the model once, on the rows that fill something in it: rows already finished are left
    out. Pass `skip_finished_rows=False` for a model whose output depends on a row's place in the batch.

    Returns the decoded LongTensor [B, L], or a `Trace(tokens, order, nfe)` with `return_trace=True`.
    """
    x, attention_mask = _unpack_batch(batch)
    mask_id = _resolve_mask_id(model, mask_id)
    strategy = _resolve_strategy(strategy)
    _check_sampling_args(temperature, score_noise, backend, generator, return_trace)
    _check_int("block_size", block_size)
    _check_threshold(strategy, threshold, score_noise)
    fillable = x == mask_id
    if attention_mask is not None:
        fillable &= attention_mask.bool()
    groups = groups_by_rank(fillable, block_size)
    groups_per_row = torch.where(fillable, groups + 1, torch.zeros_like(groups)).max(-1).values
    plan = make_plan(k, steps, threshold, groups_per_row)
    scorer = StrategyScorer(strategy, float(temperature), mask_id, generator, backend)
    tokens, order, nfe = decode(model, x, attention_mask, fillable, groups, plan=plan, scorer=scorer,
                                mask_id=mask_id, score_noise=float(score_noise), generator=generator,
                                backend=backend, skip_finished_rows=bool(skip_finished_rows))
    return Trace(tokens, order, nfe) if return_trace else tokens


class _CFGModel:
    """Unsupervised classifier-free guidance (LLaDA): logits = un + (s + 1) (cond - un), the prompt masked
    in `un`; both halves in one model call.

    The LM head is affine, so for a model with the hidden-state path the guided logits are
    head((s + 1) h_cond - s h_un) (the bias carries through): guidance then needs no [B, L, V] logits."""

    def __init__(self, model, scale, prompt_index, mask_id):
        self.model, self.scale, self.prompt_index, self.mask_id = model, scale, prompt_index, mask_id
        if has_hidden_path(model):
            self.forward_hidden = self._forward_hidden
            self.get_output_embeddings = model.get_output_embeddings

    def _both(self, x, attention_mask, use_hidden):
        un = x.masked_fill(self.prompt_index, self.mask_id)
        am = None if attention_mask is None else torch.cat([attention_mask, attention_mask])
        return _call_model(self.model, torch.cat([x, un]), am, use_hidden).chunk(2)

    def __call__(self, x, attention_mask=None):
        cond, uncond = self._both(x, attention_mask, use_hidden=False)
        return uncond + (self.scale + 1) * (cond - uncond)

    def _forward_hidden(self, x, attention_mask=None):
        cond, uncond = self._both(x, attention_mask, use_hidden=True)
        return (self.scale + 1) * cond - self.scale * uncond


def prepare_generation(prompt_ids, gen_length, block_length, mask_id, attention_mask):
    """(x, attention_mask, fillable, groups, groups_per_row) for prompts followed by `gen_length` masks, the
    blocks of `block_length` starting at the end of the (left-padded) prompt."""
    if not isinstance(prompt_ids, torch.Tensor) or prompt_ids.dim() != 2:
        raise ValueError("prompt_ids: must be a LongTensor [B, P] (left-pad prompts of different lengths and "
                         "pass attention_mask)")
    _check_int("gen_length", gen_length)
    _check_int("block_length", block_length)
    B, P = prompt_ids.shape
    dev = prompt_ids.device
    x = torch.cat([prompt_ids.long(), torch.full((B, gen_length), mask_id, dtype=torch.long, device=dev)], 1)
    if attention_mask is not None:
        if tuple(attention_mask.shape) != (B, P):
            raise ValueError(f"attention_mask: must match prompt_ids {(B, P)}, got {tuple(attention_mask.shape)}")
        attention_mask = torch.cat([attention_mask, torch.ones(B, gen_length, dtype=attention_mask.dtype,
                                                               device=dev)], 1)
    fillable = x == mask_id
    if attention_mask is not None:
        fillable &= attention_mask.bool()
    pos = torch.arange(P + gen_length, device=dev).expand(B, -1)
    block = block_length or gen_length
    groups = torch.where(pos >= P, (pos - P) // block, torch.zeros_like(pos))  # prompt masks join block 0
    groups_per_row = torch.full((B,), -(-gen_length // block), dtype=torch.long, device=dev)
    return x, attention_mask, fillable, groups, groups_per_row


def generate(model, prompt_ids, *, gen_length, steps=None, block_length=None, strategy="confidence", mask_id=None,
             attention_mask=None, cfg_scale=0.0, k=None, threshold=None, temperature=0.0, score_noise=0.0,
             backend="auto", generator=None, return_trace=False, skip_finished_rows=True):
    """Append `gen_length` masks to each prompt and decode them, in blocks of `block_length` from the end of
    the prompt (LLaDA's layout). With strategy "confidence", `steps` and temperature 0 it gives exactly
    LLaDA's `generate` tokens. `cfg_scale` > 0 adds unsupervised classifier-free guidance. `skip_finished_rows`
    as in `sample` (guidance always calls the whole batch)."""
    mask_id = _resolve_mask_id(model, mask_id)
    strategy = _resolve_strategy(strategy)
    _check_sampling_args(temperature, score_noise, backend, generator, return_trace)
    _check_threshold(strategy, threshold, score_noise)
    if isinstance(cfg_scale, bool) or not isinstance(cfg_scale, (int, float)) or cfg_scale < 0:
        raise ValueError(f"cfg_scale: must be a number >= 0, got {cfg_scale!r}")
    x, attention_mask, fillable, groups, groups_per_row = prepare_generation(
        prompt_ids, gen_length, block_length, mask_id, attention_mask)
    plan = make_plan(k, steps, threshold, groups_per_row)
    if cfg_scale > 0:
        prompt_index = torch.zeros_like(fillable)
        prompt_index[:, :prompt_ids.shape[1]] = prompt_ids != mask_id
        model = _CFGModel(model, float(cfg_scale), prompt_index, mask_id)
    scorer = StrategyScorer(strategy, float(temperature), mask_id, generator, backend)
    tokens, order, nfe = decode(model, x, attention_mask, fillable, groups, plan=plan, scorer=scorer,
                                mask_id=mask_id, score_noise=float(score_noise), generator=generator,
                                backend=backend, skip_finished_rows=bool(skip_finished_rows) and cfg_scale == 0)
    return Trace(tokens, order, nfe) if return_trace else tokens
