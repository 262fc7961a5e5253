"""`adapters.from_hf` on real Hugging Face architectures (random weights from tiny configs, no download): the same
tokens, order and calls as the plain model, for every strategy, with padding; and the heads it refuses."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from test_adapters import TinyHF

import fastmdm
from fastmdm import adapters

transformers = pytest.importorskip("transformers")

V, MASK = 64, 63
MASKED_LMS = ["bert", "roberta", "albert", "distilbert", "modernbert", "electra"]
FAMILY = {"bert": "BERT", "roberta": "RoBERTa", "albert": "ALBERT", "distilbert": "DistilBERT",
          "modernbert": "ModernBERT", "electra": "ELECTRA"}


def tiny(name):
    T = transformers
    torch.manual_seed(0)  # the models initialise from the global generator
    common = dict(vocab_size=V, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48, pad_token_id=0)
    if name == "bert":
        model = T.BertForMaskedLM(T.BertConfig(hidden_size=32, **common))
    elif name == "roberta":
        model = T.RobertaForMaskedLM(T.RobertaConfig(hidden_size=32, max_position_embeddings=64, **common))
    elif name == "albert":  # the head's transform narrows hidden_size to embedding_size
        model = T.AlbertForMaskedLM(T.AlbertConfig(hidden_size=32, embedding_size=16, **common))
    elif name == "electra":
        model = T.ElectraForMaskedLM(T.ElectraConfig(hidden_size=32, embedding_size=16, **common))
    elif name == "distilbert":
        model = T.DistilBertForMaskedLM(T.DistilBertConfig(vocab_size=V, dim=32, n_layers=2, n_heads=2,
                                                           hidden_dim=48, pad_token_id=0))
    elif name == "modernbert":
        model = T.ModernBertForMaskedLM(T.ModernBertConfig(hidden_size=32, bos_token_id=1, eos_token_id=2,
                                                           cls_token_id=1, sep_token_id=2, global_rope_theta=10.0,
                                                           local_rope_theta=10.0, initializer_range=0.3, **common))
    else:  # a Llama-style causal LM, decoded Dream-style through shift_logits
        model = T.LlamaForCausalLM(T.LlamaConfig(hidden_size=32, num_key_value_heads=1, **common))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        head = model.get_output_embeddings()
        head.weight.copy_(0.4 * torch.randn(head.weight.shape, generator=g))  # peaked: the strategies' orders differ
        if head.bias is not None:
            head.bias.copy_(torch.randn(head.bias.shape, generator=g))
        for m in model.modules():  # LayerNorms away from (1, 0), so a transform left out or misplaced shows
            if isinstance(m, torch.nn.LayerNorm) and m.weight is not None:
                m.weight.copy_(1 + 0.5 * torch.randn(m.weight.shape, generator=g))
                if m.bias is not None:
                    m.bias.copy_(0.5 * torch.randn(m.bias.shape, generator=g))
    return model.eval()


def batch():
    """Masks among real tokens in every row (so each mask sees its own context); row 0 right-padded, row 2
    left-padded (padding is never filled)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randint(3, MASK, (3, 12), generator=g)
    x[torch.rand(3, 12, generator=g) < 0.5] = MASK
    am = torch.ones_like(x)
    am[2, :2] = 0
    x[2, :2] = 0
    am[0, -2:] = 0
    x[0, -2:] = 0
    return {"input_ids": x, "attention_mask": am}


@pytest.mark.parametrize("arch", MASKED_LMS + ["llama"])
@pytest.mark.parametrize("strategy,k", [("confidence", 1), ("margin", 2), ("entropy", 1), ("random", 3)])
def test_from_hf_gives_the_plain_model_s_tokens(arch, strategy, k, one_thread):
    model = tiny(arch)
    wrap = adapters.shift_logits if arch == "llama" else (lambda m: m)
    adapted = wrap(adapters.from_hf(model))
    plain = wrap(model)
    kw = dict(strategy=strategy, mask_id=MASK, k=k, return_trace=True)
    with torch.no_grad():
        ref = fastmdm.sample(plain, batch(), generator=torch.Generator().manual_seed(1), **kw)
        out = fastmdm.sample(adapted, batch(), generator=torch.Generator().manual_seed(1), **kw)
    assert torch.equal(out.tokens, ref.tokens)
    assert torch.equal(out.order, ref.order) and out.nfe == ref.nfe
    b = batch()
    assert torch.equal(ref.tokens[b["attention_mask"] == 0], b["input_ids"][b["attention_mask"] == 0])


