"""fastmdm.compat.dream.diffusion_generate against Dream's published algorithm, re-derived as a plain per-row loop."""
from __future__ import annotations

import math

import pytest
import torch
from toy import MASK, RandomLogits, TinyHF, padded_batch

from fastmdm import adapters, engine
from fastmdm.compat import dream


def dg(*args, **kwargs):
    """dream.diffusion_generate with the tiny models' mask id."""
    kwargs.setdefault("mask_token_id", MASK)
    return dream.diffusion_generate(*args, **kwargs)


def filtered_probs(row, top_p=None, top_k=None):
    """Dream's distribution at one position (temperature 0): drop, in order of probability, every token whose
    predecessors already hold more than top_p of the mass; drop tokens less likely than the top_k-th; softmax."""
    row = row.clone()
    if top_p is not None and top_p < 1:
        order = sorted(range(row.shape[0]), key=lambda v: -float(row[v]))
        p = torch.softmax(row[order], dim=-1)
        mass = 0.0
        for idx, v in enumerate(order):
            if idx > 0 and mass > top_p:
                row[v] = -math.inf
            mass += float(p[idx])
    if top_k is not None:
        kth = sorted(row.tolist(), reverse=True)[top_k - 1]
        row[row < kth] = -math.inf
    return torch.softmax(row, dim=-1)


@torch.no_grad()
def dream_reference(model, inputs, attention_mask=None, max_new_tokens=8, steps=8, alg="maskgit_plus", top_p=None,
                    top_k=None, eps=1e-3, mask_id=MASK):
    """Dream's diffusion_generate at temperature 0, written from its description; returns (sequences, history)."""
    B, P = inputs.shape
    x = torch.cat([inputs, torch.full((B, max_new_tokens), mask_id)], 1)
    L = x.shape[1]
    if attention_mask is not None and bool((attention_mask == 0).any()):
        real = torch.cat([attention_mask, torch.ones(B, max_new_tokens).long()], 1).bool()
        attn = torch.zeros(B, 1, L, L, dtype=torch.bool)
        position_ids = torch.ones(B, L, dtype=torch.long)
        for r in range(B):
            count = 0
            for q in range(L):
                if real[r, q]:
                    position_ids[r, q] = count
                    count += 1
                for k in range(L):
                    attn[r, 0, q, k] = bool(real[r, q] and real[r, k])
    else:
        attn, position_ids = "full", None
    timesteps = torch.linspace(1, eps, steps + 1)
    history = []
    for i in range(steps):
        out = model(x, attention_mask=attn, position_ids=position_ids).logits
        logits = out.clone()
        logits[:, 1:] = out[:, :-1]  # the token at j is predicted from position j - 1
        t, s = timesteps[i], timesteps[i + 1]
        masks = [(r, j) for r in range(B) for j in range(L) if int(x[r, j]) == mask_id]
        if alg == "origin":
            p_transfer = 1 - s / t if i < steps - 1 else 1
            u = torch.rand(len(masks))
            for (r, j), draw in zip(masks, u):
                if draw < p_transfer:
                    x[r, j] = int(torch.argmax(filtered_probs(logits[r, j], top_p, top_k)))
        else:
            mean_masks = torch.tensor(len(masks)) / B
            k = int(mean_masks * (1 - s / t)) if i < steps - 1 else int(mean_masks)
            for r in range(B):
                candidates = []
                for rr, j in masks:
                    if rr != r:
                        continue
                    p = filtered_probs(logits[r, j], top_p, top_k)
                    token = int(torch.argmax(p))
                    if alg == "maskgit_plus":
                        score = float(p[token])
                    elif alg == "topk_margin":
                        top = sorted(p.tolist(), reverse=True)
                        score = top[0] - top[1]
                    else:  # entropy
                        score = float((p * torch.log(p + 1e-10)).sum())
                    candidates.append((-score, j, token))
                for _, j, token in sorted(candidates)[:k]:
                    x[r, j] = token
        history.append(x.clone())
    return x, history


def model_for(seed):
    return TinyHF(seed=seed, boost={MASK: -30.0})  # the original never picks the mask token either


