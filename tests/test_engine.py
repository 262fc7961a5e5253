"""The engine's public interface (custom plans and scorers), its edge cases, Fast-dLLM's factor rule and the
block caches, each against a plain reference."""
from __future__ import annotations

import math

import pytest
import torch
from toy import FixedLogits, ToyAttention, ToyMDM

import fastmdm
from fastmdm import engine, ops, plans
from fastmdm.cache import KVCache

V, MASK = 11, 10


# ----------------------------------------------------------------------------------------------
# a custom plan and a custom scorer, written against public names only
# ----------------------------------------------------------------------------------------------
class LeftToRight:
    """A plan: one position per row per step, always the leftmost eligible one (ignores scores)."""

    def prepare(self, n_eligible, new_group):
        return n_eligible > 0

    def choose(self, scores, eligible, backend):
        first = eligible.to(torch.int8).argmax(-1)
        return torch.zeros_like(eligible).scatter(-1, first[:, None], True) & eligible


class SecondBest:
    """A scorer: each position gets its second most likely token, scored by its logit."""

    def __call__(self, chunk: engine.Chunk):
        top2 = torch.topk(chunk.logits().float(), 2, dim=-1)
        return top2.indices[:, 1], top2.values[:, 1]


def test_a_custom_plan_and_scorer_plug_into_decode():
    model = ToyMDM(vocab=V, seed=3)
    x = torch.full((2, 6), MASK)
    x[1, 2] = 4
    fillable = x == MASK
    trace = fastmdm.decode(model, x, None, fillable, torch.zeros_like(x), plan=LeftToRight(), scorer=SecondBest(),
                           mask_id=MASK)
    assert isinstance(LeftToRight(), engine.Plan) and isinstance(SecondBest(), engine.Scorer)
    # the reference: fill left to right with the second best token of the current model output
    ref = x.clone()
    for b in range(2):
        for i in range(6):
            if fillable[b, i]:
                logits = model(ref[b:b + 1])[0, i]
                ref[b, i] = torch.topk(logits, 2).indices[1]
    assert torch.equal(trace.tokens, ref)
    assert trace.nfe == 6  # row 0 has 6 masks, row 1 five: six steps
    assert torch.equal(trace.order[0], torch.arange(6))


# ----------------------------------------------------------------------------------------------
# edge cases
# ----------------------------------------------------------------------------------------------
def test_an_empty_batch_comes_back_unchanged_without_a_call():
    model = ToyMDM(vocab=V)
    x = torch.zeros((3, 0), dtype=torch.long)
    trace = fastmdm.sample(model, x, mask_id=MASK, return_trace=True)
    assert trace.tokens.shape == (3, 0) and trace.nfe == 0 and model.calls == 0


def test_a_batch_without_masks_comes_back_unchanged_without_a_call():
    model = ToyMDM(vocab=V)
    x = torch.randint(0, MASK, (2, 5))
    trace = fastmdm.sample(model, x, mask_id=MASK, return_trace=True)
    assert torch.equal(trace.tokens, x) and trace.nfe == 0 and model.calls == 0


def test_an_integer_attention_mask_must_hold_zeros_and_ones():
    x = torch.full((1, 4), MASK)
    with pytest.raises(ValueError, match="attention_mask: must hold only 0 .* found 2"):
        fastmdm.sample(ToyMDM(vocab=V), {"input_ids": x, "attention_mask": torch.tensor([[1, 1, 2, 1]])},
                       mask_id=MASK)


def test_a_mask_id_outside_the_embeddings_is_refused_before_any_call():
    class WithEmbeddings(ToyMDM):
        def get_input_embeddings(self):
            return torch.nn.Embedding(V, 4)

    model = WithEmbeddings(vocab=V)
    with pytest.raises(ValueError, match=f"mask_id: 126336 is outside the model's vocabulary of {V}"):
        fastmdm.compat.llada.generate(model, torch.tensor([[1, 2]]), steps=2, gen_length=2, block_length=2)
    with pytest.raises(ValueError, match=f"mask_id: {V} is outside"):
        fastmdm.sample(model, torch.full((1, 3), V), mask_id=V)
    assert model.calls == 0