@pytest.mark.parametrize("arch", MASKED_LMS)
def test_the_head_s_transform_is_found_and_matters(arch, one_thread):
    model = tiny(arch)
    transform, found = adapters.head_transform(model, model.get_output_embeddings())
    assert transform is not None and f"({FAMILY[arch]}'s head)" in found
    b = batch()
    adapted = adapters.from_hf(model)
    assert adapted.final_layer is model.get_output_embeddings() and adapted.config is model.config
    assert adapters.check(adapted, b["input_ids"], b["attention_mask"]) <= 1e-4
    # without the transform the head reads other states: from_hf must see it and refuse
    with pytest.raises(ValueError, match="differs from what from_hf computes"):
        adapters.from_hf(model, transform=lambda h: h[..., :model.get_output_embeddings().weight.shape[1]])


def test_a_plain_linear_head_has_no_transform(one_thread):
    model = tiny("llama")
    assert adapters.head_transform(model, model.lm_head) == (None, "")
    assert adapters.from_hf(model).transform is None
    modern = tiny("modernbert")
    assert adapters.from_hf(modern).head is modern.head  # the model's own attribute, not the final layer


def test_decoding_never_calls_the_vocabulary_projection_module(one_thread):
    model = tiny("bert")
    adapted = adapters.from_hf(model)
    calls = []
    hook = model.cls.predictions.decoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        out = fastmdm.sample(adapted, batch(), strategy="margin", mask_id=MASK)
    finally:
        hook.remove()
    assert calls == [] and not bool((out[batch()["attention_mask"].bool()] == MASK).all())


def test_classifier_free_guidance_through_from_hf_gives_the_plain_tokens(one_thread):
    model = tiny("modernbert")
    prompt = torch.randint(3, MASK, (2, 5), generator=torch.Generator().manual_seed(4))
    am = torch.ones_like(prompt)
    am[1, :2] = 0
    kw = dict(gen_length=6, steps=6, block_length=3, mask_id=MASK, attention_mask=am, cfg_scale=1.5,
              return_trace=True)
    ref = fastmdm.generate(model, prompt, **kw)
    out = fastmdm.generate(adapters.from_hf(model), prompt, **kw)
    assert torch.equal(out.tokens, ref.tokens) and torch.equal(out.order, ref.order)


# ----------------------------------------------------------------------------------------------
# heads from_hf refuses, naming what it found
# ----------------------------------------------------------------------------------------------
def test_logits_changed_after_the_head_are_refused(one_thread):
    model = tiny("bert")
    original = model.cls.predictions.forward
    model.cls.predictions.forward = lambda h: original(h) * 2  # a post-processing step from_hf cannot see
    with pytest.raises(ValueError, match=r"found BertModel as the base model, Linear cls\.predictions\.decoder as "
                                         r"the final head layer and the transform cls\.predictions\.transform "
                                         r"\(BERT's head\), but BertForMaskedLM's logits are not what that layer"):
        adapters.from_hf(model)
    model = tiny("llama")
    original_forward = model.forward
    model.forward = lambda *a, **k: SimpleNamespace(logits=original_forward(*a, **k).logits / 3)
    with pytest.raises(ValueError, match="no transform before the head, but .* logits are not what that layer"):
        adapters.from_hf(model)


def test_a_bias_outside_the_final_layer_is_refused():
    T = transformers
    model = T.EsmForMaskedLM(T.EsmConfig(vocab_size=V, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=48, pad_token_id=0, mask_token_id=MASK,
                                         max_position_embeddings=64, position_embedding_type="absolute")).eval()
    with pytest.raises(ValueError, match=r"lm_head\.bias is a parameter of its own, not lm_head\.decoder\.bias"):
        adapters.from_hf(model)


