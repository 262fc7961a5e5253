"""Signature-compatible drop-ins for other masked-diffusion codebases' samplers, run by fastmdm's batched loop.

- `fastmdm.compat.llada.generate(model, prompt, attention_mask=None, steps=..., ...)`: LLaDA's `generate`.
- `fastmdm.compat.dream.diffusion_generate(model, inputs, ...)`: Dream's `model.diffusion_generate`.
- `fastmdm.compat.fastdllm.generate / generate_with_prefix_cache / generate_with_dual_cache`: Fast-dLLM's
  LLaDA samplers (threshold and factor schedules, block caches), returning (x, nfe).

At temperature 0 each gives the original's tokens; each module's docstring lists where it differs.
"""
from fastmdm.compat import dream, fastdllm, llada

__all__ = ["llada", "dream", "fastdllm"]
