"""Dream's `diffusion_generate`, run by fastmdm's batched decoding loop.

    from fastmdm.compat.dream import diffusion_generate
    out = diffusion_generate(model, input_ids, attention_mask=attention_mask, max_new_tokens=256, steps=256,
                             alg="entropy", temperature=0.2, top_p=0.95)

Semantics (Dream's): `max_new_tokens` masks follow the (left-padded) prompt. The model is called as Dream's
generation does, `model(x, attention_mask=..., position_ids=...)`: with padding, a 4-D bool mask [B, 1, N, N] in
which real tokens see only real tokens and position ids that count real tokens from 0; without padding,
`attention_mask="full"` and `position_ids=None`. Logits are shifted right by one (position i is predicted by the
output at i - 1). On the timesteps linspace(1, eps, steps + 1), step i (from t to s):
- `alg="origin"`: every mask is revealed with probability 1 - s/t (all at the last step), with the token drawn
  from the filtered distribution (its argmax at temperature 0); the reveal draws come from `generator`, or from
  torch's global generator in the same order as Dream's when `generator` is None, so with the same seed
  temperature-0 runs give Dream's tokens.
- `"maskgit_plus"` (p of the token), `"topk_margin"` (p1 - p2), `"entropy"` (sum p log(p + 1e-10)): each row
  reveals its k = int(n * (1 - s/t)) best-scoring masks (all remaining at the last step), n = its masks left.
  `alg_temp` > 0 draws the k positions instead, without replacement, in proportion to softmax(score / alg_temp)
  (Gumbel-top-k on score / alg_temp, which is that distribution).
- Tokens and scores come from softmax(logits / temperature) (softmax(logits) at temperature 0) after `top_p`
  (keep the most probable tokens until their mass exceeds top_p) and `top_k` filtering, as in Dream.

Where fastmdm differs from Dream's code (none of it changes temperature-0 tokens of a float32 model that never
prefers the mask token, on batches whose rows have equally many masks, which is every batch of prompts without
mask tokens):
- The mask token is never produced (Dream's argmax could pick it); scores are still computed from Dream's
  distribution, mask column included.
- k is computed per row from the row's own masks; Dream uses the batch mean for every row, which differs only
  when rows hold different numbers of masks, and there writes the mask token over real tokens.
- Scores are float32 whatever the logits' dtype (Dream ranks in the logits' dtype, where bf16 rounds many equal;
  fastmdm breaks ties towards the lower position); steps where no row reveals anything skip the model call
  (except for "origin", whose reveal draws need every step); only masked positions are scored, through the LM
  head alone when the model has `forward_hidden` (see `fastmdm.adapters.from_hf`).
- With temperature > 0 (and with alg_temp) the draws use `generator` and follow Dream's distributions, not its
  random stream.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from fastmdm import adapters, ops, sampling

MASK_TOKEN_ID = 151666
ALGS = ("origin", "maskgit_plus", "topk_margin", "entropy")


@dataclass
class DreamOutput:
    """What `return_dict_in_generate=True` returns (Dream's field names). `history`: with
    `output_history=True`, the sequences after each of the `steps` steps; else None."""
    sequences: torch.Tensor
    history: tuple | None = None


# ----------------------------------------------------------------------------------------------
# the model as Dream calls it
# ----------------------------------------------------------------------------------------------
def dream_attention(attention_mask: torch.Tensor | None):
    """(attention_mask, position_ids) as Dream's generation passes them, from a 2-D mask over the whole sequence:
    "full" and None when nothing is padded; else a bool [B, 1, N, N] mask (real tokens see real tokens) and
    position ids counting real tokens from 0 (1 at padding)."""
    if attention_mask is None or not bool((attention_mask == 0).any()):
        return "full", None
    am = attention_mask.bool()
    position_ids = am.long().cumsum(-1) - 1
    position_ids = position_ids.masked_fill(~am, 1)
    return am[:, None, None, :] & am[:, None, :, None], position_ids


class _DreamCall:
    """The engine's model interface (x, 2-D attention_mask) over a Dream-style model: builds Dream's 4-D mask and
    position ids, calls the model, shifts its output right by one."""

    def __init__(self, model, attention_mask):
        self.model = model
        self.attn, self.position_ids = dream_attention(attention_mask)
        if sampling.has_hidden_path(model):
            self.forward_hidden = self._hidden
            self.get_output_embeddings = model.get_output_embeddings

    def __call__(self, x, attention_mask=None):
        out = self.model(x, attention_mask=self.attn, position_ids=self.position_ids)
        return adapters.shift_right(adapters._logits_of(out))

    def _hidden(self, x, attention_mask=None):
        return adapters.shift_right(self.model.forward_hidden(x, attention_mask=self.attn,
                                                              position_ids=self.position_ids))


# ----------------------------------------------------------------------------------------------
# scores and plan
# ----------------------------------------------------------------------------------------------
def filter_logits(z: torch.Tensor, top_p=None, top_k=None) -> torch.Tensor:
    """Dream's filtering of logits [N, V]: top_p keeps, in order of probability, each token whose preceding tokens'
    mass is <= top_p (so always the first); top_k keeps the tokens at least as likely as the k-th. Removed
    tokens get -inf."""
    if top_p is not None and top_p < 1:
        order = torch.sort(z, dim=-1, descending=True)
        mass_before = torch.cumsum(torch.softmax(order.values, dim=-1), dim=-1)
        drop_sorted = torch.zeros_like(mass_before, dtype=torch.bool)
        drop_sorted[:, 1:] = mass_before[:, :-1] > top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order.indices, drop_sorted)
        z = z.masked_fill(drop, -math.inf)
    if top_k is not None:
        kth = torch.topk(z, min(top_k, z.shape[-1]), dim=-1).values[:, -1:]
        z = z.masked_fill(z < kth, -math.inf)
    return z


class DreamScorer:
    """Chunk -> (tokens, scores) with Dream's token rule and the alg's score."""

    def __init__(self, *, alg, temperature, top_p, top_k, mask_id, generator):
        self.alg, self.temperature, self.top_p, self.top_k = alg, temperature, top_p, top_k
        self.mask_id, self.generator = mask_id, generator

    def __call__(self, chunk: sampling.Chunk):
        z = chunk.logits().float()  # [N, V]
        nan_rows = torch.isnan(z).any(-1)
        if self.temperature > 0:
            z = z / self.temperature
        probs = torch.softmax(filter_logits(z, self.top_p, self.top_k), dim=-1)  # Dream's distribution
        allowed = probs.clone()
        allowed[:, self.mask_id] = 0  # fastmdm never produces the mask token
        empty = allowed.sum(-1) == 0  # the filters kept only the mask: fall back to the best other tokens
        if bool(empty.any()):
            others = z.clone()
            others[:, self.mask_id] = -math.inf
            allowed = torch.where(empty[:, None], torch.softmax(others, dim=-1), allowed)
        if self.temperature > 0:
            u = torch.rand(probs.shape, generator=self.generator, device=probs.device, dtype=torch.float64)
            gumbel = -torch.log(-torch.log(u.clamp_min(1e-300)))
            tokens = torch.argmax(torch.log(allowed.double()) + gumbel, dim=-1)  # a draw from `allowed`
        else:
            tokens = torch.argmax(allowed, dim=-1)
        if self.alg == "topk_margin":
            top2 = torch.topk(probs, min(2, probs.shape[-1]), dim=-1).values
            scores = top2[:, 0] - (top2[:, 1] if top2.shape[-1] > 1 else 0)
        elif self.alg == "entropy":
            scores = (probs * torch.log(probs + 1e-10)).sum(-1)
        else:  # maskgit_plus (and origin, which ignores scores)
            scores = probs.gather(-1, tokens[:, None]).squeeze(-1)
        scores = torch.where(nan_rows, torch.full_like(scores, math.nan), scores)  # the loop reports NaN logits
        return tokens, scores


class DreamPlan:
    """Dream's schedule on linspace(1, eps, steps + 1); records the Dream step of every model call."""

    def __init__(self, alg, steps, eps, generator, device):
        self.alg, self.steps, self.generator = alg, steps, generator
        self.timesteps = torch.linspace(1, eps, steps + 1, device=device)
        self.i = 0
        self.call_steps: list[int] = []  # Dream step of each model call

    def prepare(self, n_eligible, new_group):
        i = self.i
        if i >= self.steps:  # cannot happen: the last step reveals every mask left
            raise RuntimeError("DreamPlan: masks left after the last step")
        t, s = self.timesteps[i], self.timesteps[i + 1]
        last = i == self.steps - 1
        self.i += 1
        if self.alg == "origin":
            self.p_transfer = 1 if last else 1 - s / t
            active = n_eligible > 0
        else:
            counts = n_eligible if last else (n_eligible.float() * (1 - s / t)).long()
            self.counts = torch.minimum(counts, n_eligible)
            active = self.counts > 0
        if bool(active.any()):
            self.call_steps.append(i)
        return active

    def choose(self, scores, eligible, backend):
        if self.alg == "origin":
            # Dream draws one uniform per mask, in row-major order, and reveals those below 1 - s/t
            u = torch.rand(int(eligible.sum()), generator=self.generator, device=eligible.device)
            chosen = torch.zeros_like(eligible)
            chosen[eligible] = u < self.p_transfer
            return chosen
        return ops.select_positions(scores, eligible, counts=self.counts, backend=backend)


# ----------------------------------------------------------------------------------------------
# entry point
# ----------------------------------------------------------------------------------------------
def _default_mask_id(model):
    for holder in (getattr(model, "generation_config", None), getattr(model, "config", None)):
        value = getattr(holder, "mask_token_id", None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return MASK_TOKEN_ID


def _check_float(name, value, lo, hi, text, allow_none=True):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise TypeError(f"{name}: must be a number {text}, got {value!r}")
    if not lo(value) or not hi(value):
        raise ValueError(f"{name}: must be {text}, got {value}")


_DEFAULTS = dict(max_new_tokens=None, max_length=None, steps=512, temperature=0.0, top_p=None, top_k=None,
                 alg="origin", alg_temp=None, eps=1e-3, mask_token_id=None, output_history=False,
                 return_dict_in_generate=False, num_return_sequences=1)


def _merge_config(config, given):
    """Options from a Dream-style generation config for every argument left at its default."""
    merged = dict(given)
    for name, default in _DEFAULTS.items():
        value = getattr(config, name, None)
        if name == "max_length" and value == 20:  # Dream's config default: means "20 new tokens", as no value does
            value = None
        if value is not None and given[name] == default and (default is None or type(given[name]) is type(default)):
            merged[name] = value
    return merged


@torch.no_grad()
def diffusion_generate(model, inputs=None, attention_mask=None, *, max_new_tokens=None, max_length=None, steps=512,
                       temperature=0.0, top_p=None, top_k=None, alg="origin", alg_temp=None, eps=1e-3,
                       mask_token_id=None, output_history=False, return_dict_in_generate=False,
                       num_return_sequences=1, generator=None, backend="auto", input_ids=None,
                       generation_config=None, **unused):
    """Dream's `model.diffusion_generate(inputs, ...)` (same options, same tokens at temperature 0), batched.

    Returns the sequences [B, P + max_new_tokens], or `DreamOutput(sequences, history)` with
    `return_dict_in_generate=True`. `mask_token_id` defaults to the model's generation_config/config value, else
    Dream's 151666. A `generation_config` (any object with Dream's field names) supplies every option left at
    its default here, as Dream's does (explicit keywords win). See the module docstring for the semantics and the
    few differences from Dream's code.
    """
    if generation_config is not None:
        given = dict(max_new_tokens=max_new_tokens, max_length=max_length, steps=steps, temperature=temperature,
                     top_p=top_p, top_k=top_k, alg=alg, alg_temp=alg_temp, eps=eps, mask_token_id=mask_token_id,
                     output_history=output_history, return_dict_in_generate=return_dict_in_generate,
                     num_return_sequences=num_return_sequences)
        merged = _merge_config(generation_config, given)
        return diffusion_generate(model, inputs, attention_mask, generator=generator, backend=backend,
                                  input_ids=input_ids, **merged, **unused)
    if inputs is None:
        inputs = input_ids
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 2:
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise ValueError(f"inputs: must be a LongTensor [B, P] of token ids, got {shape}; use inputs[None] for one "
                         "sequence")
    if inputs.dtype.is_floating_point or inputs.dtype == torch.bool:
        raise TypeError(f"inputs: must hold integer token ids (torch.long), got {inputs.dtype}")
    known = {"pad_token_id", "bos_token_id", "eos_token_id", "generation_tokens_hook_func",
             "generation_logits_hook_func"}
    odd = sorted(set(unused) - known)
    if odd:
        raise TypeError(f"diffusion_generate: unexpected keyword argument(s) {odd}")
    for name in ("generation_tokens_hook_func", "generation_logits_hook_func"):
        if unused.get(name) is not None:
            raise ValueError(f"{name}: Dream's per-step hooks are not supported by fastmdm's loop; pass a "
                             "callable strategy to fastmdm.sample instead")
    if alg not in ALGS:
        raise ValueError(f"alg: unknown {alg!r}; use one of {ALGS}")
    sampling._check_int("steps", steps)
    sampling._check_int("num_return_sequences", num_return_sequences)
    sampling._check_int("top_k", top_k)
    _check_float("temperature", temperature, lambda v: v >= 0, lambda v: True, ">= 0", allow_none=False)
    _check_float("alg_temp", alg_temp, lambda v: v >= 0, lambda v: True, ">= 0")
    _check_float("top_p", top_p, lambda v: v > 0, lambda v: v <= 1, "in (0, 1]")
    _check_float("eps", eps, lambda v: v > 0, lambda v: v < 1, "in (0, 1) (the last timestep)", allow_none=False)
    sampling._check_sampling_args(temperature, 0.0, backend, generator, False)
    mask_id = _default_mask_id(model) if mask_token_id is None else mask_token_id
    if isinstance(mask_id, bool) or not isinstance(mask_id, int) or mask_id < 0:
        raise TypeError(f"mask_token_id: must be a token id (an int >= 0), got {mask_id!r}")
    B, P = inputs.shape
    if max_new_tokens is not None:
        sampling._check_int("max_new_tokens", max_new_tokens)
        new = max_new_tokens
    elif max_length is not None:
        sampling._check_int("max_length", max_length)
        new = max_length - P
        if new < 1:
            raise ValueError(f"max_length: {max_length} leaves no room after the {P} input tokens; pass "
                             "max_new_tokens=<tokens to generate> instead")
    else:
        new = 20
        warnings.warn("diffusion_generate: neither max_new_tokens nor max_length given; generating 20 tokens "
                      "(Dream's default). Pass max_new_tokens= to choose.", UserWarning, stacklevel=2)
    if attention_mask is not None:
        if not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != (B, P):
            shape = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask)
            raise ValueError(f"attention_mask: must be a tensor of the inputs' shape {(B, P)} (1 = real token, "
                             f"0 = left padding), got {shape}")
    if num_return_sequences > 1:
        inputs = inputs.repeat_interleave(num_return_sequences, dim=0)
        if attention_mask is not None:
            attention_mask = attention_mask.repeat_interleave(num_return_sequences, dim=0)

    dev = inputs.device
    x = torch.cat([inputs.long(), torch.full((inputs.shape[0], new), mask_id, dtype=torch.long, device=dev)], 1)
    if attention_mask is not None:
        attention_mask = torch.cat([attention_mask, torch.ones(attention_mask.shape[0], new,
                                                               dtype=attention_mask.dtype, device=dev)], 1)
    fillable = x == mask_id
    if attention_mask is not None:
        fillable &= attention_mask.bool()
    groups = torch.zeros_like(x)
    plan = DreamPlan(alg, steps, eps, generator, dev)
    scorer = DreamScorer(alg=alg, temperature=float(temperature), top_p=top_p, top_k=top_k, mask_id=mask_id,
                         generator=generator)
    noise = float(alg_temp) if (alg != "origin" and alg_temp) else 0.0
    tokens, order, _ = sampling.decode(_DreamCall(model, attention_mask), x, attention_mask, fillable, groups,
                                       plan=plan, scorer=scorer, mask_id=mask_id, score_noise=noise,
                                       generator=generator, backend=backend)
    if not return_dict_in_generate:
        return tokens
    history = None
    if output_history:
        call_steps = torch.tensor(plan.call_steps + [steps], dtype=torch.long, device=dev)
        step_of = torch.where(order >= 0, call_steps[order.clamp(min=0)], torch.full_like(order, -1))
        history = tuple(torch.where(fillable & (step_of > i), torch.full_like(tokens, mask_id), tokens)
                        for i in range(steps))
    return DreamOutput(sequences=tokens, history=history)
