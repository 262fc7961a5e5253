"""Adapters that give other codebases' models what fastmdm's decoding loop looks for.

- `from_hf(model)`: a Hugging Face-style model (a base model returning hidden states, plus
  `get_output_embeddings()`) gains `forward_hidden`, so `fastmdm.sample`/`generate` apply the LM head's final
  linear layer only at the positions they fill and full [B, L, V] logits never exist. It supports a plain
  linear head and the masked-LM heads that apply a position-wise transform first (BERT, RoBERTa, ALBERT,
  DistilBERT, ModernBERT, ELECTRA, or any head whose transform is passed), and refuses, naming what it found,
  a head it cannot prove it reproduces (a final layer that is not a plain Linear, a bias outside it, logits
  changed after the head): those models decode through their own logits.
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
    (BERT's dense + activation + LayerNorm, for example; none for a plain linear head) and returns the states
    [B, L, d] the head's final linear layer reads; `get_output_embeddings()` is that layer. Attributes: `base`
    (the base model), `final_layer`, `transform` (None for a plain linear head); every other attribute is the
    model's.

    The transform runs at every position, not only at the gathered rows: it costs d x d per position against
    the head's V x d, and wrappers that combine hidden states linearly (classifier-free guidance) are exact
    only on the input of the affine final layer."""

    def __init__(self, model, base, head, transform=None):
        super().__init__(model)
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "final_layer", head)  # not `head`: ModernBERT's `model.head` is its transform
        object.__setattr__(self, "transform", transform)

    def __call__(self, input_ids, attention_mask=None, **kwargs):
        return _forward(self.model, input_ids, attention_mask, kwargs)

    def forward_hidden(self, input_ids, attention_mask=None, **kwargs):
        return self._head_input(_hidden_of(_forward(self.base, input_ids, attention_mask, kwargs)))

    def _head_input(self, hidden):
        if self.transform is not None:
            hidden = self.transform(hidden)
        d = self.final_layer.weight.shape[1]
        if hidden.dim() != 3 or hidden.shape[-1] != d:
            raise ValueError(f"model: its base model (and the head's transform) gave shape {tuple(hidden.shape)}, "
                             f"not hidden states [B, L, {d}] matching the LM head; this model applies its head "
                             "inside the base model, so from_hf cannot skip it: pass the model itself to fastmdm "
                             "instead")
        return hidden

    def get_output_embeddings(self):
        return self.final_layer


def _sequential(*steps):
    def run(h):
        for step in steps:
            h = step(h)
        return h
    return run


def _at(root, path: str):
    """root.a.b for path 'a.b' (root itself for ''); None where an attribute is missing."""
    for part in filter(None, path.split(".")):
        root = getattr(root, part, None)
        if root is None:
            return None
    return root


#: masked-LM heads known by their module structure: (family, path of the final linear layer, the steps of the
#: position-wise transform before it, as attribute paths or functions); a family matches when the final layer is
#: the one get_output_embeddings() returns and every step path is a module
_KNOWN_HEADS = (
    ("BERT", "cls.predictions.decoder", ("cls.predictions.transform",)),
    ("RoBERTa", "lm_head.decoder", ("lm_head.dense", torch.nn.functional.gelu, "lm_head.layer_norm")),
    ("ALBERT", "predictions.decoder", ("predictions.dense", "predictions.activation", "predictions.LayerNorm")),
    ("DistilBERT", "vocab_projector", ("vocab_transform", "activation", "vocab_layer_norm")),
    ("ModernBERT", "decoder", ("head",)),
    ("ELECTRA", "generator_lm_head", ("generator_predictions",)),
)


def _path_of(model, module) -> str:
    for name, m in model.named_modules() if isinstance(model, torch.nn.Module) else ():
        if m is module:
            return name
    return "get_output_embeddings()"