def test_a_final_layer_that_is_not_a_plain_linear_is_refused():
    class ScaledLinear(torch.nn.Linear):
        def forward(self, h):
            return super().forward(h) * 0.5

    model = tiny("bert")
    old = model.cls.predictions.decoder
    model.cls.predictions.decoder = ScaledLinear(old.in_features, old.out_features)
    with pytest.raises(TypeError, match=r"cls\.predictions\.decoder is a ScaledLinear, not a torch\.nn\.Linear"):
        adapters.from_hf(model)


def test_soft_capped_logits_are_refused_from_the_config():
    T = transformers
    model = T.Gemma2ForCausalLM(T.Gemma2Config(vocab_size=V, hidden_size=32, num_hidden_layers=1,
                                               num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                               intermediate_size=48, pad_token_id=0, final_logit_softcapping=30.0))
    with pytest.raises(ValueError, match="config.final_logit_softcapping=30.0"):
        adapters.from_hf(model.eval())


def test_a_model_in_training_mode_with_dropout_is_asked_to_call_eval():
    with pytest.raises(ValueError, match=r"training mode and has dropout.*model\.eval\(\)"):
        adapters.from_hf(tiny("bert").train())


# ----------------------------------------------------------------------------------------------
# an unknown head: refused, or supported through transform=
# ----------------------------------------------------------------------------------------------
class TanhHead(TinyHF):
    """A head from_hf does not know: tanh(2 h) before the final linear layer."""

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        hidden = self.model(input_ids, attention_mask=attention_mask, position_ids=position_ids).last_hidden_state
        return SimpleNamespace(logits=self.lm_head(torch.tanh(2 * hidden)))


class CumsumHead(TinyHF):
    """A 'transform' that mixes positions."""

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        hidden = self.model(input_ids, attention_mask=attention_mask, position_ids=position_ids).last_hidden_state
        return SimpleNamespace(logits=self.lm_head(hidden.cumsum(1)))


class LastRowHead(TinyHF):
    """Scores only the last position (as a causal LM generating one token does)."""

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        hidden = self.model(input_ids, attention_mask=attention_mask, position_ids=position_ids).last_hidden_state
        return SimpleNamespace(logits=self.lm_head(hidden[:, -1:]).expand(-1, input_ids.shape[1], -1))


def test_an_unknown_transform_is_refused_and_works_once_passed(one_thread):
    model = TanhHead(vocab=40, seed=5, boost={39: -30.0})
    with pytest.raises(ValueError, match=r"found TinyBase as the base model, Linear lm_head as the final head layer "
                                         r"and no transform before the head, but what TanhHead feeds that layer "
                                         r"differs .*transform=\.\.\."):
        adapters.from_hf(model)
    adapted = adapters.from_hf(model, transform=lambda h: torch.tanh(2 * h))
    x = torch.randint(0, 39, (3, 10), generator=torch.Generator().manual_seed(6))
    x[:, 3:] = 39
    am = torch.ones_like(x)
    am[1, :2] = 0
    b = {"input_ids": x, "attention_mask": am}
    for strategy, k in (("confidence", 1), ("margin", 3)):
        ref = fastmdm.sample(model, b, strategy=strategy, mask_id=39, k=k, return_trace=True)
        out = fastmdm.sample(adapted, b, strategy=strategy, mask_id=39, k=k, return_trace=True)
        assert torch.equal(out.tokens, ref.tokens) and torch.equal(out.order, ref.order) and out.nfe == ref.nfe


def test_a_transform_that_mixes_positions_is_refused():
    with pytest.raises(ValueError, match="not position-wise"):
        adapters.from_hf(CumsumHead(), transform=lambda h: h.cumsum(1))


def test_a_head_applied_to_some_positions_only_is_refused():
    with pytest.raises(ValueError, match=r"that layer reads \(1, 1, 16\) for input ids of shape \(1, 8\)"):
        adapters.from_hf(LastRowHead())


def test_a_transform_that_is_not_callable_is_refused():
    with pytest.raises(TypeError, match="transform: must be a callable"):
        adapters.from_hf(TinyHF(), transform="gelu")
