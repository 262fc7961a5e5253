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

Options left unset (None) are resolved as Dream's own `diffusion_generate` resolves them: from the
`generation_config` argument, else from `model.generation_config`, else from `model.config`, else Dream's
defaults (steps 512, temperature 0.0, alg "origin", eps 1e-3, 20 new tokens). Every keyword passed explicitly
wins, whatever its value. So a model whose config carries transformers' legacy generation defaults
(temperature 1.0, top_k 50) samples, exactly as Dream's code does: pass temperature=0.0 for greedy decoding.

Where fastmdm differs from Dream's code (none of it changes temperature-0 tokens of a float32 model that never
prefers the mask token, on batches whose rows have equally many masks, which is every batch of prompts without
mask tokens, except on exact score ties, see the third point):
- The mask token is never produced (Dream's argmax could pick it); scores are still computed from Dream's
  distribution, mask column included.
- k is computed per row from the row's own masks; Dream uses the batch mean for every row, which differs only
  when rows hold different numbers of masks, and there writes the mask token over real tokens.
- Scores are float32 whatever the logits' dtype (Dream ranks in the logits' dtype, where bf16 rounds many equal).
  On an exact tie fastmdm fills the lower position first, while Dream's torch.topk breaks ties in no documented
  order, so tied positions can be filled in another order and later tokens can differ (rare in float32, where
  a tie needs bit-identical scores; common in bf16); steps where no row reveals anything skip the model call
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

from fastmdm import adapters, ops, validate
from fastmdm.cache import supports_kv_cache
from fastmdm.engine import Chunk, decode, has_hidden_path, logits_of, row_blocks
from fastmdm.plans import generation_layout

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
    position ids, calls the model, shifts its output right by one. With a block cache the window starts one
    position early, since position i reads the hidden state of position i - 1."""

    def __init__(self, model, attention_mask):
        self.model = model
        self.attn, self.position_ids = dream_attention(attention_mask)
        if has_hidden_path(model):
            self.forward_hidden = self._hidden
            self.get_output_embeddings = model.get_output_embeddings
            self.supports_kv_cache = supports_kv_cache(model)

    def _rows(self, cache):
        if cache is None or self.position_ids is None or cache.all_rows:
            return self.attn, self.position_ids
        return self.attn[cache.rows], self.position_ids[cache.rows]

    def __call__(self, x, attention_mask=None):
        out = self.model(x, attention_mask=self.attn, position_ids=self.position_ids)
        return adapters.shift_right(logits_of(out))

    def _hidden(self, x, attention_mask=None, cache=None):
        attn, position_ids = self._rows(cache)
        return adapters.shifted_hidden(self.model.forward_hidden, x, cache, attention_mask=attn,
                                       position_ids=position_ids)


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

    def __call__(self, chunk: Chunk):
        logits = chunk.logits()  # [N, V]
        N = logits.shape[0]
        tokens = torch.empty(N, dtype=torch.long, device=logits.device)
        scores = torch.empty(N, dtype=torch.float32, device=logits.device)
        # a block of rows at a time: the softmax and the other temporaries below are [rows, V], not [N, V]
        for rows in row_blocks(N, logits.shape[1]):
            tokens[rows], scores[rows] = self._rows(logits[rows])
        return tokens, scores

    def _rows(self, z: torch.Tensor):
        z = z.float()  # [n, V]; a view of the chunk's logits when they are float32, never written
        nan_rows = torch.isnan(z.amax(-1))  # amax carries a row's NaN
        if self.temperature > 0:
            z = z / self.temperature
        probs = torch.softmax(filter_logits(z, self.top_p, self.top_k), dim=-1)  # Dream's distribution
        kept = probs[:, self.mask_id].clone()
        probs[:, self.mask_id] = 0  # fastmdm never produces the mask token (restored below for the scores)
        allowed = probs
        empty = probs.amax(-1) == 0  # the filters kept only the mask: fall back to the best other tokens
        if bool(empty.any()):
            others = z.clone()
            others[:, self.mask_id] = -math.inf
            allowed = torch.where(empty[:, None], torch.softmax(others, dim=-1), probs)
        if self.temperature > 0:
            noise = ops.gumbel(probs.shape, generator=self.generator, device=probs.device)
            tokens = torch.argmax(allowed.double().log_().add_(noise), dim=-1)  # a draw from `allowed`
        else:
            tokens = torch.argmax(allowed, dim=-1)
        del allowed
        probs[:, self.mask_id] = kept
        if self.alg == "topk_margin":
            top2 = torch.topk(probs, min(2, probs.shape[-1]), dim=-1).values
            scores = top2[:, 0] - (top2[:, 1] if top2.shape[-1] > 1 else 0)
        elif self.alg == "entropy":
            scores = (probs + 1e-10).log_().mul_(probs).sum(-1)
        else:  # maskgit_plus (and origin, which ignores scores)
            scores = probs.gather(-1, tokens[:, None]).squeeze(-1)
        return tokens, torch.where(nan_rows, torch.full_like(scores, math.nan), scores)  # the loop reports NaN


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
#: Dream's generation defaults, for the options neither the call nor any config sets
DEFAULTS = dict(max_new_tokens=None, max_length=20, steps=512, temperature=0.0, top_p=None, top_k=None,
                alg="origin", alg_temp=None, eps=1e-3, mask_token_id=None, output_history=False,
                return_dict_in_generate=False, num_return_sequences=1)


def resolve_options(model, given: dict, generation_config=None) -> dict:
    """Every option: the explicit keyword (anything but None), else the first config holding it (the
    `generation_config` argument, else `model.generation_config`, else `model.config`), else Dream's default.
    The mask token id also falls back to model.generation_config / model.config, then Dream's 151666."""
    source = generation_config
    if source is None:
        source = getattr(model, "generation_config", None)
    if source is None:
        source = getattr(model, "config", None)
    options = {}
    for name, default in DEFAULTS.items():
        value = given.get(name)
        if value is None and source is not None:
            value = getattr(source, name, None)
        options[name] = default if value is None else value
    if options["mask_token_id"] is None:
        for holder in (getattr(model, "generation_config", None), getattr(model, "config", None)):
            value = getattr(holder, "mask_token_id", None)
            if isinstance(value, int) and not isinstance(value, bool):
                options["mask_token_id"] = value
                break
        else:
            options["mask_token_id"] = MASK_TOKEN_ID
    return options


