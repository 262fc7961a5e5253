"""The built-in decoding orders (random, confidence, margin, entropy, or a callable) as a `Scorer`."""
from __future__ import annotations

import math

import torch

from fastmdm import ops
from fastmdm.engine import LOGITS_CHUNK_BYTES, Chunk

#: decoding orders by name (with the seed paper's names as aliases) -> the canonical name
STRATEGIES = {
    "random": "random", "vanilla": "random",
    "confidence": "confidence", "top_prob": "confidence",
    "margin": "margin", "top_margin": "margin",
    "entropy": "entropy",
}


def resolve_strategy(strategy):
    """The canonical name of a built-in strategy, or the callable itself."""
    if callable(strategy):
        return strategy
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise ValueError(f"strategy: unknown {strategy!r}; use one of {sorted(STRATEGIES)} or a callable "
                         "that maps logits [N, V] at the fillable positions to scores [N]")
    return STRATEGIES[strategy]


def check_threshold(strategy, threshold, score_noise) -> None:
    """A threshold the strategy's scores can meet (any number for callables and noisy scores)."""
    if threshold is None:
        return
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or math.isnan(threshold):
        raise TypeError(f"threshold: must be a number, got {threshold!r}")
    if callable(strategy) or score_noise > 0:
        return  # the scores' range is the caller's
    ranges = {"confidence": (0.0, 1.0, "(0, 1]"), "margin": (0.0, 1.0, "(0, 1]"), "random": (0.0, 1.0, "(0, 1)"),
              "entropy": (-math.inf, 0.0, "(-inf, 0] (scores are -H(p))")}
    lo, hi, text = ranges[strategy]
    ok = lo < threshold <= hi and not (strategy == "random" and threshold >= 1.0)
    if not ok:
        raise ValueError(f"threshold: {threshold} can never be met by {strategy!r} scores, which lie in {text}; "
                         "pick a threshold in that range")


class StrategyScorer:
    """A built-in strategy (or a callable on logits) as a `fastmdm.engine.Scorer`.

    Tokens: argmax (temperature 0) or a draw from softmax(logits / T), never the mask token. Scores: the
    strategy's (confidence p(token), margin p1 - p2, entropy -H(p)), uniform noise for "random", the callable's
    output for a callable. On the hidden-state path the named strategies run through the fused LM head
    (`ops.linear_token_stats`), which bounds its own memory.
    """

    def __init__(self, strategy, temperature: float, mask_id: int, generator=None, backend: str = "auto"):
        self.strategy, self.temperature, self.mask_id = resolve_strategy(strategy), temperature, mask_id
        self.generator, self.backend = generator, backend
        self.bounds_memory = isinstance(self.strategy, str)

    def __call__(self, chunk: Chunk):
        named = isinstance(self.strategy, str)
        user = None
        if not named:  # before the logits buffer is reused below
            user = self.strategy(chunk.logits())
            if not isinstance(user, torch.Tensor) or tuple(user.shape) != (len(chunk),):
                raise ValueError(f"strategy: the callable must return scores of shape [{len(chunk)}] "
                                 f"(one per row of logits), got {getattr(user, 'shape', type(user).__name__)}")
        score = self.strategy if named and self.strategy != "random" else "none"
        kw = dict(score=score, temperature=self.temperature, mask_id=self.mask_id, generator=self.generator,
                  backend=self.backend)
        if chunk.from_hidden and named:
            tokens, scores = ops.linear_token_stats(chunk.hidden, chunk.weight, chunk.bias,
                                                    max_bytes=LOGITS_CHUNK_BYTES, **kw)
        elif not chunk.materialized and not chunk.from_hidden:  # the kernel reads the rows in place
            tokens, scores = ops.token_stats(chunk.source, rows=chunk.rows, **kw)
        else:
            tokens, scores = ops.token_stats(chunk.logits(), overwrite=True, **kw)  # the chunk owns its logits
        if self.strategy == "random":
            scores = torch.where(torch.isnan(scores), scores,
                                 torch.rand(scores.shape, generator=self.generator, device=scores.device))
        elif user is not None:
            scores = torch.where(torch.isnan(scores), scores, user.float())
        return tokens, scores
