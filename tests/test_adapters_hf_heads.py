"""`adapters.from_hf` on real Hugging Face architectures (random weights from tiny configs, no download): the same
tokens, order and calls as the plain model, for every strategy, with padding."""
from __future__ import annotations

import pytest
import torch

import fastmdm
from fastmdm import adapters

transformers = pytest.importorskip("transformers")

V, MASK = 64, 63


def tiny(name):
    T = transformers
    common = dict(vocab_size=V, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                  pad_token_id=0)
    if name == "bert":
        model = T.BertForMaskedLM(T.BertConfig(hidden_size=32, **common))
    elif name == "roberta":
        model = T.RobertaForMaskedLM(T.RobertaConfig(hidden_size=32, max_position_embeddings=64, **common))
    elif name == "distilbert":
        model = T.DistilBertForMaskedLM(T.DistilBertConfig(vocab_size=V, dim=32, n_layers=2, n_heads=2,
                                                           hidden_dim=48, pad_token_id=0))
    elif name == "modernbert":
        model = T.ModernBertForMaskedLM(T.ModernBertConfig(hidden_size=32, bos_token_id=1, eos_token_id=2,
                                                           cls_token_id=1, sep_token_id=2, **common))
    else:  # a Llama-style causal LM, decoded Dream-style through shift_logits
        model = T.LlamaForCausalLM(T.LlamaConfig(hidden_size=32, num_key_value_heads=1, **common))
    torch.manual_seed(0)
    with torch.no_grad():  # a peaked head, so the strategies' orders differ visibly
        head = model.get_output_embeddings()
        head.weight.normal_(0, 1.0)
    return model.eval()


def batch():
    g = torch.Generator().manual_seed(3)
    x = torch.randint(3, MASK, (3, 12), generator=g)
    x[:, 4:] = MASK
    x[1, 2] = MASK
    am = torch.ones_like(x)
    am[2, :2] = 0  # left padding
    x[2, :2] = 0
    return {"input_ids": x, "attention_mask": am}


@pytest.mark.parametrize("arch", ["bert", "roberta", "distilbert", "modernbert", "llama"])
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


@pytest.mark.parametrize("arch", ["bert", "roberta", "distilbert", "modernbert"])
def test_the_head_s_transform_is_found(arch):
    adapted = adapters.from_hf(tiny(arch))
    assert adapted.transform is not None


def test_a_head_from_hf_cannot_explain_is_refused_naming_what_it_found():
    model = tiny("bert")
    model.cls.predictions.transform = torch.nn.Identity()  # the logits still go through it: provable
    adapters.from_hf(model)
    model = tiny("bert")
    original = model.cls.predictions.forward
    model.cls.predictions.forward = lambda h: original(h) * 2  # an unknown post-processing step
    with pytest.raises(ValueError, match="from_hf found BertModel as the base model, Linear .* and its head's "
                                         "transform cls.predictions.transform"):
        adapters.from_hf(model)
