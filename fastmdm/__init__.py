"""fastmdm: fast adaptive decoding, fused kernels and training for masked diffusion models."""
from fastmdm import adapters, compat, engine, ops
from fastmdm.engine import Trace, decode
from fastmdm.loss import mdm_loss, mdm_loss_from_hidden, sample_mask
from fastmdm.runtime import keep_freed_memory
from fastmdm.sampling import generate, sample
from fastmdm.strategies import STRATEGIES

__version__ = "0.1.0"
__all__ = ["sample", "generate", "Trace", "STRATEGIES", "mdm_loss", "mdm_loss_from_hidden", "sample_mask", "ops",
           "adapters", "compat", "engine", "decode", "keep_freed_memory"]
