"""fastmdm.generate against a LLaDA-style generate loop on CPU at LLaDA's vocabulary.

Setting: LLaDA's vocabulary, V = 126,464, a model that exposes its hidden states (d = 64), batch 4, prompt 16 +
112 generated tokens, 28 steps, one block, confidence order, temperature 0.

The baseline re-derives LLaDA's published `generate` loop: each step calls the full model for
[B, L, V] logits, takes the argmax, builds the full softmax, gathers the chosen tokens' probabilities and
picks each row's top-n in a Python loop over rows. fastmdm calls `forward_hidden` and applies the LM head
only at the current masked positions, in chunks.

Peak memory is the peak resident set size of a fresh process (one per measurement) minus the peak after
the model's own work: building the model and one `forward_hidden` call (weights + trunk activations). The
baseline's full-vocabulary logits count as decoding cost, since LLaDA's loop is what asks for them; the
ratio with those logits counted as the model's instead is reported too.

    python benchmarks/bench_sampling_llada.py            # writes benchmarks/results/sampling_llada_cpu.{json,md}
    pytest benchmarks/bench_sampling_llada.py --benchmark-enable   # pytest-benchmark timings
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

V, D, B, PROMPT, GEN, STEPS, MASK = 126_464, 64, 4, 16, 112, 28, 126_336


class HiddenStateLM(torch.nn.Module):
    """Embedding, two residual MLP blocks with a bidirectional mean-context mix, and an LM head [V, d]."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.emb = torch.nn.Embedding(V, D)
        self.pos = torch.nn.Parameter(torch.randn(PROMPT + GEN, D) * 0.1)
        self.blocks = torch.nn.ModuleList(torch.nn.Sequential(torch.nn.Linear(2 * D, 4 * D), torch.nn.GELU(),
                                                              torch.nn.Linear(4 * D, D)) for _ in range(2))
        self.head = torch.nn.Linear(D, V, bias=False)
        self.config = type("Config", (), {"mask_token_id": MASK})()

    def forward_hidden(self, x, attention_mask=None):
        h = self.emb(x) + self.pos[: x.shape[1]]
        for blk in self.blocks:
            ctx = h.mean(1, keepdim=True).expand_as(h)
            h = h + blk(torch.cat([h, ctx], -1))
        return h

    def get_output_embeddings(self):
        return self.head

    def forward(self, x, attention_mask=None):
        return self.head(self.forward_hidden(x))


