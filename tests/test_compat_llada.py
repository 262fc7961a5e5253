"""fastmdm.compat.llada.generate against LLaDA's published algorithm, re-derived here as a plain per-row loop."""
from __future__ import annotations

import math

import pytest
import torch
from toy import MASK, RandomLogits, TinyHF, padded_batch

from fastmdm import adapters, engine
from fastmdm.compat import llada

EOS, EOT = 5, 6


def gen(*args, **kwargs):
    """llada.generate with the tiny models' mask id."""
    kwargs.setdefault("mask_id", MASK)
    return llada.generate(*args, **kwargs)


@torch.no_grad()
def llada_reference(model, prompt, attention_mask=None, steps=8, gen_length=8, block_length=8, cfg_scale=0.0,
                    mask_id=MASK, logits_eos_inf=False, confidence_eos_eot_inf=False, eos=EOS, eot=EOT):
    """LLaDA's generate at temperature 0 with 'low_confidence' remasking, written from its description: blocks
    from the end of the prompt, steps // num_blocks steps per block, the block's n masks split as n // S per step
    and one more in the first n % S steps; each step fills the masked positions up to the block's end whose argmax
    token has the highest softmax probability (ties: lower position)."""
    B, P = prompt.shape
    x = torch.cat([prompt, torch.full((B, gen_length), mask_id)], 1)
    am = None if attention_mask is None else torch.cat([attention_mask, torch.ones(B, gen_length).long()], 1)
    is_prompt = x != mask_id
    num_blocks = gen_length // block_length
    S = steps // num_blocks
    for blk in range(num_blocks):
        start, end = P + blk * block_length, P + (blk + 1) * block_length
        n_block = [int((x[r, start:end] == mask_id).sum()) for r in range(B)]
        for i in range(S):
            if cfg_scale > 0:
                un = x.clone()
                un[is_prompt] = mask_id
                am2 = None if am is None else torch.cat([am, am])
                both = model(torch.cat([x, un]), attention_mask=am2).logits
                cond, uncond = both[:B], both[B:]
                logits = uncond + (cfg_scale + 1) * (cond - uncond)
            else:
                logits = model(x, attention_mask=am).logits
            for r in range(B):
                n = n_block[r]
                k = n // S + (1 if i < n % S else 0)
                candidates = []
                for j in range(end):
                    if int(x[r, j]) != mask_id:
                        continue
                    row = logits[r, j].clone()
                    if logits_eos_inf:
                        row[eos] = -math.inf
                    token = int(torch.argmax(row))
                    if confidence_eos_eot_inf:
                        row[eos] = -math.inf
                        row[eot] = -math.inf
                    conf = float(torch.softmax(row, dim=-1)[token])
                    candidates.append((-conf, j, token))
                for _, j, token in sorted(candidates)[:k]:
                    x[r, j] = token
    return x


def model_for(seed, **boost):
    b = {MASK: -30.0}  # the original never picks the mask token either
    b.update({int(k[1:]): v for k, v in boost.items()})
    return TinyHF(seed=seed, boost=b)


# ----------------------------------------------------------------------------------------------
# exact tokens at temperature 0
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("steps,gen_length,block_length", [
    (8, 8, 8),     # one block, one token per step
    (4, 10, 10),   # uneven split: 3, 3, 2, 2
    (8, 16, 4),    # four blocks, two steps each
    (12, 8, 4),    # more steps than masks: some steps fill nothing
    (3, 9, 3),     # three blocks, one step each (whole block at once)
])
def test_low_confidence_gives_llada_tokens_on_a_left_padded_batch(steps, gen_length, block_length):
    model = model_for(seed=steps + gen_length)
    prompt, am = padded_batch(lengths=(5, 2, 7))
    ours = gen(model, prompt, am, steps=steps, gen_length=gen_length, block_length=block_length)
    ref = llada_reference(model, prompt, am, steps=steps, gen_length=gen_length, block_length=block_length)
    assert torch.equal(ours, ref)
    assert torch.equal(ours[:, :prompt.shape[1]], prompt)
    assert not bool((ours == MASK).any())


