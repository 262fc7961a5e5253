"""Adapters that give other codebases' models what fastmdm's decoding loop looks for.

- `from_hf(model)`: a Hugging Face-style model (a base model returning hidden states, plus
  `get_output_embeddings()`) gains `forward_hidden`, so `fastmdm.sample`/`generate` apply the LM head
  only at the positions they fill and full [B, L, V] logits never exist.
- `shift_logits(model)`: position i is scored with the model's output at position i - 1 (position 0 keeps its
  own), as Dream predicts each token from the position before it. Works on logits and on hidden states.
- `autocast(model, dtype)`: the model's body runs under `torch.autocast` (bf16 by default); with the
  hidden-state path the LM head and the scores stay in the head's own dtype (float32), so only the body's
  matrix products drop precision.

The adapters are thin: calling one calls the wrapped model; every other attribute (`config`, `device`,
`generation_config`, ...) is the wrapped model's.
"""
from __future__ import annotations

import torch

from fastmdm.engine import has_hidden_path, logits_of

#: config attributes of models whose logits are not `lm_head(last_hidden_state)`; `from_hf` refuses them
_LOGIT_POSTPROCESSING = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def _hidden_of(out) -> torch.Tensor:
    hidden = out if isinstance(out, torch.Tensor) else getattr(out, "last_hidden_state", None)
    if hidden is None and isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        hidden = out[0]
    if not isinstance(hidden, torch.Tensor):
        raise TypeError("model: its base model must return hidden states [B, L, d] (a tensor, a tuple starting with "
                        f"one, or an object with .last_hidden_state), got {type(out).__name__}")
    return hidden


def shift_right(t: torch.Tensor) -> torch.Tensor:
    """[B, L, ...] -> [B, L, ...] with t'[:, i] = t[:, i - 1] for i >= 1 and t'[:, 0] = t[:, 0] (Dream's shift)."""
    return torch.cat([t[:, :1], t[:, :-1]], dim=1)


def _forward(fn, input_ids, attention_mask, kwargs):
    """fn(input_ids), passing attention_mask and other keywords only when there are any (so a model whose
    forward takes no attention_mask still works without one)."""
    if attention_mask is None and not kwargs:
        return fn(input_ids)
    return fn(input_ids, attention_mask=attention_mask, **kwargs)


class _Wrapper:
    """Delegates every attribute it does not define to the wrapped model."""

    def __init__(self, model):
        object.__setattr__(self, "model", model)

    def __getattr__(self, name):
        if name == "model":  # not set yet (e.g. during copy/pickle): do not recurse
            raise AttributeError(name)
        return getattr(self.model, name)

    def __repr__(self):
        return f"{type(self).__name__}({self.model!r})"


class HFHiddenModel(_Wrapper):
    """What `from_hf` returns: `self(x, attention_mask=None, **kw)` is the model's own call;
    `forward_hidden(x, attention_mask=None, **kw)` runs the base model and the head's position-wise transform
    (BERT's dense + activation + LayerNorm, for example; none for a plain linear head) and returns hidden
    states [B, L, d]; `get_output_embeddings()` is the head's final linear layer."""

    def __init__(self, model, base, head, transform=None):
        super().__init__(model)
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "head", head)
        object.__setattr__(self, "transform", transform)

    def __call__(self, input_ids, attention_mask=None, **kwargs):
        return _forward(self.model, input_ids, attention_mask, kwargs)

    def forward_hidden(self, input_ids, attention_mask=None, **kwargs):
        out = _forward(self.base, input_ids, attention_mask, kwargs)
        hidden = _hidden_of(out)
        d = self.head.weight.shape[1]
        if hidden.dim() != 3 or hidden.shape[-1] != d:
            raise ValueError(f"model: its base model returned shape {tuple(hidden.shape)}, not hidden states "
                             f"[B, L, {d}] matching the LM head; this model applies its head inside the base model, "
                             "so from_hf cannot skip it: pass the model itself to fastmdm instead")
        return hidden if self.transform is None else self.transform(hidden)

    def get_output_embeddings(self):
        return self.head


def _sequential(*steps):
    def run(h):
        for step in steps:
            h = step(h)
        return h
    return run


