"""CPU microbenchmarks of the hot operations' torch paths and of decoding, for pytest-benchmark.

    pytest benchmarks --benchmark-only --benchmark-json=benchmarks/results/pytest_benchmark_cpu.json
    pytest benchmarks --benchmark-only --benchmark-autosave      # keeps the run in .benchmarks/
    pytest benchmarks --benchmark-only --benchmark-compare       # against the last kept run

Small shapes, so the whole run takes well under a minute on 2 cores; the GPU kernels have their own scripts
(gpu_kernels.py). Plain `pytest` (testpaths = tests) does not collect this file, and benchmarks/conftest.py
undoes the --benchmark-disable that the test suite's addopts pass.
"""
from __future__ import annotations

import pytest
import torch

import fastmdm
from fastmdm import ops
from fastmdm.models import Transformer, TransformerConfig

N, V, D = 256, 32_768, 256


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    return {"logits": torch.randn(N, V, generator=g), "hidden": torch.randn(N, D, generator=g),
            "weight": torch.randn(V, D, generator=g) / D ** 0.5, "targets": torch.randint(0, V, (N,), generator=g),
            "scores": torch.rand(64, 512, generator=g), "eligible": torch.rand(64, 512, generator=g) < 0.5,
            "q": torch.randn(4, 8, 256, 64, generator=g), "k": torch.randn(4, 8, 256, 64, generator=g)}


@pytest.mark.parametrize("score", ["confidence", "margin", "entropy"])
def test_token_stats(benchmark, data, score):
    benchmark(ops.token_stats, data["logits"], score=score, backend="torch")


def test_linear_token_stats(benchmark, data):
    benchmark(ops.linear_token_stats, data["hidden"], data["weight"], score="margin", backend="torch")


def test_select_positions(benchmark, data):
    counts = torch.full((64,), 8)
    benchmark(ops.select_positions, data["scores"], data["eligible"], counts=counts, backend="torch")


def test_attention(benchmark, data):
    benchmark(ops.attention, data["q"], data["k"], data["k"], backend="torch")


def test_linear_weighted_ce(benchmark, data):
    w = torch.full((N,), 1.0 / N)
    benchmark(ops.linear_weighted_ce, data["hidden"], data["weight"], data["targets"], w, backend="torch")


def test_sample_margin_tiny_transformer(benchmark):
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=64, mask_token_id=63, max_len=64, d_model=64, n_layers=2,
                                          n_heads=4, d_ff=128)).eval()
    x = torch.randint(0, 63, (8, 64), generator=torch.Generator().manual_seed(1))
    x[:, 16:] = 63
    with torch.no_grad():
        # a warm-up call first: the model's first forward pays one-time allocations the decoding loop never repeats
        benchmark.pedantic(fastmdm.sample, args=(model, x), kwargs=dict(strategy="margin", k=4), rounds=10,
                           warmup_rounds=1)
