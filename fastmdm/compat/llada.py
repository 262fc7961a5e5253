"""LLaDA's `generate`, run by fastmdm's batched decoding loop.

    from fastmdm.compat.llada import generate
    out = generate(model, input_ids, attention_mask, steps=128, gen_length=128, block_length=32)

Semantics (LLaDA's): `gen_length` masks follow the (left-padded) prompt and are decoded in blocks of
`block_length` from the end of the prompt; each block gets `steps // num_blocks` steps and its masks are split
over them as `base = n // steps`, the first `n % steps` steps one more. Each step: one model call
`model(x, attention_mask=...)` for the batch; tokens are the argmax of the logits (temperature 0) or of
Gumbel-noised logits (float64 noise, i.e. a draw from softmax(logits / T)); 'low_confidence' keeps the positions
whose chosen token has the highest softmax(logits) probability (at T = 1 whatever the temperature, as LLaDA
does), 'random' ranks them by uniform noise. `cfg_scale` s > 0: logits = un + (s + 1) (cond - un), the prompt
masked in `un`. `logits_eos_inf` forbids EOS; `confidence_eos_eot_inf` removes EOS and EOT from the confidence
softmax, so positions predicting them score 0 and are filled last in their block.

Where fastmdm differs from LLaDA's code (none of it changes temperature-0 tokens of a float32 model that never
prefers the mask token, except on exact ties, see the second point):
- The mask token is never produced; LLaDA's argmax could pick it (then the position stayed masked).
- Confidences are float32 whatever the logits' dtype; LLaDA's are in the logits' dtype (bf16 rounds many of them
  equal). On an exact tie between two positions, fastmdm fills the lower position first while LLaDA's
  torch.topk breaks ties in no documented order, so the two can fill the tied positions in another order and,
  through the later steps, end with other tokens. Exact float32 ties are rare with real logits (they need two
  positions with bit-identical confidences) and common in bf16.
- Only the current block's masks are scored, through the LM head alone when the model has `forward_hidden`
  (see `fastmdm.adapters.from_hf`); steps where no position is due (more steps than masks) skip the model call.
- With temperature > 0, `confidence_eos_eot_inf` removes EOS and EOT from the confidence softmax as at
  temperature 0 (LLaDA's code then removes only EOT); the Gumbel draw uses `generator` and the equivalent log form
  logits / T + Gumbel (no overflow of exp(logits) in float64), so samples follow the same distribution, not the
  same stream.
- Mask tokens inside a prompt are filled with the first block (LLaDA lets them compete with every block's
  positions, so a block could end unfinished); cfg_scale > 0 with attention_mask=None works (LLaDA's raises).
- `eos_id`, `eot_id` (LLaDA's 126081 and 126348), `generator` and `backend` are extra keyword arguments.
"""
from __future__ import annotations

import math

import torch

from fastmdm import ops, validate
from fastmdm.engine import Chunk, decode, row_blocks
from fastmdm.guidance import CFGModel, prompt_positions
from fastmdm.plans import StepsPlan, generation_layout

MASK_ID = 126336
EOS_ID = 126081
EOT_ID = 126348
REMASKING = ("low_confidence", "random")


class LLaDAScorer:
    """Chunk -> (tokens, scores) with LLaDA's token rule and confidence."""

    def __init__(self, *, temperature, remasking, mask_id, logits_eos_inf, confidence_eos_eot_inf, eos_id, eot_id,
                 generator):
        self.temperature, self.remasking, self.mask_id = temperature, remasking, mask_id
        self.logits_eos_inf, self.confidence_eos_eot_inf = logits_eos_inf, confidence_eos_eot_inf
        self.eos_id, self.eot_id, self.generator = eos_id, eot_id, generator

    def __call__(self, chunk: Chunk):
        logits = chunk.logits()  # [N, V], a buffer the chunk owns
        if self.temperature == 0:
            return self._in_place(logits if logits.dtype == torch.float32 else logits.float())
        N = logits.shape[0]
        tokens = torch.empty(N, dtype=torch.long, device=logits.device)
        scores = torch.empty(N, dtype=torch.float32, device=logits.device)
        # a block of rows at a time: the clones and the softmax below are [rows, V], not [N, V] (a chunk can hold
        # a whole block of positions of a batch: 128 x 126,464 float32 logits are 62 MiB per buffer)
        for rows in row_blocks(N, logits.shape[1]):
            tokens[rows], scores[rows] = self._rows(logits[rows])
        if self.remasking == "random":
            # drawn after every block's Gumbel noise, as one [N] draw
            scores = torch.where(torch.isnan(scores), scores,
                                 torch.rand(N, generator=self.generator, device=scores.device))
        return tokens, scores

    def _in_place(self, z: torch.Tensor):
        """Temperature 0 inside the float32 logits buffer `z` [N, V] itself, with no other [N, V] tensor: the mask
        column is set aside during the argmax, and the softmax is exp(z - max) / sum, computed over `z`."""
        if self.logits_eos_inf:
            z[:, self.eos_id] = -math.inf
        kept = z[:, self.mask_id].clone()
        z[:, self.mask_id] = -math.inf  # fastmdm never produces the mask token
        tokens = torch.argmax(z, dim=-1)
        z[:, self.mask_id] = kept
        top = z.amax(-1, keepdim=True)  # amax carries a row's NaN
        nan_rows = torch.isnan(top[:, 0])
        if self.remasking == "random":
            scores = torch.where(nan_rows, math.nan, torch.rand(z.shape[0], generator=self.generator,
                                                                 device=z.device))
            return tokens, scores
        if self.confidence_eos_eot_inf:
            z[:, [self.eos_id, self.eot_id]] = -math.inf
        z.sub_(top).exp_()
        scores = z.gather(-1, tokens[:, None]).squeeze(-1) / z.sum(-1)
        return tokens, torch.where(nan_rows, torch.full_like(scores, math.nan), scores)  # the loop reports NaN

    def _rows(self, z: torch.Tensor):
        z = z.float()  # [n, V]; a view of the chunk's logits when they are float32, never written
        if self.logits_eos_inf:
            z = z.clone()
            z[:, self.eos_id] = -math.inf
        pick = z.clone()
        pick[:, self.mask_id] = -math.inf  # fastmdm never produces the mask token
        if self.temperature > 0:
            # LLaDA: argmax(exp(z) / (-log u)^T), float64 u; its log is z + T * Gumbel: a draw from softmax(z / T)
            noise = ops.gumbel(pick.shape, generator=self.generator, device=pick.device)
            tokens = torch.argmax(noise.mul_(self.temperature).add_(pick), dim=-1)
        else:
            tokens = torch.argmax(pick, dim=-1)
        del pick
        nan_rows = torch.isnan(z.amax(-1))  # amax carries a row's NaN
        if self.remasking == "random":
            scores = torch.zeros(z.shape[0], device=z.device)
        else:
            conf = z
            if self.confidence_eos_eot_inf:
                conf = z.clone()
                conf[:, [self.eos_id, self.eot_id]] = -math.inf
            scores = torch.softmax(conf, dim=-1).gather(-1, tokens[:, None]).squeeze(-1)
        return tokens, torch.where(nan_rows, torch.full_like(scores, math.nan), scores)  # the loop reports NaN


