"""Non-causal attention: the Triton kernel vs PyTorch SDPA (flash, cuDNN, memory-efficient backends), eager
math, torch.compile of the reference, and `flash_attn` itself when it is installed.

Shapes follow FlashAttention's benchmarks: 16k tokens per batch (B = 16384 / L), hidden 2048 (H = 2048 / D),
head dims 64 and 128, L 512 to 8192, bf16. TFLOP/s counts 4 * B * H * L * S * D for the forward and 2.5x
that for forward + backward (the backward is 2.5x the forward's matmul work). A padded variant (a quarter of
each sequence's keys padded) runs the kernels that take a key padding mask.

    python benchmarks/bench_kernels_attention.py          # GPU: writes benchmarks/results/kernels_attention_<gpu>.*
    python benchmarks/bench_kernels_attention.py --smoke  # no GPU: tiny shapes through the interpreter, prints only
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_kernels_common as C

TITLE = "Non-causal attention (GPU)"


def _sdpa(backend_name):
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    backend = getattr(SDPBackend, backend_name)

    def fn(q, k, v, kpm):
        mask = None if kpm is None else kpm[:, None, None, :]
        with sdpa_kernel(backend):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return fn


def _flash_attn():
    try:
        from flash_attn import flash_attn_func
    except Exception:  # noqa: BLE001
        return None

    def fn(q, k, v, kpm):
        if kpm is not None:
            raise NotImplementedError("flash_attn_func has no key padding mask (varlen API not benchmarked)")
        # flash_attn takes [B, L, H, D]
        return flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
    return fn


def run(smoke: bool, quick: bool = False) -> tuple[list[dict], list[str]]:
    import torch

    from fastmdm import ops
    from fastmdm.kernels import attention as ka

    dev = C.device()
    rows, notes = [], []
    impls = {"triton": lambda q, k, v, kpm: ka.attention(q, k, v, key_padding_mask=kpm)}
    if C.on_gpu():
        impls.update({"sdpa flash": _sdpa("FLASH_ATTENTION"), "sdpa cudnn": _sdpa("CUDNN_ATTENTION"),
                      "sdpa efficient": _sdpa("EFFICIENT_ATTENTION")})
        fa = _flash_attn()
        if fa is not None:
            impls["flash_attn"] = fa
        else:
            notes.append("flash_attn is not installed here: no direct FlashAttention-2 row (SDPA's flash backend "
                         "runs FlashAttention-2's kernel).")
        compiled = C.try_compile(ops.attention_reference)
        if compiled is not None:
            impls["torch.compile(reference)"] = lambda q, k, v, kpm: compiled(q, k, v, kpm)
    impls["eager reference"] = lambda q, k, v, kpm: ops.attention_reference(q, k, v, key_padding_mask=kpm)
    if smoke:
        grid = [(32, 32)]
        tokens, hidden = 64, 64
    else:
        Ls = (512, 2048, 8192) if quick else (512, 1024, 2048, 4096, 8192)
        grid = [(D, L) for D in (64, 128) for L in Ls]
        tokens, hidden = 16384, 2048
    g = torch.Generator(device=dev).manual_seed(0)
    for D, L in grid:
        B, H = max(1, tokens // L), hidden // D
        q, k, v = (torch.randn(B, H, L, D, device=dev, dtype=torch.bfloat16, generator=g).requires_grad_()
                   for _ in range(3))
        do = torch.randn(B, H, L, D, device=dev, dtype=torch.bfloat16, generator=g)
        fwd_flops = 4 * B * H * L * L * D
        for padded in (False, True):
            if padded and not smoke and L not in (2048,):
                continue
            kpm = None
            if padded:
                kpm = torch.ones(B, L, dtype=torch.bool, device=dev)
                kpm[:, 3 * L // 4:] = False
            ref = ops.attention_reference(q.float(), k.float(), v.float(), key_padding_mask=kpm)
            for name, fn in impls.items():
                if name == "eager reference" and not smoke and L > 2048:
                    continue  # materializes [B, H, L, L] scores
                if name.startswith("torch.compile") and L != 2048:
                    continue  # one compilation per shape: keep the script's run time bounded
                row = {"D": D, "L": L, "B": B, "H": H, "padded keys": "25%" if padded else "-", "impl": name}
                try:
                    with torch.no_grad():
                        out = fn(q, k, v, kpm)
                    row["max |err| vs fp32"] = (out.float() - ref).abs().max().item()
                    row["fwd ms"] = C.bench(lambda: fn(q, k, v, kpm))
                    row["fwd TFLOP/s"] = fwd_flops / (row["fwd ms"] * 1e-3) / 1e12

                    def step():
                        o = fn(q, k, v, kpm)
                        return torch.autograd.grad(o, (q, k, v), do)
                    row["fwd+bwd ms"] = C.bench(step)
                    row["fwd+bwd TFLOP/s"] = 3.5 * fwd_flops / (row["fwd+bwd ms"] * 1e-3) / 1e12
                    row["peak MB fwd+bwd"] = C.peak_memory_mb(step)
                except Exception as e:  # noqa: BLE001 - a backend that cannot run this case is recorded, not fatal
                    row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:100]}" if str(e) else type(e).__name__
                rows.append(row)
                if C.on_gpu():
                    torch.cuda.empty_cache()
    return rows, notes


def main(argv=None) -> int:
    return C.main(argv, name="kernels_attention", title=TITLE, doc=__doc__, run=run,
                  flags={"--quick": "L in (512, 2048, 8192) only"})


if __name__ == "__main__":
    sys.exit(main())