def test_without_attention_mask_gives_llada_tokens():
    model = model_for(seed=11)
    prompt = torch.randint(1, 30, (2, 6), generator=torch.Generator().manual_seed(3))
    ours = gen(model, prompt, steps=6, gen_length=12, block_length=6)
    assert torch.equal(ours, llada_reference(model, prompt, None, steps=6, gen_length=12, block_length=6))


def test_padding_is_untouched_and_reaches_the_model_as_its_attention_mask():
    model = model_for(seed=12)
    prompt, am = padded_batch(lengths=(3, 6))
    ours = gen(model, prompt, am, steps=4, gen_length=8, block_length=4)
    assert torch.equal(ours[:, :6], prompt)
    seen_mask = model.model.seen[0][0]
    assert torch.equal(seen_mask, torch.cat([am, torch.ones(2, 8).long()], 1))


@pytest.mark.parametrize("with_mask", [True, False])
def test_cfg_gives_llada_tokens(with_mask):
    model = model_for(seed=13)
    prompt, am = padded_batch(lengths=(4, 6, 3))
    am = am if with_mask else None
    ours = gen(model, prompt, am, steps=8, gen_length=8, block_length=4, cfg_scale=1.5)
    ref = llada_reference(model, prompt, am, steps=8, gen_length=8, block_length=4, cfg_scale=1.5)
    assert torch.equal(ours, ref)
    plain = gen(model, prompt, am, steps=8, gen_length=8, block_length=4)
    assert not torch.equal(ours, plain)  # guidance changed something, so the test above tested it


@pytest.mark.parametrize("logits_eos_inf,confidence_eos_eot_inf", [(True, False), (False, True), (True, True)])
def test_eos_options_give_llada_tokens(logits_eos_inf, confidence_eos_eot_inf):
    model = model_for(seed=14, _5=2.5, _6=2.5)  # EOS and EOT are often the argmax
    prompt, am = padded_batch(lengths=(4, 6, 3))
    kw = dict(steps=6, gen_length=12, block_length=6, logits_eos_inf=logits_eos_inf,
              confidence_eos_eot_inf=confidence_eos_eot_inf)
    ours = gen(model, prompt, am, eos_id=EOS, eot_id=EOT, **kw)
    assert torch.equal(ours, llada_reference(model, prompt, am, **kw))
    plain = gen(model, prompt, am, steps=6, gen_length=12, block_length=6)
    assert bool(((plain == EOS) | (plain == EOT)).any())  # the options had something to act on
    assert not torch.equal(ours, plain)
    if logits_eos_inf:
        assert not bool((ours[:, prompt.shape[1]:] == EOS).any())


def test_hidden_state_model_through_from_hf_gives_the_logits_path_tokens():
    model = model_for(seed=15)
    prompt, am = padded_batch(lengths=(5, 2, 7))
    plain = gen(model, prompt, am, steps=8, gen_length=16, block_length=8)
    adapted = adapters.from_hf(model)
    model.full_calls = 0  # from_hf's probe ran the model once
    hidden = gen(adapted, prompt, am, steps=8, gen_length=16, block_length=8)
    assert model.full_calls == 0
    assert torch.equal(hidden, plain)


