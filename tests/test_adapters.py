"""fastmdm.adapters: from_hf gives a Hugging Face-style model the hidden-state path; shift_logits shifts by one."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from toy import MASK, TinyBase, TinyHF, padded_batch

import fastmdm
from fastmdm import adapters


# ----------------------------------------------------------------------------------------------
# from_hf
# ----------------------------------------------------------------------------------------------
def test_from_hf_head_of_hidden_states_equals_the_models_logits():
    model = TinyHF(seed=1)
    ids, am = padded_batch()
    adapted = adapters.from_hf(model, check_inputs=ids)
    hidden = adapted.forward_hidden(ids, attention_mask=am)
    assert hidden.shape == (3, ids.shape[1], 16)
    head = adapted.get_output_embeddings()
    assert head is model.lm_head
    torch.testing.assert_close(head(hidden), model(ids, attention_mask=am).logits)
    assert adapters.check(adapted, ids, am) <= 1e-5


def test_from_hf_delegates_attributes_and_calls_to_the_model():
    model = TinyHF(seed=1)
    model.config.mask_token_id = MASK
    adapted = adapters.from_hf(model)
    assert adapted.config.mask_token_id == MASK
    assert adapted.lm_head is model.lm_head
    ids, am = padded_batch()
    torch.testing.assert_close(adapted(ids, attention_mask=am).logits, model(ids, attention_mask=am).logits)
    assert adapters.from_hf(adapted) is adapted


def test_sample_through_from_hf_never_builds_full_logits_and_gives_the_plain_tokens():
    model = TinyHF(seed=2, boost={MASK: -30.0})
    ids, am = padded_batch(lengths=(6, 3, 8))
    x = torch.cat([ids, torch.full((3, 10), MASK)], 1)
    batch = {"input_ids": x, "attention_mask": torch.cat([am, torch.ones(3, 10, dtype=torch.long)], 1)}
    plain = fastmdm.sample(model, batch, strategy="margin", mask_id=MASK, k=2)
    adapted = adapters.from_hf(model)
    model.full_calls = 0  # from_hf's probe ran the model once
    hidden = fastmdm.sample(adapted, batch, strategy="margin", mask_id=MASK, k=2)
    assert model.full_calls == 0  # only the base model ran; the head saw only the masked positions
    assert torch.equal(hidden, plain)
    assert not bool((plain[:, -10:] == MASK).any())


def test_from_hf_refuses_a_model_without_an_lm_head():
    class NoHead(torch.nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(TypeError, match="get_output_embeddings"):
        adapters.from_hf(NoHead())


def test_from_hf_refuses_a_model_without_a_base_model():
    class NoBase(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lm_head = torch.nn.Linear(4, 8)

        def get_output_embeddings(self):
            return self.lm_head

    with pytest.raises(TypeError, match="base model"):
        adapters.from_hf(NoBase())


def test_from_hf_refuses_a_head_without_a_weight_matrix():
    model = TinyHF()
    model.get_output_embeddings = lambda: torch.nn.Identity()
    with pytest.raises(TypeError, match=r"\.weight is \[V, d\]"):
        adapters.from_hf(model)


def test_from_hf_refuses_soft_capped_logits():
    model = TinyHF()
    model.config.final_logit_softcapping = 30.0
    with pytest.raises(ValueError, match="final_logit_softcapping"):
        adapters.from_hf(model)


def test_from_hf_check_catches_logits_that_are_not_the_head_of_the_hidden_states():
    model = TinyHF()
    original = model.forward
    model.forward = lambda *a, **k: SimpleNamespace(logits=original(*a, **k).logits * 2)
    ids, am = padded_batch()
    with pytest.raises(ValueError, match="logits are not what that layer returns"):  # the probe sees it
        adapters.from_hf(model)
    with pytest.raises(ValueError, match="differs from the model's logits"):  # and so does check, on your inputs
        adapters.from_hf(model, check_inputs=ids, verify=False)
    with pytest.raises(ValueError, match="differs from the model's logits"):
        adapters.check(adapters.from_hf(model, verify=False), ids, am)


def test_forward_hidden_explains_a_base_model_that_returns_logits():
    model = TinyHF()
    model.model = TinyHFAsBase(model)
    adapted = adapters.from_hf(model, verify=False)
    ids, _ = padded_batch()
    with pytest.raises(ValueError, match="applies its head inside the base model"):
        adapted.forward_hidden(ids)


class TinyHFAsBase(torch.nn.Module):
    """A 'base model' that already returns logits (as LLaDA's does)."""

    def __init__(self, model):
        super().__init__()
        self.inner = TinyBase(40, 16, 0)
        self.head = model.lm_head

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        return (self.head(self.inner(input_ids, attention_mask).last_hidden_state),)


# ----------------------------------------------------------------------------------------------
# shift_logits
# ----------------------------------------------------------------------------------------------
def test_shift_logits_scores_each_position_with_the_output_before_it():
    model = TinyHF(seed=3)
    ids, am = padded_batch()
    logits = model(ids, attention_mask=am).logits
    shifted = adapters.shift_logits(model)(ids, attention_mask=am)
    assert torch.equal(shifted[:, 0], logits[:, 0])
    assert torch.equal(shifted[:, 1:], logits[:, :-1])


def test_shift_logits_keeps_and_shifts_the_hidden_state_path():
    adapted = adapters.shift_logits(adapters.from_hf(TinyHF(seed=3)))
    ids, am = padded_batch()
    hidden = adapted.forward_hidden(ids, attention_mask=am)
    torch.testing.assert_close(adapted.get_output_embeddings()(hidden), adapted(ids, attention_mask=am))
    assert adapters.shift_logits(adapted) is adapted


def test_shift_logits_of_a_logits_only_model_offers_no_hidden_path():
    class Plain(torch.nn.Module):
        def forward(self, x, attention_mask=None):
            return torch.randn(*x.shape, 5)

    shifted = adapters.shift_logits(Plain())
    assert getattr(shifted, "forward_hidden", None) is None


def test_sample_through_shifted_from_hf_gives_the_shifted_plain_tokens():
    model = TinyHF(seed=4, boost={MASK: -30.0})
    x = torch.cat([padded_batch(lengths=(4, 4, 4))[0], torch.full((3, 8), MASK)], 1)
    plain = fastmdm.sample(adapters.shift_logits(model), x, strategy="entropy", mask_id=MASK, steps=4)
    adapted = adapters.shift_logits(adapters.from_hf(model))
    model.full_calls = 0  # from_hf's probe ran the model once
    hidden = fastmdm.sample(adapted, x, strategy="entropy", mask_id=MASK, steps=4)
    assert model.full_calls == 0
    assert torch.equal(hidden, plain)


# ----------------------------------------------------------------------------------------------
# autocast, bf16_is_fast
# ----------------------------------------------------------------------------------------------
def _tiny_transformer():
    from fastmdm.models import Transformer, TransformerConfig
    torch.manual_seed(0)
    return Transformer(TransformerConfig(vocab_size=12, mask_token_id=11, max_len=20, d_model=32, n_layers=2,
                                         n_heads=2, d_ff=64)).eval()


def test_autocast_runs_the_body_in_bf16_and_hands_float32_hidden_states_to_the_head():
    model = _tiny_transformer()
    x = torch.randint(0, 12, (3, 20), generator=torch.Generator().manual_seed(1))
    wrapped = adapters.autocast(model)
    with torch.no_grad():
        h = wrapped.forward_hidden(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h_ref = model.forward_hidden(x)
        h32 = model.forward_hidden(x)
    assert h.dtype == torch.float32 and torch.equal(h, h_ref.float())
    assert not torch.equal(h, h32) and torch.allclose(h, h32, atol=0.1)  # bf16 rounding, nothing more
    assert wrapped.get_output_embeddings() is model.lm_head and wrapped.config is model.config
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(wrapped(x), model(x))


def test_sample_through_autocast_fills_every_mask_and_keeps_the_rest():
    model = _tiny_transformer()
    x = torch.randint(0, 11, (4, 20), generator=torch.Generator().manual_seed(2))
    x[:, ::3] = 11
    out = fastmdm.sample(adapters.autocast(model), x, strategy="margin")
    assert not bool((out == 11).any()) and torch.equal(out[x != 11], x[x != 11])


def test_autocast_refuses_a_full_precision_dtype():
    with pytest.raises(ValueError, match="bfloat16 or torch.float16"):
        adapters.autocast(_tiny_transformer(), torch.float32)


def test_bf16_is_fast_only_with_amx_on_cpu(monkeypatch):
    monkeypatch.setattr(adapters, "cpu_flags", lambda: {"avx512f", "avx512_bf16", "amx_tile", "amx_bf16"})
    assert adapters.bf16_is_fast("cpu")
    monkeypatch.setattr(adapters, "cpu_flags", lambda: {"avx2", "avx512_bf16"})  # bf16 slower than fp32 there
    assert not adapters.bf16_is_fast("cpu")
    assert not adapters.bf16_is_fast("meta")
