"""Real architectures on CPU: LLaDA's and Dream's samplers (and, given a checkout, Fast-dLLM's own code) against
fastmdm's drop-ins on the same models.

Models (random weights, float32): the medium LLaDA shape (4 layers, d_model 512, 8 heads, MLP 1,536, vocabulary
126,464, mask 126,336) and a Dream of the same size (8 query and 4 key/value heads with query/key/value biases,
vocabulary 152,064, mask 151,666). Weights: embeddings N(0, 1), query and key projections N(0, 0.1), the other
matrices N(0, 0.05), biases N(0, 0.02), norms 1, the LM head N(0, 0.6) with a zero row for the mask token (so,
as with the released models, the mask is never the most likely token). Predictions then depend on the context
(some 25 distinct argmax tokens over a row's 32 masks) and are peaked (some 40% of the first step's positions
have confidence > 0.9). Batch 4, prompt 64 tokens + 128 generated (LLaDA: blocks of 32); temperature 0.

Groups of modes (`--groups`; each mode runs in a fresh process):

- `llada`: `llada` is LLaDA's `generate` re-derived from its description (full [B, L, V] logits every step,
  softmax over the vocabulary, per-row top-k), `fastmdm` is `fastmdm.compat.llada.generate` and
  `fastmdm-dual-0.9` is `fastmdm.compat.fastdllm.generate_with_dual_cache(threshold=0.9)`, all on the native LLaDA.
- `dream`: `dream-ref-ALG` is Dream's `diffusion_generate` re-derived from its description (full logits every
  step, shifted by one, softmax at the masked positions, the batch's mean mask count times 1 - s/t positions per
  row by top-k of the score; top-2 by torch.topk where Dream sorts the vocabulary) and `dream-ALG` is
  `fastmdm.compat.dream.diffusion_generate`, for ALG in maskgit_plus, topk_margin, entropy, on the native Dream.
- `fastdllm` (needs `--fastdllm PATH`, a checkout of Fast-dLLM): `fd-generate`, `fd-prefix`, `fd-dual` and
  `fd-dual-0.9` are `generate`, `generate_with_prefix_cache` and `generate_with_dual_cache` (plain, and with
  threshold=0.9) imported from PATH/llada/generate.py, on the checkout's LLaDA class
  (PATH/llada/model/modeling_llada.py) built for the medium shape; `fm-*` are the matching
  `fastmdm.compat.fastdllm` functions on the native LLaDA sharing the same weight tensors (`LLaDA.from_hf_model`).
  Fast-dLLM's samplers take a batch of one, so both sides run the 4 prompts one at a time.
- `fastdllm-dream` (needs `--fastdllm PATH`): `fd-dream-ALG` is Dream's `diffusion_generate` from
  PATH/dream/model/generation_utils.py on the checkout's Dream class, `fm-dream-ALG` is
  `fastmdm.compat.dream.diffusion_generate` on the native Dream sharing its weights; batch 4.

Nothing from the checkout is copied: it is imported from PATH at run time. The checkout targets transformers 4.x;
under transformers 5 three things are bridged at run time (see `_bridge_transformers5`).

Reported per mode: seconds (one run after a warm-up run), model calls, peak memory and the share of generated
tokens equal to the reference row of its pair. Peak memory is the peak resident size (VmHWM) during the warm-up
above the resident size just before it (the model's weights, after one forward over the batch; the peak is reset
there, so building the model does not count). The warm-up runs with glibc's default malloc settings, as a program
that never calls `fastmdm.keep_freed_memory()` does; the timed run then follows that call, as fastmdm's commands
run, and "kept" is the process's peak after it (the freed blocks the allocator kept included). Both peaks count
what the allocator holds, not only live tensors. The load average is recorded before and after each mode.

    python benchmarks/bench_real_models.py --threads 1 --steps 64
    python benchmarks/bench_real_models.py --threads 1 --steps 64 --fastdllm PATH --groups fastdllm,fastdllm-dream
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from fastmdm.models import Dream, LLaDA, LlamaStyleConfig

B, PROMPT, GEN, BLOCK = 4, 64, 128, 32
LLADA_MASK, DREAM_MASK = 126_336, 151_666
ALGS = ("maskgit_plus", "topk_margin", "entropy")
GROUPS = ("llada", "dream", "fastdllm", "fastdllm-dream")


def llada_config(**kw) -> LlamaStyleConfig:
    cfg = dict(vocab_size=126_464, hidden_size=512, num_layers=4, num_heads=8, num_kv_heads=8, intermediate_size=1536,
               rope_theta=500000.0, mask_token_id=LLADA_MASK, model_type="llada")
    return LlamaStyleConfig(**{**cfg, **kw})


def dream_config(**kw) -> LlamaStyleConfig:
    cfg = dict(vocab_size=152_064, hidden_size=512, num_layers=4, num_heads=8, num_kv_heads=4, intermediate_size=1536,
               rope_theta=1e6, rms_norm_eps=1e-6, qkv_bias=True, mask_token_id=DREAM_MASK, model_type="dream")
    return LlamaStyleConfig(**{**cfg, **kw})


def init_weights(model, mask_id: int, seed: int = 0) -> None:
    """The random weights of the module docstring, written in place into `model`'s parameters (a native model
    wrapping another model's tensors writes them into both)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
                continue
            if name.startswith("embed."):
                std = 1.0
            elif name == "lm_head.weight":
                std = 0.6
            elif name.endswith(".bias"):
                std = 0.02
            elif name.endswith(("q.weight", "k.weight")):
                std = 0.1
            else:
                std = 0.05
            p.normal_(0.0, std, generator=g)  # in place: no temporary the size of the embedding
        model.lm_head.weight[mask_id] = 0.0


