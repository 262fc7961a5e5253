"""Fused masked-token selection: PyTorch eager vs torch.compile vs the Triton kernel, and the fused LM head.

Selection at LLaDA's shape: batch 8, L 1024, V 126,464, bf16 logits, half the positions fillable, so the
kernel reads N = 4096 gathered rows once (1.04 GB). Reported: median time, achieved bandwidth (bytes of the
logits read once / time) and its fraction of the measured device-to-device copy bandwidth, speedups over
eager and torch.compile, peak memory above the inputs.

Fused LM head + selection: hidden [N, d] bf16 and W [V, d]; eager (F.linear + reference), matmul + the
selection kernel (logits written once and read once), and the fused kernel (no [N, V] buffer).

    python benchmarks/bench_kernels_select.py            # GPU: writes benchmarks/results/kernels_select_<gpu>.{json,md}
    python benchmarks/bench_kernels_select.py --smoke    # no GPU: tiny shapes through the interpreter, prints only
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_kernels_common as C

TITLE = "Fused token selection (GPU)"


def run(smoke: bool) -> tuple[list[dict], list[str]]:
    import torch

    from fastmdm import ops
    from fastmdm.kernels import select as ks

    dev = C.device()
    rows, notes = [], []
    bw = C.copy_bandwidth_gbs()
    if bw:
        notes.append(f"Measured device-to-device copy bandwidth: {bw:.0f} GB/s (read + write).")
    if smoke:
        B, L, V, d_list = 2, 8, 1000, [32]
    else:
        B, L, V, d_list = 8, 1024, 126_464, [4096]
    mask_id = V - 1
    N = B * L // 2
    g = torch.Generator(device=dev).manual_seed(0)
    logits = torch.randn(N, V, device=dev, dtype=torch.bfloat16, generator=g) * 2
    nbytes = logits.numel() * logits.element_size()
    eager = ops.token_stats_reference
    compiled = C.try_compile(ops.token_stats_reference) if not smoke else None
    for score, temp in (("confidence", 0.0), ("margin", 0.0), ("entropy", 0.0), ("confidence", 1.0)):
        kw = dict(score=score, temperature=temp, mask_id=mask_id)
        gen = lambda: torch.Generator(device=dev).manual_seed(1)  # noqa: E731
        # correctness at this shape first (tokens exact at T = 0)
        if temp == 0:
            tk, sc = ks.token_stats(logits, **kw)
            rtk, rsc = eager(logits, **kw)
            assert torch.equal(tk, rtk), f"{score}: tokens differ from the reference"
            torch.testing.assert_close(sc, rsc, rtol=1e-4, atol=1e-5)
        impls = {"eager": lambda: eager(logits, generator=gen(), **kw),
                 "triton": lambda: ks.token_stats(logits, generator=gen(), **kw)}
        if compiled is not None and temp == 0 and score in ("confidence", "margin"):
            # each score / temperature is a separate compilation: two of them bound the script's run time
            impls["torch.compile"] = lambda: compiled(logits, generator=gen(), **kw)
        times = {}
        for name, fn in impls.items():
            try:
                ms = C.bench(fn)
                mem = C.peak_memory_mb(fn)
            except Exception as e:  # noqa: BLE001 - a failed baseline is recorded, not fatal
                notes.append(f"{name} {score} T={temp}: failed ({type(e).__name__}: {str(e)[:120]})")
                continue
            times[name] = ms
            gbs = nbytes / (ms * 1e-3) / 1e9
            rows.append({"op": "token_stats", "shape": f"N={N} V={V} bf16", "score": score, "T": temp, "impl": name,
                         "ms": ms, "GB/s": gbs, "% copy bw": 100 * gbs / bw if bw else None, "peak MB": mem})
        for r in rows[-len(times):]:
            r["x vs eager"] = times.get("eager", float("nan")) / r["ms"]
            r["x vs compile"] = times["torch.compile"] / r["ms"] if "torch.compile" in times else None

    # the sampling loop's view: the model's whole [B * L, V] output and the flat indices of the fillable rows;
    # gathering first (out[rows]) reads and writes N x V once more than gathering inside the kernel (rows=)
    full = torch.randn(B * L, V, device=dev, dtype=torch.bfloat16, generator=g) * 2
    idx = torch.arange(0, B * L, 2, device=dev)
    kw = dict(score="margin", mask_id=mask_id)
    for name, fn in {"gather + eager": lambda: eager(full[idx], **kw),
                     "gather + triton": lambda: ks.token_stats(full[idx], **kw),
                     "triton rows= (no gather)": lambda: ks.token_stats(full, rows=idx, **kw)}.items():
        ms = C.bench(fn)
        gbs = nbytes / (ms * 1e-3) / 1e9
        rows.append({"op": "token_stats from [B*L, V]", "shape": f"N={N} of {B * L} V={V} bf16", "score": "margin",
                     "T": 0.0, "impl": name, "ms": ms, "GB/s": gbs, "% copy bw": 100 * gbs / bw if bw else None,
                     "peak MB": C.peak_memory_mb(fn)})
    full = None  # free it before the next benchmark (the lambdas above are done with it)

    # fused LM head + selection
    for d in d_list:
        for n_rows in ((64, 256) if smoke else (256, 4096)):
            h = torch.randn(n_rows, d, device=dev, dtype=torch.bfloat16, generator=g)
            W = torch.randn(V, d, device=dev, dtype=torch.bfloat16, generator=g) / d ** 0.5
            kw = dict(score="margin", mask_id=mask_id)
            tk, sc = ks.linear_token_stats(h, W, **kw)
            rtk, rsc = ops.linear_token_stats_reference(h, W, **kw)
            agree = (tk == rtk).float().mean().item()
            impls = {"eager (F.linear + reference)": lambda: ops.linear_token_stats_reference(h, W, **kw),
                     "matmul + triton select": lambda: ks.token_stats(torch.nn.functional.linear(h, W), **kw),
                     "fused triton": lambda: ks.linear_token_stats(h, W, **kw)}
            flops = 2 * n_rows * d * V
            for name, fn in impls.items():
                ms = C.bench(fn)
                rows.append({"op": "linear_token_stats", "shape": f"N={n_rows} d={d} V={V} bf16", "score": "margin",
                             "T": 0.0, "impl": name, "ms": ms, "TFLOP/s": flops / (ms * 1e-3) / 1e12,
                             "peak MB": C.peak_memory_mb(fn), "token agreement": agree if "fused" in name else None})
    return rows, notes


def main(argv=None) -> int:
    return C.main(argv, name="kernels_select", title=TITLE, doc=__doc__, run=run, flags={})


if __name__ == "__main__":
    sys.exit(main())
