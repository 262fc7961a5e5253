"""Small deterministic models for tests: tokens -> logits, with and without the hidden-state path."""
from __future__ import annotations

import math
from types import SimpleNamespace

import torch


class ToyMDM(torch.nn.Module):
    """A tiny bidirectional 'model': each position's hidden state mixes its own token, its position and the
    mean of the whole (non-padded) sequence, so the decoding order changes the answer."""

    def __init__(self, vocab: int = 11, d: int = 16, max_len: int = 64, seed: int = 0, mask_id: int | None = None,
                 scale: float = 3.0, hidden_path: bool = True):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.emb = torch.nn.Parameter(torch.randn(vocab, d, generator=g))
        self.pos = torch.nn.Parameter(torch.randn(max_len, d, generator=g))
        self.head = torch.nn.Linear(d, vocab)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(vocab, d, generator=g) * scale / d ** 0.5)
            self.head.bias.copy_(torch.randn(vocab, generator=g) * 0.1)
        self.vocab, self.mask_id, self.hidden_path = vocab, mask_id, hidden_path
        self.calls = 0

    def forward_hidden(self, x, attention_mask=None):
        self.calls += 1
        h = self.emb[x] + self.pos[: x.shape[1]]
        w = torch.ones_like(x, dtype=h.dtype) if attention_mask is None else attention_mask.to(h.dtype)
        ctx = (h * w[..., None]).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1)[..., None]
        return torch.tanh(h + 2 * ctx)

    def forward(self, x, attention_mask=None):
        return self.head(self.forward_hidden(x, attention_mask))

    def get_output_embeddings(self):
        return self.head

    def __getattribute__(self, name):
        if name in ("forward_hidden", "get_output_embeddings") and not object.__getattribute__(self, "hidden_path"):
            raise AttributeError(name)
        return super().__getattribute__(name)


class LogitsOnly(torch.nn.Module):
    """Wraps a ToyMDM so only the plain logits path is visible, returning an object with `.logits`."""

    class Out:
        def __init__(self, logits):
            self.logits = logits

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x, attention_mask=None):
        return self.Out(self.inner(x, attention_mask))


class FixedLogits(torch.nn.Module):
    """Returns the same logits row at every position (for distribution tests)."""

    def __init__(self, row: torch.Tensor):
        super().__init__()
        self.row = row

    def forward(self, x, attention_mask=None):
        return self.row.expand(x.shape[0], x.shape[1], -1).clone()


class RandomLogits(torch.nn.Module):
    """Seeded logits over `vocab` tokens that ignore the input, so any token id may go in (for argument checks);
    takes the keywords LLaDA's and Dream's loops pass."""

    def __init__(self, vocab: int = 40, seed: int = 0):
        super().__init__()
        self.vocab, self.seed = vocab, seed

    def forward(self, x, attention_mask=None, position_ids=None):
        return torch.randn(*x.shape, self.vocab, generator=torch.Generator().manual_seed(self.seed))


class ToyAttention(ToyMDM):
    """One non-causal attention layer that implements the block-cache protocol of `fastmdm.cache`: each
    position's output is tanh(h + attention(h)), h = token + position embedding, keys = values = h."""

    supports_kv_cache = True

    def __init__(self, vocab: int = 11, d: int = 16, max_len: int = 64, seed: int = 0, scale: float = 3.0):
        super().__init__(vocab=vocab, d=d, max_len=max_len, seed=seed, scale=scale)
        self.computed = []  # positions computed per call

    def forward_hidden(self, x, attention_mask=None, cache=None):
        from fastmdm import ops

        self.calls += 1
        s, e = (0, x.shape[1]) if cache is None or cache.refreshing else (cache.start, cache.end)
        self.computed.append(e - s)
        h = self.emb[x[:, s:e]] + self.pos[s:e]
        k = v = h[:, None]
        if cache is not None:
            k, v = cache.update(0, k, v)
        pad = None if attention_mask is None else attention_mask.bool()
        out = torch.tanh(h + 4 * ops.attention(h[:, None], k, v, key_padding_mask=pad, backend="torch")[:, 0])
        if cache is not None and cache.refreshing:
            out = out[:, cache.start:cache.end]
        return out


class TinyBase(torch.nn.Module):
    """One bidirectional attention layer over token + position embeddings; accepts a 2-D padding mask, a 4-D
    bool mask [B, 1, L, L], the string "full", and position ids, as LLaDA's and Dream's models do."""

    def __init__(self, vocab, d, seed, max_len=64):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.emb = torch.nn.Parameter(torch.randn(vocab, d, generator=g))
        self.pos = torch.nn.Parameter(torch.randn(max_len, d, generator=g) * 0.5)
        self.wq, self.wk, self.wv = (torch.nn.Parameter(torch.randn(d, d, generator=g) / d ** 0.5) for _ in range(3))
        self.seen = []  # (attention_mask, position_ids) of each call

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        self.seen.append((attention_mask, position_ids))
        B, L = input_ids.shape
        if position_ids is None:
            position_ids = torch.arange(L).expand(B, L)
        h = self.emb[input_ids] + self.pos[position_ids]
        s = (h @ self.wq) @ (h @ self.wk).transpose(1, 2) / math.sqrt(h.shape[-1])  # [B, L, L]
        if isinstance(attention_mask, torch.Tensor):
            allowed = attention_mask.bool()[:, None, :] if attention_mask.dim() == 2 else attention_mask[:, 0].bool()
            s = s.masked_fill(~allowed, -math.inf)
        a = torch.softmax(s, dim=-1).nan_to_num(0.0)  # a padded query sees nothing: zeros
        return SimpleNamespace(last_hidden_state=torch.tanh(h + 2 * (a @ (h @ self.wv))))


class TinyHF(torch.nn.Module):
    """A Hugging Face-style LM: `model.model` (the base), `lm_head`, `get_output_embeddings()`, `.logits` output.
    `boost` adds to the head's bias per token id (e.g. {mask_id: -30.0} so the mask is never the argmax)."""

    base_model_prefix = "model"

    def __init__(self, vocab=40, d=16, seed=0, boost=None, scale=2.0):
        super().__init__()
        g = torch.Generator().manual_seed(seed + 1000)
        self.model = TinyBase(vocab, d, seed)
        self.lm_head = torch.nn.Linear(d, vocab)
        with torch.no_grad():
            self.lm_head.weight.copy_(torch.randn(vocab, d, generator=g) * scale)
            self.lm_head.bias.copy_(torch.randn(vocab, generator=g) * 0.5)
            for token, value in (boost or {}).items():
                self.lm_head.bias[token] += value
        self.config = SimpleNamespace()
        self.full_calls = 0

    @property
    def base_model(self):
        return self.model

    def get_output_embeddings(self):
        return self.lm_head

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        self.full_calls += 1
        hidden = self.model(input_ids, attention_mask=attention_mask, position_ids=position_ids).last_hidden_state
        return SimpleNamespace(logits=self.lm_head(hidden))


MASK = 39


def padded_batch(lengths=(5, 2, 7), vocab=30, seed=0, pad=0):
    """Left-padded prompts of the given lengths (tokens in 1..vocab-1) and their attention mask."""
    g = torch.Generator().manual_seed(seed)
    P = max(lengths)
    ids = torch.full((len(lengths), P), pad, dtype=torch.long)
    am = torch.zeros(len(lengths), P, dtype=torch.long)
    for r, n in enumerate(lengths):
        ids[r, P - n:] = torch.randint(1, vocab, (n,), generator=g)
        am[r, P - n:] = 1
    return ids, am
