"""Block key/value caches for decoding (Fast-dLLM's "prefix" and "dual" caches).

A bidirectional model has no exact key/value cache: every token can change every other token's keys. Block
decoding makes an approximate one cheap. At the first step of a block the model runs on the whole sequence and
the cache keeps every layer's keys and values. Until the next block starts, each call computes only a window
of positions and attends to the cached keys and values elsewhere:

- ``"prefix"``: the window is the current block and everything after it; the prefix before the block is reused;
- ``"dual"``: the window is the current block alone; the prefix and the (still mostly masked) suffix are reused.

The results differ from uncached decoding (the reused keys and values are those of the block's first step),
so tokens can differ too; the benchmarks report how often they agree.

The protocol a model implements (`fastmdm.models.Transformer`, `fastmdm.models.LLaDA`, `fastmdm.models.Dream`):

- ``model.supports_kv_cache`` is True;
- ``model.forward_hidden(input_ids, attention_mask=None, ..., cache=None)`` with a `KVCache`:
  ``input_ids`` [b, L] is always the full sequence of the call's rows, and ``attention_mask`` (and position ids,
  where the model takes them) cover all L positions. When ``cache.refreshing`` is True the model runs on all L
  positions; otherwise it runs only on positions ``cache.start:cache.end`` (``input_ids[:, cache.start:cache.end]``,
  with their own positions). In every layer it passes the keys and values of the positions it computed
  (heads on dim 1, [b, H_kv, n, D], positions already applied) through ``cache.update(layer, k, v)`` and attends
  with what that returns (keys and values of all L positions). It returns the hidden states of the window only,
  [b, cache.end - cache.start, d], in both cases.
"""
from __future__ import annotations

import torch

CACHE_MODES = ("prefix", "dual")


class KVCache:
    """Every layer's keys and values for the whole batch, kept between the model calls of one block.

    The decoding loop calls `begin` before each model call; the model calls `update` once per layer.
    """

    def __init__(self, mode: str, batch_size: int):
        if mode not in CACHE_MODES:
            raise ValueError(f"cache: {mode!r} is not one of {CACHE_MODES} (or None for no cache)")
        self.mode, self.batch_size = mode, int(batch_size)
        self.keys: dict[int, torch.Tensor] = {}
        self.values: dict[int, torch.Tensor] = {}
        self.rows: torch.Tensor | None = None
        self.all_rows = True
        self.start, self.end, self.refreshing = 0, 0, True

    def begin(self, rows: torch.Tensor, start: int, end: int, refresh: bool) -> None:
        """The next call's rows (indices into the full batch), window [start, end) and whether it refreshes."""
        if not refresh and not self.keys:
            raise RuntimeError("KVCache: the first call must refresh the cache")
        self.rows, self.start, self.end, self.refreshing = rows, int(start), int(end), bool(refresh)
        self.all_rows = rows.numel() == self.batch_size

    def widen_left(self, n: int = 1):
        """Context manager: the window starts `n` positions earlier for the duration (for models that read the
        hidden state one position back, such as Dream's shifted predictions)."""
        return _Widened(self, n)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values [b, H, L, D] of all positions for this call: on a refresh, `k`/`v` themselves (and
        stored); otherwise the cached ones with the window's positions replaced by `k`/`v`."""
        if self.refreshing:
            if layer not in self.keys or self.keys[layer].shape[1:] != k.shape[1:] or \
                    self.keys[layer].dtype != k.dtype:
                shape = (self.batch_size, *k.shape[1:])
                self.keys[layer] = torch.zeros(shape, dtype=k.dtype, device=k.device)
                self.values[layer] = torch.zeros(shape, dtype=v.dtype, device=v.device)
            if self.all_rows:
                self.keys[layer].copy_(k)
                self.values[layer].copy_(v)
            else:
                self.keys[layer][self.rows] = k
                self.values[layer][self.rows] = v
            return k, v
        if layer not in self.keys:
            raise RuntimeError(f"KVCache: layer {layer} was not stored at the block's first call")
        s, e = self.start, self.end
        if k.shape[2] != e - s:
            raise ValueError(f"KVCache: layer {layer} got keys for {k.shape[2]} positions, the window holds {e - s}")
        if self.all_rows:
            # in place: positions inside the window are recomputed at every call until the next refresh, so
            # writing them into the cache changes nothing the next call reads
            keys, values = self.keys[layer], self.values[layer]
        else:
            keys, values = self.keys[layer][self.rows], self.values[layer][self.rows]
        keys[:, :, s:e] = k
        values[:, :, s:e] = v
        return keys, values


class _Widened:
    def __init__(self, cache: KVCache, n: int):
        self.cache, self.n = cache, n

    def __enter__(self):
        if self.cache.start < self.n:
            raise ValueError(f"KVCache: cannot widen a window starting at {self.cache.start} by {self.n}")
        self.cache.start -= self.n
        return self.cache

    def __exit__(self, *exc):
        self.cache.start += self.n
        return False


def supports_kv_cache(model) -> bool:
    """Whether `model` implements the block-cache protocol (see the module docstring)."""
    return bool(getattr(model, "supports_kv_cache", False)) and callable(getattr(model, "forward_hidden", None))
