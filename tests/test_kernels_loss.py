"""fastmdm.kernels.loss (weighted cross-entropy fused with the LM head) against
fastmdm.ops.linear_weighted_ce_reference and its autograd, through Triton's interpreter on CPU."""

import pytest
import torch
from kernel_env import device_for

import fastmdm
from fastmdm import ops

triton = pytest.importorskip("triton")
from fastmdm.kernels import loss as kl  # noqa: E402  (only once triton is known to import)

DEV = device_for(kl)
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

# relative tolerance of gradients (to their largest element): rounding of logits gradients to the dtype
GRAD_RTOL = {torch.float32: 1e-5, torch.float16: 3e-3, torch.bfloat16: 2e-2}


def _close_rel(a, b, rtol):
    scale = b.float().abs().max().clamp_min(1e-12)
    err = (a.float() - b.float()).abs().max() / scale
    assert err <= rtol, f"relative error {err:.2e} > {rtol:.0e}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_value_and_gradients_match_autograd_of_the_reference(dtype, poisoned):
    g = torch.Generator().manual_seed(0)
    # (N, d, V, bias, rows per chunk): V not a multiple of the block, one row, several uneven chunks
    for N, D, V, bias, chunk in [(37, 24, 301, True, None), (1, 16, 5, False, None), (20, 32, 100, True, 3)]:
        h = torch.randn(N, D, generator=g).to(dtype).to(DEV).requires_grad_()
        W = (torch.randn(V, D, generator=g) * 0.3).to(dtype).to(DEV).requires_grad_()
        b = torch.randn(V, generator=g).to(dtype).to(DEV).requires_grad_() if bias else None
        t = torch.randint(0, V, (N,), generator=g).to(DEV)
        w = torch.rand(N, generator=g).to(DEV).requires_grad_()
        inputs = [h, W, w] + ([b] if bias else [])
        out = kl.linear_weighted_ce(h, W, t, w, b, chunk_rows=chunk)
        ref = ops.linear_weighted_ce_reference(h, W, t, w, b)
        assert out.dtype == torch.float32 and out.dim() == 0
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        grads = torch.autograd.grad(out * 1.7, inputs)
        ref_grads = torch.autograd.grad(ref * 1.7, inputs)
        for a, r in zip(grads, ref_grads):
            assert a.dtype == r.dtype and a.shape == r.shape
            _close_rel(a, r, GRAD_RTOL[dtype])


def test_no_gradient_work_without_grad_and_zero_weight_rows_contribute_nothing():
    g = torch.Generator().manual_seed(1)
    h, W = torch.randn(10, 16, generator=g).to(DEV), torch.randn(50, 16, generator=g).to(DEV)
    t = torch.randint(0, 50, (10,), generator=g).to(DEV)
    w = torch.rand(10, generator=g).to(DEV)
    w[::2] = 0
    with torch.no_grad():
        out = kl.linear_weighted_ce(h, W, t, w)
    ref = ops.linear_weighted_ce_reference(h[1::2], W, t[1::2], w[1::2])
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_mdm_loss_from_hidden_gives_the_same_loss_and_gradients_with_backend_triton():
    g = torch.Generator().manual_seed(2)
    B, L, D, V = 2, 9, 16, 40
    hidden = torch.randn(B, L, D, generator=g).to(DEV).requires_grad_()
    W = torch.randn(V, D, generator=g).to(DEV).requires_grad_()
    targets = torch.randint(0, V, (B, L), generator=g).to(DEV)
    masked, p_mask = fastmdm.sample_mask(targets, generator=torch.Generator().manual_seed(3))
    masked, p_mask = masked.to(DEV), p_mask.to(DEV)
    a = fastmdm.mdm_loss_from_hidden(hidden, W, targets, masked, p_mask, backend="triton")
    b = fastmdm.mdm_loss_from_hidden(hidden, W, targets, masked, p_mask, backend="torch")
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    ga = torch.autograd.grad(a, (hidden, W))
    gb = torch.autograd.grad(b, (hidden, W))
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)


def test_bad_arguments_get_clear_errors():
    h, W = torch.randn(3, 8, device=DEV), torch.randn(5, 8, device=DEV)
    w = torch.ones(3, device=DEV)
    with pytest.raises(ValueError, match="share d"):
        kl.linear_weighted_ce(h, torch.randn(5, 7, device=DEV), torch.zeros(3, dtype=torch.long, device=DEV), w)
    with pytest.raises(ValueError, match=r"\[N\]"):
        kl.linear_weighted_ce(h, W, torch.zeros(4, dtype=torch.long, device=DEV), w)
    with pytest.raises(TypeError, match="dtype"):
        kl.linear_weighted_ce(h, W.half(), torch.zeros(3, dtype=torch.long, device=DEV), w)