@torch.no_grad()
def diffusion_generate(model, inputs=None, attention_mask=None, *, max_new_tokens=None, max_length=None, steps=None,
                       temperature=None, top_p=None, top_k=None, alg=None, alg_temp=None, eps=None,
                       mask_token_id=None, output_history=None, return_dict_in_generate=None,
                       num_return_sequences=None, generator=None, backend="auto", input_ids=None,
                       generation_config=None, cache=None, **unused):
    """Dream's `model.diffusion_generate(inputs, ...)` (same options, same tokens at temperature 0), batched.

    Returns the sequences [B, P + max_new_tokens], or `DreamOutput(sequences, history)` with
    `return_dict_in_generate=True`. Options left at None are resolved as Dream does (see the module docstring);
    explicit keywords always win. `cache="prefix"|"dual"` runs Fast-dLLM's block caches over the whole
    generation (one block; approximate) for a model that implements `fastmdm.cache`.
    """
    o = resolve_options(model, dict(max_new_tokens=max_new_tokens, max_length=max_length, steps=steps,
                                    temperature=temperature, top_p=top_p, top_k=top_k, alg=alg, alg_temp=alg_temp,
                                    eps=eps, mask_token_id=mask_token_id, output_history=output_history,
                                    return_dict_in_generate=return_dict_in_generate,
                                    num_return_sequences=num_return_sequences), generation_config)
    if inputs is None:
        inputs = input_ids
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"inputs: must be a LongTensor [B, P] of token ids, got {type(inputs).__name__}")
    inputs = validate.check_token_ids("inputs", inputs)
    known = {"pad_token_id", "bos_token_id", "eos_token_id", "generation_tokens_hook_func",
             "generation_logits_hook_func"}
    odd = sorted(set(unused) - known)
    if odd:
        raise TypeError(f"diffusion_generate: unexpected keyword argument(s) {odd}")
    for name in ("generation_tokens_hook_func", "generation_logits_hook_func"):
        if unused.get(name) is not None:
            raise ValueError(f"{name}: Dream's per-step hooks are not supported by fastmdm's loop; pass a "
                             "callable strategy to fastmdm.sample instead")
    alg, steps, temperature, eps = o["alg"], o["steps"], o["temperature"], o["eps"]
    if alg not in ALGS:
        raise ValueError(f"alg: unknown {alg!r}; use one of {ALGS}")
    for name in ("steps", "num_return_sequences", "top_k"):
        validate.check_int(name, o[name])
    validate.check_number("temperature", temperature)
    validate.check_number("alg_temp", o["alg_temp"], allow_none=True)
    top_p = o["top_p"]
    validate.check_number("top_p", top_p, low_open=True, high=1.0, allow_none=True)
    validate.check_number("eps", eps, low_open=True, high=1.0, high_open=True)
    validate.check_sampling(temperature, 0.0, backend, generator)
    mask_id = validate.check_token_id("mask_token_id", o["mask_token_id"])
    validate.check_token_in_vocab("mask_token_id", mask_id, validate.model_vocab_size(model),
                                  f"pass mask_token_id=<the model's mask token id> (Dream's is {MASK_TOKEN_ID})")
    validate.check_devices(model, inputs)
    if cache is not None and alg == "origin":
        raise ValueError("cache: alg='origin' reveals positions by chance at every step, so it runs without a "
                         "cache; pass cache=None or a ranked alg")
    B, P = inputs.shape
    if max_new_tokens is not None or (o["max_new_tokens"] is not None and max_length is None):
        validate.check_int("max_new_tokens", o["max_new_tokens"])
        new = o["max_new_tokens"]
    elif max_length is not None or o["max_length"] != 20:
        validate.check_int("max_length", o["max_length"])
        new = o["max_length"] - P
        if new < 1:
            raise ValueError(f"max_length: {o['max_length']} leaves no room after the {P} input tokens; pass "
                             "max_new_tokens=<tokens to generate> instead")
    else:  # Dream's default max_length of 20 means 20 new tokens
        new = 20
        warnings.warn("diffusion_generate: neither max_new_tokens nor max_length given; generating 20 tokens "
                      "(Dream's default). Pass max_new_tokens= to choose.", UserWarning, stacklevel=2)
    validate.check_attention_mask(attention_mask, (B, P), "the inputs'")
    n_ret = o["num_return_sequences"]
    if n_ret > 1:
        inputs = inputs.repeat_interleave(n_ret, dim=0)
        if attention_mask is not None:
            attention_mask = attention_mask.repeat_interleave(n_ret, dim=0)

    dev = inputs.device
    x, attention_mask, fillable, groups, _ = generation_layout(inputs, new, None, mask_id, attention_mask)
    plan = DreamPlan(alg, steps, eps, generator, dev)
    scorer = DreamScorer(alg=alg, temperature=float(temperature), top_p=top_p, top_k=o["top_k"], mask_id=mask_id,
                         generator=generator)
    noise = float(o["alg_temp"]) if (alg != "origin" and o["alg_temp"]) else 0.0
    trace = decode(_DreamCall(model, attention_mask), x, attention_mask, fillable, groups, plan=plan, scorer=scorer,
                   mask_id=mask_id, score_noise=noise, generator=generator, backend=backend, cache=cache)
    tokens, order = trace.tokens, trace.order
    if not o["return_dict_in_generate"]:
        return tokens
    history = None
    if o["output_history"]:
        call_steps = torch.tensor(plan.call_steps + [steps], dtype=torch.long, device=dev)
        step_of = torch.where(order >= 0, call_steps[order.clamp(min=0)], torch.full_like(order, -1))
        history = tuple(torch.where(fillable & (step_of > i), torch.full_like(tokens, mask_id), tokens)
                        for i in range(steps))
    return DreamOutput(sequences=tokens, history=history)
