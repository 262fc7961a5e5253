"""`fastmdm example`: a short, self-contained decoding example on a toy model (no weights needed)."""
from __future__ import annotations

import time

import torch

import fastmdm


class ToyCopyModel(torch.nn.Module):
    """A 'model' whose logits prefer, at each position, the token of a fixed target sequence; its certainty
    falls off with position, so adaptive strategies fill the start first."""

    def __init__(self, target: torch.Tensor, vocab: int, mask_id: int):
        super().__init__()
        self.target, self.vocab, self.mask_id = target, vocab, mask_id

    def forward(self, x, attention_mask=None):
        B, L = x.shape
        sharp = torch.linspace(6.0, 1.0, L)
        logits = torch.zeros(B, L, self.vocab)
        logits.scatter_(-1, self.target[None, :, None].expand(B, L, 1), sharp[None, :, None].expand(B, L, 1))
        return logits


def run(args) -> int:
    vocab, mask_id, L = 32, 31, 24
    target = torch.arange(L) % 26
    model = ToyCopyModel(target, vocab, mask_id)
    x = torch.full((3, L), mask_id)
    x[1, :8] = target[:8]
    x[2] = target
    for strategy in ("random", "confidence", "margin", "entropy"):
        t0 = time.perf_counter()
        tr = fastmdm.sample(model, x, strategy=strategy, mask_id=mask_id, k=2, return_trace=True,
                            generator=torch.Generator().manual_seed(0))
        dt = (time.perf_counter() - t0) * 1e3
        ok = bool((tr.tokens == target).all())
        print(f"{strategy:>10}: nfe={tr.nfe:2d} correct={ok} {dt:6.1f} ms  fill order of row 0: "
              f"{tr.order[0].tolist()}")
    return 0


def register(sub) -> None:
    from fastmdm.cli import add_command  # noqa: PLC0415
    add_command(sub, "example", run, "decode a toy batch with each strategy (no weights needed)")