# ----------------------------------------------------------------------------------------------
# exact tokens at temperature 0
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alg", ["maskgit_plus", "topk_margin", "entropy"])
@pytest.mark.parametrize("top_p,top_k", [(None, None), (0.8, None), (None, 4), (0.9, 3)])
def test_ranked_algs_give_dream_tokens_on_a_left_padded_batch(alg, top_p, top_k):
    model = model_for(seed=21)
    inputs, am = padded_batch(lengths=(5, 2, 7))
    kw = dict(max_new_tokens=10, steps=6, alg=alg, top_p=top_p, top_k=top_k)
    ours = dg(model, inputs, attention_mask=am, **kw)
    ref, _ = dream_reference(model, inputs, am, **kw)
    assert torch.equal(ours, ref)
    assert torch.equal(ours[:, :inputs.shape[1]], inputs)
    assert not bool((ours == MASK).any())


@pytest.mark.parametrize("alg", ["maskgit_plus", "topk_margin", "entropy"])
@pytest.mark.parametrize("max_new_tokens,steps", [(8, 8), (12, 5), (5, 9), (9, 1)])
def test_ranked_algs_give_dream_tokens_for_any_steps(alg, max_new_tokens, steps):
    model = model_for(seed=22 + steps)
    inputs, am = padded_batch(lengths=(4, 6))
    kw = dict(max_new_tokens=max_new_tokens, steps=steps, alg=alg)
    ours = dg(model, inputs, attention_mask=am, **kw)
    assert torch.equal(ours, dream_reference(model, inputs, am, **kw)[0])


@pytest.mark.parametrize("padded", [True, False])
@pytest.mark.parametrize("top_k", [None, 3])
def test_origin_gives_dream_tokens_from_the_same_global_seed(padded, top_k):
    model = model_for(seed=23)
    inputs, am = padded_batch(lengths=(5, 2, 7) if padded else (6, 6, 6))
    kw = dict(max_new_tokens=10, steps=7, alg="origin", top_k=top_k)
    torch.manual_seed(123)
    ref, _ = dream_reference(model, inputs, am, **kw)
    torch.manual_seed(123)
    ours = dg(model, inputs, attention_mask=am, **kw)
    assert torch.equal(ours, ref)
    torch.manual_seed(124)
    other = dg(model, inputs, attention_mask=am, **kw)
    assert not torch.equal(other, ours)  # the reveal order matters for this model, so the seed was tested


def test_without_attention_mask_gives_dream_tokens_and_calls_the_model_with_full_attention():
    model = model_for(seed=24)
    inputs = torch.randint(1, 30, (2, 5), generator=torch.Generator().manual_seed(4))
    ours = dg(model, inputs, max_new_tokens=6, steps=6, alg="entropy")
    assert all(mask == "full" and pos is None for mask, pos in model.model.seen)
    assert torch.equal(ours, dream_reference(model, inputs, None, max_new_tokens=6, steps=6, alg="entropy")[0])
    model.model.seen.clear()
    same = dg(model, inputs, attention_mask=torch.ones(2, 5).long(), max_new_tokens=6, steps=6, alg="entropy")
    assert torch.equal(same, ours) and all(mask == "full" for mask, _ in model.model.seen)


def test_padding_reaches_the_model_as_dreams_4d_mask_and_position_ids():
    model = model_for(seed=25)
    inputs, am = padded_batch(lengths=(2, 4))
    out = dg(model, inputs, attention_mask=am, max_new_tokens=3, steps=3, alg="maskgit_plus")
    assert torch.equal(out[:, :4], inputs)
    mask, pos = model.model.seen[0]
    real = torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]]).bool()
    assert mask.shape == (2, 1, 7, 7) and mask.dtype == torch.bool
    assert torch.equal(mask[:, 0], real[:, :, None] & real[:, None, :])
    assert pos.tolist() == [[1, 1, 0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5, 6]]


def test_hidden_state_model_through_from_hf_gives_the_logits_path_tokens():
    model = model_for(seed=26)
    inputs, am = padded_batch(lengths=(5, 2, 7))
    kw = dict(attention_mask=am, max_new_tokens=10, steps=5, alg="topk_margin", top_p=0.9)
    plain = dg(model, inputs, **kw)
    adapted = adapters.from_hf(model)
    model.full_calls = 0  # from_hf's probe ran the model once
    hidden = dg(adapted, inputs, **kw)
    assert model.full_calls == 0
    assert torch.equal(hidden, plain)


