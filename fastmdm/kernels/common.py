"""Small helpers shared by the kernel modules."""
from __future__ import annotations

import torch

ATTENTION_MAX_HEAD_DIM = 128  # head dims the attention kernel takes (padded to a power of two, 16 at least)
SM90_SHARED_PER_BLOCK = 232_448  # bytes a thread block may use on sm_90 (H100 / H200) with the opt-in


def max_shared_per_block(t: torch.Tensor) -> int:
    """Shared memory one block may use on `t`'s GPU (sm_90's limit for tensors elsewhere, as when a GPU
    compile is checked on CPU)."""
    if t.is_cuda:
        props = torch.cuda.get_device_properties(t.device)
        return int(getattr(props, "shared_memory_per_block_optin", 0) or SM90_SHARED_PER_BLOCK)
    return SM90_SHARED_PER_BLOCK


def fp32_ieee(t: torch.Tensor) -> bool:
    """Whether float32 products must be IEEE (not tf32): always off the GPU, and on it unless torch allows
    tf32 for matmuls (`torch.backends.cuda.matmul.allow_tf32`), so a kernel rounds as torch's own matmul does."""
    return t.dtype == torch.float32 and not (t.is_cuda and torch.backends.cuda.matmul.allow_tf32)