def head_transform(model, head):
    """(transform, description) of the position-wise layers a known masked-LM head applies before its final
    linear `head`; (None, "") when the head is that linear layer alone or the structure is not one known here."""
    F = torch.nn.functional
    cls = getattr(getattr(model, "cls", None), "predictions", None)
    if cls is not None and getattr(cls, "decoder", None) is head and callable(getattr(cls, "transform", None)):
        return cls.transform, "cls.predictions.transform"  # BERT and its relatives
    lm = getattr(model, "lm_head", None)
    if lm is not None and getattr(lm, "decoder", None) is head and hasattr(lm, "dense") and hasattr(lm, "layer_norm"):
        return _sequential(lm.dense, F.gelu, lm.layer_norm), "lm_head.dense + gelu + lm_head.layer_norm"  # RoBERTa
    if getattr(model, "vocab_projector", None) is head and hasattr(model, "vocab_transform"):
        return (_sequential(model.vocab_transform, model.activation, model.vocab_layer_norm),
                "vocab_transform + activation + vocab_layer_norm")  # DistilBERT
    if getattr(model, "decoder", None) is head and callable(getattr(model, "head", None)):
        return model.head, "head"  # ModernBERT
    return None, ""


def from_hf(model, check_inputs: torch.Tensor | None = None, atol: float = 1e-4, verify: bool = True) -> HFHiddenModel:
    """Give a Hugging Face-style model fastmdm's hidden-state path.

    `model` needs a base model (`model.base_model`, as transformers' PreTrainedModel defines it, e.g.
    `model.model`) that returns hidden states, and `model.get_output_embeddings()` (the final linear layer of
    the LM head, `.weight` [V, d], optional `.bias`). Supported heads: a plain linear head (Llama-style causal
    LMs; use `shift_logits(from_hf(model))` for Dream-style decoding) and the masked-LM heads that apply a
    position-wise transform first (BERT's `cls.predictions.transform`, RoBERTa's `lm_head.dense` + gelu +
    `layer_norm`, DistilBERT's `vocab_transform` + activation + `vocab_layer_norm`, ModernBERT's `head`); the
    transform then runs in `forward_hidden`. LLaDA and Dream models (config.model_type "llada" / "Dream") come
    back as the native `fastmdm.models.LLaDA` / `Dream`, sharing their weights. Models that post-process their
    logits (soft-capping, scaling) are refused. With `verify` (the default) one short probe forward checks that
    head(forward_hidden(x)) equals the model's own logits within `atol`, and a model whose head does something
    else is refused with what was found, never decoded wrongly. `check_inputs` (token ids [B, L]) runs the same
    check on your inputs.
    """
    if isinstance(model, HFHiddenModel):
        return model
    from fastmdm.models.llama_style import native_for  # noqa: PLC0415 (models import adapters' neighbours)

    native = native_for(model)
    if native is not None:  # LLaDA and Dream run natively, sharing the model's weights
        return native
    get_head = getattr(model, "get_output_embeddings", None)
    if not callable(get_head):
        raise TypeError(f"model: from_hf needs a Hugging Face-style model with get_output_embeddings(); "
                        f"{type(model).__name__} has none")
    head = get_head()
    weight = getattr(head, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise TypeError("model: get_output_embeddings() must return a module whose .weight is [V, d] "
                        f"(a Linear LM head), got {type(head).__name__}")
    base = getattr(model, "base_model", None)
    if base is None or base is model:
        prefix = getattr(model, "base_model_prefix", None)
        base = getattr(model, prefix, None) if isinstance(prefix, str) and prefix else None
    if base is None or base is model or not callable(base):
        raise TypeError(f"model: from_hf needs the model's base model (model.base_model or the attribute named by "
                        f"base_model_prefix, e.g. model.model) returning hidden states; {type(model).__name__} "
                        "has none")
    config = getattr(model, "config", None)
    for name in _LOGIT_POSTPROCESSING:
        value = getattr(config, name, None)
        if value is not None and value != 1 and not (name == "final_logit_softcapping" and value == 0):
            raise ValueError(f"model: config.{name}={value!r}, so its logits are not lm_head(hidden states) and "
                             "from_hf would change them; pass the model itself to fastmdm instead")
    transform, found = head_transform(model, head)
    adapted = HFHiddenModel(model, base, head, transform)
    if verify:
        vocab = weight.shape[0]
        probe = torch.randint(0, vocab, (1, 8), generator=torch.Generator().manual_seed(0)).to(weight.device)
        try:
            check(adapted, probe, atol=max(atol, 1e-3))
        except ValueError as e:
            what = f"its head's transform {found}" if found else "no position-wise transform before the head"
            raise ValueError(f"model: from_hf found {type(base).__name__} as the base model, "
                             f"{type(head).__name__} [V={vocab}] as the final head layer and {what}, but "
                             f"head(hidden states) does not give {type(model).__name__}'s logits ({e}); pass the "
                             "model itself to fastmdm (the logits path) instead") from None
    if check_inputs is not None:
        check(adapted, check_inputs, atol=atol)
    return adapted


def check(adapted, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, atol: float = 1e-4) -> float:
    """Raise ValueError unless head(forward_hidden(x)) equals the model's own logits on `input_ids` within
    `atol`; returns the largest absolute difference."""
    with torch.no_grad():
        full = logits_of(adapted(input_ids, attention_mask=attention_mask)).float()
        head = adapted.get_output_embeddings()
        hidden = adapted.forward_hidden(input_ids, attention_mask=attention_mask)
        mine = torch.nn.functional.linear(hidden.to(head.weight.dtype), head.weight, getattr(head, "bias", None))
        mine = mine.float()
    if mine.shape != full.shape:
        raise ValueError(f"model: head(hidden states) has shape {tuple(mine.shape)} but the model's logits "
                         f"{tuple(full.shape)}; from_hf does not fit this model")
    diff = float((mine - full).abs().max()) if full.numel() else 0.0
    if not diff <= atol:
        raise ValueError(f"model: head(hidden states) differs from the model's logits by {diff:.3g} > atol={atol}; "
                         "this model post-processes its logits, so pass the model itself to fastmdm instead")
    return diff


class ShiftedModel(_Wrapper):
    """What `shift_logits` returns: logits (and hidden states, when the model has them) shifted right by one."""

    def __init__(self, model):
        super().__init__(model)
        if has_hidden_path(model):
            object.__setattr__(self, "forward_hidden", self._shifted_hidden)

    def __call__(self, input_ids, attention_mask=None, **kwargs):
        out = _forward(self.model, input_ids, attention_mask, kwargs)
        return shift_right(logits_of(out))

    def _shifted_hidden(self, input_ids, attention_mask=None, cache=None, **kwargs):
        if cache is None or cache.start == 0:  # position 0 keeps its own output
            if cache is not None:
                kwargs["cache"] = cache
            return shift_right(self.model.forward_hidden(input_ids, attention_mask=attention_mask, **kwargs))
        with cache.widen_left(1):  # a block cache's window starts one early: position i reads i - 1
            return self.model.forward_hidden(input_ids, attention_mask=attention_mask, cache=cache, **kwargs)[:, :-1]


def shift_logits(model) -> ShiftedModel:
    """Wrap `model` so position i gets the output of position i - 1 (position 0 keeps its own): Dream's
    convention, where the token at i is predicted from the hidden state at i - 1. Keeps the hidden-state path
    when the model has one (shifting hidden states shifts the logits the LM head makes from them)."""
    return model if isinstance(model, ShiftedModel) else ShiftedModel(model)


class AutocastModel(_Wrapper):
    """What `autocast` returns: the model's call (and `forward_hidden`) under `torch.autocast`."""

    def __init__(self, model, dtype):
        super().__init__(model)
        object.__setattr__(self, "autocast_dtype", dtype)
        if has_hidden_path(model):
            object.__setattr__(self, "forward_hidden", self._hidden)

    def __call__(self, input_ids, attention_mask=None, **kwargs):
        with torch.autocast(input_ids.device.type, dtype=self.autocast_dtype):
            return _forward(self.model, input_ids, attention_mask, kwargs)

    def _hidden(self, input_ids, attention_mask=None, **kwargs):
        with torch.autocast(input_ids.device.type, dtype=self.autocast_dtype):
            h = self.model.forward_hidden(input_ids, attention_mask=attention_mask, **kwargs)
        return h.to(self.model.get_output_embeddings().weight.dtype)


def autocast(model, dtype: torch.dtype = torch.bfloat16) -> AutocastModel:
    """Wrap `model` so its forward runs under `torch.autocast(device, dtype)`, the device being the input's.
    Decoding then scores the hidden states with the LM head in the head's dtype (float32 for a float32 model):
    the positions' ranking sees the body's rounding, not a bf16 head's."""
    if dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"autocast: dtype must be torch.bfloat16 or torch.float16, got {dtype}")
    return AutocastModel(model, dtype)


def bf16_is_fast(device) -> bool:
    """Whether bf16 matrix products beat float32 on `device`: a CUDA GPU with bf16, or a CPU with AMX tiles
    (without AMX, CPUs emulate or widen bf16 products, which then cost more than float32 ones; the measurements
    are in benchmarks/results/sudoku_model_cpu.md)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    return "amx_bf16" in cpu_flags()


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux lists them in /proc/cpuinfo (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()
