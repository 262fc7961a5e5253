"""Native LLaDA and Dream against transformers' own Llama and Qwen2 blocks run with full attention (random
weights from tiny configs, no download): logits, checkpoint loading, weight sharing, the block cache, and the
drop-ins' tokens."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import fastmdm
from fastmdm import adapters
from fastmdm.cache import KVCache
from fastmdm.compat import dream as dream_compat
from fastmdm.compat import llada as llada_compat
from fastmdm.models import Dream, LLaDA

transformers = pytest.importorskip("transformers")

V, MASK = 96, 95


def full_attention_mask(attention_mask, B, L):
    """transformers takes a 4-D mask as given: every query sees every real key (non-causal)."""
    keys = torch.ones(B, L, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    return keys[:, None, None, :].expand(B, 1, L, L)


class FullAttention(torch.nn.Module):
    """A transformers causal LM called with full attention; logits only (the reference of the logits path)."""

    def __init__(self, hf):
        super().__init__()
        self.hf = hf

    def forward(self, x, attention_mask=None, position_ids=None):
        if isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 4:
            attention_mask = attention_mask[:, 0].diagonal(dim1=-2, dim2=-1)
        if isinstance(attention_mask, str):
            attention_mask = None
        mask = full_attention_mask(attention_mask, *x.shape)
        return self.hf(x, attention_mask=mask, position_ids=position_ids).logits


def tiny_llama(seed=0, kv_heads=4):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=kv_heads, intermediate_size=48, rope_theta=500000.0,
                                   rms_norm_eps=1e-5, attention_bias=False, tie_word_embeddings=False)
    cfg._attn_implementation = "sdpa"
    return transformers.LlamaForCausalLM(cfg).eval()


def tiny_qwen2(seed=0):
    torch.manual_seed(seed)
    cfg = transformers.Qwen2Config(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, intermediate_size=48, rms_norm_eps=1e-6,
                                   tie_word_embeddings=False)
    cfg._attn_implementation = "sdpa"
    model = transformers.Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():  # non-zero biases, so a forgotten bias shows
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.normal_(0, 0.5)
    return model


def llada_folder(llama, folder, shards=2):
    """Save a Llama's weights as an LLaDA checkpoint folder (LLaDA's names and config keys), sharded."""
    c = llama.config
    names = {"model.embed_tokens.weight": "model.transformer.wte.weight", "model.norm.weight":
             "model.transformer.ln_f.weight", "lm_head.weight": "model.transformer.ff_out.weight"}
    per_layer = {"input_layernorm": "attn_norm", "self_attn.q_proj": "q_proj", "self_attn.k_proj": "k_proj",
                 "self_attn.v_proj": "v_proj", "self_attn.o_proj": "attn_out", "post_attention_layernorm": "ff_norm",
                 "mlp.gate_proj": "ff_proj", "mlp.up_proj": "up_proj", "mlp.down_proj": "ff_out"}
    for i in range(c.num_hidden_layers):
        for a, b in per_layer.items():
            names[f"model.layers.{i}.{a}.weight"] = f"model.transformer.blocks.{i}.{b}.weight"
    state = {names[k]: v.contiguous().clone() for k, v in llama.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    keys = sorted(state)
    weight_map = {}
    for s in range(shards):
        part = keys[s::shards]
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        save_file({k: state[k] for k in part}, str(folder / fname))
        weight_map.update({k: fname for k in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps({
        "model_type": "llada", "architectures": ["LLaDAModelLM"], "d_model": c.hidden_size,
        "n_heads": c.num_attention_heads, "n_kv_heads": c.num_key_value_heads, "n_layers": c.num_hidden_layers,
        "mlp_hidden_size": c.intermediate_size, "vocab_size": V, "embedding_size": V,
        "rope_theta": c.rope_parameters["rope_theta"] if getattr(c, "rope_parameters", None) else c.rope_theta,
        "rms_norm_eps": c.rms_norm_eps, "include_bias": False, "weight_tying": False, "mask_token_id": MASK,
        "block_type": "llama"}))
    return folder


def batch(B=3, L=10, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, MASK, (B, L), generator=g)
    am = torch.ones(B, L, dtype=torch.long)
    am[1, :3] = 0
    return x, am


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_llada_from_a_checkpoint_folder_gives_full_attention_llama_logits(tmp_path, kv_heads):
    llama = tiny_llama(kv_heads=kv_heads)
    model = LLaDA.from_pretrained(llada_folder(llama, tmp_path / "ckpt"))
    assert model.config.mask_token_id == MASK and model.config.num_kv_heads == kv_heads
    x, am = batch()
    with torch.no_grad():
        ref = FullAttention(llama)(x, am)
        got = model(x, am)
    real = am.bool()
    assert torch.allclose(got[real], ref[real], atol=1e-5)
    # and the reference really is non-causal: a later token changes an earlier position
    x2 = x.clone()
    x2[:, -1] = (x2[:, -1] + 1) % MASK
    with torch.no_grad():
        assert not torch.allclose(FullAttention(llama)(x2, am)[:, 0], ref[:, 0])


def test_dream_wraps_a_qwen2_object_sharing_its_weights_and_gives_its_full_attention_logits():
    qwen = tiny_qwen2()
    model = Dream.from_hf_model(qwen)
    assert model.embed.weight.data_ptr() == qwen.model.embed_tokens.weight.data_ptr()
    assert model.layers[1].q.bias.data_ptr() == qwen.model.layers[1].self_attn.q_proj.bias.data_ptr()
    x, am = batch()
    with torch.no_grad():
        ref = FullAttention(qwen)(x, am)
        got = model(x, am)
    assert torch.allclose(got[am.bool()], ref[am.bool()], atol=1e-5)


def test_dream_from_a_checkpoint_folder(tmp_path):
    qwen = tiny_qwen2(seed=3)
    folder = tmp_path / "dream"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in qwen.state_dict().items()}, str(folder / "model.safetensors"))
    cfg = qwen.config.to_dict()
    cfg.update(model_type="Dream", mask_token_id=MASK)
    (folder / "config.json").write_text(json.dumps(cfg))
    model = Dream.from_pretrained(folder)
    x, _ = batch(seed=4)
    with torch.no_grad():
        assert torch.allclose(model(x), FullAttention(qwen)(x), atol=1e-5)


def test_loading_errors_name_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="holds no config.json"):
        LLaDA.from_pretrained(tmp_path)
    folder = llada_folder(tiny_llama(), tmp_path / "c", shards=1)
    with pytest.raises(ValueError, match="not a Dream config"):
        Dream.from_pretrained(folder)
    fname = "model-00001-of-00001.safetensors"
    state = load_file(str(folder / fname))
    state.pop("model.transformer.ln_f.weight")
    save_file(state, str(folder / fname))
    with pytest.raises(ValueError, match="missing 1 tensor.*ln_f"):
        LLaDA.from_pretrained(folder)


@pytest.mark.parametrize("window", [(4, 10), (4, 7), (0, 10)])
def test_the_native_models_implement_the_block_cache(window, tmp_path):
    for model in (Dream.from_hf_model(tiny_qwen2()), LLaDA.from_pretrained(llada_folder(tiny_llama(), tmp_path))):
        x, am = batch()
        with torch.no_grad():
            full = model.forward_hidden(x, am)
            kv = KVCache("dual", 3)
            kv.begin(torch.arange(3), *window, refresh=True)
            assert torch.allclose(model.forward_hidden(x, am, cache=kv), full[:, window[0]:window[1]], atol=1e-5)
            kv.begin(torch.tensor([0, 1]), *window, refresh=False)
            out = model.forward_hidden(x[:2], am[:2], cache=kv)
            assert torch.allclose(out, full[:2, window[0]:window[1]], atol=1e-5)


def test_the_llada_drop_in_gives_the_reference_tokens_through_the_native_model(tmp_path):
    llama = tiny_llama(seed=5)
    with torch.no_grad():
        llama.lm_head.weight.mul_(8)  # peaked logits
    native = LLaDA.from_pretrained(llada_folder(llama, tmp_path / "l"))
    x, am = batch(L=6)
    kw = dict(steps=8, gen_length=16, block_length=8, mask_id=MASK)
    ref = llada_compat.generate(FullAttention(llama), x, am, **kw)
    assert torch.equal(llada_compat.generate(native, x, am, **kw), ref)


@pytest.mark.parametrize("alg", ["maskgit_plus", "topk_margin", "entropy", "origin"])
def test_the_dream_drop_in_gives_the_reference_tokens_through_the_native_model(alg):
    qwen = tiny_qwen2(seed=6)
    with torch.no_grad():
        qwen.lm_head.weight.mul_(8)
    qwen.config.model_type = "Dream"
    native = adapters.from_hf(qwen)  # recognised as Dream: the native model, sharing the weights
    assert isinstance(native, Dream)
    x, am = batch(L=6)
    kw = dict(attention_mask=am, max_new_tokens=10, steps=10, alg=alg, mask_token_id=MASK, temperature=0.0)
    torch.manual_seed(0)
    ref = dream_compat.diffusion_generate(FullAttention(qwen), x, **kw)
    torch.manual_seed(0)
    assert torch.equal(dream_compat.diffusion_generate(native, x, **kw), ref)


def test_bf16_logits_stay_close_to_float32():
    qwen = tiny_qwen2(seed=7)
    model = Dream.from_hf_model(qwen)
    x, _ = batch()
    with torch.no_grad():
        f32 = model(x)
        b16 = model.to(torch.bfloat16)(x).float()
    assert (b16 - f32).abs().max() < 0.1 * f32.abs().max()


def test_a_dual_cache_on_the_native_dream_decodes_everything():
    native = Dream.from_hf_model(tiny_qwen2(seed=8))
    x, am = batch(L=6)
    out = fastmdm.generate(adapters.shift_logits(native), x, attention_mask=am, gen_length=12, block_length=4,
                           steps=12, mask_id=MASK, cache="dual", return_trace=True)
    assert not bool((out.tokens[:, 6:] == MASK).any()) and out.nfe == 12


def test_llada_can_ignore_the_attention_mask_as_its_released_code_does(tmp_path):
    llama = tiny_llama(seed=9)
    folder = llada_folder(llama, tmp_path / "m")
    x, am = batch()
    keyed, ignoring = LLaDA.from_pretrained(folder), LLaDA.from_pretrained(folder, ignore_attention_mask=True)
    with torch.no_grad():
        unmasked = FullAttention(llama)(x, None)
        assert torch.allclose(ignoring(x, am), unmasked, atol=1e-5)  # the mask changes nothing
        assert not torch.allclose(keyed(x, am)[1], unmasked[1], atol=1e-3)  # row 1 is padded
        assert torch.allclose(keyed(x, am)[0], unmasked[0], atol=1e-5)  # row 0 is not


def test_llada_configs_follow_llada_s_defaults(tmp_path):
    folder = llada_folder(tiny_llama(), tmp_path / "d", shards=1)
    cfg = json.loads((folder / "config.json").read_text())
    del cfg["block_type"]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="block_type 'sequential' is not supported"):
        LLaDA.from_pretrained(folder)
    cfg.update(block_type="llama")
    del cfg["weight_tying"]  # LLaDA's default ties the head to the embeddings
    assert LLaDA.config_from_dict(cfg).tie_embeddings
