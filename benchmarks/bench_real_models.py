"""Real architectures on CPU: LLaDA's generate loop against fastmdm's drop-ins on the native LLaDA model.

The medium LLaDA shape with random weights: 4 layers, d_model 512, 8 heads, MLP 1,536, vocabulary 126,464;
batch 4, prompt 64 + 128 generated tokens in blocks of 32. The LM head is scaled so the model is peaked enough
for threshold decoding to fill several tokens per call. Modes, each in a fresh process:

- `llada`: LLaDA's published `generate` loop (re-derived from its description: full [B, L, V] logits every step,
  softmax over the vocabulary, per-row top-k) calling the model's logits;
- `fastmdm`: `fastmdm.compat.llada.generate` on the same model (hidden states, LM head at the block's masks);
- `fastdllm-dual`: `fastmdm.compat.fastdllm.generate_with_dual_cache(threshold=0.9)`.

Reported: seconds (one run after a warm-up), model calls, peak resident memory above the model's own (weights
and one forward over the batch), and the share of generated tokens equal to the `llada` run's.

    python benchmarks/bench_real_models.py --threads 1   # writes benchmarks/results/real_models_cpu.{json,md}
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from fastmdm.models import LLaDA, LlamaStyleConfig

B, PROMPT, GEN, BLOCK, MASK = 4, 64, 128, 32, 126_336


def build(steps_seed=0):
    torch.manual_seed(steps_seed)
    cfg = LlamaStyleConfig(vocab_size=126_464, hidden_size=512, num_layers=4, num_heads=8, num_kv_heads=8,
                           intermediate_size=1536, rope_theta=500000.0, mask_token_id=MASK, model_type="llada")
    model = LLaDA(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                torch.nn.init.normal_(p, std=0.02)
        model.lm_head.weight.normal_(0, 0.4)  # peaked: the top token often has p > 0.9
    return model


def llada_generate(model, prompt, steps, gen_length=GEN, block_length=BLOCK):
    """LLaDA's loop at temperature 0, low_confidence remasking."""
    x = torch.cat([prompt, torch.full((prompt.shape[0], gen_length), MASK, dtype=torch.long)], 1)
    per_block = steps // (gen_length // block_length)
    P = prompt.shape[1]
    for b0 in range(P, P + gen_length, block_length):
        n = (x[:, b0:b0 + block_length] == MASK).sum(1)
        for s in range(per_block):
            mask_index = x == MASK
            logits = model(x)
            x0 = torch.argmax(logits, dim=-1)
            conf = torch.gather(F.softmax(logits, dim=-1), -1, x0[..., None]).squeeze(-1)
            conf[:, b0 + block_length:] = -torch.inf
            conf = torch.where(mask_index, conf, -torch.inf)
            for j in range(x.shape[0]):
                k = int(n[j] // per_block + (s < n[j] % per_block))
                idx = torch.topk(conf[j], k).indices
                x[j, idx] = x0[j, idx]
    return x, steps


def run_mode(mode, model, prompt, steps):
    from fastmdm.compat import fastdllm, llada

    if mode == "llada":
        return llada_generate(model, prompt, steps)
    if mode == "fastmdm":
        return llada.generate(model, prompt, steps=steps, gen_length=GEN, block_length=BLOCK), steps
    return fastdllm.generate_with_dual_cache(model, prompt, steps=steps, gen_length=GEN, block_length=BLOCK,
                                             threshold=0.9)


def _peak_mib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def child(mode, threads, steps):
    import fastmdm

    torch.set_num_threads(threads)
    fastmdm.keep_freed_memory()
    model = build()
    prompt = torch.randint(0, 126_000, (B, PROMPT), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model.forward_hidden(torch.cat([prompt, torch.full((B, GEN), MASK)], 1))
        base = _peak_mib()
        run_mode(mode, model, prompt, steps)  # warm-up, and the peak
        peak = _peak_mib()
        t0 = time.perf_counter()
        tokens, nfe = run_mode(mode, model, prompt, steps)
        seconds = time.perf_counter() - t0
    print(json.dumps({"mode": mode, "seconds": seconds, "calls": nfe, "peak_mib": peak - base,
                      "tokens": tokens[:, PROMPT:].tolist()}))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--steps", type=int, default=128, help="LLaDA steps over the 128 tokens (default 128)")
    ap.add_argument("--out", default="benchmarks/results", help="folder for the results")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.threads, args.steps)
        return 0
    rows = []
    for mode in ("llada", "fastmdm", "fastdllm-dual"):
        out = subprocess.run([sys.executable, __file__, "--child", mode, "--threads", str(args.threads),
                              "--steps", str(args.steps)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1]["mode"], f"{rows[-1]['seconds']:.1f} s", rows[-1]["calls"], "calls", flush=True)
    ref = torch.tensor(rows[0]["tokens"])
    for r in rows:
        r["agreement"] = float((torch.tensor(r.pop("tokens")) == ref).float().mean())
        r["speedup"] = rows[0]["seconds"] / r["seconds"]
        r["memory_ratio"] = rows[0]["peak_mib"] / max(r["peak_mib"], 1e-9)
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line)
    except (OSError, StopIteration):
        pass
    env = {"cpu": cpu, "threads": args.threads, "torch": torch.__version__, "python": platform.python_version(),
           "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "command": f"python benchmarks/bench_real_models.py --threads {args.threads} --steps {args.steps}"}
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "real_models_cpu.json").write_text(json.dumps({"env": env, "rows": rows}, indent=2) + "\n")
    lines = ["# LLaDA's generate against fastmdm on the native LLaDA (CPU, random weights)", "",
             f"{env['date_utc']}, {cpu}, {args.threads} thread(s), torch {env['torch']}. Command: `{env['command']}`.",
             "", f"4 layers, d_model 512, vocabulary 126,464; batch {B}, prompt {PROMPT} + {GEN} generated, blocks of "
             f"{BLOCK}, {args.steps} steps.", "",
             "| mode | seconds | speed-up | calls | peak memory above the model (MiB) | less memory "
             "| tokens equal to llada |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['seconds']:.2f} | {r['speedup']:.2f}x | {r['calls']} | {r['peak_mib']:.0f} | "
                     f"{r['memory_ratio']:.1f}x | {100 * r['agreement']:.1f}% |")
    (folder / "real_models_cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
