"""Block caches on CPU: `fastmdm.generate` uncached against cache="prefix" and cache="dual".

A `fastmdm.models.Transformer` with rotary positions and random weights (d 256, 4 layers, 8 heads, vocabulary
4,096), batch 4, prompt 64 + 128 generated tokens in blocks of 32, 128 steps (LLaDA's split, one token per
step), confidence order, temperature 0. Reported per mode: median seconds of 3 runs, model calls, and the
share of generated tokens equal to the uncached run's (the caches are approximate; with random weights the
agreement says how far the reused keys and values move the argmax, not how a trained model fares).

    python benchmarks/bench_block_cache.py --threads 2   # writes benchmarks/results/block_cache_cpu.{json,md}
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

import fastmdm
from fastmdm.models.transformer import Transformer, TransformerConfig

B, PROMPT, GEN, BLOCK, STEPS, V = 4, 64, 128, 32, 128, 4096


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per mode (default 3)")
    ap.add_argument("--out", default="benchmarks/results", help="folder for the results")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    fastmdm.keep_freed_memory()
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=V, mask_token_id=V - 1, max_len=PROMPT + GEN, d_model=256, n_layers=4,
                            n_heads=8, d_ff=768, positions="rotary", init_std=0.05)
    model = Transformer(cfg).eval()
    prompt = torch.randint(0, V - 1, (B, PROMPT), generator=torch.Generator().manual_seed(1))
    rows, base = [], None
    for mode in (None, "prefix", "dual"):
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            trace = fastmdm.generate(model, prompt, gen_length=GEN, block_length=BLOCK, steps=STEPS, cache=mode,
                                     return_trace=True)
            times.append(time.perf_counter() - t0)
        gen = trace.tokens[:, PROMPT:]
        base = gen if base is None else base
        rows.append({"cache": mode or "none", "seconds": statistics.median(times), "calls": trace.nfe,
                     "agreement": float((gen == base).float().mean())})
    for r in rows:
        r["speedup"] = rows[0]["seconds"] / r["seconds"]
    env = {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
           "torch": torch.__version__, "threads": args.threads, "date_utc": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                             time.gmtime()),
           "command": f"python benchmarks/bench_block_cache.py --threads {args.threads}"}
    try:
        env["cpu"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line)
    except (OSError, StopIteration):
        pass
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "block_cache_cpu.json").write_text(json.dumps({"env": env, "rows": rows}, indent=2) + "\n")
    lines = ["# Block caches on CPU (random-weight Transformer)", "",
             f"{env['date_utc']}, {env['cpu']}, {args.threads} threads, torch {env['torch']}. "
             f"Command: `{env['command']}`.", "",
             f"Batch {B}, prompt {PROMPT} + {GEN} generated, blocks of {BLOCK}, {STEPS} steps, d 256, 4 layers, "
             f"V {V}.", "", "| cache | seconds (median) | speed-up | calls | tokens equal to uncached |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['cache']} | {r['seconds']:.2f} | {r['speedup']:.2f}x | {r['calls']} | "
              f"{100 * r['agreement']:.1f}% |" for r in rows]
    (out / "block_cache_cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