# ----------------------------------------------------------------------------------------------
# the original samplers, re-derived (full logits every step)
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def llada_loop(model, prompt, steps, gen_length=GEN, block_length=BLOCK, mask_id=LLADA_MASK):
    """LLaDA's generate at temperature 0 with low_confidence remasking; returns (x, model calls). The softmax runs
    in float32 (a no-op for a float32 model; a bf16 model's logits are widened first)."""
    x = torch.cat([prompt, torch.full((prompt.shape[0], gen_length), mask_id, dtype=torch.long,
                                      device=prompt.device)], 1)
    per_block = steps // (gen_length // block_length)
    P = prompt.shape[1]
    for b0 in range(P, P + gen_length, block_length):
        n = (x[:, b0:b0 + block_length] == mask_id).sum(1)
        for s in range(per_block):
            mask_index = x == mask_id
            logits = model(x)
            x0 = torch.argmax(logits, dim=-1)
            conf = torch.gather(F.softmax(logits.float(), dim=-1), -1, x0[..., None]).squeeze(-1)
            del logits
            conf[:, b0 + block_length:] = -torch.inf
            conf = torch.where(mask_index, conf, -torch.inf)
            for j in range(x.shape[0]):
                k = int(n[j] // per_block + (s < n[j] % per_block))
                idx = torch.topk(conf[j], k).indices
                x[j, idx] = x0[j, idx]
    return x, steps


@torch.no_grad()
def dream_loop(model, prompt, steps, alg, max_new_tokens=GEN, eps=1e-3, mask_id=DREAM_MASK):
    """Dream's diffusion_generate at temperature 0 for a batch without padding (full attention, positions from
    0); returns (x, model calls)."""
    x = torch.cat([prompt, torch.full((prompt.shape[0], max_new_tokens), mask_id, dtype=torch.long)], 1)
    timesteps = torch.linspace(1, eps, steps + 1)
    for i in range(steps):
        mask_index = x == mask_id
        out = model(x, attention_mask="full")
        logits = torch.cat([out[:, :1], out[:, :-1]], 1)  # position j is predicted from the output at j - 1
        del out
        probs = torch.softmax(logits[mask_index], dim=-1)  # [masks of the batch, V]
        del logits
        conf, x0 = probs.max(-1)
        if alg == "topk_margin":
            top2 = torch.topk(probs, 2, dim=-1).values
            conf = top2[:, 0] - top2[:, 1]
        elif alg == "entropy":
            conf = (probs * torch.log(probs + 1e-10)).sum(-1)
        del probs
        t, s = timesteps[i], timesteps[i + 1]
        mean_masks = mask_index.sum() / mask_index.shape[0]
        k = int(mean_masks * (1 - s / t)) if i < steps - 1 else int(mean_masks)
        if k > 0:
            full = torch.full(x.shape, -torch.inf)
            full[mask_index] = conf
            proposal = torch.full_like(x, mask_id)
            proposal[mask_index] = x0
            idx = torch.topk(full, k, dim=-1).indices
            rows = torch.arange(x.shape[0])[:, None].expand_as(idx)
            x[rows, idx] = proposal[rows, idx]
    return x, steps


# ----------------------------------------------------------------------------------------------
# the Fast-dLLM checkout, imported from its path
# ----------------------------------------------------------------------------------------------
def _bridge_transformers5(kind: str) -> None:
    """What the checkout's models (written for transformers 4.x) need from transformers 5, bridged at run time
    without touching the checkout: Dream's rotary embedding looks up ROPE_INIT_FUNCTIONS["default"], which
    transformers 5 dropped (registered here: inverse frequencies base ** (-2i / head_dim), scaling 1), and Dream's
    DreamGenerationConfig.validate, a no-op, does not take the keyword transformers 5 passes to it. (LLaDA's config
    no longer keeps `use_cache`; `fastdllm_llada` sets it on the built model.)"""
    if kind != "dream":
        return
    import transformers.modeling_rope_utils as rope  # only with --fastdllm

    def default_rope(config, device=None, **_):
        dim = config.hidden_size // config.num_attention_heads
        exponents = torch.arange(0, dim, 2, dtype=torch.int64).to(device=device, dtype=torch.float) / dim
        return 1.0 / (config.rope_theta ** exponents), 1.0

    rope.ROPE_INIT_FUNCTIONS.setdefault("default", default_rope)
    utils = sys.modules["model.generation_utils"]
    utils.DreamGenerationConfig.validate = lambda self, *args, **kwargs: None


def _import_checkout(path: str, kind: str):
    """The checkout's `model` package (PATH/llada/model or PATH/dream/model; both are named `model`, hence one
    kind per process) and, for LLaDA, its generate.py."""
    folder = Path(path) / kind
    if not (folder / "model" / "__init__.py").is_file():
        raise SystemExit(f"--fastdllm: {folder / 'model'} is not a package; pass the root of a Fast-dLLM checkout "
                         "(the folder holding llada/ and dream/)")
    sys.path.insert(0, str(folder))
    import model as package  # the checkout's package, from PATH

    if kind == "dream":
        import model.generation_utils  # so that _bridge_transformers5 finds it
        _bridge_transformers5(kind)
        return package, None
    spec = importlib.util.spec_from_file_location("fastdllm_llada_generate", folder / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    return package, generate


def fastdllm_llada(path: str):
    """(their LLaDAModelLM, the native LLaDA sharing its tensors, their generate module) for the medium shape."""
    package, generate = _import_checkout(path, "llada")
    c = llada_config()
    cfg = package.LLaDAConfig(
        d_model=c.hidden_size, n_heads=c.num_heads, n_kv_heads=c.num_kv_heads, n_layers=c.num_layers,
        mlp_hidden_size=c.intermediate_size, vocab_size=c.vocab_size, embedding_size=c.vocab_size,
        activation_type="silu", block_type="llama", layer_norm_type="rms", rms_norm_eps=c.rms_norm_eps, rope=True,
        rope_theta=c.rope_theta, flash_attention=False, attention_dropout=0.0, residual_dropout=0.0,
        embedding_dropout=0.0, include_bias=False, include_qkv_bias=False, weight_tying=False,
        mask_token_id=LLADA_MASK, eos_token_id=126_081, pad_token_id=126_081, max_sequence_length=4096,
        init_device="cpu")
    theirs = package.LLaDAModelLM(cfg, init_params=False).eval()
    theirs.config.use_cache = False  # read by its forward; transformers 5 configs no longer hold it
    native = LLaDA.from_hf_model(theirs)
    init_weights(native, LLADA_MASK)
    return theirs, native, generate


def fastdllm_dream(path: str):
    """(their DreamModel, the native Dream sharing its tensors, a DreamGenerationConfig) for the medium shape."""
    package, _ = _import_checkout(path, "dream")
    c = dream_config()
    cfg = package.DreamConfig(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_layers, num_attention_heads=c.num_heads, num_key_value_heads=c.num_kv_heads,
        rope_theta=c.rope_theta, rms_norm_eps=c.rms_norm_eps, tie_word_embeddings=False, mask_token_id=DREAM_MASK,
        pad_token_id=151_643, bos_token_id=151_643, eos_token_id=151_643)
    theirs = package.DreamModel(cfg).eval()
    native = Dream.from_hf_model(theirs)
    init_weights(native, DREAM_MASK)
    gen_config = sys.modules["model.generation_utils"].DreamGenerationConfig(
        mask_token_id=DREAM_MASK, pad_token_id=151_643, bos_token_id=151_643, eos_token_id=151_643)
    return theirs, native, gen_config


# ----------------------------------------------------------------------------------------------
# modes
# ----------------------------------------------------------------------------------------------
@dataclass
class Mode:
    name: str
    group: str
    ref: str  # the mode this one is compared with (itself for a reference)
    what: str
    per_prompt: bool = False  # run on one prompt at a time


def modes() -> dict[str, Mode]:
    out = [Mode("llada", "llada", "llada", "LLaDA's generate, re-derived"),
           Mode("fastmdm", "llada", "llada", "fastmdm.compat.llada.generate"),
           Mode("fastmdm-dual-0.9", "llada", "llada",
                "fastmdm.compat.fastdllm.generate_with_dual_cache, threshold 0.9")]
    for alg in ALGS:
        out += [Mode(f"dream-ref-{alg}", "dream", f"dream-ref-{alg}", f"Dream's diffusion_generate, re-derived, {alg}"),
                Mode(f"dream-{alg}", "dream", f"dream-ref-{alg}", f"fastmdm.compat.dream.diffusion_generate, {alg}")]
    for kind, fn in (("generate", "generate"), ("prefix", "generate_with_prefix_cache"),
                     ("dual", "generate_with_dual_cache"), ("dual-0.9", "generate_with_dual_cache, threshold 0.9")):
        out += [Mode(f"fd-{kind}", "fastdllm", f"fd-{kind}", f"Fast-dLLM's {fn}", per_prompt=True),
                Mode(f"fm-{kind}", "fastdllm", f"fd-{kind}", f"fastmdm.compat.fastdllm.{fn}", per_prompt=True)]
    for alg in ALGS:
        out += [Mode(f"fd-dream-{alg}", "fastdllm-dream", f"fd-dream-{alg}", f"Dream's diffusion_generate, {alg}"),
                Mode(f"fm-dream-{alg}", "fastdllm-dream", f"fd-dream-{alg}",
                     f"fastmdm.compat.dream.diffusion_generate, {alg}")]
    return {m.name: m for m in out}


class CallCounter:
    """Counts model calls through a forward hook on the input embedding (every forward embeds its tokens once)."""

    def __init__(self, model):
        self.n = 0
        model.get_input_embeddings().register_forward_hook(self._hook)

    def _hook(self, *_):
        self.n += 1


def setup(group: str, fastdllm: str | None):
    """(the native model, what the runners need) for a group."""
    if group == "llada":
        model = LLaDA(llada_config()).eval()
        init_weights(model, LLADA_MASK)
        return model, {}
    if group == "dream":
        model = Dream(dream_config()).eval()
        init_weights(model, DREAM_MASK)
        return model, {}
    if fastdllm is None:
        raise SystemExit(f"group {group!r} needs --fastdllm PATH (a Fast-dLLM checkout)")
    if group == "fastdllm":
        theirs, native, generate = fastdllm_llada(fastdllm)
        return native, {"theirs": theirs, "generate": generate}
    theirs, native, gen_config = fastdllm_dream(fastdllm)
    return native, {"theirs": theirs, "gen_config": gen_config}


def runner(mode: Mode, native, extra, steps):
    """A function prompt [b, P] -> (tokens [b, P + GEN], model calls)."""
    from fastmdm.compat import dream, fastdllm, llada

    name = mode.name
    blocks = dict(steps=steps, gen_length=GEN, block_length=BLOCK)
    if name == "llada":
        return lambda p: llada_loop(native, p, steps)
    if name == "fastmdm":
        return lambda p: (llada.generate(native, p, mask_id=LLADA_MASK, **blocks), steps)
    if name == "fastmdm-dual-0.9":
        return lambda p: fastdllm.generate_with_dual_cache(native, p, mask_id=LLADA_MASK, threshold=0.9, **blocks)
    if name.startswith("dream-ref-"):
        return lambda p: dream_loop(native, p, steps, name.removeprefix("dream-ref-"))
    alg = name.rsplit("-", 1)[-1] if "dream" in name else None
    if name.startswith(("dream-", "fm-dream-", "fd-dream-")):
        counter = CallCounter(extra["theirs"] if name.startswith("fd-") else native)
        if name.startswith("fd-"):
            theirs, gen_config = extra["theirs"], extra["gen_config"]

            def run(p):
                before = counter.n
                out = theirs.diffusion_generate(p, generation_config=gen_config, max_new_tokens=GEN, steps=steps,
                                                alg=alg, temperature=0.0)
                return out, counter.n - before
        else:
            def run(p):
                before = counter.n
                out = dream.diffusion_generate(native, p, max_new_tokens=GEN, steps=steps, alg=alg, temperature=0.0,
                                               mask_token_id=DREAM_MASK)
                return out, counter.n - before
        return run
    kind = name.split("-", 1)[1]
    threshold = 0.9 if kind.endswith("-0.9") else None
    fn_name = {"generate": "generate", "prefix": "generate_with_prefix_cache"}.get(kind.removesuffix("-0.9"),
                                                                                   "generate_with_dual_cache")
    if name.startswith("fd-"):
        fn, model = getattr(extra["generate"], fn_name), extra["theirs"]
        return lambda p: fn(model, p, temperature=0.0, remasking="low_confidence", mask_id=LLADA_MASK,
                            threshold=threshold, **blocks)
    fn = getattr(fastdllm, fn_name)
    return lambda p: fn(native, p, mask_id=LLADA_MASK, threshold=threshold, **blocks)


def _peak_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def _reset_peak() -> None:
    """Set VmHWM to the current resident size (Linux: "5" to /proc/self/clear_refs), so what building the model
    held for a moment does not count; where that is refused the peak so far stays the base."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def prompts() -> torch.Tensor:
    return torch.randint(0, 126_000, (B, PROMPT), generator=torch.Generator().manual_seed(1))


def child(name: str, threads: int, steps: int, fastdllm: str | None) -> dict:
    import fastmdm

    torch.set_num_threads(threads)
    mode = modes()[name]
    native, extra = setup(mode.group, fastdllm)
    prompt = prompts()
    run = runner(mode, native, extra, steps)

    def over_prompts(p):
        if not mode.per_prompt:
            return run(p)
        outs = [run(p[i:i + 1]) for i in range(p.shape[0])]
        return torch.cat([o[0] for o in outs]), sum(int(o[1]) for o in outs)

    warm = prompt[:1] if mode.per_prompt else prompt
    with torch.no_grad():
        native.forward_hidden(torch.cat([warm, torch.full((warm.shape[0], GEN), 0)], 1))
        _reset_peak()
        base = _peak_mib()
        run(warm)  # the warm-up, under glibc's default malloc settings: its peak follows the live tensors
        peak = _peak_mib() - base
        fastmdm.keep_freed_memory()
        t0 = time.perf_counter()
        tokens, calls = over_prompts(prompt)
        seconds = time.perf_counter() - t0
    return {"mode": name, "seconds": seconds, "calls": int(calls), "peak_mib": peak,
            "peak_kept_mib": _peak_mib() - base, "tokens": tokens[:, PROMPT:].tolist()}


# ----------------------------------------------------------------------------------------------
# the report
# ----------------------------------------------------------------------------------------------
def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def compare(rows: list[dict]) -> None:
    """Each row against its pair's reference row: speed-up, memory ratio, share of equal tokens; fastdllm rows
    also against Fast-dLLM's generate (LLaDA's own loop, one prompt at a time)."""
    by = {r["mode"]: r for r in rows}
    table = modes()
    for r in rows:
        ref = by.get(table[r["mode"]].ref)
        r["ref"] = table[r["mode"]].ref
        if ref is not None:
            r["speedup"] = ref["seconds"] / r["seconds"]
            r["memory_ratio"] = ref["peak_mib"] / max(r["peak_mib"], 1e-9)
            r["agreement"] = float((torch.tensor(r["tokens"]) == torch.tensor(ref["tokens"])).float().mean())
        gen = by.get("fd-generate")
        if table[r["mode"]].group == "fastdllm" and gen is not None:
            r["speedup_vs_generate"] = gen["seconds"] / r["seconds"]
            r["agreement_vs_generate"] = float((torch.tensor(r["tokens"]) ==
                                                torch.tensor(gen["tokens"])).float().mean())


def markdown(env: dict, rows: list[dict]) -> str:
    table = modes()
    lines = ["# LLaDA's and Dream's samplers against fastmdm's drop-ins (CPU, random weights)", "",
             f"{env['date_utc']}, {env['cpu']}, {env['threads']} thread(s), torch {env['torch']}, "
             f"transformers {env['transformers']}. Command: `{env['command']}`.", "",
             f"Batch {B}, prompt {PROMPT} + {GEN} generated, {env['steps']} steps, temperature 0; LLaDA: 4 layers, "
             "d_model 512, vocabulary 126,464, blocks of 32; Dream: the same size with 4 key/value heads and "
             "vocabulary 152,064. Weights and modes: the docstring of benchmarks/bench_real_models.py. Peak memory: "
             "resident memory above the model's weights over a warm-up run with glibc's default malloc settings; "
             "kept: the process's peak after the timed run, which follows `fastmdm.keep_freed_memory()`.", "",
             f"Load: the 1-minute load average before -> after each mode, on {env['cores']} cores that other work "
             f"may share (whole run: {env['load_start'][0]:.2f} -> {env['load_end'][0]:.2f}).", ""]
    if any(table[r["mode"]].group.startswith("fastdllm") for r in rows):
        lines += ["The Fast-dLLM checkout runs on CPU as it is: its LLaDA takes its plain attention path "
                  "(`flash_attention=False` in the config: torch's scaled_dot_product_attention, no flash_attn, no "
                  "CUDA), and its Dream uses scaled_dot_product_attention. Written for transformers 4.x, it needs "
                  "three things bridged at run time under transformers 5 (`_bridge_transformers5` and "
                  "`fastdllm_llada` in the script): `config.use_cache` set on the LLaDA model, a 'default' entry in "
                  "`ROPE_INIT_FUNCTIONS` for Dream's rotary embedding, and Dream's no-op "
                  "`DreamGenerationConfig.validate` taking transformers 5's keyword; Dream's generation config is "
                  "passed explicitly (`DreamGenerationConfig.from_model_config` fails under transformers 5). Not "
                  "run: the checkout's block-cached Dream sampler (dream/model/generation_utils_block.py).", ""]
    for group in GROUPS:
        chosen = [r for r in rows if table[r["mode"]].group == group]
        if not chosen:
            continue
        one = table[chosen[0]["mode"]].per_prompt
        extra = " | vs fd-generate | tokens = fd-generate" if group == "fastdllm" else ""
        note = "One prompt at a time (Fast-dLLM's samplers take a batch of one); seconds for all 4. " if one else ""
        note += "Speed-up, memory ratio and equal tokens: against the row named in `vs`."
        lines += [f"## {group}", "", note, "",
                  "| mode | what | vs | seconds | s / prompt | speed-up | calls | peak MiB | less memory | kept MiB "
                  f"| tokens equal{extra} | load |",
                  "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if extra else "") + "---|"]
        for r in chosen:
            m = table[r["mode"]]
            cells = [r["mode"], m.what, r["ref"], f"{r['seconds']:.2f}", f"{r['seconds'] / B:.2f}",
                     f"{r['speedup']:.2f}x" if "speedup" in r else "-", str(r["calls"]), f"{r['peak_mib']:.0f}",
                     f"{r['memory_ratio']:.1f}x" if "memory_ratio" in r else "-", f"{r['peak_kept_mib']:.0f}",
                     f"{100 * r['agreement']:.1f}%" if "agreement" in r else "-"]
            if extra:
                cells += [f"{r['speedup_vs_generate']:.2f}x" if "speedup_vs_generate" in r else "-",
                          f"{100 * r['agreement_vs_generate']:.1f}%" if "agreement_vs_generate" in r else "-"]
            cells.append(f"{r['load_before'][0]:.1f} -> {r['load_after'][0]:.1f}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--steps", type=int, default=128, help="steps over the 128 tokens (default 128)")
    ap.add_argument("--fastdllm", metavar="PATH", help="a Fast-dLLM checkout: adds the fastdllm groups")
    ap.add_argument("--groups", help=f"comma-separated groups among {', '.join(GROUPS)} (default: llada,dream, and "
                                     "the fastdllm groups with --fastdllm)")
    ap.add_argument("--only", help="comma-separated modes (instead of --groups)")
    ap.add_argument("--out", default="benchmarks/results", help="folder for the results")
    ap.add_argument("--name", help="results file name without extension (default real_models_cpu, "
                                   "real_models_cpu_fastdllm when a fastdllm group runs)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.fastdllm:
        args.fastdllm = str(Path(args.fastdllm).resolve())
    if args.child:
        print(json.dumps(child(args.child, args.threads, args.steps, args.fastdllm)))
        return 0
    table = modes()
    if args.only:
        names = args.only.split(",")
        unknown = [n for n in names if n not in table]
        if unknown:
            raise SystemExit(f"--only: unknown mode(s) {unknown}; modes: {', '.join(table)}")
    else:
        groups = args.groups.split(",") if args.groups else \
            ["llada", "dream"] + (["fastdllm", "fastdllm-dream"] if args.fastdllm else [])
        unknown = [g for g in groups if g not in GROUPS]
        if unknown:
            raise SystemExit(f"--groups: unknown group(s) {unknown}; groups: {', '.join(GROUPS)}")
        names = [n for n, m in table.items() if m.group in groups]
    if any(table[n].group.startswith("fastdllm") for n in names) and not args.fastdllm:
        raise SystemExit("the fastdllm groups need --fastdllm PATH (a Fast-dLLM checkout)")
    load_start = os.getloadavg()
    rows = []
    for name in names:
        cmd = [sys.executable, __file__, "--child", name, "--threads", str(args.threads), "--steps", str(args.steps)]
        if args.fastdllm:
            cmd += ["--fastdllm", args.fastdllm]
        before = os.getloadavg()
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"mode {name} failed:\n{out.stderr[-4000:]}")
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row["load_before"], row["load_after"] = before, os.getloadavg()
        rows.append(row)
        print(f"{name}: {row['seconds']:.1f} s, {row['calls']} calls, peak {row['peak_mib']:.0f} MiB "
              f"(load {before[0]:.2f} -> {row['load_after'][0]:.2f})", flush=True)
    compare(rows)
    import transformers  # its version, for the record

    command = f"python benchmarks/bench_real_models.py --threads {args.threads} --steps {args.steps}"
    if args.fastdllm:
        command += " --fastdllm PATH"
    command += f" --only {args.only}" if args.only else (f" --groups {args.groups}" if args.groups else "")
    env = {"cpu": _cpu(), "threads": args.threads, "steps": args.steps, "torch": torch.__version__,
           "transformers": transformers.__version__, "python": platform.python_version(),
           "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": command,
           "load_start": load_start, "load_end": os.getloadavg(), "cores": os.cpu_count()}
    name = args.name or ("real_models_cpu_fastdllm" if any(table[n].group.startswith("fastdllm") for n in names)
                         else "real_models_cpu")
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps({"env": env, "rows": [
        {k: v for k, v in r.items() if k != "tokens"} for r in rows]}, indent=2) + "\n")
    text = markdown(env, rows)
    (folder / f"{name}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