def head_transform(model, head):
    """(transform, description) of the position-wise layers a known masked-LM head applies before its final
    linear layer `head`; (None, "") when no known structure matches (a plain linear head, or an unknown one)."""
    for family, head_path, steps in _KNOWN_HEADS:
        if _at(model, head_path) is not head:
            continue
        parts = [s if callable(s) and not isinstance(s, str) else _at(model, s) for s in steps]
        if all(callable(p) for p in parts) and all(isinstance(_at(model, s), torch.nn.Module)
                                                   for s in steps if isinstance(s, str)):
            names = " + ".join(s if isinstance(s, str) else s.__name__ for s in steps)
            return (parts[0] if len(parts) == 1 else _sequential(*parts)), f"{names} ({family}'s head)"
    return None, ""


def _check_head_layer(model, head, path):
    """The head must be a plain Linear whose bias (if any) is the only one: the loop applies exactly
    linear(h, weight, bias)."""
    if not isinstance(head, torch.nn.Linear) or type(head).forward is not torch.nn.Linear.forward:
        raise TypeError(f"model: its final head layer {path} is a {type(head).__name__}, not a torch.nn.Linear; "
                        "fastmdm applies linear(h, weight, bias) in its place, which may differ from that module's "
                        "forward: pass the model itself to fastmdm instead")
    owner_path = path.rpartition(".")[0]
    stray = getattr(_at(model, owner_path), "bias", None) if owner_path else None
    if isinstance(stray, torch.Tensor) and stray is not head.bias:
        raise ValueError(f"model: {owner_path}.bias is a parameter of its own, not {path}.bias, so the head adds "
                         "a bias outside its final linear layer that from_hf would drop; pass the model itself to "
                         "fastmdm instead")


def _probe(adapted, path, found, atol):
    """Prove on one probe input that the model's logits are exactly its final linear layer's output, applied
    once to one row per position, and that forward_hidden computes that layer's input."""
    model, head = adapted.model, adapted.final_layer
    weight = head.weight
    probe = torch.randint(0, weight.shape[0], (1, 8), generator=torch.Generator().manual_seed(0))
    probe = probe.to(weight.device)
    name, base_name = type(model).__name__, type(adapted.base).__name__
    what = f"the transform {found}" if found else "no transform before the head"
    refuse = (f"model: from_hf found {base_name} as the base model, {type(head).__name__} {path} as the final "
              f"head layer and {what}, but ")
    fix = "; pass the model itself to fastmdm (the logits path) instead"
    if getattr(model, "training", False) and any(isinstance(m, torch.nn.Dropout) and m.p > 0
                                                 for m in getattr(model, "modules", lambda: ())()):
        raise ValueError(f"model: {name} is in training mode and has dropout, so its outputs change from call "
                         "to call; call model.eval() before from_hf")
    calls = []
    hook = head.register_forward_hook(lambda mod, args, out: calls.append((args[0] if args else None, out)))
    try:
        with torch.no_grad():
            logits = logits_of(_forward(model, probe, None, {}))
    finally:
        hook.remove()
    if len(calls) != 1:
        raise ValueError(refuse + f"{name} calls that layer {len(calls)} times for one input" + fix)
    seen, out = calls[0]
    if not isinstance(seen, torch.Tensor) or tuple(seen.shape[:-1]) != tuple(probe.shape):
        shape = tuple(seen.shape) if isinstance(seen, torch.Tensor) else type(seen).__name__
        raise ValueError(refuse + f"that layer reads {shape} for input ids of shape {tuple(probe.shape)}, not one "
                         "row per position" + fix)
    cast = logits.dtype != out.dtype and torch.equal(logits, out.to(logits.dtype))
    if logits is not out and not cast:
        raise ValueError(refuse + f"{name}'s logits are not what that layer returns: the model changes them after "
                         "its head (soft-capping, scaling, a bias added outside the layer, ...)" + fix)
    with torch.no_grad():
        hidden = _hidden_of(_forward(adapted.base, probe, None, {}))
        mine = adapted._head_input(hidden)
        diff = float((mine.float() - seen.float()).abs().max())
        if not diff <= atol:
            raise ValueError(refuse + f"what {name} feeds that layer differs from what from_hf computes by "
                             f"{diff:.3g} > {atol} (pass the head's position-wise transform as transform=...)" + fix)
        if adapted.transform is not None:  # rows in another order and a subset of them: a position-wise map agrees
            idx = torch.tensor([5, 0, 3, 6], device=hidden.device)
            part = adapted.transform(hidden[:, idx])
            if part.shape != mine[:, idx].shape or not float((part - mine[:, idx]).abs().max()) <= atol:
                raise ValueError(refuse + "the transform is not position-wise (a subset of the rows, in another "
                                 "order, does not give the same rows)" + fix)