def llada_style_generate(model, prompt, steps=STEPS, gen_length=GEN, mask_id=MASK):
    """LLaDA's algorithm at temperature 0 with one block (re-derived from its description)."""
    x = torch.cat([prompt, torch.full((prompt.shape[0], gen_length), mask_id, dtype=torch.long)], 1)
    mask_index = x == mask_id
    n = mask_index.sum(1, keepdim=True)
    schedule = (n // steps).repeat(1, steps)
    for j in range(x.shape[0]):
        schedule[j, : int(n[j] % steps)] += 1
    for i in range(steps):
        mask_index = x == mask_id
        logits = model(x)  # [B, L, V]
        x0 = torch.argmax(logits, dim=-1)
        p = F.softmax(logits, dim=-1)
        x0_p = torch.gather(p, -1, x0[..., None]).squeeze(-1)
        x0 = torch.where(mask_index, x0, x)
        confidence = torch.where(mask_index, x0_p, torch.tensor(-float("inf")))
        transfer = torch.zeros_like(x0, dtype=torch.bool)
        for j in range(confidence.shape[0]):
            _, idx = torch.topk(confidence[j], k=int(schedule[j, i]))
            transfer[j, idx] = True
        x[transfer] = x0[transfer]
    return x


def fastmdm_generate(model, prompt):
    import fastmdm
    return fastmdm.generate(model, prompt, gen_length=GEN, steps=STEPS, strategy="confidence", mask_id=MASK)


def make_prompt():
    return torch.randint(0, 126_000, (B, PROMPT), generator=torch.Generator().manual_seed(1))


def _maxrss_mib():
    """Peak resident set size of this process (VmHWM). Not getrusage's ru_maxrss: on Linux that survives
    fork + exec, so a child would start with its parent's peak."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def _child(which):
    """Runs in a fresh process: prints JSON with the peak RSS after the model's own work and after decoding."""
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    model = HiddenStateLM().eval()
    prompt = make_prompt()
    x = torch.cat([prompt, torch.full((B, GEN), MASK, dtype=torch.long)], 1)
    with torch.no_grad():
        model.forward_hidden(x)
        base = _maxrss_mib()
        if which == "full_forward":
            model(x)
        elif which == "llada":
            llada_style_generate(model, prompt)
        else:
            fastmdm_generate(model, prompt)
    print(json.dumps({"base_mib": base, "peak_mib": _maxrss_mib()}))


def measure_memory(which):
    out = subprocess.run([sys.executable, __file__, "--child", which], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return r["peak_mib"] - r["base_mib"]


def measure_times(fns, model, prompt, repeats=3):
    """Best-of-`repeats` seconds per function, the runs interleaved so that load from other processes hits
    each alike; returns ({name: seconds}, {name: output})."""
    times, outs = {n: [] for n in fns}, {}
    with torch.no_grad():
        for name, fn in fns.items():
            fn(model, prompt)  # warm-up
        for _ in range(repeats):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                outs[name] = fn(model, prompt)
                times[name].append(time.perf_counter() - t0)
    return {n: min(t) for n, t in times.items()}, outs


def model_time_share(model, prompt):
    """Seconds fastmdm spends per step, and the share of that spent outside forward_hidden."""
    spent = [0.0]
    inner = model.forward_hidden

    def timed(*a, **kw):
        t0 = time.perf_counter()
        r = inner(*a, **kw)
        spent[0] += time.perf_counter() - t0
        return r

    model.forward_hidden = timed
    import fastmdm
    with torch.no_grad():
        t0 = time.perf_counter()
        tr = fastmdm.generate(model, prompt, gen_length=GEN, steps=STEPS, strategy="confidence", mask_id=MASK,
                              return_trace=True)
        total = time.perf_counter() - t0
    del model.forward_hidden
    return total / tr.nfe, (total - spent[0]) / total, tr.nfe


def main():
    torch.set_num_threads(2)
    model = HiddenStateLM().eval()
    prompt = make_prompt()
    times, outs = measure_times({"llada": llada_style_generate, "fastmdm": fastmdm_generate}, model, prompt)
    t_llada, t_fast = times["llada"], times["fastmdm"]
    same = bool(torch.equal(outs["llada"], outs["fastmdm"]))
    step_s, sampler_share, nfe = model_time_share(model, prompt)
    mem = {w: measure_memory(w) for w in ("full_forward", "llada", "fastmdm")}
    if min(mem.values()) <= 0:
        raise RuntimeError(f"implausible memory measurement {mem}: rerun on a quieter machine")
    result = {
        "setting": dict(V=V, d=D, batch=B, prompt=PROMPT, gen=GEN, steps=STEPS, strategy="confidence",
                        temperature=0.0),
        "same_tokens": same,
        "time_s": {"llada_loop": t_llada, "fastmdm": t_fast, "speedup": t_llada / t_fast},
        "fastmdm_step_s": step_s, "fastmdm_nfe": nfe, "sampler_share_of_step": sampler_share,
        "peak_extra_mib": {"llada_loop": mem["llada"], "fastmdm": mem["fastmdm"],
                           "model_full_logits_forward": mem["full_forward"]},
        "memory_ratio": mem["llada"] / max(mem["fastmdm"], 1e-9),
        "memory_ratio_logits_counted_as_model": (mem["llada"] - mem["full_forward"]) / max(mem["fastmdm"], 1e-9),
        "hardware": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                     "torch_threads": torch.get_num_threads()},
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "command": "python benchmarks/bench_sampling_llada.py",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_at_end": os.getloadavg(),
    }
    try:
        result["hardware"]["cpu_model"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                                               if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "sampling_llada_cpu.json").write_text(json.dumps(result, indent=2) + "\n")
    md = f"""# fastmdm.generate vs a LLaDA-style loop (CPU)

Setting: V = {V:,}, d = {D}, batch {B}, prompt {PROMPT} + {GEN} generated, {STEPS} steps, confidence, temperature 0.
Hardware: {result['hardware'].get('cpu_model', '?')}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}.
Versions: Python {platform.python_version()}, torch {torch.__version__}. Date: {result['date']}.
Command: `{result['command']}`. Load average at the end: {result['load_average_at_end']}.

| | LLaDA-style loop | fastmdm |
|---|---|---|
| time (best of 3) | {t_llada:.2f} s | {t_fast:.2f} s |
| peak memory over the model's own | {mem['llada']:.0f} MiB | {mem['fastmdm']:.0f} MiB |

- Same tokens: {same}. Speed-up: {t_llada / t_fast:.2f}x. Memory ratio: {result['memory_ratio']:.1f}x
  ({result['memory_ratio_logits_counted_as_model']:.1f}x if the full-vocabulary logits of one model call,
  {mem['full_forward']:.0f} MiB, are counted as the model's own).
- fastmdm: {nfe} model calls, {step_s * 1e3:.1f} ms per step, of which {sampler_share:.1%} outside the model's
  `forward_hidden` (LM head at the masked positions, selection, bookkeeping).
"""
    (out / "sampling_llada_cpu.md").write_text(md)
    print(md)


# pytest-benchmark entry points (pytest benchmarks/bench_sampling_llada.py --benchmark-enable)
def test_llada_style_loop_time(benchmark):
    model, prompt = HiddenStateLM().eval(), make_prompt()
    with torch.no_grad():
        benchmark.pedantic(llada_style_generate, args=(model, prompt), rounds=2, iterations=1)


def test_fastmdm_generate_time(benchmark):
    model, prompt = HiddenStateLM().eval(), make_prompt()
    with torch.no_grad():
        benchmark.pedantic(fastmdm_generate, args=(model, prompt), rounds=2, iterations=1)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        _child(sys.argv[2])
    else:
        main()
