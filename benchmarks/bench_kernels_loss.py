"""The masked-diffusion loss through the LM head: eager PyTorch vs torch.compile vs the fused, chunked kernel.

One training step of the loss's part: forward and backward of sum_i w_i * CE(h_i W^T, t_i) over the masked
rows, bf16 hidden states and LM head, V = 126,464 (LLaDA's vocabulary). Reported: median time of forward +
backward, and peak memory above the inputs (the eager path holds the [N, V] logits, their float32 copy and
the gradient; the fused path one chunk of logits plus dL/dW, accumulated in place in its dtype).

    python benchmarks/bench_kernels_loss.py          # GPU: writes benchmarks/results/kernels_loss_<gpu>.{json,md}
    python benchmarks/bench_kernels_loss.py --smoke  # no GPU: tiny shapes through the interpreter, prints only
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_kernels_common as C

TITLE = "Fused masked-diffusion loss through the LM head (GPU)"


def run(smoke: bool) -> tuple[list[dict], list[str]]:
    import torch

    from fastmdm import ops
    from fastmdm.kernels import loss as kl

    dev = C.device()
    rows, notes = [], []
    shapes = [(64, 32, 1000)] if smoke else [(4096, 4096, 126_464), (8192, 4096, 126_464), (8192, 2048, 126_464)]
    compiled = None if smoke else C.try_compile(ops.linear_weighted_ce_reference)
    g = torch.Generator(device=dev).manual_seed(0)
    for N, D, V in shapes:
        h = torch.randn(N, D, device=dev, dtype=torch.bfloat16, generator=g).requires_grad_()
        W = (torch.randn(V, D, device=dev, dtype=torch.bfloat16, generator=g) / D ** 0.5).requires_grad_()
        t = torch.randint(0, V, (N,), device=dev, generator=g)
        w = torch.rand(N, device=dev, generator=g) / N
        impls = {"eager": ops.linear_weighted_ce_reference, "triton fused": kl.linear_weighted_ce}
        if compiled is not None and (N, D) == shapes[0][:2]:
            impls["torch.compile"] = compiled  # one shape: every new shape is a new compilation
        ref_val = ops.linear_weighted_ce_reference(h, W, t, w).item()
        base = {}
        for name, fn in impls.items():
            row = {"N": N, "d": D, "V": V, "impl": name}

            def step():
                loss = fn(h, W, t, w)
                return torch.autograd.grad(loss, (h, W))
            try:
                row["|loss - eager|"] = abs(fn(h, W, t, w).item() - ref_val)
                row["fwd+bwd ms"] = C.bench(step)
                row["peak MB"] = C.peak_memory_mb(step)
                row["TFLOP/s"] = 6 * N * D * V / (row["fwd+bwd ms"] * 1e-3) / 1e12
            except Exception as e:  # noqa: BLE001 - e.g. out of memory for a baseline: recorded, not fatal
                row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:100]}" if str(e) else type(e).__name__
            rows.append(row)
            if name == "eager":
                base = row
            if C.on_gpu():
                torch.cuda.empty_cache()
        for r in rows[-len(impls):]:
            if base.get("fwd+bwd ms") and r.get("fwd+bwd ms"):
                r["time vs eager"] = r["fwd+bwd ms"] / base["fwd+bwd ms"]
            if base.get("peak MB") and r.get("peak MB"):
                r["memory vs eager"] = r["peak MB"] / base["peak MB"]
    return rows, notes


def main(argv=None) -> int:
    return C.main(argv, name="kernels_loss", title=TITLE, doc=__doc__, run=run, flags={})


if __name__ == "__main__":
    sys.exit(main())