def test_history_holds_the_sequence_after_every_step():
    model = model_for(seed=27)
    inputs, am = padded_batch(lengths=(3, 5))
    kw = dict(max_new_tokens=4, steps=7, alg="maskgit_plus")
    out = dg(model, inputs, attention_mask=am, return_dict_in_generate=True, output_history=True, **kw)
    ref, ref_history = dream_reference(model, inputs, am, **kw)
    assert isinstance(out, dream.DreamOutput)
    assert torch.equal(out.sequences, ref)
    assert len(out.history) == 7
    for ours, theirs in zip(out.history, ref_history):
        assert torch.equal(ours, theirs)
    plain = dg(model, inputs, attention_mask=am, return_dict_in_generate=True, **kw)
    assert plain.history is None and torch.equal(plain.sequences, ref)


def test_num_return_sequences_repeats_each_input():
    model = model_for(seed=28)
    inputs, am = padded_batch(lengths=(3, 5))
    out = dg(model, inputs, attention_mask=am, max_new_tokens=4, steps=4, alg="entropy", num_return_sequences=2)
    assert out.shape == (4, 9)
    assert torch.equal(out[0], out[1]) and torch.equal(out[2], out[3])


def test_a_generation_config_supplies_the_options_left_at_their_defaults():
    from types import SimpleNamespace

    model = model_for(seed=35)
    inputs, am = padded_batch(lengths=(3, 5))
    config = SimpleNamespace(max_new_tokens=6, steps=4, alg="entropy", mask_token_id=MASK, max_length=20,
                             return_dict_in_generate=False)
    explicit = dream.diffusion_generate(model, inputs, am, max_new_tokens=6, steps=4, alg="entropy",
                                        mask_token_id=MASK)
    assert torch.equal(dream.diffusion_generate(model, inputs, am, generation_config=config), explicit)
    overridden = dream.diffusion_generate(model, inputs, am, generation_config=config, alg="topk_margin")
    assert torch.equal(overridden, dg(model, inputs, am, max_new_tokens=6, steps=4, alg="topk_margin"))
    assert not torch.equal(overridden, explicit)  # the two algs differ here, so the override was tested


def test_max_length_counts_the_input_and_the_default_warns():
    model = model_for(seed=29)
    inputs = torch.tensor([[3, 4, 7]])
    assert dg(model, inputs, max_length=8, steps=5, alg="maskgit_plus").shape == (1, 8)
    with pytest.warns(UserWarning, match="max_new_tokens"):
        assert dg(model, inputs, steps=5, alg="maskgit_plus").shape == (1, 23)