@torch.no_grad()
def generate(model, prompt, attention_mask=None, steps=128, gen_length=128, block_length=128, temperature=0.,
             cfg_scale=0., remasking='low_confidence', mask_id=MASK_ID, logits_eos_inf=False,
             confidence_eos_eot_inf=False, *, eos_id=EOS_ID, eot_id=EOT_ID, generator=None, backend="auto"):
    """LLaDA's `generate` (same arguments, same tokens at temperature 0), batched; returns [B, P + gen_length].

    `prompt` [B, P] (left-pad prompts of different lengths and pass `attention_mask` [B, P], 1 = real token);
    see the module docstring for the semantics and the few differences from LLaDA's code.
    """
    prompt = validate.check_token_ids("prompt", prompt)
    validate.check_llada_blocks(steps, gen_length, block_length)
    validate.check_number("cfg_scale", cfg_scale)
    if remasking not in REMASKING:
        raise ValueError(f"remasking: unknown {remasking!r}; use one of {REMASKING}")
    for name, v in (("mask_id", mask_id), ("eos_id", eos_id), ("eot_id", eot_id)):
        validate.check_token_id(name, v)
    for name, v in (("logits_eos_inf", logits_eos_inf), ("confidence_eos_eot_inf", confidence_eos_eot_inf)):
        validate.check_bool(name, v)
    validate.check_sampling(temperature, 0.0, backend, generator)
    validate.check_attention_mask(attention_mask, prompt.shape, "the prompt's")
    vocab = validate.model_vocab_size(model)
    validate.check_token_in_vocab("mask_id", mask_id, vocab, f"pass mask_id=<the model's mask token id> "
                                  f"(LLaDA's is {MASK_ID})")
    validate.check_devices(model, prompt)

    x, attention_mask, fillable, groups, groups_per_row = generation_layout(
        prompt, gen_length, block_length, mask_id, attention_mask)
    plan = StepsPlan(steps, groups_per_row)
    use_hidden = None
    if cfg_scale > 0:
        model = CFGModel(model, float(cfg_scale), prompt_positions(prompt, x.shape[1], mask_id), mask_id)
        use_hidden = False
    eos_used = [n for n, on in (("eos_id", logits_eos_inf or confidence_eos_eot_inf),
                                ("eot_id", confidence_eos_eot_inf)) if on]
    scorer = LLaDAScorer(temperature=float(temperature), remasking=remasking, mask_id=mask_id,
                         logits_eos_inf=logits_eos_inf, confidence_eos_eot_inf=confidence_eos_eot_inf,
                         eos_id=eos_id, eot_id=eot_id, generator=generator)
    scorer = _VocabChecked(scorer, {n: (eos_id if n == "eos_id" else eot_id) for n in eos_used})
    return decode(model, x, attention_mask, fillable, groups, plan=plan, scorer=scorer, mask_id=mask_id,
                  generator=generator, backend=backend, use_hidden=use_hidden).tokens


class _VocabChecked:
    """Checks once, on the first chunk, that the EOS/EOT ids in use lie inside the model's vocabulary."""

    def __init__(self, scorer, ids):
        self.scorer, self.ids, self.checked = scorer, ids, not ids

    def __call__(self, chunk):
        if not self.checked:
            V = chunk.vocab_size
            for name, value in self.ids.items():
                if value >= V:
                    raise ValueError(f"{name}: {value} is outside the model's vocabulary of {V} tokens; pass "
                                     f"{name}=<the model's id> (LLaDA's are eos_id={EOS_ID}, eot_id={EOT_ID})")
            self.checked = True
        return self.scorer(chunk)
