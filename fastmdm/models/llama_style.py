"""LLaDA's and Dream's architectures, native: Llama-style bidirectional decoders on fastmdm's attention.

Both are stacks of pre-norm blocks (RMSNorm, rotary attention with grouped-query heads, SwiGLU MLP) with full
(non-causal) attention; they differ in their checkpoints' parameter names and config keys, in biases (Dream's
query/key/value projections have them) and in their default mask token. Here one module implements the block
and each architecture is a table of names:

- `LLaDA`: LLaDA's checkpoints (`model.transformer.wte`, `blocks.N.q_proj`, `attn_out`, `ff_proj` (the gate),
  `up_proj`, `ff_out`, `attn_norm`, `ff_norm`, `ln_f`, and the LM head `model.transformer.ff_out`);
- `Dream`: Dream's checkpoints, which use Qwen2's names (`model.layers.N.self_attn.q_proj`, `mlp.gate_proj`,
  `input_layernorm`, `lm_head`, ...). Dream predicts token i from position i - 1; `fastmdm.compat.dream` and
  `fastmdm.adapters.shift_logits` apply that shift, the model itself returns unshifted outputs as Dream's does.

Each model exposes `forward_hidden` + `get_output_embeddings` (so decoding applies the LM head only where it
fills), implements the block cache of `fastmdm.cache`, runs attention through `fastmdm.ops.attention` (the
Triton kernel on CUDA), loads a Hugging Face checkpoint folder (`from_pretrained`: config.json + safetensors,
sharded or not; never pickle) and wraps an already-built model object of its architecture, sharing its weight
tensors (`from_hf_model`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from fastmdm import ops
from fastmdm.models.transformer import RMSNorm, apply_rotary


@dataclass
class LlamaStyleConfig:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    qkv_bias: bool = False
    tie_embeddings: bool = False
    mask_token_id: int = 0
    model_type: str = ""
    attention_backend: str = "auto"
    #: attend to every position whatever the attention mask says (LLaDA's released code never applies its mask)
    ignore_attention_mask: bool = False

    def __post_init__(self):
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError(f"config: hidden_size {self.hidden_size} must be a multiple of num_heads "
                             f"{self.num_heads}, itself a multiple of num_kv_heads {self.num_kv_heads}")


class DecoderLayer(nn.Module):
    def __init__(self, c: LlamaStyleConfig):
        super().__init__()
        d, D = c.hidden_size, c.hidden_size // c.num_heads
        self.H, self.Hkv, self.D, self.backend = c.num_heads, c.num_kv_heads, D, c.attention_backend
        self.attn_norm = RMSNorm(d, c.rms_norm_eps)
        self.q = nn.Linear(d, c.num_heads * D, bias=c.qkv_bias)
        self.k = nn.Linear(d, c.num_kv_heads * D, bias=c.qkv_bias)
        self.v = nn.Linear(d, c.num_kv_heads * D, bias=c.qkv_bias)
        self.o = nn.Linear(c.num_heads * D, d, bias=False)
        self.mlp_norm = RMSNorm(d, c.rms_norm_eps)
        self.gate = nn.Linear(d, c.intermediate_size, bias=False)
        self.up = nn.Linear(d, c.intermediate_size, bias=False)
        self.down = nn.Linear(c.intermediate_size, d, bias=False)

    def forward(self, x, key_padding_mask, cos, sin, cache=None, layer=0):
        B, n, _ = x.shape
        h = self.attn_norm(x)
        q = apply_rotary(self.q(h).view(B, n, self.H, self.D).transpose(1, 2), cos, sin)
        k = apply_rotary(self.k(h).view(B, n, self.Hkv, self.D).transpose(1, 2), cos, sin)
        v = self.v(h).view(B, n, self.Hkv, self.D).transpose(1, 2)
        if cache is not None:
            k, v = cache.update(layer, k, v)
        y = ops.attention(q, k, v, key_padding_mask=key_padding_mask, backend=self.backend)
        x = x + self.o(y.transpose(1, 2).reshape(B, n, self.H * self.D))
        h = self.mlp_norm(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


def _key_padding(attention_mask):
    """A bool key padding mask [B, L] (None: attend everywhere) from None, "full", a 0/1 [B, L] mask, or a 4-D
    mask [B, 1, L, L] of the kind Dream's generation builds (real tokens see real tokens), which is reduced to its
    diagonal: exact for every real query, padded queries' outputs being unused."""
    if attention_mask is None or isinstance(attention_mask, str):
        if isinstance(attention_mask, str) and attention_mask != "full":
            raise ValueError(f"attention_mask: {attention_mask!r} is not understood; pass None, 'full' or a mask")
        return None
    if attention_mask.dim() == 4:
        return attention_mask[:, 0].diagonal(dim1=-2, dim2=-1).bool()
    return attention_mask.bool()