# ----------------------------------------------------------------------------------------------
# sampling
# ----------------------------------------------------------------------------------------------
def test_temperature_tokens_follow_the_filtered_softmax():
    model = model_for(seed=30)
    n, T, top_k = 4000, 1.5, 6
    inputs = torch.tensor([[3, 4, 7]]).expand(n, 3)
    out = dg(model, inputs, max_new_tokens=1, steps=1, alg="maskgit_plus", temperature=T, top_k=top_k,
             generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits = model(torch.tensor([[3, 4, 7, MASK]])).logits[0, -2]  # shifted: position 3 is predicted from 2
    p = filtered_probs(logits / T, top_k=top_k)
    freq = torch.bincount(out[:, -1], minlength=p.shape[0]).float() / n
    band = 4 * (p * (1 - p) / n).sqrt() + 2 / n
    assert bool(((freq - p).abs() <= band).all()), (freq - p).abs().max()
    assert int((p > 0).sum()) == top_k and bool((freq[p == 0] == 0).all())


def test_alg_temp_draws_positions_in_proportion_to_softmax_of_score_over_alg_temp():
    model = model_for(seed=31)
    n, alg_temp = 4000, 0.05
    inputs = torch.tensor([[3, 4, 7]]).expand(n, 3)
    # 4 masks, 2 steps: step 0 reveals int(4 * (1 - s/t)) = 1 position per row
    out = dg(model, inputs, max_new_tokens=4, steps=2, alg="maskgit_plus", alg_temp=alg_temp,
             return_dict_in_generate=True, output_history=True, generator=torch.Generator().manual_seed(4))
    first = (out.history[0][:, 3:] != MASK)
    assert bool((first.sum(-1) == 1).all())
    freq = first.float().mean(0)
    with torch.no_grad():
        logits = model(torch.tensor([[3, 4, 7, MASK, MASK, MASK, MASK]])).logits[0]
    conf = torch.softmax(logits[2:6], -1).max(-1).values  # shifted: mask j scored from position j - 1
    p = torch.softmax(conf / alg_temp, -1)
    band = 4 * (p * (1 - p) / n).sqrt() + 2 / n
    assert bool(((freq - p).abs() <= band).all()), (freq, p)
    assert float(p.max()) < 0.9  # a real spread, not one certain position


def test_sampling_is_reproducible_with_a_seeded_generator():
    model = model_for(seed=32)
    inputs, am = padded_batch(lengths=(3, 5))
    kw = dict(attention_mask=am, max_new_tokens=6, steps=4, alg="entropy", temperature=1.0, alg_temp=0.1)
    a = dg(model, inputs, generator=torch.Generator().manual_seed(5), **kw)
    b = dg(model, inputs, generator=torch.Generator().manual_seed(5), **kw)
    c = dg(model, inputs, generator=torch.Generator().manual_seed(6), **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("alg", ["maskgit_plus", "topk_margin", "entropy"])
@pytest.mark.parametrize("temperature,top_p", [(0.0, None), (1.0, 0.9)])
def test_scoring_a_few_rows_at_a_time_gives_the_tokens_of_the_whole_chunk(monkeypatch, alg, temperature, top_p):
    model = adapters.from_hf(model_for(seed=31))  # the hidden-state path: one chunk holds every eligible position
    inputs, am = padded_batch(lengths=(3, 5, 2))
    kw = dict(attention_mask=am, max_new_tokens=6, steps=3, alg=alg, temperature=temperature, top_p=top_p)
    whole = dg(model, inputs, generator=torch.Generator().manual_seed(4), **kw)
    V = model.get_output_embeddings().weight.shape[0]
    monkeypatch.setattr(engine, "LOGITS_CHUNK_BYTES", 4 * V * 2)  # the scorer's blocks: 2 rows
    assert torch.equal(dg(model, inputs, generator=torch.Generator().manual_seed(4), **kw), whole)


@pytest.mark.parametrize("alg", ["origin", "entropy"])
def test_mask_token_is_never_produced_even_when_the_model_prefers_it(alg):
    model = TinyHF(seed=33, boost={MASK: 30.0})
    inputs, am = padded_batch(lengths=(3, 5))
    for temperature in (0.0, 1.0):
        out = dg(model, inputs, attention_mask=am, max_new_tokens=5, steps=5, alg=alg, temperature=temperature)
        assert not bool((out[:, 5:] == MASK).any())


def test_when_top_k_keeps_only_the_mask_the_best_other_token_is_chosen():
    model = TinyHF(seed=33, boost={MASK: 30.0})
    inputs = torch.tensor([[3, 4, 7], [5, 2, 9]])
    out = dg(model, inputs, max_new_tokens=1, steps=1, alg="maskgit_plus", top_k=1)
    with torch.no_grad():
        logits = model(torch.cat([inputs, torch.full((2, 1), MASK)], 1)).logits[:, -2]  # shifted by one
    logits[:, MASK] = -math.inf
    assert torch.equal(out[:, -1], logits.argmax(-1))


def test_rows_with_different_mask_counts_keep_their_real_tokens():
    model = model_for(seed=34)
    inputs = torch.tensor([[3, MASK, 7, 8], [3, 4, 7, 8]])  # the first row also fills a mask inside its prompt
    out = dg(model, inputs, max_new_tokens=4, steps=3, alg="maskgit_plus")
    assert not bool((out == MASK).any())
    assert out[0, [0, 2, 3]].tolist() == [3, 7, 8] and out[1, :4].tolist() == [3, 4, 7, 8]


def test_a_bfloat16_model_decodes_with_float32_scores():
    model = model_for(seed=36).to(torch.bfloat16)
    inputs, am = padded_batch(lengths=(4, 6))
    for alg in ("origin", "topk_margin"):
        out = dg(model, inputs, attention_mask=am, max_new_tokens=6, steps=3, alg=alg, top_p=0.9, temperature=0.5)
        assert out.shape == (2, 12) and out.dtype == torch.long and not bool((out == MASK).any())


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,error,match", [
    (dict(alg="margin"), ValueError, "alg: unknown 'margin'"),
    (dict(steps=0), ValueError, "steps: must be >= 1"),
    (dict(top_p=0.0), ValueError, r"top_p: must be in \(0, 1\]"),
    (dict(top_p=1.5), ValueError, r"top_p: must be in \(0, 1\]"),
    (dict(top_k=0), ValueError, "top_k: must be >= 1"),
    (dict(eps=1.0), ValueError, r"eps: must be in \(0, 1\)"),
    (dict(temperature=-0.1), ValueError, "temperature: must be >= 0"),
    (dict(alg_temp=-1.0), ValueError, "alg_temp: must be >= 0"),
    (dict(max_new_tokens=0), ValueError, "max_new_tokens: must be >= 1"),
    (dict(max_new_tokens=None, max_length=3), ValueError, "max_length: 3 leaves no room"),
    (dict(mask_token_id=100), ValueError, "mask_id: 100 is outside the model's vocabulary of 40"),
    (dict(attention_mask=torch.ones(1, 2)), ValueError, r"attention_mask: must be a tensor of the inputs' shape"),
    (dict(bogus=1), TypeError, r"unexpected keyword argument\(s\) \['bogus'\]"),
    (dict(generation_logits_hook_func=lambda *a: a), ValueError, "generation_logits_hook_func"),
    (dict(generator="seed"), TypeError, "generator: must be a torch.Generator"),
])
def test_bad_arguments_are_named_with_the_fix(kwargs, error, match):
    kw = dict(max_new_tokens=4, steps=4, alg="entropy")
    kw.update(kwargs)
    with pytest.raises(error, match=match):
        dg(RandomLogits(), torch.tensor([[3, 4, 7]]), **kw)


