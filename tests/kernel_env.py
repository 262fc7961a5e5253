"""The device the kernel tests run on: the GPU, or Triton's interpreter, which tests/conftest.py turns on
(TRITON_INTERPRET=1) on machines without a GPU before any kernel module is imported."""

import pytest
import torch


def device_for(kernel_module) -> str:
    """'cuda' for compiled kernels, 'cpu' under the interpreter; skips the module when neither can run."""
    if torch.cuda.is_available() and not kernel_module.INTERPRET:
        return "cuda"
    if not kernel_module.INTERPRET:
        pytest.skip("fastmdm.kernels was imported without TRITON_INTERPRET=1 and there is no GPU",
                    allow_module_level=True)
    return "cpu"