class LlamaStyleModel(nn.Module):
    """The shared body; see `LLaDA` and `Dream`. `model(ids)` -> logits [B, L, V]."""

    supports_kv_cache = True
    #: internal parameter name -> the architecture's checkpoint name ("{i}" = layer index)
    NAMES: dict[str, str] = {}
    DEFAULT_MASK_ID = 0

    def __init__(self, config: LlamaStyleConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight

    # --- the decoding interface -----------------------------------------------------------------------
    def get_input_embeddings(self):
        return self.embed

    def get_output_embeddings(self):
        return self.lm_head

    def forward_hidden(self, input_ids, attention_mask=None, position_ids=None, *, cache=None):
        """Hidden states after the final norm [B, L, d]; with a `fastmdm.cache.KVCache`, those of its window."""
        B, L = input_ids.shape
        s, e = (0, L) if cache is None or cache.refreshing else (cache.start, cache.end)
        pos = torch.arange(L, device=input_ids.device).expand(B, L) if position_ids is None else position_ids
        pos = pos[:, s:e]
        head_dim = self.config.hidden_size // self.config.num_heads
        inv = 1.0 / self.config.rope_theta ** (torch.arange(0, head_dim, 2, device=input_ids.device,
                                                            dtype=torch.float32) / head_dim)
        angle = pos.to(torch.float32)[:, None, :, None] * inv  # [B, 1, n, D/2]
        cos, sin = angle.cos(), angle.sin()
        pad = None if self.config.ignore_attention_mask else _key_padding(attention_mask)
        x = self.embed(input_ids[:, s:e])
        for i, layer in enumerate(self.layers):
            x = layer(x, pad, cos, sin, cache, i)
        x = self.norm(x)
        return x[:, cache.start:cache.end] if cache is not None and cache.refreshing else x

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        return self.lm_head(self.forward_hidden(input_ids, attention_mask, position_ids))

    # --- loading --------------------------------------------------------------------------------------
    @classmethod
    def config_from_dict(cls, d: dict) -> LlamaStyleConfig:
        raise NotImplementedError

    @classmethod
    def checkpoint_names(cls, config: LlamaStyleConfig) -> dict[str, str]:
        """Internal parameter name -> checkpoint name, for every parameter of a model of `config`."""
        names = {}
        for key, pattern in cls.NAMES.items():
            if "{i}" in key:
                for i in range(config.num_layers):
                    names[key.format(i=i)] = pattern.format(i=i)
            else:
                names[key] = pattern
        if not config.qkv_bias:
            names = {k: v for k, v in names.items() if not k.endswith(("q.bias", "k.bias", "v.bias"))}
        if config.tie_embeddings:
            names.pop("lm_head.weight")
        return names

    def _load_named(self, tensors: dict, source: str, share: bool) -> None:
        names = self.checkpoint_names(self.config)
        missing = sorted(v for v in names.values() if v not in tensors)
        if missing:
            raise ValueError(f"{source}: missing {len(missing)} tensor(s) of a {type(self).__name__} checkpoint, e.g. "
                             f"{missing[:3]}; is this a {type(self).__name__} model of this config?")
        params = dict(self.named_parameters())
        for ours, theirs in names.items():
            t = tensors[theirs]
            if tuple(t.shape) != tuple(params[ours].shape):
                raise ValueError(f"{source}: tensor {theirs} has shape {tuple(t.shape)}, the config gives "
                                 f"{tuple(params[ours].shape)}")
            module_name, _, attr = ours.rpartition(".")
            module = self.get_submodule(module_name)
            if share:
                setattr(module, attr, t if isinstance(t, nn.Parameter) else nn.Parameter(t, requires_grad=False))
            else:
                with torch.no_grad():
                    getattr(module, attr).copy_(t)
        if self.config.tie_embeddings:
            self.lm_head.weight = self.embed.weight

    @classmethod
    def from_pretrained(cls, path, dtype: torch.dtype | None = None, device=None, **options):
        """Load a Hugging Face checkpoint folder (config.json + model.safetensors, or shards listed in
        model.safetensors.index.json) in the architecture's own parameter names. `options` set fields of the
        `LlamaStyleConfig` (e.g. ignore_attention_mask=True, attention_backend="torch")."""
        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise ValueError(f"path: {folder} holds no config.json; pass a checkpoint folder")
        config = cls.config_from_dict(json.loads((folder / "config.json").read_text()))
        config = replace(config, **options)
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        elif (folder / "model.safetensors").is_file():
            files = ["model.safetensors"]
        else:
            raise ValueError(f"path: {folder} holds neither model.safetensors nor model.safetensors.index.json "
                             "(only safetensors checkpoints are read)")
        tensors = {}
        for f in files:
            tensors.update(load_file(str(folder / f), device=str(device or "cpu")))
        with torch.device("meta"):
            model = cls(config)
        model._load_named(tensors, str(folder), share=True)
        if dtype is not None:
            model = model.to(dtype)
        return model.eval()

    @classmethod
    def from_hf_model(cls, hf_model, **options):
        """Wrap an already-built model object of this architecture (its `state_dict()` names are the
        checkpoint's), sharing its weight tensors: no copy is made. `options` as in `from_pretrained`."""
        cfg = getattr(hf_model, "config", None)
        d = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(vars(cfg)) if cfg is not None else {}
        config = replace(cls.config_from_dict(d), **options)
        tensors = dict(hf_model.named_parameters(remove_duplicate=False))
        with torch.device("meta"):
            model = cls(config)
        model._load_named(tensors, type(hf_model).__name__, share=True)
        return model.eval()


def _require(d: dict, keys, arch):
    missing = [k for k in keys if k not in d]
    if missing:
        raise ValueError(f"config: not a {arch} config (no {missing}); model_type is {d.get('model_type')!r}")


class LLaDA(LlamaStyleModel):
    """LLaDA (GSAI-ML/LLaDA-8B-*): mask token 126336, LM head `model.transformer.ff_out`.

    Config keys missing from a config.json take the defaults of LLaDA's configuration class (weight tying on,
    block type "sequential", which is refused: the released models use "llama"). LLaDA's released code builds
    no attention mask from `attention_mask` (every position attends to every position, padding included);
    here a 2-D mask is key padding, so padded batches differ from the original at the real positions too.
    `ignore_attention_mask=True` (in `from_pretrained` / `from_hf_model`) reproduces the original; without
    padding the two agree."""

    DEFAULT_MASK_ID = 126336
    NAMES = {
        "embed.weight": "model.transformer.wte.weight",
        "layers.{i}.attn_norm.weight": "model.transformer.blocks.{i}.attn_norm.weight",
        "layers.{i}.q.weight": "model.transformer.blocks.{i}.q_proj.weight",
        "layers.{i}.k.weight": "model.transformer.blocks.{i}.k_proj.weight",
        "layers.{i}.v.weight": "model.transformer.blocks.{i}.v_proj.weight",
        "layers.{i}.q.bias": "model.transformer.blocks.{i}.q_proj.bias",
        "layers.{i}.k.bias": "model.transformer.blocks.{i}.k_proj.bias",
        "layers.{i}.v.bias": "model.transformer.blocks.{i}.v_proj.bias",
        "layers.{i}.o.weight": "model.transformer.blocks.{i}.attn_out.weight",
        "layers.{i}.mlp_norm.weight": "model.transformer.blocks.{i}.ff_norm.weight",
        "layers.{i}.gate.weight": "model.transformer.blocks.{i}.ff_proj.weight",
        "layers.{i}.up.weight": "model.transformer.blocks.{i}.up_proj.weight",
        "layers.{i}.down.weight": "model.transformer.blocks.{i}.ff_out.weight",
        "norm.weight": "model.transformer.ln_f.weight",
        "lm_head.weight": "model.transformer.ff_out.weight",
    }

    @classmethod
    def config_from_dict(cls, d: dict) -> LlamaStyleConfig:
        _require(d, ("d_model", "n_heads", "n_layers", "mlp_hidden_size"), "LLaDA")
        block = d.get("block_type", "sequential")
        if block != "llama":
            raise ValueError(f"config: LLaDA block_type {block!r} is not supported (only 'llama', the released "
                             "models' block; a config without block_type means 'sequential')")
        return LlamaStyleConfig(
            vocab_size=d.get("embedding_size") or d["vocab_size"], hidden_size=d["d_model"], num_layers=d["n_layers"],
            num_heads=d["n_heads"], num_kv_heads=d.get("n_kv_heads") or d["n_heads"],
            intermediate_size=d["mlp_hidden_size"], rope_theta=float(d.get("rope_theta", 10000.0)),
            rms_norm_eps=float(d.get("rms_norm_eps", 1e-5)),
            qkv_bias=bool(d.get("include_qkv_bias") or d.get("include_bias")),
            tie_embeddings=bool(d.get("weight_tying", True)),
            mask_token_id=int(d.get("mask_token_id") or cls.DEFAULT_MASK_ID), model_type="llada")


class Dream(LlamaStyleModel):
    """Dream (Dream-org/Dream-v0-*-7B): a Qwen2 body with full attention, mask token 151666."""

    DEFAULT_MASK_ID = 151666
    NAMES = {
        "embed.weight": "model.embed_tokens.weight",
        "layers.{i}.attn_norm.weight": "model.layers.{i}.input_layernorm.weight",
        "layers.{i}.q.weight": "model.layers.{i}.self_attn.q_proj.weight",
        "layers.{i}.k.weight": "model.layers.{i}.self_attn.k_proj.weight",
        "layers.{i}.v.weight": "model.layers.{i}.self_attn.v_proj.weight",
        "layers.{i}.q.bias": "model.layers.{i}.self_attn.q_proj.bias",
        "layers.{i}.k.bias": "model.layers.{i}.self_attn.k_proj.bias",
        "layers.{i}.v.bias": "model.layers.{i}.self_attn.v_proj.bias",
        "layers.{i}.o.weight": "model.layers.{i}.self_attn.o_proj.weight",
        "layers.{i}.mlp_norm.weight": "model.layers.{i}.post_attention_layernorm.weight",
        "layers.{i}.gate.weight": "model.layers.{i}.mlp.gate_proj.weight",
        "layers.{i}.up.weight": "model.layers.{i}.mlp.up_proj.weight",
        "layers.{i}.down.weight": "model.layers.{i}.mlp.down_proj.weight",
        "norm.weight": "model.norm.weight",
        "lm_head.weight": "lm_head.weight",
    }

    @classmethod
    def config_from_dict(cls, d: dict) -> LlamaStyleConfig:
        _require(d, ("hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size"), "Dream")
        rope = d.get("rope_theta") or (d.get("rope_parameters") or {}).get("rope_theta") or 10000.0
        return LlamaStyleConfig(
            vocab_size=d["vocab_size"], hidden_size=d["hidden_size"], num_layers=d["num_hidden_layers"],
            num_heads=d["num_attention_heads"], num_kv_heads=d.get("num_key_value_heads") or d["num_attention_heads"],
            intermediate_size=d["intermediate_size"], rope_theta=float(rope),
            rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)), qkv_bias=True,
            tie_embeddings=bool(d.get("tie_word_embeddings", False)),
            mask_token_id=int(d.get("mask_token_id") or cls.DEFAULT_MASK_ID), model_type="dream")


def native_for(model):
    """The native LLaDA or Dream wrapping `model` (sharing its weights) when `model` is one of those
    architectures (by `config.model_type`), else None."""
    if isinstance(model, LlamaStyleModel):
        return model
    kind = str(getattr(getattr(model, "config", None), "model_type", "")).lower()
    if kind == "llada":
        return LLaDA.from_hf_model(model)
    if kind == "dream":
        return Dream.from_hf_model(model)
    return None