def test_a_one_dimensional_input_is_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"inputs\[None\]"):
        dg(RandomLogits(), torch.tensor([3, 4, 7]), max_new_tokens=4, steps=4)


def test_nan_logits_are_an_error_naming_the_step():
    class NaNModel(torch.nn.Module):
        def forward(self, x, attention_mask=None, position_ids=None):
            return torch.full((*x.shape, 40), math.nan)

    with pytest.raises(ValueError, match="NaN logits at step 0"):
        dg(NaNModel(), torch.tensor([[3, 4, 7]]), max_new_tokens=4, steps=4, alg="maskgit_plus")


def test_unset_options_come_from_the_model_s_configs_and_explicit_keywords_always_win():
    from types import SimpleNamespace

    model = model_for(seed=36)
    inputs = torch.tensor([[3, 4, 7]])
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    greedy = dg(model, inputs, max_new_tokens=6, steps=6, alg="entropy", temperature=0.0, generator=g())
    # options in the model's config apply (as transformers' legacy generation defaults, temperature and top_k)
    model.config.temperature, model.config.top_k, model.config.alg, model.config.steps = 4.0, 50, "entropy", 6
    sampled = dg(model, inputs, max_new_tokens=6, generator=g())
    assert torch.equal(sampled, dg(model, inputs, max_new_tokens=6, steps=6, alg="entropy", temperature=4.0,
                                   top_k=50, generator=g()))
    assert not torch.equal(sampled, greedy)
    # temperature=0.0 passed explicitly wins over the config's 4.0, although 0.0 is also Dream's default
    assert torch.equal(dg(model, inputs, max_new_tokens=6, temperature=0.0, generator=g()), greedy)
    # model.generation_config comes before model.config
    model.generation_config = SimpleNamespace(temperature=0.0, steps=6, alg="entropy")
    assert torch.equal(dg(model, inputs, max_new_tokens=6, generator=g()), greedy)
