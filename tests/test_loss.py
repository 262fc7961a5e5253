"""fastmdm.mdm_loss and mdm_loss_from_hidden against the ELBO written position by position."""
from __future__ import annotations

import math

import pytest
import torch

import fastmdm


def elbo_reference(logits, targets, masked, p_mask, fillable=None):
    """sum over masked positions of -log softmax(logits)[target] / p_mask, over B * L (or the fillable count)."""
    B, L, _ = logits.shape
    total = 0.0
    for b in range(B):
        for i in range(L):
            if masked[b, i]:
                p = float(p_mask[b] if p_mask.dim() == 1 else p_mask[b, i])
                logp = torch.log_softmax(logits[b, i].double(), -1)[targets[b, i]]
                total += -float(logp) / p
    denom = B * L if fillable is None else max(int(fillable.sum()), 1)
    return total / denom


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("with_fillable", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_mdm_loss_is_the_weighted_masked_cross_entropy(seed, with_fillable, dtype):
    g = torch.Generator().manual_seed(seed)
    B, L, V = 3, 7, 11
    logits = (torch.randn(B, L, V, generator=g) * 3).to(dtype)
    targets = torch.randint(0, V, (B, L), generator=g)
    fillable = torch.rand(B, L, generator=g) < 0.7 if with_fillable else None
    masked, p_mask = fastmdm.sample_mask(targets, fillable=fillable, generator=g)
    if seed % 2:
        p_mask = p_mask[:, None].expand(B, L).clone() * (1 + 0.1 * torch.rand(B, L, generator=g))  # per position
    got = fastmdm.mdm_loss(logits, targets, masked, p_mask, fillable=fillable)
    want = elbo_reference(logits.float(), targets, masked, p_mask, fillable)
    assert got.dtype == torch.float32
    assert math.isclose(float(got), want, rel_tol=1e-5, abs_tol=1e-6)


def test_the_hidden_state_loss_equals_the_logits_loss_and_its_gradients():
    g = torch.Generator().manual_seed(9)
    B, L, d, V = 2, 6, 8, 13
    hidden = torch.randn(B, L, d, generator=g, requires_grad=True)
    weight = torch.randn(V, d, generator=g, requires_grad=True)
    targets = torch.randint(0, V, (B, L), generator=g)
    masked, p_mask = fastmdm.sample_mask(targets, generator=g)
    a = fastmdm.mdm_loss(hidden @ weight.T, targets, masked, p_mask)
    ga = torch.autograd.grad(a, (hidden, weight))
    b = fastmdm.mdm_loss_from_hidden(hidden, weight, targets, masked, p_mask, backend="torch")
    gb = torch.autograd.grad(b, (hidden, weight))
    assert torch.allclose(a, b, atol=1e-6)
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(ga, gb))


@pytest.mark.parametrize("seed", range(3))
def test_the_hidden_state_loss_with_a_bias_and_fillable_positions_is_the_elbo(seed):
    g = torch.Generator().manual_seed(100 + seed)
    B, L, d, V = 3, 5, 8, 17
    hidden = torch.randn(B, L, d, generator=g)
    weight = torch.randn(V, d, generator=g)
    bias = torch.randn(V, generator=g)
    targets = torch.randint(0, V, (B, L), generator=g)
    fillable = torch.rand(B, L, generator=g) < 0.6
    masked, p_mask = fastmdm.sample_mask(targets, fillable=fillable, generator=g)
    got = fastmdm.mdm_loss_from_hidden(hidden, weight, targets, masked, p_mask, bias=bias, fillable=fillable,
                                       backend="torch")
    want = elbo_reference(hidden @ weight.T + bias, targets, masked, p_mask, fillable)
    assert math.isclose(float(got), want, rel_tol=1e-5, abs_tol=1e-6)


def test_sample_mask_masks_each_fillable_position_at_its_row_s_rate():
    g = torch.Generator().manual_seed(1)
    tokens = torch.zeros(4000, 50, dtype=torch.long)
    t = torch.linspace(0, 1, 4000)
    fillable = torch.ones_like(tokens, dtype=torch.bool)
    fillable[:, :10] = False
    masked, p_mask = fastmdm.sample_mask(tokens, fillable=fillable, generator=g, t=t)
    assert not bool(masked[:, :10].any())
    assert torch.allclose(p_mask, (1 - 1e-3) * t + 1e-3)
    rate = masked[:, 10:].float().mean(-1)  # per row, 40 positions
    assert abs(float((rate - p_mask).mean())) < 0.01


def test_mdm_loss_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="mdm_loss: logits must be"):
        fastmdm.mdm_loss(torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 4, dtype=torch.bool),
                         torch.ones(2))