def test_all_minus_inf_logits_get_their_own_message():
    row = torch.full((V,), -math.inf)
    row[MASK] = 0.0  # only the mask token is possible, and it is never produced
    with pytest.raises(ValueError, match="every logit but the mask token's is -inf at step 0"):
        fastmdm.sample(FixedLogits(row), torch.full((1, 3), MASK), mask_id=MASK)


def test_a_callable_strategy_returning_nan_is_blamed_not_the_model():
    with pytest.raises(ValueError, match="strategy: the scorer returned a NaN score at step 0"):
        fastmdm.sample(ToyMDM(vocab=V), torch.full((1, 3), MASK), mask_id=MASK,
                       strategy=lambda logits: torch.full((logits.shape[0],), math.nan))


def test_a_model_on_the_meta_device_or_another_device_is_refused_before_any_call():
    model = ToyMDM(vocab=V).to("meta")
    with pytest.raises(ValueError, match="meta"):
        fastmdm.sample(model, torch.full((1, 3), MASK), mask_id=MASK)
    with pytest.raises(ValueError, match="batch: is on the 'meta' device"):
        fastmdm.sample(ToyMDM(vocab=V), torch.full((1, 3), MASK, device="meta"), mask_id=MASK)


# ----------------------------------------------------------------------------------------------
# Fast-dLLM's factor rule
# ----------------------------------------------------------------------------------------------
def factor_count_reference(conf: list[float], factor: float) -> int:
    """How many positions Fast-dLLM's factor rule fills, written as its per-row loop."""
    ranked = sorted(conf, reverse=True)
    needs = [-1.0] + [1 - factor / (n + 1) for n in range(2, len(ranked) + 1)]
    top = len(ranked) - 1
    for i, (c, need) in enumerate(zip(ranked, needs)):
        if c < need:
            top = i
            break
    return top + 1 if top in (0, len(ranked) - 1) else top


@pytest.mark.parametrize("seed", range(12))
def test_the_factor_plan_fills_what_fast_dllm_s_rule_fills(seed):
    g = torch.Generator().manual_seed(seed)
    B, L = 5, 9
    scores = 1 - torch.rand(B, L, generator=g) ** 3 * 0.6
    eligible = torch.rand(B, L, generator=g) < 0.7
    eligible[:, 0] = True
    factor = [0.5, 1.0, 2.0, 4.0][seed % 4]
    plan = plans.FactorPlan(factor)
    plan.prepare(eligible.sum(-1), torch.ones(B, dtype=torch.bool))
    chosen = plan.choose(torch.where(eligible, scores, -math.inf), eligible, "torch")
    for b in range(B):
        conf = scores[b][eligible[b]].tolist()
        n = factor_count_reference(conf, factor)
        assert int(chosen[b].sum()) == n
        best = torch.topk(torch.where(eligible[b], scores[b], -math.inf), n).indices
        assert bool(chosen[b, best].all())


def test_factor_is_a_schedule_of_sample_and_generate():
    model = ToyMDM(vocab=V, seed=2)
    out = fastmdm.generate(model, torch.tensor([[1, 2, 3]]), gen_length=8, block_length=4, factor=1.0,
                           mask_id=MASK, return_trace=True)
    assert not bool((out.tokens == MASK).any()) and 2 <= out.nfe <= 8
    with pytest.raises(ValueError, match="only one schedule"):
        fastmdm.sample(model, torch.full((1, 3), MASK), mask_id=MASK, factor=1.0, threshold=0.9)
    with pytest.raises(ValueError, match="factor: must be > 0"):
        fastmdm.sample(model, torch.full((1, 3), MASK), mask_id=MASK, factor=0.0)


