"""fastmdm.kernels.attention against fastmdm.ops.attention_reference (SDPA semantics) and its autograd,
through Triton's interpreter on CPU (compiled kernels on a CUDA machine)."""

import pytest
import torch
from kernel_env import device_for

from fastmdm import ops

triton = pytest.importorskip("triton")
from fastmdm.kernels import attention as ka  # noqa: E402  (only once triton is known to import)

DEV = device_for(ka)
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

# absolute tolerances on O(1) values, set by each dtype's rounding of the output and of p before p @ v
TOL = {torch.float32: 2e-4, torch.float16: 4e-3, torch.bfloat16: 3e-2}


def _inputs(g, B, Hq, Hkv, L, S, D, dtype, pad):
    q = torch.randn(B, Hq, L, D, generator=g).to(dtype).to(DEV).requires_grad_()
    k = torch.randn(B, Hkv, S, D, generator=g).to(dtype).to(DEV).requires_grad_()
    v = torch.randn(B, Hkv, S, D, generator=g).to(dtype).to(DEV).requires_grad_()
    kpm = None
    if pad:
        kpm = torch.rand(B, S, generator=g) < 0.7
        kpm[:, 0] = True
        kpm = kpm.to(DEV)
    return q, k, v, kpm


def _compare(q, k, v, kpm, g, scale=None):
    out = ka.attention(q, k, v, key_padding_mask=kpm, scale=scale)
    do = torch.randn(out.shape, generator=g).to(out.dtype).to(DEV)
    grads = torch.autograd.grad(out, (q, k, v), do)
    # the reference in float32 on the same (rounded) inputs
    qr, kr, vr = (t.detach().float().requires_grad_() for t in (q, k, v))
    ref = ops.attention_reference(qr, kr, vr, key_padding_mask=kpm, scale=scale)
    ref_grads = torch.autograd.grad(ref, (qr, kr, vr), do.float())
    tol = TOL[q.dtype]
    assert out.dtype == q.dtype and out.shape == q.shape
    torch.testing.assert_close(out.float(), ref, atol=tol, rtol=tol)
    for name, a, b in zip("qkv", grads, ref_grads):
        assert a.dtype == q.dtype and a.shape == b.shape, name
        torch.testing.assert_close(a.float(), b, atol=2 * tol, rtol=2 * tol, msg=lambda m: f"d{name}: {m}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_attention_and_its_gradients_match_sdpa_with_padding_and_grouped_heads(dtype, poisoned):
    g = torch.Generator().manual_seed(0)
    # (B, Hq, Hkv, L, S, D, key padding): lengths that are not multiples of the block, L = S = 1, GQA 2:1, 3:1
    for shape in [(2, 4, 2, 37, 45, 64, True), (1, 2, 2, 1, 1, 32, False), (1, 3, 1, 20, 50, 96, True)]:
        q, k, v, kpm = _inputs(g, *shape[:6], dtype, shape[6])
        _compare(q, k, v, kpm, g)


def test_head_dim_128_and_a_custom_scale():
    g = torch.Generator().manual_seed(1)
    q, k, v, kpm = _inputs(g, 1, 2, 1, 33, 17, 128, torch.float16, True)
    _compare(q, k, v, kpm, g, scale=0.3)


def test_non_contiguous_inputs_from_a_bshd_layout():
    g = torch.Generator().manual_seed(2)
    B, L, H, D = 2, 19, 2, 32
    q, k, v = (torch.randn(B, L, H, D, generator=g).to(DEV).transpose(1, 2).requires_grad_() for _ in range(3))
    assert not q.is_contiguous()
    _compare(q, k, v, None, g)


def test_a_sequence_whose_keys_are_all_padding_gets_zeros_and_zero_gradients(poisoned):
    g = torch.Generator().manual_seed(3)
    q, k, v, _ = _inputs(g, 2, 2, 2, 5, 7, 32, torch.float32, False)
    kpm = torch.ones(2, 7, dtype=torch.bool, device=DEV)
    kpm[1] = False
    out = ka.attention(q, k, v, key_padding_mask=kpm)
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    ref = ops.attention_reference(q, k, v, key_padding_mask=kpm)
    torch.testing.assert_close(out, ref, atol=2e-4, rtol=2e-4)
    dq, dk, dv = torch.autograd.grad(out.sum(), (q, k, v))
    for t in (dq, dk, dv):
        assert torch.isfinite(t).all() and torch.equal(t[1], torch.zeros_like(t[1]))
    rq, rk, rv = torch.autograd.grad(ref[0].sum(), (q, k, v))
    for a, b in zip((dq, dk, dv), (rq, rk, rv)):
        torch.testing.assert_close(a[0], b[0], atol=4e-4, rtol=4e-4)


def test_ops_attention_dispatches_to_the_kernel_with_backend_triton():
    g = torch.Generator().manual_seed(4)
    q, k, v, kpm = _inputs(g, 1, 2, 2, 9, 9, 32, torch.float32, True)
    out = ops.attention(q, k, v, key_padding_mask=kpm, backend="triton")
    torch.testing.assert_close(out, ops.attention(q, k, v, key_padding_mask=kpm, backend="torch"),
                               atol=2e-4, rtol=2e-4)


def test_mixed_dtypes_are_rejected_with_a_clear_error():
    q = torch.randn(1, 1, 4, 32, device=DEV)
    with pytest.raises(TypeError, match="dtype"):
        ka.attention(q, q.half(), q)


def test_head_dims_above_128_go_to_torch_on_auto_and_are_refused_by_the_kernel(monkeypatch):
    q = torch.randn(1, 2, 5, 160, device=DEV)
    with pytest.raises(ValueError, match="head dim 160 > 128"):
        ka.attention(q, q, q)
    # pretend every tensor lives on a GPU, so that `auto` would pick the kernel if the head dim allowed it
    monkeypatch.setattr(ops, "resolve_backend", lambda backend, *t: "triton" if backend == "auto" else backend)
    torch.testing.assert_close(ops.attention(q, q, q), ops.attention_reference(q, q, q))
    small = torch.randn(1, 2, 5, 32, device=DEV)
    called = []
    monkeypatch.setattr(ka, "attention", lambda *a, **kw: called.append(a[0].shape[-1]) or a[0])
    ops.attention(small, small, small)
    assert called == [32]


def test_forward_config_pruning_keeps_what_fits_in_shared_memory():
    configs = [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=4, num_stages=st)
               for bm, bn, st in ((128, 128, 3), (128, 64, 3), (64, 64, 3), (128, 32, 4))]
    fp32 = torch.empty(1, dtype=torch.float32)  # off the GPU the limit is sm_90's 232,448 bytes
    # bytes = 4 * 128 * (2 * BLOCK_N * stages + BLOCK_M): 458,752 / 262,144 / 229,376 / 196,608
    kept = ka._fwd_fits(configs, {"q_ptr": fp32}, BLOCK_D=128)
    assert [(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]) for c in kept] == [(64, 64), (128, 32)]
    assert ka._fwd_fits(configs, {"q_ptr": fp32.bfloat16()}, BLOCK_D=128) == configs
    only = ka._fwd_fits(configs, {"q_ptr": fp32}, BLOCK_D=1024)  # nothing fits: the smallest stays
    assert [(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]) for c in only] == [(128, 32)]
