"""`fastmdm.sample` and `fastmdm.generate`: batched adaptive decoding on the engine (`fastmdm.engine`).

The decoding contract (schedules, ties, padding, errors, caches): docs/decoding.md.
"""
from __future__ import annotations

from fastmdm import validate
from fastmdm.cache import CACHE_MODES
from fastmdm.engine import decode
from fastmdm.guidance import CFGModel, prompt_positions
from fastmdm.plans import generation_layout, groups_by_rank, groups_per_row, make_plan
from fastmdm.strategies import StrategyScorer, check_threshold, resolve_strategy


def _check_common(model, x, mask_id, strategy, temperature, score_noise, backend, generator, return_trace,
                  threshold, cache):
    validate.check_sampling(temperature, score_noise, backend, generator)
    validate.check_bool("return_trace", return_trace)
    check_threshold(strategy, threshold, score_noise)
    if cache is not None and cache not in CACHE_MODES:
        raise ValueError(f"cache: {cache!r} is not one of {CACHE_MODES}; pass 'prefix', 'dual' or None")
    validate.check_token_in_vocab("mask_id", mask_id, validate.model_vocab_size(model),
                                  "pass the id the model was trained with as its mask")
    validate.check_devices(model, x)


def sample(model, batch, *, strategy="margin", mask_id=None, k=None, steps=None, block_size=None, threshold=None,
           factor=None, temperature=0.0, score_noise=0.0, backend="auto", generator=None, return_trace=False,
           skip_finished_rows=True, cache=None):
    """Fill every mask token of `batch` (not padding) in the order `strategy` prefers.

    batch: LongTensor [B, L] or a mapping with 'input_ids' (and 'attention_mask': 1 = real token, 0 = padding).
    Schedules (one of): k positions per row per step (default 1), `steps` (LLaDA's split), `threshold`
    (Fast-dLLM: every position scoring >= tau, at least the best), `factor` (Fast-dLLM's factor rule).
    `block_size` decodes each row's masks semi-autoregressively in groups of that many; `cache` ("prefix" or
    "dual", approximate) reuses keys and values within a group for models that implement `fastmdm.cache`.
    Each step calls the model once, on the rows that fill something in it; pass `skip_finished_rows=False`
    for a model whose output depends on a row's place in the batch. A batch with no mask token (or of
    length 0) comes back unchanged with nfe 0, without a model call.

    Returns the decoded LongTensor [B, L], or a `Trace(tokens, order, nfe)` with `return_trace=True`.
    """
    x, attention_mask = validate.unpack_batch(batch)
    mask_id = validate.resolve_mask_id(model, mask_id)
    strategy = resolve_strategy(strategy)
    validate.check_int("block_size", block_size)
    _check_common(model, x, mask_id, strategy, temperature, score_noise, backend, generator, return_trace,
                  threshold, cache)
    fillable = x == mask_id
    if attention_mask is not None:
        fillable &= attention_mask.bool()
    groups = groups_by_rank(fillable, block_size)
    plan = make_plan(k, steps, threshold, groups_per_row(fillable, groups), factor)
    scorer = StrategyScorer(strategy, float(temperature), mask_id, generator, backend)
    trace = decode(model, x, attention_mask, fillable, groups, plan=plan, scorer=scorer, mask_id=mask_id,
                   score_noise=float(score_noise), generator=generator, backend=backend,
                   skip_finished_rows=bool(skip_finished_rows), cache=cache)
    return trace if return_trace else trace.tokens


def generate(model, prompt_ids, *, gen_length, steps=None, block_length=None, strategy="confidence", mask_id=None,
             attention_mask=None, cfg_scale=0.0, k=None, threshold=None, factor=None, temperature=0.0,
             score_noise=0.0, backend="auto", generator=None, return_trace=False, skip_finished_rows=True,
             cache=None):
    """Append `gen_length` masks to each prompt and decode them, in blocks of `block_length` from the end of
    the prompt (LLaDA's layout). With strategy "confidence", `steps` and temperature 0 it gives exactly
    LLaDA's `generate` tokens. `cfg_scale` > 0 adds unsupervised classifier-free guidance (the whole batch is
    then called every step). `cache="prefix"|"dual"` runs Fast-dLLM's block caches (approximate; the model
    must implement `fastmdm.cache`). Other arguments as in `sample`."""
    mask_id = validate.resolve_mask_id(model, mask_id)
    strategy = resolve_strategy(strategy)
    prompt_ids = validate.check_token_ids("prompt_ids", prompt_ids,
                                          " (left-pad prompts of different lengths and pass attention_mask)")
    validate.check_attention_mask(attention_mask, prompt_ids.shape, "the prompts'")
    _check_common(model, prompt_ids, mask_id, strategy, temperature, score_noise, backend, generator,
                  return_trace, threshold, cache)
    validate.check_number("cfg_scale", cfg_scale)
    if cfg_scale > 0 and cache is not None:
        raise ValueError("cache: classifier-free guidance (cfg_scale > 0) runs without a cache; pass cache=None "
                         "or cfg_scale=0")
    x, attention_mask, fillable, groups, per_row = generation_layout(
        prompt_ids, gen_length, block_length, mask_id, attention_mask)
    plan = make_plan(k, steps, threshold, per_row, factor)
    if cfg_scale > 0:
        model = CFGModel(model, float(cfg_scale), prompt_positions(prompt_ids, x.shape[1], mask_id), mask_id)
    scorer = StrategyScorer(strategy, float(temperature), mask_id, generator, backend)
    trace = decode(model, x, attention_mask, fillable, groups, plan=plan, scorer=scorer, mask_id=mask_id,
                   score_noise=float(score_noise), generator=generator, backend=backend,
                   skip_finished_rows=bool(skip_finished_rows) and cfg_scale == 0, cache=cache)
    return trace if return_trace else trace.tokens