# ----------------------------------------------------------------------------------------------
# block caches, against a plain loop of Fast-dLLM's semantics
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def cached_reference(model, prompt, gen_length, block, steps_per_block, mode):
    """One row, confidence order, LLaDA's step split: a full forward at each block's first step, then only the
    block (dual) or the block and the rest (prefix), attending to the keys/values of that first step."""
    x = torch.cat([prompt, torch.full((1, gen_length), MASK)], 1)
    P, L = prompt.shape[1], x.shape[1]
    for b0 in range(P, L, block):
        b1 = b0 + block
        n = block
        counts = [n // steps_per_block + (s < n % steps_per_block) for s in range(steps_per_block)]
        cache = KVCache(mode, 1)
        for s, count in enumerate(counts):
            end = b1 if mode == "dual" else L
            cache.begin(torch.arange(1), b0, end, refresh=s == 0)
            h = model.forward_hidden(x, cache=cache)  # [1, end - b0, d]
            logits = model.head(h[0, :block])
            logits[:, MASK] = -math.inf
            p = torch.softmax(logits, -1)
            conf, tok = p.max(-1)
            masked = x[0, b0:b1] == MASK
            conf = torch.where(masked, conf, -math.inf)
            pick = torch.topk(conf, count).indices
            x[0, b0 + pick] = tok[pick]
    return x


@pytest.mark.parametrize("mode", ["prefix", "dual"])
@pytest.mark.parametrize("seed", range(3))
def test_generate_with_a_cache_follows_fast_dllm_s_cached_loop(mode, seed):
    model = ToyAttention(vocab=V, seed=seed)
    prompt = torch.randint(0, MASK, (1, 5), generator=torch.Generator().manual_seed(seed))
    trace = fastmdm.generate(model, prompt, gen_length=12, block_length=4, steps=6, mask_id=MASK, cache=mode,
                             return_trace=True)
    assert torch.equal(trace.tokens, cached_reference(model, prompt, 12, 4, 2, mode))
    assert trace.nfe == 6
    # each block's first call computes all 17 positions; the others only the window
    window = (lambda b: 4) if mode == "dual" else (lambda b: 17 - 5 - 4 * b)
    expected = []
    for b in range(3):
        expected += [17, window(b)]
    assert model.computed[-6:] == expected


def test_a_cache_on_a_model_without_the_protocol_is_refused():
    with pytest.raises(ValueError, match="cache: 'dual' needs a model that implements fastmdm's block cache"):
        fastmdm.generate(ToyMDM(vocab=V), torch.tensor([[1, 2]]), gen_length=4, mask_id=MASK, cache="dual")
    with pytest.raises(ValueError, match="cache: 'both' is not one of"):
        fastmdm.generate(ToyAttention(vocab=V), torch.tensor([[1, 2]]), gen_length=4, mask_id=MASK, cache="both")


def test_cached_batches_decode_each_row_like_the_row_alone_when_rows_stay_in_step():
    model = ToyAttention(vocab=V, seed=5)
    prompts = torch.randint(0, MASK, (3, 4), generator=torch.Generator().manual_seed(1))
    together = fastmdm.generate(model, prompts, gen_length=8, block_length=4, steps=4, mask_id=MASK, cache="dual")
    for b in range(3):
        alone = fastmdm.generate(model, prompts[b:b + 1], gen_length=8, block_length=4, steps=4, mask_id=MASK,
                                 cache="dual")
        assert torch.equal(together[b:b + 1], alone)


def test_threshold_decoding_with_a_cache_fills_everything_in_fewer_calls():
    model = ToyAttention(vocab=V, seed=7, scale=12.0)
    prompts = torch.randint(0, MASK, (2, 4), generator=torch.Generator().manual_seed(2))
    trace = fastmdm.generate(model, prompts, gen_length=12, block_length=4, threshold=0.9, mask_id=MASK,
                             cache="dual", return_trace=True)
    assert not bool((trace.tokens == MASK).any()) and trace.nfe < 12
    assert torch.equal(trace.tokens[:, :4], prompts)


def test_gumbel_is_finite_and_standard():
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        z = ops.gumbel((200_000,), generator=g, dtype=dtype)
        assert z.dtype == dtype and bool(torch.isfinite(z).all())
        assert abs(float(z.mean()) - 0.5772) < 0.02 and abs(float(z.var()) - math.pi ** 2 / 6) < 0.05


@pytest.mark.parametrize("start,end", [(0, 9), (4, 8), (4, 13)])
def test_a_shifted_model_under_a_cache_reads_one_position_back(start, end):
    model = fastmdm.adapters.shift_logits(ToyAttention(vocab=V, seed=8))
    x = torch.randint(0, V, (2, 13), generator=torch.Generator().manual_seed(0))
    full = model.forward_hidden(x)
    kv = KVCache("dual", 2)
    kv.begin(torch.arange(2), start, end, refresh=True)
    assert torch.allclose(model.forward_hidden(x, cache=kv), full[:, start:end], atol=1e-6)
    kv.begin(torch.arange(2), start, end, refresh=False)
    assert torch.allclose(model.forward_hidden(x, cache=kv), full[:, start:end], atol=1e-6)


@pytest.mark.parametrize("positions", ["learned", "rotary", "sudoku"])
def test_the_transformer_implements_the_block_cache(positions):
    import fastmdm.sudoku  # noqa: F401  (registers the "sudoku" position scheme)
    from fastmdm.models.transformer import Transformer, TransformerConfig

    L = 81 if positions == "sudoku" else 20
    model = Transformer(TransformerConfig(vocab_size=12, mask_token_id=11, max_len=L, d_model=32, n_layers=2,
                                          n_heads=4, d_ff=48, positions=positions)).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 12, (3, L), generator=g)
    am = torch.ones(3, L, dtype=torch.long)
    am[1, :3] = 0
    with torch.no_grad():
        full = model.forward_hidden(x, am)
        for start, end in [(4, 12), (4, L), (0, L)]:
            kv = KVCache("dual", 3)
            kv.begin(torch.arange(3), start, end, refresh=True)
            assert torch.allclose(model.forward_hidden(x, am, cache=kv), full[:, start:end], atol=1e-5)
            kv.begin(torch.tensor([0, 2]), start, end, refresh=False)  # a subset of the rows
            out = model.forward_hidden(x[[0, 2]], am[[0, 2]], cache=kv)
            assert torch.allclose(out, full[[0, 2], start:end], atol=1e-5)