# ----------------------------------------------------------------------------------------------
# random remasking, temperature, the mask token
# ----------------------------------------------------------------------------------------------
class MaskCounter(torch.nn.Module):
    """Records how many masks each row holds at every call."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.counts, self.inputs = inner, [], []

    def forward(self, x, attention_mask=None):
        self.counts.append((x == MASK).sum(-1).tolist())
        self.inputs.append(x.clone())
        return self.inner(x, attention_mask=attention_mask)


@pytest.mark.parametrize("remasking", ["low_confidence", "random"])
def test_each_step_fills_llada_counts(remasking):
    model = MaskCounter(model_for(seed=16))
    prompt, am = padded_batch(lengths=(3, 5))
    out = gen(model, prompt, am, steps=6, gen_length=10, block_length=5, remasking=remasking,
                         generator=torch.Generator().manual_seed(0))
    # two blocks of 5 masks over 3 steps each: 2, 2, 1 per block
    assert [c[0] for c in model.counts] == [10, 8, 6, 5, 3, 1]
    assert all(c[0] == c[1] for c in model.counts)
    assert not bool((out == MASK).any())


def test_random_remasking_picks_positions_uniformly():
    model = MaskCounter(model_for(seed=17))
    runs = 400
    prompt = torch.tensor([[3, 4, 7]]).expand(runs, 3)
    gen(model, prompt, steps=4, gen_length=4, block_length=4, remasking="random",
        generator=torch.Generator().manual_seed(1))
    filled_first = (model.inputs[1][:, 3:] != MASK).long().argmax(-1)  # one position per row after step 0
    first = torch.bincount(filled_first, minlength=4).float()
    # 100 expected per position, sd ~8.7: a 4-sd band
    assert bool(((first - runs / 4).abs() <= 35).all()), first


def test_low_confidence_is_deterministic_in_its_order():
    model = MaskCounter(model_for(seed=17))
    prompt = torch.tensor([[3, 4, 7]])
    seen = set()
    for seed in range(5):
        model.inputs.clear()
        gen(model, prompt, steps=4, gen_length=4, block_length=4, generator=torch.Generator().manual_seed(seed))
        seen.add(int((model.inputs[1][0, 3:] != MASK).nonzero()[0, 0]))
    assert len(seen) == 1


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_temperature_tokens_follow_softmax_of_logits_over_temperature(temperature):
    model = model_for(seed=18)
    n = 4000
    prompt = torch.tensor([[3, 4, 7]]).expand(n, 3)
    out = gen(model, prompt, steps=1, gen_length=1, block_length=1, temperature=temperature,
                         generator=torch.Generator().manual_seed(2))
    logits = model(torch.tensor([[3, 4, 7, MASK]])).logits[0, -1]
    p = torch.softmax(logits / temperature, -1)
    freq = torch.bincount(out[:, -1], minlength=p.shape[0]).float() / n
    band = 4 * (p * (1 - p) / n).sqrt() + 2 / n
    assert bool(((freq - p).abs() <= band).all()), (freq - p).abs().max()


def test_temperature_sampling_is_reproducible_with_a_seeded_generator():
    model = model_for(seed=19)
    prompt, am = padded_batch(lengths=(4, 6))
    kw = dict(steps=4, gen_length=8, block_length=4, temperature=1.0)
    a = gen(model, prompt, am, generator=torch.Generator().manual_seed(7), **kw)
    b = gen(model, prompt, am, generator=torch.Generator().manual_seed(7), **kw)
    c = gen(model, prompt, am, generator=torch.Generator().manual_seed(8), **kw)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("remasking", ["low_confidence", "random"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_scoring_a_few_rows_at_a_time_gives_the_tokens_of_the_whole_chunk(monkeypatch, remasking, temperature):
    model = adapters.from_hf(model_for(seed=23))  # the hidden-state path: one chunk holds every eligible position
    prompt, am = padded_batch(lengths=(4, 6, 3))
    kw = dict(steps=4, gen_length=8, block_length=4, temperature=temperature, remasking=remasking,
              logits_eos_inf=True, confidence_eos_eot_inf=True, eos_id=EOS, eot_id=EOT)
    whole = gen(model, prompt, am, generator=torch.Generator().manual_seed(3), **kw)
    V = model.get_output_embeddings().weight.shape[0]
    monkeypatch.setattr(engine, "LOGITS_CHUNK_BYTES", 4 * V * 2)  # the scorer's blocks: 2 rows
    assert torch.equal(gen(model, prompt, am, generator=torch.Generator().manual_seed(3), **kw), whole)


def test_mask_token_is_never_produced_even_when_the_model_prefers_it():
    model = TinyHF(seed=20, boost={MASK: 30.0})
    prompt, am = padded_batch(lengths=(4, 6))
    for temperature in (0.0, 1.0):
        out = gen(model, prompt, am, steps=4, gen_length=8, block_length=4, temperature=temperature)
        assert not bool((out[:, prompt.shape[1]:] == MASK).any())


def test_mask_tokens_inside_the_prompt_are_filled_with_the_first_block():
    model = MaskCounter(model_for(seed=21))
    prompt = torch.tensor([[3, MASK, 7, 8], [3, 4, 7, 8]])
    out = gen(model, prompt, steps=4, gen_length=8, block_length=4)
    assert not bool((out == MASK).any())
    assert out[0, [0, 2, 3]].tolist() == [3, 7, 8] and torch.equal(out[1, :4], prompt[1])
    assert model.counts[2][0] == 4  # after the first block's two steps only the second block is left


def test_a_bfloat16_model_decodes_with_float32_scores():
    model = model_for(seed=22).to(torch.bfloat16)
    prompt, am = padded_batch(lengths=(4, 6))
    out = gen(model, prompt, am, steps=4, gen_length=8, block_length=4, cfg_scale=0.5, confidence_eos_eot_inf=True,
              eos_id=EOS, eot_id=EOT)
    assert out.shape == (2, 14) and out.dtype == torch.long and not bool((out == MASK).any())


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,error,match", [
    (dict(gen_length=10, block_length=4), ValueError, "block_length: gen_length=10 is not a multiple"),
    (dict(steps=5, gen_length=8, block_length=4), ValueError, "steps: 5 is not a multiple of the 2 blocks"),
    (dict(steps=0), ValueError, "steps: must be >= 1"),
    (dict(gen_length=0), ValueError, "gen_length: must be >= 1"),
    (dict(remasking="entropy"), ValueError, "remasking: unknown 'entropy'"),
    (dict(temperature=-1.0), ValueError, "temperature: must be >= 0"),
    (dict(cfg_scale=-0.5), ValueError, "cfg_scale: must be >= 0"),
    (dict(mask_id=100), ValueError, "mask_id: 100 is outside the model's vocabulary of 40"),
    (dict(logits_eos_inf=True), ValueError, "eos_id: 126081 is outside the model's vocabulary of 40"),
    (dict(confidence_eos_eot_inf=True, eos_id=EOS), ValueError, "eot_id: 126348 is outside"),
    (dict(logits_eos_inf=1), TypeError, "logits_eos_inf: must be True or False"),
    (dict(generator=3), TypeError, "generator: must be a torch.Generator"),
    (dict(attention_mask=torch.ones(2, 3)), ValueError, "attention_mask: must be a tensor of the prompt's shape"),
])
def test_bad_arguments_are_named_with_the_fix(kwargs, error, match):
    kw = dict(steps=4, gen_length=8, block_length=8)
    kw.update(kwargs)
    with pytest.raises(error, match=match):
        gen(RandomLogits(), torch.tensor([[3, 4, 7]]), **kw)


def test_a_one_dimensional_prompt_is_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"prompt\[None\]"):
        gen(model_for(seed=0), torch.tensor([3, 4, 7]), steps=4, gen_length=4, block_length=4)


def test_a_float_prompt_is_refused():
    with pytest.raises(TypeError, match="prompt: must hold integer token ids"):
        gen(model_for(seed=0), torch.tensor([[3.0, 4.0]]), steps=4, gen_length=4, block_length=4)


def test_nan_logits_are_an_error_naming_the_step():
    class NaNModel(torch.nn.Module):
        def forward(self, x, attention_mask=None):
            return torch.full((*x.shape, 40), math.nan)

    with pytest.raises(ValueError, match="NaN logits at step 0"):
        gen(NaNModel(), torch.tensor([[3, 4, 7]]), steps=4, gen_length=4, block_length=4)
