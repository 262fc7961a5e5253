"""LLaDA-8B's shape on one CUDA GPU (random weights, bf16): LLaDA's generate loop against fastmdm's drop-ins.

Shape: 32 layers, d_model 4,096, 32 heads (no grouped keys), MLP 12,288, vocabulary 126,464 (LLaDA-8B's
config), weights drawn at random in bf16, the LM head scaled so the model is peaked enough for threshold
decoding to fill several tokens per call. Prompt 128 + 256 generated tokens in blocks of 32, 256 steps (one
token per step), temperature 0. Modes:

- `llada`: LLaDA's generate loop (this project's re-derivation: full [B, L, V] logits every step, softmax over
  the vocabulary, per-row top-k), on the model's logits;
- `fastmdm`: `fastmdm.compat.llada.generate` (hidden states, the LM head only at the block's masks);
- `prefix`, `dual`: `fastmdm.compat.fastdllm.generate_with_prefix_cache` / `generate_with_dual_cache`;
- `dual-t0.9`: the dual cache with threshold 0.9 (Fast-dLLM's parallel decoding).

Measured per mode: generated tokens per second at batch 1 and 8 (one timed run after a short warm-up), model
calls, peak GPU memory above the weights, tokens equal to `llada`'s; then the largest batch (doubling from 1
up to --max-batch) whose first two calls fit in memory at the same sequence length. Results are written to
$OUT when it is set (the device runner copies it back), else benchmarks/results/, as
real_models_cuda.{json,md}; each part is written as soon as it is done, so a run cut short keeps what it did.

    python benchmarks/bench_real_models_cuda.py                 # on a GPU, about 5 minutes on one H200
    python benchmarks/bench_real_models_cuda.py --smoke /tmp/rm # tiny shape on CPU: checks the script only
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_real_models import llada_loop

from fastmdm.models import LLaDA, LlamaStyleConfig

MASK = 126_336
FULL = dict(vocab_size=126_464, hidden_size=4096, num_layers=32, num_heads=32, num_kv_heads=32,
            intermediate_size=12_288, rope_theta=500000.0)
SMOKE = dict(vocab_size=126_464, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=4,
             intermediate_size=128, rope_theta=500000.0)
MODES = ("llada", "fastmdm", "prefix", "dual", "dual-t0.9")


def log(msg):
    print(f"[bench_real_models_cuda {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def build(shape: dict, device, dtype) -> LLaDA:
    """LLaDA of `shape` with random weights, built on the meta device and materialised once on `device`."""
    cfg = LlamaStyleConfig(**shape, mask_token_id=MASK, model_type="llada")
    with torch.device("meta"):
        model = LLaDA(cfg)
    model = model.to(dtype=dtype).to_empty(device=device).eval()
    g = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.normal_(0, 0.02, generator=g)
        model.lm_head.weight.normal_(0, 0.4 * (512 / shape["hidden_size"]) ** 0.5, generator=g)  # peaked
    return model


def run_mode(mode, model, prompt, steps, gen, block):
    from fastmdm.compat import fastdllm, llada
    if mode == "llada":
        return llada_loop(model, prompt, steps, gen, block, mask_id=MASK)
    if mode == "fastmdm":
        return llada.generate(model, prompt, steps=steps, gen_length=gen, block_length=block), steps
    fn = fastdllm.generate_with_prefix_cache if mode == "prefix" else fastdllm.generate_with_dual_cache
    return fn(model, prompt, steps=steps, gen_length=gen, block_length=block,
              threshold=0.9 if mode == "dual-t0.9" else None)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device, base):
    return (torch.cuda.max_memory_allocated(device) - base) / 2**30 if device.type == "cuda" else float("nan")


def timed(mode, model, prompt, steps, gen, block, device, base):
    run_mode(mode, model, prompt, 2 * (gen // block), gen, block)  # warm-up: two calls per block
    _sync(device)
    _reset_peak(device)
    t0 = time.perf_counter()
    tokens, calls = run_mode(mode, model, prompt, steps, gen, block)
    _sync(device)
    sec = time.perf_counter() - t0
    return {"mode": mode, "batch": prompt.shape[0], "seconds": sec, "calls": int(calls),
            "tokens_per_s": prompt.shape[0] * gen / sec, "peak_gib_above_weights": _peak_gib(device, base),
            "tokens": tokens[:, prompt.shape[1]:].cpu()}


def fits(mode, model, batch, prompt_len, gen, device, vocab):
    """Whether the first two calls at this batch fit: one block over the whole generation, two steps."""
    prompt = torch.randint(0, vocab - 200, (batch, prompt_len), device=device,
                           generator=torch.Generator(device=device).manual_seed(batch))
    try:
        run_mode(mode, model, prompt, 2, gen, gen)
        _sync(device)
        return True
    except torch.cuda.OutOfMemoryError:
        return False
    finally:
        del prompt
        if device.type == "cuda":
            torch.cuda.empty_cache()


def environment(device, command):
    env = {"torch": torch.__version__, "python": platform.python_version(), "command": command,
           "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env


def write(out: Path, env, shape, rows, largest, notes):
    (out / "real_models_cuda.json").write_text(json.dumps(
        {"env": env, "shape": shape, "rows": [{k: v for k, v in r.items() if k != "tokens"} for r in rows],
         "largest_batch": largest, "notes": notes}, indent=2) + "\n")
    lines = ["# LLaDA-8B's shape on one GPU: LLaDA's loop against fastmdm (random weights, bf16)", "",
             f"{env['date_utc']}, {env.get('gpu', 'CPU (smoke run: checks the script, not results)')}, torch "
             f"{env['torch']}. Command: `{env['command']}`.", "",
             f"Shape: {shape}. Prompt {env['prompt']} + {env['gen']} generated, blocks of {env['block']}, "
             f"{env['steps']} steps.", "",
             "| mode | batch | seconds | generated tokens/s | speed-up vs llada | calls | peak GiB above weights "
             "| tokens equal to llada |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['batch']} | {r['seconds']:.2f} | {r['tokens_per_s']:.1f} | "
                     f"{r.get('speedup', float('nan')):.2f}x | {r['calls']} | {r['peak_gib_above_weights']:.2f} | "
                     f"{100 * r.get('agreement', float('nan')):.1f}% |")
    if largest:
        lines += ["", "Largest batch whose first two calls fit (doubling from 1; `>=` means the cap was reached):",
                  "", "| mode | largest batch |", "|---|---|"]
        lines += [f"| {m} | {v} |" for m, v in largest.items()]
    lines += [""] + [f"- {n}" for n in notes]
    (out / "real_models_cuda.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", metavar="DIR", help="tiny shape on CPU, results to DIR (checks the script)")
    ap.add_argument("--batches", default="1,8", help="batches to time (default 1,8)")
    ap.add_argument("--max-batch", type=int, default=256, help="cap of the largest-batch search (default 256)")
    ap.add_argument("--budget-s", type=int, default=420, help="skip what would start after this many seconds")
    args = ap.parse_args(argv)
    start = time.time()
    if args.smoke:
        device, dtype, shape = torch.device("cpu"), torch.float32, SMOKE
        out = Path(args.smoke)
        prompt_len, gen, block, steps = 16, 32, 16, 32
    else:
        if not torch.cuda.is_available():
            print("bench_real_models_cuda.py needs a CUDA GPU (--smoke DIR checks the script on CPU)", file=sys.stderr)
            return 2
        device, dtype, shape = torch.device("cuda"), torch.bfloat16, FULL
        out = Path(os.environ["OUT"]) if os.environ.get("OUT") else Path(__file__).parent / "results"
        prompt_len, gen, block, steps = 128, 256, 32, 256
    out.mkdir(parents=True, exist_ok=True)
    env = environment(device, "python benchmarks/bench_real_models_cuda.py" + (" --smoke" if args.smoke else ""))
    env.update(prompt=prompt_len, gen=gen, block=block, steps=steps)
    log(f"building {shape} on {device}")
    model = build(shape, device, dtype)
    _sync(device)
    base = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    notes = [f"weights: {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B parameters, "
             f"{base / 2**30:.1f} GiB" if device.type == "cuda" else "smoke run on CPU"]
    rows, largest = [], {}
    for b in [int(v) for v in args.batches.split(",")]:
        prompt = torch.randint(0, shape["vocab_size"] - 200, (b, prompt_len), device=device,
                               generator=torch.Generator(device=device).manual_seed(1))
        ref = None
        for mode in MODES:
            if time.time() - start > args.budget_s:
                notes.append(f"{mode} at batch {b}: skipped, over the {args.budget_s} s budget")
                continue
            try:
                r = timed(mode, model, prompt, steps, gen, block, device, base)
            except torch.cuda.OutOfMemoryError:
                notes.append(f"{mode} at batch {b}: out of memory")
                torch.cuda.empty_cache()
                continue
            if mode == "llada":
                ref = r
            if ref is not None:
                r["speedup"] = ref["seconds"] / r["seconds"]
                r["agreement"] = float((r["tokens"] == ref["tokens"]).float().mean())
            rows.append(r)
            log(f"{mode} batch {b}: {r['seconds']:.2f} s, {r['tokens_per_s']:.1f} tokens/s, {r['calls']} calls")
            write(out, env, shape, rows, largest, notes)
    for mode in ("llada", "fastmdm", "dual"):
        b, best = 1, 0
        while b <= args.max_batch and time.time() - start < args.budget_s:
            if not fits(mode, model, b, prompt_len, gen, device, shape["vocab_size"]):
                break
            best, b = b, 2 * b
        else:
            if best:
                best = f">= {best}" if b > args.max_batch else f">= {best} (stopped by the time budget)"
        largest[mode] = best
        log(f"largest batch {mode}: {best}")
        write(out, env, shape, rows, largest, notes)
    notes.append(f"total {time.time() - start:.0f} s")
    write(out, env, shape, rows, largest, notes)
    print((out / "real_models_cuda.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