# ----------------------------------------------------------------------------------------------
# the LM head's output buffer
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("with_bias", [False, True])
def test_the_lm_head_written_into_a_buffer_is_f_linear_bit_for_bit(with_bias):
    g = torch.Generator().manual_seed(0)
    h, w = torch.randn(7, 16, generator=g), torch.randn(50, 16, generator=g)
    b = torch.randn(50, generator=g) if with_bias else None
    buffer = torch.full((9 * 50,), math.nan)
    z = engine.lm_head(h, w, b, buffer)
    assert z.data_ptr() == buffer.data_ptr() and z.shape == (7, 50)
    assert torch.equal(z, torch.nn.functional.linear(h, w, b))


def test_the_lm_head_makes_a_new_tensor_when_the_buffer_cannot_hold_the_product():
    h, w = torch.randn(7, 16), torch.randn(50, 16)
    for buffer in (torch.empty(6 * 50), torch.empty(7 * 50, dtype=torch.float64)):
        z = engine.lm_head(h, w, None, buffer)
        assert z.data_ptr() != buffer.data_ptr() and torch.equal(z, torch.nn.functional.linear(h, w))
    z = engine.lm_head(h.bfloat16(), w.bfloat16(), None, torch.empty(7 * 50))
    assert z.dtype == torch.bfloat16