def from_hf(model, check_inputs: torch.Tensor | None = None, atol: float = 1e-4, verify: bool = True,
            transform=None) -> HFHiddenModel:
    """Give a Hugging Face-style model fastmdm's hidden-state path, with exactly the model's tokens.

    `model` needs a base model (`model.base_model`, as transformers' PreTrainedModel defines it, or the
    attribute named by `base_model_prefix`) returning hidden states, and `model.get_output_embeddings()`, the
    head's final `torch.nn.Linear` ([V, d] weight, optional bias). Supported: a head that is that layer alone
    (Llama-style causal LMs; `shift_logits(from_hf(model))` decodes them Dream-style) and the masked-LM heads
    that apply a position-wise transform first, recognised by their module structure: BERT and its relatives
    (`cls.predictions.transform`), RoBERTa and its relatives (`lm_head.dense` + gelu + `lm_head.layer_norm`),
    ALBERT (`predictions.dense` + `activation` + `LayerNorm`), DistilBERT (`vocab_transform` + `activation` +
    `vocab_layer_norm`), ModernBERT (`head`), ELECTRA's generator (`generator_predictions`). Any other head of
    the form position-wise transform + final linear works by passing `transform` (a callable [..., d_base] ->
    [..., d]). `forward_hidden` returns transform(base hidden states); the loop applies the final layer at the
    positions it fills.

    Refused, with what was found: a final layer that is not a plain `torch.nn.Linear`, a bias kept outside it
    (e.g. ESM's `lm_head.bias`), logits post-processed in the config (soft-capping, scaling). With `verify`
    (the default) one probe forward, with a hook on the final layer, must show that the model calls it once on
    one row per position, returns its output unchanged as the logits, and feeds it what `forward_hidden`
    computes (within `atol`, at least 1e-3); the model must be in eval mode if it has dropout. `check_inputs`
    (token ids [B, L]) also compares head(forward_hidden(x)) with the model's logits on your inputs.

    LLaDA and Dream models (config.model_type "llada" / "Dream") come back as the native
    `fastmdm.models.LLaDA` / `Dream`, sharing their weights.
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
    if transform is not None and not callable(transform):
        raise TypeError(f"transform: must be a callable mapping hidden states [..., d] to the head's input, got "
                        f"{type(transform).__name__}")
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
    path = _path_of(model, head)
    _check_head_layer(model, head, path)
    found = "passed as transform" if transform is not None else ""
    if transform is None:
        transform, found = head_transform(model, head)
    adapted = HFHiddenModel(model, base, head, transform)
    if verify:
        _probe(adapted, path, found, max(atol, 1e-3))
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


def shifted_hidden(forward_hidden, input_ids, cache=None, **kwargs):
    """forward_hidden's states shifted right by one (Dream's convention). Under a block cache whose window
    starts after position 0, the window is widened by one so its first position can read the one before."""
    if cache is None or cache.start == 0:  # position 0 keeps its own output
        if cache is not None:
            kwargs["cache"] = cache
        return shift_right(forward_hidden(input_ids, **kwargs))
    with cache.widen_left(1):
        return forward_hidden(input_ids, cache=cache, **kwargs)[:, :-1]


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
        return shifted_hidden(self.model.forward_hidden, input_ids, cache, attention_mask=attention_mask, **kwargs)


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
    (without AMX, CPUs emulate bf16 products or widen them to float32, so they cost more than float32 ones)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    return "amx_bf16" in cpu_flags()


def cpu_model() -> str:
    """The CPU's model name as Linux lists it in /proc/cpuinfo (else what `platform` knows)."""
    import platform  # noqa: PLC0415
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


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
