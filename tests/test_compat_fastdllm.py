"""fastmdm.compat.fastdllm against Fast-dLLM's LLaDA samplers, re-derived as a plain loop for one row."""
from __future__ import annotations

import math

import pytest
import torch
from test_engine import factor_count_reference
from toy import ToyAttention, ToyMDM

from fastmdm.cache import KVCache
from fastmdm.compat import fastdllm

V, MASK = 11, 10


@torch.no_grad()
def fast_dllm_reference(model, prompt, steps, gen_length, block_length, threshold=None, factor=None, cache=None):
    """Fast-dLLM's loop at temperature 0, low_confidence, one row: returns (x, nfe)."""
    x = torch.cat([prompt, torch.full((1, gen_length), MASK)], 1)
    P, L = prompt.shape[1], x.shape[1]
    per_block = steps // (gen_length // block_length)
    nfe = 0
    for b0 in range(P, L, block_length):
        b1 = b0 + block_length
        counts = [block_length // per_block + (s < block_length % per_block) for s in range(per_block)]
        kv = KVCache(cache or "dual", 1)
        i = 0
        while bool((x[0, b0:b1] == MASK).any()):
            if cache is None:
                logits = model(x)[0, b0:b1]
            else:
                kv.begin(torch.arange(1), b0, b1 if cache == "dual" else L, refresh=i == 0)
                logits = model.head(model.forward_hidden(x, cache=kv)[0, :block_length])
            nfe += 1
            pick = logits.clone()
            pick[:, MASK] = -math.inf
            tok = pick.argmax(-1)
            conf = torch.softmax(logits, -1).gather(-1, tok[:, None])[:, 0]
            conf = torch.where(x[0, b0:b1] == MASK, conf, -math.inf)
            n_masked = int((x[0, b0:b1] == MASK).sum())
            if threshold is not None:
                order = torch.argsort(conf, descending=True, stable=True)[:n_masked]
                chosen = [int(order[0])] + [int(j) for j in order[1:] if conf[j] >= threshold]
            elif factor is not None:
                n = factor_count_reference(conf[conf > -math.inf].tolist(), factor)
                chosen = torch.argsort(conf, descending=True, stable=True)[:n].tolist()
            else:
                chosen = torch.argsort(conf, descending=True, stable=True)[:counts[i]].tolist()
            for j in chosen:
                x[0, b0 + j] = tok[j]
            i += 1
    return x, nfe


@pytest.mark.parametrize("cache", [None, "prefix", "dual"])
@pytest.mark.parametrize("schedule", [dict(), dict(threshold=0.7), dict(factor=1.0)])
@pytest.mark.parametrize("seed", range(2))
def test_the_same_tokens_and_calls_as_fast_dllm_s_loop(cache, schedule, seed):
    model = ToyAttention(vocab=V, seed=seed, scale=8.0)
    prompt = torch.randint(0, MASK, (1, 5), generator=torch.Generator().manual_seed(seed))
    fn = {None: fastdllm.generate, "prefix": fastdllm.generate_with_prefix_cache,
          "dual": fastdllm.generate_with_dual_cache}[cache]
    x, nfe = fn(model, prompt, steps=6, gen_length=12, block_length=4, mask_id=MASK, **schedule)
    ref_x, ref_nfe = fast_dllm_reference(model, prompt, 6, 12, 4, cache=cache, **schedule)
    assert torch.equal(x, ref_x) and nfe == ref_nfe


def test_threshold_and_factor_take_fewer_calls_than_the_step_split():
    model = ToyAttention(vocab=V, seed=4, scale=12.0)
    prompt = torch.randint(0, MASK, (2, 4), generator=torch.Generator().manual_seed(3))
    _, nfe_steps = fastdllm.generate(model, prompt, steps=16, gen_length=16, block_length=4, mask_id=MASK)
    _, nfe_thr = fastdllm.generate_with_dual_cache(model, prompt, steps=16, gen_length=16, block_length=4,
                                                   mask_id=MASK, threshold=0.5)
    assert nfe_steps == 16 and nfe_thr < nfe_steps


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(gen_length=10, block_length=4), ValueError, "block_length: gen_length=10 is not a multiple"),
    (dict(steps=5), ValueError, "steps: 5 is not a multiple of the 2 blocks"),
    (dict(remasking="best"), ValueError, "remasking: unknown 'best'"),
    (dict(threshold=0.9, factor=1.0), ValueError, "not both"),
    (dict(threshold=1.5), ValueError, "threshold: must be in"),
    (dict(factor=0.0), ValueError, "factor: must be > 0"),
    (dict(mask_id=-1), ValueError, "mask_id: must be a token id >= 0"),
    (dict(temperature=-1.0), ValueError, "temperature: must be >= 0"),
])
def test_bad_arguments_are_named(kwargs, error, match):
    kw = dict(steps=4, gen_length=8, block_length=4, mask_id=MASK)
    kw.update(kwargs)
    with pytest.raises(error, match=match):
        fastdllm.generate(ToyMDM(vocab=V), torch.tensor([[1, 2]]), **kw)


def test_the_cached_samplers_need_the_cache_protocol():
    with pytest.raises(ValueError, match="cache: 'prefix' needs a model"):
        fastdllm.generate_with_prefix_cache(ToyMDM(vocab=V), torch.tensor([[1, 2]]), steps=4, gen_length=4,
                                            block_length=4, mask_id=MASK)
