"""Fast-dLLM's LLaDA samplers (`generate`, `generate_with_prefix_cache`, `generate_with_dual_cache`), run by
fastmdm's engine.

    from fastmdm.compat.fastdllm import generate_with_dual_cache
    x, nfe = generate_with_dual_cache(model, prompt, steps=128, gen_length=256, block_length=32, threshold=0.9)

Semantics (Fast-dLLM's): `gen_length` masks follow the prompt, decoded in blocks of `block_length`. Per step,
tokens are LLaDA's (argmax, or a Gumbel draw at temperature > 0) and 'low_confidence' ranks positions by
softmax(logits)[token] ('random' by uniform noise). The schedule is one of: `threshold` (every position whose
confidence is >= threshold, and at least the best), `factor` (the n best while the n-th best is >=
1 - factor / (n + 1); when the first position to fail is the block's last, it is filled too), else LLaDA's
split of `steps // num_blocks` steps per block. The caches: "prefix" runs the whole sequence at each block's
first step and then only the block and what follows it, reusing the prefix's keys and values; "dual" then runs
only the block, reusing the prefix's and the suffix's. Both need a model that implements `fastmdm.cache`
(`fastmdm.models.LLaDA`, `Dream`, `Transformer`); `generate` runs on any model.

Returns `(x, nfe)` as Fast-dLLM does: the sequences [B, P + gen_length] and the number of model calls.

Where fastmdm differs from Fast-dLLM's code (none of it changes tokens on a model that gives the mask token
zero probability, batch by batch of one, except on exact confidence ties):
- Fast-dLLM keeps the mask token in its argmax and softmax, so it can "fill" a position with the mask token
  (which then stays masked for another step); fastmdm never produces the mask token and computes the
  confidence without it.
- In a batch, Fast-dLLM moves every row to the next block only when all rows have finished the current one;
  fastmdm moves each row on as soon as it has finished, so a batch needs fewer calls. With a cache, a call that
  starts a new block for any row refreshes the cache for every row in it, and the window spans the blocks of
  all rows in the call (the cached results can then differ slightly from a batch of one).
- `attention_mask` (left padding), `generator` and `backend` are extra keyword arguments; confidences are
  float32 (Fast-dLLM's are float64) and ties go to the lower position.
"""
from __future__ import annotations

import torch

from fastmdm import validate
from fastmdm.compat.llada import MASK_ID, REMASKING, LLaDAScorer
from fastmdm.engine import decode
from fastmdm.plans import FactorPlan, StepsPlan, ThresholdPlan, generation_layout


@torch.no_grad()
def generate(model, prompt, steps=128, gen_length=128, block_length=128, temperature=0.,
             remasking='low_confidence', mask_id=MASK_ID, threshold=None, factor=None, *, attention_mask=None,
             generator=None, backend="auto", cache=None):
    """Fast-dLLM's `generate` (no cache unless `cache` is given); returns (x, nfe). See the module docstring."""
    prompt = validate.check_token_ids("prompt", prompt)
    validate.check_llada_blocks(steps, gen_length, block_length)
    if remasking not in REMASKING:
        raise ValueError(f"remasking: unknown {remasking!r}; use one of {REMASKING}")
    if threshold is not None and factor is not None:
        raise ValueError("threshold: pass threshold= or factor=, not both")
    validate.check_number("threshold", threshold, high=1.0, allow_none=True)
    validate.check_number("factor", factor, low_open=True, allow_none=True)
    mask_id = validate.check_token_id("mask_id", mask_id)
    validate.check_sampling(temperature, 0.0, backend, generator)
    validate.check_attention_mask(attention_mask, prompt.shape, "the prompt's")
    validate.check_token_in_vocab("mask_id", mask_id, validate.model_vocab_size(model),
                                  f"pass mask_id=<the model's mask token id> (LLaDA's is {MASK_ID})")
    validate.check_devices(model, prompt)
    x, attention_mask, fillable, groups, per_row = generation_layout(prompt, gen_length, block_length, mask_id,
                                                                     attention_mask)
    if threshold is not None:
        plan = ThresholdPlan(threshold)
    elif factor is not None:
        plan = FactorPlan(factor)
    else:
        plan = StepsPlan(steps, per_row)
    scorer = LLaDAScorer(temperature=float(temperature), remasking=remasking, mask_id=mask_id, logits_eos_inf=False,
                         confidence_eos_eot_inf=False, eos_id=0, eot_id=0, generator=generator)
    trace = decode(model, x, attention_mask, fillable, groups, plan=plan, scorer=scorer, mask_id=mask_id,
                   generator=generator, backend=backend, skip_finished_rows=True, cache=cache)
    return trace.tokens, trace.nfe


def generate_with_prefix_cache(model, prompt, steps=128, gen_length=128, block_length=128, temperature=0.,
                               remasking='low_confidence', mask_id=MASK_ID, threshold=None, factor=None, **kwargs):
    """Fast-dLLM's prefix-cached sampler; returns (x, nfe). See the module docstring."""
    return generate(model, prompt, steps, gen_length, block_length, temperature, remasking, mask_id, threshold,
                    factor, cache="prefix", **kwargs)


def generate_with_dual_cache(model, prompt, steps=128, gen_length=128, block_length=128, temperature=0.,
                             remasking='low_confidence', mask_id=MASK_ID, threshold=None, factor=None, **kwargs):
    """Fast-dLLM's dual-cached sampler; returns (x, nfe). See the module docstring."""
    return generate(model, prompt, steps, gen_length, block_length, temperature, remasking, mask_id, threshold,
                    factor, cache="dual", **kwargs)
