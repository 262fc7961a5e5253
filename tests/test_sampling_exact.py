"""fastmdm.sample against the plain re-derivation in reference_decoder.py, token for token at temperature 0."""
import itertools

import pytest
import torch
from reference_decoder import reference_decode
from toy import LogitsOnly, ToyMDM

import fastmdm

V, MASK = 13, 12


def mixed_batch(L=20, seed=0):
    """Rows with no masks, some masks (scattered and a suffix) and all masks."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, MASK, (4, L), generator=g)
    x[1, torch.randperm(L, generator=g)[: L // 2]] = MASK
    x[2, L // 3:] = MASK
    x[3] = MASK
    return x


SCHEDULES = [dict(k=1), dict(k=3), dict(steps=4), dict(steps=7), dict(threshold=0.5)]
BLOCKS = [None, 4, 7]
STRATEGIES = ["confidence", "margin", "entropy"]


def _threshold_for(strategy, sched):
    if "threshold" in sched and strategy == "entropy":
        return dict(threshold=-1.2)
    return sched


CASES = [(st, sc, bl) for st, sc, bl in itertools.product(STRATEGIES, SCHEDULES, BLOCKS)
         if not ("steps" in sc and bl is not None and sc["steps"] < -(-20 // bl))]  # fewer steps than blocks: an error


@pytest.mark.parametrize("strategy,sched,block", CASES)
def test_sample_matches_the_plain_reference_token_for_token(strategy, sched, block):
    sched = _threshold_for(strategy, sched)
    model = ToyMDM(vocab=V, seed=1)
    x = mixed_batch()
    got = fastmdm.sample(model, x, strategy=strategy, mask_id=MASK, block_size=block, return_trace=True, **sched)
    want, order, nfe = reference_decode(model, x, MASK, strategy, block_size=block, **sched)
    assert torch.equal(got.tokens, want)
    assert torch.equal(got.order, order)
    assert got.nfe == nfe


@pytest.mark.parametrize("sched", SCHEDULES)
def test_random_order_matches_the_reference_given_the_same_uniform_draws(sched):
    model = ToyMDM(vocab=V, seed=2)
    x = mixed_batch(seed=3)
    sched = dict(sched)
    if "threshold" in sched:
        sched["threshold"] = 0.7
    got = fastmdm.sample(model, x, strategy="random", mask_id=MASK, generator=torch.Generator().manual_seed(5),
                         return_trace=True, **sched)
    g = torch.Generator().manual_seed(5)
    want, order, nfe = reference_decode(model, x, MASK, "random", random_scores=lambda n: torch.rand(n, generator=g),
                                        **sched)
    assert torch.equal(got.tokens, want) and torch.equal(got.order, order) and got.nfe == nfe


@pytest.mark.parametrize("strategy", STRATEGIES + ["random"])
def test_hidden_state_path_gives_the_same_tokens_as_full_logits(strategy):
    model = ToyMDM(vocab=V, seed=4)
    x = mixed_batch(seed=5)
    kw = dict(strategy=strategy, mask_id=MASK, k=2, generator=torch.Generator().manual_seed(0), return_trace=True)
    a = fastmdm.sample(model, x, **kw)
    kw["generator"] = torch.Generator().manual_seed(0)
    b = fastmdm.sample(LogitsOnly(model), x, **kw)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.order, b.order)


def test_chunked_scoring_gives_the_same_tokens_as_one_chunk(monkeypatch):
    model = ToyMDM(vocab=V, seed=6)
    x = mixed_batch(seed=7)
    whole = fastmdm.sample(model, x, strategy="margin", mask_id=MASK, k=2)
    monkeypatch.setattr(fastmdm.engine, "LOGITS_CHUNK_BYTES", 4 * V * 3)  # 3 rows per chunk
    assert torch.equal(fastmdm.sample(model, x, strategy="margin", mask_id=MASK, k=2), whole)


def test_margin_fills_the_most_certain_position_first():
    row = torch.full((3, 5), 0.0)
    row[0, 1] = 1.0  # weak preference
    row[1, 2] = 5.0  # strong preference: the largest margin
    row[2, 3] = 3.0

    class M(torch.nn.Module):
        def forward(self, x):
            return row.expand(x.shape[0], 3, 5)

    tr = fastmdm.sample(M(), torch.full((1, 3), 4), mask_id=4, strategy="margin", return_trace=True)
    assert tr.order.tolist() == [[2, 0, 1]]
    assert tr.tokens.tolist() == [[1, 2, 3]]


def test_steps_follow_llada_split_per_block():
    # 10 masks over 4 steps: 3, 3, 2, 2 positions per step
    model = ToyMDM(vocab=V, seed=8)
    x = torch.full((1, 10), MASK)
    tr = fastmdm.sample(model, x, mask_id=MASK, strategy="confidence", steps=4, return_trace=True)
    assert torch.bincount(tr.order[0]).tolist() == [3, 3, 2, 2]
    # two blocks of 5 with 4 steps: 2 steps per block of 5 masks: 3, 2 | 3, 2
    tr = fastmdm.sample(model, x, mask_id=MASK, strategy="confidence", steps=4, block_size=5, return_trace=True)
    assert torch.bincount(tr.order[0]).tolist() == [3, 2, 3, 2]
    assert (tr.order[0, :5] < 2).all() and (tr.order[0, 5:] >= 2).all()


def test_steps_with_fewer_masks_than_steps_skip_empty_model_calls():
    model = ToyMDM(vocab=V, seed=9)
    x = torch.full((2, 6), 3)
    x[0, :2] = MASK
    tr = fastmdm.sample(model, x, mask_id=MASK, strategy="confidence", steps=5, return_trace=True)
    assert tr.nfe == 2 and model.calls == 2


def test_threshold_commits_every_confident_position_and_at_least_one():
    model = ToyMDM(vocab=V, seed=10, scale=8.0)
    x = torch.full((3, 16), MASK)
    tr = fastmdm.sample(model, x, mask_id=MASK, strategy="confidence", threshold=0.999, return_trace=True)
    assert (tr.tokens != MASK).all()
    assert tr.nfe <= 16
    lo = fastmdm.sample(model, x, mask_id=MASK, strategy="confidence", threshold=1e-6, return_trace=True)
    assert lo.nfe == 1  # every position clears a tiny threshold at once


def test_generate_blocks_start_at_the_end_of_the_prompt():
    model = ToyMDM(vocab=V, seed=11)
    prompt = torch.randint(0, MASK, (2, 5), generator=torch.Generator().manual_seed(0))
    tr = fastmdm.generate(model, prompt, gen_length=8, block_length=4, steps=4, mask_id=MASK, return_trace=True)
    assert torch.equal(tr.tokens[:, :5], prompt)
    assert (tr.order[:, :5] == -1).all()
    assert (tr.order[:, 5:9] < 2).all() and (tr.order[:, 9:] >= 2).all()
    x = torch.cat([prompt, torch.full((2, 8), MASK)], 1)
    want, order, nfe = reference_decode(model, x, MASK, "confidence", steps=4, block_size=4)
    assert torch.equal(tr.tokens, want) and tr.nfe == nfe


def test_a_batch_with_nothing_to_fill_comes_back_unchanged_with_no_model_call():
    model = ToyMDM(vocab=V)
    x = torch.randint(0, MASK, (3, 7))
    tr = fastmdm.sample(model, x, mask_id=MASK, return_trace=True)
    assert torch.equal(tr.tokens, x) and tr.nfe == 0 and model.calls == 0
    assert (tr.order == -1).all()


def test_padding_is_never_touched_and_not_attended():
    model = ToyMDM(vocab=V, seed=12)
    x = torch.full((2, 10), MASK)
    am = torch.ones(2, 10, dtype=torch.long)
    am[0, :4] = 0  # left padding that happens to hold the mask id
    tr = fastmdm.sample(model, {"input_ids": x, "attention_mask": am}, mask_id=MASK, k=2, return_trace=True)
    assert (tr.tokens[0, :4] == MASK).all() and (tr.order[0, :4] == -1).all()
    assert (tr.tokens[am.bool()] != MASK).all()
    want, _, _ = reference_decode(model, x, MASK, "margin", k=2, attention_mask=am)
    assert torch.equal(tr.tokens, want)


def test_mask_id_comes_from_the_model_config():
    model = ToyMDM(vocab=V, seed=13)
    model.config = type("Config", (), {"mask_token_id": MASK})()
    x = mixed_batch()
    assert torch.equal(fastmdm.sample(model, x), fastmdm.sample(model, x, mask_id=MASK))


def test_callable_strategy_receives_fillable_logits_and_ranks_by_its_scores():
    model = ToyMDM(vocab=V, seed=14)
    x = torch.full((2, 9), MASK)
    seen = []

    def leftmost_first(logits):
        seen.append(logits.shape)
        return -torch.arange(logits.shape[0], dtype=torch.float32)  # earlier rows of the chunk score higher

    tr = fastmdm.sample(model, x, mask_id=MASK, strategy=leftmost_first, return_trace=True)
    assert tr.order.tolist() == [list(range(9))] * 2
    assert seen[0] == (18, V) and seen[-1] == (2, V)


@pytest.mark.parametrize("alias,name", [("vanilla", "random"), ("top_prob", "confidence"), ("top_margin", "margin")])
def test_aliases_decode_like_their_strategy(alias, name):
    model = ToyMDM(vocab=V, seed=15)
    x = mixed_batch(seed=1)
    a = fastmdm.sample(model, x, mask_id=MASK, strategy=alias, generator=torch.Generator().manual_seed(3))
    b = fastmdm.sample(model, x, mask_id=MASK, strategy=name, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_logits_give_the_tokens_of_their_float32_values(dtype):
    model = ToyMDM(vocab=V, seed=16)

    class Cast(torch.nn.Module):
        def forward(self, x):
            return model(x).to(dtype)

    class CastBack(torch.nn.Module):
        def forward(self, x):
            return model(x).to(dtype).float()

    x = mixed_batch(seed=2)
    assert torch.equal(fastmdm.sample(Cast(), x, mask_id=MASK), fastmdm.sample(CastBack(), x, mask_id=MASK))


def test_guidance_on_hidden_states_gives_the_tokens_of_guidance_on_logits():
    model = ToyMDM(vocab=V, seed=17)
    prompt = torch.randint(0, MASK, (3, 6), generator=torch.Generator().manual_seed(2))
    kw = dict(gen_length=10, steps=5, block_length=5, mask_id=MASK, cfg_scale=1.5, return_trace=True)
    hidden = fastmdm.generate(model, prompt, **kw)
    logits = fastmdm.generate(LogitsOnly(model), prompt, **kw)
    assert torch.equal(hidden.tokens, logits.tokens) and torch.equal(hidden.order, logits.order)
    plain = fastmdm.generate(model, prompt, **{**kw, "cfg_scale": 0.0})
    assert not torch.equal(plain.tokens, hidden.tokens)  # guidance changed something
