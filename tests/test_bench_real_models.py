"""benchmarks/bench_real_models.py: its re-derived LLaDA and Dream loops give the drop-ins' tokens on tiny models
(so the benchmark compares like with like), and its Fast-dLLM groups say what they need."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from fastmdm.compat import dream, llada
from fastmdm.models import Dream, LLaDA

ROOT = Path(__file__).resolve().parents[1]
MASK = 63


def bench():
    spec = importlib.util.spec_from_file_location("bench_real_models", ROOT / "benchmarks" / "bench_real_models.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


def tiny(bench, kind):
    small = dict(vocab_size=64, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=48, mask_token_id=MASK)
    if kind == "llada":
        model = LLaDA(bench.llada_config(num_kv_heads=4, **small)).eval()
    else:
        model = Dream(bench.dream_config(num_kv_heads=2, **small)).eval()
    bench.init_weights(model, MASK, seed=3)
    return model


def prompt():
    return torch.randint(0, MASK, (3, 5), generator=torch.Generator().manual_seed(2))


def test_the_llada_loop_gives_the_drop_in_s_tokens():
    b = bench()
    model = tiny(b, "llada")
    ours, calls = b.llada_loop(model, prompt(), 4, gen_length=8, block_length=4, mask_id=MASK)
    want = llada.generate(model, prompt(), steps=4, gen_length=8, block_length=4, mask_id=MASK)
    assert calls == 4 and torch.equal(ours, want)
    assert not bool((ours == MASK).any())


@pytest.mark.parametrize("alg", ["maskgit_plus", "topk_margin", "entropy"])
@pytest.mark.parametrize("steps", [3, 8])
def test_the_dream_loop_gives_the_drop_in_s_tokens(alg, steps):
    b = bench()
    model = tiny(b, "dream")
    ours, calls = b.dream_loop(model, prompt(), steps, alg, max_new_tokens=8, mask_id=MASK)
    want = dream.diffusion_generate(model, prompt(), max_new_tokens=8, steps=steps, alg=alg, temperature=0.0,
                                    mask_token_id=MASK)
    assert calls == steps and torch.equal(ours, want)
    assert not bool((ours == MASK).any())


def test_the_weights_leave_the_mask_token_out_of_every_prediction():
    b = bench()
    model = tiny(b, "dream")
    assert bool((model.lm_head.weight[MASK] == 0).all())
    assert bool((model.layers[0].attn_norm.weight == 1).all())


def test_the_fastdllm_groups_need_a_checkout(tmp_path):
    b = bench()
    with pytest.raises(SystemExit, match="--fastdllm PATH"):
        b.main(["--groups", "fastdllm", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="not a package"):
        b.fastdllm_llada(str(tmp_path))
    with pytest.raises(SystemExit, match="unknown group"):
        b.main(["--groups", "nope", "--out", str(tmp_path)])
